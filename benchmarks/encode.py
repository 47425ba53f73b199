"""Encoding throughput: ``composer corpus build`` against MidiTok's REMI on the same MIDI files, same run.

What is timed (each measurement in a fresh Python process, so peak memory is that run's alone; the files
are read once beforehand so both sides find them in the page cache):

* composer: ``composer.corpus.build_corpus`` into a new, empty corpus folder: read, parse, encode, write
  the token file and the manifest (nothing reused).
* MidiTok: ``miditok.REMI(TokenizerConfig(use_programs=True, use_tempos=True, use_time_signatures=True))``
  ``.encode(path)`` per file: symusic's C++ reader, preprocessing, tokens to ids; nothing is written. Its
  tokenizer is built before the clock starts (and inherited by forked pool workers); composer's is not.

(a) one process each; (b) composer with ``--workers N`` against MidiTok in a ``multiprocessing.Pool(N)``,
N = the CPU count, pool start-up timed on both sides. Then "memory flat as the folder grows": composer's
build on the folder replicated 1x, 4x and 16x (each copy made distinct by a text meta event, as duplicate
content is skipped by hash), reporting the builder's peak RSS.

    .venv/bin/python benchmarks/encode.py    # from the repo root: corpora/bach/midi (made if absent)
    .venv/bin/python benchmarks/encode.py --folder /work/shared/midi/nottingham
    .venv/bin/python benchmarks/encode.py --scales 1,4 --repeat 1   # quicker

Prints a markdown table. Target: composer >= 2x MidiTok files/s in both (a) and (b).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_FOLDER = Path("corpora/bach/midi")
TARGET_RATIO = 2.0


# ------------------------------------------------------------------------------------- measured runs


def _peak_rss_mb() -> tuple[float, float]:
    """Peak RSS of this process and of its largest finished child, in MiB (Linux reports KiB)."""
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / (1024 * 1024)
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return me, kids


def measure_composer(paths: list[str], workers: int) -> dict[str, float]:
    from composer.corpus import build_corpus

    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as out:
        t0 = time.perf_counter()
        r = build_corpus(paths, out, workers=workers, val_fraction=0.1)
        dt = time.perf_counter() - t0
    return {"files": len(paths), "ok": r.pieces, "tokens": r.tokens, "seconds": dt}


_miditok_tok = None


def _miditok_init() -> None:
    global _miditok_tok
    from miditok import REMI, TokenizerConfig

    _miditok_tok = REMI(TokenizerConfig(use_programs=True, use_tempos=True, use_time_signatures=True))


def _miditok_one(path: str) -> int:
    """Token count of one file, -1 when MidiTok fails on it."""
    assert _miditok_tok is not None
    try:
        seq = _miditok_tok.encode(Path(path))
    except Exception:
        return -1
    if isinstance(seq, list):  # one sequence per track (not the case with use_programs)
        return sum(len(s.ids) for s in seq)
    return len(seq.ids)


def measure_miditok(paths: list[str], workers: int) -> dict[str, float]:
    import multiprocessing as mp

    _miditok_init()  # before the clock, and inherited by forked workers (kinder to MidiTok than composer)
    if workers <= 1:
        t0 = time.perf_counter()
        counts = [_miditok_one(p) for p in paths]
    else:
        fork = "fork" in mp.get_all_start_methods()
        ctx = mp.get_context("fork" if fork else "spawn")
        t0 = time.perf_counter()
        chunk = max(1, min(32, len(paths) // (workers * 8)))  # as composer.corpus chunks its work
        with ctx.Pool(workers, initializer=None if fork else _miditok_init) as pool:
            counts = pool.map(_miditok_one, paths, chunksize=chunk)
    dt = time.perf_counter() - t0
    return {
        "files": len(paths),
        "ok": sum(c >= 0 for c in counts),
        "tokens": sum(c for c in counts if c > 0),
        "seconds": dt,
    }


def _child_main(args: argparse.Namespace) -> None:
    paths = Path(args.paths_file).read_text().splitlines()
    fn = measure_composer if args.child == "composer" else measure_miditok
    res = fn(paths, args.workers)
    res["rss_self_mb"], res["rss_children_mb"] = _peak_rss_mb()
    print(json.dumps(res))


def run_child(tool: str, paths_file: Path, workers: int) -> dict[str, float]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        tool,
        "--paths-file",
        str(paths_file),
        "--workers",
        str(workers),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------- corpus prep


def ensure_folder(folder: Path) -> Path:
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    if folder != DEFAULT_FOLDER:
        sys.exit(f"{folder}: no such folder of MIDI files")
    try:
        from composer.bach import export_chorales
    except ImportError:
        sys.exit(f"{folder} is missing; make it with: composer corpus bach")
    print(f"{folder} is missing: converting the Bach chorales (once, ~1 minute)...", file=sys.stderr)
    export_chorales(folder)
    return folder


def _with_text_event(data: bytes, label: bytes) -> bytes:
    """The same MIDI file with a text meta event at the start of its first track (distinct bytes)."""
    i = data.find(b"MTrk")
    if i < 0:
        return data + label  # not a plain SMF: trailing bytes still make the content distinct
    n = struct.unpack(">I", data[i + 4 : i + 8])[0]
    event = b"\x00\xff\x01" + bytes([len(label)]) + label
    return data[:i] + b"MTrk" + struct.pack(">I", n + len(event)) + event + data[i + 8 :]


def replicate(files: list[Path], dest: Path, times: int) -> list[str]:
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(times):
        for j, f in enumerate(files):
            data = f.read_bytes()
            target = dest / f"{k:02d}_{j:05d}_{f.name}"
            target.write_bytes(data if k == 0 else _with_text_event(data, f"copy {k}".encode()))
            out.append(str(target))
    return out


# ------------------------------------------------------------------------------------------------ report


def _rate(r: dict[str, float], key: str) -> float:
    return r[key] / r["seconds"] if r["seconds"] > 0 else float("nan")


def _best(runs: list[dict[str, float]]) -> dict[str, float]:
    best = min(runs, key=lambda r: r["seconds"])
    return {
        **best,
        "rss_self_mb": max(r["rss_self_mb"] for r in runs),
        "rss_children_mb": max(r["rss_children_mb"] for r in runs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help="folder of MIDI files")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for (b)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per measurement (the fastest is kept)")
    ap.add_argument("--scales", default="1,4,16", help="folder replications for the memory test ('' skips)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N files")
    ap.add_argument("--child", choices=["composer", "miditok"], help=argparse.SUPPRESS)
    ap.add_argument("--paths-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child_main(args)
        return

    from composer.corpus_file import find_midi_files

    folder = ensure_folder(args.folder)
    files = find_midi_files([folder])[: args.limit]
    if not files:
        sys.exit(f"{folder}: no MIDI files")
    size_mb = sum(f.stat().st_size for f in files) / 2**20
    t_start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="bench-encode-") as tmp_s:
        tmp = Path(tmp_s)
        listing = tmp / "paths.txt"
        listing.write_text("\n".join(map(str, files)))
        for f in files:  # warm the page cache for both sides
            f.read_bytes()

        rows = []
        for label, workers in (("(a) 1 process", 1), (f"(b) {args.workers} processes", args.workers)):
            runs: dict[str, list[dict[str, float]]] = {"composer": [], "miditok": []}
            for _ in range(args.repeat):
                for tool in runs:  # alternate, so background load hits both alike
                    runs[tool].append(run_child(tool, listing, workers))
            rows.append((label, workers, _best(runs["composer"]), _best(runs["miditok"])))

        mem_rows = []
        scales = [int(s) for s in args.scales.split(",") if s.strip()]
        for scale in scales:
            paths = replicate(files, tmp / f"x{scale}", scale)
            plist = tmp / f"paths-x{scale}.txt"
            plist.write_text("\n".join(paths))
            r = run_child("composer", plist, 1)
            mem_rows.append((scale, r))
            shutil.rmtree(tmp / f"x{scale}")

    # ------------------------------------------------------------------ print
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    cpu = platform.processor() or platform.machine()
    print(f"## Encoding throughput: composer corpus build vs MidiTok REMI ({now})\n")
    print(
        f"Machine: {platform.platform()}, {cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}."
    )
    print(f"Files: {folder} ({len(files)} files, {size_mb:.1f} MiB); fastest of {args.repeat} run(s) each.\n")
    print(
        "| run | tool | files ok | files/s | tokens/s | peak RSS MiB (main / largest worker) "
        "| files/s vs MidiTok |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    met = True
    for label, workers, c, m in rows:
        ratio = _rate(c, "files") / _rate(m, "files")
        met &= ratio >= TARGET_RATIO
        for name, r, rat in (("composer", c, f"**{ratio:.2f}x**"), ("MidiTok REMI", m, "1.00x")):
            workers_rss = f" / {r['rss_children_mb']:.0f}" if workers > 1 else ""
            print(
                f"| {label} | {name} | {int(r['ok'])}/{int(r['files'])} | {_rate(r, 'files'):,.0f} | "
                f"{_rate(r, 'tokens'):,.0f} | {r['rss_self_mb']:.0f}{workers_rss} | {rat} |"
            )
    verdict = "met" if met else "NOT met"
    print(f"\nTarget: composer >= {TARGET_RATIO:.0f}x MidiTok files/s in (a) and (b): **{verdict}**.")
    print("Token counts differ by design (different vocabularies); files/s is the like-for-like figure.")
    if mem_rows:
        print(
            "\n| folder | files ok | token data MiB (on disk) | files/s | peak RSS MiB (builder, 1 process) |"
        )
        print("|---|---:|---:|---:|---:|")
        for scale, r in mem_rows:
            print(
                f"| {scale}x | {int(r['ok'])}/{int(r['files'])} | {2 * r['tokens'] / 2**20:.1f} | "
                f"{_rate(r, 'files'):,.0f} | {r['rss_self_mb']:.0f} |"
            )
        (s0, first), (s1, last) = mem_rows[0], mem_rows[-1]
        if s1 > s0:
            grow = last["rss_self_mb"] - first["rss_self_mb"]
            per_file = grow * 1024 / (last["files"] - first["files"])
            tok_grow = 2 * (last["tokens"] - first["tokens"]) / 2**20
            print(
                f"\nFolder {s1 // s0}x larger: peak RSS {last['rss_self_mb'] / first['rss_self_mb']:.2f}x "
                f"(+{grow:.0f} MiB, {per_file:.1f} KiB per added file) "
                f"while the token data grew by {tok_grow:.1f} MiB."
            )
    print(f"\n(total benchmark time {time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
