"""Model quality at equal training time: composer against MidiTok REMI + a plain LSTM loop, same files.

Both sides train for the same wall-clock minutes on one CPU thread each, on the train split of a composer
corpus (default ``corpora/bach``, split by content hash in its manifest), then are scored on the SAME
validation files. The figure that compares two tokenizations is **nats per note**: the total NLL of a
validation piece's tokens (everything after BOS, through EOS) over the number of notes in its source MIDI
file (``composer.midi.read_midi(path).note_count``), the same denominator for both sides.

* composer: ``composer.train.train`` with its defaults (small preset: 2 x 256 LSTM, tied embedding,
  dropout, carried state, transposition/velocity augmentation, batch 16 x window 64, warm-up + cosine
  learning rate over the default 6000 steps), except ``max_minutes=M`` as the only stop (``max_steps``
  is made huge, the cosine still ends where a default run's does), one validation pass at the end, CPU,
  1 thread.
* reference: ``miditok.REMI(TokenizerConfig(use_programs=True, use_tempos=True,
  use_time_signatures=True))`` on the same train files (one sequence per file, BOS/EOS added, pieces
  back to back), then the loop of the tutorials: Embedding(V, 256) -> LSTM(256, 256, 2 layers) ->
  Linear, AdamW (constant lr, default 3e-3, see README), random windows of 128 tokens, batch 32, state
  reset every window, gradient norm clipped to 1. Same minutes, CPU, 1 thread. Tokenizing is not timed.

Evaluation is the same for both: ``composer.nll.piece_nlls`` streams each whole validation piece
with the LSTM state carried from its start. For the reference, which never saw a state older than 128
tokens in training, the table also gives the NLL with the state reset every 128 tokens (how it was
trained); the target is judged on the carried figure, and the better of the two is printed beside it.

    .venv/bin/python benchmarks/quality.py              # 3 minutes each, ~6.5 minutes in all
    .venv/bin/python benchmarks/quality.py --quick      # 0.5 minutes each, a smoke test
    .venv/bin/python benchmarks/quality.py --minutes 10 --ref-lr 1e-3

Prints a markdown table. Target: composer's nats/note at least 10% below the reference's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from machine import cpu_name  # benchmarks/machine.py
from torch import nn

DEFAULT_CORPUS = Path("corpora/bach")
TARGET = 0.10  # composer's nats/note at least this fraction below the reference's
THREADS = 1
# The reference loop (the shape of the MidiTok / PyTorch tutorials).
REF_DIM, REF_LAYERS, REF_WINDOW, REF_BATCH, REF_CLIP = 256, 2, 128, 32, 1.0
REF_LR = 3e-3  # beat 1e-3 at 3 minutes on the Bach chorales (README)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


# ------------------------------------------------------------------------------------------------ data


@dataclass
class ValFile:
    path: str
    notes: int  # notes in the source MIDI file: the denominator of both sides
    composer_ids: np.ndarray  # BOS ... EOS
    remi_ids: np.ndarray  # BOS ... EOS
    composer_notes: int  # notes the composer corpus kept
    remi_notes: int  # Pitch tokens in the REMI sequence


def remi_tokenizer() -> Any:
    from miditok import REMI, TokenizerConfig

    return REMI(TokenizerConfig(use_programs=True, use_tempos=True, use_time_signatures=True))


def remi_encode(tok: Any, path: str) -> tuple[np.ndarray, int] | None:
    """BOS + REMI ids + EOS of one file and its note count, or None when MidiTok fails or finds nothing."""
    try:
        seq = tok.encode(Path(path))
    except Exception as e:  # one odd file must not cost the run
        say(f"  MidiTok failed on {path}: {type(e).__name__}: {e}")
        return None
    seqs = seq if isinstance(seq, list) else [seq]  # a list per track only without use_programs
    ids = [i for s in seqs for i in s.ids]
    notes = sum(t.startswith("Pitch") for s in seqs for t in s.tokens)
    if not ids:
        return None
    arr = np.asarray([tok["BOS_None"], *ids, tok["EOS_None"]], dtype=np.int64)
    return arr, notes


def source_path(path: str, corpus_dir: Path) -> Path:
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    alt = corpus_dir.parent.parent / p  # manifests store paths relative to where the build ran
    return alt if alt.exists() else p


def load_data(corpus: Any, tok: Any) -> tuple[list[np.ndarray], list[ValFile], dict[str, int]]:
    """The reference's train sequences and the validation files both sides are scored on."""
    from composer.midi import read_midi

    train, failed = [], 0
    for p in corpus.pieces("train"):
        r = remi_encode(tok, str(source_path(p.path, corpus.path)))
        if r is None:
            failed += 1
        else:
            train.append(r[0])
    val, val_failed = [], 0
    for p in corpus.pieces("val"):
        src = source_path(p.path, corpus.path)
        r = remi_encode(tok, str(src))
        if r is None:
            val_failed += 1
            continue
        ids = np.asarray(corpus.piece_tokens(p), dtype=np.int64)
        val.append(ValFile(str(src), read_midi(src).note_count, ids, r[0], int(p.notes), r[1]))
    if not train or not val:
        sys.exit(f"{corpus.path}: no train or validation files MidiTok can read")
    return train, val, {"train_failed": failed, "val_failed": val_failed}


# ------------------------------------------------------------------------------------------- composer


def run_composer(
    corpus: Any,
    minutes: float,
    seed: int,
    run_dir: Path,
    val: list[ValFile],
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from composer.checkpoint import load_checkpoint
    from composer.nll import piece_nlls
    from composer.train import train
    from composer.train_config import TrainConfig

    defaults = TrainConfig()
    config = TrainConfig(
        max_minutes=minutes,
        max_steps=10**9,  # the clock is the only stop ...
        lr_decay_steps=defaults.max_steps,  # ... with the learning-rate schedule of a default run
        eval_every=10**9,  # one validation pass, at the end
        device="cpu",
        num_threads=THREADS,
        seed=seed,
    ).replace(**(overrides or {}))
    last_step = [0.0]

    def on_step(step: int, loss: float, model: nn.Module) -> None:
        last_step[0] = time.perf_counter()

    t_call = time.perf_counter()
    res = train(
        corpus, run_dir, config, progress=False, plot=False, log=lambda m: say(f"  {m}"), on_step=on_step
    )
    ckpt = load_checkpoint(res.best_path or res.last_path or run_dir)
    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    nlls = piece_nlls(ckpt.model, [v.composer_ids for v in val])
    eval_s = time.perf_counter() - t0
    return {
        "steps": res.steps,
        "train_s": last_step[0] - t_call,  # from the call (setup included) to the end of the last step
        "params": ckpt.model.num_parameters(),
        "vocab": ckpt.tokenizer.vocab.size,
        "positions": res.steps * config.batch_size * config.window,
        "shape": f"{config.batch_size} x {config.window}",
        "nll": float(sum(float(x.sum()) for x in nlls)),
        "tokens": int(sum(len(x) for x in nlls)),
        "kept_notes": sum(v.composer_notes for v in val),
        "eval_s": eval_s,
        "lr": f"{config.peak_lr:g} warm-up + cosine to {config.final_lr:g} at step {config.lr_decay_steps}",
    }


# ------------------------------------------------------------------------------------------ reference


class PlainLSTM(nn.Module):
    """Embedding -> LSTM -> Linear, the tutorials' model; ``forward(tokens, state) -> (logits, state)``."""

    def __init__(self, vocab: int, dim: int = REF_DIM, layers: int = REF_LAYERS) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, dim, layers, batch_first=True)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        out, state = self.lstm(self.embed(tokens), state)  # (B, T, E) -> (B, T, H)
        return self.head(out), state  # (B, T, V)


def train_reference(
    train: list[np.ndarray], vocab: int, minutes: float, lr: float, seed: int
) -> dict[str, Any]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    data = torch.from_numpy(np.concatenate(train))  # every piece BOS ... EOS, back to back
    model = PlainLSTM(vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    offsets = torch.arange(REF_WINDOW + 1)
    model.train()
    steps, losses = 0, []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < minutes * 60:
        start = torch.randint(0, len(data) - REF_WINDOW - 1, (REF_BATCH,), generator=gen)
        chunk = data[start[:, None] + offsets]  # (B, T + 1)
        logits, _ = model(chunk[:, :-1])  # fresh zero state every window
        loss = F.cross_entropy(logits.reshape(-1, vocab), chunk[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), REF_CLIP)
        opt.step()
        steps += 1
        losses.append(loss.item())
        if steps % 200 == 0:
            say(f"  step {steps}: train {np.mean(losses[-200:]):.4f} nats/token")
    return {
        "model": model,
        "steps": steps,
        "train_s": time.perf_counter() - t0,
        "params": sum(p.numel() for p in model.parameters()),
        "positions": steps * REF_BATCH * REF_WINDOW,
        "shape": f"{REF_BATCH} x {REF_WINDOW}",
        "final_train": float(np.mean(losses[-50:])) if losses else float("nan"),
    }


@torch.inference_mode()
def windowed_nll(model: nn.Module, pieces: list[np.ndarray], window: int) -> float:
    """Total NLL of tokens 1..n-1 with the state reset every ``window`` tokens (how the reference trains)."""
    model.eval()
    rows, total = [], 0.0
    for p in pieces:
        for s in range(0, len(p) - 1, window):
            rows.append(p[s : min(s + window, len(p) - 1) + 1])
    for b in range(0, len(rows), 256):
        group = rows[b : b + 256]
        arr = np.zeros((len(group), window + 1), dtype=np.int64)
        mask = np.zeros((len(group), window), dtype=bool)
        for r, w in enumerate(group):
            arr[r, : len(w)] = w
            mask[r, : len(w) - 1] = True
        x = torch.from_numpy(arr)
        logits, _ = model(x[:, :-1])
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction="none")
        total += float(nll[torch.from_numpy(mask).reshape(-1)].double().sum())
    return total


def run_reference(
    train: list[np.ndarray], val: list[ValFile], vocab: int, minutes: float, lr: float, seed: int
) -> dict[str, Any]:
    from composer.nll import piece_nlls

    res = train_reference(train, vocab, minutes, lr, seed)
    model = res.pop("model")
    t0 = time.perf_counter()
    nlls = piece_nlls(model, [v.remi_ids for v in val])
    res["eval_s"] = time.perf_counter() - t0
    res["nll"] = float(sum(float(x.sum()) for x in nlls))
    res["tokens"] = int(sum(len(x) for x in nlls))
    res["nll_windowed"] = windowed_nll(model, [v.remi_ids for v in val], REF_WINDOW)
    res["kept_notes"] = sum(v.remi_notes for v in val)
    res["vocab"] = vocab
    res["lr"] = f"{lr:g} constant"
    return res


# ------------------------------------------------------------------------------------------------ report


def report(
    args: argparse.Namespace,
    corpus: Any,
    val: list[ValFile],
    n_train: tuple[int, int],
    skipped: dict[str, int],
    sides: dict[str, dict[str, Any]],
    loads: list[str],
) -> None:
    notes = sum(v.notes for v in val)
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    cpu = cpu_name()
    print(f"## Quality at equal training time: composer vs MidiTok REMI + plain LSTM ({now})\n")
    print(
        f"Machine: {platform.platform()}, {cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}, "
        f"torch {torch.__version__}. Both sides on the CPU with **{THREADS} thread** "
        f"(torch.set_num_threads({THREADS})), one after the other in one process."
    )
    print(f"Load average (1/5/15 min): {' -> '.join(loads)} (before, between, after).")
    print(
        f"Corpus: {corpus.path} ({n_train[0]} train files for composer, {n_train[1]} for MidiTok; "
        f"{len(val)} validation files"
        + (
            f", {skipped['val_failed']} dropped because MidiTok failed on them"
            if skipped["val_failed"]
            else ""
        )
        + f"). Validation notes (source MIDI, the divisor of both): {notes:,}.\n"
    )
    names = {
        "composer": "composer (beat tokens, `train()` defaults)",
        "reference": "MidiTok REMI + plain LSTM",
    }
    cols = [k for k in ("composer", "reference") if k in sides]
    rows: list[tuple[str, list[str]]] = [
        (
            "training wall-clock (to the end of the last step)",
            [f"{sides[k]['train_s'] / 60:.2f} min" for k in cols],
        ),
        ("batch x window", [sides[k]["shape"] for k in cols]),
        ("optimizer steps", [f"{sides[k]['steps']:,}" for k in cols]),
        ("tokens trained on", [f"{sides[k]['positions']:,}" for k in cols]),
        ("learning rate", [sides[k]["lr"] for k in cols]),
        ("parameters", [f"{sides[k]['params']:,}" for k in cols]),
        ("vocabulary", [f"{sides[k]['vocab']:,}" for k in cols]),
        ("val tokens evaluated (after BOS, through EOS)", [f"{sides[k]['tokens']:,}" for k in cols]),
        ("val notes (source MIDI)", [f"{notes:,}" for _ in cols]),
        ("val notes kept by the tokenizer", [f"{sides[k]['kept_notes']:,}" for k in cols]),
        ("tokens per note", [f"{sides[k]['tokens'] / notes:.2f}" for k in cols]),
        ("val nats/token (state carried)", [f"{sides[k]['nll'] / sides[k]['tokens']:.4f}" for k in cols]),
        ("**val nats/note** (state carried)", [f"**{sides[k]['nll'] / notes:.4f}**" for k in cols]),
    ]
    if "reference" in sides:
        r = sides["reference"]
        w = ["-" if k != "reference" else f"{r['nll_windowed'] / notes:.4f}" for k in cols]
        rows.append((f"val nats/note, state reset every {REF_WINDOW} tokens", w))
    print("| | " + " | ".join(names[k] for k in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for label, vals in rows:
        print(f"| {label} | " + " | ".join(vals) + " |")
    if len(cols) == 2:
        c = sides["composer"]["nll"] / notes
        ref = sides["reference"]["nll"] / notes
        ref_best = min(ref, sides["reference"]["nll_windowed"] / notes)
        ratio = c / ref
        met = ratio <= 1 - TARGET
        print(
            f"\nRatio composer / reference nats/note: **{ratio:.3f}** ({abs(1 - ratio) * 100:.1f}% "
            f"{'lower' if ratio <= 1 else 'higher'}); "
            f"against the reference's better evaluation: {c / ref_best:.3f}."
        )
        print(
            f"Target: composer >= {TARGET * 100:.0f}% lower nats/note at {args.minutes:g} CPU-minutes each: "
            f"**{'met' if met else 'NOT met'}**."
        )
    if args.set:
        print(f"\ncomposer ran with `--set {' '.join(args.set)}` on top of its defaults.")
    print(
        "\ncomposer trains with its default augmentation (velocity jitter; transposition is off by default) "
        "and carried state; the reference with neither, as the plain loop does. Tokenizing is not timed."
    )


def parse_overrides(ap: argparse.ArgumentParser, items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (VALUE read as JSON where it parses, else a string), checked by TrainConfig."""
    from composer.errors import ConfigError
    from composer.train_config import TrainConfig

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            ap.error(f"--set takes KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    try:
        TrainConfig.from_dict(out)
    except (ConfigError, TypeError) as e:
        ap.error(f"--set: {e}")
    return out


def summarize(args: argparse.Namespace, val: list[ValFile], runs: list[dict[str, dict[str, Any]]]) -> None:
    """One line per run and the verdict on the mean nats/note of each side."""
    notes = sum(v.notes for v in val)
    cols = [k for k in ("composer", "reference") if k in runs[0]]
    print(f"\n## Summary of {len(runs)} runs ({args.minutes:g} CPU-minutes per side each)\n")
    print(
        "| run | " + " | ".join(f"{k} nats/note" for k in cols) + (" | ratio |" if len(cols) == 2 else " |")
    )
    print("|---|" + "---:|" * (len(cols) + (len(cols) == 2)))
    for i, sides in enumerate(runs, 1):
        vals = [sides[k]["nll"] / notes for k in cols]
        ratio = [f"{vals[0] / vals[1]:.3f}"] if len(cols) == 2 else []
        print(f"| {i} | " + " | ".join(f"{v:.4f}" for v in vals) + "".join(f" | {r}" for r in ratio) + " |")
    means = [statistics.mean(sides[k]["nll"] / notes for sides in runs) for k in cols]
    spread = [statistics.stdev(sides[k]["nll"] / notes for sides in runs) for k in cols]
    line = " | ".join(f"**{m:.4f}** ± {sd:.3f}" for m, sd in zip(means, spread, strict=True))
    if len(cols) == 2:
        ratio = means[0] / means[1]
        print(f"| mean ± sd | {line} | **{ratio:.3f}** |")
        print(
            f"\nMean composer / reference nats/note: **{ratio:.3f}** ({abs(1 - ratio) * 100:.1f}% "
            f"{'lower' if ratio <= 1 else 'higher'}). Target: >= {TARGET * 100:.0f}% lower at "
            f"{args.minutes:g} CPU-minutes each: **{'met' if ratio <= 1 - TARGET else 'NOT met'}** (mean)."
        )
    else:
        print(f"| mean ± sd | {line} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0, help="training wall-clock minutes per side")
    ap.add_argument("--quick", action="store_true", help="0.5 minutes per side: a smoke test")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="a composer corpus folder")
    ap.add_argument("--ref-lr", type=float, default=REF_LR, help="the reference's AdamW learning rate")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--only", choices=["composer", "reference"], help="run one side only")
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="alternating runs per side (seeds seed..seed+N-1); verdict on the mean",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a composer TrainConfig field for this comparison, e.g. --set dropout=0.1 (repeatable)",
    )
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    overrides = parse_overrides(ap, args.set)
    if args.quick:
        args.minutes = 0.5
    if not (args.minutes > 0 and math.isfinite(args.minutes)):
        ap.error("--minutes must be a positive number")
    torch.set_num_threads(THREADS)

    from composer.corpus import Corpus

    corpus = Corpus.open(args.corpus)
    tok = remi_tokenizer()
    say(f"tokenizing {len(corpus.pieces())} files with MidiTok REMI (not timed) ...")
    train_seqs, val, skipped = load_data(corpus, tok)
    n_train = (len([p for p in corpus.pieces("train") if p.length >= 2]), len(train_seqs))
    runs: list[dict[str, dict[str, Any]]] = []
    for i in range(args.repeats):
        seed = args.seed + i
        loads = [load_text()]
        sides: dict[str, dict[str, Any]] = {}
        if args.only in (None, "composer"):
            say(f"run {i + 1}/{args.repeats}, composer: training {args.minutes:g} min ...")
            with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
                sides["composer"] = run_composer(
                    corpus, args.minutes, seed, Path(tmp) / "run", val, overrides
                )
            loads.append(load_text())
        if args.only in (None, "reference"):
            say(f"run {i + 1}/{args.repeats}, reference: {args.minutes:g} min, lr {args.ref_lr:g} ...")
            sides["reference"] = run_reference(train_seqs, val, len(tok), args.minutes, args.ref_lr, seed)
            loads.append(load_text())
        if args.repeats > 1:
            print(f"\n# Run {i + 1} of {args.repeats} (seed {seed})\n")
        report(args, corpus, val, n_train, skipped, sides, loads)
        runs.append(sides)
    if args.repeats > 1:
        summarize(args, val, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
