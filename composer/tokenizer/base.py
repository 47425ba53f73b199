"""The interface both encodings implement, and what they share."""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from composer.errors import ConfigError, TokenError
from composer.midi import Score
from composer.tokenizer.config import TokenizerConfig
from composer.tokenizer.grammar import Constraint, Grammar
from composer.tokenizer.vocab import BOS, EOS, PAD, SPECIAL_RANGES, TokenRange, Vocabulary

if TYPE_CHECKING:  # pragma: no cover
    from composer.conditions import ConditionSet

#: PROGRAM value for the drum kit (General MIDI programs are 0..127).
DRUMS = 128
PROGRAM_LABELS = tuple(str(p) for p in range(DRUMS)) + ("DRUMS",)
#: A piece to encode may span at most this many bars / seconds; longer ones are refused, not truncated.
MAX_PIECE_BARS = 20_000
MAX_PIECE_SECONDS = 6 * 3600
#: The first line of a token file (``to_text``): this, then the tokenizer config as JSON.
TOKEN_HEADER = "# composer-tokens "


@dataclass
class EncodeStats:
    """Counts of what an encoding kept and what it could not keep exactly."""

    notes_in: int = 0
    notes_encoded: int = 0
    pitches_out_of_range: int = 0
    time_signatures_replaced: int = 0
    time_signatures_moved: int = 0
    tempos_clamped: int = 0
    #: Notes of one program and pitch that sound together and come back with another (start, end): a
    #: NOTE_OFF names no note, so the performance decoder pairs them first-in-first-out.
    same_pitch_repaired: int = 0

    def lost(self) -> dict[str, int]:
        """The non-zero counts of notes or events not kept exactly."""
        return {f.name: getattr(self, f.name) for f in fields(self)[2:] if getattr(self, f.name)}


@dataclass
class NoteArrays:
    """All notes of a score as flat arrays (ticks), programs with drums as DRUMS."""

    start: np.ndarray
    end: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    program: np.ndarray

    @classmethod
    def from_score(cls, score: Score) -> NoteArrays:
        n = score.note_count
        start = np.empty(n, np.int64)
        end = np.empty(n, np.int64)
        pitch = np.empty(n, np.int64)
        vel = np.empty(n, np.int64)
        prog = np.empty(n, np.int64)
        k = 0
        for inst in score.instruments:
            m = len(inst.notes)
            if not m:
                continue
            rows = np.array([(nt.start, nt.end, nt.pitch, nt.velocity) for nt in inst.notes], dtype=np.int64)
            start[k : k + m], end[k : k + m], pitch[k : k + m], vel[k : k + m] = rows.T
            prog[k : k + m] = DRUMS if inst.is_drum else inst.program
            k += m
        return cls(start, end, pitch, vel, prog)

    def select(self, keep: np.ndarray) -> NoteArrays:
        return NoteArrays(
            self.start[keep], self.end[keep], self.pitch[keep], self.velocity[keep], self.program[keep]
        )


@dataclass(frozen=True)
class TempoSteering:
    """How sampling is steered to one tempo (``Tokenizer.tempo_steering``)."""

    #: Per token id, whether it may be sampled where the grammar allows it (the nearest TEMPO only).
    allowed: np.ndarray
    #: Seconds at the asked tempo over seconds on the grammar's clock (which runs at the TEMPO token's).
    seconds_scale: float


def round_div(a: np.ndarray, num: int, den: int) -> np.ndarray:
    """round(a * num / den) in exact integer arithmetic (half up)."""
    return (np.asarray(a, dtype=np.int64) * (2 * num) + den) // (2 * den)


class Tokenizer(ABC):
    """Notes <-> token ids. Subclasses declare their ranges; the vocabulary is derived from them.

    With ``conditions`` (``composer.conditions``) the condition tokens are appended after the music's, so
    a conditioned model's vocabulary extends its corpus's: no id moves. The encoder never writes them
    (a corpus is encoded without conditions); ``condition`` puts them after a piece's BOS.
    """

    def __init__(self, config: TokenizerConfig, conditions: ConditionSet | None = None) -> None:
        self.config = config
        self.conditions = conditions
        extra = tuple(conditions.ranges()) if conditions is not None else ()
        self.vocab = Vocabulary(SPECIAL_RANGES + tuple(self._ranges()) + extra)
        self.pad_id = self.vocab.encode_event(PAD)
        self.bos_id = self.vocab.encode_event(BOS)
        self.eos_id = self.vocab.encode_event(EOS)
        nb = config.velocity_bins
        vels = np.arange(1, 128)
        self._vel_bin = np.zeros(128, dtype=np.int64)
        self._vel_bin[1:] = (vels - 1) * nb // 127
        self._bin_vel = np.array([int(round(vels[self._vel_bin[1:] == b].mean())) for b in range(nb)])

    # ------------------------------------------------------------------ what subclasses provide
    @abstractmethod
    def _ranges(self) -> list[TokenRange]: ...

    @abstractmethod
    def encode(self, score: Score) -> tuple[np.ndarray, EncodeStats]:
        """Token ids (uint16, BOS ... EOS) and what could not be kept exactly."""

    @abstractmethod
    def decode(self, ids: np.ndarray | list[int]) -> Score:
        """A Score from token ids; tokens that do not fit the grammar are ignored."""

    @abstractmethod
    def grammar(self) -> Grammar[Any]:
        """Masks of what may come next, for sampling valid sequences (see composer.tokenizer.grammar)."""

    @abstractmethod
    def retime(self, score: Score, bpm: float) -> Score:
        """``score`` (decoded by this tokenizer) given one tempo, ``bpm``, in place; returns it."""

    def decoded_tempo(self, qpm: float) -> float:
        """The tempo a piece at ``qpm`` has once encoded and decoded (the tokens' resolution)."""
        return float(qpm)

    def tempo_steering(self, bpm: float) -> TempoSteering | None:
        """How to steer sampling towards ``bpm``; None where the tokens carry no tempo."""
        return None

    def keep_parts(
        self,
        ids: np.ndarray,
        added: set[int],
        free_bars: tuple[int, int] | None = None,
        free_programs: set[int] | None = None,
    ) -> Constraint:
        """A sampling constraint that writes the parts encoded as ``ids`` (BOS ... EOS) note for note and
        lets the model add instruments ``added`` (PROGRAM values) around them; in ``free_bars`` (first,
        last; 1-based) the notes of ``free_programs`` (all: None) are the model's instead. ``bars`` on it
        says how many bars they span. Raises ConfigError where the encoding cannot."""
        raise ConfigError(
            f"keeping parts while others are sampled needs the beat encoding, not {self.encoding}"
        )

    #: The kind whose tokens each start one note (PITCH or NOTE_ON).
    note_kind: str = ""
    #: Kinds shifted by transposition.
    pitch_kinds: tuple[str, ...] = ()
    #: Whether ``time_stretch_lut`` changes anything (timing in absolute time, not on a musical grid).
    supports_time_stretch: bool = False
    #: Whether the tokens count bars (so a length may be asked in bars).
    has_bars: bool = False

    # ------------------------------------------------------------------ shared
    def _notes_to_encode(self, score: Score) -> tuple[NoteArrays, EncodeStats]:
        """The score's notes inside the pitch range, and stats counting those outside it."""
        self.check_length(score)
        stats = EncodeStats()
        notes = NoteArrays.from_score(score)
        stats.notes_in = len(notes.pitch)
        keep = (notes.pitch >= self.config.pitch_min) & (notes.pitch <= self.config.pitch_max)
        stats.pitches_out_of_range = int(len(keep) - keep.sum())
        notes = notes.select(keep)
        stats.notes_encoded = len(notes.pitch)
        return notes, stats

    def check_length(self, score: Score) -> None:
        """Refuse a piece too long to be music rather than encode hours of silence or one endless note."""
        seconds = score.duration_seconds
        if seconds > MAX_PIECE_SECONDS:
            raise TokenError(
                f"piece lasts {seconds / 3600:.1f} hours, more than the {MAX_PIECE_SECONDS // 3600} allowed"
            )
        quarters = score.end_tick / score.ticks_per_beat
        if quarters > 4 * MAX_PIECE_BARS:
            raise TokenError(
                f"piece spans {quarters:,.0f} quarter notes, more than the {4 * MAX_PIECE_BARS:,} allowed"
            )

    @property
    def encoding(self) -> str:
        return self.config.encoding

    def bin_velocity(self, b: int) -> int:
        return int(self._bin_vel[b])

    def note_count(self, ids: np.ndarray) -> int:
        o = self.vocab.offset(self.note_kind)
        n = self.vocab.range(self.note_kind).size
        ids = np.asarray(ids)
        return int(np.count_nonzero((ids >= o) & (ids < o + n)))

    def ids_to_tokens(self, ids: np.ndarray | list[int]) -> list[str]:
        ids = np.asarray(ids, dtype=np.int64)
        bad = (ids < 0) | (ids >= self.vocab.size)
        if bad.any():
            raise TokenError(f"token id must be in 0..{self.vocab.size - 1}, got {int(ids[bad][0])}")
        toks = self.vocab.tokens
        return [toks[i] for i in ids.tolist()]

    # ------------------------------------------------------------------ conditions
    @property
    def condition_count(self) -> int:
        """Condition tokens after BOS in this tokenizer's sequences (0 without conditions)."""
        return 0 if self.conditions is None else len(self.conditions)

    @property
    def condition_slots(self) -> tuple[tuple[int, int], ...]:
        """``(first id, count)`` of each condition's tokens in slot order: the model's ``condition_slots``."""
        if self.conditions is None:
            return ()
        return tuple((self.vocab.offset(r.kind), r.size) for r in self.conditions.ranges())

    def condition(self, ids: np.ndarray, values: dict[str, str | None] | None = None) -> np.ndarray:
        """``ids`` (BOS ...) with the condition tokens for ``values`` (missing: NONE) after its BOS, as a
        conditioned model reads a piece; ``ids`` unchanged without conditions."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.conditions is None or not len(ids) or ids[0] != self.bos_id:
            return ids
        return np.concatenate([ids[:1], self.conditions.prefix(self.vocab, values), ids[1:]])

    def strip_conditions(self, ids: np.ndarray | list[int]) -> np.ndarray:
        """``ids`` without condition tokens (what the decoder and the music statistics read)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.conditions is None:
            return ids
        return ids[~self.conditions.is_condition(self.vocab)[np.clip(ids, 0, self.vocab.size - 1)]]

    # ------------------------------------------------------------------ token files
    def to_text(self, ids: np.ndarray | list[int]) -> str:
        """A token file: the header line (``TOKEN_HEADER`` and this config), then one token per line."""
        header = TOKEN_HEADER + json.dumps(self.config.to_dict(), separators=(",", ":"))
        return header + "\n" + "\n".join(self.ids_to_tokens(ids)) + "\n"

    def from_text(self, text: str, source: str = "<text>") -> np.ndarray:
        """Parse a token file (one token per line; blank lines and '#' comments, the header too, ignored).

        ``source`` names the file in errors. ``tokenizer_for_text`` picks the tokenizer a file's header names.
        """
        ids = []
        for lineno, line in enumerate(text.splitlines(), 1):
            tok = line.split("#", 1)[0].strip()
            if not tok:
                continue
            try:
                ids.append(self.vocab.id(tok))
            except TokenError:
                raise TokenError(
                    f"{source}:{lineno}: unknown token {tok!r} for the {self.encoding} encoding"
                ) from None
        return np.array(ids, dtype=np.int64)

    # ------------------------------------------------------------------ augmentation tables
    def _identity(self) -> np.ndarray:
        return np.arange(self.vocab.size, dtype=np.int64)

    def _pitch_lut(self, semitones: int) -> np.ndarray:
        """Id -> id with the pitch tokens moved by ``semitones`` (pitches leaving the range stay put)."""
        lut = self._identity()
        for kind in self.pitch_kinds:
            r, o = self.vocab.range(kind), self.vocab.offset(kind)
            values = np.arange(r.min, r.max + 1)
            moved = values + semitones
            ok = (moved >= r.min) & (moved <= r.max)
            lut[o + (values - r.min)[ok]] = o + (moved - r.min)[ok]
        return lut

    def transpose_lut(self, semitones: int) -> np.ndarray:
        """Id -> id with pitch tokens moved by ``semitones`` (pitches leaving the range stay put)."""
        lut = self._pitch_lut(semitones)
        if self.conditions is not None:
            lut = self.conditions.transpose_lut(self.vocab, lut, semitones)
        return lut

    def transposed(self, ids: np.ndarray, semitones: int) -> np.ndarray | None:
        """``ids`` with every pitched note moved by ``semitones``, drums and condition tokens unmoved: the
        same music in another key, still in the encoder's order. None where a note would leave the
        encoding's pitch range."""
        ids = np.asarray(ids, dtype=np.int64)
        lut = self._pitch_lut(semitones)
        pitched = (
            ~self.drum_context(ids) & self.vocab.mask(*self.pitch_kinds)[np.clip(ids, 0, self.vocab.size - 1)]
        )
        moved = np.where(pitched, lut[np.clip(ids, 0, self.vocab.size - 1)], ids)
        if semitones and np.any(moved[pitched] == ids[pitched]):
            return None  # a pitch the range could not take stayed put
        return moved

    def velocity_lut(self, delta_bins: int) -> np.ndarray:
        lut = self._identity()
        o = self.vocab.offset("VELOCITY")
        n = self.vocab.range("VELOCITY").size
        lut[o : o + n] = o + np.clip(np.arange(n) + delta_bins, 0, n - 1)
        return lut

    def time_stretch_lut(self, factor: float) -> np.ndarray:
        """Id -> id with time shifts stretched by ``factor`` (identity unless ``supports_time_stretch``)."""
        return self._identity()

    def drum_context(self, ids: np.ndarray) -> np.ndarray:
        """True for tokens inside a drum PROGRAM context (state resets at BOS)."""
        ids = np.asarray(ids, dtype=np.int64)
        o = self.vocab.offset("PROGRAM")
        is_prog = (ids >= o) & (ids < o + DRUMS + 1)
        setter = is_prog | (ids == self.bos_id)
        idx = np.where(setter, np.arange(len(ids)), -1)
        last = np.maximum.accumulate(idx) if len(ids) else idx
        drum_id = o + DRUMS
        return (last >= 0) & (ids[np.maximum(last, 0)] == drum_id)


def lcm_ticks(resolution: int) -> int:
    """Ticks per quarter for decoded files: a multiple of 480 that the grid divides."""
    return math.lcm(resolution, 480)
