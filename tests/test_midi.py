"""MIDI <-> note model: the reader agrees with mido/pretty_midi, and the writer's files open everywhere."""

from __future__ import annotations

import struct

import mido
import pretty_midi
import pytest

from composer.errors import MidiReadError
from composer.midi import (
    Instrument,
    Note,
    Score,
    TempoChange,
    TimeSignature,
    parse_midi_bytes,
    read_midi,
    write_midi,
)
from tests.midi_factory import SCORES, TPQ, header, mido_bytes, note_track_body, simple_midi_bytes, track


def notes_of(score: Score) -> list[tuple[int, bool, int, int, int, int]]:
    return sorted(
        (i.program, i.is_drum, n.pitch, n.velocity, n.start, n.end)
        for i in score.instruments
        for n in i.notes
    )


@pytest.mark.parametrize("name", sorted(SCORES))
def test_write_then_read_keeps_every_note(name, tmp_path):
    score = SCORES[name]()
    path = tmp_path / "x.mid"
    write_midi(score, path)
    back = read_midi(path)
    expected = [
        (p, d, pitch, v, s, max(e, s + 1)) for p, d, pitch, v, s, e in notes_of(score)
    ]  # the writer never writes a zero-length note
    assert notes_of(back) == expected
    assert [(t.tick, round(t.qpm, 3)) for t in back.tempos] == [
        (t.tick, round(t.qpm, 3)) for t in score.tempos
    ]
    assert [(t.tick, t.numerator, t.denominator) for t in back.time_signatures] == [
        (t.tick, t.numerator, t.denominator) for t in score.time_signatures
    ]


def test_written_file_is_type1_with_tempo_track_names_programs_and_drum_channel(tmp_path):
    path = tmp_path / "m.mid"
    write_midi(SCORES["multitrack_drums"](), path)
    mf = mido.MidiFile(path)
    assert mf.type == 1
    meta = [m.type for m in mf.tracks[0]]
    assert "set_tempo" in meta and "time_signature" in meta
    names = [next(m.name for m in t if m.type == "track_name") for t in mf.tracks[1:]]
    assert names == ["Bass", "Piano", "Drums"]
    drum_channels = {m.channel for m in mf.tracks[3] if m.type in ("note_on", "note_off")}
    assert drum_channels == {9}
    programs = [[m.program for m in t if m.type == "program_change"] for t in mf.tracks[1:3]]
    assert programs == [[33], [0]]
    pm = pretty_midi.PrettyMIDI(str(path))
    assert [i.is_drum for i in pm.instruments] == [False, False, True]
    assert sum(len(i.notes) for i in pm.instruments) == SCORES["multitrack_drums"]().note_count


def test_reader_agrees_with_pretty_midi_on_seconds(tmp_path):
    path = tmp_path / "c.mid"
    score = SCORES["tempo_timesig_changes"]()
    write_midi(score, path)
    pm = pretty_midi.PrettyMIDI(str(path))
    ours = read_midi(path)
    mine = sorted(
        (n.pitch, float(s), float(e))
        for i in ours.instruments
        for n in i.notes
        for s, e in [ours.ticks_to_seconds([n.start, n.end])]
    )
    theirs = sorted((n.pitch, n.start, n.end) for i in pm.instruments for n in i.notes)
    assert [p for p, _, _ in mine] == [p for p, _, _ in theirs]
    # the file stores tempo in whole microseconds per quarter: allow that rounding
    flat = [t for x in mine for t in x[1:]]
    assert flat == pytest.approx([t for x in theirs for t in x[1:]], abs=1e-5)


def test_format0_running_status_and_velocity_zero_note_off():
    score, report = parse_midi_bytes(simple_midi_bytes())
    assert [(n.pitch, n.start, n.end) for n in score.instruments[0].notes] == [
        (60 + i, i * TPQ, (i + 1) * TPQ) for i in range(4)
    ]
    assert not report.problems()


def test_format0_splits_channels_into_instruments_and_channel_10_is_drums():
    body = bytes(
        [0x00, 0xC0, 40, 0x00, 0x90, 60, 90, 0x00, 0x99, 36, 100, 0x60, 0x80, 60, 0, 0x00, 0x89, 36, 0]
    )
    score, _ = parse_midi_bytes(header(0, 1) + track(body + b"\x00\xff\x2f\x00"))
    assert sorted((i.program, i.is_drum) for i in score.instruments) == [(0, True), (40, False)]


def test_program_change_mid_track_splits_instruments():
    mf = mido.MidiFile(type=1, ticks_per_beat=TPQ)
    t = mido.MidiTrack()
    t += [
        mido.Message("program_change", program=0, time=0),
        mido.Message("note_on", note=60, velocity=80, time=0),
        mido.Message("note_off", note=60, time=TPQ),
        mido.Message("program_change", program=40, time=0),
        mido.Message("note_on", note=62, velocity=80, time=0),
        mido.Message("note_off", note=62, time=TPQ),
    ]
    mf.tracks.append(t)
    score, _ = parse_midi_bytes(mido_bytes(mf))
    assert {i.program: [n.pitch for n in i.notes] for i in score.instruments} == {0: [60], 40: [62]}


def test_same_pitch_overlap_pairs_first_in_first_out():
    # on(60)@0, on(60)@480, off@960, off@1440: FIFO gives 0-960 and 480-1440
    body = bytes(
        [0x00, 0x90, 60, 80, 0x83, 0x60, 0x90, 60, 90, 0x83, 0x60, 0x80, 60, 0, 0x83, 0x60, 0x80, 60, 0]
    )
    score, _ = parse_midi_bytes(header(0, 1) + track(body + b"\x00\xff\x2f\x00"))
    assert [(n.start, n.end, n.velocity) for n in score.instruments[0].notes] == [
        (0, 960, 80),
        (480, 1440, 90),
    ]


def test_note_on_before_note_off_at_same_tick_keeps_both_notes():
    # a repeated note written as on(new) then off(old) at the same tick must not become zero-length
    body = bytes([0x00, 0x90, 60, 80, 0x83, 0x60, 0x90, 60, 81, 0x00, 0x80, 60, 0, 0x83, 0x60, 0x80, 60, 0])
    score, _ = parse_midi_bytes(header(0, 1) + track(body + b"\x00\xff\x2f\x00"))
    assert [(n.start, n.end) for n in score.instruments[0].notes] == [(0, 480), (480, 960)]


def test_orphan_note_off_and_unterminated_note_are_reported_not_lost():
    body = bytes([0x00, 0x80, 50, 0, 0x00, 0x90, 60, 80, 0x83, 0x60, 0xFF, 0x01, 0x01, 0x41])  # text meta
    score, report = parse_midi_bytes(header(0, 1) + track(body + b"\x00\xff\x2f\x00"))
    assert report.orphan_note_offs == 1
    assert report.unterminated_notes == 1
    assert [(n.pitch, n.start, n.end) for n in score.instruments[0].notes] == [(60, 0, 480)]


def test_format2_tracks_play_one_after_another():
    data = header(2, 2) + track(note_track_body(2)) + track(note_track_body(2))
    score, _ = parse_midi_bytes(data)
    starts = sorted(n.start for i in score.instruments for n in i.notes)
    assert starts == [0, 480, 960, 1440]


def test_unknown_chunks_are_skipped_and_sysex_meta_ignored():
    body = bytes([0x00, 0xF0, 0x03, 0x7E, 0x7F, 0xF7, 0x00, 0xFF, 0x05, 0x02, 0x6C, 0x61]) + note_track_body(
        1
    )
    data = header(1, 2) + b"XFIH" + struct.pack(">I", 3) + b"abc" + track(body)
    score, report = parse_midi_bytes(data)
    assert score.note_count == 1
    assert report.unknown_chunks == 1


def test_smpte_division_maps_ticks_to_seconds():
    division = ((256 - 25) << 8) | 40  # 25 fps, 40 ticks per frame = 1000 ticks/s
    body = bytes([0x00, 0x90, 60, 80, 0x87, 0x68, 0x80, 60, 0]) + b"\x00\xff\x2f\x00"  # off after 1000 ticks
    score, _ = parse_midi_bytes(header(0, 1, division) + track(body))
    n = score.instruments[0].notes[0]
    assert score.ticks_to_seconds([n.end])[0] == pytest.approx(1.0)


def test_riff_wrapped_midi_is_read():
    inner = simple_midi_bytes()
    riff = b"RIFF" + struct.pack("<I", len(inner) + 12) + b"RMIDdata" + struct.pack("<I", len(inner)) + inner
    assert parse_midi_bytes(riff)[0].note_count == 4


def test_truncated_track_keeps_what_was_read():
    data = simple_midi_bytes()
    score, report = parse_midi_bytes(data[:-12])
    assert 1 <= score.note_count < 4
    assert report.truncated_tracks == 1


def test_tempo_zero_is_clamped_and_reported():
    body = b"\x00\xff\x51\x03\x00\x00\x00" + note_track_body(1)
    score, report = parse_midi_bytes(header(0, 1) + track(body))
    assert report.clamped_tempos == 1
    assert all(1 <= t.qpm <= 1000 for t in score.tempos)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello world, not midi at all", "not a MIDI file"),
        (b"MThd\x00\x00", "not a MIDI file"),
        (header(0, 1, 0) + track(note_track_body()), "division"),
        (header(7, 1) + track(note_track_body()), "format"),
        (header(1, 65535), "no track chunks"),
    ],
)
def test_unreadable_files_raise_one_line_reasons(data, message):
    with pytest.raises(MidiReadError, match=message) as exc:
        parse_midi_bytes(data)
    assert "\n" not in str(exc.value)


def test_read_missing_file_is_a_midi_read_error(tmp_path):
    with pytest.raises(MidiReadError, match="cannot read"):
        read_midi(tmp_path / "nope.mid")


def test_tempo_map_seconds_round_trip():
    s = Score(
        480, [Instrument(0, False, "", [Note(60, 64, 0, 1)])], [TempoChange(0, 120), TempoChange(960, 60)]
    )
    secs = s.ticks_to_seconds([0, 480, 960, 1440])
    assert list(secs) == pytest.approx([0.0, 0.5, 1.0, 2.0])
    assert list(s.seconds_to_ticks(secs)) == [0, 480, 960, 1440]


def test_writer_writes_time_signature_and_tempo_changes(tmp_path):
    s = SCORES["tempo_timesig_changes"]()
    write_midi(s, tmp_path / "t.mid")
    msgs = [
        m for m in mido.MidiFile(tmp_path / "t.mid").tracks[0] if m.type in ("set_tempo", "time_signature")
    ]
    assert [(m.type, getattr(m, "numerator", None)) for m in msgs if m.type == "time_signature"] == [
        ("time_signature", 4),
        ("time_signature", 3),
        ("time_signature", 6),
    ]
    assert [round(mido.tempo2bpm(m.tempo)) for m in msgs if m.type == "set_tempo"] == [120, 90, 140]
    assert TimeSignature(0, 4, 4) in read_midi(tmp_path / "t.mid").time_signatures


def test_same_pitch_notes_starting_together_keep_their_own_end_and_velocity(tmp_path):
    """Real files stack a short and a long note of one pitch on one tick; FIFO pairing must not swap them."""
    notes = [Note(60, 100, 0, 40), Note(60, 50, 0, 480), Note(64, 127, 0, 960), Note(64, 20, 0, 100)]
    write_midi(Score(TPQ, [Instrument(0, False, "", notes)]), tmp_path / "stack.mid")
    back = read_midi(tmp_path / "stack.mid").instruments[0].notes
    assert sorted((n.pitch, n.end, n.velocity) for n in back) == [
        (60, 40, 100),
        (60, 480, 50),
        (64, 100, 20),
        (64, 960, 127),
    ]
