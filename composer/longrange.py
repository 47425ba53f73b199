"""Long-range structure: does the model use context older than d tokens?

For targets far into each piece (position >= max(distances), and >= the training window when
``composer.evaluate`` asks) the NLL with the full history is set against the NLL when the model sees only
the d tokens before the target from a fresh zero state. ``gain = reset - full`` (nats/token) > 0 means the
model uses context older than d tokens. A reset whose window reaches the start of the piece *is* the full
history, by definition, so its gain is exactly zero.

With a neural cache (``composer.cache``) the same targets are scored again with the cache mixed in: the
full history with the cache over the whole past, the reset with the cache over the d-token window only, so
``gain with the cache`` is what the model and its cache together take from beyond d tokens. Beside both
stands the **copyable share** (``composer.form.copyable_mask``): the share of the targets that copying the
token after the latest earlier occurrence of the same context, at least d tokens back, predicts -- what a
perfect copier of old material could give.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from composer.cache import CacheConfig, window_scores
from composer.conditions import MAX_CONDITIONS
from composer.errors import ConfigError
from composer.form import copyable_mask

DEFAULT_DISTANCES = (64, 256, 1024)
#: Long-range targets per piece, and in all (the same targets for every distance). Each bucket costs
#: targets x distance LSTM steps.
TARGETS_PER_PIECE = 256
MAX_TARGETS = 1024
#: Window tokens per forward pass when scoring resets (rows x distance).
RESET_BATCH_TOKENS = 16384
#: Tokens of context the copier matches (``composer.form.copyable_mask``).
COPY_CONTEXT = 12

Log = Callable[[str], None]


def _quiet(msg: str) -> None:
    pass


@dataclass
class LongRangeBucket:
    distance: int
    targets: int
    pieces: int
    nll_full: float  # nats/token with the whole history
    nll_reset: float  # nats/token seeing only the `distance` tokens before each target (fresh state)
    copyable: float = float("nan")  # share of the targets a copier from >= `distance` back predicts
    nll_full_cache: float | None = None  # the two NLLs with the cache mixed in (None: no cache)
    nll_reset_cache: float | None = None

    @property
    def gain(self) -> float:
        return self.nll_reset - self.nll_full if self.targets else float("nan")

    @property
    def gain_cache(self) -> float | None:
        if self.nll_full_cache is None or self.nll_reset_cache is None:
            return None
        return self.nll_reset_cache - self.nll_full_cache if self.targets else float("nan")

    def to_dict(self) -> dict[str, Any]:
        cache = None
        if self.nll_full_cache is not None:
            cache = {
                "gain": self.gain_cache,
                "nll_full": self.nll_full_cache,
                "nll_reset": self.nll_reset_cache,
            }
        return {
            "distance": self.distance,
            "gain": self.gain,
            "targets": self.targets,
            "pieces": self.pieces,
            "nll_full": self.nll_full,
            "nll_reset": self.nll_reset,
            "copyable": self.copyable,
            "cache": cache,
        }


@dataclass
class LongRange:
    min_position: int
    targets_per_piece: int
    eligible_pieces: int
    buckets: list[LongRangeBucket]
    cache: CacheConfig | None = None
    copy_context: int = COPY_CONTEXT

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_position": self.min_position,
            "targets_per_piece": self.targets_per_piece,
            "eligible_pieces": self.eligible_pieces,
            "copy_context": self.copy_context,
            "cache": None if self.cache is None else self.cache.to_dict(),
            "buckets": [b.to_dict() for b in self.buckets],
        }


def _mean(total: float, n: int) -> float:
    return total / n if n else float("nan")


def reset_nlls(
    model: torch.nn.Module,
    ids: np.ndarray,
    positions: np.ndarray,
    distance: int,
    full: np.ndarray,
    batch_tokens: int = RESET_BATCH_TOKENS,
    cache: CacheConfig | None = None,
    full_cache: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """NLL of ``ids[t]`` for each t in ``positions`` seeing only ``ids[t-distance:t]`` from a zero state:
    the model's alone, and (with an enabled ``cache``; else None) with the cache over the window's own
    tokens (``composer.cache.window_scores``), both from one pass over the windows.

    Where the window would reach the piece's start (t <= distance) nothing is cut: the value is the full
    history's exactly, ``full[t-1]`` (the piece's ``composer.nll.piece_nlls``) and ``full_cache[t-1]``
    (its ``composer.cache.cached_nlls``, needed with ``cache``).
    """
    ids = np.asarray(ids, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    if cache is not None and not cache.enabled:
        cache = None
    if cache is not None and full_cache is None:
        raise ConfigError("reset_nlls with a cache needs full_cache, the piece's cached NLLs")
    out = full[positions - 1].astype(np.float64).copy()
    out_c = None if full_cache is None or cache is None else full_cache[positions - 1].astype(np.float64)
    cut = np.flatnonzero(positions > distance)
    rows = max(1, batch_tokens // max(distance, 1))
    # A conditioned model's cut history keeps the piece's conditions (the tokens after its BOS): they are
    # what the piece was asked to be, not history; the state is zero otherwise.
    fresh = getattr(model, "fresh_state", None)
    device = next(model.parameters()).device
    context = torch.as_tensor(ids[: min(len(ids), 1 + MAX_CONDITIONS)], dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        for k in range(0, len(cut), rows):
            sel = cut[k : k + rows]
            t = positions[sel]
            windows = ids[t[:, None] - distance + np.arange(distance)[None, :]]
            with torch.inference_mode():
                state = fresh(len(sel), context) if fresh is not None else None
                plain, cached = window_scores(model, windows, ids[t], cache, state)
            out[sel] = plain
            if out_c is not None and cached is not None:
                out_c[sel] = cached
    finally:
        if was_training:
            model.train()
    return out, out_c


def long_range_positions(length: int, min_position: int, k: int) -> np.ndarray:
    """Up to ``k`` target positions spread evenly over [min_position, length-1] (deterministic)."""
    lo, hi = max(min_position, 1), length - 1
    if hi < lo or k < 1:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.rint(np.linspace(lo, hi, min(k, hi - lo + 1))).astype(np.int64))


def long_range(
    model: torch.nn.Module,
    pieces: Sequence[np.ndarray],
    full: Sequence[np.ndarray],
    distances: Sequence[int] = DEFAULT_DISTANCES,
    *,
    min_position: int | None = None,
    targets_per_piece: int = TARGETS_PER_PIECE,
    max_targets: int = MAX_TARGETS,
    cache: CacheConfig | None = None,
    full_cache: Sequence[np.ndarray] | None = None,
    log: Log = _quiet,
) -> LongRange:
    """Full-history NLL against reset-at-distance NLL on the same targets, per distance, and the share of
    those targets a copier from at least that far back predicts.

    Targets: positions >= ``min_position`` (default ``max(distances)``), at most ``targets_per_piece``
    per piece and about ``max_targets`` in all, spread evenly; every bucket uses the same targets.
    ``full`` is ``composer.nll.piece_nlls(model, pieces)``. Costs about targets x distance LSTM steps per
    bucket; with ``cache`` (an enabled ``CacheConfig``; ``full_cache`` is then each piece's
    ``composer.cache.cached_nlls``) the same pass also gives the buckets the NLLs with the cache.
    """
    distances = sorted({int(d) for d in distances})
    if not distances or distances[0] < 1:
        raise ConfigError(f"distances must be positive token counts, got {list(distances)}")
    if cache is not None and not cache.enabled:
        cache = None
    if cache is not None and full_cache is None:
        raise ConfigError("long_range with a cache needs full_cache, the pieces' cached NLLs")
    if min_position is None:
        min_position = max(distances)
    eligible = [i for i, p in enumerate(pieces) if len(p) - 1 >= max(min_position, 1)]
    per_piece = targets_per_piece
    if eligible:
        per_piece = max(1, min(targets_per_piece, math.ceil(max_targets / len(eligible))))
    chosen = {i: long_range_positions(len(pieces[i]), min_position, per_piece) for i in eligible}
    buckets = []
    for d in distances:
        full_sum = reset_sum = full_c = reset_c = 0.0
        n = copied = 0
        for i, pos in chosen.items():
            if not len(pos):
                continue
            fc = None if full_cache is None else full_cache[i]
            r, rc = reset_nlls(model, pieces[i], pos, d, full[i], cache=cache, full_cache=fc)
            full_sum += float(full[i][pos - 1].sum())
            reset_sum += float(r.sum())
            n += len(pos)
            copied += int(copyable_mask(pieces[i][: int(pos[-1]) + 1], d, COPY_CONTEXT)[pos].sum())
            if fc is not None and rc is not None:
                full_c += float(fc[pos - 1].sum())
                reset_c += float(rc.sum())
        log(f"long range: distance {d}, {n} targets")
        buckets.append(
            LongRangeBucket(
                distance=d,
                targets=n,
                pieces=len(eligible),
                nll_full=_mean(full_sum, n),
                nll_reset=_mean(reset_sum, n),
                copyable=_mean(float(copied), n),
                nll_full_cache=None if cache is None else _mean(full_c, n),
                nll_reset_cache=None if cache is None else _mean(reset_c, n),
            )
        )
    return LongRange(min_position, per_piece, len(eligible), buckets, cache)
