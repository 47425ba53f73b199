"""The LSTM paper's long-time-lag experiment, through composer's own pipeline, model and training loop.

Hochreiter & Schmidhuber (1997), Experiment 2: a sequence starts with one of two symbols, then q
distractors drawn at random, then the same symbol again; predicting the last symbol means remembering the
first across the q distractors. Here the symbols are notes and the sequences real MIDI files:

* every piece opens with pitch 40 or 41 (the paper's "x or y"), then random sixteenth notes from
  ``--distractors`` pitches (60 and up), then the end marker (pitch 50, the paper's "e"), then the opening
  pitch again; the distractor count is set so that the lag in ``beat`` tokens (from the first PITCH token
  to the last) is q, plus up to q/10 at random as in the paper (so the end cannot be found by counting);
* the files go through ``composer.corpus.build_corpus`` and ``composer.train.train`` as a user's would
  (only the model size, an untied output layer (``--tied`` ties it), the window, learning rate and
  augmentation are set: see ``run_config``);
* every ``--check-every`` steps the model is tested on the validation pieces: it reads each piece up to
  the last note and must give the right opening pitch the higher probability of the two. **Solved** when
  it does for at least ``--solved-share`` of them; the table gives the training sequences seen until
  then (steps x batch / windows per piece), beside the paper's figure.

A truncated-BPTT window shorter than the lag cuts the gradient before it reaches the first note, so the
window must span the lag: ``--window`` defaults to q + q/10 + 64 (the ``long-lag`` rows); ``--short-window``
adds a row per q trained with the default 64-token window, which cannot learn it.

    .venv/bin/python benchmarks/long_lag.py                      # q = 100, 500, 1000, 2000
    .venv/bin/python benchmarks/long_lag.py --lags 100 --quick   # a smoke test (CI runs the machinery)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name  # noqa: E402 - benchmarks/machine.py

from composer.corpus import Corpus, build_corpus  # noqa: E402
from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature, write_midi  # noqa: E402
from composer.train import train  # noqa: E402
from composer.train_config import TrainConfig  # noqa: E402

X, Y = 40, 41  # the two opening pitches
END = 50  # the end marker before the last note
TPQ = 480
SIXTEENTH = TPQ // 4
#: The paper's Experiment 2c (p = q distractor symbols): training sequences until solved, where reported.
PAPER = {1000: "49,000 (2c, p = 1000)"}


def lag_piece(first: int, distractors: np.ndarray) -> Score:
    """first, distractors..., END, first: sixteenth notes at 120 bpm in 4/4."""
    pitches = [first, *distractors.tolist(), END, first]
    notes = [Note(int(p), 80, k * SIXTEENTH, (k + 1) * SIXTEENTH) for k, p in enumerate(pitches)]
    return Score(
        TPQ, [Instrument(0, False, "Piano", notes)], [TempoChange(0, 120.0)], [TimeSignature(0, 4, 4)]
    )


def tokens_per_note() -> float:
    """beat tokens per distractor note in these pieces (POSITION PITCH DURATION, a BAR every 16)."""
    from composer.tokenizer import TokenizerConfig, tokenizer_from_config

    tok = tokenizer_from_config(TokenizerConfig(encoding="beat"))
    a = len(tok.encode(lag_piece(X, np.full(100, 60)))[0])
    b = len(tok.encode(lag_piece(X, np.full(500, 60)))[0])
    return (b - a) / 400


def make_files(folder: Path, lag: int, n: int, distractors: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # the end marker and the last note's own POSITION lie inside the lag too: two notes' worth of tokens
    count = max(1, round(lag / tokens_per_note()) - 2)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        first = X if rng.random() < 0.5 else Y
        k = count + int(rng.integers(0, count // 10 + 1))
        write_midi(lag_piece(first, 60 + rng.integers(0, distractors, k)), folder / f"seq_{i:05d}.mid")


@dataclass
class Check:
    accuracy: float
    lag_tokens: float


def recall_test(model: torch.nn.Module, corpus: Corpus) -> Check:
    """Share of validation pieces whose last pitch the model prefers over the other opening pitch."""
    tok = corpus.tokenizer
    px, py = tok.vocab.id(f"PITCH_{X}"), tok.vocab.id(f"PITCH_{Y}")
    correct, lags = 0, []
    was_training = model.training
    model.eval()
    pieces = corpus.pieces("val")
    try:
        with torch.no_grad():
            for p in pieces:
                ids = corpus.piece_tokens(p).astype(np.int64)
                where = np.flatnonzero((ids == px) | (ids == py))
                first, last = int(where[0]), int(where[-1])
                logits, _ = model(torch.as_tensor(ids[None, :last]), None)
                lx, ly = logits[0, -1, px].item(), logits[0, -1, py].item()
                correct += (lx > ly) == (ids[last] == px)
                lags.append(last - first)
    finally:
        if was_training:
            model.train()
    return Check(correct / max(len(pieces), 1), float(np.mean(lags)) if lags else 0.0)


class Solved(Exception):
    pass


def run_config(args: argparse.Namespace, window: int, max_steps: int) -> TrainConfig:
    return TrainConfig(
        embed_dim=args.hidden,
        hidden_size=args.hidden,
        num_layers=args.layers,
        tie_weights=args.tied,
        dropout=0.0,
        batch_size=args.batch,
        window=window,
        lr=args.lr,
        min_lr=args.lr,  # a constant rate: the run has no planned length
        warmup_steps=20,
        max_steps=max_steps,
        eval_every=max_steps,
        eval_batches=1,
        velocity_jitter=0,
        device="cpu",
        num_threads=1,
        seed=args.seed,
        chrono_init=2 * window if args.chrono < 0 else args.chrono,
    )


def run_one(args: argparse.Namespace, lag: int, window: int, work: Path) -> dict[str, Any]:
    midi = work / f"midi-{lag}"
    make_files(midi, lag, args.pieces, args.distractors, args.seed + lag)
    corpus_dir = work / f"corpus-{lag}"
    if not (corpus_dir / "manifest.json").exists():
        build_corpus([midi], corpus_dir, encoding="beat", workers=1, val_fraction=args.val_fraction)
    corpus = Corpus.open(corpus_dir)
    piece_len = float(np.mean([p.length for p in corpus.pieces("train")]))
    windows_per_piece = int(np.ceil((piece_len - 1) / window))
    budget_s = args.minutes * 60
    found: dict[str, Any] = {}
    last_check: list[Check] = []
    t0 = time.perf_counter()

    def on_step(step: int, loss: float, model: torch.nn.Module) -> None:
        out_of_budget = time.perf_counter() - t0 >= budget_s or step >= args.max_steps
        if step % args.check_every and not out_of_budget:
            return
        c = recall_test(model, corpus)
        last_check[:] = [c]
        print(f"  q={lag} window={window} step {step}: recall {c.accuracy:.3f}", file=sys.stderr, flush=True)
        if c.accuracy >= args.solved_share:
            found.update(step=step, accuracy=c.accuracy)
            raise Solved
        if out_of_budget:
            raise TimeoutError

    steps_done = 0

    def count(step: int, loss: float, model: torch.nn.Module) -> None:
        nonlocal steps_done
        steps_done = step
        on_step(step, loss, model)

    with contextlib.suppress(Solved, TimeoutError):
        train(
            corpus,
            work / f"run-{lag}-{window}",
            run_config(args, window, args.max_steps),
            progress=False,
            plot=False,
            overwrite=True,
            on_step=count,
        )
    seconds = time.perf_counter() - t0
    sequences = steps_done * args.batch / windows_per_piece
    check = last_check[0] if last_check else Check(float("nan"), float("nan"))
    return {
        "lag": lag,
        "measured_lag": check.lag_tokens,
        "window": window,
        "solved": "step" in found,
        "sequences": sequences,
        "steps": steps_done,
        "accuracy": check.accuracy,
        "seconds": seconds,
    }


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lags", default="100,500,1000,2000", help="q values (tokens between the two notes)")
    ap.add_argument("--window", type=int, default=0, help="TBPTT window (0: q + 64)")
    ap.add_argument(
        "--short-window", action="store_true", help="also train each q with the default window 64"
    )
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument(
        "--tied", action="store_true", help="the output layer tied to the embedding (the presets' default)"
    )
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument(
        "--chrono", type=int, default=-1, help="TrainConfig.chrono_init (0: off; -1: twice the window)"
    )
    ap.add_argument("--distractors", type=int, default=32, help="distinct distractor pitches (p)")
    ap.add_argument("--pieces", type=int, default=1200, help="MIDI files per q (train + validation)")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--check-every", type=int, default=25, help="steps between recall tests")
    ap.add_argument("--solved-share", type=float, default=0.95)
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget per row")
    ap.add_argument("--max-steps", type=int, default=10**7, help="step budget per row")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--quick", action="store_true", help="smoke test: 60 pieces, 1 minute a row")
    ap.add_argument("--work", type=Path, default=None, help="keep files here (default: a temp folder)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.quick:
        args.pieces, args.minutes, args.check_every = 60, 1.0, 10
    torch.set_num_threads(1)
    lags = [int(x) for x in args.lags.split(",") if x.strip()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for lag in lags:
            windows = [args.window or lag + lag // 10 + 64] + ([64] if args.short_window else [])
            for w in windows:
                r = run_one(args, lag, w, work)
                rows.append(r)
                print(
                    f"q={lag} window={w}: solved={r['solved']} after {r['sequences']:,.0f} sequences "
                    f"({r['steps']} steps, {r['seconds']:.0f} s), recall {r['accuracy']:.3f}",
                    flush=True,
                )
    print()
    print(
        f"long_lag on {datetime.date.today()}: {cpu_name()}, {platform.system()}, torch {torch.__version__}, "
        f"1 thread; model 1 x {args.hidden} LSTM x {args.layers}{' tied' if args.tied else ' untied'}, "
        f"batch {args.batch}, lr {args.lr}, "
        f"{args.distractors} distractor pitches, {args.minutes:g} min per row"
    )
    print()
    print("| q (tokens) | measured lag | window | solved | sequences seen | recall | minutes | paper |")
    print("|---:|---:|---:|:---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['lag']:,} | {r['measured_lag']:,.0f} | {r['window']} | {'yes' if r['solved'] else 'no'} | "
            f"{r['sequences']:,.0f} | {r['accuracy']:.3f} | {r['seconds'] / 60:.1f} | "
            f"{PAPER.get(r['lag'], '–')} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
