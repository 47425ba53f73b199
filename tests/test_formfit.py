"""The cache's sampling weight: fitted on repeated bars, stored in the checkpoint, used by generate."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from composer.cache import CacheConfig
from composer.checkpoint import load_checkpoint, save_cache
from composer.corpus import Corpus
from composer.form import bar_patterns, first_bars
from composer.formfit import (
    LAG_BARS,
    SAMPLE_LAMBDAS,
    TEXTURE_TOLERANCE,
    closest,
    crossing,
    fit_checkpoint_sampling,
    fit_sample_lambda,
    near_enough,
    search_weights,
)
from composer.midi import Score
from composer.sample import _cache_config
from composer.train import train
from tests.helpers_train import build_tiny_corpus, tiny_config

torch.set_num_threads(1)


def test_sampling_config_replaces_lambda_and_lag_only() -> None:
    c = CacheConfig(theta=1.0, lam=0.4, size=512, sample_lam=0.9, sample_min_lag=200)
    assert c.sampling == CacheConfig(theta=1.0, lam=0.9, size=512, min_lag=200)
    assert CacheConfig.from_dict(c.to_dict()) == c
    assert CacheConfig(lam=0.4, sample_lam=0.9).sampling == CacheConfig(lam=0.9)  # fitted before lags
    old = CacheConfig.from_dict({"theta": 1.0, "lam": 0.4, "size": 512})  # checkpoints before sample_lam
    assert old.sample_lam is None and old.sample_min_lag is None and old.sampling is old


def test_the_fit_does_not_trade_the_texture_for_repeats() -> None:
    """Songs at 0.9 and 0.95 repeat like the music but lose its texture (overlap far below the songs' at
    the likelihood weight): the closest weight that keeps it is chosen, and no crossing is tried past it."""
    tried = [
        {"lam": 0.5, "share": 0.02, "loops": 0, "overlap": 0.85},
        {"lam": 0.8, "share": 0.18, "loops": 0, "overlap": 0.82},
        {"lam": 0.9, "share": 0.40, "loops": 0, "overlap": 0.70},
        {"lam": 0.95, "share": 0.50, "loops": 0, "overlap": 0.52},
    ]
    floor = 0.86 - TEXTURE_TOLERANCE  # songs without the cache: 0.86
    assert closest(tried, 0.45)["lam"] == 0.95  # repeats alone would choose this
    assert closest(tried, 0.45, floor)["lam"] == 0.8
    assert crossing(tried, 0.30) == 0.855 and crossing(tried, 0.30, floor) is None
    assert not near_enough(closest(tried, 0.45, floor), 0.45, floor)  # 18% against 45%: try a lag
    assert near_enough(tried[2], 0.45, None) and not near_enough(tried[2], 0.45, floor)
    # every weight loses it: the smallest
    assert closest([{**t, "overlap": 0.1} for t in tried], 0.45, floor)["lam"] == 0.5


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Corpus]:
    tmp = tmp_path_factory.mktemp("formfit")
    corpus = build_tiny_corpus(tmp, n=12, bars=24)
    cfg = tiny_config(max_steps=30, eval_every=30, fit_cache=False)
    train(corpus, tmp / "run", cfg, progress=False, plot=False)
    return tmp / "run" / "best", Corpus.open(corpus)


def test_first_bars_keeps_the_notes_of_the_first_bars(run: tuple[Path, Corpus]) -> None:
    _, corpus = run
    score = corpus.tokenizer.decode(corpus.piece_tokens(corpus.pieces("train")[0]))
    assert len(bar_patterns(score)) == 24
    cut = first_bars(score, 5)
    assert len(bar_patterns(cut)) == 5
    assert bar_patterns(cut) == bar_patterns(score)[:5]
    assert first_bars(score, 100) is score


def test_sampling_weight_is_fitted_stored_and_used(run: tuple[Path, Corpus]) -> None:
    best, corpus = run
    reference = [corpus.tokenizer.decode(corpus.piece_tokens(p)) for p in corpus.pieces("val")]
    # no cache: nothing to fit
    assert fit_checkpoint_sampling(best, reference) is None
    save_cache(best, CacheConfig(theta=1.0, lam=0.5, size=256), {"targets": 1})
    fit = fit_sample_lambda(load_checkpoint(best), reference, songs=2)
    assert fit is not None
    grid = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98]
    for w in {t["min_lag"] for t in fit.tried}:  # each search: every weight from lam up, and one between
        lams = [t["lam"] for t in fit.tried if t["min_lag"] == w]
        assert set(grid) <= set(lams) and len(lams) <= len(grid) + 1 and lams == sorted(lams)
    assert fit.sample_lam in [t["lam"] for t in fit.tried]
    assert fit.bars == 32  # the median piece has 24 bars: songs get the least, 32 (32 to 48)
    assert all(0.0 <= t["overlap"] <= 1.0 for t in fit.tried)
    assert fit.plain is not None and fit.floor == pytest.approx(fit.plain - TEXTURE_TOLERANCE)
    chosen = next(t for t in fit.tried if t["lam"] == fit.sample_lam and t["min_lag"] == fit.min_lag)
    lags = list(dict.fromkeys(t["min_lag"] for t in fit.tried))  # in the order searched
    assert lags[0] == 0 and len(lags) <= 1 + len(LAG_BARS)
    assert lags == sorted(lags[:1]) + sorted(lags[1:], reverse=True)  # 4 bars back, then 1
    ref, floor = fit.reference_share, fit.floor
    for i in range(1, len(lags)):  # each later search only where none before got near
        before = [t for t in fit.tried if t["min_lag"] in lags[:i]]
        assert not near_enough(closest(before, ref, floor), ref, floor)
    if len(lags) == 1:
        assert near_enough(chosen, fit.reference_share, fit.floor)
    assert 0.0 <= fit.reference_share <= 1.0
    stored = fit_checkpoint_sampling(best, reference)
    assert stored is not None
    ckpt = load_checkpoint(best)
    assert ckpt.cache is not None and ckpt.cache.lam == 0.5 and ckpt.cache.sample_lam == stored.sample_lam
    assert ckpt.cache.sample_min_lag == stored.min_lag and ckpt.cache.min_lag == 0  # likelihood: no lag
    assert ckpt.meta["cache"]["fit"]["targets"] == 1  # the likelihood fit's record is kept
    assert ckpt.meta["cache"]["fit"]["sampling"]["sample_lam"] == stored.sample_lam
    used = _cache_config(ckpt, None)
    assert used is not None and used.lam == stored.sample_lam and used.min_lag == stored.min_lag
    # pieces without notes give nothing to compare
    assert fit_sample_lambda(ckpt, [Score()]) is None


def test_music_without_repeats_keeps_the_likelihood_weight(run: tuple[Path, Corpus]) -> None:
    best, corpus = run
    save_cache(best, CacheConfig(theta=1.0, lam=0.3, size=256), {"targets": 1})
    score = corpus.tokenizer.decode(corpus.piece_tokens(corpus.pieces("val")[0]))
    # one bar per piece: nothing can repeat from 4 bars back
    fit = fit_sample_lambda(load_checkpoint(best), [first_bars(score, 1)] * 3)
    assert fit is not None and fit.sample_lam == 0.3 and fit.tried == [] and fit.reference_share == 0.0


def test_crossing_interpolates_between_the_weights_that_bracket_the_reference() -> None:
    tried = [
        {"lam": 0.6, "share": 0.05, "loops": 0},
        {"lam": 0.8, "share": 0.25, "loops": 0},
        {"lam": 0.9, "share": 0.55, "loops": 0},
    ]
    assert crossing(tried, 0.40) == 0.85  # a third of the way from 0.25 to 0.55
    assert crossing(tried, 0.15) == 0.7
    assert crossing(tried, 0.60) is None  # beyond every weight tried
    assert crossing(tried, 0.01) is None
    looped = [tried[0], {**tried[1], "loops": 2}, tried[2]]
    assert crossing(looped, 0.15) is None  # never between weights whose songs loop


def _fake_attempt(
    shares: dict[float, float], calls: list[float], loops_above: float = 2.0
) -> Callable[[float], dict[str, Any]]:
    def attempt(lam: float) -> dict[str, Any]:
        calls.append(lam)
        share = shares.get(lam, lam / 4)  # repeats grow with the weight
        return {"lam": lam, "share": share, "loops": int(lam > loops_above)}

    return attempt


def test_weights_go_up_from_lam_when_its_songs_repeat_too_little() -> None:
    calls: list[float] = []
    shares = {0.5: 0.05, 0.6: 0.08, 0.7: 0.12, 0.8: 0.2, 0.825: 0.24, 0.85: 0.3, 0.9: 0.4, 0.95: 0.5}
    shares[0.98] = 0.6
    tried = search_weights(_fake_attempt(shares, calls), 0.5, SAMPLE_LAMBDAS, 0.25)
    assert calls[:8] == [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98]
    assert calls[8:] == [0.825]  # between 0.8 (20%) and 0.85 (30%)
    assert [t["lam"] for t in tried] == sorted(calls)
    assert closest(tried, 0.25)["lam"] == 0.825


def test_weights_go_down_from_lam_when_its_songs_repeat_too_much() -> None:
    # game music: the likelihood's weight is high, and its songs repeat twice the held-out share
    calls: list[float] = []
    shares = {0.9: 0.19, 0.85: 0.15, 0.8: 0.11, 0.75: 0.095, 0.7: 0.07, 0.6: 0.05}
    tried = search_weights(_fake_attempt(shares, calls), 0.9, SAMPLE_LAMBDAS, 0.09)
    assert calls[:4] == [0.9, 0.85, 0.8, 0.7]  # down until a weight falls to the reference
    assert calls[4:] == [0.75]  # between 0.7 (7%) and 0.8 (11%)
    assert 0.6 not in calls and 0.95 not in calls
    assert closest(tried, 0.09)["lam"] == 0.75


def test_songs_that_loop_at_lam_send_the_search_down() -> None:
    calls: list[float] = []
    tried = search_weights(_fake_attempt({}, calls, loops_above=0.8), 0.9, SAMPLE_LAMBDAS, 0.5)
    assert calls[:3] == [0.9, 0.85, 0.8]  # 0.8 is the first without loops, and under 50%
    best = closest(tried, 0.5)
    assert best["lam"] == 0.8 and not best["loops"]
    # every weight loops: the smallest tried
    calls.clear()
    tried = search_weights(_fake_attempt({}, calls, loops_above=0.0), 0.9, SAMPLE_LAMBDAS, 0.5)
    assert closest(tried, 0.5)["lam"] == 0.6 and calls == [0.9, 0.85, 0.8, 0.7, 0.6]


def test_a_weight_whose_songs_loop_now_and_then_is_usable_and_one_that_loops_often_is_not() -> None:
    from composer.formfit import MAX_LOOP_SHARE, usable

    t = {"lam": 0.9, "share": 0.4, "overlap": 0.8, "songs": 24}
    assert usable({**t, "loops": 0}, 0.7) and usable({**t, "loops": int(MAX_LOOP_SHARE * 24)}, 0.7)
    assert not usable({**t, "loops": int(MAX_LOOP_SHARE * 24) + 1}, 0.7)
    assert not usable({**t, "loops": 1, "songs": None}, 0.7)  # not recorded: any loop counts
    assert not usable({**t, "loops": 0}, 0.85)  # the texture
