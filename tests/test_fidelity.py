"""Fidelity: the reader against pretty_midi note by note, and each encoding's round trip.

The comparison lives in benchmarks/fidelity.py, which runs it over every real collection at hand; here it
runs on a fixed set of Bach chorales and on crafted files, one for each rule by which pretty_midi reads a
file differently from composer.
"""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest

from benchmarks import fidelity
from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature, write_midi
from composer.tokenizer import BeatTokenizer, PerformanceTokenizer, TokenizerConfig
from tests.midi_factory import SCORES, TPQ, mido_bytes, simple_midi_bytes

BEAT = BeatTokenizer(TokenizerConfig())
PERF = PerformanceTokenizer(TokenizerConfig(encoding="performance"))
#: Every 34th chorale (12 of the 407): converting them takes about 2 s; the benchmark reads all.
BACH_STEP = 34


@pytest.fixture(scope="module")
def chorales(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    pytest.importorskip("music21")
    from composer import bach

    out = tmp_path_factory.mktemp("bach")
    paths = []
    for source in bach.chorale_sources()[::BACH_STEP]:
        path = out / bach.midi_name(source)
        write_midi(bach.chorale_to_score(source), path)
        paths.append(path)
    return paths


def test_bach_chorales_reader_agrees_with_pretty_midi_on_every_note(chorales):
    assert len(chorales) == 12
    for path in chorales:
        res, score = fidelity.compare_reader(path)
        assert score is not None and res.notes == score.note_count > 100
        assert res.failing == 0, (path.name, res.passed, res.notes)


@pytest.mark.parametrize("tok", [BEAT, PERF], ids=["beat", "performance"])
def test_bach_chorales_round_trip_through_each_encoding(chorales, tok):
    for path in chorales:
        _, score = fidelity.compare_reader(path)
        res = fidelity.compare_encoding(path.name, score, tok)
        assert not res.error and not res.by_design
        assert res.failing == 0, (path.name, res.passed, res.notes)


# ------------------------------------------------------------------------------- pretty_midi's own rules


def _file(tmp_path: Path, *tracks: list[mido.Message | mido.MetaMessage], name: str = "x.mid") -> Path:
    mf = mido.MidiFile(type=1, ticks_per_beat=TPQ)
    for msgs in tracks:
        mf.tracks.append(mido.MidiTrack(msgs))
    path = tmp_path / name
    path.write_bytes(mido_bytes(mf))
    return path


def on(note: int, time: int = 0, channel: int = 0, velocity: int = 80) -> mido.Message:
    return mido.Message("note_on", note=note, velocity=velocity, time=time, channel=channel)


def off(note: int, time: int = 0, channel: int = 0) -> mido.Message:
    return mido.Message("note_off", note=note, time=time, channel=channel)


def _explained(path: Path) -> tuple[dict[str, int], int]:
    res, _ = fidelity.compare_reader(path)
    return dict(res.explained), res.unexplained


def test_same_pitch_overlap_first_in_first_out_against_pretty_midi_closing_all(tmp_path):
    # on@0, on@480, off@960, off@1440: composer 0-960 and 480-1440; pretty_midi ends both at 960
    path = _file(tmp_path, [on(60), on(60, 480), off(60, 480), off(60, 480), on(62), off(62, 480)])
    assert _explained(path) == ({"same_pitch_overlap": 1}, 0)


def test_drum_hit_of_zero_length_is_kept_pretty_midi_drops_it(tmp_path):
    path = _file(tmp_path, [on(36, channel=9), off(36, channel=9), on(38, 480, channel=9), off(38, 60, 9)])
    assert _explained(path) == ({"zero_length_drum": 1}, 0)


def test_note_never_switched_off_ends_with_the_track(tmp_path):
    path = _file(tmp_path, [on(60), on(64), off(64, 480), mido.MetaMessage("end_of_track", time=480)])
    assert _explained(path) == ({"unterminated": 1}, 0)


def test_program_change_while_a_note_sounds_keeps_the_note_on_its_first_program(tmp_path):
    pc = mido.Message("program_change", program=40, time=0)
    path = _file(tmp_path, [on(60), on(64), off(64, 240), pc, off(60, 240), on(62), off(62, 480)])
    # pretty_midi files note 60 under program 40: one note only composer has, one only pretty_midi has
    assert _explained(path) == ({"program_change_during_note": 2}, 0)


def test_tempo_outside_the_first_track_is_confirmed_by_moving_it_there(tmp_path):
    first = [mido.MetaMessage("set_tempo", tempo=500_000)]
    second = [mido.MetaMessage("set_tempo", tempo=1_000_000, time=960)]  # 60 qpm from tick 960
    notes = [on(60), off(60, 480), on(62, 480), off(62, 480), on(64), off(64, 480)]
    path = _file(tmp_path, first, second, notes)
    # the first note ends before the change and agrees; pretty_midi misses the change: note 62 ends early
    # and note 64 starts early (one note on each side without a partner)
    assert _explained(path) == ({"tempo_outside_track_0": 3}, 0)


def test_a_reader_bug_is_unexplained(tmp_path, monkeypatch):
    """The comparison can fail: a reader that got one velocity wrong leaves one unexplained note."""
    path = _file(tmp_path, [on(60), off(60, 480), on(62), off(62, 480)])
    real = fidelity.read_midi_with_report

    def wrong_velocity(p):  # type: ignore[no-untyped-def]
        score, report = real(p)
        score.instruments[0].notes[0].velocity += 1
        return score, report

    monkeypatch.setattr(fidelity, "read_midi_with_report", wrong_velocity)
    res, _ = fidelity.compare_reader(path)
    assert (res.notes, res.passed["velocity"], res.failing, res.unexplained) == (2, 1, 1, 1)


def test_unreadable_by_pretty_midi_is_counted(tmp_path):
    # a truncated track: composer keeps the notes read so far, mido refuses the file
    (tmp_path / "cut.mid").write_bytes(simple_midi_bytes()[:-12])
    res, score = fidelity.compare_reader(tmp_path / "cut.mid")
    assert score is not None and res.notes == score.note_count >= 1
    assert dict(res.explained) == {"pretty_midi_failed": res.notes} and res.unexplained == 0


def test_pairing_prefers_partners_that_agree_on_everything():
    """Two notes of one pitch a tick (under 1 ms) apart, the first of them only on one side: each note
    pairs with its own partner, not with its neighbour's."""

    def notes(rows: list[tuple[float, float, int]]) -> fidelity.Notes:
        cols = [(False, 0, 60, s, e, v, 0) for s, e, v in rows]
        return fidelity._notes(cols, np.full(len(rows), 120.0))

    a = notes([(1.0000, 1.0000, 80), (1.0000, 1.0010, 80), (1.0009, 1.2000, 80)])
    b = notes([(1.0000, 1.0010, 80), (1.0009, 1.2000, 80)])
    ia, ib, a_only, b_only = fidelity.pair(a, b, fidelity.TOLERANCE_S, fidelity.QUANTUM_S)
    assert sorted(zip(ia.tolist(), ib.tolist())) == [(1, 0), (2, 1)]
    assert a_only.tolist() == [0] and b_only.tolist() == []


# ------------------------------------------------------------------------------------------- encodings


@pytest.mark.parametrize("tok", [BEAT, PERF], ids=["beat", "performance"])
@pytest.mark.parametrize("name", sorted(SCORES))
def test_fixture_scores_round_trip_within_tolerance(name, tok):
    res = fidelity.compare_encoding(name, SCORES[name](), tok)
    assert res.notes == SCORES[name]().note_count and res.failing == 0, res.passed


def test_an_encoding_bug_is_caught(monkeypatch):
    """The check can fail: a decoder that moves one note by two grid steps fails it on onset."""
    real = BeatTokenizer.decode

    def late(self, ids):  # type: ignore[no-untyped-def]
        score = real(self, ids)
        first = score.instruments[0].notes[0]
        step = score.ticks_per_beat // self.config.beat_resolution
        first.start += 2 * step
        first.end += 2 * step
        return score

    monkeypatch.setattr(BeatTokenizer, "decode", late)
    res = fidelity.compare_encoding("x", SCORES["single"](), BEAT)
    assert res.failing == 2  # the moved note has no partner on either side
    assert res.passed["onset"] == res.notes - 2


def test_a_tempo_outside_the_encoding_range_is_by_design_not_a_failure():
    notes = [Note(60, 80, i * TPQ, (i + 1) * TPQ) for i in range(4)]
    score = Score(TPQ, [Instrument(0, False, "", notes)], [TempoChange(0, 600.0)], [TimeSignature(0, 4, 4)])
    res = fidelity.compare_encoding("fast", score, BEAT)
    assert res.failing == 0 and dict(res.by_design) == {"tempos_clamped": 4}


def test_performance_re_pairs_overlapping_notes_of_one_pitch_and_that_is_explained():
    """NOTE_OFF names no note: of two sounding notes of one pitch the first on is the first off."""
    notes = [Note(60, 80, 0, 4 * TPQ), Note(60, 80, TPQ, 2 * TPQ), Note(64, 80, 0, TPQ)]
    score = Score(TPQ, [Instrument(0, False, "", notes)], [TempoChange(0, 120.0)])
    res = fidelity.compare_encoding("nested", score, PERF)
    assert (res.notes, res.failing, dict(res.explained)) == (3, 2, {"same_pitch_overlap": 2})
    assert fidelity.same_pitch_overlaps(fidelity.score_notes(score)).tolist() == [True, True, False]


def test_tempo_change_moved_back_onto_a_notes_grid_step_is_explained():
    # a note 4 ticks before a beat, a tempo change 1 tick before it: both round onto the beat
    notes = [Note(60, 80, 0, TPQ - 4), Note(62, 80, TPQ - 4, 2 * TPQ)]
    score = Score(TPQ, [Instrument(0, False, "", notes)], [TempoChange(0, 120.0), TempoChange(TPQ - 1, 60.0)])
    res = fidelity.compare_encoding("late change", score, BEAT)
    assert (res.notes, res.failing, dict(res.explained)) == (2, 1, {"tempo_moved_to_grid": 1})


def test_benchmark_without_files_says_so_and_exits_0(tmp_path, capsys):
    assert fidelity.main([str(tmp_path), "--no-bach"]) == 0
    assert "no MIDI files" in capsys.readouterr().out


def test_benchmark_prints_tables_for_a_folder(tmp_path, capsys):
    for name in ("single", "multitrack_drums"):
        write_midi(SCORES[name](), tmp_path / f"{name}.mid")
    assert fidelity.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Reader against pretty_midi" in out and "beat encoding" in out and "performance encoding" in out
    notes = sum(SCORES[name]().note_count for name in ("single", "multitrack_drums"))
    assert f"| {tmp_path.name} | 2 | {notes} | 100.000 | 100.000 | 100.000 | 100.000 | 100.000 |" in out
