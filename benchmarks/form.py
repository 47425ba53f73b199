"""Form: do generated songs repeat bars the way the corpus does, without collapsing into loops?

For a folk corpus (Nottingham, ``../shared/midi/nottingham``) and a pop-like multitrack one (the Debian
game music in ``/tmp/debmidi``; ``../shared/README.md`` says how to get it), or ``--corpus DIR`` /
``--checkpoint NAME=RUN`` for your own: the default model is trained for ``--minutes`` CPU-minutes
(``composer.train.train``, 1 thread; a ``--checkpoint`` is used as it is), then ``--songs`` songs of as
many bars as the median validation piece (32 at least, 96 at most; a budget of 1.5 times its tokens, so
that a song that stops writing bar lines cannot hold the batch) are sampled with the checkpoint's
neural cache at its sampling weight (``composer.formfit``, fitted at the end of training on the same
validation pieces, with other songs: seed 0 there, ``--seed`` 1 here), at its likelihood weight, and
without it, and compared with the validation pieces cut to the same number of bars:

* **repeated bars**: the share of non-empty bars equal to a bar at least 4 bars earlier, exactly and up
  to transposition (``composer.form.form_summary``); target: within +-25% of the reference's;
* **loops**: songs that are one or two bars over and over (``composer.form.is_loop``);
* **music overlap**: the songs' mean overlapping area with the validation pieces on Yang & Lerch's
  statistics (``composer.musicstats.compare_sets``: pitch classes, range, polyphony, density, timing,
  lengths, velocity): repeats must not cost the texture.

With a sampling weight fitted to copy only from a few bars back, there is also a row at that weight
with the newest positions voting too: songs that fall into one or two bars over and over.

    .venv/bin/python benchmarks/form.py --minutes 5
    .venv/bin/python benchmarks/form.py --checkpoint mine=checkpoints/mine
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import benchmark_runs, cpu_name, source_corpora  # noqa: E402 - benchmarks/machine.py

from composer.cache import CacheConfig  # noqa: E402
from composer.checkpoint import Checkpoint  # noqa: E402
from composer.corpus import Corpus  # noqa: E402
from composer.form import FormSummary, bar_patterns, first_bars, form_summary  # noqa: E402
from composer.midi import Score  # noqa: E402
from composer.musicstats import FeatureSet, compare_sets  # noqa: E402
from composer.sample import Length, generate  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "midi"
SOURCES = {
    "nottingham (folk)": [SHARED / "nottingham"],
    "debian-game-music (pop-like)": [Path("/tmp/debmidi")],
}
MIN_BARS, MAX_BARS = 32, 96
TOLERANCE = 0.25
#: Tokens a song may have: this many times the reference's median tokens a bar, times the bars.
BUDGET = 1.5


def reference_scores(ckpt: Checkpoint, corpus: Corpus) -> list[Score]:
    tok = ckpt.tokenizer
    return [tok.decode(corpus.piece_tokens(p)) for p in corpus.pieces("val")]


def row(name: str, source: str, s: FormSummary, ref: FormSummary | None, overlap: float | None = None) -> str:
    ratio = "" if ref is None or not ref.exact or s.exact is None else f"{s.exact / ref.exact:.2f}"
    ok = ""
    if ratio:
        ok = "yes" if abs(float(ratio) - 1) <= TOLERANCE else "no"
    ex = "–" if s.exact is None else f"{s.exact:.1%}"
    tr = "–" if s.transposed is None else f"{s.transposed:.1%}"
    oa = "–" if overlap is None else f"{overlap:.3f}"
    cells = [name, source, s.pieces, ex, tr, s.loops, ratio or "1.00", ok or "–", oa]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def measure(name: str, ckpt: Checkpoint, corpus: Corpus, args: argparse.Namespace) -> list[str]:
    ref_full = reference_scores(ckpt, corpus)
    counts = [len(bar_patterns(s)) for s in ref_full]
    bars = int(np.clip(np.median(counts) if counts else MIN_BARS, MIN_BARS, MAX_BARS))
    ref = [first_bars(s, bars) for s in ref_full]
    ref_sum = form_summary(ref)
    rows = [row(name, f"validation pieces, at most {bars} bars", ref_sum, None)]
    modes: list[tuple[str, bool | CacheConfig]] = [("without the cache", False)]
    if ckpt.cache is not None:
        c = ckpt.cache
        plain = replace(c, sample_lam=None, sample_min_lag=None)
        modes.insert(0, (f"cache at the likelihood's lambda {c.lam:g}", plain))
        if c.sample_lam is not None and c.sample_min_lag:
            modes.insert(
                0,
                (
                    f"cache at the sampling lambda {c.sample_lam:g}, copying the last bars too",
                    CacheConfig(theta=c.theta, lam=c.sample_lam, size=c.size),
                ),
            )
        if c.sample_lam is not None:
            warm = f", copying from {c.sample_min_lag}+ tokens back" if c.sample_min_lag else ""
            modes.insert(0, (f"cache at the sampling lambda {c.sample_lam:g}{warm}", True))
    # a token budget, not bars: one song that stops writing bar lines would keep the whole batch
    # stepping to the bar cap (1,500 tokens a bar); songs are cut to ``bars`` bars like the reference
    tok = ckpt.tokenizer
    per_bar = np.median([len(tok.encode(s)[0]) / len(bar_patterns(s)) for s in ref_full if s.note_count])
    length = Length(tokens=math.ceil(BUDGET * bars * per_bar))
    music = FeatureSet.from_scores([s for s in ref_full if s.note_count])
    for label, cache in modes:
        t0 = time.perf_counter()
        songs = generate(ckpt, n=args.songs, length=length, seed=args.seed, device="cpu", cache=cache)
        cut = [first_bars(s.score, bars) for s in songs]
        summ = form_summary(cut)
        oa = compare_sets(music, cut).mean_oa
        rows.append(row(name, f"{args.songs} samples, {label}", summ, ref_sum, oa))
        secs = time.perf_counter() - t0
        print(
            f"{name}: {label}: exact {summ.exact}, loops {summ.loops}, overlap {oa:.3f} ({secs:.0f} s)",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, action="append", help="a composer corpus to train on (repeatable)")
    ap.add_argument("--checkpoint", action="append", default=[], help="NAME=RUN: measure this run as it is")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--songs", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1, help="sampling seed (the sampling lambda's fit uses 0)")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"form on {datetime.date.today()}: {cpu_name()}, {platform.system()}, torch {torch.__version__}")
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        corpora: list[tuple[str, Path]] = [(c.name, c) for c in args.corpus or []]
        if not corpora and not args.checkpoint:
            corpora = source_corpora(SOURCES, work)
        runs = benchmark_runs(args.checkpoint, corpora, work, args.minutes)
        if not runs:
            print("no corpus found: nothing to measure")
            return 0
        for name, ckpt, corpus in runs:
            rows += measure(name, ckpt, corpus, args)
    print()
    print(f"bars repeated from >= 4 bars back; target: samples within ±{TOLERANCE:.0%} of the reference")
    print()
    print(
        "| corpus | songs | pieces | repeated bars (exact) | (up to transposition) | loops "
        "| vs reference | within ±25% | music overlap |"
    )
    print("|---|---|---:|---:|---:|---:|---:|:---:|---:|")
    for r in rows:
        print(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
