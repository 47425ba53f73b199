"""Form: repeated bars on constructed pieces with a known answer, and the copyable share of token runs."""

from __future__ import annotations

import numpy as np
import pytest

from composer.form import bar_repeats, copyable_share, form_summary, is_loop, loop_bars, similarity_matrix
from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature
from tests.midi_factory import TPQ

BAR = 4 * TPQ


def _bar(pitches: list[int], bar: int) -> list[Note]:
    return [Note(p, 80, bar * BAR + k * TPQ, bar * BAR + (k + 1) * TPQ) for k, p in enumerate(pitches)]


def _piece(bars: list[list[int]]) -> Score:
    notes = [n for b, ps in enumerate(bars) for n in _bar(ps, b)]
    return Score(
        TPQ, [Instrument(0, False, "Piano", notes)], [TempoChange(0, 120.0)], [TimeSignature(0, 4, 4)]
    )


A = [[60, 62, 64, 65], [67, 65, 64, 62], [60, 64, 67, 72], [71, 67, 62, 59]]
B = [[57, 60, 64, 69], [65, 69, 72, 77], [62, 65, 69, 74], [55, 59, 62, 67]]


def test_aaba_has_half_its_bars_repeated() -> None:
    r = bar_repeats(_piece(A + A + B + A))
    assert r.bars == 16
    assert r.exact == pytest.approx(8 / 16)  # the second and third A, 4 bars each
    assert r.profile[3] == pytest.approx(4 / 12)  # lag 4: A2 vs A1 only (B vs A2, A3 vs B differ)
    assert r.profile[7] == pytest.approx(4 / 8)  # lag 8: A3 vs A2 (B vs A1 differ)


def test_a_repeat_closer_than_min_lag_does_not_count() -> None:
    r = bar_repeats(_piece([A[0], A[0], A[1], A[2]]), min_lag=4)
    assert r.exact == 0.0 and r.profile[0] == pytest.approx(1 / 3)


def test_transposed_repeat_counts_only_up_to_transposition() -> None:
    up = [[p + 2 for p in bar] for bar in A]
    r = bar_repeats(_piece(A + up))
    assert r.exact == 0.0
    assert r.transposed == pytest.approx(4 / 8)


def test_loop_is_degenerate_and_music_is_not() -> None:
    assert is_loop(_piece([A[0]] * 16))
    assert not is_loop(_piece(A + A + B + A))
    # a song that falls into two bars over and over after its opening
    assert loop_bars(_piece(A + [A[1], A[2]] * 5 + B)) == 10 and is_loop(_piece(A + [A[1], A[2]] * 5 + B))
    assert not is_loop(_piece(A + [A[1], A[2]] * 3 + B))  # 6 bars of it: not yet
    assert is_loop(_piece([A[0], []] * 8))  # one bar and a silence, over and over
    assert loop_bars(_piece([[]] * 16)) == 0


def test_similarity_matrix_and_summary() -> None:
    m = similarity_matrix(_piece(A + B))
    assert m.shape == (8, 8) and np.allclose(np.diag(m), 1.0) and np.allclose(m, m.T)
    s = form_summary([_piece(A + A), _piece(A + B)])
    assert s.exact == pytest.approx((4 / 8 + 0.0) / 2) and s.loops == 0


def test_copyable_share_of_a_verbatim_repeat() -> None:
    part = np.random.default_rng(0).integers(0, 1000, 500)
    ids = np.concatenate([part, part])
    hits, total = copyable_share(ids, distance=400, context=12, min_position=500)
    # the second copy's tokens from position 512 on are each predicted by the first copy, 500 back
    assert total == 500 and hits == 500 - 12
    hits_far, _ = copyable_share(ids, distance=600, context=12, min_position=500)
    assert hits_far == 0  # nothing is 600 tokens back with the same context
    noise = np.random.default_rng(1).integers(0, 1000, 1000)
    assert copyable_share(noise, distance=64)[0] == 0
