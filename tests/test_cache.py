"""The neural cache: exact when off, a large gain on a piece that repeats itself, sampling's bank agrees
with whole-piece scoring."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from composer.cache import CacheBank, CacheConfig, cached_nlls, fit_cache
from composer.errors import ConfigError
from composer.model import LSTMModel, ModelConfig


def _model(vocab: int = 40, seed: int = 0) -> LSTMModel:
    """An untrained model whose state depends strongly on recent tokens (large embeddings), so that equal
    contexts give near-equal hidden states: what training gives a real model."""
    torch.manual_seed(seed)
    model = LSTMModel(ModelConfig(vocab_size=vocab, embed_dim=32, hidden_size=32, num_layers=2)).eval()
    with torch.no_grad():
        model.embed.weight.normal_(0.0, 3.0)
    return model


def _score(model: LSTMModel, tokens: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
    with torch.no_grad():
        out, _ = model.hidden(torch.as_tensor(tokens[None, :-1], dtype=torch.long))
        lp = torch.log_softmax(model.project(out), dim=-1)[0]
        tgt = torch.as_tensor(tokens[1:], dtype=torch.long)
        return lp.gather(1, tgt[:, None])[:, 0].double().numpy(), out[0]


def _bank_nlls(model: LSTMModel, tokens: np.ndarray, cfg: CacheConfig, batch: int = 1) -> list[float]:
    """The NLL of each next token sampled token by token through a CacheBank (every row the same piece;
    the last row's)."""
    bank = CacheBank(cfg, batch=batch, hidden_size=32, vocab=40, device="cpu")
    state = model.init_state(batch)
    got = []
    with torch.no_grad():
        for t in range(len(tokens) - 1):
            h, state = model.step_hidden(torch.full((batch,), int(tokens[t]), dtype=torch.long), state)
            got.append(-float(bank.mix_logits(model.project(h), h)[-1, tokens[t + 1]]))
            bank.push(h, torch.full((batch,), int(tokens[t + 1]), dtype=torch.long))
    return got


def test_lambda_zero_is_the_plain_model_exactly() -> None:
    model = _model()
    tokens = np.random.default_rng(1).integers(3, 40, 300)
    lp, hidden = _score(model, tokens)
    nll = cached_nlls(lp, hidden, tokens, CacheConfig(theta=0.5, lam=0.0, size=64))
    assert np.array_equal(nll, -lp)


def test_cache_copies_a_verbatim_repeat() -> None:
    """An untrained model knows nothing; the cache alone predicts the second half of an A A piece."""
    model = _model()
    half = np.random.default_rng(2).integers(3, 40, 400)
    tokens = np.concatenate([[1], half, half])
    lp, hidden = _score(model, tokens)
    cfg = CacheConfig(theta=50.0, lam=0.7, size=1024)
    nll = cached_nlls(lp, hidden, tokens, cfg)
    second = slice(len(half) + 20, None)  # targets well inside the repeat
    assert nll[second].mean() < 0.5 * (-lp[second]).mean()
    # and far from the repeat (inside the first half) it cannot help much
    assert nll[50:300].mean() > 0.8 * (-lp[50:300]).mean()


def test_cache_size_bounds_what_is_seen() -> None:
    """A repeat further back than the cache's size is out of its reach."""
    model = _model()
    half = np.random.default_rng(3).integers(3, 40, 300)
    tokens = np.concatenate([[1], half, half])
    lp, hidden = _score(model, tokens)
    near = cached_nlls(lp, hidden, tokens, CacheConfig(theta=50.0, lam=0.7, size=400))
    far = cached_nlls(lp, hidden, tokens, CacheConfig(theta=50.0, lam=0.7, size=100))
    assert near[320:].mean() < far[320:].mean() - 0.5


def test_fit_finds_a_cache_on_repetitive_music_and_none_on_noise() -> None:
    model = _model()
    rng = np.random.default_rng(4)
    half = rng.integers(3, 40, 300)
    rep = np.concatenate([[1], half, half, half])
    fit = fit_cache([(*_score(model, rep), rep)], thetas=(5.0, 50.0), sizes=(256, 1024))
    assert fit.config.lam > 0 and fit.nll_cache < fit.nll_model - 0.5
    noise = rng.integers(3, 40, 900)
    fit_noise = fit_cache([(*_score(model, noise), noise)], sizes=(256,))
    assert fit_noise.nll_cache <= fit_noise.nll_model  # never worse: lam = 0 is in the grid


def test_bank_matches_whole_piece_scoring() -> None:
    """Token by token through CacheBank gives the same mixture probabilities as cached_nlls."""
    model = _model()
    tokens = np.concatenate([[1], np.tile(np.random.default_rng(5).integers(3, 40, 30), 4)])
    cfg = CacheConfig(theta=1.0, lam=0.4, size=50)
    lp, hidden = _score(model, tokens)
    want = cached_nlls(lp, hidden, tokens, cfg)
    np.testing.assert_allclose(_bank_nlls(model, tokens, cfg, batch=2), want, rtol=1e-4, atol=1e-4)


def test_min_lag_leaves_the_newest_positions_out_and_bank_and_whole_piece_agree() -> None:
    """With ``min_lag`` L only positions at least L + 1 back vote: a piece that repeats every 20 tokens is
    copied with L = 10 (the last repeat is 20 back) and not with L = 25 until two repeats are in; the
    plain model until L + 1 positions are in; token by token (CacheBank) as over the whole piece, and in a
    window cut from the piece."""
    from composer.cache import window_nlls

    model = _model()
    tokens = np.concatenate([[1], np.tile(np.random.default_rng(8).integers(3, 40, 20), 6)])
    lp, hidden = _score(model, tokens)
    base = CacheConfig(theta=20.0, lam=0.8, size=200)
    near = cached_nlls(lp, hidden, tokens, replace(base, min_lag=10))
    far = cached_nlls(lp, hidden, tokens, replace(base, min_lag=25))
    full = cached_nlls(lp, hidden, tokens, base)
    np.testing.assert_array_equal(near[:11], -lp[:11])  # nothing 11+ back yet
    assert near[25:45].mean() < 0.5 * (-lp[25:45]).mean()  # copies the previous repeat
    assert far[26:45].mean() > near[26:45].mean() + 0.5  # 20 back is too near for L = 25 ...
    assert far[60:].mean() < 0.5 * (-lp[60:]).mean()  # ... 40 back is not
    assert not np.allclose(near, full)
    for cfg in (replace(base, min_lag=10), replace(base, min_lag=25), replace(base, size=30, min_lag=10)):
        want = cached_nlls(lp, hidden, tokens, cfg)
        np.testing.assert_allclose(_bank_nlls(model, tokens, cfg), want, rtol=1e-4, atol=1e-4)
        with torch.no_grad():  # a window reaching back to the start sees what the whole piece sees
            ts = np.array([50, 90])
            win = window_nlls(model, np.stack([tokens[:50]]), tokens[ts[:1]], cfg)
        np.testing.assert_allclose(win, want[ts[:1] - 1], atol=1e-4)


@pytest.mark.parametrize(
    "bad",
    [
        {"lam": 1.5},
        {"theta": -1.0},
        {"size": 0},
        {"nope": 1},
        {"sample_lam": 1.2},
        {"sample_lam": "a"},
        {"min_lag": -1},
        {"sample_min_lag": 1.5},
    ],
)
def test_config_refuses_bad_values(bad: dict) -> None:
    with pytest.raises(ConfigError):
        CacheConfig.from_dict(bad)


def test_piece_scores_and_windows_agree_with_whole_piece_scoring() -> None:
    """A window that reaches back to the piece's start sees exactly what the whole piece sees."""
    from composer.cache import piece_scores, window_nlls

    model = _model()
    tokens = np.concatenate([[1], np.tile(np.random.default_rng(6).integers(3, 40, 25), 6)])
    cfg = CacheConfig(theta=20.0, lam=0.5, size=40)
    with torch.no_grad():
        lp, hidden = piece_scores(model, tokens, chunk=16)
        want_lp, want_h = _score(model, tokens)
        np.testing.assert_allclose(lp, want_lp, atol=1e-5)
        full = cached_nlls(lp, hidden, tokens, cfg)
        ts = np.array([30, 77, 120])
        windows = np.stack([tokens[:t] for t in ts[:1]])
        got = window_nlls(model, windows, tokens[ts[:1]], cfg)
        np.testing.assert_allclose(got, full[ts[:1] - 1], atol=1e-4)
        # a window cut 20 tokens back: the plain model part from a fresh state, the cache over 19 entries
        cut = window_nlls(model, np.stack([tokens[t - 20 : t] for t in ts]), tokens[ts], cfg)
        plain = window_nlls(model, np.stack([tokens[t - 20 : t] for t in ts]), tokens[ts], None)
        assert np.all(np.isfinite(cut)) and not np.allclose(cut, plain)


def test_fit_grid_equals_one_cache_at_a_time() -> None:
    from composer.cache import _log_cache, _log_cache_grid

    model = _model()
    tokens = np.concatenate([[1], np.tile(np.random.default_rng(7).integers(3, 40, 60), 12)])
    _, hidden = _score(model, tokens)
    nxt = torch.as_tensor(tokens[1:], dtype=torch.long)
    grid = _log_cache_grid(hidden, nxt, (1.0, 20.0), (50, 300), block=128)
    for (th, n), got in grid.items():
        want = _log_cache(hidden, nxt, th, n, block=97)
        assert torch.allclose(got, want, atol=1e-4, equal_nan=True)
