"""Token-level baselines that give every likelihood figure its context: a unigram and a smoothed n-gram.

Both are fit on token sequences (each ``BOS ... EOS``) and score a sequence the way the LSTM is scored:
tokens 1..n-1 are predicted from their prefix inside the same piece (BOS is context, never a target).

* ``UnigramModel``: token frequencies with add-1/2 (Jeffreys) smoothing over the whole vocabulary.
* ``NGramModel``: interpolated Kneser-Ney of order ``n`` (contexts of up to n-1 tokens), with one absolute
  discount per order estimated from the count-of-counts (D = n1 / (n1 + 2 n2)). The highest order uses raw
  counts, lower orders continuation counts (in how many distinct one-token-longer contexts a pair was seen),
  and the bottom interpolates with the uniform distribution, so every token has a non-zero probability.
  Positions before a piece's start are padded with a symbol of their own.

Everything is numpy: a context of length k is identified by a dense integer id built from the id of its
(k-1)-suffix and the token before it, so each order is a sorted key array searched with ``searchsorted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from composer.errors import ConfigError

MIN_ORDER, MAX_ORDER = 2, 8


def _targets_and_contexts(seqs: Sequence[np.ndarray], order: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """For every target (token 1..n-1 of every sequence): the target ids, and an (N, order-1) matrix of
    the tokens before it, nearest first (column j is the token j+1 positions back), ``pad`` before the start.
    """
    k = order - 1
    tgts, ctxs = [], []
    for s in seqs:
        s = np.asarray(s, dtype=np.int64)
        if len(s) < 2:
            continue
        padded = np.concatenate([np.full(k, pad, dtype=np.int64), s])
        n = len(s) - 1  # targets at positions 1..len-1
        # target at position t (1-based in s) sits at index t + k in padded; j+1 back: t + k - 1 - j
        idx = np.arange(1, len(s))[:, None] + k - 1 - np.arange(k)[None, :]
        tgts.append(s[1:])
        ctxs.append(padded[idx] if k else np.zeros((n, 0), dtype=np.int64))
    if not tgts:
        return np.zeros(0, np.int64), np.zeros((0, k), np.int64)
    return np.concatenate(tgts), np.concatenate(ctxs)


@dataclass
class _Order:
    """One order (context length k) of the model."""

    ctx_keys: np.ndarray  # sorted unique keys of contexts of length k: parent id * base + token
    pair_keys: np.ndarray  # sorted unique keys: context id * base + target
    pair_counts: np.ndarray  # count (highest order) or continuation count (lower orders), per pair key
    ctx_total: np.ndarray  # per context id: sum of its pair counts
    ctx_types: np.ndarray  # per context id: number of distinct targets
    discount: float


class UnigramModel:
    """Token frequencies with add-``alpha`` smoothing over the vocabulary."""

    name = "unigram"

    def __init__(self, vocab_size: int, alpha: float = 0.5) -> None:
        self.vocab_size = vocab_size
        self.alpha = alpha
        self.logp = np.full(vocab_size, -np.log(vocab_size))

    def fit(self, seqs: Sequence[np.ndarray]) -> UnigramModel:
        tgts, _ = _targets_and_contexts(seqs, 1, self.vocab_size)
        counts = np.bincount(tgts, minlength=self.vocab_size).astype(np.float64)
        p = (counts + self.alpha) / (counts.sum() + self.alpha * self.vocab_size)
        self.logp = np.log(p)
        return self

    def token_nll(self, seq: np.ndarray) -> np.ndarray:
        """NLL (nats) of tokens 1..n-1 of ``seq``."""
        s = np.asarray(seq, dtype=np.int64)
        return -self.logp[s[1:]] if len(s) > 1 else np.zeros(0)


class NGramModel:
    """Interpolated Kneser-Ney n-gram model over token ids (see the module docstring)."""

    def __init__(self, vocab_size: int, order: int = 5) -> None:
        if not MIN_ORDER <= order <= MAX_ORDER:
            raise ConfigError(f"n-gram order must be in {MIN_ORDER}..{MAX_ORDER}, got {order}")
        self.vocab_size = vocab_size
        self.order = order
        self.pad = vocab_size  # the symbol before a piece's start
        self.base = vocab_size + 1
        self.orders: list[_Order] = []

    @property
    def name(self) -> str:
        return f"{self.order}-gram"

    def fit(self, seqs: Sequence[np.ndarray]) -> NGramModel:
        tgts, ctx = _targets_and_contexts(seqs, self.order, self.pad)
        if len(tgts) == 0:
            raise ConfigError("cannot fit an n-gram model on no tokens")
        base = self.base
        # context ids per order: ids[k] (N,) dense id of the k tokens before each target
        ids = [np.zeros(len(tgts), dtype=np.int64)]
        ctx_keys = [np.zeros(1, dtype=np.int64)]
        for k in range(1, self.order):
            keys = ids[k - 1] * base + ctx[:, k - 1]
            uniq, inv = np.unique(keys, return_inverse=True)
            ctx_keys.append(uniq)
            ids.append(inv.astype(np.int64).reshape(-1))
        # pairs per order; the highest uses raw counts, lower ones continuation counts
        top = self.order - 1
        pair_keys_hi, counts_hi = np.unique(ids[top] * base + tgts, return_counts=True)
        orders: list[_Order | None] = [None] * self.order
        orders[top] = self._make_order(ctx_keys[top], pair_keys_hi, counts_hi.astype(np.float64))
        for k in range(top - 1, -1, -1):
            # distinct (context of length k+1, target) pairs, mapped down to (context of length k, target)
            longer = np.unique(ids[k + 1] * base + tgts)
            ctx_long, tgt = np.divmod(longer, base)
            parent = ctx_keys[k + 1][ctx_long] // base  # id of the length-k suffix
            pk, pc = np.unique(parent * base + tgt, return_counts=True)
            orders[k] = self._make_order(ctx_keys[k], pk, pc.astype(np.float64))
        self.orders = [o for o in orders if o is not None]
        return self

    def _make_order(self, ctx_keys: np.ndarray, pair_keys: np.ndarray, counts: np.ndarray) -> _Order:
        ctx_of = pair_keys // self.base
        n_ctx = len(ctx_keys)
        total = np.bincount(ctx_of, weights=counts, minlength=n_ctx)
        types = np.bincount(ctx_of, minlength=n_ctx).astype(np.float64)
        n1 = float(np.count_nonzero(counts == 1))
        n2 = float(np.count_nonzero(counts == 2))
        d = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.5
        return _Order(ctx_keys, pair_keys, counts, total, types, float(min(max(d, 0.05), 0.95)))

    @staticmethod
    def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Index of each key in ``sorted_keys``, or -1 where absent."""
        if len(sorted_keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        pos = np.searchsorted(sorted_keys, keys)
        pos_c = np.minimum(pos, len(sorted_keys) - 1)
        return np.where(sorted_keys[pos_c] == keys, pos_c, -1)

    def token_nll_many(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        """NLL (nats) of tokens 1..n-1 of every sequence, concatenated in order."""
        if not self.orders:
            raise ConfigError("the n-gram model is not fitted")
        tgts, ctx = _targets_and_contexts(seqs, self.order, self.pad)
        base = self.base
        n = len(tgts)
        p = np.full(n, 1.0 / self.vocab_size)  # below the bottom order: uniform
        ctx_id = np.zeros(n, dtype=np.int64)
        known = np.ones(n, dtype=bool)
        for k, o in enumerate(self.orders):
            if k > 0:
                found = self._lookup(o.ctx_keys, np.where(known, ctx_id, 0) * base + ctx[:, k - 1])
                known &= found >= 0
                ctx_id = np.where(known, found, 0)
            pair = self._lookup(o.pair_keys, ctx_id * base + tgts)
            c = np.where(known & (pair >= 0), o.pair_counts[np.maximum(pair, 0)], 0.0)
            total = np.where(known, o.ctx_total[ctx_id], 0.0)
            types = np.where(known, o.ctx_types[ctx_id], 0.0)
            seen = total > 0
            safe = np.where(seen, total, 1.0)
            interp = np.maximum(c - o.discount, 0.0) / safe + o.discount * types / safe * p
            p = np.where(seen, interp, p)
        return -np.log(p)

    def token_nll(self, seq: np.ndarray) -> np.ndarray:
        return self.token_nll_many([seq])
