"""A neural cache over the piece's own past (Grave, Joulin & Usunier 2017, "Improving Neural Language
Models with a Continuous Cache").

Music repeats itself: a chorus, a returning theme, a written-out repeat. An LSTM's state blurs what it
heard thousands of tokens ago; the cache keeps it exactly. Every position ``i`` of the piece leaves a pair
(its top-layer hidden state ``h_i``, the token that followed it ``x_{i+1}``). Predicting the token after
position ``t``, the cache votes for what followed the earlier positions whose state looked like this one::

    p_cache(w) ~ sum over i in [t - size, t - 1] with x_{i+1} = w  of  exp(theta * h_t . h_i)
    p(w)       = (1 - lam) * p_lstm(w) + lam * p_cache(w)

With no earlier position (the first token of a piece) ``p`` is ``p_lstm``. With ``min_lag`` = L > 0 only
positions at least L + 1 back vote (``i <= t - 1 - L``; none yet: ``p_lstm``): sampling at a high weight,
a cache that may copy the last bar writes one or two bars over and over, while one that may copy only
from a few bars back writes phrases that return, as music's do (``composer.formfit``). The cost per
token is bounded by ``size`` dot products. ``theta``, ``lam`` and ``size`` are fitted on the validation
split (``fit_cache``; ``min_lag`` 0) and travel in the checkpoint; ``lam = 0`` is the plain model exactly.

Two users: ``cached_nlls`` scores whole pieces (evaluation, fitting), ``CacheBank`` keeps one ring buffer
per batch row for token-by-token sampling (the grammar masks apply after mixing).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from composer.configs import check_range, known_fields

#: Targets scored per block when scoring a piece (bounds memory at block x (block + size) floats).
BLOCK = 512
#: Search grids for ``fit_cache``. theta scales a dot product of two tanh-bounded hidden vectors.
THETAS = (0.03, 0.1, 0.3, 1.0, 3.0)
LAMBDAS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SIZES = (512, 2048, 4096, 16384)
#: Validation targets ``fit_on_pieces`` scores at most (its cost grows with targets x max(SIZES)).
FIT_TOKENS = 50_000
MAX_SIZE = 1 << 16


@dataclass(frozen=True)
class CacheConfig:
    """The cache's numbers; ``lam = 0`` turns it off. ``min_lag``: the most recent positions left out of
    the vote (0: none). ``sample_lam`` and ``sample_min_lag``: the weight and lag sampling uses instead
    (fitted so that songs repeat bars as often as the music does, without loops and without losing its
    texture: ``composer.formfit``); None samples with ``lam`` and ``min_lag``."""

    theta: float = 0.3
    lam: float = 0.0
    size: int = 2048
    sample_lam: float | None = None
    min_lag: int = 0
    sample_min_lag: int | None = None

    def __post_init__(self) -> None:
        check_range("cache theta", self.theta, 0.0, 100.0, (int, float))
        check_range("cache lambda", self.lam, 0.0, 1.0, (int, float))
        check_range("cache size", self.size, 1, MAX_SIZE)
        object.__setattr__(self, "theta", float(self.theta))
        object.__setattr__(self, "lam", float(self.lam))
        if self.sample_lam is not None:
            check_range("cache sampling lambda", self.sample_lam, 0.0, 1.0, (int, float))
            object.__setattr__(self, "sample_lam", float(self.sample_lam))
        check_range("cache min_lag", self.min_lag, 0, MAX_SIZE)
        if self.sample_min_lag is not None:
            check_range("cache sampling min_lag", self.sample_min_lag, 0, MAX_SIZE)

    @property
    def enabled(self) -> bool:
        return self.lam > 0.0

    @property
    def sampling(self) -> CacheConfig:
        """The cache as generation uses it: ``lam`` and ``min_lag`` replaced by ``sample_lam`` and
        ``sample_min_lag`` where they were fitted."""
        if self.sample_lam is None and self.sample_min_lag is None:
            return self
        return CacheConfig(
            theta=self.theta,
            lam=self.lam if self.sample_lam is None else self.sample_lam,
            size=self.size,
            min_lag=self.min_lag if self.sample_min_lag is None else self.sample_min_lag,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CacheConfig:
        return cls(**known_fields(cls, data, "cache"))


def _log_cache(
    hidden: torch.Tensor, nxt: torch.Tensor, theta: float, size: int, block: int = BLOCK, min_lag: int = 0
) -> torch.Tensor:
    """log p_cache(x_{t+1}) for every position t of one piece; -inf where no earlier position matches,
    NaN where there is no earlier position at all (t = 0).

    ``hidden`` (T, H): state after each input token; ``nxt`` (T,): the token that followed each.
    """
    T = hidden.shape[0]
    out = torch.empty(T, dtype=torch.float64)
    for s in range(0, T, block):
        e = min(s + block, T)
        k0 = max(0, s - size)
        scores = theta * (hidden[s:e] @ hidden[k0:e].T).double()  # (targets, keys)
        t_idx = torch.arange(s, e)[:, None]
        i_idx = torch.arange(k0, e)[None, :]
        valid = (i_idx < t_idx - min_lag) & (i_idx >= t_idx - size)
        match = valid & (nxt[k0:e][None, :] == nxt[s:e][:, None])
        neg = torch.tensor(-math.inf, dtype=torch.float64)
        lse_all = torch.logsumexp(torch.where(valid, scores, neg), dim=1)
        lse_match = torch.logsumexp(torch.where(match, scores, neg), dim=1)
        out[s:e] = lse_match - lse_all  # -inf - -inf = NaN where nothing is valid (t = 0)
    return out


def mix(log_p_model: torch.Tensor, log_p_cache: torch.Tensor, lam: float) -> torch.Tensor:
    """log((1 - lam) p_model + lam p_cache), elementwise; the model alone where the cache is empty (NaN)."""
    if lam <= 0.0:
        return log_p_model.double()
    lpm = log_p_model.double()
    if lam >= 1.0:
        mixed = log_p_cache.clone()
    else:
        mixed = torch.logaddexp(lpm + math.log1p(-lam), log_p_cache + math.log(lam))
    return torch.where(torch.isnan(log_p_cache), lpm, mixed)


def cached_nlls(
    log_p_model: np.ndarray | torch.Tensor,
    hidden: torch.Tensor,
    tokens: np.ndarray | torch.Tensor,
    config: CacheConfig,
) -> np.ndarray:
    """NLL (nats) of tokens[1:] under the cache mixture, given the model's log-probability of each.

    ``log_p_model`` (T,): log p_lstm(tokens[t+1]); ``hidden`` (T, H): the top-layer state after
    tokens[t]; ``tokens`` (T + 1,) the piece. Equals ``-log_p_model`` exactly when ``lam`` is 0.
    """
    lpm = torch.as_tensor(np.asarray(log_p_model), dtype=torch.float64)
    if not config.enabled:
        return (-lpm).numpy()
    nxt = torch.as_tensor(np.asarray(tokens)[1:], dtype=torch.long)
    lpc = _log_cache(hidden.float().cpu(), nxt, config.theta, config.size, min_lag=config.min_lag)
    return (-mix(lpm, lpc, config.lam)).numpy()


def _log_cache_grid(
    hidden: torch.Tensor,
    nxt: torch.Tensor,
    thetas: tuple[float, ...],
    sizes: tuple[int, ...],
    block: int = BLOCK,
) -> dict[tuple[float, int], torch.Tensor]:
    """``_log_cache`` for every (theta, size) at once: the dot products are computed once per block."""
    T = hidden.shape[0]
    big = max(sizes)
    out = {(th, n): torch.empty(T, dtype=torch.float64) for th in thetas for n in sizes}
    neg = torch.tensor(-math.inf)
    for s in range(0, T, block):
        e = min(s + block, T)
        k0 = max(0, s - big)
        dots = hidden[s:e] @ hidden[k0:e].T  # (targets, keys), float32
        lag = torch.arange(s, e)[:, None] - torch.arange(k0, e)[None, :]  # t - i
        match = nxt[k0:e][None, :] == nxt[s:e][:, None]
        for n in sizes:
            valid = (lag >= 1) & (lag <= n)
            hit = valid & match
            for th in thetas:
                sc = th * dots
                lse_all = torch.logsumexp(torch.where(valid, sc, neg), dim=1)
                lse_hit = torch.logsumexp(torch.where(hit, sc, neg), dim=1)
                out[(th, n)][s:e] = (lse_hit - lse_all).double()
    return out


@dataclass
class CacheFit:
    config: CacheConfig
    nll_model: float  # nats/token without the cache on the fitting targets
    nll_cache: float  # with the fitted cache
    targets: int

    def to_dict(self) -> dict[str, Any]:
        return {"nll_model": self.nll_model, "nll_cache": self.nll_cache, "targets": self.targets}


def fit_cache(
    pieces: list[tuple[np.ndarray, torch.Tensor, np.ndarray]],
    thetas: tuple[float, ...] = THETAS,
    lambdas: tuple[float, ...] = LAMBDAS,
    sizes: tuple[int, ...] = SIZES,
) -> CacheFit:
    """Grid search for the (theta, lam, size) with the lowest NLL per token on ``pieces``.

    Each piece is ``(log_p_model (T,), hidden (T, H), tokens (T + 1,))`` as for ``cached_nlls``. lam = 0
    (no cache) is always in the grid, so the fit is never worse than the plain model on these pieces.
    """
    lams = sorted({0.0, *lambdas})
    total = sum(len(p[0]) for p in pieces)
    base = float(sum(-np.sum(p[0]) for p in pieces))
    sums: dict[tuple[float, int, float], float] = {}
    for lp, h, tk in pieces:
        if len(lp) == 0:
            continue
        lpm = torch.as_tensor(np.asarray(lp), dtype=torch.float64)
        nxt = torch.as_tensor(np.asarray(tk)[1:], dtype=torch.long)
        grid = _log_cache_grid(h.float().cpu(), nxt, thetas, sizes)
        for (th, n), lpc in grid.items():
            for lam in lams[1:]:
                key = (th, n, lam)
                sums[key] = sums.get(key, 0.0) + float(-mix(lpm, lpc, lam).sum())
    best_nll, best = base, CacheConfig(lam=0.0, size=max(sizes), theta=thetas[0])
    for (th, n, lam), nll in sorted(sums.items()):
        if nll < best_nll:
            best_nll, best = nll, CacheConfig(theta=th, lam=lam, size=n)
    return CacheFit(best, base / max(total, 1), best_nll / max(total, 1), total)


def fit_on_pieces(model: Any, pieces: list[np.ndarray], max_tokens: int = FIT_TOKENS) -> CacheFit:
    """Score ``pieces`` (token arrays, held out from training) with ``model`` and fit the cache on them,
    at most ``max_tokens`` targets (whole pieces first, the last one cut)."""
    was_training = model.training
    model.eval()
    scored = []
    budget = max_tokens
    try:
        with torch.inference_mode():
            for ids in pieces:
                ids = np.asarray(ids, dtype=np.int64)[: budget + 1]
                if len(ids) < 2 or budget <= 0:
                    break
                lp, h = piece_scores(model, ids)
                scored.append((lp, h, ids))
                budget -= len(ids) - 1
    finally:
        if was_training:
            model.train()
    return fit_cache(scored)


class CacheBank:
    """One cache per batch row for sampling: a ring buffer of the last ``size`` (hidden, next token) pairs.

    ``mix_logits(logits, hidden)`` turns the model's logits for the next token into log-probabilities of
    the mixture (rows with an empty cache keep the model's); ``push(hidden, tokens)`` records the pair
    once the next token is chosen. All rows start together (one piece each), so they share the write slot.
    """

    def __init__(self, config: CacheConfig, batch: int, hidden_size: int, vocab: int, device: Any) -> None:
        self.config = config
        self.vocab = vocab
        n = config.size
        self.keys = torch.zeros(batch, n, hidden_size, device=device)  # (B, N, H)
        self.values = torch.zeros(batch, n, dtype=torch.long, device=device)  # (B, N)
        self.filled = torch.zeros(batch, dtype=torch.long, device=device)  # entries in use per row
        self.head = 0  # next slot to write (all rows advance together)

    def mix_logits(self, logits: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """(B, V) logits and (B, H) hidden -> (B, V) float log-probabilities of the mixture."""
        log_p = torch.log_softmax(logits.float(), dim=-1)
        if not self.config.enabled or int(self.filled.max()) <= self.config.min_lag:
            return log_p
        # every row fills at the same rate, so only the first max(filled) slots are scored
        n = min(self.config.size, int(self.filled.max()))
        keys, values = self.keys[:, :n], self.values[:, :n]
        scores = self.config.theta * torch.einsum("bnh,bh->bn", keys, hidden.float())  # (B, n)
        slot = torch.arange(n, device=scores.device)
        slot_used = slot[None, :] < self.filled[:, None]
        lag = self.config.min_lag
        if lag > 0:  # the newest ``lag`` entries do not vote (age 0 = the last one pushed)
            slot_used &= ((self.head - 1 - slot) % self.config.size >= lag)[None, :]
        scores = scores.masked_fill(~slot_used, -math.inf)
        empty = self.filled <= lag
        w = torch.softmax(scores.masked_fill(empty[:, None], 0.0), dim=-1)  # (B, N)
        p_cache = torch.zeros_like(log_p).scatter_add_(1, values, w)  # (B, V)
        lam = self.config.lam
        mixed = torch.log((1 - lam) * log_p.exp() + lam * p_cache)
        return torch.where(empty[:, None], log_p, mixed)

    def push(self, hidden: torch.Tensor, tokens: torch.Tensor) -> None:
        """Record (hidden (B, H), the token that followed it (B,)) for every row."""
        n = self.config.size
        self.keys[:, self.head] = hidden.float()
        self.values[:, self.head] = tokens.long()
        self.head = (self.head + 1) % n
        self.filled = torch.clamp(self.filled + 1, max=n)

    def push_sequence(self, hidden: torch.Tensor, tokens: torch.Tensor) -> None:
        """A primer: hidden (T, H) after each of its tokens, ``tokens`` (T,) the token after each; the same
        for every row."""
        for t in range(max(0, hidden.shape[0] - self.config.size), hidden.shape[0]):
            self.push(hidden[t].expand(self.keys.shape[0], -1), tokens[t].expand(self.keys.shape[0]))


def piece_scores(model: Any, ids: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, torch.Tensor]:
    """One piece through the model from a fresh state: (log p(ids[t+1]) for every t, hidden (T, H)).

    ``model`` is an ``LSTMModel`` (``hidden`` + ``project``); run under ``torch.inference_mode``.
    """
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)[None]  # (1, T + 1)
    state = None
    lps, hs = [], []
    for s in range(0, x.shape[1] - 1, chunk):
        e = min(s + chunk, x.shape[1] - 1)
        out, state = model.hidden(x[:, s:e], state)  # (1, t, H)
        lp = torch.log_softmax(model.project(out).float(), dim=-1)[0]  # (t, V)
        lps.append(lp.gather(1, x[0, s + 1 : e + 1, None])[:, 0].double().cpu())
        hs.append(out[0].float().cpu())
    if not lps:
        return np.zeros(0), torch.zeros(0, model.config.hidden_size)
    return torch.cat(lps).numpy(), torch.cat(hs)


def window_scores(
    model: Any,
    windows: np.ndarray,
    targets: np.ndarray,
    config: CacheConfig | None,
    state: Any = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """NLLs of ``targets[r]`` right after ``windows[r]`` (R, L) read from a fresh state (``state``: the
    model's ``fresh_state``, which keeps the piece's conditions; None: zero), in one pass: the model's
    alone, and with the cache (None if ``config`` is off) over the window's own L positions only, so that
    a history cut L tokens back cuts the cache there too."""
    device = next(model.parameters()).device
    x = torch.as_tensor(windows, dtype=torch.long, device=device)  # (R, L)
    out, _ = model.hidden(x, state)  # (R, L, H)
    lp = torch.log_softmax(model.project(out[:, -1]).float(), dim=-1)  # (R, V): predicts the target
    t = torch.as_tensor(targets, dtype=torch.long, device=device)
    lpm = lp.gather(1, t[:, None])[:, 0].double().cpu()
    if config is None or not config.enabled:
        return (-lpm).numpy(), None
    if windows.shape[1] < 2:
        return (-lpm).numpy(), (-lpm).numpy()
    keys = out[:, :-1].float()  # (R, L-1, H): position i predicted windows[:, i + 1]
    n = min(config.size, keys.shape[1]) - config.min_lag  # the entries that vote
    if n <= 0:
        return (-lpm).numpy(), (-lpm).numpy()
    end = keys.shape[1] - config.min_lag
    keys, values = keys[:, end - n : end], x[:, 1:][:, end - n : end]  # positions t-size .. t-1-min_lag
    scores = config.theta * torch.einsum("rnh,rh->rn", keys, out[:, -1].float()).double()
    match = values == t[:, None]
    lse_all = torch.logsumexp(scores, dim=1)
    lse_match = torch.logsumexp(scores.masked_fill(~match, -math.inf), dim=1)
    return (-lpm).numpy(), (-mix(lpm, (lse_match - lse_all).cpu(), config.lam)).numpy()


def window_nlls(
    model: Any, windows: np.ndarray, targets: np.ndarray, config: CacheConfig | None
) -> np.ndarray:
    """``window_scores``' NLLs with the cache where ``config`` is on, the model's alone otherwise."""
    plain, cached = window_scores(model, windows, targets, config)
    return plain if cached is None else cached
