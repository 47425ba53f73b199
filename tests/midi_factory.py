"""MIDI fixtures built in memory: musical scores for round trips, raw bytes for broken files."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import mido

from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature, write_midi

TPQ = 480


def chord_score(bars: int = 4, program: int = 0) -> Score:
    """A single-track piece: a C major arpeggio, one quarter each, with a held chord per bar."""
    notes = []
    for bar in range(bars):
        t0 = bar * 4 * TPQ
        for k, p in enumerate((60, 64, 67, 72)):
            notes.append(Note(p, 70 + 10 * k, t0 + k * TPQ, t0 + (k + 1) * TPQ))
        notes.append(Note(48, 60, t0, t0 + 4 * TPQ))
    return Score(
        TPQ, [Instrument(program, False, "Piano", notes)], [TempoChange(0, 120.0)], [TimeSignature(0, 4, 4)]
    )


def multitrack_score() -> Score:
    """Bass, piano triplets, and drums; 2 bars of 4/4."""
    bass = Instrument(33, False, "Bass", [Note(36, 100, i * TPQ, i * TPQ + TPQ // 2) for i in range(8)])
    trip = TPQ // 3
    piano = Instrument(
        0, False, "Piano", [Note(72 + (i % 3), 64, i * trip, (i + 1) * trip) for i in range(24)]
    )
    drums = Instrument(
        0, True, "Drums", [Note(36 if i % 2 == 0 else 38, 110, i * TPQ, i * TPQ + 60) for i in range(8)]
    )
    drums.notes += [Note(42, 80, i * TPQ // 2, i * TPQ // 2 + 30) for i in range(16)]
    return Score(TPQ, [bass, piano, drums], [TempoChange(0, 96.0)], [TimeSignature(0, 4, 4)])


def changes_score() -> Score:
    """Tempo and time-signature changes: 2 bars of 4/4 at 120, 2 bars of 3/4 at 90, 1 bar 6/8 at 140."""
    notes, t = [], 0
    for beats, n in ((4, 2), (3, 2), (3, 1)):
        for _ in range(n):
            for b in range(beats):
                notes.append(Note(60 + b, 80, t + b * TPQ, t + b * TPQ + TPQ // 2))
            t += beats * TPQ
    tempos = [TempoChange(0, 120.0), TempoChange(8 * TPQ, 90.0), TempoChange(14 * TPQ, 140.0)]
    sigs = [TimeSignature(0, 4, 4), TimeSignature(8 * TPQ, 3, 4), TimeSignature(14 * TPQ, 6, 8)]
    return Score(TPQ, [Instrument(0, False, "Piano", notes)], tempos, sigs)


def overlap_score() -> Score:
    """Overlapping notes of one pitch (the second starts before the first ends), and repeated notes."""
    notes = [
        Note(60, 80, 0, 2 * TPQ),
        Note(60, 90, TPQ, 3 * TPQ),
        Note(62, 70, 4 * TPQ, 5 * TPQ),
        Note(62, 70, 5 * TPQ, 6 * TPQ),
    ]
    return Score(
        TPQ, [Instrument(0, False, "Piano", notes)], [TempoChange(0, 120.0)], [TimeSignature(0, 4, 4)]
    )


def edge_score() -> Score:
    """Zero-length notes, pitches 0 and 127, velocity 1 and 127, a note 20 quarters long."""
    notes = [
        Note(0, 1, 0, TPQ),
        Note(127, 127, TPQ, 2 * TPQ),
        Note(64, 64, 2 * TPQ, 2 * TPQ),  # zero length
        Note(40, 50, 0, 20 * TPQ),
    ]
    return Score(TPQ, [Instrument(5, False, "EP", notes)], [TempoChange(0, 120.0)], [TimeSignature(0, 4, 4)])


SCORES = {
    "single": chord_score,
    "multitrack_drums": multitrack_score,
    "tempo_timesig_changes": changes_score,
    "overlapping_same_pitch": overlap_score,
    "edge_values": edge_score,
}


def write_score(score: Score, path: Path) -> Path:
    write_midi(score, path)
    return path


# --------------------------------------------------------------------------------- raw files, good and bad


def mido_bytes(mf: mido.MidiFile) -> bytes:
    buf = io.BytesIO()
    mf.save(file=buf)
    return buf.getvalue()


def header(fmt: int = 1, ntracks: int = 1, division: int = TPQ) -> bytes:
    return b"MThd" + struct.pack(">IHHH", 6, fmt, ntracks, division)


def track(body: bytes) -> bytes:
    return b"MTrk" + struct.pack(">I", len(body)) + body


def note_track_body(n: int = 4, channel: int = 0) -> bytes:
    """n quarter notes; note-offs as note-on velocity 0 under running status."""
    out = bytearray()
    for i in range(n):
        out += bytes([0x00, 0x90 | channel, 60 + i, 100])
        out += bytes([0x83, 0x60, 60 + i, 0])  # delta 480, running status
    out += b"\x00\xff\x2f\x00"
    return bytes(out)


def simple_midi_bytes() -> bytes:
    return header(0, 1) + track(note_track_body())
