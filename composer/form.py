"""Musical form: which bars come back, how far apart, and how much of a piece could be copied from its past.

Two views, one on notes and one on tokens:

* **Repeated bars.** A bar's *pattern* is the set of (onset within the bar, pitch, drum) of the notes that
  start in it; its *shape* is the same with pitches taken relative to the bar's lowest pitched note, so a
  sequence (the phrase again a step higher) matches too. ``bar_repeats`` gives the share of non-empty bars
  whose pattern (shape) equals that of a bar at least ``min_lag`` bars earlier, and the profile by lag: for
  lag L, the share of bars equal to the bar L before them. ``similarity_matrix`` is the bar-by-bar Jaccard
  similarity of the patterns, for a picture of a song's form. ``is_loop`` tells a song that is, or falls
  into, one or two bars over and over.
* **Copyable share.** ``copyable_share`` is the share of tokens that copying from far back predicts: the
  token that followed the most recent earlier occurrence of the same ``context``-token context, ending at
  least ``distance`` tokens before. It is the ceiling of what a perfect copier of old material gains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from composer.midi import Score

#: Bars per piece looked at (the pattern comparison is quadratic in bars for the matrix).
MAX_BARS = 4096
#: Bar lags in the repeat profile.
PROFILE_LAGS = 32
#: A song is a loop where it has this many bars in a row, or more, that are one or two bars over and over.
LOOP_MIN_BARS = 8

Pattern = frozenset[tuple[int, int, bool]]


def first_bars(score: Score, bars: int) -> Score:
    """The score with only the notes that start in its first ``bars`` bars (to compare pieces of one
    length: the share of repeated bars grows with the number of bars)."""
    ends = [n.start for inst in score.instruments for n in inst.notes]
    starts = score.bar_starts(max(ends, default=0), bars)
    if len(starts) <= bars:
        return score
    end = int(starts[bars])
    instruments = [replace(i, notes=[n for n in i.notes if n.start < end]) for i in score.instruments]
    return replace(score, instruments=instruments)


def bar_patterns(score: Score, relative: bool = False) -> list[Pattern]:
    """One pattern per bar from the first bar to the last note's bar (empty bars give an empty set)."""
    rows = [(n.start, n.pitch, inst.is_drum) for inst in score.instruments for n in inst.notes]
    if not rows:
        return []
    start = np.array([r[0] for r in rows], dtype=np.int64)
    pitch = np.array([r[1] for r in rows], dtype=np.int64)
    drum = np.array([r[2] for r in rows], dtype=bool)
    bars = score.bar_starts(int(start.max()))
    bar_of = np.searchsorted(bars, start, side="right") - 1
    n_bars = min(int(bar_of.max()) + 1, MAX_BARS)
    cells: list[set[tuple[int, int, bool]]] = [set() for _ in range(n_bars)]
    offsets = start - bars[bar_of]
    for b, off, p, d in zip(bar_of.tolist(), offsets.tolist(), pitch.tolist(), drum.tolist()):
        if b < n_bars:
            cells[b].add((off, p, d))
    if relative:
        out = []
        for c in cells:
            pitched = [p for _, p, d in c if not d]
            base = min(pitched) if pitched else 0
            out.append(frozenset((o, p if d else p - base, d) for o, p, d in c))
        return out
    return [frozenset(c) for c in cells]


@dataclass
class BarRepeats:
    """How a piece repeats its bars (see the module docstring)."""

    bars: int  # non-empty bars
    exact: float | None  # share of non-empty bars equal to a bar >= min_lag earlier
    transposed: float | None  # the same, up to transposition
    profile: list[float | None] = field(default_factory=list)  # index L-1: share equal to the bar L before

    def to_dict(self) -> dict[str, Any]:
        return {
            "bars": self.bars,
            "exact": self.exact,
            "transposed": self.transposed,
            "profile": self.profile,
        }


def _repeat_share(patterns: Sequence[Pattern], min_lag: int) -> float | None:
    first_seen: dict[Pattern, int] = {}
    hits = total = 0
    for b, pat in enumerate(patterns):
        if not pat:
            continue
        total += 1
        earliest = first_seen.setdefault(pat, b)
        if earliest <= b - min_lag:
            hits += 1
    return hits / total if total else None


def bar_repeats(score: Score, min_lag: int = 4, lags: int = PROFILE_LAGS) -> BarRepeats:
    """Repeated-bar shares at a distance of at least ``min_lag`` bars, and the profile by lag."""
    exact = bar_patterns(score)
    shape = bar_patterns(score, relative=True)
    profile: list[float | None] = []
    for lag in range(1, lags + 1):
        pairs = [(exact[b], exact[b - lag]) for b in range(lag, len(exact)) if exact[b] and exact[b - lag]]
        profile.append(sum(a == b for a, b in pairs) / len(pairs) if pairs else None)
    return BarRepeats(
        bars=sum(1 for p in exact if p),
        exact=_repeat_share(exact, min_lag),
        transposed=_repeat_share(shape, min_lag),
        profile=profile,
    )


def loop_bars(score: Score) -> int:
    """The longest stretch of bars that is one or two bars over and over (each bar equal to the one two
    before it; never two empty bars in a row), in bars; 0 where no bar equals the one two before."""
    pats = bar_patterns(score)
    best = run = 0
    for i in range(2, len(pats)):
        if pats[i] == pats[i - 2] and (pats[i] or pats[i - 1]):
            run += 1
            best = max(best, run + 2)
        else:
            run = 0
    return best


def is_loop(score: Score) -> bool:
    """A song that is, or falls into, one or two bars over and over for ``LOOP_MIN_BARS`` bars or more:
    degenerate. (Real tunes repeat whole phrases of 4 or 8 bars; none of the Nottingham validation tunes
    has even 5 bars in a row that alternate two bars.)"""
    return loop_bars(score) >= LOOP_MIN_BARS


def similarity_matrix(score: Score, max_bars: int = 512) -> np.ndarray:
    """(bars, bars) Jaccard similarity of the bars' note patterns (1 on the diagonal of non-empty bars)."""
    pats = bar_patterns(score)[:max_bars]
    n = len(pats)
    m = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        for j in range(i + 1):
            a, b = pats[i], pats[j]
            union = len(a | b)
            m[i, j] = m[j, i] = len(a & b) / union if union else 0.0
    return m


@dataclass
class FormSummary:
    """Bar repeats pooled over a set of pieces (means over the pieces that have bars)."""

    pieces: int
    exact: float | None
    transposed: float | None
    profile: list[float | None]
    loops: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "pieces": self.pieces,
            "exact": self.exact,
            "transposed": self.transposed,
            "profile": self.profile,
            "loops": self.loops,
        }


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def form_summary(scores: Sequence[Score], min_lag: int = 4, lags: int = PROFILE_LAGS) -> FormSummary:
    reps = [bar_repeats(s, min_lag, lags) for s in scores]
    return FormSummary(
        pieces=len(scores),
        exact=_mean([r.exact for r in reps]),
        transposed=_mean([r.transposed for r in reps]),
        profile=[_mean([r.profile[k] for r in reps]) for k in range(lags)],
        loops=sum(is_loop(s) for s in scores),
    )


def copyable_mask(ids: np.ndarray, distance: int, context: int = 12) -> np.ndarray:
    """Per position t, whether a far copier predicts ids[t]: the most recent j <= t - distance whose
    preceding ``context`` tokens equal the ``context`` tokens before t has ids[j] == ids[t].

    Positions before ``context`` (no full context) and those with no such j are False.
    """
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    hit = np.zeros(n, dtype=bool)
    if n <= context:
        return hit
    win = np.lib.stride_tricks.sliding_window_view(ids, context)[: n - context]  # row k: ids[k:k+context]
    keys = [hash(row.tobytes()) for row in win]  # keys[t - context]: the context before position t
    latest: dict[int, int] = {}  # context key -> the most recent indexed position after it
    for t in range(context, n):
        j = t - distance  # index position j once it is far enough back for t
        if j >= context:
            latest[keys[j - context]] = j
        k = latest.get(keys[t - context])
        if k is not None and ids[k] == ids[t] and np.array_equal(ids[k - context : k], ids[t - context : t]):
            hit[t] = True
    return hit


def copyable_share(
    ids: np.ndarray, distance: int, context: int = 12, min_position: int = 0
) -> tuple[int, int]:
    """(tokens a far copier predicts, tokens looked at) over positions >= max(min_position, context);
    see ``copyable_mask``."""
    ids = np.asarray(ids, dtype=np.int64)
    lo = max(min_position, context)
    if len(ids) <= lo:
        return 0, 0
    return int(copyable_mask(ids, distance, context)[lo:].sum()), len(ids) - lo
