"""How much generated music resembles a reference set: Yang & Lerch (2018) style statistics.

Yang and Lerch, "On the evaluation of generative models in music" (Neural Computing and Applications,
2018), compare two sets of pieces feature by feature: each feature gives a distribution per set, and the
two distributions are compared by their **overlapping area** (OA, 1 = identical, 0 = disjoint) and their
**Kullback-Leibler divergence** (KL, 0 = identical). Here each feature is a pool of values over a set:

================  ==========  ========================================================================
feature           kind        values (per set)
================  ==========  ========================================================================
pitch_class       discrete    pitch class (0-11) of every pitched note
pitch_range       continuous  highest minus lowest pitched note, one value per piece (semitones)
polyphony         discrete    pitched notes sounding at each distinct onset (1..16, more counts as 16)
note_density      continuous  notes starting in each bar, every bar of every piece
ioi               continuous  log2 of the inter-onset interval between distinct onsets, in quarter notes
note_length       continuous  log2 of every pitched note's length, in quarter notes
velocity          discrete    velocity (1..127) of every note
================  ==========  ========================================================================

Discrete features are compared as histograms over their fixed support, continuous ones as Gaussian kernel
density estimates (Scott's bandwidth per set, binned on a common 256-point grid). Both distributions get
a tiny uniform floor before the KL so it stays finite; identical sets give OA 1 and KL 0 exactly.
KL is ``KL(reference || samples)``: large when the samples miss what the reference does.

Also: bar-level **self-similarity** (how much material a piece repeats: the share of bars whose
onset/pitch-class pattern equals an earlier bar's, and the mean best cosine similarity of each bar's
chroma to an earlier bar's), and **degenerate** pieces (a silence longer than ``SILENCE_S``, one pitch
over ``ONE_PITCH_SHARE`` of the notes, no notes at all, or -- told by the sampler -- cut by the length
limit). ``degenerate_warnings`` words the same tests (and too few notes, and a loop:
``composer.form.is_loop``) for a generated song.

Everything here is numpy on a few arrays per piece; ``music_stats_summary`` is cheap enough for every
validation of a training run (pass a precomputed ``FeatureSet`` as the reference to skip re-reading it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from composer.form import is_loop, loop_bars
from composer.midi import Score

#: Degenerate-piece thresholds (``PieceFeatures.degenerate`` and the sampler's ``degenerate_warnings``):
#: a silence longer than this (seconds) ...
SILENCE_S = 8.0
#: ... one pitch holding more than this share of the pitched notes, once there are this many ...
ONE_PITCH_SHARE = 0.8
ONE_PITCH_MIN_NOTES = 10
#: ... or fewer notes than this share of the expected count (a generated song).
FEW_NOTES_SHARE = 0.2
#: Expected note density (notes per second) when neither the corpus nor a primer tells.
FALLBACK_NOTES_PER_SECOND = 1.0
#: Polyphony above this counts in the top bin.
POLYPHONY_TOP_BIN = 16
#: Grid points for the kernel density estimates.
GRID_POINTS = 256
#: Probability floor (per bin, before renormalising) that keeps the KL finite.
KL_FLOOR = 1e-6
#: Bars per piece looked at for self-similarity (the comparison is quadratic in bars).
MAX_SIMILARITY_BARS = 1024

DISCRETE, CONTINUOUS = "discrete", "continuous"
#: feature name -> (kind, support for discrete features, axis label)
FEATURES: dict[str, tuple[str, tuple[int, int] | None, str]] = {
    "pitch_class": (DISCRETE, (0, 11), "pitch class"),
    "pitch_range": (CONTINUOUS, None, "pitch range (semitones)"),
    "polyphony": (DISCRETE, (1, POLYPHONY_TOP_BIN), "notes sounding at an onset"),
    "note_density": (CONTINUOUS, None, "notes per bar"),
    "ioi": (CONTINUOUS, None, "inter-onset interval (log2 quarters)"),
    "note_length": (CONTINUOUS, None, "note length (log2 quarters)"),
    "velocity": (DISCRETE, (1, 127), "velocity"),
}


# ------------------------------------------------------------------------------------------ per piece


@dataclass
class PieceFeatures:
    """The raw feature values of one piece (see the module docstring)."""

    pitch_class: np.ndarray
    pitch_range: np.ndarray  # one value, or none when the piece has no pitched notes
    polyphony: np.ndarray
    note_density: np.ndarray
    ioi: np.ndarray
    note_length: np.ndarray
    velocity: np.ndarray
    repeated_bars: float | None  # share of non-empty bars that repeat an earlier bar exactly
    chroma_similarity: float | None  # mean best cosine similarity of a bar's chroma to an earlier bar's
    longest_silence_s: float
    top_pitch_share: float | None
    notes: int

    def degenerate(self) -> dict[str, bool]:
        return {
            "silence": self.longest_silence_s > SILENCE_S,
            "one_pitch": self.top_pitch_share is not None and self.top_pitch_share > ONE_PITCH_SHARE,
            "no_notes": self.notes == 0,
        }


def piece_features(score: Score) -> PieceFeatures:
    """Every feature of one piece, from its notes (in ticks) and its tempo map."""
    tpq = float(score.ticks_per_beat)
    rows = [
        (nt.start, max(nt.end, nt.start), nt.pitch, nt.velocity, inst.is_drum)
        for inst in score.instruments
        for nt in inst.notes
    ]
    empty_f, empty_i = np.zeros(0, np.float64), np.zeros(0, np.int64)
    if not rows:
        return PieceFeatures(
            empty_i, empty_f, empty_i, empty_f, empty_f, empty_f, empty_i, None, None, 0.0, None, 0
        )
    arr = np.array(rows, dtype=np.int64)
    start, end, pitch, vel, drum = arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4].astype(bool)
    pitched = ~drum
    ps, pe, pp = start[pitched], end[pitched], pitch[pitched]

    # pitch
    pitch_class = pp % 12
    pitch_range = np.array([float(pp.max() - pp.min())]) if len(pp) else empty_f
    # polyphony: pitched notes sounding at each distinct pitched onset (zero-length notes sound one tick)
    if len(ps):
        onsets = np.unique(ps)
        ends = np.sort(np.maximum(pe, ps + 1))
        sounding = np.searchsorted(np.sort(ps), onsets, side="right") - np.searchsorted(
            ends, onsets, side="right"
        )
        polyphony = np.clip(sounding, 1, POLYPHONY_TOP_BIN)
    else:
        polyphony = empty_i
    # rhythm
    all_onsets = np.unique(start)
    ioi = np.log2(np.diff(all_onsets) / tpq) if len(all_onsets) > 1 else empty_f
    note_length = np.log2(np.maximum(pe - ps, 1) / tpq)
    bars = score.bar_starts(int(start.max()))
    bar_of = np.searchsorted(bars, start, side="right") - 1
    note_density = np.bincount(bar_of, minlength=len(bars)).astype(np.float64)

    # self-similarity over the bars with pitched notes
    repeated, chroma_sim = _self_similarity(ps, pe, pp, bars)

    # degenerate: the longest silence (from time 0) and the most frequent pitch
    silence, _at = _longest_silence(score, start, end)
    top = _top_pitch(pp)
    return PieceFeatures(
        pitch_class=pitch_class,
        pitch_range=pitch_range,
        polyphony=polyphony,
        note_density=note_density,
        ioi=ioi,
        note_length=note_length,
        velocity=np.clip(vel, 1, 127),
        repeated_bars=repeated,
        chroma_similarity=chroma_sim,
        longest_silence_s=max(silence, 0.0),
        top_pitch_share=None if top is None else top[1],
        notes=len(rows),
    )


def _longest_silence(score: Score, start: np.ndarray, end: np.ndarray) -> tuple[float, float]:
    """(seconds, where it starts): the longest time no note sounds before a note starts, from time 0."""
    s = score.ticks_to_seconds(start)
    e = score.ticks_to_seconds(end)
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    covered = np.maximum.accumulate(np.concatenate([[0.0], e[:-1]]))
    gaps = s - covered
    k = int(np.argmax(gaps))
    return float(gaps[k]), float(covered[k])


def _top_pitch(pitches: np.ndarray) -> tuple[int, float] | None:
    """(the most frequent pitch, its share) of pitched notes; None below ``ONE_PITCH_MIN_NOTES``."""
    if len(pitches) < ONE_PITCH_MIN_NOTES:
        return None
    counts = np.bincount(pitches, minlength=128)
    top = int(counts.argmax())
    return top, float(counts[top] / len(pitches))


def degenerate_warnings(
    score: Score, expected_notes_per_second: float | None = None, min_seconds: float = 0.0
) -> list[str]:
    """Why a generated piece looks degenerate: a long silence, one pitch over and over, far too few notes,
    one or two bars over and over (``composer.form.is_loop``).

    ``expected_notes_per_second``: the training music's density (``FALLBACK_NOTES_PER_SECOND`` if None);
    ``min_seconds``: the length asked for, if the piece came out shorter.
    """
    rows = [
        (nt.start, nt.end, -1 if inst.is_drum else nt.pitch)
        for inst in score.instruments
        for nt in inst.notes
    ]
    if not rows:
        return ["no notes at all"]
    arr = np.array(rows, dtype=np.int64)
    warns: list[str] = []
    silence, at = _longest_silence(score, arr[:, 0], arr[:, 1])
    if silence > SILENCE_S:
        warns.append(f"silence of {silence:.1f} s at {at:.1f} s")
    top = _top_pitch(arr[arr[:, 2] >= 0, 2])
    if top is not None and top[1] > ONE_PITCH_SHARE:
        warns.append(f"one note repeated: {top[1]:.0%} of the notes are pitch {top[0]}")
    seconds = max(float(score.ticks_to_seconds(arr[:, 1]).max()), min_seconds)
    expected = (expected_notes_per_second or FALLBACK_NOTES_PER_SECOND) * seconds
    if expected >= 5 and len(rows) < FEW_NOTES_SHARE * expected:
        warns.append(
            f"far fewer notes than expected ({len(rows)} in {seconds:.1f} s, ~{expected:.0f} expected)"
        )
    if is_loop(score):
        warns.append(f"a loop: the same one or two bars over and over ({loop_bars(score)} bars in a row)")
    return warns


def _self_similarity(
    start: np.ndarray, end: np.ndarray, pitch: np.ndarray, bars: np.ndarray
) -> tuple[float | None, float | None]:
    """(share of non-empty bars equal to an earlier bar, mean best chroma cosine to an earlier bar)."""
    if len(start) == 0:
        return None, None
    bar_of = np.searchsorted(bars, start, side="right") - 1
    keep = bar_of < MAX_SIMILARITY_BARS
    start, end, pitch, bar_of = start[keep], end[keep], pitch[keep], bar_of[keep]
    offsets = start - bars[bar_of]
    used = np.unique(bar_of)
    if len(used) < 2:
        return None, None
    # exact patterns: the set of (onset within the bar, pitch class)
    order = np.lexsort((pitch % 12, offsets, bar_of))
    patterns: dict[int, tuple[tuple[int, int], ...]] = {}
    b_sorted = bar_of[order]
    cuts = np.flatnonzero(np.diff(b_sorted)) + 1
    for idx in np.split(order, cuts):
        b = int(bar_of[idx[0]])
        patterns[b] = tuple(sorted(set(zip(offsets[idx].tolist(), (pitch[idx] % 12).tolist()))))
    seen: set[tuple[tuple[int, int], ...]] = set()
    repeats = 0
    for b in used.tolist():
        pat = patterns[b]
        if pat in seen:
            repeats += 1
        seen.add(pat)
    repeated = repeats / (len(used) - 1)
    # chroma: duration-weighted pitch classes of the notes starting in each bar
    slot = np.searchsorted(used, bar_of)
    chroma = np.zeros((len(used), 12))
    np.add.at(chroma, (slot, pitch % 12), np.maximum(end - start, 1).astype(np.float64))
    chroma /= np.linalg.norm(chroma, axis=1, keepdims=True)
    sim = chroma @ chroma.T
    best = np.tril(sim, -1)[1:].max(axis=1)  # each bar against the bars before it
    return float(repeated), float(best.mean())


# ------------------------------------------------------------------------------------------- per set


@dataclass
class FeatureSet:
    """Pooled feature values of a set of pieces; compute once and reuse (e.g. the reference set)."""

    values: dict[str, np.ndarray]
    pieces: int
    repeated_bars: list[float] = field(default_factory=list)
    chroma_similarity: list[float] = field(default_factory=list)
    degenerate: list[dict[str, bool]] = field(default_factory=list)

    @classmethod
    def from_scores(cls, scores: Sequence[Score], cut: Sequence[bool] | None = None) -> FeatureSet:
        """Features of ``scores``; ``cut[i]`` says piece i was cut by a length limit (from the sampler)."""
        feats = [piece_features(s) for s in scores]
        pooled: dict[str, np.ndarray] = {}
        for name, (kind, _, _) in FEATURES.items():
            parts = [getattr(f, name) for f in feats]
            dtype = np.int64 if kind == DISCRETE else np.float64
            pooled[name] = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
        degenerate = []
        for i, f in enumerate(feats):
            d = f.degenerate()
            d["cut"] = bool(cut[i]) if cut is not None and i < len(cut) else False
            degenerate.append(d)
        return cls(
            values=pooled,
            pieces=len(feats),
            repeated_bars=[f.repeated_bars for f in feats if f.repeated_bars is not None],
            chroma_similarity=[f.chroma_similarity for f in feats if f.chroma_similarity is not None],
            degenerate=degenerate,
        )

    def similarity(self) -> dict[str, float | None]:
        return {
            "repeated_bars": float(np.mean(self.repeated_bars)) if self.repeated_bars else None,
            "chroma_similarity": float(np.mean(self.chroma_similarity)) if self.chroma_similarity else None,
        }

    def degenerate_summary(self) -> dict[str, Any]:
        """How many pieces are degenerate, in all and by reason."""
        reasons = ("silence", "one_pitch", "no_notes", "cut")
        counts = {r: sum(d.get(r, False) for d in self.degenerate) for r in reasons}
        total = sum(any(d.values()) for d in self.degenerate)
        return {
            "pieces": self.pieces,
            "degenerate": total,
            "rate": total / self.pieces if self.pieces else None,
            **counts,
        }


# ------------------------------------------------------------------------------------- comparisons


@dataclass
class Comparison:
    """One feature compared between the reference and the samples, with the curves for a plot."""

    name: str
    kind: str
    oa: float
    kl: float
    reference_n: int
    samples_n: int
    x: np.ndarray  # bin centres / grid points
    p: np.ndarray  # reference distribution over x (sums to 1)
    q: np.ndarray  # samples distribution over x (sums to 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "oa": self.oa,
            "kl": self.kl,
            "reference_values": self.reference_n,
            "sample_values": self.samples_n,
        }


def overlap_and_kl(p: np.ndarray, q: np.ndarray) -> tuple[float, float]:
    """(overlapping area, KL(p || q)) of two distributions on the same bins, each summing to 1.

    A floor of ``KL_FLOOR`` per bin keeps the KL finite; equal inputs give exactly (sum p, 0).
    """
    oa = float(np.minimum(p, q).sum())
    ps = (p + KL_FLOOR) / (1.0 + KL_FLOOR * len(p))
    qs = (q + KL_FLOOR) / (1.0 + KL_FLOOR * len(q))
    kl = float(np.sum(ps * (np.log(ps) - np.log(qs))))
    return min(max(oa, 0.0), 1.0), max(kl, 0.0)


def _histogram(values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    counts = np.bincount(np.clip(values, lo, hi) - lo, minlength=hi - lo + 1).astype(np.float64)
    return counts / counts.sum()


def _bandwidth(values: np.ndarray) -> float:
    """Scott's rule; 0 for a single distinct value (the grid's floor then applies)."""
    if len(values) < 2:
        return 0.0
    return 1.06 * float(values.std()) * len(values) ** -0.2


def _kde(values: np.ndarray, edges: np.ndarray, bw: float) -> np.ndarray:
    """A binned Gaussian KDE on the grid ``edges`` (len G+1), as probabilities per bin."""
    dx = float(edges[1] - edges[0])
    hist = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)[0].astype(np.float64)
    sigma = max(bw, dx) / dx  # in bins; never narrower than one bin
    half = int(min(math.ceil(4 * sigma), len(hist)))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    dens = np.convolve(hist, k / k.sum(), mode="same")
    return dens / dens.sum()


def compare_feature(name: str, reference: np.ndarray, samples: np.ndarray) -> Comparison:
    """Compare one feature's pooled values (see ``FEATURES`` for how each is binned)."""
    kind, support, _ = FEATURES[name]
    ref, smp = np.asarray(reference), np.asarray(samples)
    if kind == DISCRETE:
        assert support is not None
        lo, hi = support
        x = np.arange(lo, hi + 1, dtype=np.float64)
        p = _histogram(ref.astype(np.int64), lo, hi) if len(ref) else np.zeros(len(x))
        q = _histogram(smp.astype(np.int64), lo, hi) if len(smp) else np.zeros(len(x))
    else:
        both = np.concatenate([ref, smp]).astype(np.float64)
        if len(both):
            bw_r, bw_s = _bandwidth(ref.astype(np.float64)), _bandwidth(smp.astype(np.float64))
            x_lo, x_hi = float(both.min()), float(both.max())
            span = x_hi - x_lo if x_hi > x_lo else 1.0
            pad = max(3 * max(bw_r, bw_s), 0.05 * span)
            edges = np.linspace(x_lo - pad, x_hi + pad, GRID_POINTS + 1)
            x = (edges[:-1] + edges[1:]) / 2
            p = _kde(ref.astype(np.float64), edges, bw_r) if len(ref) else np.zeros(GRID_POINTS)
            q = _kde(smp.astype(np.float64), edges, bw_s) if len(smp) else np.zeros(GRID_POINTS)
        else:
            x = p = q = np.zeros(0)
    if len(ref) == 0 or len(smp) == 0:
        oa, kl = (1.0, 0.0) if len(ref) == len(smp) == 0 else (0.0, float("nan"))
    else:
        oa, kl = overlap_and_kl(p, q)
    return Comparison(name, kind, oa, kl, len(ref), len(smp), x, p, q)


@dataclass
class MusicComparison:
    """The whole comparison of a sample set with a reference set."""

    features: dict[str, Comparison]
    reference: FeatureSet
    samples: FeatureSet

    @property
    def mean_oa(self) -> float:
        return float(np.mean([c.oa for c in self.features.values()]))

    @property
    def mean_kl(self) -> float:
        kls = [c.kl for c in self.features.values() if math.isfinite(c.kl)]
        return float(np.mean(kls)) if kls else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_pieces": self.reference.pieces,
            "sample_pieces": self.samples.pieces,
            "mean_oa": self.mean_oa,
            "mean_kl": self.mean_kl,
            "features": {k: c.to_dict() for k, c in self.features.items()},
            "self_similarity": {
                "reference": self.reference.similarity(),
                "samples": self.samples.similarity(),
            },
            "degenerate": {
                "reference": self.reference.degenerate_summary(),
                "samples": self.samples.degenerate_summary(),
            },
        }


def _as_set(x: Sequence[Score] | FeatureSet) -> FeatureSet:
    return x if isinstance(x, FeatureSet) else FeatureSet.from_scores(x)


def compare_sets(
    reference: Sequence[Score] | FeatureSet, samples: Sequence[Score] | FeatureSet
) -> MusicComparison:
    """Compare every feature of ``samples`` with ``reference`` (score lists or precomputed sets)."""
    ref, smp = _as_set(reference), _as_set(samples)
    feats = {name: compare_feature(name, ref.values[name], smp.values[name]) for name in FEATURES}
    return MusicComparison(feats, ref, smp)


def music_stats_summary(
    reference: Sequence[Score] | FeatureSet, samples: Sequence[Score] | FeatureSet
) -> dict[str, float]:
    """Flat figures for a training log: ``mean_oa``, ``mean_kl``, ``oa_<feature>`` for every feature,
    ``repeated_bars`` of the samples and their ``degenerate_rate``.

    ``reference`` may be a ``FeatureSet`` computed once (``FeatureSet.from_scores(val_scores)``) so that
    each call only measures the samples. NaN where a figure is undefined (e.g. no samples).
    """
    cmp = compare_sets(reference, samples)
    out: dict[str, float] = {"mean_oa": cmp.mean_oa, "mean_kl": cmp.mean_kl}
    for name, c in cmp.features.items():
        out[f"oa_{name}"] = c.oa
    sim = cmp.samples.similarity()["repeated_bars"]
    out["repeated_bars"] = float("nan") if sim is None else sim
    rate = cmp.samples.degenerate_summary()["rate"]
    out["degenerate_rate"] = float("nan") if rate is None else float(rate)
    return out
