"""Key estimation: composer's ``estimate_key`` against music21's Krumhansl-Schmuckler analysis, file by file.

    python benchmarks/key.py [FOLDER ...] [--limit N] [--unquantized] [--show N]

Both sides use the Krumhansl-Kessler (1982) profiles and pick the key of the highest Pearson correlation
(music21's ``analysis.discrete.KrumhanslSchmuckler``, the same as ``stream.analyze('krumhansl')``; its
plain ``analyze('key')`` uses the Aarden-Essen profiles instead). composer reads each MIDI file with its
own reader and weighs pitch classes by the notes' durations in ticks; music21 parses the same file with its
MIDI importer (which by default quantizes onsets and durations) and weighs by quarterLength.

Columns: files compared, exact agreement (tonic and mode), agreement up to the relative or parallel key,
and each side's time per file (composer: read + estimate; music21: parse, then analysis). The "music21's
profile" column feeds music21's own pitch-class profile (sum of quarterLength per pitch class over its
notes, what its analysis correlates) to composer's ``key_from_profile``: where that agrees with music21
and composer's own answer does not, the difference lies in the profile each reads from the file, not in
the method. ``--unquantized`` adds music21 parsing without quantization, to tell its quantizing from the
rest. Disagreements are broken down (relative, parallel, a fifth apart, other) and the first few listed.

Folders default to the Bach chorales (``corpora/bach/midi``, written by ``composer corpus bach``) and
``../shared/midi/nottingham``, each where present. Nothing there: a message, exit 0.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from composer.attributes import Key, estimate_key, key_from_profile  # noqa: E402
from composer.errors import ComposerError  # noqa: E402
from composer.midi import is_midi_path, read_midi  # noqa: E402

DEFAULT_FOLDERS = {
    "Bach chorales": ROOT / "corpora" / "bach" / "midi",
    "Nottingham": ROOT.parent / "shared" / "midi" / "nottingham",
}


@dataclass
class Result:
    name: str
    files: int = 0
    exact: int = 0
    loose: int = 0
    via_profile: int = 0  # composer's correlation on music21's profile agrees with music21
    unquantized: int = 0  # music21 without quantizing agrees with composer
    ours_none: int = 0
    failed: int = 0
    ours_s: float = 0.0
    m21_parse_s: float = 0.0
    m21_analysis_s: float = 0.0
    kinds: Counter[str] = field(default_factory=Counter)
    disagreements: list[tuple[str, str, str]] = field(default_factory=list)


def relation(ours: Key | None, theirs: Key) -> str:
    """How composer's key stands to music21's: exact, relative, parallel, fifth, none or other."""
    if ours is None:
        return "none"
    if ours == theirs:
        return "exact"
    if ours.tonic == theirs.tonic:
        return "parallel"
    major, minor = (ours, theirs) if ours.mode == "major" else (theirs, ours)
    if major.mode != minor.mode and (major.tonic + 9) % 12 == minor.tonic:
        return "relative"
    if ours.mode == theirs.mode and (ours.tonic - theirs.tonic) % 12 in (5, 7):
        return "fifth"
    return "other"


def music21_key(stream) -> Key:  # type: ignore[no-untyped-def]
    from music21.analysis.discrete import KrumhanslSchmuckler

    k = KrumhanslSchmuckler().getSolution(stream)
    return Key(k.tonic.pitchClass, k.mode)


def music21_profile(stream) -> list[float]:  # type: ignore[no-untyped-def]
    """What music21's analysis correlates: quarterLength per pitch class over its (pitched) notes."""
    from music21 import note

    pcs = [0.0] * 12
    for n in stream.flatten().notes.getElementsNotOfClass(note.Unpitched):
        for p in n.pitches:
            pcs[p.pitchClass] += float(n.quarterLength)
    return pcs


def run_folder(name: str, files: list[Path], unquantized: bool, root: Path) -> Result:
    import music21

    r = Result(name)
    t_start = time.perf_counter()
    for i, f in enumerate(files):
        t0 = time.perf_counter()
        try:
            ours = estimate_key(read_midi(f))
        except ComposerError:
            r.failed += 1
            continue
        t1 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                stream = music21.converter.parse(str(f), format="midi")
            t2 = time.perf_counter()
            theirs = music21_key(stream)
            t3 = time.perf_counter()
            profile_key = key_from_profile(music21_profile(stream))
            if unquantized:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    raw = music21.converter.parse(str(f), format="midi", quantizePost=False)
                r.unquantized += music21_key(raw) == ours
        except Exception as e:  # music21 refusing a file is its own failure, not ours
            print(f"  music21 failed on {f.name}: {type(e).__name__}: {e}", file=sys.stderr)
            r.failed += 1
            continue
        r.files += 1
        r.ours_s += t1 - t0
        r.m21_parse_s += t2 - t1
        r.m21_analysis_s += t3 - t2
        kind = relation(ours, theirs)
        r.kinds[kind] += 1
        r.exact += kind == "exact"
        r.loose += kind in ("exact", "relative", "parallel")
        r.via_profile += profile_key == theirs
        r.ours_none += ours is None
        if kind != "exact":
            r.disagreements.append((str(f.relative_to(root)), str(ours), str(theirs)))
        if (i + 1) % 100 == 0:
            print(
                f"  {name}: {i + 1}/{len(files)} files, {time.perf_counter() - t_start:.0f} s",
                file=sys.stderr,
            )
    return r


def pct(n: int, d: int) -> str:
    return f"{100 * n / d:.1f}%" if d else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", type=Path, help="folders of MIDI files (default: see above)")
    ap.add_argument("--limit", type=int, default=None, help="at most N files per folder (the first, sorted)")
    ap.add_argument("--unquantized", action="store_true", help="also parse with music21 unquantized")
    ap.add_argument("--show", type=int, default=5, help="disagreeing files listed per folder")
    args = ap.parse_args(argv)
    try:
        import music21  # noqa: F401
    except ImportError:
        print("key: music21 is not installed (pip install -e '.[bach]'); nothing to compare")
        return 0

    named = [(p.name or str(p), p) for p in args.folders] if args.folders else list(DEFAULT_FOLDERS.items())
    results = []
    for name, folder in named:
        if not folder.is_dir():
            print(f"{name}: {folder} is not here, skipped", file=sys.stderr)
            continue
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_midi_path(p))[: args.limit]
        if files:
            results.append((run_folder(name, files, args.unquantized, folder), folder))
    if not results:
        print("key: no MIDI files to compare (none of the folders is there); nothing to do")
        return 0

    from benchmarks.machine import cpu_name

    print(f"\n## Key estimation against music21, {datetime.date.today().isoformat()}, {cpu_name()}\n")
    extra = " | music21 unquantized = composer" if args.unquantized else ""
    print(
        "| collection | files | exact | up to relative/parallel | composer on music21's profile = music21"
        f"{extra} | composer ms/file | music21 ms/file, parse + analysis (analysis) |"
    )
    print("|---|---:|---:|---:|---:|" + ("---:|" if args.unquantized else "") + "---:|---:|")
    for r, _ in results:
        n = r.files
        unq = f" | {pct(r.unquantized, n)}" if args.unquantized else ""
        per = 1000 / max(n, 1)
        m21 = f"{per * (r.m21_parse_s + r.m21_analysis_s):.0f} ({per * r.m21_analysis_s:.0f})"
        print(
            f"| {r.name} | {n:,} | {pct(r.exact, n)} | {pct(r.loose, n)} | {pct(r.via_profile, n)}{unq} | "
            f"{1000 * r.ours_s / max(n, 1):.1f} | {m21} |"
        )
    for r, _ in results:
        kinds = ", ".join(f"{k} {v}" for k, v in r.kinds.most_common() if k != "exact")
        print(f"\n{r.name}: disagreements {kinds or 'none'}; composer had no key for {r.ours_none}", end="")
        print(f", files refused {r.failed}" if r.failed else "")
        for path, ours, theirs in r.disagreements[: args.show]:
            print(f"- {path}: composer {ours}, music21 {theirs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
