"""Live MIDI out: the timeline of a file, the real-time scheduler against a test port (order, timing,
notes off on interrupt), the look-ahead that samples the next song while one plays, ports, and the CLI.

A real virtual port is tried only where the machine has an ALSA sequencer and python-rtmidi.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mido
import pretty_midi
import pytest
from click.testing import CliRunner, Result

import composer.live as live
from composer.cli import main
from composer.errors import MidiReadError
from composer.live import Event, LiveError, ahead, find_port, play, silence, stream, timeline
from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature, write_midi
from tests.midi_factory import changes_score, multitrack_score
from tests.test_generate import make_checkpoint


class RecordingPort:
    """A test output: what it was sent and when (perf_counter); raises ``fail_with`` at send ``fail_at``."""

    def __init__(self, fail_at: int | None = None, fail_with: type[BaseException] = KeyboardInterrupt):
        self.sent: list[tuple[float, mido.Message]] = []
        self.fail_at, self.fail_with = fail_at, fail_with
        self.closed = False

    def send(self, msg: mido.Message) -> None:
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            self.fail_at = None
            raise self.fail_with()
        self.sent.append((time.perf_counter(), msg))

    def close(self) -> None:
        self.closed = True

    @property
    def messages(self) -> list[mido.Message]:
        return [m for _, m in self.sent]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += max(s, 1e-4)  # sleep(0) still lets a little time pass, as a real one does


def notes_events(times: list[float], channel: int = 0, dur: float = 0.05) -> list[Event]:
    evs = []
    for i, t in enumerate(times):
        evs.append(Event(t, mido.Message("note_on", channel=channel, note=60 + i % 12, velocity=80)))
        evs.append(Event(t + dur, mido.Message("note_off", channel=channel, note=60 + i % 12)))
    return sorted(evs, key=lambda e: e.time)


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


# ------------------------------------------------------------------------------------------- timeline


@pytest.mark.parametrize("make", [changes_score, multitrack_score], ids=["tempo_changes", "multitrack"])
def test_timeline_puts_notes_where_pretty_midi_does(make, tmp_path: Path) -> None:
    path = tmp_path / "a.mid"
    write_midi(make(), path)
    events = timeline(path)
    ons = sorted(
        (e.time, e.message.note) for e in events if e.message.type == "note_on" and e.message.velocity > 0
    )
    pm = pretty_midi.PrettyMIDI(str(path))
    want = sorted((n.start, n.pitch) for inst in pm.instruments for n in inst.notes)
    assert len(ons) == len(want) > 0
    assert [p for _, p in ons] == [p for _, p in want]
    assert max(abs(a - b) for (a, _), (b, _) in zip(ons, want)) < 1e-6
    offs = sorted(
        e.time
        for e in events
        if e.message.type == "note_off" or (e.message.type == "note_on" and e.message.velocity == 0)
    )
    assert (
        max(abs(a - b) for a, b in zip(offs, sorted(n.end for i in pm.instruments for n in i.notes))) < 1e-6
    )
    assert all(not e.message.is_meta for e in events)
    assert [e.time for e in events] == sorted(e.time for e in events)
    # programs come before the notes they colour
    first_note = next(i for i, e in enumerate(events) if e.message.type == "note_on")
    assert any(e.message.type == "program_change" for e in events[:first_note])


def test_timeline_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not midi at all")
    with pytest.raises(MidiReadError, match="bad.mid"):
        timeline(bad)
    with pytest.raises(MidiReadError, match="no such file"):
        timeline(tmp_path / "missing.mid")
    t2 = mido.MidiFile(type=2)
    t2.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, time=0)]))
    t2.save(tmp_path / "t2.mid")
    with pytest.raises(MidiReadError, match="type 2"):
        timeline(tmp_path / "t2.mid")


# ------------------------------------------------------------------------------------------- scheduler


def test_play_sends_every_message_in_order_at_its_time() -> None:
    clock, port = FakeClock(), RecordingPort()
    events = notes_events([0.0, 0.5, 0.5, 1.25])
    start = clock.now
    report = play(events, port, clock=clock, sleep=clock.sleep)
    music = port.messages[: len(events)]
    assert music == [e.message for e in events]
    assert report.sent == len(events) and not report.interrupted
    assert 0 <= report.late_max < 1e-3
    assert clock.now - start >= events[-1].time
    # the end: sustain off and all notes off on the channel used, no stray note-offs (all were closed)
    tail = port.messages[len(events) :]
    assert [(m.control, m.value) for m in tail] == [(64, 0), (123, 0)]


def test_play_keeps_real_time_within_a_few_ms_while_another_thread_computes() -> None:
    """The sampler runs beside the player: pure-Python work in another thread must not delay it."""
    events = notes_events([i * 0.02 for i in range(30)], dur=0.01)
    stop = threading.Event()

    def busy() -> None:
        x = 0
        while not stop.is_set():
            for i in range(10_000):
                x += i * i

    t = threading.Thread(target=busy, daemon=True)
    t.start()
    port = RecordingPort()
    try:
        t0 = time.perf_counter()
        report = play(events, port)
    finally:
        stop.set()
        t.join()
    errs = sorted(abs(sent - t0 - ev.time) for (sent, _), ev in zip(port.sent, events))
    assert errs[len(errs) // 2] < 0.003, errs
    assert report.late_p95 < 0.005, report
    assert report.sent == len(events)


def test_interrupt_turns_off_every_sounding_note_and_raises() -> None:
    port = RecordingPort(fail_at=5)  # the 6th send is Ctrl-C
    events = [
        Event(0.0, mido.Message("note_on", channel=0, note=60, velocity=90)),
        Event(0.0, mido.Message("note_on", channel=9, note=36, velocity=90)),
        Event(0.01, mido.Message("note_on", channel=1, note=40, velocity=90)),
        Event(0.01, mido.Message("note_off", channel=9, note=36)),
        Event(0.02, mido.Message("note_on", channel=0, note=64, velocity=90)),
        Event(0.03, mido.Message("note_off", channel=0, note=60)),
    ]
    with pytest.raises(KeyboardInterrupt):
        play(events, port)
    after = port.messages[5:]
    offs = {(m.channel, m.note) for m in after if m.type == "note_off"}
    assert offs == {(0, 60), (1, 40), (0, 64)}  # the drum note was already off
    ccs = {(m.channel, m.control) for m in after if m.type == "control_change"}
    assert ccs == {(c, k) for c in (0, 1, 9) for k in (64, 123)}
    assert after.index(next(m for m in after if m.type == "control_change")) == len(offs)  # notes first


def test_a_failing_port_is_silenced_and_its_error_raised() -> None:
    port = RecordingPort(fail_at=1, fail_with=OSError)
    with pytest.raises(OSError):
        play(notes_events([0.0, 0.01]), port)
    assert [m.type for m in port.messages[1:]] == ["note_off", "control_change", "control_change"]


def test_silence_survives_a_dead_port() -> None:
    class Dead:
        def send(self, msg: mido.Message) -> None:
            raise OSError("gone")

    silence(Dead(), {(0, 60): 1}, {0})  # does not raise: the error that brought us here matters


# ------------------------------------------------------------------------------------------- look-ahead


def test_ahead_produces_at_most_one_item_beyond_the_one_in_use() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for i in range(6):
            produced.append(i)
            yield i

    seen = []
    for x in ahead(items(), size=1):
        time.sleep(0.05)  # the producer has had time to run as far as it may
        seen.append((x, len(produced)))
    assert [x for x, _ in seen] == list(range(6))
    # holding item x, the producer has made x+1 (queued) and is blocked holding x+2 at most
    assert all(made <= x + 3 for x, made in seen), seen


def test_ahead_raises_the_producers_error_and_stops_it_when_left() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise MidiReadError("song_002.mid: boom")

    it = ahead(failing())
    assert next(it) == 1
    with pytest.raises(MidiReadError, match="boom"):
        next(it)

    produced: list[int] = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    for x in ahead(endless()):
        if x == 2:
            break
    time.sleep(0.2)
    n = len(produced)
    time.sleep(0.2)
    assert len(produced) == n <= 6  # stopped, not running on


def test_stream_plays_songs_in_order_as_they_come(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        inst = Instrument(program=0, name="p", notes=[Note(60 + i, 80, 0, 120)])
        score = Score(480, [inst], [TempoChange(0, 120.0)], [TimeSignature(0, 4, 4)])
        write_midi(score, tmp_path / f"s{i}.mid")
        paths.append(tmp_path / f"s{i}.mid")
    port = RecordingPort()
    played: list[str] = []
    reports = stream(iter(paths), port, gap=0.0, on_song=lambda p, ev: played.append(p.name))
    assert played == ["s0.mid", "s1.mid", "s2.mid"]
    assert [m.note for m in port.messages if m.type == "note_on"] == [60, 61, 62]
    assert len(reports) == 3


# ------------------------------------------------------------------------------------------- ports


def test_find_port_by_name_part_and_default() -> None:
    names = ["Midi Through:Midi Through Port-0 14:0", "FLUID Synth (123):Synth input port (123:0) 128:0"]
    assert find_port(None, names) == names[1]
    assert find_port("fluid", names) == names[1]
    assert find_port(names[0], names) == names[0]
    with pytest.raises(LiveError, match="no such MIDI output.*FLUID"):
        find_port("reaper", names)
    with pytest.raises(LiveError, match="matches 2"):
        find_port("port", names)
    with pytest.raises(LiveError, match="no MIDI output ports.*--virtual"):
        find_port(None, [])


def test_without_rtmidi_one_line_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "rtmidi", None)  # import rtmidi now fails
    r = run("ports")
    assert (
        r.exit_code == 1
        and r.output.strip() == f"Error: MIDI ports need the python-rtmidi backend: {live.INSTALL_HINT}"
    )
    song = tmp_path / "s.mid"
    write_midi(multitrack_score(), song)
    r = run("play", song)
    assert r.exit_code == 1 and "python-rtmidi" in r.output and "Traceback" not in r.output


def _fake_output(monkeypatch: pytest.MonkeyPatch) -> RecordingPort:
    port = RecordingPort()

    class Opened:
        def __init__(self, name: str | None = None, *, virtual: bool = False) -> None:
            self.label = (name or "composer") if virtual else "Test Port"

        def __enter__(self) -> tuple[RecordingPort, str]:
            return port, self.label

        def __exit__(self, *exc: object) -> None:
            port.close()

    monkeypatch.setattr(live, "open_output", Opened)
    return port


def test_cli_play_sends_the_file_to_the_port(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    port = _fake_output(monkeypatch)
    song = tmp_path / "s.mid"
    write_midi(changes_score(), song)
    r = run("play", song, "--port", "test")
    assert r.exit_code == 0, r.output
    want = [e.message for e in timeline(song)]
    assert port.messages[: len(want)] == want
    assert port.closed
    assert "on Test Port" in r.output and "messages in" in r.output


def test_cli_generate_live_plays_and_writes_each_song(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    port = _fake_output(monkeypatch)
    monkeypatch.setattr(live.time, "sleep", lambda s: None)  # no gap between the songs
    ckpt = make_checkpoint(tmp_path / "ck")
    out = tmp_path / "songs"
    r = run("generate", ckpt, "-o", out, "-n", "2", "--bars", "1", "--seed", "7", "--live", "--virtual")
    assert r.exit_code == 0, r.output
    assert "on composer" in r.output and "2 song(s) played" in r.output
    files = sorted(out.glob("song_*.mid"))
    assert [p.name for p in files] == ["song_001.mid", "song_002.mid"]
    # everything each file holds reached the port, in order, song 1 first
    want = [e.message for p in files for e in timeline(p)]
    got = [m for m in port.messages if not (m.type == "control_change" and m.control in (64, 123))]
    assert got == want
    # each sidecar's seed makes that song again on its own
    side = json.loads((out / "song_002.json").read_text())
    assert side["seed"] == 8
    again = tmp_path / "again"
    r = run("generate", ckpt, "-o", again, "-n", "1", "--bars", "1", "--seed", "8")
    assert r.exit_code == 0, r.output
    assert (again / "song_001.mid").read_bytes() == (out / "song_002.mid").read_bytes()


def test_cli_port_needs_live(tmp_path: Path) -> None:
    r = run("generate", tmp_path / "none", "-o", tmp_path / "o", "--port", "x")
    assert r.exit_code == 2 and "add --live" in r.output


@pytest.mark.skipif(
    not os.path.exists("/dev/snd/seq"), reason="no ALSA sequencer on this machine (/dev/snd/seq)"
)
def test_a_real_virtual_port_carries_the_song(tmp_path: Path) -> None:
    pytest.importorskip("rtmidi")
    song = tmp_path / "s.mid"
    write_midi(multitrack_score(), song)
    events = timeline(song)[:40]
    got: list[mido.Message] = []
    with live.open_output("composer-test", virtual=True) as (out, name):
        inputs = [n for n in mido.get_input_names() if "composer-test" in n]
        assert inputs, mido.get_input_names()
        with mido.open_input(inputs[0], callback=got.append):
            play(events, out)
            time.sleep(0.2)
    notes = [m for m in got if m.type in ("note_on", "note_off")]
    assert notes == [e.message for e in events if e.message.type in ("note_on", "note_off")]
