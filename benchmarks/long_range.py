"""Long-range structure: does the model use thousands of tokens of history, with and without the cache?

For each long-piece corpus (built here from ``../shared/midi/asap/scores`` and the Debian game music in
``/tmp/debmidi`` when present, or ``--corpus DIR`` for any composer corpus), every variant is trained for
the same CPU minutes (``composer.train.train``, 1 thread), then measured on held-out pieces:

* the validation pieces are split in two by index: the cache's theta, lambda and size are fitted on the
  even ones (``composer.cache.fit_cache``), everything below is measured on the odd ones;
* **gain at d** (nats/token) = NLL of a target with the history cut to the d tokens before it (fresh
  state; the cache sees only those d tokens too) minus its NLL with the whole piece before it, for
  targets at positions >= max(d) + spread evenly; > 0: the model uses context older than d;
* **copyable share at d**: of those targets, the share that copying the token after the most recent
  earlier occurrence of the same 12-token context, >= d tokens back, gets right (``composer.form``);
* **cache gets**: among the copyable targets, the share whose probability the cache raises.

    .venv/bin/python benchmarks/long_range.py --minutes 6
    .venv/bin/python benchmarks/long_range.py --corpus corpora/mine --variants base --minutes 2

Variants are ``NAME`` or ``NAME:FIELD=VALUE,FIELD=VALUE`` over ``TrainConfig`` fields (``base`` = the
defaults). Prints one markdown table per corpus.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name, source_corpora  # noqa: E402 - benchmarks/machine.py

from composer.cache import CacheConfig, cached_nlls, fit_cache, piece_scores, window_scores  # noqa: E402
from composer.checkpoint import load_checkpoint  # noqa: E402
from composer.corpus import Corpus  # noqa: E402
from composer.form import copyable_mask  # noqa: E402
from composer.train import train  # noqa: E402
from composer.train_config import TrainConfig  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "midi"
SOURCES = {"asap-scores": [SHARED / "asap" / "scores"], "debian-game-music": [Path("/tmp/debmidi")]}
DISTANCES = (64, 256, 1024, 2048, 4096)
CONTEXT = 12
TARGETS_PER_PIECE = 200
MAX_FIT_TOKENS = 150_000
#: A fifth of the pieces held out: half to fit the cache, half to measure on (few pieces are long).
VAL_FRACTION = 0.2


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = text.partition(":")
    kinds = {f.name: f for f in fields(TrainConfig)}
    changes: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if key not in kinds:
            raise SystemExit(f"unknown TrainConfig field {key!r} in variant {text!r}")
        changes[key] = json.loads(value)
    return name, changes


def measure(model: torch.nn.Module, pieces: list[np.ndarray], cache: CacheConfig | None) -> dict[str, Any]:
    """Gains per distance (plain and cached) and copyable shares on ``pieces``."""
    min_pos = max(DISTANCES) + 1
    rows: dict[str, Any] = {"pieces": 0, "targets": 0}
    acc = {
        d: {"full": 0.0, "reset": 0.0, "full_c": 0.0, "reset_c": 0.0, "copy": 0, "n": 0} for d in DISTANCES
    }
    cache_up = cache_copyable = 0
    full_plain_all: list[np.ndarray] = []
    full_cache_all: list[np.ndarray] = []
    for ids in pieces:
        lp, hidden = piece_scores(model, ids)
        plain = -lp
        cached = cached_nlls(lp, hidden, ids, cache) if cache is not None else plain
        full_plain_all.append(plain)
        full_cache_all.append(cached)
        if len(ids) - 1 < min_pos:
            continue
        rows["pieces"] += 1
        pos = np.unique(np.rint(np.linspace(min_pos, len(ids) - 1, TARGETS_PER_PIECE)).astype(np.int64))
        rows["targets"] += len(pos)
        for d in DISTANCES:
            windows = ids[pos[:, None] - d + np.arange(d)[None, :]]
            pairs = [
                window_scores(model, windows[k : k + 64], ids[pos[k : k + 64]], cache)
                for k in range(0, len(pos), 64)
            ]
            r_plain = np.concatenate([p for p, _ in pairs])
            r_cache = np.concatenate([c for _, c in pairs]) if cache is not None else r_plain  # type: ignore[misc]
            a = acc[d]
            a["full"] += float(plain[pos - 1].sum())
            a["reset"] += float(r_plain.sum())
            a["full_c"] += float(cached[pos - 1].sum())
            a["reset_c"] += float(r_cache.sum())
            a["n"] += len(pos)
        # the copyable share at each distance, over the same targets
        for d in DISTANCES:
            acc[d]["copy"] += int(copyable_mask(ids, d, CONTEXT)[pos].sum())
        # which copyable (d = 1024) targets the cache helps
        far = copyable_mask(ids, 1024, CONTEXT)[pos]
        cache_copyable += int(far.sum())
        cache_up += int((cached[pos - 1] < plain[pos - 1])[far].sum())
    for d, a in acc.items():
        n = max(a["n"], 1)
        rows[d] = {
            "gain": (a["reset"] - a["full"]) / n,
            "gain_cache": (a["reset_c"] - a["full_c"]) / n,
            "full": a["full"] / n,
            "full_cache": a["full_c"] / n,
            "copyable": a["copy"] / n,
        }
    rows["nll"] = float(np.concatenate(full_plain_all).mean()) if full_plain_all else float("nan")
    rows["nll_cache"] = float(np.concatenate(full_cache_all).mean()) if full_cache_all else float("nan")
    rows["cache_helps_copyable"] = cache_up / cache_copyable if cache_copyable else float("nan")
    return rows


def run_corpus(
    name: str, corpus_dir: Path, variants: list[str], args: argparse.Namespace, work: Path
) -> None:
    corpus = Corpus.open(corpus_dir)
    val = [corpus.piece_tokens(p).astype(np.int64) for p in corpus.pieces("val")]
    fit_pieces, test_pieces = val[0::2], val[1::2]
    print(
        f"\n### {name}: {len(corpus.pieces('train'))} train pieces, validation {len(fit_pieces)} fit + "
        f"{len(test_pieces)} measured ({sum(len(p) for p in test_pieces):,} tokens), {args.minutes:g} "
        "CPU-minutes per variant\n",
        flush=True,
    )
    results = []
    for text in variants:
        vname, changes = parse_variant(text)
        cfg = TrainConfig(device="cpu", num_threads=1, max_minutes=args.minutes, seed=args.seed, **changes)
        out = work / f"{name}-{vname}"
        train(corpus, out, cfg, progress=False, plot=False, overwrite=True)
        model = load_checkpoint(out).model.eval()
        torch.set_num_threads(1)
        with torch.inference_mode():
            scored = []
            budget = MAX_FIT_TOKENS
            for ids in fit_pieces:
                ids = ids[: budget + 1]
                if len(ids) < 2:
                    break
                lp, h = piece_scores(model, ids)
                scored.append((lp, h, ids))
                budget -= len(ids) - 1
            fit = fit_cache(scored)
            r = measure(model, test_pieces, fit.config)
        results.append((vname, fit, r))
        print(
            f"{vname}: nll {r['nll']:.4f}, with cache {r['nll_cache']:.4f} (theta {fit.config.theta}, "
            f"lambda {fit.config.lam}, size {fit.config.size})",
            flush=True,
        )
    print()
    print("| variant | cache | " + " | ".join(f"gain @{d}" for d in DISTANCES) + " | NLL (all tokens) |")
    print("|---|---|" + "---:|" * (len(DISTANCES) + 1))
    for vname, fit, r in results:
        for cached in (False, True):
            key = "gain_cache" if cached else "gain"
            label = f"on (θ {fit.config.theta}, λ {fit.config.lam}, N {fit.config.size})" if cached else "off"
            cells = " | ".join(f"{r[d][key]:+.4f}" for d in DISTANCES)
            print(f"| {vname} | {label} | {cells} | {r['nll_cache' if cached else 'nll']:.4f} |")
    r0 = results[0][2]
    print("| copyable share | | " + " | ".join(f"{r0[d]['copyable']:.1%}" for d in DISTANCES) + " | |")
    print(
        f"\ntargets: {r0['targets']:,} in {r0['pieces']} pieces, positions >= {max(DISTANCES) + 1}; "
        + "; ".join(
            f"{v}: the cache raises {r['cache_helps_copyable']:.0%} of the copyable (d >= 1024) targets"
            for v, _, r in results
        )
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, action="append", help="a composer corpus (repeatable)")
    ap.add_argument("--variants", default="base", help="comma-free list separated by ';'")
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    variants = [v for v in args.variants.split(";") if v.strip()]
    print(
        f"long_range on {datetime.date.today()}: {cpu_name()}, {platform.system()}, torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        corpora: list[tuple[str, Path]] = [(c.name, c) for c in args.corpus or []]
        if not corpora:
            corpora = source_corpora(SOURCES, work, val_fraction=VAL_FRACTION)
        if not corpora:
            print("no long-piece corpus found: nothing to measure")
            return 0
        for name, path in corpora:
            run_corpus(name, path, variants, args, work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
