"""MIDI <-> a small note model of our own.

Reading is a strict, fast Standard MIDI File parser (formats 0, 1 and 2, RIFF/RMID wrappers, running
status, SMPTE division, unknown chunks skipped as the spec says). It never trusts a length field: a
truncated track keeps the events read so far and says so in the read report. Events at one tick count in
file order, tracks one after another, as a player merging the tracks plays them: of several tempo changes
or time signatures at one tick the last is in force. Writing goes through mido and always produces a Type 1
file a DAW opens cleanly: a tempo track, then one named track per instrument with its program change,
drums on channel 10, each program on channels of its own while the 15 others last.

Times in the model are integer ticks at ``Score.ticks_per_beat`` ticks per quarter note; the tempo map
converts them to seconds.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from composer.errors import MidiReadError
from composer.fsutil import atomic_write

MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".smf", ".rmi")
DRUM_CHANNEL = 9
DEFAULT_QPM = 120.0
#: Quarter-note tempo bounds a file may claim; values outside are clamped and counted.
MIN_QPM, MAX_QPM = 1.0, 1000.0
#: Reading refuses files larger than this (bytes); a real MIDI file is rarely above a few MB.
MAX_FILE_BYTES = 64 * 1024 * 1024

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Note:
    pitch: int
    velocity: int
    start: int  # ticks
    end: int  # ticks, >= start

    @property
    def duration(self) -> int:
        return self.end - self.start


@dataclass
class Instrument:
    program: int  # General MIDI program 0..127 (ignored for drums)
    is_drum: bool = False
    name: str = ""
    notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TempoChange:
    tick: int
    qpm: float  # quarter notes per minute


@dataclass(frozen=True, slots=True)
class TimeSignature:
    tick: int
    numerator: int
    denominator: int


@dataclass
class Score:
    """A piece of music: instruments with notes, a tempo map and time signatures, in ticks."""

    ticks_per_beat: int = 480
    instruments: list[Instrument] = field(default_factory=list)
    tempos: list[TempoChange] = field(default_factory=list)
    time_signatures: list[TimeSignature] = field(default_factory=list)

    @property
    def note_count(self) -> int:
        return sum(len(i.notes) for i in self.instruments)

    @property
    def end_tick(self) -> int:
        return max((n.end for i in self.instruments for n in i.notes), default=0)

    def tempo_map(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(change ticks, seconds at each change, seconds per tick after each change)."""
        # stable sort: of several changes at one tick the last is in force; before the first, 120 qpm
        tempos = sorted(self.tempos, key=lambda t: t.tick)
        if not tempos or tempos[0].tick > 0:
            tempos.insert(0, TempoChange(0, DEFAULT_QPM))
        ticks = np.array([t.tick for t in tempos], dtype=np.int64)
        spt = np.array([60.0 / (t.qpm * self.ticks_per_beat) for t in tempos], dtype=np.float64)
        secs = np.zeros(len(tempos), dtype=np.float64)
        if len(tempos) > 1:
            secs[1:] = np.cumsum(np.diff(ticks) * spt[:-1])
        return ticks, secs, spt

    def ticks_to_seconds(self, ticks: np.ndarray) -> np.ndarray:
        t0, s0, spt = self.tempo_map()
        ticks = np.asarray(ticks, dtype=np.int64)
        i = np.searchsorted(t0, ticks, side="right") - 1
        return s0[i] + (ticks - t0[i]) * spt[i]

    def seconds_to_ticks(self, seconds: np.ndarray) -> np.ndarray:
        t0, s0, spt = self.tempo_map()
        seconds = np.asarray(seconds, dtype=np.float64)
        i = np.searchsorted(s0, seconds, side="right") - 1
        return np.rint(t0[i] + (seconds - s0[i]) / spt[i]).astype(np.int64)

    @property
    def duration_seconds(self) -> float:
        return float(self.ticks_to_seconds(np.array([self.end_tick]))[0])

    def bar_starts(self, end_tick: int, max_bars: int | None = None) -> np.ndarray:
        """Ticks of the bar lines from 0 through ``end_tick`` (at least the first), 4/4 before the first
        time signature; one that falls inside a bar takes effect at the next bar line, as the ``beat``
        encoding writes it. ``max_bars``: at most that many bars, plus one, are returned."""
        sigs = sorted(self.time_signatures, key=lambda t: t.tick)
        tpq = self.ticks_per_beat
        changes = [(0, 4 * tpq)] + [(t.tick, t.numerator * 4 * tpq // t.denominator) for t in sigs]
        return bar_lines(changes, max(end_tick, 0), max_bars).starts


class BarLines(NamedTuple):
    starts: np.ndarray  # bar-line positions
    change: np.ndarray  # per bar, the index of the change in force
    moved: int  # changes that fell inside a bar and took effect at the next bar line


def bar_lines(changes: Sequence[tuple[int, int]], end: int, max_bars: int | None = None) -> BarLines:
    """Bar lines from 0 through ``end`` under ``changes``: (position, bar length) pairs, the first in force
    from 0 (positions and lengths in any one unit: ticks, grid steps).

    The one bar-line computation (``Score.bar_starts``, the ``beat`` encoder). A change takes effect at the
    first bar line at or after its position, in list order; of several there, the last wins. Bars of
    one length are laid out at once, so the cost grows with the changes, not the bars. At most
    ``max_bars`` + 1 bars are returned, so that a caller can tell a piece with more than ``max_bars``.
    """
    segments: list[tuple[int, int, int, int]] = []  # (first bar line, bar length, bars, change)
    cur = k = moved = bars = 0
    n = len(changes)
    limit = None if max_bars is None else max_bars + 1
    while cur <= end and (limit is None or bars < limit):
        while k + 1 < n and changes[k + 1][0] <= cur:
            k += 1
            moved += changes[k][0] < cur
        step = max(1, changes[k][1])
        stop = end if k + 1 >= n else min(end, changes[k + 1][0] - 1)  # last tick before the next change
        count = (stop - cur) // step + 1
        if limit is not None:
            count = min(count, limit - bars)
        segments.append((cur, step, count, k))
        bars += count
        cur += count * step
    starts = [np.arange(c0, c0 + count * step, step, dtype=np.int64) for c0, step, count, _ in segments]
    which = [np.full(count, k, dtype=np.int64) for _, _, count, k in segments]
    none = [np.zeros(0, dtype=np.int64)]
    return BarLines(np.concatenate(starts or none), np.concatenate(which or none), moved)


@dataclass
class ReadReport:
    """What the reader had to repair or drop; nothing is dropped silently."""

    truncated_tracks: int = 0
    unknown_chunks: int = 0
    orphan_note_offs: int = 0
    unterminated_notes: int = 0
    zero_length_notes: int = 0  # pitched notes switched off at the tick they start: silent, dropped
    clamped_tempos: int = 0
    bad_time_signatures: int = 0

    def problems(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if v}


def is_midi_path(path: Path) -> bool:
    return path.suffix.lower() in MIDI_SUFFIXES


# ----------------------------------------------------------------------------------------------- reading


def read_midi(path: str | os.PathLike[str]) -> Score:
    """Read a MIDI file into a Score; raises MidiReadError with a one-line reason."""
    return read_midi_with_report(path)[0]


def read_midi_with_report(path: str | os.PathLike[str]) -> tuple[Score, ReadReport]:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise MidiReadError(f"file is {size} bytes, more than the {MAX_FILE_BYTES} a MIDI file may have")
        data = p.read_bytes()
    except OSError as e:
        raise MidiReadError(f"cannot read file: {e.strerror or e}") from None
    return parse_midi_bytes(data)


def _read_varlen(data: bytes, i: int, end: int) -> tuple[int, int]:
    value = 0
    for _ in range(4):
        if i >= end:
            raise IndexError
        b = data[i]
        i += 1
        value = (value << 7) | (b & 0x7F)
        if b < 0x80:
            return value, i
    raise ValueError("variable-length quantity longer than 4 bytes")


def parse_midi_bytes(data: bytes) -> tuple[Score, ReadReport]:
    """Parse a Standard MIDI File held in memory."""
    report = ReadReport()
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":
        start = data.find(b"MThd", 12)
        if start < 0:
            raise MidiReadError("RIFF/RMID file holds no MIDI data")
        data = data[start:]
    if len(data) < 14 or data[:4] != b"MThd":
        if not data:
            raise MidiReadError("file is empty")
        raise MidiReadError("not a MIDI file (no MThd header)")
    hlen = int.from_bytes(data[4:8], "big")
    if hlen < 6 or 8 + hlen > len(data):
        raise MidiReadError(f"header length {hlen} is invalid for a {len(data)}-byte file")
    fmt = int.from_bytes(data[8:10], "big")
    ntracks = int.from_bytes(data[10:12], "big")
    division = int.from_bytes(data[12:14], "big")
    if fmt not in (0, 1, 2):
        raise MidiReadError(f"MIDI format must be 0, 1 or 2, got {fmt}")
    smpte_ticks_per_second = 0
    if division & 0x8000:
        fps = 256 - (division >> 8)
        tpf = division & 0xFF
        if fps not in (24, 25, 29, 30) or tpf == 0:
            raise MidiReadError(f"SMPTE division has {fps} frames/s and {tpf} ticks/frame")
        smpte_ticks_per_second = fps * tpf
        # With SMPTE time a tick is a fixed fraction of a second; express it at 120 qpm.
        ticks_per_beat = max(1, smpte_ticks_per_second // 2)
    else:
        ticks_per_beat = division
        if ticks_per_beat == 0:
            raise MidiReadError("division (ticks per quarter note) is 0")

    # Chunks. The header's track count is a hint only: real files lie in both directions.
    tracks: list[tuple[int, int]] = []
    i = 8 + hlen
    n = len(data)
    while i + 8 <= n:
        ctype = data[i : i + 4]
        clen = int.from_bytes(data[i + 4 : i + 8], "big")
        body = i + 8
        end = body + clen
        if end > n:
            report.truncated_tracks += 1
            end = n
        if ctype == b"MTrk":
            tracks.append((body, end))
        else:
            report.unknown_chunks += 1
        i = end
    if not tracks:
        raise MidiReadError(f"no track chunks (header claims {ntracks})")

    tempos: list[tuple[int, int]] = []  # (tick, microseconds per quarter)
    time_sigs: list[TimeSignature] = []
    instruments: dict[tuple[int, int, int], Instrument] = {}
    track_offset = 0
    for t_index, (start, end) in enumerate(tracks):
        last_tick = _parse_track(
            data, start, end, t_index, track_offset, tempos, time_sigs, instruments, report
        )
        if fmt == 2:  # independent sequences: play them one after another
            track_offset = last_tick

    score = Score(ticks_per_beat=ticks_per_beat)
    if smpte_ticks_per_second:
        tempos = []
    # Of several changes at one tick the last in file order is in force (tracks in order, as a player
    # merging them plays them): the sorts are by tick only, and stable. Before the first tempo, 120 qpm.
    for tick, mpq in [(0, round(60_000_000 / DEFAULT_QPM)), *sorted(tempos, key=lambda t: t[0])]:
        qpm = 60_000_000 / mpq if mpq > 0 else float("inf")
        if not MIN_QPM <= qpm <= MAX_QPM:
            report.clamped_tempos += 1
            qpm = min(max(qpm, MIN_QPM), MAX_QPM)
        if score.tempos and score.tempos[-1].tick == tick:
            score.tempos.pop()
        if not score.tempos or score.tempos[-1].qpm != qpm:
            score.tempos.append(TempoChange(tick, qpm))
    for ts in sorted(time_sigs, key=lambda t: t.tick):
        if score.time_signatures and score.time_signatures[-1].tick == ts.tick:
            score.time_signatures.pop()
        if not score.time_signatures or (
            (score.time_signatures[-1].numerator, score.time_signatures[-1].denominator)
            != (ts.numerator, ts.denominator)
        ):
            score.time_signatures.append(ts)
    score.instruments = [inst for inst in instruments.values() if inst.notes]
    for inst in score.instruments:
        inst.notes.sort(key=lambda nt: (nt.start, nt.pitch, nt.end))
    return score, report


_DATA_LEN = {0x8: 2, 0x9: 2, 0xA: 2, 0xB: 2, 0xC: 1, 0xD: 1, 0xE: 2}
_SYSTEM_LEN = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFA: 0, 0xFB: 0, 0xFC: 0, 0xFE: 0}


def _parse_track(
    data: bytes,
    i: int,
    end: int,
    t_index: int,
    tick: int,
    tempos: list[tuple[int, int]],
    time_sigs: list[TimeSignature],
    instruments: dict[tuple[int, int, int], Instrument],
    report: ReadReport,
) -> int:
    """Parse one MTrk body; append notes to instruments keyed by (track, channel, program)."""
    programs = [0] * 16
    # open notes per (channel, pitch): FIFO of (start tick, velocity, program), as a MIDI device pairs them
    open_notes: dict[int, deque[tuple[int, int, int]]] = {}
    name = ""
    status = 0
    try:
        while i < end:
            # delta time (inline varlen for speed)
            b = data[i]
            i += 1
            delta = b & 0x7F
            if b & 0x80:
                for _ in range(3):
                    b = data[i]
                    i += 1
                    delta = (delta << 7) | (b & 0x7F)
                    if not b & 0x80:
                        break
                else:
                    raise ValueError("delta time longer than 4 bytes")
            tick += delta
            b = data[i]
            if b & 0x80:
                status = b
                i += 1
            elif not status:
                raise ValueError("data byte with no running status")
            kind = status >> 4
            if kind == 0x9 or kind == 0x8:
                pitch = data[i] & 0x7F
                vel = data[i + 1] & 0x7F
                if i + 2 > end:
                    raise IndexError
                i += 2
                ch = status & 0x0F
                key = (ch << 7) | pitch
                if kind == 0x9 and vel:
                    q = open_notes.get(key)
                    if q is None:
                        q = open_notes[key] = deque()
                    q.append((tick, vel, programs[ch]))
                else:
                    q = open_notes.get(key)
                    if q:
                        s, v, prog = q.popleft()
                        if s == tick and ch != DRUM_CHANNEL:
                            # switched off as it starts: silent (a drum hit sounds whatever its length)
                            report.zero_length_notes += 1
                        else:
                            _add_note(instruments, t_index, ch, prog, name, Note(pitch, v, s, tick))
                    else:
                        report.orphan_note_offs += 1
            elif kind < 0xF:
                if kind == 0xC:
                    programs[status & 0x0F] = data[i] & 0x7F
                i += _DATA_LEN[kind]
                if i > end:
                    raise IndexError
            elif status == 0xFF:
                mtype = data[i]
                length, i = _read_varlen(data, i + 1, end)
                payload = data[i : i + length]
                i += length
                if i > end:
                    raise IndexError
                status = 0  # meta events cancel running status
                if mtype == 0x2F:
                    break
                if mtype == 0x51 and length == 3:
                    tempos.append((tick, int.from_bytes(payload, "big")))
                elif mtype == 0x58 and length >= 2:
                    num, dpow = payload[0], payload[1]
                    if 1 <= num <= 64 and dpow <= 6:
                        time_sigs.append(TimeSignature(tick, num, 1 << dpow))
                    else:
                        report.bad_time_signatures += 1
                elif mtype == 0x03 and not name:
                    name = payload.decode("latin-1").strip()
            elif status in (0xF0, 0xF7):
                length, i = _read_varlen(data, i, end)
                i += length
                status = 0
                if i > end:
                    raise IndexError
            else:
                i += _SYSTEM_LEN.get(status, 0)
                status = 0
    except (IndexError, ValueError):
        report.truncated_tracks += 1
    # notes never switched off end where the track ends
    for key, q in open_notes.items():
        for s, v, prog in q:
            report.unterminated_notes += 1
            _add_note(instruments, t_index, key >> 7, prog, name, Note(key & 0x7F, v, s, max(tick, s)))
    return tick


def _add_note(
    instruments: dict[tuple[int, int, int], Instrument], track: int, ch: int, prog: int, name: str, note: Note
) -> None:
    drum = ch == DRUM_CHANNEL
    key = (track, ch, 0 if drum else prog)
    inst = instruments.get(key)
    if inst is None:
        inst = instruments[key] = Instrument(program=0 if drum else prog, is_drum=drum, name=name)
    inst.notes.append(note)


# ----------------------------------------------------------------------------------------------- writing


#: The 15 channels for pitched instruments (channel 10, index 9, is General MIDI's drum kit).
PITCHED_CHANNELS = tuple(c for c in range(16) if c != DRUM_CHANNEL)


@dataclass
class WriteReport:
    """What the writer could not keep exactly."""

    #: pitched programs that share a channel with another program (more programs than the 15 channels)
    shared_programs: int = 0
    programs: int = 0

    def problems(self) -> dict[str, int]:
        return {"shared_programs": self.shared_programs} if self.shared_programs else {}


def _channels(instruments: list[Instrument]) -> tuple[list[int], int]:
    """A channel per instrument, and how many programs had to share a channel with another program.

    Drums go on channel 10 (index 9), pitched instruments on the other 15: one each while they last; else
    each program on channels of its own (the spare ones to the programs with the most instruments), shared
    by instruments of that program only. With more programs than channels, the programs with the most
    notes get a channel each and every other program joins the channel with the fewest notes so far.
    """
    out = [DRUM_CHANNEL] * len(instruments)
    pitched = [i for i, inst in enumerate(instruments) if not inst.is_drum]
    n = len(PITCHED_CHANNELS)
    if len(pitched) <= n:
        for k, i in enumerate(pitched):
            out[i] = PITCHED_CHANNELS[k]
        return out, 0
    by_program: dict[int, list[int]] = {}  # in order of first appearance
    for i in pitched:
        by_program.setdefault(instruments[i].program, []).append(i)
    if len(by_program) <= n:
        share = dict.fromkeys(by_program, 1)
        for _ in range(n - len(by_program)):
            share[max(by_program, key=lambda p: len(by_program[p]) / share[p])] += 1
        free = iter(PITCHED_CHANNELS)
        for p, members in by_program.items():
            chans = [next(free) for _ in range(share[p])]
            for k, i in enumerate(members):
                out[i] = chans[k % len(chans)]
        return out, 0
    count = {p: sum(len(instruments[i].notes) for i in members) for p, members in by_program.items()}
    ranked = sorted(by_program, key=lambda p: -count[p])  # stable: ties in order of appearance
    channel = dict(zip(ranked, PITCHED_CHANNELS))
    load = {channel[p]: count[p] for p in ranked[:n]}
    for p in ranked[n:]:
        channel[p] = min(PITCHED_CHANNELS, key=lambda c: load[c])
        load[channel[p]] += count[p]
    for p, members in by_program.items():
        for i in members:
            out[i] = channel[p]
    return out, len(ranked) - n


def _program_switches(
    tracks: list[tuple[int, int, list[tuple[int, int, int, int, int]]]],
) -> set[tuple[int, int]]:
    """Where a channel shared by several programs needs a program change before a note-on.

    ``tracks``: (track number, program, events) of the tracks on one channel. A player merges the tracks
    into one stream, at each tick in track order; a note-on whose program is not the channel's at that
    point in the stream gets a program change just before it. Returns (track number, event index) pairs.
    """
    stream = []
    for t, prog, evs in tracks:
        stream.append((0, t, -1, prog))  # each track's program change at its start
        stream.extend((tick, t, k, prog) for k, (tick, on, *_rest) in enumerate(evs) if on)
    stream.sort()
    switches = set()
    current = -1
    for _tick, t, k, prog in stream:
        if k >= 0 and prog != current:
            switches.add((t, k))
        current = prog
    return switches


def program_name(program: int, is_drum: bool) -> str:
    if is_drum:
        return "Drums"
    import pretty_midi

    return pretty_midi.program_to_instrument_name(program)


def write_midi(score: Score, path: str | os.PathLike[str]) -> WriteReport:
    """Write a Score as a Type 1 MIDI file, atomically (temp file then rename).

    Every track keeps its own program. With more pitched programs than the 15 channels, some programs
    share a channel, switched by a program change before each of their notes (so each note still starts
    with its own sound in a General MIDI player); that is logged as a one-line warning and counted in the
    returned report.
    """
    import mido

    mf = mido.MidiFile(type=1, ticks_per_beat=score.ticks_per_beat)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("track_name", name="Tempo", time=0))
    events: list[tuple[int, int, mido.MetaMessage]] = []
    tempos = score.tempos or [TempoChange(0, DEFAULT_QPM)]
    for tc in tempos:
        mpq = int(round(60_000_000 / min(max(tc.qpm, MIN_QPM), MAX_QPM)))
        events.append((max(0, tc.tick), 0, mido.MetaMessage("set_tempo", tempo=min(mpq, 0xFFFFFF), time=0)))
    for ts in score.time_signatures or [TimeSignature(0, 4, 4)]:
        events.append(
            (
                ts.tick,
                1,
                mido.MetaMessage("time_signature", numerator=ts.numerator, denominator=ts.denominator),
            )
        )
    events.sort(key=lambda e: (e[0], e[1]))
    now = 0
    for tick, _, msg in events:
        meta.append(msg.copy(time=tick - now))
        now = tick
    meta.append(mido.MetaMessage("end_of_track", time=0))
    mf.tracks.append(meta)

    channels, shared = _channels(score.instruments)
    # (tick, on, pitch, end, velocity) per instrument: offs sort before ons; same-pitch notes starting
    # together go shortest first, so that a reader pairing first-in-first-out gives each its own end and
    # velocity
    all_evs: list[list[tuple[int, int, int, int, int]]] = []
    for inst in score.instruments:
        evs: list[tuple[int, int, int, int, int]] = []
        for nt in inst.notes:
            end = max(nt.end, nt.start + 1)  # never a zero-length note
            vel = min(max(int(nt.velocity), 1), 127)
            evs.append((nt.start, 1, nt.pitch, end, vel))
            evs.append((end, 0, nt.pitch, 0, 0))
        evs.sort()
        all_evs.append(evs)
    switches: set[tuple[int, int]] = set()
    if shared:
        on_channel: dict[int, list[tuple[int, int, list[tuple[int, int, int, int, int]]]]] = {}
        for t, (inst, ch) in enumerate(zip(score.instruments, channels)):
            if not inst.is_drum:
                on_channel.setdefault(ch, []).append((t, inst.program, all_evs[t]))
        for members in on_channel.values():
            if len({prog for _, prog, _ in members}) > 1:
                switches |= _program_switches(members)

    for t, (inst, ch, evs) in enumerate(zip(score.instruments, channels, all_evs)):
        tr = mido.MidiTrack()
        tr.append(mido.MetaMessage("track_name", name=inst.name or program_name(inst.program, inst.is_drum)))
        if not inst.is_drum:
            tr.append(mido.Message("program_change", channel=ch, program=inst.program, time=0))
        now = 0
        for k, (tick, on, pitch, _end, vel) in enumerate(evs):
            if (t, k) in switches:
                tr.append(mido.Message("program_change", channel=ch, program=inst.program, time=tick - now))
                now = tick
            kind = "note_on" if on else "note_off"
            tr.append(mido.Message(kind, channel=ch, note=pitch, velocity=vel if on else 0, time=tick - now))
            now = tick
        tr.append(mido.MetaMessage("end_of_track", time=0))
        mf.tracks.append(tr)
    atomic_write(Path(path), lambda fh: mf.save(file=fh))
    programs = len({inst.program for inst in score.instruments if not inst.is_drum})
    if shared:
        log.warning(
            "%s: %d programs for %d channels: %d share a channel with another program "
            "(switched by a program change before each of their notes)",
            path,
            programs,
            len(PITCHED_CHANNELS),
            shared,
        )
    return WriteReport(shared_programs=shared, programs=programs)
