"""The ``beat`` encoding: musical time, so generated music lands on a DAW's grid at the right tempo.

A piece reads as bars; inside a bar, events sit at grid positions (``beat_resolution`` per quarter, 12 by
default, so 16ths and triplets both land exactly)::

    BOS BAR TIME_SIGNATURE_4/4 POSITION_0 TEMPO_120 PROGRAM_0 VELOCITY_79 PITCH_60 DURATION_12 PITCH_64
    DURATION_12 POSITION_12 ... BAR POSITION_0 ... EOS

PROGRAM is emitted when the instrument changes, VELOCITY when the velocity bin changes, TEMPO and
TIME_SIGNATURE when they change (a time signature at the bar it starts). Notes at one position are
ordered by program (drums last), then pitch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from composer.errors import TokenError
from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature, bar_lines, program_name
from composer.tokenizer.base import (
    DRUMS,
    MAX_PIECE_BARS,
    PROGRAM_LABELS,
    EncodeStats,
    NoteArrays,
    TempoSteering,
    Tokenizer,
    lcm_ticks,
    round_div,
)
from composer.tokenizer.beat_grammar import BeatGrammar
from composer.tokenizer.beat_keep import BeatKeep
from composer.tokenizer.config import TokenizerConfig
from composer.tokenizer.vocab import TokenRange

if TYPE_CHECKING:  # pragma: no cover
    from composer.conditions import ConditionSet

BAR, POSITION, TIME_SIGNATURE, TEMPO = "BAR", "POSITION", "TIME_SIGNATURE", "TEMPO"
PROGRAM, VELOCITY, PITCH, DURATION = "PROGRAM", "VELOCITY", "PITCH", "DURATION"


class BeatTokenizer(Tokenizer):
    note_kind = PITCH
    pitch_kinds = (PITCH,)
    has_bars = True

    def __init__(self, config: TokenizerConfig, conditions: ConditionSet | None = None) -> None:
        c = config
        res = c.beat_resolution
        self.max_bar = c.max_bar_quarters * res
        self.max_duration = c.max_duration_quarters * res
        # every time signature whose bar is a whole number of grid steps and fits the longest bar
        self.time_signatures: list[tuple[int, int]] = []
        for den in (1, 2, 4, 8, 16, 32):
            for num in range(1, 65):
                steps = num * 4 * res / den
                if steps == int(steps) and steps <= self.max_bar:
                    self.time_signatures.append((num, den))
        self._ts_index = {ts: i for i, ts in enumerate(self.time_signatures)}
        self.bar_steps = np.array([num * 4 * res // den for num, den in self.time_signatures], dtype=np.int64)
        # tempo bins: 120 * 2**(k / steps) between tempo_min and tempo_max, labelled by their rounded bpm
        steps = c.tempo_steps_per_octave
        k = np.arange(
            int(np.ceil(steps * np.log2(c.tempo_min / 120))),
            int(np.floor(steps * np.log2(c.tempo_max / 120))) + 1,
        )
        self._tempo_grid = 120.0 * 2.0 ** (k / steps)  # where a file's tempo is binned
        self._tempo_labels = tuple(_unique_labels(self._tempo_grid))
        #: The tempo (bpm) of each bin: its label, which is what a decoded file gets. Every count of time
        #: in seconds (the grammar's, generation's --seconds) uses these, so it agrees with the file.
        self.tempo_values = np.array([float(lab) for lab in self._tempo_labels])
        super().__init__(config, conditions)
        self._default_ts = self._ts_index.get((4, 4), 0)

    def _ranges(self) -> list[TokenRange]:
        c = self.config
        return [
            TokenRange(BAR, 0, 0),
            TokenRange(POSITION, 0, self.max_bar - 1),
            TokenRange(
                TIME_SIGNATURE,
                0,
                len(self.time_signatures) - 1,
                tuple(f"{n}/{d}" for n, d in self.time_signatures),
            ),
            TokenRange(TEMPO, 0, len(self.tempo_values) - 1, self._tempo_labels),
            TokenRange(PROGRAM, 0, DRUMS, PROGRAM_LABELS),
            TokenRange(VELOCITY, 0, c.velocity_bins - 1),
            TokenRange(PITCH, c.pitch_min, c.pitch_max),
            TokenRange(DURATION, 1, self.max_duration),
        ]

    def tempo_bin(self, qpm: float) -> int:
        return int(np.argmin(np.abs(np.log(self._tempo_grid) - np.log(qpm))))

    def tempo_kept(self, qpm: float | np.ndarray) -> np.ndarray:
        """Per tempo, whether it decodes within half a bin of itself (plus its label's rounding to whole
        bpm, at most 0.5 bpm); the others are counted as ``tempos_clamped``.

        The grid is fixed by the vocabulary, so what this keeps is not exactly ``tempo_min..tempo_max``: the
        top bin of the default config is 311 bpm (the next one up, 325, lies above ``tempo_max``), so tempos
        above about 318 bpm come back as 311 and are counted.
        """
        q = np.atleast_1d(np.asarray(qpm, dtype=np.float64))
        grid = np.log(self._tempo_grid)
        b = np.abs(grid[None, :] - np.log(q)[:, None]).argmin(axis=1)
        got = self.tempo_values[b]
        tol = 0.5 / self.config.tempo_steps_per_octave + np.log2(1 + 0.5 / got) + 1e-12
        return np.asarray(np.abs(np.log2(got / q)) <= tol)

    def tempo_of_bin(self, b: int) -> float:
        return float(self.tempo_values[b])

    def decoded_tempo(self, qpm: float) -> float:
        return self.tempo_of_bin(self.tempo_bin(qpm))

    def grammar(self) -> BeatGrammar:
        return BeatGrammar(self.vocab, self.config.beat_resolution, self.bar_steps, self.tempo_values)

    def keep_parts(
        self,
        ids: np.ndarray,
        added: set[int],
        free_bars: tuple[int, int] | None = None,
        free_programs: set[int] | None = None,
    ) -> BeatKeep:
        return BeatKeep(self.vocab, ids, added, free_bars, free_programs)

    def retime(self, score: Score, bpm: float) -> Score:
        """The tempo map replaced by ``bpm``; the notes stay on their beats, so the length changes."""
        score.tempos = [TempoChange(0, float(bpm))]
        return score

    def tempo_steering(self, bpm: float) -> TempoSteering:
        """TEMPO tokens limited to the bin nearest ``bpm``; seconds scaled from that bin's tempo."""
        b = self.tempo_bin(bpm)
        allowed = np.ones(self.vocab.size, dtype=bool)
        allowed[self.vocab.mask(TEMPO)] = False
        allowed[self.vocab.offset(TEMPO) + b] = True
        return TempoSteering(allowed, bpm / self.tempo_of_bin(b))

    # ------------------------------------------------------------------------------------------ encode
    def encode(self, score: Score) -> tuple[np.ndarray, EncodeStats]:
        c = self.config
        res, tpq = c.beat_resolution, score.ticks_per_beat
        notes, stats = self._notes_to_encode(score)
        g_start = round_div(notes.start, res, tpq)
        g_end = round_div(notes.end, res, tpq)
        dur = np.maximum(g_end - g_start, 1)

        ts_changes = self._time_signature_changes(score, stats)
        tempos = self._tempo_changes(score, stats)
        last = int(g_start.max()) if len(g_start) else 0
        last = max(last, tempos[-1][0])
        bar_starts, bar_ts = self._bars(ts_changes, last, stats)

        events = self._events(notes, g_start, dur, tempos, bar_starts)
        return self._tokens(events, bar_ts.tolist()), stats

    def _events(
        self,
        notes: NoteArrays,
        g_start: np.ndarray,
        dur: np.ndarray,
        tempos: list[tuple[int, int]],
        bar_starts: np.ndarray,
    ) -> list[list[int]]:
        """One sorted event stream, tempo events (kind 0) before notes (kind 1) at a position, as columns:
        bar, position in the bar, kind, program or tempo bin, velocity bin, pitch, duration."""
        order = np.lexsort((dur, notes.pitch, notes.program, g_start))
        ev_g = np.concatenate([np.array([g for g, _ in tempos], np.int64), g_start[order]])
        ev_kind = np.concatenate([np.zeros(len(tempos), np.int64), np.ones(len(order), np.int64)])
        ev_a = np.concatenate([np.array([b for _, b in tempos], np.int64), notes.program[order]])
        ev_v = np.concatenate(
            [np.zeros(len(tempos), np.int64), self._vel_bin[np.clip(notes.velocity[order], 1, 127)]]
        )
        ev_p = np.concatenate([np.zeros(len(tempos), np.int64), notes.pitch[order]])
        ev_d = np.concatenate([np.zeros(len(tempos), np.int64), dur[order]])
        o2 = np.lexsort((ev_kind, ev_g))
        ev_bar = np.searchsorted(bar_starts, ev_g[o2], side="right") - 1
        ev_pos = ev_g[o2] - bar_starts[ev_bar]
        columns = (ev_bar, ev_pos, ev_kind[o2], ev_a[o2], ev_v[o2], ev_p[o2], ev_d[o2])
        return [col.tolist() for col in columns]

    def _tokens(self, events: list[list[int]], bar_ts: list[int]) -> np.ndarray:
        """Token ids (BOS ... EOS) of the event stream; ``bar_ts``: each bar's time-signature index.

        The encoder's hot loop: one pass over the events with every lookup bound to a local.
        """
        v = self.vocab
        o_bar, o_pos, o_ts = v.offset(BAR), v.offset(POSITION), v.offset(TIME_SIGNATURE)
        o_tempo, o_prog, o_vel = v.offset(TEMPO), v.offset(PROGRAM), v.offset(VELOCITY)
        o_pitch, o_dur = v.offset(PITCH) - self.config.pitch_min, v.offset(DURATION) - 1
        max_dur = self.max_duration
        out = [self.bos_id]
        append = out.append
        bi = -1
        cur_ts = cur_pos = cur_prog = cur_vel = -1
        for bar, pos, kind, a, vb, p, d in zip(*events):
            while bi < bar:
                bi += 1
                append(o_bar)
                if bar_ts[bi] != cur_ts:
                    cur_ts = bar_ts[bi]
                    append(o_ts + cur_ts)
                cur_pos = -1
            if pos != cur_pos:
                append(o_pos + pos)
                cur_pos = pos
            if kind == 0:
                append(o_tempo + a)
                continue
            if a != cur_prog:
                append(o_prog + a)
                cur_prog = a
            if vb != cur_vel:
                append(o_vel + vb)
                cur_vel = vb
            append(o_pitch + p)
            if d > max_dur:  # a long note chains maximal durations, then the rest
                full, d = divmod(d, max_dur)
                out.extend([o_dur + max_dur] * full)
                if not d:
                    continue
            append(o_dur + d)
        append(self.eos_id)
        return np.array(out, dtype=np.uint16)

    def _time_signature_changes(self, score: Score, stats: EncodeStats) -> list[tuple[int, int]]:
        """(grid position, time-signature index) per change, 4/4 from 0; unsupported ones become 4/4 (the
        move of a mid-bar one to the next bar line is ``_bars``')."""
        res, tpq = self.config.beat_resolution, score.ticks_per_beat
        ts_changes: list[tuple[int, int]] = [(0, self._default_ts)]
        for ts in score.time_signatures:
            idx = self._ts_index.get((ts.numerator, ts.denominator))
            if idx is None:
                stats.time_signatures_replaced += 1
                idx = self._default_ts
            g = int(round_div(np.array([ts.tick]), res, tpq)[0])
            if g == ts_changes[-1][0]:
                ts_changes[-1] = (g, idx)
            else:
                ts_changes.append((g, idx))
        return ts_changes

    def _tempo_changes(self, score: Score, stats: EncodeStats) -> list[tuple[int, int]]:
        """(grid position, tempo bin) per change, only where the bin changes; 120 before the first."""
        c = self.config
        res, tpq = c.beat_resolution, score.ticks_per_beat
        tempos: list[tuple[int, int]] = []
        given = sorted(score.tempos, key=lambda t: t.tick)
        if not given or given[0].tick > 0:  # MIDI's tempo is 120 until the first tempo event
            given.insert(0, TempoChange(0, 120.0))
        stats.tempos_clamped += int((~self.tempo_kept(np.array([t.qpm for t in given]))).sum())
        for t in given:
            g = int(round_div(np.array([t.tick]), res, tpq)[0])
            b = self.tempo_bin(t.qpm)
            if tempos and tempos[-1][0] == g:
                tempos[-1] = (g, b)
            else:
                tempos.append((g, b))
        dedup: list[tuple[int, int]] = []
        for g, b in tempos:
            if not dedup or dedup[-1][1] != b:
                dedup.append((g, b))
        return dedup

    def _bars(
        self, ts_changes: list[tuple[int, int]], last: int, stats: EncodeStats
    ) -> tuple[np.ndarray, np.ndarray]:
        """Bar start positions (grid steps) and each bar's time-signature index, up to ``last``."""
        lines = bar_lines([(g, int(self.bar_steps[i])) for g, i in ts_changes], last, MAX_PIECE_BARS)
        if len(lines.starts) > MAX_PIECE_BARS:
            raise TokenError(f"piece spans more than {MAX_PIECE_BARS} bars")
        stats.time_signatures_moved += lines.moved
        return lines.starts, np.array([i for _, i in ts_changes], dtype=np.int64)[lines.change]

    # ------------------------------------------------------------------------------------------ decode
    def decode(self, ids: np.ndarray | list[int]) -> Score:
        c = self.config
        res = c.beat_resolution
        tpq = lcm_ticks(res)
        factor = tpq // res
        v = self.vocab
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < v.size)]
        kinds = [v.ranges[k].kind for k in v.kind_of[ids].tolist()]
        values = v.value_of[ids].tolist()

        bar_start = -1
        bar_len = int(self.bar_steps[self._default_ts])
        ts_now = self._default_ts
        pos = 0
        prog = 0
        vel = self.bin_velocity(min(c.velocity_bins - 1, c.velocity_bins * 5 // 8))
        pitch: int | None = None
        tempos: list[TempoChange] = []
        sigs: list[TimeSignature] = []
        by_prog: dict[int, list[Note]] = {}
        seen_bar = False
        chained: Note | None = None  # the note a following DURATION lengthens (after a maximal one)
        for kind, val in zip(kinds, values):
            if kind == DURATION:
                if pitch is not None:
                    start = (max(bar_start, 0) + pos) * factor
                    note = Note(pitch, vel, start, start + val * factor)
                    by_prog.setdefault(prog, []).append(note)
                    pitch = None
                elif chained is not None:
                    note = chained
                    note.end += val * factor
                else:
                    continue
                chained = note if val == self.max_duration else None
                continue
            chained = None
            if kind == BAR:
                bar_start = 0 if not seen_bar else bar_start + bar_len
                seen_bar = True
                pos = 0
                pitch = None
                if not sigs:
                    sigs.append(TimeSignature(0, *self.time_signatures[ts_now]))
            elif kind == TIME_SIGNATURE:
                if pos == 0 and seen_bar:
                    ts_now = val
                    bar_len = int(self.bar_steps[val])
                    _set_time_signature(sigs, TimeSignature(bar_start * factor, *self.time_signatures[val]))
            elif kind == POSITION:
                pos = val
                pitch = None
            elif kind == TEMPO:
                _set_tempo(tempos, TempoChange((max(bar_start, 0) + pos) * factor, self.tempo_of_bin(val)))
            elif kind == PROGRAM:
                prog = val
            elif kind == VELOCITY:
                vel = self.bin_velocity(val)
            elif kind == PITCH:
                pitch = val
            elif kind == "EOS":
                break
        return _decoded_score(tpq, tempos, sigs, by_prog)


def _set_time_signature(sigs: list[TimeSignature], sig: TimeSignature) -> None:
    """A time signature at a bar line: it replaces one at the same tick, and is kept only if it changes."""
    if sigs and sigs[-1].tick == sig.tick:
        sigs[-1] = sig
    elif not sigs or (sigs[-1].numerator, sigs[-1].denominator) != (sig.numerator, sig.denominator):
        sigs.append(sig)


def _set_tempo(tempos: list[TempoChange], t: TempoChange) -> None:
    """A tempo change: it replaces one at the same tick."""
    if tempos and tempos[-1].tick == t.tick:
        tempos[-1] = t
    else:
        tempos.append(t)


def _decoded_score(
    tpq: int, tempos: list[TempoChange], sigs: list[TimeSignature], by_prog: dict[int, list[Note]]
) -> Score:
    """The decoded Score: a tempo from tick 0 (120 without any), 4/4 without a time signature, one
    instrument per program (drums as DRUMS), in program order."""
    score = Score(ticks_per_beat=tpq)
    score.tempos = tempos or [TempoChange(0, 120.0)]
    if score.tempos[0].tick != 0:
        score.tempos.insert(0, TempoChange(0, score.tempos[0].qpm))
    score.time_signatures = sigs or [TimeSignature(0, 4, 4)]
    for p in sorted(by_prog):
        drum = p == DRUMS
        score.instruments.append(
            Instrument(program=0 if drum else p, is_drum=drum, name=program_name(p, drum), notes=by_prog[p])
        )
    return score


def _unique_labels(values: np.ndarray) -> list[str]:
    """Rounded labels, with a decimal added where rounding would make two equal."""
    labels: list[str] = []
    for x in values:
        lab = str(int(round(x)))
        digits = 0
        while lab in labels:
            digits += 1
            lab = f"{x:.{digits}f}"
        labels.append(lab)
    return labels
