"""Generation speed: seconds of music per second of compute, and whether a token costs the same late on.

Two samplers draw the same kind of valid sequences (the beat grammar's masks, temperature sampling):

* ``composer`` -- ``composer.sample.sample_ids``: the LSTM state is carried, one token in, one out.
* ``composer + cache`` -- the same with the neural cache (``composer.cache.CacheBank``) mixed in, at its
  largest size: each step scores the new state against every earlier one of the song.
* ``naive`` -- what tutorial repositories do: for every new token, re-run the model over the last
  ``--window`` tokens from a zero state and keep only the last logits.

The model is the default preset (``small``: 2 x 256 LSTM, tied embedding) at the real vocabulary size, with
untrained weights: speed does not depend on training. Seconds of music are tokens divided by the token
density of real music in the beat encoding, measured on the Bach chorales when they are there
(``corpora/bach/midi``, from ``composer corpus bach``), else the 13.6 tokens/s measured on them once.
"t(4N)/t(N)" is the time for 4N tokens over the time for N (4.0 when a token costs the same however long
the piece already is).

    .venv/bin/python benchmarks/generate.py               # ~3 minutes on two CPU cores
    .venv/bin/python benchmarks/generate.py --quick       # fewer tokens, no batch-16 naive run
    .venv/bin/python benchmarks/generate.py --device cuda # the model on a GPU (sampling stays on the CPU)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import time
from collections.abc import Callable
from pathlib import Path

import torch
from machine import cpu_name  # benchmarks/machine.py

from composer.cache import SIZES, CacheConfig
from composer.device import resolve_device, synchronize
from composer.model import LSTMModel, ModelConfig
from composer.sample import Length, sample_ids
from composer.tokenizer import Tokenizer, TokenizerConfig, tokenizer_from_config

#: The cache at the largest size the fit can choose (its cost per token grows with the tokens it holds).
CACHE = CacheConfig(theta=1.0, lam=0.5, size=max(SIZES))
BACH_TOKENS_PER_SECOND = 13.6  # beat encoding, measured on the 407 chorales music21 ships


def music_density(tok: Tokenizer, folder: Path = Path("corpora/bach/midi")) -> tuple[float, str]:
    """Tokens per second of music in the beat encoding, and where the figure comes from."""
    from composer.midi import read_midi

    files = sorted(folder.glob("*.mid"))[:200] if folder.is_dir() else []
    tokens = seconds = 0.0
    for f in files:
        score = read_midi(f)
        ids, _ = tok.encode(score)
        tokens += len(ids)
        seconds += score.duration_seconds
    if seconds > 0:
        return tokens / seconds, f"{len(files)} Bach chorales in {folder}"
    return BACH_TOKENS_PER_SECOND, "the Bach chorales (stored figure)"


def time_ours(
    model: LSTMModel,
    tok: Tokenizer,
    batch: int,
    tokens: int,
    device: torch.device,
    cache: CacheConfig | None = None,
) -> tuple[float, int]:
    """(seconds, tokens sampled in all rows) for ``tokens`` tokens per row with the carried-state sampler,
    with the neural cache mixed in when ``cache`` is given."""
    gen = torch.Generator().manual_seed(0)
    synchronize(device)
    t0 = time.perf_counter()
    raw = sample_ids(
        model, tok, batch, Length(tokens=tokens), generator=gen, device=device, close_budget=0,
        num_threads=torch.get_num_threads(), cache=cache,
    )  # fmt: skip
    synchronize(device)
    return time.perf_counter() - t0, sum(len(ids) - 1 for ids in raw.ids)


def time_naive(
    model: LSTMModel, tok: Tokenizer, batch: int, tokens: int, window: int, device: torch.device
) -> tuple[float, int]:
    """The same sampling, but the model re-reads the last ``window`` tokens for every new token."""
    g = tok.grammar()
    st = g.start(batch)
    gen = torch.Generator().manual_seed(0)
    seq = torch.full((batch, 1), tok.bos_id, dtype=torch.long, device=device)
    neg_inf = torch.tensor(-float("inf"))
    synchronize(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(tokens):
            logits, _state = model(seq[:, -window:], None)
            last = logits[:, -1].float().cpu()
            mask = st.mask()
            early = mask[:, tok.eos_id] & (mask.sum(1) > 1)  # no EOS: a fixed number of tokens
            mask[early, tok.eos_id] = False
            lg = torch.where(torch.from_numpy(mask), last, neg_inf)
            nxt = torch.multinomial(torch.softmax(lg, -1), 1, generator=gen)
            g.advance(st, nxt.numpy()[:, 0])
            seq = torch.cat([seq, nxt.to(device)], dim=1)
    synchronize(device)
    return time.perf_counter() - t0, batch * tokens


def row(
    name: str,
    threads: int,
    batch: int,
    n: int,
    fn: Callable[[int], tuple[float, int]],
    density: float,
    repeats: int,
) -> dict[str, object]:
    fn(min(n, 50))  # warm-up
    t1, _k1 = min(fn(n) for _ in range(repeats))
    t4, k4 = min(fn(4 * n) for _ in range(repeats))
    rate = k4 / t4  # tokens per second of compute, all rows together
    return {
        "sampler": name,
        "threads": threads,
        "batch": batch,
        "tokens_per_s": rate,
        "realtime": rate / density,
        "per_song": rate / density / batch,
        "n": n,
        "ratio": t4 / t1,
        "ms_per_step": 1000 * t4 / (k4 / batch),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--tokens", type=int, default=1000, help="N for our sampler (also runs 4N)")
    ap.add_argument("--naive-tokens", type=int, default=250, help="N for the naive sampler (also runs 4N)")
    ap.add_argument("--window", type=int, default=256, help="the naive sampler's window")
    ap.add_argument("--repeats", type=int, default=3, help="runs per timing of our sampler (best kept)")
    ap.add_argument("--quick", action="store_true", help="N=250 for ours, 64 for naive at batch 1 only")
    args = ap.parse_args()
    if args.quick:
        args.tokens, args.naive_tokens = 250, 64

    device = resolve_device(args.device)
    tok = tokenizer_from_config(TokenizerConfig(encoding="beat"))
    torch.manual_seed(0)
    model = LSTMModel(ModelConfig.from_preset(args.preset, tok.vocab.size)).to(device).eval()
    density, source = music_density(tok)

    results = []
    for threads in args.threads if device.type == "cpu" else [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for batch in args.batches:
            results.append(
                row("composer", threads, batch, args.tokens,
                    lambda n, b=batch: time_ours(model, tok, b, n, device), density, args.repeats)
            )  # fmt: skip
            print(_fmt(results[-1]), flush=True)
            results.append(
                row(f"composer + cache (N {CACHE.size:,})", threads, batch, args.tokens,
                    lambda n, b=batch: time_ours(model, tok, b, n, device, CACHE), density, args.repeats)
            )  # fmt: skip
            print(_fmt(results[-1]), flush=True)
        for batch in args.batches:
            if args.quick and batch > 1:
                continue
            results.append(
                row(f"naive (window {args.window})", threads, batch, args.naive_tokens,
                    lambda n, b=batch: time_naive(model, tok, b, n, args.window, device), density, 1)
            )  # fmt: skip
            print(_fmt(results[-1]), flush=True)

    cfg = model.config
    print()
    print(f"Generation speed, {_dt.date.today().isoformat()}, {cpu_name()} ({_cores()} cores visible), "
          f"device {device}, torch {torch.__version__}")  # fmt: skip
    print(f"Model: preset {args.preset} ({cfg.num_layers} x {cfg.hidden_size} LSTM, "
          f"vocabulary {cfg.vocab_size}, untrained); music: {density:.1f} beat tokens per second "
          f"of music ({source}). Best of {args.repeats} runs each.")  # fmt: skip
    print()
    print("| sampler | threads | batch | tokens/s (all songs) | x real time (all songs) "
          "| x real time per song | ms per step | t(4N)/t(N) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['sampler']} | {r['threads']} | {r['batch']} | {r['tokens_per_s']:,.0f} | "
            f"{r['realtime']:,.0f}x | {r['per_song']:,.0f}x | {r['ms_per_step']:.2f} | "
            f"{r['ratio']:.2f} (N={r['n']}) |"
        )


def _fmt(r: dict[str, object]) -> str:
    return (
        f"{r['sampler']:>20} threads {r['threads']} batch {r['batch']:>2}: "
        f"{r['tokens_per_s']:>9,.0f} tokens/s {r['realtime']:>7,.0f}x real time, t(4N)/t(N) {r['ratio']:.2f}"
    )


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


if __name__ == "__main__":
    main()
