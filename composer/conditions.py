"""Conditions: what a model can be steered by -- key, note-density level, tempo level, corpus labels.

A conditioned model reads, right after BOS, one token per condition, always in the same order: the
piece's value of it, or NONE (not given)::

    BOS  COND_KEY_D_minor  COND_DENSITY_high  COND_TEMPO_NONE  COND_LABEL_MOOD_sad  <the music ...>

The condition tokens are appended after the tokenizer's own (``Tokenizer(config, conditions)``), so no
id of the music moves and a corpus is encoded once, without them: training writes each piece's values in
when it packs the pieces (``composer.batching.TokenStore``), and drops each condition to NONE at random
(``TrainConfig.condition_dropout``), so that a song asked for nothing (all NONE) is something the model
has learnt too. Transposing a piece transposes its key condition with it (``transpose_lut``).

A ``ConditionSet`` is derived from a corpus (``from_corpus``) and stored in every checkpoint as JSON;
its value lists are what the corpus had, in a fixed order (keys C major .. B minor, levels low/mid/high,
labels sorted), and the checkpoint knows them, so generation needs no corpus.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from composer.attributes import LEVELS, MODES, Key, parse_key
from composer.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from composer.corpus import Corpus, Piece
    from composer.tokenizer.vocab import TokenRange, Vocabulary

NONE = "NONE"
#: The conditions a corpus's attributes give (``TrainConfig.conditions`` names them), in slot order.
ATTRIBUTES = ("key", "density", "tempo")
#: Every key, in the order of the COND_KEY values.
KEYS = tuple(Key(t, m) for m in MODES for t in range(12))
#: A label column with more distinct values than this is not a condition (an id, a free-text field).
MAX_LABEL_VALUES = 64
#: The most conditions a model may have (training's drop table has 2 ** conditions rows).
MAX_CONDITIONS = 8
#: What ``TrainConfig.conditions`` may name besides ``label:COLUMN``.
CONDITION_WORDS = (*ATTRIBUTES, "labels")
LABEL_PREFIX = "label:"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


def _token_label(value: str) -> str:
    return _UNSAFE.sub("_", value.strip()) or "_"


@dataclass(frozen=True)
class Condition:
    """One slot: its name (``key``, ``density``, ``tempo`` or ``label:COLUMN``) and its values."""

    name: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (self.name in ATTRIBUTES or self.name.startswith(LABEL_PREFIX)):
            raise ConfigError(
                f"condition must be one of {', '.join(ATTRIBUTES)} or label:COLUMN, got {self.name!r}"
            )
        if not self.values or len(set(self.values)) != len(self.values) or NONE in self.values:
            raise ConfigError(
                f"condition {self.name} needs distinct values other than {NONE}, got {self.values}"
            )

    @property
    def kind(self) -> str:
        """Its token kind: COND_KEY, COND_DENSITY, COND_TEMPO, COND_LABEL_<COLUMN>."""
        return "COND_" + _token_label(self.name.replace(":", "_")).upper()

    @property
    def is_label(self) -> bool:
        return self.name.startswith(LABEL_PREFIX)

    @property
    def column(self) -> str:
        """The label column (labels only), or the attribute's name."""
        return self.name[len(LABEL_PREFIX) :] if self.is_label else self.name

    def index(self, value: str | None) -> int:
        """The token value of ``value`` (0 for None: NONE); ConfigError naming the known values."""
        if value is None:
            return 0
        try:
            return self.values.index(value) + 1
        except ValueError:
            raise ConfigError(
                f"{self.column} {value!r} is not one the model knows; it knows {', '.join(self.values)}"
            ) from None

    def token_range(self) -> TokenRange:
        from composer.tokenizer.vocab import TokenRange

        labels = [_token_label(v) for v in self.values]
        if len(set(labels)) != len(labels):  # two values that differ only in unsafe characters
            labels = [f"{i}_{lb}" for i, lb in enumerate(labels)]
        return TokenRange(self.kind, 0, len(self.values), labels=(NONE, *labels))


def piece_value(condition: Condition, piece: Piece) -> str | None:
    """``piece``'s value of ``condition`` as stored in the corpus manifest, or None where it has none."""
    name = condition.name
    if name == "key":
        return None if piece.attributes is None or piece.attributes.key is None else piece.attributes.key.name
    if name == "density":
        return piece.density_level
    if name == "tempo":
        return piece.tempo_level
    value = piece.labels.get(condition.column)
    return None if value is None else label_text(value)


def label_text(value: Any) -> str:
    """A label value as a condition value: numbers as the CSV wrote them (1, -1, 0.5)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class ConditionSet:
    """The conditions of a model, in slot order, and the corpus level bounds (density, tempo) they use."""

    conditions: tuple[Condition, ...]
    #: Per levelled attribute, the corpus terciles between low / mid and mid / high.
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [c.name for c in self.conditions]
        if len(set(names)) != len(names):
            raise ConfigError(f"conditions repeat: {', '.join(names)}")
        if not names:
            raise ConfigError("a condition set needs at least one condition")

    def __len__(self) -> int:
        return len(self.conditions)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.conditions)

    def get(self, name: str) -> Condition | None:
        return next((c for c in self.conditions if c.name == name), None)

    @property
    def labels(self) -> tuple[Condition, ...]:
        return tuple(c for c in self.conditions if c.is_label)

    # ---------------------------------------------------------------- tokens
    def ranges(self) -> list[TokenRange]:
        return [c.token_range() for c in self.conditions]

    def prefix(self, vocab: Vocabulary, values: Mapping[str, str | None] | None = None) -> np.ndarray:
        """The condition tokens, in slot order, for ``values`` (condition name -> value; missing: NONE).

        ConfigError for a name the set does not have or a value a condition does not know."""
        values = dict(values or {})
        unknown = [k for k in values if self.get(k) is None]
        if unknown:
            known = ", ".join(self.names)
            raise ConfigError(f"the model has no condition {unknown[0]!r}; its conditions are {known}")
        return np.array(
            [vocab.encode_event(c.kind, c.index(values.get(c.name))) for c in self.conditions], dtype=np.int64
        )

    def piece_prefix(self, vocab: Vocabulary, piece: Piece) -> np.ndarray:
        return self.prefix(vocab, {c.name: _known(c, piece_value(c, piece)) for c in self.conditions})

    def none_ids(self, vocab: Vocabulary) -> np.ndarray:
        """Per slot, the id of its NONE token."""
        return self.prefix(vocab)

    def values_of(self, vocab: Vocabulary, ids: Sequence[int]) -> dict[str, str | None]:
        """Condition name -> value read back from condition tokens (NONE: None); others ignored."""
        out: dict[str, str | None] = {}
        for c in self.conditions:
            o, n = vocab.offset(c.kind), len(c.values) + 1
            hit = [int(t) - o for t in ids if o <= int(t) < o + n]
            if hit:
                out[c.name] = None if hit[0] == 0 else c.values[hit[0] - 1]
        return out

    def is_condition(self, vocab: Vocabulary) -> np.ndarray:
        """Boolean mask over ``vocab``: the condition tokens."""
        return vocab.mask(*(c.kind for c in self.conditions))

    # ---------------------------------------------------------------- augmentation tables
    def transpose_lut(self, vocab: Vocabulary, lut: np.ndarray, semitones: int) -> np.ndarray:
        """``lut`` (id -> id, the music transposed by ``semitones``) with the key condition moved too."""
        key = self.get("key")
        if key is None:
            return lut
        o = vocab.offset(key.kind)
        for i, name in enumerate(key.values, start=1):
            moved = parse_key(name).transposed(semitones).name
            # a key the set does not have (trained without transposition) reads as not given
            lut[o + i] = o + key.values.index(moved) + 1 if moved in key.values else o
        return lut

    def drop_lut(self, vocab: Vocabulary, dropped: Iterable[int]) -> np.ndarray:
        """Id -> id with every token of the slots ``dropped`` (indices) replaced by that slot's NONE."""
        lut = np.arange(vocab.size, dtype=np.int64)
        for s in dropped:
            c = self.conditions[s]
            o = vocab.offset(c.kind)
            lut[o : o + len(c.values) + 1] = o
        return lut

    # ---------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "conditions": [{"name": c.name, "values": list(c.values)} for c in self.conditions],
            "bounds": {k: list(v) for k, v in self.bounds.items()},
        }

    @classmethod
    def from_dict(cls, data: Any) -> ConditionSet:
        try:
            conds = tuple(
                Condition(str(c["name"]), tuple(str(v) for v in c["values"])) for c in data["conditions"]
            )
            bounds = {str(k): (float(v[0]), float(v[1])) for k, v in (data.get("bounds") or {}).items()}
        except (KeyError, TypeError, ValueError, IndexError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"malformed conditions {data!r:.80} ({e!r})") from None
        return cls(conds, bounds)

    def describe(self) -> list[tuple[str, str]]:
        """(name, its values) per condition, for ``composer info``."""
        return [(c.column if c.is_label else c.name, ", ".join(c.values)) for c in self.conditions]


def _known(c: Condition, value: str | None) -> str | None:
    return value if value is None or value in c.values else None


# ---------------------------------------------------------------------------------------- from a corpus


def parse_condition_names(text: str) -> tuple[str, ...]:
    """``TrainConfig.conditions``: ``auto`` (every attribute and label the corpus has), ``none``, or a
    comma list of key, density, tempo, labels, label:COLUMN. ConfigError naming what is wrong."""
    words = [w.strip() for w in str(text).split(",") if w.strip()]
    if words in (["auto"], []):
        return CONDITION_WORDS if words else ()
    if words == ["none"]:
        return ()
    for w in words:
        if w not in CONDITION_WORDS and not (w.startswith(LABEL_PREFIX) and len(w) > len(LABEL_PREFIX)):
            raise ConfigError(
                f"conditions must be auto, none or a comma list of {', '.join(CONDITION_WORDS)}, "
                f"label:COLUMN; got {w!r}"
            )
    if len(set(words)) != len(words):
        raise ConfigError(f"conditions repeat a name: {text!r}")
    return tuple(words)


def from_corpus(corpus: Corpus, text: str, say: Any = None, transpose: int = 0) -> ConditionSet | None:
    """The conditions ``text`` (``parse_condition_names``) asks for that ``corpus`` has values of; None
    where none. A condition named explicitly that the corpus lacks is a ConfigError; with ``auto``
    (``labels``), a label column with more than ``MAX_LABEL_VALUES`` values is left out (``say`` is told).
    With ``transpose`` (training's augmentation, semitones) the key condition has every key the corpus's
    keys transpose to; without it only the keys the corpus has."""
    words = parse_condition_names(text)
    explicit = str(text).strip() not in ("auto", "")
    pieces = corpus.pieces()
    names: list[str] = []
    for w in words:
        if w == "labels":
            names += [LABEL_PREFIX + col for col in corpus.label_columns if LABEL_PREFIX + col not in words]
        else:
            names.append(w)
    conds: list[Condition] = []
    for name in names:
        probe = Condition(name, ("x",))
        seen = {v for p in pieces if (v := piece_value(probe, p)) is not None}
        if name == "key":
            reach = {parse_key(k).transposed(d).name for k in seen for d in range(-transpose, transpose + 1)}
            values = tuple(k.name for k in KEYS if k.name in reach)
        elif name in ("density", "tempo"):
            values = tuple(lv for lv in LEVELS if lv in seen)
        else:
            values = tuple(sorted(seen, key=_label_order))
            if len(values) > MAX_LABEL_VALUES:
                if explicit and name in words:
                    raise ConfigError(
                        f"label column {probe.column!r} has {len(values)} distinct values, more than the "
                        f"{MAX_LABEL_VALUES} a condition may have"
                    )
                if say is not None:
                    say(f"label column {probe.column!r} is not a condition: {len(values)} distinct values")
                continue
        if not values:
            if explicit and name in words:
                what = "label column" if probe.is_label else "attribute"
                raise ConfigError(
                    f"{corpus.path}: no piece has the {what} {probe.column!r} "
                    + ("(rebuild the corpus to record attributes)" if not probe.is_label else "")
                )
            continue
        if len(conds) == MAX_CONDITIONS:
            if explicit:
                raise ConfigError(f"at most {MAX_CONDITIONS} conditions, got {', '.join(names)}")
            if say is not None:
                say(f"{probe.column!r} is not a condition: at most {MAX_CONDITIONS} (--conditions chooses)")
            continue
        conds.append(Condition(name, values))
    if not conds:
        return None
    return ConditionSet(tuple(conds), dict(corpus.level_bounds))


def _label_order(v: str) -> tuple[int, float, str]:
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)


# ------------------------------------------------------------------------------------------------ steering

#: Short instrument names ``--instruments`` accepts besides General MIDI names and numbers (0-127).
INSTRUMENT_WORDS = {
    "piano": 0, "epiano": 4, "electric-piano": 4, "harpsichord": 6, "organ": 19, "guitar": 24,
    "acoustic-guitar": 24, "electric-guitar": 27, "bass": 33, "acoustic-bass": 32, "electric-bass": 33,
    "violin": 40, "viola": 41, "cello": 42, "contrabass": 43, "harp": 46, "strings": 48, "choir": 52,
    "voice": 53, "trumpet": 56, "trombone": 57, "tuba": 58, "horn": 60, "brass": 61, "sax": 65,
    "saxophone": 65, "oboe": 68, "bassoon": 70, "clarinet": 71, "piccolo": 72, "flute": 73, "lead": 80,
    "pad": 88, "drums": 128,
}  # fmt: skip
DRUMS_PROGRAM = 128


def _slug(name: str) -> str:
    return re.sub(r"[\s_()]+", "-", name.strip().lower()).strip("-")


def parse_instruments(text: str, option: str = "--instruments") -> tuple[int, ...]:
    """``piano,bass,drums`` (short names, General MIDI names such as ``Acoustic Grand Piano``, or
    program numbers 0-127; ``drums`` is the kit) -> sorted program numbers, drums as 128. ConfigError
    naming ``option`` and the word otherwise."""
    import pretty_midi

    gm = {_slug(pretty_midi.program_to_instrument_name(p)): p for p in range(128)}
    out: set[int] = set()
    for word in (w.strip() for w in str(text).split(",")):
        if not word:
            continue
        key = _slug(word)
        if re.fullmatch(r"\d+", key) and int(key) <= 127:
            out.add(int(key))
        elif key in INSTRUMENT_WORDS:
            out.add(INSTRUMENT_WORDS[key])
        elif key in gm:
            out.add(gm[key])
        else:
            raise ConfigError(
                f"{option}: unknown instrument {word!r}; use a program number 0-127, a General MIDI "
                f"name, or one of {', '.join(sorted(INSTRUMENT_WORDS))}"
            )
    if not out:
        raise ConfigError(f"{option} needs at least one instrument, e.g. piano,bass,drums")
    return tuple(sorted(out))


def instrument_names(programs: Iterable[int]) -> str:
    import pretty_midi

    return ", ".join(
        "drums" if p == DRUMS_PROGRAM else f"{pretty_midi.program_to_instrument_name(p)} ({p})"
        for p in programs
    )


def steering(
    cs: ConditionSet | None,
    *,
    labels: Sequence[str] = (),
    key: str | None = None,
    density: str | None = None,
    tempo: str | None = None,
    bpm: float | None = None,
) -> dict[str, str]:
    """Condition name -> value for what a user asks (``generate --label/--key/--density/--bpm``).

    ``labels``: ``VALUE`` (the label column is found by its value) or ``COLUMN=VALUE``. ``bpm`` sets the
    tempo level (corpus terciles) where the model has a tempo condition and no ``tempo`` is given.
    ConfigError (one line naming what the model knows) for anything it was not trained with."""
    asked = bool(labels) or any(x is not None for x in (key, density, tempo))
    if cs is None:
        if asked:
            raise ConfigError(
                "the model was trained without conditions (--label, --key, --density cannot steer it)"
            )
        return {}
    out: dict[str, str] = {}

    def need(name: str, option: str) -> Condition:
        c = cs.get(name)
        if c is None:
            raise ConfigError(
                f"{option}: the model was not trained with a {name} condition; it has {_names(cs)}"
            )
        return c

    if key is not None:
        c = need("key", "--key")
        value = parse_key(key).name
        c.index(value)
        out["key"] = value
    for name, level, option in (("density", density, "--density"), ("tempo", tempo, "--tempo")):
        if level is not None:
            c = need(name, option)
            word = {"medium": "mid", "middle": "mid"}.get(level.lower(), level.lower())
            if word not in LEVELS:
                raise ConfigError(f"{option} must be one of {', '.join(LEVELS)}, got {level!r}")
            c.index(word)
            out[name] = word
    if bpm is not None and "tempo" not in out and cs.get("tempo") is not None and "tempo" in cs.bounds:
        from composer.attributes import level_of

        level = level_of(float(bpm), cs.bounds["tempo"])
        if level in cs.get("tempo").values:  # type: ignore[union-attr]
            out["tempo"] = level
    if labels and not cs.labels:
        raise ConfigError(f"--label: the model was trained without labels; its conditions are {_names(cs)}")
    for text in labels:
        column, sep, value = str(text).partition("=")
        if sep:
            lc = cs.get(LABEL_PREFIX + column.strip())
            if lc is None:
                known = ", ".join(x.column for x in cs.labels) or "none"
                raise ConfigError(
                    f"--label: the model has no label column {column.strip()!r}; it has {known}"
                )
            lc.index(value.strip())
            out[lc.name] = value.strip()
            continue
        hits = [c for c in cs.labels if text.strip() in c.values]
        if not cs.labels:
            raise ConfigError(
                f"--label: the model was trained without labels; its conditions are {_names(cs)}"
            )
        if not hits:
            known = "; ".join(f"{c.column}: {', '.join(c.values)}" for c in cs.labels) or "none"
            raise ConfigError(f"--label: {text.strip()!r} is not a label the model knows (it knows {known})")
        if len(hits) > 1:
            cols = ", ".join(c.column for c in hits)
            raise ConfigError(
                f"--label: {text.strip()!r} is a value of several columns ({cols}); say COLUMN=VALUE"
            )
        if hits[0].name in out:
            raise ConfigError(f"--label: two values for {hits[0].column}")
        out[hits[0].name] = text.strip()
    return out


def _names(cs: ConditionSet) -> str:
    return ", ".join(c.column if c.is_label else c.name for c in cs.conditions)
