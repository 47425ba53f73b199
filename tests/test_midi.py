"""MIDI <-> note model: the reader agrees with mido/pretty_midi, and the writer's files open everywhere."""

from __future__ import annotations

import io
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


# ------------------------------------------------------------------------------ several events at one tick


def _meta_tempo(bpm: float, delta: int = 0) -> bytes:
    return bytes([delta]) + b"\xff\x51\x03" + round(60_000_000 / bpm).to_bytes(3, "big")


def test_several_tempos_at_one_tick_the_last_in_file_order_is_in_force():
    # type 0: set_tempo 120 then 130 at tick 0 plays at 130 (a sort by value kept 120)
    data = header(0, 1) + track(_meta_tempo(120) + _meta_tempo(130) + note_track_body(2))
    score, _ = parse_midi_bytes(data)
    assert [(t.tick, round(t.qpm, 3)) for t in score.tempos] == [(0, 130.0)]
    pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    assert pm.get_tempo_changes()[1] == pytest.approx([score.tempos[0].qpm])
    # and the speed-up that stayed at 76 bpm: 76 then 185 at one tick, mid-piece
    body = _meta_tempo(100) + b"\x83\x60\xff\x51\x03" + round(60_000_000 / 76).to_bytes(3, "big")
    body += _meta_tempo(185) + note_track_body(2)
    score, _ = parse_midi_bytes(header(0, 1) + track(body))
    assert [(t.tick, round(t.qpm)) for t in score.tempos] == [(0, 100), (480, 185)]


def test_tempo_at_one_tick_in_two_tracks_the_later_track_wins():
    """A player merging the tracks plays their events at one tick in track order: the last tempo wins."""
    first = b"\x00\xff\x51\x03" + (600_000).to_bytes(3, "big")  # 100 qpm at tick 0
    first += b"\x87\x40\xff\x51\x03" + (500_000).to_bytes(3, "big")  # 120 qpm at tick 960
    second = b"\x87\x40\xff\x51\x03" + (400_000).to_bytes(3, "big")  # 150 qpm at tick 960, later track
    data = header(1, 3) + track(first + b"\x00\xff\x2f\x00") + track(second + b"\x00\xff\x2f\x00")
    data += track(note_track_body(4))
    score, _ = parse_midi_bytes(data)
    assert [(t.tick, round(t.qpm, 3)) for t in score.tempos] == [(0, 100.0), (960, 150.0)]
    merged = mido.merge_tracks(mido.MidiFile(file=io.BytesIO(data)).tracks)
    assert round(mido.tempo2bpm([m for m in merged if m.type == "set_tempo"][-1].tempo), 3) == 150.0


def test_tempo_before_the_first_tempo_event_is_120(tmp_path):
    """MIDI's tempo is 120 qpm until the first set_tempo; the first one does not reach back to tick 0."""
    body = bytes([0x00, 0x90, 60, 80, 0x87, 0x40, 0x80, 60, 0])  # a note over ticks 0..960
    body += b"\x00\xff\x51\x03" + (1_000_000).to_bytes(3, "big")  # 60 qpm from tick 960
    body += bytes([0x00, 0x90, 62, 80, 0x83, 0x60, 0x80, 62, 0]) + b"\x00\xff\x2f\x00"
    data = header(0, 1) + track(body)
    score, _ = parse_midi_bytes(data)
    assert [(t.tick, t.qpm) for t in score.tempos] == [(0, 120.0), (960, 60.0)]
    (tmp_path / "late.mid").write_bytes(data)
    pm = pretty_midi.PrettyMIDI(str(tmp_path / "late.mid"))
    theirs = sorted(t for i in pm.instruments for n in i.notes for t in (n.start, n.end))
    ticks = sorted(t for i in score.instruments for n in i.notes for t in (n.start, n.end))
    assert list(score.ticks_to_seconds(ticks)) == pytest.approx(theirs)
    assert theirs == pytest.approx([0.0, 1.0, 1.0, 2.0])


def test_score_tempo_map_is_120_before_its_first_change():
    s = Score(480, [Instrument(0, False, "", [Note(60, 64, 0, 960)])], [TempoChange(480, 60)])
    assert list(s.ticks_to_seconds([0, 480, 960])) == pytest.approx([0.0, 0.5, 1.5])


def test_tempo_changed_and_changed_back_at_one_tick_leaves_no_change():
    body = _meta_tempo(120) + b"\x83\x60\xff\x51\x03" + round(60_000_000 / 130).to_bytes(3, "big")
    body += _meta_tempo(120) + note_track_body(2)
    score, _ = parse_midi_bytes(header(0, 1) + track(body))
    assert [(t.tick, t.qpm) for t in score.tempos] == [(0, 120.0)]


def _meta_time_signature(num: int, den_pow: int, delta: bytes = b"\x00") -> bytes:
    return delta + bytes([0xFF, 0x58, 0x04, num, den_pow, 24, 8])


def test_several_time_signatures_at_one_tick_the_last_is_in_force():
    body = _meta_time_signature(3, 2) + _meta_time_signature(6, 3) + note_track_body(2)
    score, _ = parse_midi_bytes(header(0, 1) + track(body))
    assert [(t.tick, t.numerator, t.denominator) for t in score.time_signatures] == [(0, 6, 8)]
    # 4/4, then 3/4 and back to 4/4 at bar 2: no change at all
    body = _meta_time_signature(4, 2) + _meta_time_signature(3, 2, b"\x8f\x00") + _meta_time_signature(4, 2)
    score, _ = parse_midi_bytes(header(0, 1) + track(body + note_track_body(2)))
    assert [(t.tick, t.numerator, t.denominator) for t in score.time_signatures] == [(0, 4, 4)]


def test_program_changes_at_one_tick_the_last_before_the_note_wins():
    # pc 40, pc 41, note A, pc 42 (after A, same tick), note B one beat later: A plays 41, B plays 42
    body = bytes([0x00, 0xC0, 40, 0x00, 0xC0, 41, 0x00, 0x90, 60, 80, 0x00, 0xC0, 42])
    body += bytes([0x83, 0x60, 0x80, 60, 0, 0x00, 0x90, 62, 80, 0x83, 0x60, 0x80, 62, 0, 0x00, 0xFF, 0x2F, 0])
    score, _ = parse_midi_bytes(header(0, 1) + track(body))
    assert {i.program: [n.pitch for n in i.notes] for i in score.instruments} == {41: [60], 42: [62]}


def test_pitched_note_switched_off_as_it_starts_is_dropped_and_counted_a_drum_hit_is_kept():
    # on, off, on of one pitch at one tick, off later (a score exporter's retrigger): one audible note
    body = bytes([0x00, 0x90, 60, 80, 0x00, 0x90, 60, 0, 0x00, 0x90, 60, 80, 0x83, 0x60, 0x80, 60, 0])
    body += bytes([0x00, 0x99, 42, 100, 0x00, 0x89, 42, 0]) + b"\x00\xff\x2f\x00"  # a drum hit, zero length
    score, report = parse_midi_bytes(header(0, 1) + track(body))
    assert sorted((i.is_drum, n.pitch, n.start, n.end) for i in score.instruments for n in i.notes) == [
        (False, 60, 0, 480),
        (True, 42, 480, 480),
    ]
    assert report.zero_length_notes == 1
    assert report.problems() == {"zero_length_notes": 1}


# ----------------------------------------------------------------------------- channels in written files


def _sounding_programs(path) -> dict[int, set[int]]:  # type: ignore[no-untyped-def]
    """Track number -> the programs its notes start with in a General MIDI player.

    The player merges the tracks into one stream (at one tick in track order, as mido.merge_tracks does)
    and keeps one program per channel, set by the last program change on that channel.
    """
    mf = mido.MidiFile(path)
    stream = []
    for t, tr in enumerate(mf.tracks):
        tick = 0
        for k, msg in enumerate(tr):
            tick += msg.time
            stream.append((tick, t, k, msg))
    stream.sort(key=lambda e: (e[0], e[1], e[2]))
    programs = [0] * 16
    out: dict[int, set[int]] = {}
    for _tick, t, _k, msg in stream:
        if msg.type == "program_change":
            programs[msg.channel] = msg.program
        elif msg.type == "note_on" and msg.velocity and msg.channel != 9:
            out.setdefault(t, set()).add(programs[msg.channel])
    return out


def _many_tracks(programs: list[int]) -> Score:
    """One track per program given; track k plays k + 1 notes, every track on the same beats."""
    insts = [
        Instrument(p, False, f"t{k}", [Note(30 + k, 80, b * TPQ, (b + 1) * TPQ) for b in range(k + 1)])
        for k, p in enumerate(programs)
    ]
    insts.append(Instrument(0, True, "Drums", [Note(36, 100, 0, 60)]))
    return Score(TPQ, insts, [TempoChange(0, 120.0)], [TimeSignature(0, 4, 4)])


def test_more_tracks_than_channels_share_a_channel_only_within_one_program(tmp_path, caplog):
    programs = [k % 10 for k in range(20)]  # 20 tracks, 10 programs
    with caplog.at_level("WARNING", logger="composer.midi"):
        report = write_midi(_many_tracks(programs), tmp_path / "m.mid")
    assert report.shared_programs == 0 and not caplog.records
    mf = mido.MidiFile(tmp_path / "m.mid")
    by_channel: dict[int, set[int]] = {}
    for tr in mf.tracks:
        for m in tr:
            if m.type == "program_change":
                by_channel.setdefault(m.channel, set()).add(m.program)
    assert all(len(p) == 1 for p in by_channel.values()) and 9 not in by_channel
    assert len(by_channel) == 15  # every pitched channel in use
    assert _sounding_programs(tmp_path / "m.mid") == {k + 1: {p} for k, p in enumerate(programs)}


def test_more_programs_than_channels_every_note_starts_with_its_own_program(tmp_path, caplog):
    """20 programs, 15 channels: the 5 programs with the fewest notes share a channel, switched by a
    program change before each of their notes; a one-line warning says so."""
    programs = [40 + k for k in range(20)]
    score = _many_tracks(programs)
    with caplog.at_level("WARNING", logger="composer.midi"):
        report = write_midi(score, tmp_path / "m.mid")
    assert (report.shared_programs, report.programs) == (5, 20)
    assert report.problems() == {"shared_programs": 5}
    [record] = caplog.records
    assert "20 programs for 15 channels: 5 share a channel" in record.getMessage()
    assert "\n" not in record.getMessage() and "m.mid" in record.getMessage()
    # a General MIDI player starts every note with its own track's program
    assert _sounding_programs(tmp_path / "m.mid") == {k + 1: {p} for k, p in enumerate(programs)}
    # readers that keep a program per track read every note back with its own program
    back = read_midi(tmp_path / "m.mid")
    assert notes_of(back) == notes_of(score)
    pm = pretty_midi.PrettyMIDI(str(tmp_path / "m.mid"))
    assert sorted((i.program, i.is_drum, len(i.notes)) for i in pm.instruments) == sorted(
        (i.program, i.is_drum, len(i.notes)) for i in score.instruments
    )
    # the 15 programs with the most notes have a channel each
    mf = mido.MidiFile(tmp_path / "m.mid")
    channel_of = {
        t: next(m.channel for m in tr if m.type == "note_on") for t, tr in enumerate(mf.tracks[1:21], 1)
    }
    owners = [channel_of[t] for t in range(6, 21)]
    assert len(set(owners)) == 15
