"""The cache's weight for sampling, fitted so that songs repeat bars as often as the music does, and
still sound like it.

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

The songs must also still sound like the music, and not loop. Each weight's songs are scored on the
music statistics of ``composer.musicstats`` against the held-out pieces (mean overlapping area); a
weight whose songs fall more than ``TEXTURE_TOLERANCE`` below songs sampled without the cache, or at
which more than ``MAX_LOOP_SHARE`` of them fall into a loop, is not chosen, however well they repeat.
At a high weight, a cache that may copy the bar just written makes one or two bars over and over (on
folk tunes, with the chords thinning out); music repeats phrases of 4 or 8 bars instead. So where no
weight gets within ``NEAR`` of the music's share that way, the search runs again with the cache's most
recent 4 bars' worth of positions left out of the vote (the cache's ``sample_min_lag``): songs can then
only copy from at least that far back. Where that finds too little to copy (dense game music, whose
model-written bars rarely come back exactly from so far), it runs once more with 1 bar left out
(``LAG_BARS``), and the closest of all the searches wins.
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
from composer.musicstats import FeatureSet, compare_sets

#: Weights tried: those above the likelihood's ``lam``, or below it where songs at ``lam`` repeat too much.
SAMPLE_LAMBDAS = (0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)
#: Where no weight gets within NEAR of the music's share (in ratio), the search is run again with the
#: cache copying only from at least this many bars' worth of tokens back, each in turn until one does
#: (form counts repeats from 4 bars back).
LAG_BARS = (4, 1)
NEAR = 0.25
#: A weight at which more songs than this share fall into a loop (``composer.form.is_loop``) is not chosen.
MAX_LOOP_SHARE = 0.05
#: A weight whose songs' mean overlap with the held-out music is further than this below that of songs
#: sampled without the cache is not chosen. The overlap of 24 songs varies by about 0.03 between seeds, so
#: two weights' songs differ by up to about 0.08 by chance; songs that fall into copying their last bars
#: lose 0.15 to 0.3.
TEXTURE_TOLERANCE = 0.1
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
    tried: list[dict[str, Any]]  # {"lam", "min_lag", "songs", "share", "loops", "overlap"} per weight tried
    songs: int = SONGS  # sampled at each weight
    min_lag: int | None = None  # the newest positions left out of sampling's vote (None: as for likelihood)
    floor: float | None = None  # the least mean overlap a chosen weight's songs may have
    plain: float | None = None  # the mean overlap of songs sampled without the cache

    def describe_tried(self) -> str:
        """Each weight's repeated-bar share and music overlap, those below the floor marked."""

        def one(t: dict[str, Any]) -> str:
            text = f"{t['lam']:g}: {t['share'] or 0:.0%}"
            if t.get("overlap") is not None:
                text += f" overlap {t['overlap']:.2f}"
                if self.floor is not None and t["overlap"] < self.floor:
                    text += " (texture lost)"
            return text + (f" ({t['loops']} looped)" if t.get("loops") else "")

        groups: dict[int, list[str]] = {}
        for t in self.tried:
            groups.setdefault(int(t.get("min_lag") or 0), []).append(one(t))
        head = "" if self.plain is None else f"no cache: overlap {self.plain:.2f}; "
        parts = [(f"copying from {w}+ tokens back: " if w else "") + ", ".join(x) for w, x in groups.items()]
        return head + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample_lam": self.sample_lam,
            "reference_share": self.reference_share,
            "bars": self.bars,
            "songs": self.songs,
            "min_lag": self.min_lag,
            "floor": self.floor,
            "plain_overlap": self.plain,
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
    music = FeatureSet.from_scores([s for s in reference if s.note_count])

    def sample(config: CacheConfig | bool) -> tuple[Any, float]:
        out = generate(ckpt, n=songs, length=length, seed=seed, device=device, cache=config)
        scores = [s.score for s in out]
        return form_summary(scores), compare_sets(music, scores).mean_oa

    plain = sample(False)[1]
    floor = plain - TEXTURE_TOLERANCE

    def search(min_lag: int) -> list[dict[str, Any]]:
        def attempt(lam: float) -> dict[str, Any]:
            got, overlap = sample(CacheConfig(theta=cache.theta, lam=lam, size=cache.size, min_lag=min_lag))
            return {
                "lam": float(lam),
                "min_lag": min_lag,
                "songs": songs,
                "share": got.exact,
                "loops": got.loops,
                "overlap": overlap,
            }

        return search_weights(attempt, cache.lam, lambdas, ref_share, floor)

    tried = search(0)
    best = closest(tried, ref_share, floor)
    for lag_bars in LAG_BARS:
        if near_enough(best, ref_share, floor):
            break
        tried += search(max(1, int(round(lag_bars * per_bar))))
        best = closest(tried, ref_share, floor)
    return SampleLambdaFit(
        float(best["lam"]), float(ref_share), bars, tried, songs, int(best.get("min_lag") or 0), floor, plain
    )


def near_enough(t: dict[str, Any], target: float, floor: float | None) -> bool:
    """Songs at this weight are ``usable`` and repeat within ``NEAR`` (in ratio) of ``target``."""
    return usable(t, floor) and ratio_distance(t, target) <= math.log(1 + NEAR)


def ratio_distance(t: dict[str, Any], target: float) -> float:
    """|log| of the ratio of this weight's repeated-bar share to ``target`` (both plus ``EPS``)."""
    share = t["share"] if t["share"] is not None else 0.0
    return abs(math.log((share + EPS) / (target + EPS)))


def usable(t: dict[str, Any], floor: float | None) -> bool:
    """Songs at this weight loop no more than ``MAX_LOOP_SHARE`` of the time (any loop at all where the
    number of songs is not recorded) and keep the texture (mean overlap at least ``floor``)."""
    if t["loops"] and (t.get("songs") is None or t["loops"] > MAX_LOOP_SHARE * t["songs"]):
        return False
    return floor is None or t.get("overlap") is None or float(t["overlap"]) >= floor


def search_weights(
    attempt: Callable[[float], dict[str, Any]],
    lam: float,
    lambdas: Sequence[float],
    target: float,
    floor: float | None = None,
) -> list[dict[str, Any]]:
    """The weights tried, by ``attempt`` (one ``{"lam", "share", "loops"}`` each), sorted by weight.

    ``lam`` first; where its songs repeat no more bars than ``target`` and do not loop, every weight
    above it; otherwise (music full of exact repeats, whose likelihood weight is already high) the
    weights below it, from the nearest down, until one falls to ``target`` (``usable``). Then the weight
    between two usable neighbours that bracket ``target``, where there are such.
    """
    tried = [attempt(lam)]
    first = tried[0]
    overshoots = not usable(first, floor) or (first["share"] is not None and first["share"] > target)
    if overshoots:
        for x in sorted((x for x in lambdas if x < lam), reverse=True):
            tried.append(attempt(x))
            if usable(tried[-1], floor) and (tried[-1]["share"] or 0.0) <= target:
                break
    else:
        tried += [attempt(x) for x in sorted(x for x in lambdas if x > lam)]
    tried.sort(key=lambda t: t["lam"])
    between = crossing(tried, target, floor)
    if between is not None and all(abs(t["lam"] - between) > 1e-9 for t in tried):
        tried.append(attempt(between))
        tried.sort(key=lambda t: t["lam"])
    return tried


def closest(tried: Sequence[dict[str, Any]], target: float, floor: float | None = None) -> dict[str, Any]:
    """The weight tried whose share is closest in ratio to ``target``, among the ``usable`` ones (the
    smallest among equals); the smallest weight where none is."""

    def distance(t: dict[str, Any]) -> float:
        return ratio_distance(t, target) + (0.0 if usable(t, floor) else math.inf)

    best = min(tried, key=distance)
    return tried[0] if math.isinf(distance(best)) else best


def crossing(tried: Sequence[dict[str, Any]], target: float, floor: float | None = None) -> float | None:
    """The weight where the repeated-bar share, linear between two neighbouring ``usable`` weights,
    reaches ``target`` (rounded to 0.005); None where no neighbours bracket it."""
    for a, b in zip(tried, tried[1:], strict=False):
        if not (usable(a, floor) and usable(b, floor)) or a["share"] is None or b["share"] is None:
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
    save_cache(ckpt.path, replace(ckpt.cache, sample_lam=fit.sample_lam, sample_min_lag=fit.min_lag), record)
    if say is not None and not fit.tried:
        say(
            f"cache sampling lambda {fit.sample_lam:g}, as for likelihood: the held-out pieces repeat "
            f"{fit.reference_share:.0%} of their bars, too few to match"
        )
    elif say is not None:
        say(
            f"cache sampling lambda {fit.sample_lam:g} (repeated bars over {fit.bars} bars: held-out "
            f"{fit.reference_share:.0%}; samples by lambda {fit.describe_tried()})"
        )
    return fit
