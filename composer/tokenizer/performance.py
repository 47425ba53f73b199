"""The ``performance`` encoding: Performance RNN's event vocabulary, extended for multitrack files.

NOTE_ON and NOTE_OFF per pitch, TIME_SHIFT in ``time_shift_ms`` steps up to ``max_shift_ms`` (longer gaps
become several maximal shifts), VELOCITY in ``velocity_bins`` bins emitted only when it changes, and
PROGRAM (0..127 or DRUMS) emitted when the instrument of the next event changes::

    BOS PROGRAM_0 VELOCITY_20 NOTE_ON_60 TIME_SHIFT_50 NOTE_OFF_60 ... EOS

Same-pitch notes of one instrument pair first-in-first-out, as a MIDI device pairs note-ons and note-offs;
at one instant NOTE_OFFs come before NOTE_ONs, so repeated notes stay separate. A NOTE_OFF names no note,
so a note nested in a longer one of its pitch comes back re-paired (the first on ends at the first off);
the encoder counts such notes (``EncodeStats.same_pitch_repaired``).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature, program_name
from composer.tokenizer.base import DRUMS, PROGRAM_LABELS, EncodeStats, Tokenizer
from composer.tokenizer.performance_grammar import PITCHES, PerformanceGrammar
from composer.tokenizer.vocab import TokenRange

TIME_SHIFT, PROGRAM, VELOCITY, NOTE_ON, NOTE_OFF = "TIME_SHIFT", "PROGRAM", "VELOCITY", "NOTE_ON", "NOTE_OFF"
#: Decoded files use this tempo and resolution: one tick is exactly 1 ms, so every time step is whole ticks.
DECODE_QPM, DECODE_TPQ = 120.0, 500


class PerformanceTokenizer(Tokenizer):
    note_kind = NOTE_ON
    pitch_kinds = (NOTE_ON, NOTE_OFF)
    supports_time_stretch = True

    def _ranges(self) -> list[TokenRange]:
        c = self.config
        return [
            TokenRange(PROGRAM, 0, DRUMS, PROGRAM_LABELS),
            TokenRange(VELOCITY, 0, c.velocity_bins - 1),
            TokenRange(NOTE_ON, c.pitch_min, c.pitch_max),
            TokenRange(NOTE_OFF, c.pitch_min, c.pitch_max),
            TokenRange(TIME_SHIFT, 1, c.max_shift_ms // c.time_shift_ms),
        ]

    @property
    def max_shift_steps(self) -> int:
        return self.config.max_shift_ms // self.config.time_shift_ms

    def encode(self, score: Score) -> tuple[np.ndarray, EncodeStats]:
        c = self.config
        notes, stats = self._notes_to_encode(score)
        step = c.time_shift_ms / 1000.0
        on_s = score.ticks_to_seconds(notes.start)
        off_s = score.ticks_to_seconds(notes.end)
        on = np.rint(on_s / step).astype(np.int64)
        off = np.maximum(np.rint(off_s / step).astype(np.int64), on + 1)  # a note lasts at least one step
        # The decoder pairs same-pitch notes of one program first-in-first-out, so the k-th NOTE_OFF of a
        # (program, pitch) ends its k-th NOTE_ON: the pairs decoded are the sorted starts with the sorted ends
        # (at least one step each, as every end is after the start of its own note). NOTE_ONs at one step
        # are written shortest note first, so a note that keeps its pair keeps its velocity too.
        key = notes.program * PITCHES + notes.pitch
        by_on = np.lexsort((off, on, key))
        by_off = np.lexsort((off, key))
        on_sorted, off_sorted = on[by_on], off[by_off]
        key_s = key[by_on]
        stats.same_pitch_repaired = _repaired(key_s, on_sorted, off[by_on], off_sorted)
        vel = self._vel_bin[np.clip(notes.velocity[by_on], 1, 127)]
        n = len(key_s)
        # events: (time, is_on, program, pitch, velocity bin)
        t = np.concatenate([off_sorted, on_sorted])
        is_on = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)])
        k = np.concatenate([key_s, key_s])
        vb = np.concatenate([np.zeros(n, np.int64), vel])
        order = np.lexsort((k, is_on, t))

        v = self.vocab
        o_shift, o_prog, o_vel = v.offset(TIME_SHIFT) - 1, v.offset(PROGRAM), v.offset(VELOCITY)
        o_on, o_off = v.offset(NOTE_ON) - c.pitch_min, v.offset(NOTE_OFF) - c.pitch_min
        max_steps = self.max_shift_steps
        out = [self.bos_id]
        append = out.append
        now = 0
        cur_prog = cur_vel = -1
        for tt, on_flag, kk, vv in zip(
            t[order].tolist(), is_on[order].tolist(), k[order].tolist(), vb[order].tolist()
        ):
            gap = tt - now
            if gap > 0:
                full, rest = divmod(gap, max_steps)
                out.extend([o_shift + max_steps] * full)
                if rest:
                    append(o_shift + rest)
                now = tt
            prog, pitch = divmod(kk, PITCHES)
            if prog != cur_prog:
                append(o_prog + prog)
                cur_prog = prog
            if on_flag:
                if vv != cur_vel:
                    append(o_vel + vv)
                    cur_vel = vv
                append(o_on + pitch)
            else:
                append(o_off + pitch)
        append(self.eos_id)
        return np.array(out, dtype=np.uint16), stats

    def decode(self, ids: np.ndarray | list[int]) -> Score:
        from collections import deque

        c = self.config
        v = self.vocab
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < v.size)]
        kinds = [v.ranges[k].kind for k in v.kind_of[ids].tolist()]
        values = v.value_of[ids].tolist()
        ticks_per_step = DECODE_TPQ * DECODE_QPM / 60.0 * c.time_shift_ms / 1000.0
        now = 0  # steps
        prog = 0
        vel = self.bin_velocity(min(c.velocity_bins - 1, c.velocity_bins * 5 // 8))
        open_notes: dict[tuple[int, int], deque[tuple[int, int]]] = {}
        by_prog: dict[int, list[Note]] = {}

        def tick(steps: int) -> int:
            return int(round(steps * ticks_per_step))

        for kind, val in zip(kinds, values):
            if kind == TIME_SHIFT:
                now += val
            elif kind == PROGRAM:
                prog = val
            elif kind == VELOCITY:
                vel = self.bin_velocity(val)
            elif kind == NOTE_ON:
                open_notes.setdefault((prog, val), deque()).append((now, vel))
            elif kind == NOTE_OFF:
                q = open_notes.get((prog, val))
                if q:
                    start, nv = q.popleft()
                    by_prog.setdefault(prog, []).append(Note(val, nv, tick(start), tick(max(now, start + 1))))
            elif kind == "EOS":
                break
        for (p, pitch), q in open_notes.items():  # notes never closed end with the piece
            for start, nv in q:
                by_prog.setdefault(p, []).append(Note(pitch, nv, tick(start), tick(max(now, start + 1))))
        score = Score(ticks_per_beat=DECODE_TPQ, tempos=[TempoChange(0, DECODE_QPM)])
        score.time_signatures = [TimeSignature(0, 4, 4)]
        for p in sorted(by_prog):
            drum = p == DRUMS
            notes = sorted(by_prog[p], key=lambda nt: (nt.start, nt.pitch))
            score.instruments.append(
                Instrument(program=0 if drum else p, is_drum=drum, name=program_name(p, drum), notes=notes)
            )
        return score

    def time_stretch_lut(self, factor: float) -> np.ndarray:
        lut = self._identity()
        o = self.vocab.offset(TIME_SHIFT)
        n = self.max_shift_steps
        steps = np.arange(1, n + 1)
        lut[o : o + n] = o + np.clip(np.rint(steps * factor).astype(np.int64), 1, n) - 1
        return lut

    def grammar(self) -> PerformanceGrammar:
        return PerformanceGrammar(self.vocab, self.config.time_shift_ms / 1000.0)

    def retime(self, score: Score, bpm: float) -> Score:
        """The notes keep their times in seconds; the ticks are rescaled (at a resolution of at least 1 ms
        per tick) so that a DAW's grid shows ``bpm``."""
        new_tpq = next(t for t in (480, 960, 1920, 3840, 7680) if t >= 60_000 / bpm)
        old_t0, old_s0, old_spt = score.tempo_map()
        factor = bpm * new_tpq / 60.0  # ticks per second at the new tempo

        def conv(tick: int) -> int:
            i = int(np.searchsorted(old_t0, tick, side="right") - 1)
            return int(round((old_s0[i] + (tick - old_t0[i]) * old_spt[i]) * factor))

        for inst in score.instruments:
            for nt in inst.notes:
                nt.start, nt.end = conv(nt.start), max(conv(nt.end), conv(nt.start) + 1)
        score.time_signatures = [
            TimeSignature(conv(ts.tick), ts.numerator, ts.denominator) for ts in score.time_signatures
        ]
        score.ticks_per_beat = new_tpq
        score.tempos = [TempoChange(0, float(bpm))]
        return score


def _repaired(key: np.ndarray, on: np.ndarray, off: np.ndarray, off_fifo: np.ndarray) -> int:
    """How many notes first-in-first-out pairing gives another (start, end) in steps: of a note nested in
    a longer one of its pitch, both. ``on``, ``off``: each note's, sorted by (key, on); ``off_fifo``: the
    ends sorted per key, the one each start is paired with. Counted as a multiset: a decoded (start, end)
    that some note of the key had is kept."""
    if np.array_equal(off, off_fifo):
        return 0
    diff = off != off_fifo
    touched = np.isin(key, np.unique(key[diff]))
    k, s = key[touched].tolist(), on[touched].tolist()
    kept = Counter(zip(k, s, off[touched].tolist())) & Counter(zip(k, s, off_fifo[touched].tolist()))
    return int(touched.sum()) - sum(kept.values())
