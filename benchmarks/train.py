"""Training throughput: the real ``composer.train.train`` loop against a bare loop of the same model.

The real loop streams pieces with carried LSTM state, gathers windows from the device token tensor,
applies augmentation lookup tables, clips gradients, checks for NaN, logs every step. The bare loop is
``forward -> cross_entropy -> backward -> AdamW step`` on a fixed random batch of the same shape. The
ratio (target >= 0.95) is what the bookkeeping costs. Both run in this process, one after the other, on
the same synthetic corpus (random notes written as MIDI, then built with ``composer.corpus``).

Each pair of loops runs ``--repeats`` times, alternating, and the table shows the medians (the ratio is
the median of the pairs' ratios), so a burst of load on a shared machine moves one pair, not the verdict.
On a GPU the table adds peak memory (``torch.cuda.max_memory_allocated``) of each loop.

    .venv/bin/python benchmarks/train.py                  # CPU: small and medium presets, ~3 minutes
    .venv/bin/python benchmarks/train.py --threads 1      # single-thread numbers
    .venv/bin/python benchmarks/train.py --presets large  # on a GPU the large preset also runs with AMP
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from composer.corpus import build_corpus
from composer.device import (
    amp_dtype,
    autocast,
    describe,
    make_grad_scaler,
    resolve_device,
    set_threads,
    synchronize,
)
from composer.metrics import read_metrics
from composer.midi import Instrument, Note, Score, TempoChange, write_midi
from composer.model import LSTMModel
from composer.runstate import make_optimizer
from composer.train import train
from composer.train_config import TrainConfig


def make_corpus(tmp: Path, pieces: int = 40, bars: int = 32) -> Path:
    rng = random.Random(0)
    midi = tmp / "midi"
    midi.mkdir()
    for i in range(pieces):
        inst = Instrument(program=rng.randrange(8), name="piano")
        tick = 0
        for _ in range(bars * 8):
            dur = rng.choice((120, 240, 480))
            for _ in range(rng.choice((1, 1, 2, 3))):
                inst.notes.append(Note(rng.randrange(40, 90), rng.randrange(40, 110), tick, tick + dur))
            tick += rng.choice((120, 240))
        write_midi(Score(instruments=[inst], tempos=[TempoChange(0, 120.0)]), midi / f"{i:03d}.mid")
    out = tmp / "corpus"
    build_corpus([midi], out, encoding="beat", workers=1, val_fraction=0.1)
    return out


@dataclass
class Row:
    name: str
    device: str
    batch: int
    window: int
    real: float  # positions per second (median over repeats)
    bare: float
    ratio: float  # median of the repeats' real / bare
    real_mib: float | None = None  # peak GPU memory of each loop
    bare_mib: float | None = None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def real_loop(corpus: Path, run: Path, cfg: TrainConfig, warmup: int) -> float:
    """Positions/s of ``train()`` between step ``warmup`` and the last step (eval and startup excluded)."""
    train(corpus, run, cfg, progress=False, plot=False, overwrite=True)
    rows = read_metrics(run / "metrics.csv")
    elapsed = {int(r["step"]): float(r["elapsed_s"]) for r in rows}
    steps = cfg.max_steps - warmup
    seconds = elapsed[cfg.max_steps] - elapsed[warmup]
    return steps * cfg.batch_size * cfg.window * cfg.grad_accum / seconds


def bare_loop(cfg: TrainConfig, vocab: int, steps: int, warmup: int) -> float:
    """Positions/s of a plain forward/backward/step loop on the same model, optimizer and shapes."""
    device = resolve_device(cfg.device)
    dtype = amp_dtype(device, cfg.amp)
    scaler = make_grad_scaler(device, dtype)
    torch.manual_seed(0)
    model = LSTMModel(cfg.model_config(vocab)).to(device).train()
    opt = make_optimizer(model, cfg, device)
    x = torch.randint(3, vocab, (cfg.batch_size, cfg.window + 1), device=device)
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            synchronize(device)
            t0 = time.perf_counter()
        with autocast(device, dtype):
            logits, _ = model(x[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, vocab).float(), x[:, 1:].reshape(-1))
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
    synchronize(device)
    return steps * cfg.batch_size * cfg.window / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="small,medium", help="comma-separated presets to time")
    ap.add_argument("--steps", type=int, default=0, help="timed steps per loop (default: by device)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    ap.add_argument("--repeats", type=int, default=0, help="alternating real/bare pairs (default: by device)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)
    on_gpu = device.type == "cuda"
    presets = [p for p in args.presets.split(",") if p]
    if on_gpu and "large" not in presets:
        presets.append("large")
    warmup = 3 if not on_gpu else 10
    steps = args.steps or (20 if not on_gpu else 100)
    repeats = args.repeats or (3 if not on_gpu else 1)
    shapes = {"small": (32, 128), "medium": (32, 128), "large": (64, 256) if on_gpu else (32, 128)}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        corpus = make_corpus(tmp)
        from composer.corpus import Corpus

        vocab = Corpus.open(corpus).tokenizer.vocab.size
        runs = [(p, False, shapes.get(p, (32, 128))) for p in presets]
        if on_gpu:
            runs += [(p, True, shapes.get(p, (32, 128))) for p in presets]
        elif "small" in presets:  # the default training shape too, where per-step overhead weighs most
            default = TrainConfig()
            runs.insert(0, ("small", False, (default.batch_size, default.window)))
        for i, (preset, amp, (batch, window)) in enumerate(runs):
            cfg = TrainConfig(
                preset=preset,
                batch_size=batch,
                window=window,
                max_steps=warmup + steps,
                eval_every=10**9,
                eval_batches=1,
                warmup_steps=0,
                device=args.device,
                amp=amp,
                num_threads=args.threads,
            )
            reals, bares, mib = [], [], []
            for _ in range(repeats):
                reset_peak(device)
                reals.append(real_loop(corpus, tmp / f"run{i}", cfg, warmup))
                mib.append(peak_mib(device))
                reset_peak(device)
                bares.append(bare_loop(cfg, vocab, steps, warmup))
                mib.append(peak_mib(device))
            ratio = statistics.median(r / b for r, b in zip(reals, bares, strict=True))
            dtype = amp_dtype(device, amp)
            name = preset + (f" {str(dtype).removeprefix('torch.')}" if dtype is not None else "")
            real, bare = statistics.median(reals), statistics.median(bares)
            rows.append(Row(name, str(device), batch, window, real, bare, ratio, mib[0], mib[1]))
            print(f"  done: {name}", file=sys.stderr, flush=True)

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"\ntraining throughput on {describe(device)}, {when} (tokens = batch x window positions per second;"
        f" medians of {repeats} alternating pairs)\n"
    )
    mem = on_gpu
    head = f"{'model':<16}{'batch x window':>16}{'train() tok/s':>16}{'bare tok/s':>14}{'ratio':>8}"
    print(head + (f"{'peak MiB train / bare':>24}" if mem else ""))
    for r in rows:
        line = f"{r.name:<16}{f'{r.batch} x {r.window}':>16}{r.real:>16,.0f}{r.bare:>14,.0f}{r.ratio:>8.3f}"
        if mem and r.real_mib is not None and r.bare_mib is not None:
            line += f"{f'{r.real_mib:,.0f} / {r.bare_mib:,.0f}':>24}"
        print(line)
    worst = min(r.ratio for r in rows)
    print(f"\nlowest ratio {worst:.3f}: target >= 0.95 {'met' if worst >= 0.95 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
