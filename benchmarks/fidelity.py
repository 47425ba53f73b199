"""Fidelity: composer's MIDI reader against pretty_midi note by note, then each encoding's round trip.

    python benchmarks/fidelity.py [FOLDER ...] [--no-bach] [--limit N]

Reader: every file is read by ``composer.midi.read_midi`` and by pretty_midi. Notes pair by (drum flag,
program, pitch) and onset within 1 ms; a pair must also agree on the offset (1 ms), the velocity and the
tempo in force at the onset. pretty_midi follows rules of its own that differ from a MIDI player's; a
disagreement caused by one of them is counted under that rule (:data:`CAUSES`), any other is a bug.

Encodings: each file's score goes encode -> decode and is compared with what the reader read: in ``beat``,
onset and offset within one grid step (in beats), velocity in its bin, the local tempo within half a tempo
bin (plus the label's rounding to whole bpm); in ``performance``, onset and offset within one time step (in
seconds) and velocity in its bin. What an encoding drops by design and counts in its encode report
(pitches out of range, tempos outside its range, pieces too long) is counted apart, not as a failure;
failures that follow from an encoding's design without being counted there are shown by cause
(:data:`ENCODING_CAUSES`). Every table gives the worst file, not only the total.

Folders default to the Bach chorales (from ``corpora/bach/midi``, else converted with music21 into a temp
folder), ``../shared/midi/{nottingham,asap/scores,asap/performances,vgmidi}`` and ``/tmp/debmidi`` (Debian's
game and accompaniment MIDI, see benchmarks/README.md), each where present. Nothing there: a message, exit 0.
tests/test_fidelity.py runs the same comparisons on a fixed set of chorales and on crafted files.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from composer.errors import ComposerError  # noqa: E402
from composer.midi import Score, is_midi_path, read_midi_with_report  # noqa: E402
from composer.tokenizer import BeatTokenizer, Tokenizer, TokenizerConfig, tokenizer_from_config  # noqa: E402

#: Onsets and offsets of the reader and pretty_midi must agree within this many seconds.
TOLERANCE_S = 1e-3
#: Notes whose onset and offset are equal rounded to this many seconds pair first (the two readers'
#: seconds differ by float rounding only).
QUANTUM_S = 1e-5
READER_CHECKS = ("onset", "offset", "velocity", "tempo")
BEAT_CHECKS = ("onset", "offset", "velocity", "tempo")
PERFORMANCE_CHECKS = ("onset", "offset", "velocity")

#: Rules by which pretty_midi reads a file differently from a MIDI player (and from composer's reader).
CAUSES = {
    "pretty_midi_failed": "pretty_midi (mido) refuses the file",
    "tempo_outside_track_0": "pretty_midi reads tempo changes from the first track only",
    "format_2": "pretty_midi lays a format 2 file's sequences on top of each other, not one after another",
    "smpte_division": "pretty_midi reads an SMPTE division as ticks per quarter note",
    "same_pitch_overlap": "pretty_midi's first note-off of a pitch ends every earlier note of it still on",
    "zero_length_drum": "pretty_midi drops a drum note switched off at the tick it starts (a hit even so)",
    "unterminated": "pretty_midi drops a note never switched off (composer ends it with the track)",
    "program_change_during_note": "pretty_midi files a note under the program in force at its note-off",
}
#: Why a note fails a round trip through an encoding, where the failure is the encoding's design.
ENCODING_CAUSES = {
    "same_pitch_overlap": "the note sounds while another of its program and pitch does",
    "tempo_moved_to_grid": "a tempo change after the note moved back onto the note's grid step",
}


# ------------------------------------------------------------------------------------------------ notes


@dataclass
class Notes:
    """Notes as flat arrays. ``program`` is 0 for drums; ``tick`` is the onset in the file's own ticks."""

    drum: np.ndarray
    program: np.ndarray
    pitch: np.ndarray
    onset: np.ndarray
    offset: np.ndarray
    velocity: np.ndarray
    qpm: np.ndarray
    tick: np.ndarray

    def __len__(self) -> int:
        return len(self.pitch)

    @property
    def key(self) -> np.ndarray:
        return self.drum.astype(np.int64) * 128 * 128 + self.program * 128 + self.pitch


def _notes(cols: list[tuple], qpm: np.ndarray) -> Notes:
    a = np.array(cols, dtype=np.float64).reshape(-1, 7)
    return Notes(
        drum=a[:, 0].astype(bool),
        program=a[:, 1].astype(np.int64),
        pitch=a[:, 2].astype(np.int64),
        onset=a[:, 3],
        offset=a[:, 4],
        velocity=a[:, 5].astype(np.int64),
        qpm=qpm,
        tick=a[:, 6].astype(np.int64),
    )


def tempo_at_ticks(score: Score, ticks: np.ndarray) -> np.ndarray:
    """The tempo (qpm) in force at each tick: the last change at or before it."""
    tempos = sorted(score.tempos, key=lambda t: t.tick)  # stable: the reader's order within a tick stays
    if not tempos:
        return np.full(len(ticks), 120.0)
    at = np.array([t.tick for t in tempos], dtype=np.int64)
    qpm = np.array([t.qpm for t in tempos], dtype=np.float64)
    i = np.searchsorted(at, np.asarray(ticks, dtype=np.int64), side="right") - 1
    return np.where(i >= 0, qpm[np.maximum(i, 0)], 120.0)


def score_notes(score: Score, unit: str = "seconds") -> Notes:
    """A Score's notes, timed in seconds (through its tempo map) or in quarter notes (``unit="beats"``)."""
    cols = [
        (inst.is_drum, 0 if inst.is_drum else inst.program, n.pitch, n.start, n.end, n.velocity, n.start)
        for inst in score.instruments
        for n in inst.notes
    ]
    notes = _notes(cols, np.zeros(len(cols)))
    ticks_on, ticks_off = notes.onset.astype(np.int64), notes.offset.astype(np.int64)
    if unit == "beats":
        notes.onset = ticks_on / score.ticks_per_beat
        notes.offset = ticks_off / score.ticks_per_beat
    else:
        notes.onset = score.ticks_to_seconds(ticks_on) if len(cols) else notes.onset
        notes.offset = score.ticks_to_seconds(ticks_off) if len(cols) else notes.offset
    notes.qpm = tempo_at_ticks(score, ticks_on)
    return notes


def pretty_notes(pm) -> Notes:  # type: ignore[no-untyped-def]
    cols = [
        (inst.is_drum, 0 if inst.is_drum else inst.program, n.pitch, n.start, n.end, n.velocity, 0)
        for inst in pm.instruments
        for n in inst.notes
    ]
    notes = _notes(cols, np.zeros(len(cols)))
    if len(cols):
        notes.tick = np.array([pm.time_to_tick(t) for t in notes.onset], dtype=np.int64)
    times, tempi = pm.get_tempo_changes()
    i = np.searchsorted(times, notes.onset, side="right") - 1
    notes.qpm = tempi[np.maximum(i, 0)] if len(tempi) else np.full(len(cols), 120.0)
    return notes


def pair(
    a: Notes,
    b: Notes,
    tolerance: float,
    quantum: float,
    velocity_bin: np.ndarray | None = None,
    half_even: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pair notes of one (drum, program, pitch) whose onsets agree within ``tolerance``.

    Returns (indices into a, indices into b) of the pairs, then the indices of a and of b left unpaired.
    Notes pair in three passes, each over what the one before left: (1) same onset and offset rounded to
    ``quantum`` and the same velocity (or velocity bin, with ``velocity_bin``); (2) the same without the
    offset; (3) onset within ``tolerance``, in order of onset, offset and velocity. Halves round up, or to
    even with ``half_even`` (as the performance encoder rounds seconds to steps). So a note that one side
    lacks leaves its neighbours paired with their own, and notes of one pitch that an encoding puts on one
    grid step keep their own velocities.
    """
    vbin = np.arange(128) if velocity_bin is None else velocity_bin
    va, vb = vbin[np.clip(a.velocity, 0, 127)], vbin[np.clip(b.velocity, 0, 127)]

    def rounded(x: np.ndarray) -> np.ndarray:
        return np.rint(x / quantum) if half_even else np.floor(x / quantum + 0.5)

    qa, qb, ea, eb = rounded(a.onset), rounded(b.onset), rounded(a.offset), rounded(b.offset)
    pa: list[int] = []
    pb: list[int] = []
    # pass 1: same rounded onset, offset and velocity; pass 2: same rounded onset and velocity
    ra, rb = _pair_equal(
        np.arange(len(a)), np.arange(len(b)), (a.key, qa, ea, va), (b.key, qb, eb, vb), pa, pb
    )
    ra, rb = _pair_equal(ra, rb, (a.key, qa, va, a.offset), (b.key, qb, vb, b.offset), pa, pb, equal=3)
    # pass 3: what is left, by onset within the tolerance
    ra = ra[np.lexsort((a.velocity[ra], a.offset[ra], a.onset[ra], a.key[ra]))]
    rb = rb[np.lexsort((b.velocity[rb], b.offset[rb], b.onset[rb], b.key[rb]))]
    ka, kb = a.key[ra].tolist(), b.key[rb].tolist()
    ta, tb = a.onset[ra].tolist(), b.onset[rb].tolist()
    only_a: list[int] = []
    only_b: list[int] = []
    i = j = 0
    while i < len(ka) and j < len(kb):
        if ka[i] == kb[j] and abs(ta[i] - tb[j]) <= tolerance:
            pa.append(int(ra[i]))
            pb.append(int(rb[j]))
            i += 1
            j += 1
        elif (ka[i], ta[i]) < (kb[j], tb[j]):
            only_a.append(int(ra[i]))
            i += 1
        else:
            only_b.append(int(rb[j]))
            j += 1
    only_a.extend(ra[i:].tolist())
    only_b.extend(rb[j:].tolist())

    def arr(x: list[int]) -> np.ndarray:
        return np.asarray(x, dtype=np.int64)

    return arr(pa), arr(pb), arr(only_a), arr(only_b)


def _pair_equal(
    ra: np.ndarray,
    rb: np.ndarray,
    fields_a: tuple[np.ndarray, ...],
    fields_b: tuple[np.ndarray, ...],
    pa: list[int],
    pb: list[int],
    equal: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pair the notes ``ra`` of one side with ``rb`` of the other whose first ``equal`` fields (all by
    default) are equal, in order of all the fields; append the pairs to pa, pb; return what is left."""
    n = len(fields_a) if equal is None else equal
    oa = ra[np.lexsort(tuple(f[ra] for f in fields_a[::-1]))]
    ob = rb[np.lexsort(tuple(f[rb] for f in fields_b[::-1]))]
    ga = list(zip(*(f[oa].tolist() for f in fields_a[:n])))
    gb = list(zip(*(f[ob].tolist() for f in fields_b[:n])))
    left_a: list[int] = []
    left_b: list[int] = []
    i = j = 0
    while i < len(ga) and j < len(gb):
        if ga[i] == gb[j]:
            pa.append(int(oa[i]))
            pb.append(int(ob[j]))
            i += 1
            j += 1
        elif ga[i] < gb[j]:
            left_a.append(int(oa[i]))
            i += 1
        else:
            left_b.append(int(ob[j]))
            j += 1
    left_a += oa[i:].tolist()
    left_b += ob[j:].tolist()
    return np.asarray(left_a, dtype=np.int64), np.asarray(left_b, dtype=np.int64)


# ------------------------------------------------------------------------------------------------ results


@dataclass
class FileResult:
    """One file's comparison: how many notes, and how many pass each check."""

    name: str
    notes: int = 0  # notes compared: the pairs, plus the notes only one side has
    passed: dict[str, int] = field(default_factory=dict)  # check -> notes that pass it
    all_passed: int = 0  # notes that pass every check
    explained: Counter[str] = field(default_factory=Counter)  # cause -> failing notes it explains
    by_design: Counter[str] = field(default_factory=Counter)  # what an encoding drops by design -> notes
    error: str = ""  # the one-line reason a file could not be compared

    @property
    def failing(self) -> int:
        return self.notes - self.all_passed

    @property
    def unexplained(self) -> int:
        return self.failing - sum(self.explained.values())

    def agreement(self, check: str | None = None) -> float:
        """Percent of notes passing ``check`` (every check when None); 100 for a file without notes."""
        ok = self.all_passed if check is None else self.passed.get(check, 0)
        return 100.0 * ok / self.notes if self.notes else 100.0


def _result(name: str, checks: tuple[str, ...], ok: dict[str, np.ndarray], unpaired: int) -> FileResult:
    """Pairs' pass/fail arrays per check, plus ``unpaired`` notes that fail every check."""
    n_pairs = len(next(iter(ok.values()))) if ok else 0
    every = np.ones(n_pairs, dtype=bool)
    for c in checks:
        every &= ok[c]
    return FileResult(
        name,
        notes=n_pairs + unpaired,
        passed={c: int(ok[c].sum()) for c in checks},
        all_passed=int(every.sum()),
    )


# ------------------------------------------------------------------------------------- reader vs pretty_midi


@dataclass
class Scan:
    """What a raw-event scan of a file finds that makes pretty_midi read it differently."""

    file_causes: list[str] = field(default_factory=list)
    #: (drum, program, pitch, onset tick) -> cause, for notes composer reads and pretty_midi does not
    ours: dict[tuple[int, int, int, int], str] = field(default_factory=dict)
    #: the same for notes pretty_midi reads and composer does not
    theirs: dict[tuple[int, int, int, int], str] = field(default_factory=dict)


def scan_events(mf) -> Scan:  # type: ignore[no-untyped-def]
    """Pair each track's notes by composer's rule (first in, first out) and by pretty_midi's, from mido's
    events (delta times, before pretty_midi makes them absolute), and name the rule behind every note on
    which they differ."""
    scan = Scan()
    if mf.type == 2 and len(mf.tracks) > 1:
        scan.file_causes.append("format_2")
    if any(m.type == "set_tempo" for t in mf.tracks[1:] for m in t):
        scan.file_causes.append("tempo_outside_track_0")
    for track in mf.tracks:
        fifo, pretty = _pair_both_ways(track)
        only_fifo = Counter(fifo) - Counter(pretty)
        only_pretty = Counter(pretty) - Counter(fifo)
        pretty_by_time = {(ch, p, s, e, v) for ch, p, s, e, v, _prog, _u in only_pretty}
        fifo_by_time = {(ch, p, s, e, v) for ch, p, s, e, v, _prog, _u in only_fifo}
        for ch, p, s, e, v, prog, unterminated in only_fifo:
            if unterminated:
                cause = "unterminated"
            elif s == e:
                cause = "zero_length_drum"
            elif (ch, p, s, e, v) in pretty_by_time:
                cause = "program_change_during_note"
            else:
                cause = "same_pitch_overlap"
            scan.ours[_scan_key(ch, prog, p, s)] = cause
        for ch, p, s, e, v, prog, _u in only_pretty:
            cause = "program_change_during_note" if (ch, p, s, e, v) in fifo_by_time else "same_pitch_overlap"
            scan.theirs[_scan_key(ch, prog, p, s)] = cause
    return scan


def _scan_key(ch: int, prog: int, pitch: int, tick: int) -> tuple[int, int, int, int]:
    drum = int(ch == 9)
    return drum, 0 if drum else prog, pitch, tick


def _pair_both_ways(track) -> tuple[list[tuple], list[tuple]]:  # type: ignore[no-untyped-def]
    """(channel, pitch, start, end, velocity, program, unterminated) per note, FIFO and pretty_midi's way."""
    tick = 0
    programs = [0] * 16
    fifo_open: dict[tuple[int, int], deque[tuple[int, int, int]]] = defaultdict(deque)
    pm_open: dict[tuple[int, int], list[tuple[int, int]]] = {}
    fifo: list[tuple] = []
    pretty: list[tuple] = []
    for msg in track:
        tick += msg.time
        if msg.type == "program_change":
            programs[msg.channel] = msg.program
        elif msg.type == "note_on" and msg.velocity > 0:
            key = (msg.channel, msg.note)
            fifo_open[key].append((tick, msg.velocity, programs[msg.channel]))
            pm_open.setdefault(key, []).append((tick, msg.velocity))
        elif msg.type in ("note_on", "note_off"):
            key = (msg.channel, msg.note)
            q = fifo_open.get(key)
            if q:
                s, v, prog = q.popleft()
                if s != tick or msg.channel == 9:  # composer drops a pitched note switched off as it starts
                    fifo.append((*key, s, tick, v, prog, False))
            if key in pm_open:  # pretty_midi 0.2.x, PrettyMIDI._load_instruments
                close = [(s, v) for s, v in pm_open[key] if s != tick]
                keep = [(s, v) for s, v in pm_open[key] if s == tick]
                for s, v in close:
                    pretty.append((*key, s, tick, v, programs[msg.channel], False))
                if close and keep:
                    pm_open[key] = keep
                else:
                    del pm_open[key]
    for key, q in fifo_open.items():
        for s, v, prog in q:
            fifo.append((*key, s, max(tick, s), v, prog, True))
    return fifo, pretty


def compare_reader(path: Path) -> tuple[FileResult, Score | None]:
    """composer's reader against pretty_midi on one file; also the score read (None if unreadable)."""
    import mido
    import pretty_midi

    name = str(path)
    try:
        score, _report = read_midi_with_report(path)
    except ComposerError as e:
        return FileResult(name, error=f"composer: {e}"), None
    ours = score_notes(score)
    try:
        mf = mido.MidiFile(path)
        scan = scan_events(mf)
        if mf.ticks_per_beat & 0x8000:
            scan.file_causes.append("smpte_division")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = pretty_notes(pretty_midi.PrettyMIDI(mido_object=mf))
        fixed = None
        if "tempo_outside_track_0" in scan.file_causes:  # what pretty_midi reads with every tempo in track 0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fixed = pretty_notes(
                    pretty_midi.PrettyMIDI(mido_object=tempos_to_track_0(mido.MidiFile(path)))
                )
    except Exception:  # pretty_midi and mido raise anything on a broken file
        res = FileResult(name, notes=len(ours), passed=dict.fromkeys(READER_CHECKS, 0))
        res.explained["pretty_midi_failed"] = len(ours)
        return res, score
    return reader_result(name, ours, theirs, scan, fixed), score


def tempos_to_track_0(mf):  # type: ignore[no-untyped-def]
    """The file with every set_tempo moved into the first track, at its tick, after that track's own events
    at that tick (the order a player merging the tracks plays them in)."""
    import mido

    tempos: list[tuple[int, int, mido.MetaMessage]] = []
    for k, track in enumerate(mf.tracks):
        tick = 0
        kept = []
        for msg in track:
            tick += msg.time
            if k and msg.type == "set_tempo":
                tempos.append((tick, k, msg))
            else:
                kept.append((tick, msg))
        if k:
            track[:] = _delta(kept)
    tick = 0
    first = []
    for msg in mf.tracks[0]:
        tick += msg.time
        first.append((tick, 0, msg))
    end = [e for e in first if e[2].type == "end_of_track"]
    events = sorted([e for e in first if e[2].type != "end_of_track"] + tempos, key=lambda e: (e[0], e[1]))
    last = max([e[0] for e in events], default=0)
    events += [(max(t, last), 0, m) for t, _, m in end]
    mf.tracks[0][:] = _delta([(t, m) for t, _, m in events])
    return mf


def _delta(events):  # type: ignore[no-untyped-def]
    out, now = [], 0
    for tick, msg in events:
        out.append(msg.copy(time=tick - now))
        now = tick
    return out


def reader_result(
    name: str, ours: Notes, theirs: Notes, scan: Scan, fixed: Notes | None = None
) -> FileResult:
    """Compare the notes; explain each disagreement by the rule behind it. ``fixed``: pretty_midi's notes
    with every tempo in the first track, where the file has tempos elsewhere; a note that agrees with
    those is explained by that rule, and only the rest are matched against the note-level rules."""
    if fixed is not None:
        res = reader_result(name, ours, theirs, Scan(), None)
        others = [c for c in scan.file_causes if c != "tempo_outside_track_0"]
        rest = reader_result(name, ours, fixed, Scan(others, scan.ours, scan.theirs), None)
        res.explained = rest.explained
        res.explained["tempo_outside_track_0"] = max(0, res.failing - rest.failing)
        return res
    ia, ib, a_only, b_only = pair(ours, theirs, TOLERANCE_S, QUANTUM_S)
    ok = {
        "onset": np.ones(len(ia), dtype=bool),  # paired on it
        "offset": np.abs(ours.offset[ia] - theirs.offset[ib]) <= TOLERANCE_S,
        "velocity": ours.velocity[ia] == theirs.velocity[ib],
        "tempo": np.isclose(ours.qpm[ia], theirs.qpm[ib], rtol=1e-9, atol=0),
    }
    res = _result(name, READER_CHECKS, ok, len(a_only) + len(b_only))
    bad = ~(ok["offset"] & ok["velocity"] & ok["tempo"])
    file_cause = scan.file_causes[0] if scan.file_causes else None

    def explain(notes: Notes, idx: np.ndarray, flags: dict[tuple[int, int, int, int], str]) -> None:
        for d, p, pitch, t in zip(
            notes.drum[idx].tolist(), notes.program[idx].tolist(), notes.pitch[idx].tolist(), notes.tick[idx]
        ):
            cause = flags.get((int(d), p, pitch, int(t)), file_cause)
            if cause is not None:
                res.explained[cause] += 1

    explain(ours, np.concatenate([ia[bad], a_only]), scan.ours)
    explain(theirs, b_only, scan.theirs)
    return res


# ------------------------------------------------------------------------------------------- encodings


def compare_encoding(name: str, score: Score, tok: Tokenizer) -> FileResult:
    """encode -> decode against the score, note by note, with the encoding's own tolerances."""
    beat = isinstance(tok, BeatTokenizer)
    checks = BEAT_CHECKS if beat else PERFORMANCE_CHECKS
    try:
        ids, stats = tok.encode(score)
    except ComposerError as e:  # a piece the encoding refuses (too long): by design
        res = FileResult(name, error=f"refused: {e}")
        res.by_design["piece_refused"] = score.note_count
        return res
    decoded = tok.decode(ids)
    unit = "beats" if beat else "seconds"
    orig, back = score_notes(score, unit), score_notes(decoded, unit)
    c = tok.config
    in_range = (orig.pitch >= c.pitch_min) & (orig.pitch <= c.pitch_max)
    orig = Notes(*(getattr(orig, f)[in_range] for f in Notes.__dataclass_fields__))
    step = 1.0 / c.beat_resolution if beat else c.time_shift_ms / 1000.0
    vb = tok._vel_bin  # velocity -> its bin, the table the encoder uses (the tokenizer has no public one)
    ia, ib, a_only, b_only = pair(orig, back, step + 1e-9, step, vb, half_even=not beat)
    ok = {
        "onset": np.ones(len(ia), dtype=bool),
        # a note lasts at least one step
        "offset": np.abs(np.maximum(orig.offset[ia], orig.onset[ia] + step) - back.offset[ib]) <= step + 1e-6,
        "velocity": vb[np.clip(orig.velocity[ia], 1, 127)] == vb[np.clip(back.velocity[ib], 1, 127)],
    }
    by_design: Counter[str] = Counter()
    if stats.pitches_out_of_range:
        by_design["pitches_out_of_range"] = stats.pitches_out_of_range
    if beat:
        assert isinstance(tok, BeatTokenizer)
        q0, q1 = orig.qpm[ia], back.qpm[ib]
        half_bin = 0.5 / c.tempo_steps_per_octave

        def near(q: np.ndarray) -> np.ndarray:  # the decoded tempo is the bin's label, in whole bpm
            return np.abs(np.log2(q1 / q)) <= half_bin + np.log2(1 + 0.5 / q1) + 1e-12

        ok["tempo"] = near(q0)
        clamped = ~tok.tempo_kept(q0)
        if clamped.any():  # a tempo the grid cannot keep is clamped by design (and counted by the encoder)
            by_design["tempos_clamped"] = int((clamped & ~ok["tempo"]).sum())
            ok["tempo"] |= clamped
        # a tempo change off the grid moves to the nearest grid step, and so does a note: a note that
        # shares its step with a change made after it plays at the new tempo, the one in force at the last
        # tick that rounds to that step
        res_, tpq = c.beat_resolution, score.ticks_per_beat
        g = np.floor(orig.onset[ia] * res_ + 0.5)
        moved = ~ok["tempo"] & near(tempo_at_ticks(score, np.ceil((2 * g + 1) * tpq / (2 * res_)) - 1))
    res = _result(name, checks, ok, len(a_only) + len(b_only))
    res.by_design.update(by_design)
    every = np.ones(len(ia), dtype=bool)
    for check in checks:
        every &= ok[check]
    overlaps = same_pitch_overlaps(orig)
    n_overlap = int(overlaps[ia[~every]].sum() + overlaps[a_only].sum())
    if n_overlap:
        res.explained["same_pitch_overlap"] = n_overlap
    if beat and (moved & ~overlaps[ia]).any():
        res.explained["tempo_moved_to_grid"] = int((moved & ~overlaps[ia]).sum())
    return res


def same_pitch_overlaps(notes: Notes) -> np.ndarray:
    """True for each note that sounds while another of its (drum, program, pitch) does."""
    order = np.lexsort((notes.offset, notes.onset, notes.key))
    out = np.zeros(len(order), dtype=bool)
    key, on, end = notes.key[order].tolist(), notes.onset[order].tolist(), notes.offset[order].tolist()
    last_key, longest, holder = None, -np.inf, -1  # per key: the latest end so far, and whose
    for i in range(len(order)):
        if key[i] != last_key:
            last_key, longest, holder = key[i], -np.inf, -1
        elif on[i] < longest:
            out[order[i]] = out[order[holder]] = True
        if end[i] > longest:
            longest, holder = end[i], i
    return out


# ------------------------------------------------------------------------------------------- collections


@dataclass
class Collection:
    name: str
    reader: list[FileResult] = field(default_factory=list)
    beat: list[FileResult] = field(default_factory=list)
    performance: list[FileResult] = field(default_factory=list)
    unreadable: list[FileResult] = field(default_factory=list)  # files composer's reader refuses
    seconds: float = 0.0


def run_collection(name: str, files: list[Path], progress: bool = True) -> Collection:
    col = Collection(name)
    beat = tokenizer_from_config(TokenizerConfig(encoding="beat"))
    perf = tokenizer_from_config(TokenizerConfig(encoding="performance"))
    t0 = time.perf_counter()
    for k, path in enumerate(files, 1):
        res, score = compare_reader(path)
        if score is None:
            col.unreadable.append(res)
            continue
        col.reader.append(res)
        col.beat.append(compare_encoding(res.name, score, beat))
        col.performance.append(compare_encoding(res.name, score, perf))
        if progress and (k % 50 == 0 or k == len(files)):
            print(f"  {name}: {k}/{len(files)} files, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    col.seconds = time.perf_counter() - t0
    return col


def midi_files(folder: Path, limit: int | None = None) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_midi_path(p))
    return files[:limit] if limit else files


def _short(name: str, root: Path) -> str:
    try:
        return str(Path(name).relative_to(root))
    except ValueError:
        return Path(name).name


def summary_rows(results: list[FileResult], checks: tuple[str, ...], root: Path) -> dict[str, str]:
    """Table cells for one collection and one comparison."""
    rows = [r for r in results if not r.error]
    notes = sum(r.notes for r in rows)
    cells = {"files": f"{len(rows):,}", "notes": f"{notes:,}"}
    for c in checks:
        ok = sum(r.passed.get(c, 0) for r in rows)
        cells[c] = f"{100.0 * ok / notes:.3f}" if notes else "-"
    worst = min(rows, key=lambda r: (r.agreement(), r.name), default=None)
    cells["all"] = f"{100.0 * sum(r.all_passed for r in rows) / notes:.3f}" if notes else "-"
    below = sum(1 for r in rows if r.failing)
    cells["below"] = f"{below:,}"
    if worst is None or not worst.failing:
        cells["worst file"] = "-"
    else:
        cells["worst file"] = f"{worst.agreement():.1f} {_short(worst.name, root)}"
    return cells


def print_table(title: str, cols: list[tuple[Collection, Path]], kind: str, checks: tuple[str, ...]) -> None:
    print(f"\n### {title}\n")
    head = ["collection", "files", "notes", *[f"{c} %" for c in checks], "all %", "files < 100%"]
    head.append("worst file (all %)")
    causes = {"reader": (), "beat": tuple(ENCODING_CAUSES), "performance": ("same_pitch_overlap",)}[kind]
    extra = ["explained", "unexplained"] if kind == "reader" else [*causes, "unexplained", "by design"]
    print("| " + " | ".join(head + extra) + " |")
    print("|" + "---|" * (len(head) + len(extra)))
    for col, root in cols:
        results: list[FileResult] = getattr(col, kind)
        cells = summary_rows(results, checks, root)
        row = [col.name, cells["files"], cells["notes"], *[cells[c] for c in checks], cells["all"]]
        row += [cells["below"], cells["worst file"]]
        if kind == "reader":
            row.append(f"{sum(sum(r.explained.values()) for r in results):,}")
            row.append(f"{sum(r.unexplained for r in results):,}")
        else:
            row += [f"{sum(r.explained.get(cause, 0) for r in results):,}" for cause in causes]
            row.append(f"{sum(r.unexplained for r in results):,}")
            lost = Counter[str]()
            for r in results:
                lost.update(r.by_design)
            row.append(", ".join(f"{k} {v:,}" for k, v in sorted(lost.items())) or "-")
        print("| " + " | ".join(row) + " |")


def print_exceptions(cols: list[tuple[Collection, Path]]) -> None:
    print("\n### Reader: disagreements with pretty_midi explained by its rules (notes, files)\n")
    print("| collection | " + " | ".join(CAUSES) + " |")
    print("|" + "---|" * (len(CAUSES) + 1))
    for col, _root in cols:
        cells = []
        for cause in CAUSES:
            notes = sum(r.explained.get(cause, 0) for r in col.reader)
            files = sum(1 for r in col.reader if r.explained.get(cause, 0))
            cells.append(f"{notes:,} ({files})" if notes else "-")
        print(f"| {col.name} | " + " | ".join(cells) + " |")
    bad = [(r, root) for col, root in cols for r in col.reader if r.unexplained]
    if bad:
        print("\nUnexplained disagreements (bugs):")
        for r, root in sorted(bad, key=lambda x: -x[0].unexplained)[:30]:
            print(f"- {_short(r.name, root)}: {r.unexplained} of {r.notes} notes")
    unreadable = [(r, root) for col, root in cols for r in col.unreadable]
    if unreadable:
        print("\nFiles composer's reader refuses:")
        for r, root in unreadable:
            print(f"- {_short(r.name, root)}: {r.error}")


def print_unexplained(cols: list[tuple[Collection, Path]], kind: str, top: int = 10) -> None:
    bad = [(r, root) for col, root in cols for r in getattr(col, kind) if r.unexplained > 0]
    if bad:
        print(f"\nFiles with unexplained {kind} failures (the {top} with most):")
        for r, root in sorted(bad, key=lambda x: -x[0].unexplained)[:top]:
            fails = {c: r.notes - n for c, n in r.passed.items() if r.notes - n}
            print(f"- {_short(r.name, root)}: {r.unexplained} of {r.notes} notes; failing {fails}")


# ------------------------------------------------------------------------------------------------ main


def bach_folder(tmp: Path) -> Path | None:
    """The Bach chorales as MIDI: corpora/bach/midi if built, else converted now (needs music21)."""
    built = ROOT / "corpora" / "bach" / "midi"
    if built.is_dir() and any(built.glob("*.mid")):
        return built
    from composer import bach

    if not bach.music21_available():
        print("Bach chorales skipped: music21 is not installed", file=sys.stderr)
        return None
    print("converting the Bach chorales with music21 ...", file=sys.stderr)
    out = tmp / "bach"
    result = bach.export_chorales(out)
    for name, reason in result.failed:
        print(f"  {name}: {reason}", file=sys.stderr)
    return out


def default_folders() -> list[tuple[str, Path]]:
    shared = ROOT.parent / "shared" / "midi"
    candidates = [
        ("nottingham", shared / "nottingham"),
        ("asap scores", shared / "asap" / "scores"),
        ("asap performances", shared / "asap" / "performances"),
        ("vgmidi", shared / "vgmidi"),
        ("debian", Path("/tmp/debmidi")),
    ]
    return [(n, p) for n, p in candidates if p.is_dir()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", type=Path, help="folders of MIDI files (default: see above)")
    ap.add_argument("--no-bach", action="store_true", help="leave out the Bach chorales")
    ap.add_argument("--limit", type=int, default=None, help="at most N files per folder")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        named = [(p.name or str(p), p) for p in args.folders] if args.folders else default_folders()
        missing = [p for _, p in named if not p.is_dir()]
        for p in missing:
            print(f"skipped {p}: not a folder", file=sys.stderr)
        named = [(n, p) for n, p in named if p.is_dir()]
        if not args.folders and not args.no_bach:
            b = bach_folder(Path(tmp))
            if b is not None:
                named.insert(0, ("bach", b))
        named = [(n, p, midi_files(p, args.limit)) for n, p in named]
        named = [(n, p, f) for n, p, f in named if f]
        if not named:
            print("fidelity: no MIDI files to compare (none of the default folders is there); nothing to do")
            return 0
        cols = [(run_collection(n, files), p) for n, p, files in named]

    from benchmarks.machine import cpu_name

    print(f"\n## Fidelity, {datetime.date.today().isoformat()}, {cpu_name()}")
    print_table("Reader against pretty_midi (onset, offset within 1 ms)", cols, "reader", READER_CHECKS)
    print_exceptions(cols)
    print_table("beat encoding: encode -> decode (within one grid step)", cols, "beat", BEAT_CHECKS)
    print_unexplained(cols, "beat")
    print_table(
        "performance encoding: encode -> decode (within one time step)",
        cols,
        "performance",
        PERFORMANCE_CHECKS,
    )
    print_unexplained(cols, "performance")
    total = sum(c.seconds for c, _ in cols)
    print(f"\n{sum(len(c.reader) for c, _ in cols):,} files in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
