"""What may come next: per-step masks that keep sampled token sequences valid by construction.

The masks admit exactly the sequences the encoder writes (its canonical order), so a sampled sequence
decodes to valid music and re-encodes to itself. For ``beat``: a TIME_SIGNATURE only right after a BAR,
positions strictly increasing inside a bar, notes at a position ordered by program, then pitch, then
duration (a unison, two notes of one program and pitch at one position, comes shorter first), DURATION
only after PITCH (or after a maximal DURATION, which chains), TEMPO only right after a POSITION. For
``performance``: a NOTE_OFF only for a sounding note, every NOTE_OFF before every NOTE_ON at one instant
and each in (program, pitch) order, a pitch repeating where two notes of it start or end together (a
sounding pitch may start again: same-pitch notes pair first-in-first-out), VELOCITY and PROGRAM only when
they change and right before a note event. The one exception is the performance polyphony cap
(``MAX_POLYPHONY``): more notes sounding at once are valid data the sampler never writes.

Each row of a batch keeps a small state; ``mask()`` builds the allowed set from precomputed per-kind
masks plus a few slices, so the per-token cost is tiny and the same however long the piece.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from composer.errors import TokenError

if TYPE_CHECKING:  # pragma: no cover
    from composer.tokenizer.base import Tokenizer


class GrammarState:
    """The state of ``batch`` sequences, each positioned right after BOS."""

    def __init__(self, rows: list) -> None:  # type: ignore[type-arg]
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def finished(self) -> np.ndarray:
        return np.array([r.finished for r in self.rows], dtype=bool)

    @property
    def seconds(self) -> np.ndarray:
        return np.array([r.seconds for r in self.rows], dtype=np.float64)

    @property
    def bars(self) -> np.ndarray:
        return np.array([getattr(r, "bars", 0) for r in self.rows], dtype=np.int64)

    @property
    def notes(self) -> np.ndarray:
        return np.array([r.notes for r in self.rows], dtype=np.int64)

    def mask(self) -> np.ndarray:
        return np.stack([r.grammar.row_mask(r) for r in self.rows])


class Grammar:
    """Base: subclasses define a row state, its mask and its update."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tok = tokenizer
        self.vocab = tokenizer.vocab
        self.size = tokenizer.vocab.size
        self.pad_only = self._mask()
        self.pad_only[tokenizer.pad_id] = True
        self.eos_only = self._mask()
        self.eos_only[tokenizer.eos_id] = True

    def _mask(self, *kinds: str) -> np.ndarray:
        return self.vocab.mask(*kinds) if kinds else np.zeros(self.size, dtype=bool)

    def _kind_value(self, token: int) -> tuple[str, int]:
        return self.vocab.decode_event(int(token))

    def start(self, batch: int) -> GrammarState:
        return GrammarState([self._new_row() for _ in range(batch)])

    def advance(self, state: GrammarState, tokens: np.ndarray, strict: bool = True) -> None:
        for row, t in zip(state.rows, np.asarray(tokens).tolist()):
            if row.finished:
                continue
            if strict and not self.row_mask(row)[t]:
                raise TokenError(f"token {self.vocab.token(t)} is not allowed here")
            self._step(row, t)

    def request_end(self, state: GrammarState, rows: np.ndarray) -> None:
        for row, flag in zip(state.rows, np.asarray(rows).tolist()):
            if flag:
                row.ending = True

    def valid(self, ids: np.ndarray | list[int]) -> bool:
        """Whether a whole sequence (BOS ... EOS) is one the masks allow."""
        ids = list(np.asarray(ids).tolist())
        if not ids or ids[0] != self.tok.bos_id:
            return False
        st = self.start(1)
        for t in ids[1:]:
            if st.rows[0].finished or not self.row_mask(st.rows[0])[t]:
                return False
            self._step(st.rows[0], t)
        return bool(st.rows[0].finished)

    # subclass hooks
    def _new_row(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def row_mask(self, row) -> np.ndarray:  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def _step(self, row, token: int) -> None:  # type: ignore[no-untyped-def]
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------------ beat


@dataclass
class _BeatRow:
    grammar: BeatGrammar
    last: str = "BOS"  # kind of the last token
    last_value: int = -1
    bars: int = 0
    bar_len: int = 0
    ts: int = -1
    pos: int = -1  # position in the bar, -1 before the first POSITION of the bar
    tempo: int = -1
    prog: int = -1
    vel: int = -1
    pos_prog: int = -1  # program of the last note at this position
    pos_pitch: int = -1  # pitch of the last note of pos_prog at this position
    note_dur: int = 0  # grid steps of the last note so far (its DURATIONs summed)
    dur_floor: int = 0  # the least total duration the note being written may have (a unison's order)
    vel_unison: bool = True  # whether the note after this VELOCITY may be a unison (not once ending)
    seconds: float = 0.0
    sec_per_step: float = 0.0
    notes: int = 0
    finished: bool = False
    ending: bool = False


class BeatGrammar(Grammar):
    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__(tokenizer)
        v = self.vocab
        self.o_pos = v.offset("POSITION")
        self.o_ts = v.offset("TIME_SIGNATURE")
        self.o_tempo = v.offset("TEMPO")
        self.o_prog = v.offset("PROGRAM")
        self.o_vel = v.offset("VELOCITY")
        self.o_pitch = v.offset("PITCH")
        self.pitch_min = v.range("PITCH").min
        self.n_pitch = v.range("PITCH").size
        self.o_dur = v.offset("DURATION")
        self.max_dur = v.range("DURATION").max
        self.bar_id = v.encode_event("BAR")
        self.res = tokenizer.config.beat_resolution
        self.bar_steps = tokenizer.bar_steps  # type: ignore[attr-defined]
        self.tempo_values = tokenizer.tempo_values  # type: ignore[attr-defined]
        self.m_ts = self._mask("TIME_SIGNATURE")
        self.m_tempo = self._mask("TEMPO")
        self.m_dur = self._mask("DURATION")

    def _new_row(self) -> _BeatRow:
        return _BeatRow(self)

    def row_mask(self, r: _BeatRow) -> np.ndarray:
        if r.finished:
            return self.pad_only
        m = self._mask()
        last = r.last
        if last == "BOS":
            m[self.bar_id] = True
        elif last == "BAR" and r.ts < 0:  # the first bar states its time signature ...
            m |= self.m_ts
        elif last == "TIME_SIGNATURE" and r.tempo < 0:  # ... and starts at position 0 ...
            m[self.o_pos] = True
        elif last == "POSITION" and r.tempo < 0:  # ... with the tempo
            m |= self.m_tempo
        elif last in ("BAR", "TIME_SIGNATURE"):
            m[self.o_pos : self.o_pos + r.bar_len] = True
            if last == "BAR":  # a time signature only when it changes
                m[self.o_ts : self.o_ts + len(self.bar_steps)] = True
                m[self.o_ts + r.ts] = False
            if not r.ending:  # an empty bar (a piece never ends on one)
                m[self.bar_id] = True
        elif last == "POSITION":  # a position holds a tempo change or notes
            m |= self.m_tempo
            m[self.o_tempo + r.tempo] = False
            self._note_start(r, m)
        elif last == "TEMPO":
            self._note_start(r, m)
            self._after_event(r, m)
            if r.notes:
                m[self.tok.eos_id] = True
        elif last == "PROGRAM":
            self._velocity_or_pitch(r, m)
        elif last == "VELOCITY":  # its note (a unison if one was allowed when the VELOCITY came)
            self._pitches(r, m, self._pitch_floor(r, unison=r.vel_unison))
        elif last == "PITCH":
            self._durations(r, m)
        elif last == "DURATION":
            if r.last_value == self.max_dur:  # a maximal duration may chain ...
                self._durations(r, m)
                if r.note_dur < r.dur_floor:  # ... and must, while the note is shorter than its unison
                    return m
            self._note_start(r, m)
            self._after_event(r, m)
            m[self.tok.eos_id] = True
        return m

    def _bar_or_end(self, r: _BeatRow, m: np.ndarray) -> None:
        """A new bar; once the end is requested, EOS instead, so the piece stops on a bar line."""
        m[self.tok.eos_id if r.ending else self.bar_id] = True

    def _after_event(self, r: _BeatRow, m: np.ndarray) -> None:
        """After a complete event: a later position in this bar, or a new bar."""
        m[self.o_pos + r.pos + 1 : self.o_pos + r.bar_len] = True
        self._bar_or_end(r, m)

    def _note_start(self, r: _BeatRow, m: np.ndarray) -> None:
        # a program change: any other program at a new position, a higher one within a position
        lo = r.pos_prog + 1 if r.pos_prog >= 0 else 0
        m[self.o_prog + lo : self.o_prog + 129] = True
        if r.prog >= 0:
            m[self.o_prog + r.prog] = False
            self._velocity_or_pitch(r, m)

    def _durations(self, r: _BeatRow, m: np.ndarray) -> None:
        """The next DURATION of a note: a unison's notes (one program, pitch and position) never get shorter.

        The encoder writes them ordered by total duration, so the note must reach ``dur_floor``: a
        DURATION that would end it short is masked, and so is ending it after a maximal one (see row_mask).
        """
        need = r.dur_floor - r.note_dur
        if need > self.max_dur:
            m[self.o_dur + self.max_dur - 1] = True
        else:
            m[self.o_dur + max(need, 1) - 1 : self.o_dur + self.max_dur] = True

    def _velocity_or_pitch(self, r: _BeatRow, m: np.ndarray) -> None:
        floor = self._pitch_floor(r, unison=not r.ending)
        if floor > self.pitch_min + self.n_pitch - 1:
            return  # no pitch left at this position for this program
        n_vel = self.vocab.range("VELOCITY").size
        m[self.o_vel : self.o_vel + n_vel] = True
        if r.vel >= 0:
            m[self.o_vel + r.vel] = False
            self._pitches(r, m, floor)

    def _pitch_floor(self, r: _BeatRow, unison: bool) -> int:
        """Lowest pitch allowed next: notes at one position never fall in pitch within a program.

        The same pitch again is a unison (two voices on one note), ordered by duration (``_durations``);
        once the end is requested no new one is begun (``unison=False``), so that an ending piece cannot
        stack notes on one pitch for ever.
        """
        if r.pos_prog != r.prog or r.pos_pitch < 0:
            return self.pitch_min
        return r.pos_pitch if unison else r.pos_pitch + 1

    def _pitches(self, r: _BeatRow, m: np.ndarray, lo: int) -> None:
        m[self.o_pitch + lo - self.pitch_min : self.o_pitch + self.n_pitch] = True

    def _step(self, r: _BeatRow, t: int) -> None:
        kind, val = self._kind_value(t)
        if kind == "EOS":
            r.finished = True
        elif kind == "BAR":
            if r.bars:  # time to the end of the previous bar
                r.seconds += (r.bar_len - max(r.pos, 0)) * r.sec_per_step
            r.bars += 1
            r.pos = -1
            r.pos_prog = r.pos_pitch = -1
        elif kind == "TIME_SIGNATURE":
            r.ts = val
            r.bar_len = int(self.bar_steps[val])
        elif kind == "POSITION":
            r.seconds += (val - max(r.pos, 0)) * r.sec_per_step
            r.pos = val
            r.pos_prog = r.pos_pitch = -1
        elif kind == "TEMPO":
            r.tempo = val
            r.sec_per_step = 60.0 / (float(self.tempo_values[val]) * self.res)
        elif kind == "PROGRAM":
            r.prog = val
        elif kind == "VELOCITY":
            r.vel = val
            r.vel_unison = not r.ending
        elif kind == "PITCH":
            unison = r.pos_prog == r.prog and r.pos_pitch == val
            r.dur_floor = r.note_dur if unison else 0
            r.note_dur = 0
            r.pos_prog, r.pos_pitch = r.prog, val
            r.notes += 1
        elif kind == "DURATION":
            r.note_dur += val
        elif kind == "PAD":
            return
        r.last, r.last_value = kind, val


# ----------------------------------------------------------------------------------------------- performance


@dataclass
class _PerfRow:
    grammar: PerformanceGrammar
    last: str = "BOS"
    last_value: int = -1
    prog: int = -1
    vel: int = -1
    steps: int = 0
    # notes sounding per (program, pitch): same-pitch notes may overlap, so a count
    sounding: np.ndarray = field(default_factory=lambda: np.zeros((129, 128), dtype=np.int32))
    n_sounding: int = 0
    # at the current instant: whether a NOTE_ON came yet, and the last (program, pitch) key emitted
    instant_on: bool = False
    instant_key: int = -1
    notes: int = 0
    finished: bool = False
    ending: bool = False
    seconds: float = 0.0


#: At most this many notes sound at once in a sampled performance (real music rarely has more than 20).
MAX_POLYPHONY = 64


class PerformanceGrammar(Grammar):
    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__(tokenizer)
        v = self.vocab
        self.o_prog = v.offset("PROGRAM")
        self.o_vel = v.offset("VELOCITY")
        self.n_vel = v.range("VELOCITY").size
        self.o_on = v.offset("NOTE_ON")
        self.o_off = v.offset("NOTE_OFF")
        self.pitch_min = v.range("NOTE_ON").min
        self.n_pitch = v.range("NOTE_ON").size
        self.o_shift = v.offset("TIME_SHIFT")
        self.max_shift = v.range("TIME_SHIFT").max
        self.step_s = tokenizer.config.time_shift_ms / 1000.0
        self.m_shift = self._mask("TIME_SHIFT")

    def _new_row(self) -> _PerfRow:
        return _PerfRow(self)

    def row_mask(self, r: _PerfRow) -> np.ndarray:
        if r.finished:
            return self.pad_only
        m = self._mask()
        if r.last == "VELOCITY":  # a velocity is followed by its note
            self._note_ons(r, m, _program(r))
            return m
        if r.last == "PROGRAM":  # a program change is followed by a note event
            self._note_events(r, m, r.prog, after_program=True)
            return m
        # an event boundary: after BOS, a note event or a time shift
        if r.ending and r.n_sounding == 0:
            m[self.tok.eos_id] = True
            return m
        closable = self._closable_now(r) if r.ending else False
        if not closable and (r.last != "TIME_SHIFT" or r.last_value == self.max_shift):
            m |= self.m_shift  # long gaps chain maximal shifts; when ending, only to reach a note-off
        if r.prog >= 0:
            self._note_events(r, m, r.prog)
        # another program, if its events still fit the order at this instant: NOTE_ONs of any program
        # may follow the NOTE_OFFs, but once NOTE_ONs began, only programs from the current one up
        lo = r.instant_key // 128 if r.instant_on else 0
        m[self.o_prog + lo : self.o_prog + 129] = True
        if r.prog >= 0:
            m[self.o_prog + r.prog] = False
        if r.ending or r.n_sounding >= MAX_POLYPHONY:  # only programs that can close a note now
            can_close = (r.sounding > 0).any(axis=1)
            if r.instant_on:
                can_close[:] = False
            elif r.instant_key >= 0:
                can_close[: r.instant_key // 128 + 1] = False
            m[self.o_prog : self.o_prog + 129] &= can_close
        if not r.ending and r.n_sounding == 0 and r.notes > 0 and r.last != "TIME_SHIFT":
            m[self.tok.eos_id] = True  # the encoder ends on the last note-off, never on silence
        return m

    @staticmethod
    def _key_floor(r: _PerfRow, prog: int) -> int:
        """Lowest pitch of ``prog`` the next event of this instant's phase may have (128: none).

        Events at an instant come in (program, pitch) order; a pitch may repeat (a unison's two
        NOTE_ONs, or the NOTE_OFFs of two same-pitch notes ending together).
        """
        if r.instant_key < prog * 128:
            return 0
        return min(r.instant_key - prog * 128, 128)

    def _note_events(self, r: _PerfRow, m: np.ndarray, prog: int, after_program: bool = False) -> None:
        """NOTE_OFFs of sounding notes first at an instant, then VELOCITY/NOTE_ON; each in key order."""
        closing = False
        if not r.instant_on:
            lo = self._key_floor(r, prog)
            if lo < 128:
                offs = r.sounding[prog, self.pitch_min : self.pitch_min + self.n_pitch] > 0
                offs[: max(lo - self.pitch_min, 0)] = False
                m[self.o_off : self.o_off + self.n_pitch] = offs
                closing = bool(offs.any())
        if r.ending and (closing or not after_program):
            return  # when ending, only close notes (a program change made before the end completes its event)
        if self._note_ons(r, m, prog) or r.vel < 0:
            m[self.o_vel : self.o_vel + self.n_vel] = True
            if r.vel >= 0:
                m[self.o_vel + r.vel] = False
            if r.vel < 0 and not self._note_ons(r, self._mask(), prog, ignore_velocity=True):
                m[self.o_vel : self.o_vel + self.n_vel] = False

    def _closable_now(self, r: _PerfRow) -> bool:
        """Whether some sounding note may be switched off at this instant (key order allowing)."""
        if r.instant_on or r.n_sounding == 0:
            return False
        if r.instant_key < 0:
            return True
        prog, pitch = divmod(r.instant_key, 128)
        return bool((r.sounding[prog, pitch:] > 0).any() or (r.sounding[prog + 1 :] > 0).any())

    def _note_ons(self, r: _PerfRow, m: np.ndarray, prog: int, ignore_velocity: bool = False) -> bool:
        """Allow the NOTE_ONs that may come next; whether there is any.

        A sounding pitch may start again (the encoder writes overlapping same-pitch notes, which pair
        first-in-first-out), so only the key order and the polyphony cap limit them.
        """
        if r.vel < 0 and not ignore_velocity:
            return False
        lo = self._key_floor(r, prog) if r.instant_on else 0
        lo = max(lo - self.pitch_min, 0)
        if lo >= self.n_pitch or r.n_sounding >= MAX_POLYPHONY:
            return False
        m[self.o_on + lo : self.o_on + self.n_pitch] = True
        return True

    def _step(self, r: _PerfRow, t: int) -> None:
        kind, val = self._kind_value(t)
        if kind == "EOS":
            r.finished = True
        elif kind == "TIME_SHIFT":
            r.steps += val
            r.seconds = r.steps * self.step_s
            r.instant_on, r.instant_key = False, -1
        elif kind == "PROGRAM":
            r.prog = val
        elif kind == "VELOCITY":
            r.vel = val
        elif kind == "NOTE_ON":
            p = _program(r)
            r.sounding[p, val] += 1
            r.n_sounding += 1
            r.notes += 1
            r.instant_on, r.instant_key = True, p * 128 + val
        elif kind == "NOTE_OFF":
            p = _program(r)
            if r.sounding[p, val]:
                r.sounding[p, val] -= 1
                r.n_sounding -= 1
            r.instant_key = p * 128 + val
        elif kind == "PAD":
            return
        r.last, r.last_value = kind, val


def _program(r: _PerfRow) -> int:
    """The program note events apply to: before any PROGRAM (a lenient primer), 0, as the decoder reads it."""
    return r.prog if r.prog >= 0 else 0


def grammar_for(tokenizer: Tokenizer) -> Grammar:
    if tokenizer.encoding == "beat":
        return BeatGrammar(tokenizer)
    return PerformanceGrammar(tokenizer)
