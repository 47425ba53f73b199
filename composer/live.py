"""Playing MIDI in real time: a file's messages on a timeline, a scheduler that sends them to a port on
time, and the ports themselves (through mido with the python-rtmidi backend, the ``live`` extra).

The scheduler knows nothing about ports: anything with ``send(message)`` will do, so tests give it a port
that records what it was sent and when. Whatever stops it (the end, Ctrl-C, a failing port) it silences
what it started: a note-off for every note still sounding, then sustain off and all-notes-off on every
channel it used.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from composer.errors import ComposerError, MidiReadError

if TYPE_CHECKING:  # pragma: no cover
    import mido

#: What ``pip`` needs for ports (the scheduler itself needs only mido).
INSTALL_HINT = "pip install 'composer[live]' (python-rtmidi)"
#: The name of the port ``--virtual`` opens when none is given.
VIRTUAL_NAME = "composer"
#: The scheduler sleeps until this long before a message is due, then waits out the rest precisely.
SPIN_S = 0.002
#: Messages a port gets at the end: controller 64 (sustain) off, 123 (all notes off).
SUSTAIN, ALL_NOTES_OFF = 64, 123
#: Python's thread switch interval while playing: a sampler thread holding the interpreter must let the
#: player in within this (the default, 5 ms, is audible as uneven timing).
SWITCH_S = 0.0005

T = TypeVar("T")


class LiveError(ComposerError):
    """No MIDI backend, no such port, or a file that cannot be played."""


class Output(Protocol):
    def send(self, msg: mido.Message) -> None: ...


@dataclass(frozen=True)
class Event:
    """One channel message, due ``time`` seconds after the start."""

    time: float
    message: mido.Message


def timeline(path: str | os.PathLike[str]) -> list[Event]:
    """A MIDI file's channel messages (notes, programs, controllers, bends) at their times in seconds,
    through the file's tempo map; meta and system-exclusive messages are left out."""
    import mido

    p = Path(path)
    try:
        mid = mido.MidiFile(p, clip=True)
    except FileNotFoundError:
        raise MidiReadError(f"{p}: no such file") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        why = str(e) or ("it ends too soon" if isinstance(e, EOFError) else type(e).__name__)
        raise MidiReadError(f"{p}: not a readable MIDI file ({why})") from None
    if mid.type == 2:
        raise MidiReadError(f"{p}: a type 2 MIDI file (independent sequences) cannot be played as one piece")
    events, now = [], 0.0
    try:
        for msg in mid:  # merged tracks; msg.time is the delta in seconds, through the tempo map
            now += msg.time
            if not msg.is_meta and msg.type != "sysex":
                events.append(Event(now, msg.copy(time=0)))
    except (ValueError, KeyError, IndexError) as e:
        raise MidiReadError(f"{p}: not a playable MIDI file ({e})") from None
    return events


@dataclass(frozen=True)
class PlayReport:
    """What ``play`` did: messages sent and how late they were (seconds after they were due)."""

    sent: int
    seconds: float
    late_median: float
    late_p95: float
    late_max: float
    interrupted: bool

    def describe(self) -> str:
        return (
            f"{self.sent} messages in {self.seconds:.1f} s, late by {1e3 * self.late_median:.2f} ms median, "
            f"{1e3 * self.late_p95:.2f} ms p95, {1e3 * self.late_max:.2f} ms max"
        )


def play(
    events: Sequence[Event],
    port: Output,
    *,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> PlayReport:
    """Send ``events`` to ``port`` at their times from now. On any way out (the end, Ctrl-C, an error
    from the port) the notes it started are closed and sustain and all notes are turned off on the
    channels it used (``silence``); an interruption or error is then raised again."""
    sounding: dict[tuple[int, int], int] = {}  # (channel, note) -> how many note-ons are open
    channels: set[int] = set()
    late: list[float] = []
    switch = sys.getswitchinterval()
    sys.setswitchinterval(min(switch, SWITCH_S))
    start = clock()
    interrupted = True
    try:
        for ev in events:
            due = start + ev.time
            while (left := due - clock()) > 0:
                sleep(left - SPIN_S if left > SPIN_S else 0)
            late.append(clock() - due)
            port.send(ev.message)
            _track(ev.message, sounding, channels)
        interrupted = False
    finally:
        silence(port, sounding, channels)
        sys.setswitchinterval(switch)
    late.sort()
    q = (lambda f: late[min(len(late) - 1, int(f * len(late)))]) if late else (lambda f: 0.0)
    return PlayReport(
        sent=len(late),
        seconds=clock() - start,
        late_median=q(0.5),
        late_p95=q(0.95),
        late_max=late[-1] if late else 0.0,
        interrupted=interrupted,
    )


def _track(msg: mido.Message, sounding: dict[tuple[int, int], int], channels: set[int]) -> None:
    if not hasattr(msg, "channel"):
        return
    channels.add(msg.channel)
    if msg.type == "note_on" and msg.velocity > 0:
        k = (msg.channel, msg.note)
        sounding[k] = sounding.get(k, 0) + 1
    elif msg.type in ("note_off", "note_on"):
        k = (msg.channel, msg.note)
        if sounding.get(k, 0) > 1:
            sounding[k] -= 1
        else:
            sounding.pop(k, None)


def silence(port: Output, sounding: dict[tuple[int, int], int], channels: set[int]) -> None:
    """Note-off for each sounding note, then sustain off and all-notes-off on each channel. A port that
    fails now is past helping: the first error stops it quietly (the one that brought us here matters)."""
    import mido

    msgs = [mido.Message("note_off", channel=c, note=n) for (c, n) in sorted(sounding)]
    for c in sorted(channels):
        msgs.append(mido.Message("control_change", channel=c, control=SUSTAIN, value=0))
        msgs.append(mido.Message("control_change", channel=c, control=ALL_NOTES_OFF, value=0))
    try:
        for m in msgs:
            port.send(m)
    except Exception:  # noqa: BLE001 - see the docstring
        return
    sounding.clear()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


def ahead(items: Iterable[T], size: int = 1) -> Iterator[T]:
    """``items``, produced in a background thread at most ``size`` items ahead of the one being used
    (the next song is sampled while this one plays). An error in the producer is raised here, at the
    item it failed on; leaving the loop stops the producer before its next item."""
    q: queue.Queue[object] = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(x: object) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for x in items:
                if stop.is_set() or not put(x):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            put(_Failed(e))
            return
        put(_DONE)

    thread = threading.Thread(target=produce, name="composer-ahead", daemon=True)
    thread.start()
    try:
        while True:
            x = q.get()
            if x is _DONE:
                return
            if isinstance(x, _Failed):
                raise x.error
            yield x  # type: ignore[misc]  # anything else is an item
    finally:
        stop.set()


def stream(
    songs: Iterable[Path],
    port: Output,
    *,
    gap: float = 1.0,
    on_song: Callable[[Path, list[Event]], None] | None = None,
    on_played: Callable[[Path, PlayReport], None] | None = None,
    size: int = 1,
) -> list[PlayReport]:
    """Play MIDI files to ``port`` one after another as ``songs`` yields them, the next one produced
    in the background while one plays (``ahead``, which also reads each file into its timeline, so a
    song starts on time after the gap), ``gap`` seconds of silence between them."""
    reports = []
    for i, (path, events) in enumerate(ahead(((p, timeline(p)) for p in songs), size)):
        if i and gap > 0:
            time.sleep(gap)
        if on_song is not None:
            on_song(path, events)
        reports.append(play(events, port))
        if on_played is not None:
            on_played(path, reports[-1])
    return reports


# ----------------------------------------------------------------------------- ports (python-rtmidi)


def _backend() -> None:
    try:
        import rtmidi  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        raise LiveError(f"MIDI ports need the python-rtmidi backend: {INSTALL_HINT}") from None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """ALSA's C library prints its own complaints to file descriptor 2; our one line says it better."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stderr (tests): nothing to hide
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _system_error(e: Exception) -> LiveError:
    hint = " (Linux: the ALSA sequencer /dev/snd/seq must exist; sudo modprobe snd-seq)"
    return LiveError(f"cannot open the MIDI system: {e}{hint if sys.platform.startswith('linux') else ''}")


def output_names() -> list[str]:
    """The MIDI output ports this machine has now."""
    _backend()
    import mido

    try:
        with _quiet_stderr():
            return list(mido.get_output_names())
    except Exception as e:  # noqa: BLE001 - rtmidi raises its own SystemError family
        raise _system_error(e) from None


def find_port(name: str | None, names: Sequence[str]) -> str:
    """The output ``name`` picks: exactly, else the one whose name contains it (any case); without a
    name, the first output that is not ALSA's "Midi Through"."""
    if not names:
        raise LiveError(
            "no MIDI output ports: start a synth or DAW (e.g. fluidsynth -a pulseaudio -m alsa_seq), "
            "or open one with --virtual"
        )
    if name is None:
        real = [n for n in names if "midi through" not in n.lower()]
        return (real or list(names))[0]
    if name in names:
        return name
    hits = [n for n in names if name.lower() in n.lower()]
    if len(hits) == 1:
        return hits[0]
    listed = "; ".join(names)
    if not hits:
        raise LiveError(f"--port {name!r}: no such MIDI output; outputs: {listed}")
    raise LiveError(f"--port {name!r} matches {len(hits)} outputs; name one of: {'; '.join(hits)}")


@contextlib.contextmanager
def open_output(
    name: str | None = None, *, virtual: bool = False
) -> Iterator[tuple[mido.ports.BaseOutput, str]]:
    """An open MIDI output and its name: the port ``name`` picks (``find_port``), or with ``virtual`` a
    new port called ``name`` (default ``composer``) that a DAW can record from (Linux, macOS)."""
    _backend()
    import mido

    if virtual:
        label = name or VIRTUAL_NAME
        try:
            with _quiet_stderr():
                port = mido.open_output(label, virtual=True)
        except NotImplementedError:
            raise LiveError(
                "--virtual: this system has no virtual MIDI ports (Windows: use loopMIDI)"
            ) from None
        except Exception as e:  # noqa: BLE001
            raise _system_error(e) from None
    else:
        label = find_port(name, output_names())
        try:
            with _quiet_stderr():
                port = mido.open_output(label)
        except Exception as e:  # noqa: BLE001
            raise LiveError(f"--port {label!r}: cannot open it ({e})") from None
    try:
        yield port, label
    finally:
        port.close()
