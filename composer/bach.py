"""The built-in Bach chorale corpus: the chorales that ship inside music21, converted to MIDI offline.

music21 carries about 400 harmonised chorales (``bwv*.mxl``, a few ``.xml`` and Humdrum ``.krn`` twins) in
its corpus folder. :func:`export_chorales` turns each into a Type 1 MIDI file with one named track per
vocal part (soprano, alto, tenor, bass), the piece's tempo and time signatures, through the project's own
note model (:mod:`composer.midi`), in a pool of worker processes.

Conversion rules, kept deliberately simple and deterministic:

* Only the vocal parts are kept when a score names them (cantata settings add horns, trumpets, timpani and
  continuo that mostly double the voices); a score with no part named as a voice keeps all its parts.
* Tied notes are merged; grace notes and unpitched (percussion) notes are dropped; fermatas are ignored;
  repeats are not expanded (the music is written once, as notated).
* A pickup (anacrusis) is padded with a rest so that bar lines fall where the time signature says.
* The tempo is the score's metronome mark where it has one, else :data:`DEFAULT_CHORALE_QPM`.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import re
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from composer.errors import ComposerError
from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature, write_midi

if TYPE_CHECKING:  # pragma: no cover
    from music21 import stream

#: General MIDI program for every voice: 52 is "Choir Aahs" (0-based), apt for a four-part choir.
CHORALE_PROGRAM = 52
#: Tempo (quarter notes per minute) for a chorale whose score has no metronome mark.
DEFAULT_CHORALE_QPM = 80.0
#: Velocity of every note (the scores carry no dynamics).
CHORALE_VELOCITY = 80
TICKS_PER_BEAT = 480
#: Source formats in order of preference when one chorale exists in several (the .krn of bwv277 fails
#: on repeat expansion, its .mxl twin is fine).
SOURCE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn")
#: BWV 1-438 are the vocal works (cantatas, motets, passions, oratorios, the chorale collection
#: BWV 250-438). The corpus folder also holds a keyboard prelude (BWV 846), which is not a chorale.
MAX_CHORALE_BWV = 438
#: Files whose four voices are note for note another file's (an instrumental-score twin, an alternative
#: source): left out where the twin is present, so that no chorale is in the corpus twice (which would
#: also leak between a training and a validation split).
DUPLICATE_OF = {"bwv190.7-inst": "bwv190.7", "bwv197.7-a": "bwv398"}

_INSTALL_HINT = "pip install 'composer[bach]' (or pip install music21)"
_STEM_RE = re.compile(r"^bwv(\d+)(.*)$", re.IGNORECASE)
_VOICE_RE = re.compile(r"^\s*(soprano|alto|tenor|bass)(?:\s*(\d+)\b)?", re.IGNORECASE)


@dataclass(frozen=True)
class BachExport:
    written: list[Path]  # MIDI files written (or already present and reused), in source order
    failed: list[tuple[str, str]]  # (source name, one-line reason) for chorales that could not be converted


def music21_available() -> bool:
    return importlib.util.find_spec("music21") is not None


def _require_music21() -> None:
    if not music21_available():
        raise ComposerError(f"the Bach chorale corpus needs music21, which is not installed: {_INSTALL_HINT}")


def _natural_key(stem: str) -> tuple[int, list[tuple[int, str]]]:
    """bwv2.6 < bwv10.7 < bwv248.9-1 < bwv248.23-2: numbers compare as numbers."""
    m = _STEM_RE.match(stem)
    number = int(m.group(1)) if m else 0
    rest = m.group(2) if m else stem
    parts = [(int(tok), "") if tok.isdigit() else (-1, tok) for tok in re.findall(r"\d+|\D+", rest)]
    return number, parts


def chorale_sources() -> list[Path]:
    """The chorale files in music21's corpus, one per BWV number (prefer .mxl over .krn where both exist),
    sorted (numbers compare as numbers: bwv2.6 before bwv10.7).

    "One per BWV number" means one per file stem: ``bwv248.23-2`` and ``bwv248.23-s`` are distinct
    settings and both kept; ``bwv277.krn`` and ``bwv277.mxl`` are the same one and only the .mxl is kept.
    BWV 846 (a keyboard prelude) and the exact duplicates in :data:`DUPLICATE_OF` are left out.
    """
    _require_music21()
    from music21 import corpus

    try:
        paths = [Path(str(p)) for p in corpus.getComposer("bach")]
    except Exception as e:  # a broken music21 install
        raise ComposerError(f"cannot list music21's Bach corpus ({_one_line(e)}): {_INSTALL_HINT}") from None
    best: dict[str, Path] = {}
    for p in paths:
        suffix = p.suffix.lower()
        m = _STEM_RE.match(p.stem)
        if suffix not in SOURCE_SUFFIXES or m is None or not 1 <= int(m.group(1)) <= MAX_CHORALE_BWV:
            continue
        key = p.stem.lower()
        old = best.get(key)
        if old is None or SOURCE_SUFFIXES.index(suffix) < SOURCE_SUFFIXES.index(old.suffix.lower()):
            best[key] = p
    for dup, twin in DUPLICATE_OF.items():
        if twin in best:
            best.pop(dup, None)
    return sorted(best.values(), key=lambda p: (_natural_key(p.stem.lower()), p.stem))


def midi_name(source: Path) -> str:
    """``bwv248.23-2.mxl`` -> ``bwv248.23-2.mid`` (the stem keeps its dots)."""
    return f"{source.stem}.mid"


def _one_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split()) or "no message"
    text = f"{type(e).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------- conversion


def _voice_name(part_name: str | None) -> str | None:
    """'Soprano' / 'Soprano 2' / 'Soprano\\rOboe 1,2\\rViolin1' -> 'Soprano' / 'Soprano 2' / 'Soprano'."""
    m = _VOICE_RE.match(part_name or "")
    if m is None:
        return None
    return m.group(1).capitalize() + (f" {m.group(2)}" if m.group(2) else "")


def _tick(offset: Fraction | float, shift: Fraction | float) -> int:
    return int(round((Fraction(offset) + Fraction(shift)) * TICKS_PER_BEAT))


def _part_notes(flat: stream.Stream, shift: Fraction | float) -> list[Note]:
    """Notes of one flattened part, ties merged, grace and unpitched notes dropped."""
    from music21 import chord, note

    out: list[Note] = []
    open_ties: dict[int, Note] = {}  # pitch -> the note a tie continues
    for el in flat.notes:
        ql = el.duration.quarterLength
        if ql <= 0:  # grace note
            continue
        start = _tick(el.offset, shift)
        end = _tick(el.offset + ql, shift)
        if isinstance(el, chord.Chord):
            members = [(n.pitch.midi, n.tie or el.tie) for n in el.notes]
        elif isinstance(el, note.Note):
            members = [(el.pitch.midi, el.tie)]
        else:  # Unpitched, PercussionChord
            continue
        for pitch, tie in members:
            if not 0 <= pitch <= 127:
                continue
            kind = tie.type if tie is not None else None
            prev = open_ties.pop(pitch, None)
            if kind in ("stop", "continue") and prev is not None and prev.end == start:
                prev.end = end
                nt = prev
            else:
                nt = Note(pitch, CHORALE_VELOCITY, start, end)
                out.append(nt)
            if kind in ("start", "continue"):
                open_ties[pitch] = nt
    out.sort(key=lambda n: (n.start, n.pitch, n.end))
    return out


def _parse_musicxml_voices(source: Path) -> stream.Score:
    """Parse a MusicXML chorale, dropping the non-vocal parts *before* music21 builds them (the cantata
    settings with trumpets, timpani and strings are the slowest files to parse, and those parts are
    thrown away anyway). A score with no part named as a voice keeps all its parts."""
    import xml.etree.ElementTree as ET

    from music21 import converter
    from music21.musicxml.xmlToM21 import MusicXMLImporter

    if source.suffix.lower() == ".mxl":
        data = converter.ArchiveManager(source).getData()
    else:
        data = source.read_bytes()
    root = ET.fromstring(data)
    if root.tag != "score-partwise":
        raise ValueError(f"MusicXML root is <{root.tag}>, not <score-partwise>")
    part_list = root.find("part-list")
    if part_list is not None:
        score_parts = part_list.findall("score-part")
        voice_ids = {sp.get("id") for sp in score_parts if _voice_name(sp.findtext("part-name")) is not None}
        if voice_ids:
            for sp in score_parts:
                if sp.get("id") not in voice_ids:
                    part_list.remove(sp)
            for part in root.findall("part"):
                if part.get("id") not in voice_ids:
                    root.remove(part)
    return MusicXMLImporter().xmlRootToScore(root)


def chorale_to_score(source: Path) -> Score:
    """Parse one chorale with music21 and convert it to the project's note model."""
    from music21 import converter, stream

    parsed: stream.Score | stream.Part | stream.Opus
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if source.suffix.lower() in (".mxl", ".xml", ".musicxml"):
            parsed = _parse_musicxml_voices(source)
        else:  # Humdrum. forceSource: never read or write music21's pickle cache
            parsed = converter.parse(str(source), forceSource=True)
    if isinstance(parsed, stream.Opus):
        raise ValueError("the file holds several scores (an opus), not one chorale")
    parts = list(parsed.parts) if isinstance(parsed, stream.Score) else [parsed]
    if not parts:
        raise ValueError("the score has no parts")
    named = [(p, _voice_name(p.partName)) for p in parts]
    voices = [(p, name) for p, name in named if name is not None]
    chosen = voices or [(p, (p.partName or f"Part {i + 1}").strip()) for i, (p, _) in enumerate(named)]

    # A pickup bar is short by its paddingLeft; pad every part by it so downbeats land on bar lines.
    ref = chosen[0][0]
    first_measure = ref.getElementsByClass(stream.Measure).first()
    shift = Fraction(first_measure.paddingLeft) if first_measure is not None else Fraction(0)

    score = Score(ticks_per_beat=TICKS_PER_BEAT)
    ref_flat = None
    for p, name in chosen:
        flat = p.flatten()
        if p is ref:
            ref_flat = flat
        notes = _part_notes(flat, shift)
        if notes:
            score.instruments.append(Instrument(program=CHORALE_PROGRAM, name=name, notes=notes))
    if not score.instruments:
        raise ValueError("the score has no pitched notes")

    assert ref_flat is not None
    _add_global_marks(score, ref_flat, shift)
    return score


def _add_global_marks(score: Score, ref_flat: stream.Stream, shift: Fraction) -> None:
    """The tempo map and time signatures of the reference part, from tick 0 (80 qpm and 4/4 without)."""
    from music21 import meter, tempo

    def at(offset: Fraction | float) -> int:  # global marks at the very start belong to tick 0
        return 0 if offset == 0 else _tick(offset, shift)

    for mm in ref_flat.getElementsByClass(tempo.MetronomeMark):
        qpm = mm.getQuarterBPM()
        if qpm and qpm > 0:
            tick = at(mm.offset)
            if score.tempos and score.tempos[-1].tick == tick:
                score.tempos[-1] = TempoChange(tick, float(qpm))
            elif not score.tempos or score.tempos[-1].qpm != float(qpm):
                score.tempos.append(TempoChange(tick, float(qpm)))
    if not score.tempos or score.tempos[0].tick != 0:
        score.tempos.insert(0, TempoChange(0, score.tempos[0].qpm if score.tempos else DEFAULT_CHORALE_QPM))
    for ts in ref_flat.getElementsByClass(meter.TimeSignature):
        num, den = int(ts.numerator), int(ts.denominator)
        if not (1 <= num <= 64 and den in (1, 2, 4, 8, 16, 32, 64)):
            continue
        sig = TimeSignature(at(ts.offset), num, den)
        if score.time_signatures and score.time_signatures[-1].tick == sig.tick:
            score.time_signatures[-1] = sig
        elif not score.time_signatures or (
            (score.time_signatures[-1].numerator, score.time_signatures[-1].denominator) != (num, den)
        ):
            score.time_signatures.append(sig)
    if not score.time_signatures or score.time_signatures[0].tick != 0:
        first = score.time_signatures[0] if score.time_signatures else TimeSignature(0, 4, 4)
        score.time_signatures.insert(0, TimeSignature(0, first.numerator, first.denominator))


def _export_one(job: tuple[str, str]) -> tuple[str, str | None]:
    """Worker: convert one source to one MIDI file. Returns (output path, None) or (source name, reason)."""
    source, target = job
    try:
        score = chorale_to_score(Path(source))
        write_midi(score, target)  # atomic: a temp file in the same folder, then os.replace
    except Exception as e:  # one bad chorale must not stop the others
        return Path(source).name, _one_line(e)
    return target, None


# ----------------------------------------------------------------------------------------------- export


def _run_pool(
    jobs: list[tuple[str, str]], n_workers: int, collect: Callable[[tuple[str, str | None]], None]
) -> list[tuple[str, str]]:
    """Run jobs in a spawn-context process pool; return the jobs left undone if the pool broke.

    spawn is safe whatever the parent holds (torch threads, locks); concurrent.futures, unlike
    multiprocessing.Pool, notices a worker that dies (e.g. a calling script without an
    ``if __name__ == "__main__":`` guard, which spawn re-imports) instead of respawning it forever.
    """
    ctx = multiprocessing.get_context("spawn")
    pending: dict[Future[tuple[str, str | None]], tuple[str, str]] = {}
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx)
    try:
        pending = {pool.submit(_export_one, job): job for job in jobs}
        for fut in as_completed(pending):
            collect(fut.result())
            del pending[fut]
    except BrokenProcessPool:
        left = set(pending.values())
        return [job for job in jobs if job in left]
    except BaseException:  # Ctrl-C or a failing progress callback: do not wait for the queued jobs
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
    return []


def _pending(sources: list[Path], targets: list[Path]) -> tuple[set[Path], list[tuple[str, str]]]:
    """(the targets already written, (source, target) jobs for the others)."""
    done_ok: set[Path] = set()
    jobs: list[tuple[str, str]] = []
    for s, t in zip(sources, targets, strict=True):
        try:
            present = t.is_file() and t.stat().st_size > 0
        except OSError:
            present = False
        if present:
            done_ok.add(t)
        else:
            jobs.append((str(s), str(t)))
    return done_ok, jobs


def export_chorales(
    out_dir: Path,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    limit: int | None = None,
) -> BachExport:
    """Write one MIDI per chorale into out_dir as bwvNNN[.N].mid (name from the source file).

    Idempotent: a file already present with non-zero size is reused, not rewritten. Uses a pool of
    ``workers`` processes (default: os.cpu_count()); ``progress(done, total)`` is called as files finish
    (once up front when some files are reused). ``limit`` takes the first N sources. Raises ComposerError
    naming the pip command if music21 is not installed.
    """
    _require_music21()
    sources = chorale_sources()
    if limit is not None:
        sources = sources[: max(0, limit)]
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ComposerError(f"cannot create {out_dir}: {e.strerror or e}") from None

    total = len(sources)
    targets = [out_dir / midi_name(s) for s in sources]
    done_ok, jobs = _pending(sources, targets)
    done = len(done_ok)
    if progress is not None and done:
        progress(done, total)
    failed: list[tuple[str, str]] = []

    def collect(result: tuple[str, str | None]) -> None:
        nonlocal done
        name, reason = result
        if reason is None:
            done_ok.add(Path(name))
        else:
            failed.append((name, reason))
        done += 1
        if progress is not None:
            progress(done, total)

    n_workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    if n_workers > 1:
        jobs = _run_pool(jobs, n_workers, collect)
    for job in jobs:  # serial: one worker asked for, one job, or what a broken pool left undone
        collect(_export_one(job))

    order = {name: i for i, name in enumerate(s.name for s in sources)}
    failed.sort(key=lambda f: order.get(f[0], len(order)))
    return BachExport(written=[t for t in targets if t in done_ok], failed=failed)
