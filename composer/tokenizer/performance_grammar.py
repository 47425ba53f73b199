"""The ``performance`` encoding's grammar: what may come next, so that a sampled sequence is one it writes.

A NOTE_OFF only for a sounding note, every NOTE_OFF before every NOTE_ON at one instant and each in
(program, pitch) order, a pitch repeating where two notes of it start or end together (a sounding pitch
may start again: same-pitch notes pair first-in-first-out), VELOCITY and PROGRAM only when they change and
right before a note event. Once the end is requested only note-offs (and the time shifts to reach them)
follow, so the piece closes every sounding note. The one exception to "exactly what the encoder writes"
is the polyphony cap (``MAX_SAMPLED_POLYPHONY``): more notes sounding at once are valid data the sampler
never writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from composer.tokenizer.grammar import Grammar, Row
from composer.tokenizer.vocab import Vocabulary

#: MIDI pitches 0..127: a note's (program, pitch) key is ``program * PITCHES + pitch``.
PITCHES = 128
#: At most this many notes sound at once in a sampled performance (far more than real music holds).
MAX_SAMPLED_POLYPHONY = 64


@dataclass
class PerformanceRow(Row):
    prog: int = -1
    vel: int = -1
    steps: int = 0
    # notes sounding per (program, pitch): same-pitch notes may overlap, so a count
    sounding: np.ndarray = field(default_factory=lambda: np.zeros((0, PITCHES), dtype=np.int32))
    n_sounding: int = 0
    # at the current instant: whether a NOTE_ON came yet, and the last (program, pitch) key emitted
    instant_on: bool = False
    instant_key: int = -1


class PerformanceGrammar(Grammar[PerformanceRow]):
    """The performance encoding's order (see the module docstring); ``step_s`` is one TIME_SHIFT step."""

    close_kinds = (
        ("EOS", 0), ("NOTE_OFF", 1), ("PROGRAM", 3), ("VELOCITY", 4), ("NOTE_ON", 20), ("TIME_SHIFT", 10),
    )  # fmt: skip

    def __init__(self, vocab: Vocabulary, step_s: float) -> None:
        super().__init__(vocab)
        v = self.vocab
        self.o_prog = v.offset("PROGRAM")
        self.n_prog = v.range("PROGRAM").size
        self.o_vel = v.offset("VELOCITY")
        self.n_vel = v.range("VELOCITY").size
        self.o_on = v.offset("NOTE_ON")
        self.o_off = v.offset("NOTE_OFF")
        self.pitch_min = v.range("NOTE_ON").min
        self.n_pitch = v.range("NOTE_ON").size
        self.o_shift = v.offset("TIME_SHIFT")
        self.max_shift = v.range("TIME_SHIFT").max
        self.step_s = step_s
        self.m_shift = self._mask("TIME_SHIFT")

    def _new_row(self) -> PerformanceRow:
        return PerformanceRow(sounding=np.zeros((self.n_prog, PITCHES), dtype=np.int32))

    def row_mask(self, r: PerformanceRow) -> np.ndarray:
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
            m[self.eos_id] = True
            return m
        closable = self._closable_now(r) if r.ending else False
        if not closable and (r.last != "TIME_SHIFT" or r.last_value == self.max_shift):
            m |= self.m_shift  # long gaps chain maximal shifts; when ending, only to reach a note-off
        if r.prog >= 0:
            self._note_events(r, m, r.prog)
        # another program, if its events still fit the order at this instant: NOTE_ONs of any program
        # may follow the NOTE_OFFs, but once NOTE_ONs began, only programs from the current one up
        lo = r.instant_key // PITCHES if r.instant_on else 0
        m[self.o_prog + lo : self.o_prog + self.n_prog] = True
        if r.prog >= 0:
            m[self.o_prog + r.prog] = False
        if r.ending or r.n_sounding >= MAX_SAMPLED_POLYPHONY:  # only programs that can close a note now
            can_close: np.ndarray = np.any(r.sounding > 0, axis=1)
            if r.instant_on:
                can_close[:] = False
            elif r.instant_key >= 0:
                can_close[: r.instant_key // PITCHES + 1] = False
            m[self.o_prog : self.o_prog + self.n_prog] &= can_close
        if not r.ending and r.n_sounding == 0 and r.notes > 0 and r.last != "TIME_SHIFT":
            m[self.eos_id] = True  # the encoder ends on the last note-off, never on silence
        return m

    @staticmethod
    def _key_floor(r: PerformanceRow, prog: int) -> int:
        """Lowest pitch of ``prog`` the next event of this instant's phase may have (PITCHES: none).

        Events at an instant come in (program, pitch) order; a pitch may repeat (a unison's two
        NOTE_ONs, or the NOTE_OFFs of two same-pitch notes ending together).
        """
        if r.instant_key < prog * PITCHES:
            return 0
        return min(r.instant_key - prog * PITCHES, PITCHES)

    def _note_events(self, r: PerformanceRow, m: np.ndarray, prog: int, after_program: bool = False) -> None:
        """NOTE_OFFs of sounding notes first at an instant, then VELOCITY/NOTE_ON; each in key order."""
        closing = False
        if not r.instant_on:
            lo = self._key_floor(r, prog)
            if lo < PITCHES:
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

    def _closable_now(self, r: PerformanceRow) -> bool:
        """Whether some sounding note may be switched off at this instant (key order allowing)."""
        if r.instant_on or r.n_sounding == 0:
            return False
        if r.instant_key < 0:
            return True
        prog, pitch = divmod(r.instant_key, PITCHES)
        return bool((r.sounding[prog, pitch:] > 0).any() or (r.sounding[prog + 1 :] > 0).any())

    def _note_ons(self, r: PerformanceRow, m: np.ndarray, prog: int, ignore_velocity: bool = False) -> bool:
        """Allow the NOTE_ONs that may come next; whether there is any.

        A sounding pitch may start again (the encoder writes overlapping same-pitch notes, which pair
        first-in-first-out), so only the key order and the polyphony cap limit them.
        """
        if r.vel < 0 and not ignore_velocity:
            return False
        lo = self._key_floor(r, prog) if r.instant_on else 0
        lo = max(lo - self.pitch_min, 0)
        if lo >= self.n_pitch or r.n_sounding >= MAX_SAMPLED_POLYPHONY:
            return False
        m[self.o_on + lo : self.o_on + self.n_pitch] = True
        return True

    def _step(self, r: PerformanceRow, t: int) -> None:
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
            r.instant_on, r.instant_key = True, p * PITCHES + val
        elif kind == "NOTE_OFF":
            p = _program(r)
            if r.sounding[p, val]:
                r.sounding[p, val] -= 1
                r.n_sounding -= 1
            r.instant_key = p * PITCHES + val
        elif kind == "PAD":
            return
        r.last, r.last_value = kind, val


def _program(r: PerformanceRow) -> int:
    """The program note events apply to: before any PROGRAM (a lenient primer), 0, as the decoder reads it."""
    return r.prog if r.prog >= 0 else 0
