"""Yang & Lerch statistics: known answers on tiny pieces, identical sets, disjoint sets, the plot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature
from composer.musicstats import (
    FEATURES,
    FeatureSet,
    compare_feature,
    compare_sets,
    music_stats_summary,
    overlap_and_kl,
    piece_features,
)
from composer.plot import drawn_bar_lines, plot_comparison
from tests.midi_factory import TPQ, chord_score, multitrack_score


def _score(notes: list[Note], qpm: float = 120.0, drums: list[Note] | None = None) -> Score:
    inst = [Instrument(0, False, "p", notes)]
    if drums:
        inst.append(Instrument(0, True, "d", drums))
    return Score(TPQ, inst, [TempoChange(0, qpm)], [TimeSignature(0, 4, 4)])


def _melody(pitches: list[int], step: int = TPQ) -> Score:
    return _score([Note(p, 80, i * step, (i + 1) * step) for i, p in enumerate(pitches)])


def test_features_of_a_known_piece() -> None:
    f = piece_features(chord_score(bars=4))  # per bar: arpeggio 60 64 67 72 over a held 48
    assert f.notes == 20
    assert f.pitch_range.tolist() == [24.0]
    assert sorted(set(f.pitch_class.tolist())) == [0, 4, 7]
    # at each bar's downbeat 60 and 48 sound; on the other beats the arpeggio note and the held 48
    assert f.polyphony.tolist() == [2] * 16
    assert f.note_density.tolist() == [5.0, 5.0, 5.0, 5.0]
    assert np.allclose(f.ioi, 0.0)  # one quarter between onsets: log2(1)
    assert sorted(set(np.round(f.note_length, 6).tolist())) == [0.0, 2.0]  # quarters and a whole note
    assert f.repeated_bars == 1.0  # bars 2-4 repeat bar 1 exactly
    assert f.chroma_similarity == pytest.approx(1.0)
    assert f.degenerate() == {"silence": False, "one_pitch": False, "no_notes": False}


def test_drums_count_for_rhythm_not_for_pitch() -> None:
    f = piece_features(multitrack_score())
    assert f.notes == 8 + 24 + 8 + 16
    assert len(f.pitch_class) == 8 + 24  # drums have no pitch class
    assert len(f.velocity) == f.notes


def test_bar_lines_follow_time_signature_changes() -> None:
    s = _melody([60] * 12)
    s.time_signatures = [TimeSignature(0, 3, 4), TimeSignature(6 * TPQ, 2, 4)]
    assert s.bar_starts(11 * TPQ).tolist() == [0, 3 * TPQ, 6 * TPQ, 8 * TPQ, 10 * TPQ]
    # a change inside a bar takes effect at the next bar line
    s.time_signatures = [TimeSignature(0, 4, 4), TimeSignature(2 * TPQ, 3, 4)]
    assert s.bar_starts(10 * TPQ).tolist() == [0, 4 * TPQ, 7 * TPQ, 10 * TPQ]
    assert s.bar_starts(10 * TPQ, max_bars=2).tolist() == [0, 4 * TPQ, 7 * TPQ]  # max_bars, and one more


def test_a_time_signature_inside_a_bar_gives_the_same_bar_lines_everywhere() -> None:
    """4/4, then 3/4 from beat 3 of bar 1: the piano roll used to restart a bar at the change (0, 2, 5, 8,
    11 quarters) while the statistics and the beat encoder wait for the next bar line (0, 4, 7, 10)."""
    from composer.form import bar_patterns
    from composer.tokenizer import BeatTokenizer, TokenizerConfig

    s = _melody([60] * 12)
    s.time_signatures = [TimeSignature(0, 4, 4), TimeSignature(2 * TPQ, 3, 4)]
    bars = [0, 4 * TPQ, 7 * TPQ, 10 * TPQ]
    assert s.bar_starts(s.end_tick - 1).tolist() == bars
    assert drawn_bar_lines(s).tolist() == bars
    assert piece_features(s).note_density.tolist() == [4.0, 3.0, 3.0, 2.0]
    assert len(bar_patterns(s)) == 4
    tok = BeatTokenizer(TokenizerConfig())
    ids, stats = tok.encode(s)
    assert stats.time_signatures_moved == 1
    assert tok.ids_to_tokens(ids).count("BAR") == 4
    back = tok.decode(ids)  # the 3/4 now sits on the bar line it took effect at
    assert [(t.tick, t.numerator) for t in back.time_signatures] == [(0, 4), (4 * back.ticks_per_beat, 3)]
    assert back.bar_starts(back.end_tick - 1).tolist() == [b // TPQ * back.ticks_per_beat for b in bars]


def test_identical_sets_overlap_fully_with_zero_kl() -> None:
    ref = [chord_score(4), multitrack_score(), _melody([60, 62, 64, 65, 67, 69, 71, 72])]
    cmp = compare_sets(ref, list(ref))
    for name, c in cmp.features.items():
        assert c.oa == pytest.approx(1.0, abs=1e-9), name
        assert c.kl == 0.0, name
    summary = music_stats_summary(ref, ref)
    assert summary["mean_oa"] == pytest.approx(1.0, abs=1e-9)
    assert summary["mean_kl"] == 0.0
    assert {f"oa_{n}" for n in FEATURES} <= set(summary)


def test_disjoint_sets_barely_overlap() -> None:
    low = [_melody([36, 38, 40, 36] * 4, step=TPQ // 2)]
    high = [_melody([96, 94, 97, 96] * 4, step=2 * TPQ)]
    cmp = compare_sets(low, high)
    assert cmp.features["pitch_class"].oa == pytest.approx(0.5)  # half of each is pitch class 0 (C)
    assert cmp.features["note_length"].oa < 0.01  # eighths against half notes
    assert cmp.features["note_length"].kl > 5
    assert all(math.isfinite(c.kl) for c in cmp.features.values())  # smoothed: finite even when disjoint
    assert cmp.mean_oa < 0.8


def test_overlap_and_kl_of_hand_made_distributions() -> None:
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([0.0, 0.5, 0.5])
    oa, kl = overlap_and_kl(p, q)
    assert oa == pytest.approx(0.5)
    assert 0 < kl < 20
    assert overlap_and_kl(p, p) == (1.0, 0.0)


def test_a_missing_side_gives_zero_overlap_and_undefined_kl() -> None:
    c = compare_feature("ioi", np.array([0.0, 1.0, 1.0]), np.zeros(0))
    assert c.oa == 0.0 and math.isnan(c.kl)
    summary = music_stats_summary([chord_score(2)], [Score()])
    assert summary["mean_oa"] < 0.5
    assert summary["degenerate_rate"] == 1.0  # an empty piece is degenerate


def test_degenerate_pieces_are_flagged() -> None:
    gap = _score([Note(60, 80, 0, TPQ), Note(62, 80, 22 * TPQ, 23 * TPQ)])  # 10.5 s of silence at 120 bpm
    same = _melody([60] * 9 + [62])  # 90 % one pitch
    fine = chord_score(2)
    fs = FeatureSet.from_scores([gap, same, fine], cut=[False, False, True])
    flags = fs.degenerate
    assert flags[0]["silence"] and not flags[0]["one_pitch"]
    assert flags[1]["one_pitch"] and not flags[1]["silence"]
    assert flags[2] == {"silence": False, "one_pitch": False, "no_notes": False, "cut": True}
    d = fs.degenerate_summary()
    assert (d["degenerate"], d["silence"], d["one_pitch"], d["cut"]) == (3, 1, 1, 1)


def test_the_reference_can_be_computed_once() -> None:
    ref = [chord_score(4), multitrack_score()]
    pre = FeatureSet.from_scores(ref)
    samples = [_melody([60, 64, 67, 72] * 4)]
    assert music_stats_summary(pre, samples) == music_stats_summary(ref, samples)


def test_plot_draws_every_feature(tmp_path: Path) -> None:
    cmp = compare_sets([chord_score(4), multitrack_score()], [_melody([60, 64, 67] * 5)])
    out = plot_comparison(cmp, tmp_path / "music.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
