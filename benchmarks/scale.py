"""Does composer take a Lakh-sized collection in stride? Build, open and train at growing file counts.

    python benchmarks/scale.py [--sizes 10000,50000,200000] [--from DIR] [--workers W] [--steps S]

Makes a synthetic collection of N distinct MIDI files per size (excerpts of up to 32 bars of real pieces from
``--from``, transposed -6..+5 and started at different bars, each file's track named with its number so
no two files have the same content), then, each step in a fresh process whose memory is sampled every
20 ms from /proc:

* **build**: ``composer corpus build`` (``--workers`` processes): files/s, the build process's peak
  resident memory and each encoder worker's;
* **open**: ``Corpus.open`` (median of 5) and the first ``pieces()`` (every Piece made), against the same
  corpus with its pieces listed in a JSON manifest (format 1, what builds wrote before piece tables):
  the reference in the same run;
* **train**: ``composer train --max-steps S`` on the CPU: its peak anonymous memory (not the memory-mapped
  token file) over the smallest size's, per token of the corpus.

Targets (issue #15): build memory and open time within 2x from the smallest size to the largest, build
files/s unchanged, training within 1 byte per token of host memory beyond the memory map. Default
``--from``: the chorales ``composer corpus bach`` wrote (corpora/bach/midi), else ../shared's Nottingham
tunes; neither there, a message and exit 0. Needs Linux (/proc). Scratch data goes to a temporary folder
(``--keep DIR`` to keep it): about 1.5 KB per file, 300 MB at 200k files.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = (ROOT / "corpora" / "bach" / "midi", ROOT.parent / "shared" / "midi" / "nottingham")
BARS = 32  # an excerpt's length at most: most chorales and folk tunes are shorter, so mostly whole pieces
COMPOSER = [sys.executable, "-m", "composer"]
sys.path.insert(0, str(ROOT))
from benchmarks.machine import cpu_name  # noqa: E402

# ---------------------------------------------------------------------------------------- the collection


def excerpts(folder: Path) -> list:
    """Per source file that reads: (ticks per beat, ticks per bar, tempo, time signature, notes as
    (start, end, pitch, velocity, program, is_drum))."""
    from composer.corpus_file import find_midi_files
    from composer.midi import read_midi

    out = []
    for path in find_midi_files([folder]):
        try:
            score = read_midi(path)
        except Exception:  # noqa: BLE001 - a source that does not read is simply not used
            continue
        ts = score.time_signatures[0] if score.time_signatures else None
        bar = (
            score.ticks_per_beat * 4
            if ts is None
            else score.ticks_per_beat * 4 * ts.numerator // ts.denominator
        )
        qpm = score.tempos[0].qpm if score.tempos else 120.0
        notes = [
            (n.start, n.end, n.pitch, n.velocity, inst.program, inst.is_drum)
            for inst in score.instruments
            for n in inst.notes
        ]
        if notes:
            out.append(
                (score.ticks_per_beat, bar, qpm, (ts.numerator, ts.denominator) if ts else (4, 4), notes)
            )
    return out


def _varlen(x: int) -> bytes:
    out = [x & 0x7F]
    x >>= 7
    while x:
        out.append(0x80 | (x & 0x7F))
        x >>= 7
    return bytes(reversed(out))


def smf(
    tpb: int, qpm: float, sig: tuple[int, int], name: str, programs: dict[int, int], notes: list
) -> bytes:
    """A format 0 file: the name, tempo and time signature, then the notes (start, end, pitch, velocity,
    channel), after each channel's program (``programs``). Written here, not with composer's writer,
    which checks and orders a whole Score (7x slower): 200k files must take minutes, not an hour."""
    us = round(60_000_000 / qpm)
    head = b"\x00\xff\x03" + _varlen(len(name)) + name.encode()
    head += b"\x00\xff\x51\x03" + us.to_bytes(3, "big")
    head += b"\x00\xff\x58\x04" + bytes([sig[0], max(0, sig[1].bit_length() - 1), 24, 8])
    head += b"".join(b"\x00" + bytes([0xC0 | ch, prog]) for ch, prog in sorted(programs.items()))
    events = []
    for s, e, p, v, ch in notes:
        events.append((s, 1, bytes([0x90 | ch, p, v])))
        events.append((e, 0, bytes([0x80 | ch, p, 0])))
    events.sort(key=lambda ev: (ev[0], ev[1]))
    body, now = [head], 0
    for t, _, data in events:
        body.append(_varlen(t - now) + data)
        now = t
    body.append(b"\x00\xff\x2f\x00")
    track = b"".join(body)
    return (
        b"MThd"
        + (6).to_bytes(4, "big")
        + (0).to_bytes(2, "big")
        + (1).to_bytes(2, "big")
        + tpb.to_bytes(2, "big")
        + b"MTrk"
        + len(track).to_bytes(4, "big")
        + track
    )


def write_collection(sources: list, n: int, out: Path) -> float:
    """``n`` distinct files under ``out`` (1,000 per folder); seconds taken."""
    t0 = time.perf_counter()
    for i in range(n):
        tpb, bar, qpm, sig, notes = sources[i % len(sources)]
        shift = (i // len(sources)) % 12 - 6
        length = max(n_end for _, n_end, *_ in notes)
        bars = max(1, length // bar - 4)  # an excerpt starts at least 4 bars before the end
        start = ((i // (12 * len(sources))) * 3 % bars) * bar
        stop = start + BARS * bar
        channels: dict[tuple[int, bool], int] = {}
        kept = []
        for s, e, p, v, prog, drum in notes:
            if start <= s < stop:
                ch = channels.setdefault(
                    (prog, drum), 9 if drum else [0, 1, 2, 3, 4, 5, 6, 7, 8, 10][len(channels) % 10]
                )
                pitch = p if drum else min(127, max(0, p + shift))
                kept.append((s - start, max(s, min(e, stop)) - start, pitch, max(1, v), ch))
        if not kept:
            kept = [(0, tpb, 60, 80, 0)]
        programs = {ch: prog for (prog, drum), ch in channels.items() if not drum}
        folder = out / f"{i // 1000:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:07d}.mid").write_bytes(smf(tpb, qpm, sig, f"scale {i}", programs, kept))
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------------- measuring


def _status(pid: int) -> dict[str, int]:
    """VmRSS and RssAnon of a process, in KiB (empty once it has gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                out[key] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return out


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def measured(cmd: list[str]) -> dict:
    """Run ``cmd``; its seconds, its JSON output (if any), and peak memory in MB: the process's resident
    and anonymous, and the largest of its children's resident."""
    peak = {"rss": 0, "anon": 0, "child_rss": 0}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            s = _status(proc.pid)
            peak["rss"] = max(peak["rss"], s.get("VmRSS", 0))
            peak["anon"] = max(peak["anon"], s.get("RssAnon", 0))
            for c in _children(proc.pid):
                peak["child_rss"] = max(peak["child_rss"], _status(c).get("VmRSS", 0))
            done.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{err[-2000:]}")
    result = {"seconds": time.perf_counter() - t0, **{k: v / 1024 for k, v in peak.items()}}
    last = out.strip().splitlines()[-1] if out.strip() else ""
    if last.startswith("{"):
        result["out"] = json.loads(last)
    return result


def _open_times(corpus: str) -> None:
    """(In a fresh process.) Corpus.open's median seconds over 5, then the first pieces()."""
    from composer.corpus import Corpus

    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        c = Corpus.open(corpus)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    n = len(c.pieces())
    made = time.perf_counter() - t0
    print(json.dumps({"open_s": statistics.median(times), "pieces_s": made, "pieces": n}))


def as_format_1(corpus: Path, out: Path) -> None:
    """A copy of ``corpus`` (the token file linked) with its pieces in a format 1 JSON manifest."""
    from composer.corpus import Corpus
    from tests.old_corpus import v1_entry

    c = Corpus.open(corpus)
    out.mkdir(parents=True)
    m = dict(c.manifest)
    m["format_version"] = 1
    del m["pieces_file"], m["pieces"]
    m["files"] = [v1_entry(p) for p in c.pieces()]
    (out / "manifest.json").write_text(json.dumps(m, indent=1))
    os.link(corpus / m["tokens_file"], out / m["tokens_file"])
    shutil.copy(corpus / "tokenizer.json", out / "tokenizer.json")


# ------------------------------------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,50000,200000", help="file counts, comma-separated")
    ap.add_argument("--from", dest="source", type=Path, default=None, help="folder of MIDI to excerpt")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="encoder processes")
    ap.add_argument("--steps", type=int, default=20, help="training steps per size")
    ap.add_argument("--keep", type=Path, default=None, help="keep the scratch data in this (new) folder")
    ap.add_argument("--_open", dest="open_only", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.open_only:
        _open_times(args.open_only)
        return 0
    if sys.platform != "linux":
        print("benchmarks/scale.py samples memory from /proc: Linux only")
        return 0
    source = args.source or next((s for s in SOURCES if s.is_dir()), None)
    if source is None or not source.is_dir():
        print(f"no MIDI to excerpt: run 'composer corpus bach' (makes {SOURCES[0]}) or give --from DIR")
        return 0
    sizes = sorted(int(s) for s in args.sizes.split(","))
    sources = excerpts(source)
    scratch = Path(tempfile.mkdtemp(prefix="scale-")) if args.keep is None else args.keep
    scratch.mkdir(parents=True, exist_ok=True)
    env_threads = {"OMP_NUM_THREADS": "1"}
    os.environ.update(env_threads)
    print(
        f"# scale, {datetime.date.today()}, {cpu_name()}, {os.cpu_count()} cores; {len(sources)} pieces of "
        f"{source} as excerpts of up to {BARS} bars; build --workers {args.workers}; "
        f"train --max-steps {args.steps}, "
        "1 thread"
    )
    rows = []
    try:
        for n in sizes:
            src, out = scratch / f"src-{n}", scratch / f"corpus-{n}"
            wrote = write_collection(sources, n, src)
            print(f"# {n:,} files written in {wrote:.0f} s", flush=True)
            build_cmd = ["corpus", "build", str(src), "-o", str(out), "--workers", str(args.workers)]
            build = measured([*COMPOSER, *build_cmd])
            manifest = json.loads((out / "manifest.json").read_text())
            opened = measured([sys.executable, __file__, "--_open", str(out)])
            old = scratch / f"corpus-{n}-format1"
            as_format_1(out, old)
            opened_old = measured([sys.executable, __file__, "--_open", str(old)])
            run = scratch / f"run-{n}"
            steps = ["--max-steps", str(args.steps), "--eval-every", str(10 * args.steps)]
            train = measured(
                [*COMPOSER, "train", str(out), "-o", str(run), "--device", "cpu", *steps, "--threads", "1"]
            )
            sizes_on_disk = {
                "table": (out / manifest["pieces_file"]).stat().st_size,
                "manifest": (out / "manifest.json").stat().st_size,
                "manifest1": (old / "manifest.json").stat().st_size,
            }
            rows.append((n, manifest, build, opened, opened_old, train, sizes_on_disk))
            shutil.rmtree(src)
            shutil.rmtree(old)
            shutil.rmtree(run, ignore_errors=True)
            print(f"# {n:,} files measured", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)

    print(
        "\n| files | pieces | tokens | build files/s | build MB (main) | MB per worker | open ms | "
        "first pieces() ms | open ms, JSON manifest (ref) | table + manifest KB | JSON manifest KB |"
    )
    print("|" + "---:|" * 11)
    for n, m, b, o, o1, _t, disk in rows:
        print(
            f"| {n:,} | {m['pieces']:,} | {m['total_tokens']:,} | {n / b['seconds']:,.0f} | "
            f"{b['rss']:,.0f} | "
            f"{b['child_rss']:,.0f} | {o['out']['open_s'] * 1e3:,.1f} | {o['out']['pieces_s'] * 1e3:,.0f} | "
            f"{o1['out']['open_s'] * 1e3:,.0f} | {(disk['table'] + disk['manifest']) / 1024:,.0f} | "
            f"{disk['manifest1'] / 1024:,.0f} |"
        )
    base_tokens, base_anon = rows[0][1]["total_tokens"], rows[0][5]["anon"]
    print("\n| files | tokens | train peak anon MB | beyond the smallest, bytes per extra token | train s |")
    print("|---:|---:|---:|---:|---:|")
    for n, m, _b, _o, _o1, t, _d in rows:
        extra = m["total_tokens"] - base_tokens
        per = "–" if extra <= 0 else f"{(t['anon'] - base_anon) * 2**20 / extra:.2f}"
        print(f"| {n:,} | {m['total_tokens']:,} | {t['anon']:,.0f} | {per} | {t['seconds']:.0f} |")
    first, last = rows[0], rows[-1]
    ratio = lambda f: f(last) / max(f(first), 1e-9)  # noqa: E731
    print(
        f"\nlargest / smallest: build memory {ratio(lambda r: r[2]['rss']):.2f}x, "
        f"open time {ratio(lambda r: r[3]['out']['open_s']):.2f}x, "
        f"build files/s {ratio(lambda r: r[0] / r[2]['seconds']):.2f}x (targets: <= 2x, <= 2x, ~1x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
