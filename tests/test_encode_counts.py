"""What an encoding cannot keep is counted, never silently lost: tempos at the top of the beat grid,
same-pitch notes the performance decoder re-pairs."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import fields

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer.midi import Instrument, Note, Score, TempoChange
from composer.tokenizer import (
    BeatTokenizer,
    EncodeStats,
    PerformanceTokenizer,
    TokenizerConfig,
    tokenizer_from_config,
)

BEAT = BeatTokenizer(TokenizerConfig())
PERF = PerformanceTokenizer(TokenizerConfig(encoding="performance"))

# ------------------------------------------------------------------------------------------------ tempos


def _tempo_round_trip(tok: BeatTokenizer, qpm: float) -> tuple[float, int]:
    score = Score(480, [Instrument(0, False, "", [Note(60, 80, 0, 480)])], [TempoChange(0, qpm)])
    ids, stats = tok.encode(score)
    return tok.decode(ids).tempos[0].qpm, stats.tempos_clamped


def _within_half_a_bin(tok: BeatTokenizer, qpm: float, back: float) -> bool:
    """Within half a bin of the grid, plus the label's rounding to whole bpm (what the benchmark allows)."""
    tol = 0.5 / tok.config.tempo_steps_per_octave + math.log2(1 + 0.5 / back) + 1e-9
    return abs(math.log2(back / qpm)) <= tol


def test_a_tempo_at_tempo_max_beyond_the_top_bin_is_counted():
    """320 bpm is in range, but the top bin is 311 (more than half a bin away): it is counted."""
    tok = tokenizer_from_config(TokenizerConfig())
    assert isinstance(tok, BeatTokenizer)
    back, clamped = _tempo_round_trip(tok, 320.0)
    assert (back, clamped) == (311.0, 1)
    assert _tempo_round_trip(tok, 315.0) == (311.0, 0)  # within half a bin of 311: kept


def test_the_tempo_vocabulary_is_unchanged():
    """Old corpora and checkpoints stay valid: the TEMPO tokens are still 24 .. 311."""
    labels = [t for t in BEAT.vocab.tokens if t.startswith("TEMPO_")]
    assert (len(labels), labels[0], labels[-1]) == (60, "TEMPO_24", "TEMPO_311")


def test_every_tempo_in_range_is_kept_within_half_a_bin_or_counted():
    for qpm in np.linspace(BEAT.config.tempo_min, BEAT.config.tempo_max, 2001).tolist():
        back, clamped = _tempo_round_trip(BEAT, qpm)
        assert clamped == (not _within_half_a_bin(BEAT, qpm, back)), qpm


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.sampled_from([4, 12, 16, 24]),
    lo=st.floats(10, 100),
    span=st.floats(1.2, 8),
    where=st.floats(0.8, 1.25),
    frac=st.floats(0, 1),
)
def test_property_random_tempos_round_trip_within_half_a_bin_or_are_counted(steps, lo, span, where, frac):
    hi = min(lo * span, 1000.0)
    tok = BeatTokenizer(TokenizerConfig(tempo_steps_per_octave=steps, tempo_min=lo, tempo_max=hi))
    qpm = lo * (hi / lo) ** frac * (where if frac in (0.0, 1.0) else 1.0)
    back, clamped = _tempo_round_trip(tok, qpm)
    assert clamped == (not _within_half_a_bin(tok, qpm, back))


# ------------------------------------------------------------------------------ same-pitch performance notes


def _pairs(score: Score) -> list[tuple[int, int]]:
    return sorted((n.start, n.end) for inst in score.instruments for n in inst.notes)


def test_a_nested_same_pitch_note_is_counted():
    score = Score(480, [Instrument(0, False, "", [Note(60, 80, 0, 1920), Note(60, 80, 480, 960)])],
                  [TempoChange(0, 120.0)])  # fmt: skip
    ids, stats = PERF.encode(score)
    assert _pairs(PERF.decode(ids)) == [(0, 1000), (500, 2000)]  # first on, first off: no order keeps it
    assert stats.lost() == {"same_pitch_repaired": 2}
    assert [f.name for f in fields(EncodeStats)][-1] == "same_pitch_repaired"  # appended: old reports read


def test_overlapping_same_pitch_notes_that_fifo_keeps_are_not_counted():
    notes = [Note(60, 80, 0, 960), Note(60, 80, 480, 1440), Note(60, 80, 1440, 1500)]
    score = Score(480, [Instrument(0, False, "", notes)], [TempoChange(0, 120.0)])
    ids, stats = PERF.encode(score)
    assert _pairs(PERF.decode(ids)) == [(0, 1000), (500, 1500), (1500, 1560)]
    assert stats.lost() == {}


def test_same_pitch_notes_starting_together_keep_their_own_length_and_velocity():
    """NOTE_ONs at one step are written shortest first, so the first NOTE_OFF ends the short one."""
    score = Score(480, [Instrument(0, False, "", [Note(60, 120, 0, 960), Note(60, 10, 0, 480)])],
                  [TempoChange(0, 120.0)])  # fmt: skip
    ids, stats = PERF.encode(score)
    back = sorted((n.start, n.end, PERF._vel_bin[n.velocity]) for n in PERF.decode(ids).instruments[0].notes)
    assert back == [(0, 500, PERF._vel_bin[10]), (0, 1000, PERF._vel_bin[120])]
    assert stats.lost() == {}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 5, -1]),
            st.sampled_from([60, 61]),
            st.integers(1, 127),
            st.integers(0, 40),
            st.integers(0, 30),
        ),  # fmt: skip
        min_size=1,
        max_size=30,
    )
)
def test_property_performance_counts_exactly_the_notes_it_re_pairs(notes):
    """At 120 bpm and 500 ticks a quarter one tick is 1 ms; times on the 10 ms grid are exact."""
    by: dict[int, Instrument] = {}
    for prog, pitch, vel, start, dur in notes:
        inst = by.setdefault(prog, Instrument(max(prog, 0), prog < 0, "", []))
        inst.notes.append(Note(pitch, vel, 10 * start, 10 * (start + dur)))
    score = Score(500, list(by.values()), [TempoChange(0, 120.0)])
    ids, stats = PERF.encode(score)
    dec = PERF.decode(ids)

    def keyed(s: Score, min_len: int) -> Counter[tuple[int, bool, int, int, int]]:
        return Counter(
            (inst.program, inst.is_drum, n.pitch, n.start, max(n.end, n.start + min_len))
            for inst in s.instruments
            for n in inst.notes
        )

    orig, back = keyed(score, 10), keyed(dec, 0)
    assert sum(back.values()) == sum(orig.values())
    assert stats.same_pitch_repaired == sum(orig.values()) - sum((orig & back).values())
    # starts and their velocities are always kept
    ons = [Counter((i.program, i.is_drum, n.pitch, n.start, PERF._vel_bin[n.velocity]) for i in s.instruments
                   for n in i.notes) for s in (score, dec)]  # fmt: skip
    assert ons[0] == ons[1]


@pytest.mark.parametrize("tok", [BEAT, PERF])
def test_notes_apart_are_not_counted(tok):
    notes = [Note(60, 80, i * 480, (i + 1) * 480) for i in range(4)]
    assert tok.encode(Score(480, [Instrument(0, False, "", notes)], [TempoChange(0, 120.0)]))[1].lost() == {}
