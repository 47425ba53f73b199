"""The ``beat`` encoding's grammar: what may come next, so that a sampled sequence is one the encoder writes.

A TIME_SIGNATURE only right after a BAR, positions strictly increasing inside a bar, notes at a position
ordered by program, then pitch, then duration (a unison, two notes of one program and pitch at one
position, comes shorter first), DURATION only after PITCH (or after a maximal DURATION, which chains),
TEMPO only right after a POSITION. Once the end is requested the bar in progress is finished and the piece
stops on its bar line. ``limit_unisons`` caps how many notes a unison may have, ``limit_empty_bars`` how
many empty bars may come in a row (sampling does both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from composer.tokenizer.grammar import Grammar, Row
from composer.tokenizer.vocab import Vocabulary


@dataclass
class BeatRow(Row):
    bar_len: int = 0
    ts: int = -1
    pos: int = -1  # position in the bar, -1 before the first POSITION of the bar
    tempo: int = -1
    prog: int = -1
    vel: int = -1
    pos_prog: int = -1  # program of the last note at this position
    pos_pitch: int = -1  # pitch of the last note of pos_prog at this position
    pos_unison: int = 0  # notes of pos_prog at pos_pitch at this position so far
    bar_notes: int = 0  # notes in the bar in progress
    empty_run: int = 0  # empty bars in a row just before the bar in progress
    note_dur: int = 0  # grid steps of the last note so far (its DURATIONs summed)
    dur_floor: int = 0  # the least total duration the note being written may have (a unison's order)
    vel_unison: bool = True  # whether the note after this VELOCITY may be a unison (not once ending)
    sec_per_step: float = 0.0


class BeatGrammar(Grammar[BeatRow]):
    """The beat encoding's order (see the module docstring).

    ``resolution`` is the grid (steps per quarter), ``bar_steps`` the bar length in steps of each
    TIME_SIGNATURE value and ``tempo_values`` the bpm of each TEMPO value: what the clock counts with.
    """

    close_kinds = (
        ("EOS", 0), ("DURATION", 1), ("TEMPO", 2), ("PROGRAM", 3), ("PITCH", 4), ("VELOCITY", 4),
        ("POSITION", 10), ("BAR", 30), ("TIME_SIGNATURE", 30),
    )  # fmt: skip

    def __init__(
        self, vocab: Vocabulary, resolution: int, bar_steps: np.ndarray, tempo_values: np.ndarray
    ) -> None:
        super().__init__(vocab)
        v = self.vocab
        self.o_pos = v.offset("POSITION")
        self.o_ts = v.offset("TIME_SIGNATURE")
        self.o_tempo = v.offset("TEMPO")
        self.o_prog = v.offset("PROGRAM")
        self.n_prog = v.range("PROGRAM").size
        self.o_vel = v.offset("VELOCITY")
        self.o_pitch = v.offset("PITCH")
        self.pitch_min = v.range("PITCH").min
        self.n_pitch = v.range("PITCH").size
        self.o_dur = v.offset("DURATION")
        self.max_dur = v.range("DURATION").max
        self.bar_id = v.encode_event("BAR")
        self.res = resolution
        self.bar_steps = bar_steps
        self.tempo_values = tempo_values
        self.m_ts = self._mask("TIME_SIGNATURE")
        self.m_tempo = self._mask("TEMPO")

    def close_costs(self) -> np.ndarray:
        cost = super().close_costs()
        cost[self.o_dur + self.max_dur - 1] = 40  # a maximal duration chains on
        return cost

    def _new_row(self) -> BeatRow:
        return BeatRow()

    def row_mask(self, r: BeatRow) -> np.ndarray:
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
            if not r.ending and self._may_leave_empty(r):  # an empty bar (a piece never ends on one)
                m[self.bar_id] = True
        elif last == "POSITION":  # a position holds a tempo change or notes
            m |= self.m_tempo
            m[self.o_tempo + r.tempo] = False
            self._note_start(r, m)
        elif last == "TEMPO":
            self._note_start(r, m)
            self._after_event(r, m)
            if r.notes:
                m[self.eos_id] = True
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
            m[self.eos_id] = True
        return m

    def _may_leave_empty(self, r: BeatRow) -> bool:
        """Whether the bar in progress, empty so far, may end empty (``limit_empty_bars``)."""
        return self.max_empty_bars is None or r.empty_run < self.max_empty_bars

    def _bar_or_end(self, r: BeatRow, m: np.ndarray) -> None:
        """A new bar; once the end is requested, EOS instead, so the piece stops on a bar line."""
        m[self.eos_id if r.ending else self.bar_id] = True

    def _after_event(self, r: BeatRow, m: np.ndarray) -> None:
        """After a complete event: a later position in this bar, or a new bar."""
        m[self.o_pos + r.pos + 1 : self.o_pos + r.bar_len] = True
        self._bar_or_end(r, m)

    def _note_start(self, r: BeatRow, m: np.ndarray) -> None:
        # a program change: any other program at a new position, a higher one within a position
        lo = r.pos_prog + 1 if r.pos_prog >= 0 else 0
        m[self.o_prog + lo : self.o_prog + self.n_prog] = True
        if r.prog >= 0:
            m[self.o_prog + r.prog] = False
            self._velocity_or_pitch(r, m)

    def _durations(self, r: BeatRow, m: np.ndarray) -> None:
        """The next DURATION of a note: a unison's notes (one program, pitch and position) never get shorter.

        The encoder writes them ordered by total duration, so the note must reach ``dur_floor``: a
        DURATION that would end it short is masked, and so is ending it after a maximal one (see row_mask).
        """
        need = r.dur_floor - r.note_dur
        if need > self.max_dur:
            m[self.o_dur + self.max_dur - 1] = True
        else:
            m[self.o_dur + max(need, 1) - 1 : self.o_dur + self.max_dur] = True

    def _velocity_or_pitch(self, r: BeatRow, m: np.ndarray) -> None:
        floor = self._pitch_floor(r, unison=not r.ending)
        if floor > self.pitch_min + self.n_pitch - 1:
            return  # no pitch left at this position for this program
        n_vel = self.vocab.range("VELOCITY").size
        m[self.o_vel : self.o_vel + n_vel] = True
        if r.vel >= 0:
            m[self.o_vel + r.vel] = False
            self._pitches(r, m, floor)

    def _pitch_floor(self, r: BeatRow, unison: bool) -> int:
        """Lowest pitch allowed next: notes at one position never fall in pitch within a program.

        The same pitch again is a unison (two voices on one note), ordered by duration (``_durations``);
        once the end is requested no new one is begun (``unison=False``), so that an ending piece cannot
        stack notes on one pitch for ever.
        """
        if r.pos_prog != r.prog or r.pos_pitch < 0:
            return self.pitch_min
        if self.max_unison is not None and r.pos_unison >= self.max_unison:
            unison = False
        return r.pos_pitch if unison else r.pos_pitch + 1

    def _pitches(self, r: BeatRow, m: np.ndarray, lo: int) -> None:
        m[self.o_pitch + lo - self.pitch_min : self.o_pitch + self.n_pitch] = True

    def _step(self, r: BeatRow, t: int) -> None:
        kind, val = self._kind_value(t)
        if kind == "EOS":
            r.finished = True
        elif kind == "BAR":
            if r.bars:  # time to the end of the previous bar
                r.seconds += (r.bar_len - max(r.pos, 0)) * r.sec_per_step
                r.empty_run = r.empty_run + 1 if r.bar_notes == 0 else 0
            r.bar_notes = 0
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
            r.pos_unison = r.pos_unison + 1 if unison else 1
            r.note_dur = 0
            r.pos_prog, r.pos_pitch = r.prog, val
            r.notes += 1
            r.bar_notes += 1
        elif kind == "DURATION":
            r.note_dur += val
        elif kind == "PAD":
            return
        r.last, r.last_value = kind, val
