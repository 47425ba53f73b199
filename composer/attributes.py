"""Musical attributes of a piece, derived from its notes: key, note density, tempo and instrument set.

A corpus records them per piece when it encodes the piece (``composer corpus build``), so that a model can
later be steered by them and its songs measured with the same functions. Each is a plain function of a
:class:`~composer.midi.Score`:

* :func:`estimate_key` -- tonic and mode by the Krumhansl-Schmuckler method: the piece's duration-weighted
  pitch-class profile (:func:`pitch_class_profile`) correlated with the Krumhansl-Kessler probe-tone
  profiles of all 24 keys, the best correlation wins. Drums have no pitch and are left out.
* :func:`note_density` -- notes per quarter note (drum hits included). Per quarter note rather than per
  second so that density and tempo are two separate attributes: the same part played faster is not denser.
* :func:`median_tempo` -- the tempo in force for the most beats, as a median over the piece's beats.
* :func:`instrument_set` -- the General MIDI programs played, drums as :data:`DRUM_KIT`.

Density and tempo are numbers; a corpus turns them into levels (:data:`LEVELS`) by its own terciles
(:func:`tercile_bounds`, :func:`level_of`), since "dense" means something else in a chorale than in a reel.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from composer.errors import ConfigError
from composer.midi import DEFAULT_QPM, Score

#: Krumhansl & Kessler (1982) probe-tone ratings of the 12 pitch classes above a major and a minor tonic
#: (Krumhansl 1990, table 2.1); the profiles music21's ``KrumhanslSchmuckler`` analysis uses too.
MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
MODES = ("major", "minor")
PROFILES = {"major": MAJOR_PROFILE, "minor": MINOR_PROFILE}
#: How each tonic is spelled in a key's name: the spelling with fewer accidentals in its key signature.
TONIC_NAMES = {
    "major": ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"),
    "minor": ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"),
}
#: ``instrument_set``'s entry for drums (the same number as ``composer.tokenizer.DRUMS``).
DRUM_KIT = 128
#: Density and tempo levels: below the corpus's lower tercile, between its terciles, above the upper one.
LEVELS = ("low", "mid", "high")
#: The most quarter notes one note weighs in the key profile (see pitch_class_profile).
MAX_KEY_WEIGHT_QUARTERS = 32
#: Decimals kept of density (notes per quarter note), tempo (qpm) and key correlation: what a corpus
#: manifest stores, so that an attribute read back equals the one computed.
DECIMALS = 4

_LETTERS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_ACCIDENTALS = {"": 0, "#": 1, "♯": 1, "sharp": 1, "b": -1, "♭": -1, "flat": -1}
_MODE_WORDS = {"": "major", "maj": "major", "major": "major", "m": "minor", "min": "minor", "minor": "minor"}
_KEY_RE = re.compile(r"([a-g])\s*(#|♯|sharp|b|♭|flat)?\s*-?\s*(major|maj|minor|min|m)?", re.IGNORECASE)
KEY_SYNTAX = (
    "a tonic A-G with an optional # or b, then major or minor (e.g. 'D minor', 'Dm', 'F# major', 'Bb')"
)


@dataclass(frozen=True)
class Key:
    """A key: tonic pitch class (0 = C .. 11 = B) and mode. ``correlation`` is the profile correlation an
    estimate came with (None for a key given by name); keys compare by tonic and mode only."""

    tonic: int
    mode: str
    correlation: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.tonic, bool) or not isinstance(self.tonic, int) or not 0 <= self.tonic <= 11:
            raise ConfigError(f"key tonic must be a pitch class in 0..11, got {self.tonic!r}")
        if self.mode not in MODES:
            raise ConfigError(f"key mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        c = self.correlation
        if c is not None and (isinstance(c, bool) or not isinstance(c, (int, float)) or not -1 <= c <= 1):
            raise ConfigError(f"key correlation must be a number in -1..1, got {c!r}")

    @property
    def name(self) -> str:
        return f"{TONIC_NAMES[self.mode][self.tonic]} {self.mode}"

    def __str__(self) -> str:
        return self.name

    def transposed(self, semitones: int) -> Key:
        """The key ``semitones`` up (down if negative): what transposing the piece does to its key."""
        return Key((self.tonic + semitones) % 12, self.mode, self.correlation)


def parse_key(text: str) -> Key:
    """A key from its name: 'D minor', 'Dm', 'F# major', 'Bb', 'b flat minor' (case-insensitive; a bare
    tonic is major, and 'm' means minor). ConfigError naming the value and the syntax otherwise."""
    m = _KEY_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ConfigError(f"key must be {KEY_SYNTAX}, got {text!r}")
    letter, accidental, mode = (g.lower() if g else "" for g in m.groups())
    return Key((_LETTERS[letter] + _ACCIDENTALS[accidental]) % 12, _MODE_WORDS[mode])


def pitch_class_profile(score: Score) -> np.ndarray:
    """Quarter notes sounded on each pitch class (0 = C), summed over every pitched note; drums left out.
    A note counts for at most ``MAX_KEY_WEIGHT_QUARTERS`` (a stuck note, never released until the end of
    its track, would otherwise outweigh the music).

    Overlapping notes each count (two voices on one pitch class weigh twice). Sums are of integer ticks,
    exact, so a transposed score's profile is exactly this one rotated."""
    cap = MAX_KEY_WEIGHT_QUARTERS * score.ticks_per_beat
    pitches = [n.pitch % 12 for inst in score.instruments if not inst.is_drum for n in inst.notes]
    ticks = [min(n.end - n.start, cap) for inst in score.instruments if not inst.is_drum for n in inst.notes]
    if not pitches:
        return np.zeros(12)
    profile = np.bincount(np.array(pitches), weights=np.array(ticks, dtype=np.float64), minlength=12)
    return profile / score.ticks_per_beat


def key_from_profile(profile: Sequence[float] | np.ndarray) -> Key | None:
    """The key whose Krumhansl-Kessler profile, rotated to its tonic, correlates best (Pearson) with a
    12-bin pitch-class profile; None where no key stands out: a flat profile (no pitched notes), or one
    that ties two keys exactly (a profile symmetric under a transposition, such as a whole-tone scale).

    Each candidate is scored on the profile rotated to start at its tonic against the fixed key profile,
    so a rotated profile scores its rotated key with the very same arithmetic: transposing a piece moves
    the estimated tonic by exactly as much and keeps the mode, with no rounding in between."""
    h = [float(x) for x in profile]
    if len(h) != 12 or not all(math.isfinite(x) and x >= 0 for x in h):
        raise ConfigError(f"a pitch-class profile is 12 finite non-negative numbers, got {list(profile)!r}")
    if max(h) == min(h):
        return None
    scored = [
        (_pearson([h[(tonic + j) % 12] for j in range(12)], PROFILES[mode]), tonic, mode)
        for mode in MODES
        for tonic in range(12)
    ]
    best = max(r for r, _, _ in scored)
    winners = [(tonic, mode) for r, tonic, mode in scored if r == best]
    if len(winners) > 1:
        return None
    ((tonic, mode),) = winners
    return Key(tonic, mode, round(min(1.0, max(-1.0, best)), DECIMALS))


def _pearson(x: Sequence[float], y: Sequence[float]) -> float:
    n = len(x)
    mx, my = math.fsum(x) / n, math.fsum(y) / n
    cov = math.fsum((a - mx) * (b - my) for a, b in zip(x, y))
    vx = math.fsum((a - mx) ** 2 for a in x)
    vy = math.fsum((b - my) ** 2 for b in y)
    return cov / math.sqrt(vx * vy)


def estimate_key(score: Score) -> Key | None:
    """The score's key (see :func:`key_from_profile`); None where it has no pitched notes."""
    return key_from_profile(pitch_class_profile(score))


def key_shift(found: Key | None, wanted: Key) -> int | None:
    """The transposition (semitones in -6..5) that moves a piece in key ``found`` to ``wanted``; None
    where no transposition can (no key, or the other mode)."""
    if found is None or found.mode != wanted.mode:
        return None
    return (wanted.tonic - found.tonic + 6) % 12 - 6


def note_density(score: Score) -> float:
    """Notes per quarter note, drum hits included, over the piece from its start (tick 0) to its last
    note-off, counted as at least one quarter note long; 0 for a score without notes."""
    quarters = max(score.end_tick / score.ticks_per_beat, 1.0)
    return round(score.note_count / quarters, DECIMALS)


def median_tempo(score: Score) -> float:
    """The median quarter-note tempo (qpm) over the piece's beats from tick 0 to its last note-off: each
    tempo weighs by the ticks it is in force, so a ritardando of many short changes does not outvote the
    tempo that holds for most of the piece. Before the first change the tempo is 120, as in the reader;
    a piece of no length has the tempo in force at its start."""
    tempos: dict[int, float] = {}
    for t in sorted(score.tempos, key=lambda t: t.tick):  # stable: of several at one tick the last wins
        tempos[t.tick] = t.qpm
    tempos.setdefault(0, DEFAULT_QPM)
    ticks = sorted(tempos)
    end = score.end_tick
    spans = []
    for i, tick in enumerate(ticks):
        stop = min(ticks[i + 1], end) if i + 1 < len(ticks) else end
        if stop > tick:
            spans.append((tempos[tick], stop - tick))
    if not spans:
        return round(tempos[0], DECIMALS)
    spans.sort()
    half = sum(w for _, w in spans) / 2
    done = 0
    for qpm, w in spans:
        done += w
        if done >= half:
            return round(qpm, DECIMALS)
    raise AssertionError("unreachable: the weights sum to more than their half")  # pragma: no cover


def instrument_set(score: Score) -> tuple[int, ...]:
    """The General MIDI programs (0-127) of the instruments that play notes, sorted, drums as
    :data:`DRUM_KIT`."""
    return tuple(sorted({DRUM_KIT if i.is_drum else i.program for i in score.instruments if i.notes}))


@dataclass(frozen=True)
class Attributes:
    """What a corpus records of a piece's music (its instruments are the piece's ``programs``)."""

    key: Key | None  # None: no pitched notes, or no key stands out
    density: float  # notes per quarter note
    tempo: float  # median qpm

    def __post_init__(self) -> None:
        if self.key is not None and not isinstance(self.key, Key):
            raise ConfigError(f"key must be a Key or None, got {self.key!r}")
        for name, value in (("density", self.density), ("tempo", self.tempo)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < 0 or (name == "tempo" and value <= 0):
                limit = "positive" if name == "tempo" else "non-negative"
                raise ConfigError(f"{name} must be a finite {limit} number, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": None if self.key is None else self.key.name,
            "key_correlation": None if self.key is None else self.key.correlation,
            "density": self.density,
            "tempo": self.tempo,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attributes:
        """Inverse of :meth:`to_dict`; ConfigError on a malformed entry."""
        if not isinstance(data, dict):
            raise ConfigError(f"attributes must be a JSON object, got {data!r:.60}")
        try:
            name, corr = data.get("key"), data.get("key_correlation")
            key = None
            if name is not None:
                named = parse_key(name)
                key = Key(named.tonic, named.mode, corr)
            return cls(key, float(data["density"]), float(data["tempo"]))
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"malformed attributes {data!r:.80} ({e!r})") from None


def attributes_of(score: Score) -> Attributes:
    """Key, note density and median tempo of a score."""
    return Attributes(estimate_key(score), note_density(score), median_tempo(score))


def tercile_bounds(values: Sequence[float]) -> tuple[float, float] | None:
    """The lower and upper terciles of ``values`` (linear interpolation, as numpy's default quantile);
    None for no values."""
    if not len(values):
        return None
    lo, hi = np.quantile(np.asarray(values, dtype=np.float64), [1 / 3, 2 / 3])
    return round(float(lo), DECIMALS), round(float(hi), DECIMALS)


def level_of(value: float, bounds: tuple[float, float]) -> str:
    """``low`` below the lower bound, ``high`` above the upper one, ``mid`` between them (inclusive): a
    corpus whose values are all equal is all ``mid``."""
    lo, hi = bounds
    return LEVELS[0] if value < lo else LEVELS[2] if value > hi else LEVELS[1]
