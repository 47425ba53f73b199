"""The cache's weight for sampling, fitted so that songs repeat bars as often as the music does.

The cache's ``lam`` is fitted for likelihood (``composer.cache.fit_cache``): the weight that predicts
held-out tokens best. Sampled with that weight, songs repeat far fewer bars than the music they learned
from: copying a whole bar means drawing a dozen tokens in a row from the cache, and at ``lam`` around 0.6
one of them usually comes from the model instead. ``fit_sample_lambda`` samples a few short songs at
each weight from ``lam`` up (or, where songs at ``lam`` already repeat more than the music, as with game
music full of exact repeats, from ``lam`` down) and keeps the one whose share of repeated bars
(``composer.form``: bars equal to a bar at least 4 bars earlier) is closest, in ratio, to that of
held-out pieces cut to the same number of bars, among those without loops; where two neighbouring
weights' shares bracket the reference, the weight between them that the line through them predicts
is tried too. Music that hardly repeats a bar (under 5%, like the Bach chorales) has no form to match
and keeps ``lam``. The result is stored as the cache's ``sample_lam``, which ``generate`` uses;
likelihood keeps ``lam``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from composer.cache import CacheConfig
from composer.checkpoint import Checkpoint, load_checkpoint, save_cache
from composer.form import bar_patterns, first_bars, form_summary
from composer.midi import Score

#: Weights tried: those above the likelihood's ``lam``, or below it where songs at ``lam`` repeat too much.
SAMPLE_LAMBDAS = (0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
#: Songs per weight and their length in bars: the median held-out piece's, within these bounds (32 at
#: least: a song's share of repeated bars grows with its length, and form is about songs of 32 bars and
#: more), and at most about SONG_TOKENS tokens (dense multitrack music has hundreds of tokens a bar).
SONGS = 24
MIN_BARS, MAX_BARS = 32, 48
SONG_TOKENS = 4000
#: Added to both shares before their ratio is taken, so that 0 against 1% is not infinitely far.
EPS = 0.01
#: Music that repeats fewer of its bars than this has no form to match: sampling keeps ``lam``.
MIN_REFERENCE_SHARE = 0.05


@dataclass(frozen=True)
class SampleLambdaFit:
    sample_lam: float
    reference_share: float  # repeated-bar share of the held-out pieces (first ``bars`` bars)
    bars: int
    tried: list[dict[str, Any]]  # {"lam", "share", "loops"} per weight tried
    songs: int = SONGS  # sampled at each weight

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample_lam": self.sample_lam,
            "reference_share": self.reference_share,
            "bars": self.bars,
            "songs": self.songs,
            "tried": self.tried,
        }


def fit_sample_lambda(
    ckpt: Checkpoint,
    reference: Sequence[Score],
    *,
    lambdas: Sequence[float] = SAMPLE_LAMBDAS,
    songs: int = SONGS,
    seed: int = 0,
    device: str = "cpu",
) -> SampleLambdaFit | None:
    """The sampling weight for ``ckpt``'s fitted cache, or None (no cache, or no bars to compare)."""
    from composer.sample import Length, generate

    cache = ckpt.cache
    if cache is None or not cache.enabled:
        return None
    counts = [len(bar_patterns(s)) for s in reference if s.note_count]
    if not counts:
        return None
    per_bar = np.median(
        [len(ckpt.tokenizer.encode(s)[0]) / len(bar_patterns(s)) for s in reference if s.note_count]
    )
    bars = int(np.clip(min(np.median(counts), SONG_TOKENS / max(per_bar, 1.0)), MIN_BARS, MAX_BARS))
    exact = form_summary([first_bars(s, bars) for s in reference]).exact
    if exact is None:
        return None
    ref_share: float = exact
    if ref_share < MIN_REFERENCE_SHARE:
        return SampleLambdaFit(cache.lam, ref_share, bars, [], songs)
    # a token budget, not bars: a song that stops writing bar lines must not run on
    length = Length(tokens=max(1, round(bars * per_bar)))

    def attempt(lam: float) -> dict[str, Any]:
        config = CacheConfig(theta=cache.theta, lam=lam, size=cache.size)
        out = generate(ckpt, n=songs, length=length, seed=seed, device=device, cache=config)
        got = form_summary([s.score for s in out])
        return {"lam": float(lam), "share": got.exact, "loops": got.loops}

    tried = search_weights(attempt, cache.lam, lambdas, ref_share)
    best = closest(tried, ref_share)
    return SampleLambdaFit(float(best["lam"]), float(ref_share), bars, tried, songs)


def search_weights(
    attempt: Callable[[float], dict[str, Any]],
    lam: float,
    lambdas: Sequence[float],
    target: float,
) -> list[dict[str, Any]]:
    """The weights tried, by ``attempt`` (one ``{"lam", "share", "loops"}`` each), sorted by weight.

    ``lam`` first; where its songs repeat no more bars than ``target`` and do not loop, every weight
    above it; otherwise (music full of exact repeats, whose likelihood weight is already high) the
    weights below it, from the nearest down, until one falls to ``target``. Then the weight between
    two neighbours that bracket ``target``, where there are such.
    """
    tried = [attempt(lam)]
    first = tried[0]
    overshoots = bool(first["loops"]) or (first["share"] is not None and first["share"] > target)
    if overshoots:
        for x in sorted((x for x in lambdas if x < lam), reverse=True):
            tried.append(attempt(x))
            if not tried[-1]["loops"] and (tried[-1]["share"] or 0.0) <= target:
                break
    else:
        tried += [attempt(x) for x in sorted(x for x in lambdas if x > lam)]
    tried.sort(key=lambda t: t["lam"])
    between = crossing(tried, target)
    if between is not None and all(abs(t["lam"] - between) > 1e-9 for t in tried):
        tried.append(attempt(between))
        tried.sort(key=lambda t: t["lam"])
    return tried


def closest(tried: Sequence[dict[str, Any]], target: float) -> dict[str, Any]:
    """The weight tried whose share is closest in ratio to ``target``, among those without loops (the
    smallest among equals); the smallest weight where every one loops."""

    def distance(t: dict[str, Any]) -> float:
        share = t["share"] if t["share"] is not None else 0.0
        return abs(math.log((share + EPS) / (target + EPS))) + (math.inf if t["loops"] else 0.0)

    best = min(tried, key=distance)
    return tried[0] if math.isinf(distance(best)) else best


def crossing(tried: Sequence[dict[str, Any]], target: float) -> float | None:
    """The weight where the repeated-bar share, linear between two neighbouring weights tried without
    loops, reaches ``target`` (rounded to 0.005); None where no neighbours bracket it."""
    for a, b in zip(tried, tried[1:], strict=False):
        if a["loops"] or b["loops"] or a["share"] is None or b["share"] is None:
            continue
        if a["share"] < target <= b["share"]:
            lam = a["lam"] + (target - a["share"]) / (b["share"] - a["share"]) * (b["lam"] - a["lam"])
            return round(round(lam / 0.005) * 0.005, 3)
    return None


def fit_checkpoint_sampling(
    path: str | os.PathLike[str],
    reference: Sequence[Score],
    say: Callable[[str], None] | None = None,
    device: str = "cpu",
) -> SampleLambdaFit | None:
    """``fit_sample_lambda`` for the checkpoint at ``path``, stored there beside its cache fit."""
    ckpt = load_checkpoint(path, device=device)
    if ckpt.cache is None:
        return None
    if say is not None:
        say("fitting the cache's sampling weight: songs' repeated bars against the held-out pieces'")
    fit = fit_sample_lambda(ckpt, reference, device=device)
    if fit is None:
        return None
    record = dict((ckpt.meta.get("cache") or {}).get("fit") or {})
    record["sampling"] = fit.to_dict()
    save_cache(ckpt.path, replace(ckpt.cache, sample_lam=fit.sample_lam), record)
    if say is not None and not fit.tried:
        say(
            f"cache sampling lambda {fit.sample_lam:g}, as for likelihood: the held-out pieces repeat "
            f"{fit.reference_share:.0%} of their bars, too few to match"
        )
    elif say is not None:
        shares = ", ".join(f"{t['lam']:g}: {t['share'] or 0:.0%}" for t in fit.tried)
        say(
            f"cache sampling lambda {fit.sample_lam:g} (repeated bars over {fit.bars} bars: held-out "
            f"{fit.reference_share:.0%}; samples by lambda {shares})"
        )
    return fit
