"""Which temperature and top-p make samples sound like the corpus?

For the built-in Bach chorales (``corpora/bach``, as ``make demo`` builds it) and the Nottingham folk tunes
(``../shared/midi/nottingham``), or ``--corpus DIR`` / ``--checkpoint NAME=RUN`` for your own: the default
model is trained for ``--minutes`` CPU-minutes (``composer.train.train``, 1 thread; a ``--checkpoint`` is
used as it is), then ``--songs`` songs of as many tokens as the median validation piece are sampled
(``composer.sample.generate``, the checkpoint's own cache setting; ``--no-cache``: without it) at each
temperature and top-p of the grid, with the same seeds in every cell, and compared with the validation
pieces on Yang & Lerch's statistics (``composer.musicstats.compare_sets``: pitch classes, pitch range,
polyphony, note density, inter-onset intervals, note lengths, velocity). The table gives each cell's mean
overlapping area (OA; 1 = the same distributions) over ``--repeats`` sample seeds, its spread (max - min
over the seeds), and the worst feature; the reference row is the sampler's default (temperature 1, no
top-p).

    .venv/bin/python benchmarks/sampling.py --minutes 5
    .venv/bin/python benchmarks/sampling.py --checkpoint mine=checkpoints/mine
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import benchmark_runs, cpu_name, source_corpora  # noqa: E402 - benchmarks/machine.py

from composer.checkpoint import Checkpoint  # noqa: E402
from composer.corpus import Corpus  # noqa: E402
from composer.midi import Score  # noqa: E402
from composer.musicstats import FeatureSet, compare_sets  # noqa: E402
from composer.sample import Length, generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "midi"
SOURCES = {"nottingham (folk)": [SHARED / "nottingham"]}
BACH = ROOT / "corpora" / "bach"
TEMPERATURES = (0.8, 0.9, 1.0, 1.1)
TOP_PS = (0.9, 0.95, 1.0)


def reference_scores(ckpt: Checkpoint, corpus: Corpus) -> list[Score]:
    tok = ckpt.tokenizer
    return [tok.decode(corpus.piece_tokens(p)) for p in corpus.pieces("val")]


def measure(name: str, ckpt: Checkpoint, corpus: Corpus, args: argparse.Namespace) -> list[dict]:
    ref_scores = reference_scores(ckpt, corpus)
    ref = FeatureSet.from_scores(ref_scores)
    # a length in tokens, not seconds: a song that stops moving time on (a collapse) cannot hold the batch
    tokens = int(np.median([len(corpus.piece_tokens(p)) for p in corpus.pieces("val")]))
    out = []
    for t in args.temperatures:
        for p in args.top_ps:
            t0 = time.perf_counter()
            oas, feats = [], []
            for r in range(args.repeats):
                songs = generate(
                    ckpt, n=args.songs, length=Length(tokens=tokens), seed=args.seed + r,
                    temperature=t, top_p=None if p >= 1 else p, device="cpu",
                    cache=False if args.no_cache else None,
                )
                cmp = compare_sets(ref, [s.score for s in songs])
                oas.append(cmp.mean_oa)
                feats.append({k: c.oa for k, c in cmp.features.items()})
            mean_feat = {k: float(np.mean([f[k] for f in feats])) for k in feats[0]}
            worst = min(mean_feat, key=lambda k: mean_feat[k])
            cell = {
                "corpus": name, "temperature": t, "top_p": p, "oa": float(np.mean(oas)),
                "spread": float(np.max(oas) - np.min(oas)), "worst": (worst, mean_feat[worst]),
                "features": mean_feat,
            }
            out.append(cell)
            print(
                f"{name}: T {t:g} top-p {p:g}: mean OA {cell['oa']:.3f} (spread {cell['spread']:.3f}), "
                f"worst {worst} {mean_feat[worst]:.3f} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, action="append", help="a composer corpus to train on (repeatable)")
    ap.add_argument("--checkpoint", action="append", default=[], help="NAME=RUN: measure this run as it is")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--songs", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3, help="sample seeds per cell")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--temperatures", type=lambda s: [float(x) for x in s.split(",")], default=TEMPERATURES)
    ap.add_argument("--top-ps", type=lambda s: [float(x) for x in s.split(",")], default=TOP_PS)
    ap.add_argument("--no-cache", action="store_true", help="sample without the checkpoints' neural cache")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    today = datetime.date.today()
    print(f"sampling on {today}: {cpu_name()}, {platform.system()}, torch {torch.__version__}")
    cells: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        corpora: list[tuple[str, Path]] = [(c.name, c) for c in args.corpus or []]
        if not corpora and not args.checkpoint:
            if (BACH / "manifest.json").exists():
                corpora.append(("bach (chorales)", BACH))
            else:
                print(f"bach (chorales): no corpus at {BACH} (composer corpus bach -o corpora/bach), skipped")
            corpora += source_corpora(SOURCES, work)
        runs = benchmark_runs(args.checkpoint, corpora, work, args.minutes, reuse=True)
        if not runs:
            print("no corpus found: nothing to measure")
            return 0
        for name, ckpt, corpus in runs:
            cells += measure(name, ckpt, corpus, args)
    print()
    print(
        f"mean overlapping area of the music statistics, samples vs validation pieces; {args.songs} songs x "
        f"{args.repeats} seeds a cell; spread = max - min over the seeds; * = best of its corpus"
    )
    print()
    print("| corpus | temperature | top-p | mean OA | spread | vs T 1, top-p 1 | worst feature |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name in dict.fromkeys(c["corpus"] for c in cells):
        mine = [c for c in cells if c["corpus"] == name]
        best = max(mine, key=lambda c: c["oa"])
        base = next((c for c in mine if c["temperature"] == 1.0 and c["top_p"] >= 1.0), None)
        for c in mine:
            vs = "–" if base is None else f"{c['oa'] - base['oa']:+.3f}"
            star = " *" if c is best else ""
            w, v = c["worst"]
            print(
                f"| {name} | {c['temperature']:g} | {c['top_p']:g} | {c['oa']:.3f}{star} | {c['spread']:.3f} "
                f"| {vs} | {w} {v:.3f} |"
            )
    if len({c["corpus"] for c in cells}) > 1:
        print()
        print("| temperature | top-p | mean OA over the corpora | vs T 1, top-p 1 |")
        print("|---:|---:|---:|---:|")
        keys = dict.fromkeys((c["temperature"], c["top_p"]) for c in cells)
        avg = {
            k: float(np.mean([c["oa"] for c in cells if (c["temperature"], c["top_p"]) == k])) for k in keys
        }
        base_avg = avg.get((1.0, 1.0))
        for (t, p), v in avg.items():
            vs = "–" if base_avg is None else f"{v - base_avg:+.3f}"
            print(f"| {t:g} | {p:g} | {v:.3f}{' *' if v == max(avg.values()) else ''} | {vs} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
