"""Checks that only a GPU can run: the CUDA paths of training, resume and generation, end to end.

The test suite runs on the CPU; it drives autocast, loss scaling, overflow skips and their resume there,
but not cuDNN. Run this once on any machine with an NVIDIA GPU (a few seconds of GPU time, a tiny
synthetic corpus in a temp folder) and paste its table into an issue if anything is not ``ok``:

    .venv/bin/python benchmarks/gpu_check.py                # exits 0 with "skipped" where there is no GPU
    .venv/bin/python benchmarks/gpu_check.py --device cpu   # the same checks on the CPU (a dry run)

It checks: the dtype cuDNN's LSTM really computes in under composer's autocast; a short training run on
the GPU (float16 + loss scaling) whose loss falls and whose checkpoint loads on the CPU; a CPU-trained
checkpoint resumed on the GPU; evaluation on the GPU against the CPU's; generation on the GPU that is
reproducible for a seed; the out-of-memory message for an impossible batch.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from composer.device import amp_dtype, autocast, describe, make_grad_scaler, resolve_device


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: skipped (no CUDA GPU here)")
        return 0
    on_gpu = args.device == "cuda"
    if not on_gpu:
        torch.set_num_threads(1)
    from train import make_corpus  # benchmarks/train.py, beside this file

    from composer.checkpoint import load_checkpoint
    from composer.errors import ComposerError
    from composer.nll import piece_nlls
    from composer.sample import Length, generate
    from composer.train import train
    from composer.train_config import TrainConfig

    dev = resolve_device(args.device)
    results: list[tuple[str, bool, str]] = []

    def check(name: str, fn: Callable[[], tuple[bool, str]]) -> None:
        t0 = time.perf_counter()
        try:
            ok, detail = fn()
        except Exception as e:  # noqa: BLE001 - a check script reports every failure and goes on
            ok, detail = False, f"{type(e).__name__}: {e}"[:300]
        results.append((name, ok, f"{detail} ({time.perf_counter() - t0:.1f} s)"))

    tmp = Path(tempfile.mkdtemp(prefix="composer-gpu-check-"))
    corpus = make_corpus(tmp, pieces=24, bars=16)
    small = {"batch_size": 16, "window": 64, "eval_every": 20, "eval_batches": 4, "warmup_steps": 5}

    def lstm_dtype() -> tuple[bool, str]:
        dtype = amp_dtype(dev)
        lstm = torch.nn.LSTM(32, 32, num_layers=2, batch_first=True).to(dev)
        with autocast(dev, dtype):
            out, (h, _) = lstm(torch.randn(4, 8, 32, device=dev))
        scaler = make_grad_scaler(dev, dtype)
        ok = out.dtype == dtype and scaler is not None
        return (
            ok,
            f"autocast {dtype}: LSTM computes in {out.dtype}, state {h.dtype}; scaler: {scaler is not None}",
        )

    def train_on_gpu() -> tuple[bool, str]:
        cfg = TrainConfig(max_steps=60, device=dev.type, num_threads=1, **small)
        res = train(corpus, tmp / "gpu", cfg, progress=False, plot=False)
        first, last = res.train_losses[:5], res.train_losses[-5:]
        ck = load_checkpoint(tmp / "gpu", device="cpu")
        ok = sum(last) < sum(first) - 2.5 and res.skipped_steps <= 3 and ck.step == 60
        return ok, (
            f"loss {sum(first) / 5:.2f} -> {sum(last) / 5:.2f}, {res.skipped_steps} skipped, "
            f"{res.tokens_per_s:,.0f} tok/s, checkpoint loads on the CPU"
        )

    def resume_cpu_run_on_gpu() -> tuple[bool, str]:
        cfg = TrainConfig(max_steps=10, lr_decay_steps=30, device="cpu", num_threads=1, **small)
        train(corpus, tmp / "cpu", cfg, progress=False, plot=False)
        res = train(
            corpus,
            tmp / "cpu",
            cfg.replace(max_steps=30, device=dev.type),
            resume=True,
            progress=False,
            plot=False,
        )
        ok = res.steps == 30 and all(math.isfinite(v) for v in res.train_losses)
        return (
            ok,
            f"resumed at step 10, {len(res.train_losses)} more steps, last loss {res.train_losses[-1]:.2f}",
        )

    def evaluate_on_gpu() -> tuple[bool, str]:
        from composer.corpus import Corpus

        c = Corpus.open(corpus)
        piece = c.piece_tokens(c.pieces("val")[0])
        gpu = load_checkpoint(tmp / "gpu", device=dev)
        cpu = load_checkpoint(tmp / "gpu", device="cpu")
        a, b = piece_nlls(gpu.model, [piece]), piece_nlls(cpu.model, [piece])
        diff = max(abs(float(x) - float(y)) for x, y in zip(a[0], b[0], strict=True))
        return diff < 1e-2, f"per-token NLL on the GPU vs the CPU: max difference {diff:.2e} nats"

    def generate_on_gpu() -> tuple[bool, str]:
        a = generate(tmp / "gpu", 2, length=Length(bars=4), seed=3, device=dev.type)
        b = generate(tmp / "gpu", 2, length=Length(bars=4), seed=3, device=dev.type)
        same = all(list(x.ids) == list(y.ids) for x, y in zip(a, b, strict=True))
        return same and all(
            s.notes > 0 for s in a
        ), f"2 songs, {sum(s.notes for s in a)} notes, same seed same songs: {same}"

    def out_of_memory() -> tuple[bool, str]:
        free, _ = torch.cuda.mem_get_info(dev)
        batch = 65536
        cfg = TrainConfig(
            max_steps=2, device=dev.type, preset="large", batch_size=batch, window=4096, eval_every=10**6
        )
        try:
            train(corpus, tmp / "oom", cfg, progress=False, plot=False)
        except ComposerError as e:
            return "out of memory" in str(e) and "--batch-size" in str(e), str(e)
        return False, f"batch {batch} x 4096 did not run out of {free / 2**30:.0f} GiB free"

    checks = [
        ("LSTM precision under autocast", lstm_dtype, on_gpu),
        ("train on the GPU", train_on_gpu, True),
        ("resume a CPU run on the GPU", resume_cpu_run_on_gpu, True),
        ("evaluate on the GPU", evaluate_on_gpu, True),
        ("generate on the GPU", generate_on_gpu, True),
        ("out-of-memory message", out_of_memory, on_gpu),
    ]
    for name, fn, runs_here in checks:
        if runs_here:
            check(name, fn)
        else:
            results.append((name, True, "n/a on the CPU"))

    print(
        f"\ngpu_check on {describe(dev)}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
    )
    print("| check | result | detail |\n|---|---|---|")
    for name, ok, detail in results:
        print(f"| {name} | {'ok' if ok else '**FAILED**'} | {detail} |")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
