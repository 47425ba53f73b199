"""Pictures: a Score's piano roll (one colour per instrument, time in seconds, bar lines where known), a
song's roll beside its bar self-similarity matrix, and the feature distributions of a music comparison
(``composer.musicstats``).

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no display, no global state), so it is
safe in any process and the same input gives the same PNG.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from composer.fsutil import atomic_write
from composer.midi import Score, program_name
from composer.musicstats import DISCRETE, FEATURES

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from composer.musicstats import MusicComparison

#: Bar lines are drawn only when there are at most this many (beyond that they are a grey blur).
MAX_BAR_LINES = 400
#: Bars a song's self-similarity matrix shows at most (the first ones).
MAX_FORM_BARS = 512


def drawn_bar_lines(score: Score) -> np.ndarray:
    """Ticks of the bar lines a piano roll draws (``Score.bar_starts``) up to the last note's end; none
    without a time signature, and at most ``MAX_BAR_LINES`` + 1 (then none are drawn)."""
    end = score.end_tick
    if not score.time_signatures or end <= 0:
        return np.zeros(0, dtype=np.int64)
    return score.bar_starts(end - 1, max_bars=MAX_BAR_LINES)


def plot_piano_roll(score: Score, path: str | os.PathLike[str], title: str = "", dpi: int = 100) -> Path:
    """Write ``score`` as a piano-roll PNG at ``path`` and return the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5), dpi=dpi)
    FigureCanvasAgg(fig)
    _draw_roll(fig.add_subplot(1, 1, 1), score, title)
    fig.tight_layout()
    return _save(fig, path)


def plot_song(score: Score, path: str | os.PathLike[str], title: str = "", dpi: int = 100) -> Path:
    """One picture of a song: its piano roll and, to the right, its bar self-similarity matrix
    (``composer.form.similarity_matrix``: bar against bar, dark where two bars share their notes), where a
    chorus that comes back shows as a diagonal stripe off the main one and a loop as a dark square.
    The roll alone where the song has no bars with notes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from composer.form import similarity_matrix

    sim = similarity_matrix(score, max_bars=MAX_FORM_BARS) if score.note_count else np.zeros((0, 0))
    if len(sim) == 0:
        return plot_piano_roll(score, path, title=title, dpi=dpi)
    fig = Figure(figsize=(16, 5), dpi=dpi)
    FigureCanvasAgg(fig)
    roll, form = fig.subplots(1, 2, gridspec_kw={"width_ratios": (3, 1)})
    _draw_roll(roll, score, title)
    n = len(sim)
    edge = (0.5, n + 0.5)
    image = form.imshow(
        sim, cmap="Greys", vmin=0.0, vmax=1.0, origin="lower", extent=(*edge, *edge), interpolation="nearest"
    )
    form.set_xlabel("bar")
    form.set_ylabel("bar")
    first = f", first {n} bars" if n >= MAX_FORM_BARS else ""
    form.set_title(f"bar self-similarity (shared notes{first})", fontsize=10)
    fig.colorbar(image, ax=form, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    atomic_write(out, lambda fh: fig.savefig(fh, format="png", metadata={"Software": None}))
    return out


def _draw_roll(ax: Axes, score: Score, title: str) -> None:
    """The piano roll of ``score`` on ``ax``: one colour per instrument, bar lines where known."""
    import matplotlib
    from matplotlib.patches import Patch

    cmap = matplotlib.colormaps["tab10"]
    handles = []
    lo, hi = 127, 0
    end_s = 0.0
    for k, inst in enumerate(score.instruments):
        if not inst.notes:
            continue
        colour = cmap(k % 10)
        start = score.ticks_to_seconds(np.array([n.start for n in inst.notes], dtype=np.int64))
        end = score.ticks_to_seconds(np.array([max(n.end, n.start + 1) for n in inst.notes], dtype=np.int64))
        pitch = np.array([n.pitch for n in inst.notes])
        ax.barh(pitch, end - start, left=start, height=0.8, color=colour, edgecolor="none", linewidth=0)
        lo, hi = min(lo, int(pitch.min())), max(hi, int(pitch.max()))
        end_s = max(end_s, float(end.max()))
        label = inst.name or program_name(inst.program, inst.is_drum)
        handles.append(Patch(color=colour, label=label))
    bars = drawn_bar_lines(score)
    if 0 < len(bars) <= MAX_BAR_LINES:
        for x in score.ticks_to_seconds(bars):
            ax.axvline(float(x), color="0.85", linewidth=0.6, zorder=0)
    if hi >= lo:
        ax.set_ylim(lo - 1.5, hi + 1.5)
    ax.set_xlim(0, max(end_s, 1e-3))
    ax.set_xlabel("time (s)" + ("; grey lines are bar lines" if 0 < len(bars) <= MAX_BAR_LINES else ""))
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(f"{title}: {score.note_count} notes, {end_s:.1f} s")
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize="small", framealpha=0.8)


def plot_comparison(
    cmp: MusicComparison, path: str | os.PathLike[str], title: str = "", labels: tuple[str, str] = ("", "")
) -> Path:
    """One panel per feature: the reference and sample distributions overlaid, with OA and KL."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ref_label = labels[0] or f"reference ({cmp.reference.pieces})"
    smp_label = labels[1] or f"samples ({cmp.samples.pieces})"
    names = list(cmp.features)
    cols = 4
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names):
        c = cmp.features[name]
        if len(c.x):
            if c.kind == DISCRETE:
                w = 0.42
                ax.bar(c.x - w / 2, c.p, width=w, label=ref_label, color="tab:blue", alpha=0.8)
                ax.bar(c.x + w / 2, c.q, width=w, label=smp_label, color="tab:orange", alpha=0.8)
            else:
                dx = float(c.x[1] - c.x[0]) if len(c.x) > 1 else 1.0
                ax.fill_between(c.x, c.p / dx, alpha=0.35, color="tab:blue", label=ref_label)
                ax.fill_between(c.x, c.q / dx, alpha=0.35, color="tab:orange", label=smp_label)
        kl = "-" if not math.isfinite(c.kl) else f"{c.kl:.3f}"
        ax.set_title(f"{name}: OA {c.oa:.2f}, KL {kl}", fontsize=10)
        ax.set_xlabel(FEATURES[name][2], fontsize=8)
        ax.tick_params(labelsize=7)
    # the last panel: self-similarity and degenerate rates as bars
    extra = axes.flat[len(names)] if len(names) < rows * cols else None
    if extra is not None:
        rs, ss = cmp.reference.similarity(), cmp.samples.similarity()
        rd, sd = cmp.reference.degenerate_summary(), cmp.samples.degenerate_summary()
        keys = ["repeated bars", "chroma sim.", "degenerate"]
        rv = [rs["repeated_bars"] or 0.0, rs["chroma_similarity"] or 0.0, rd["rate"] or 0.0]
        sv = [ss["repeated_bars"] or 0.0, ss["chroma_similarity"] or 0.0, sd["rate"] or 0.0]
        xs = np.arange(len(keys))
        extra.bar(xs - 0.2, rv, width=0.4, color="tab:blue", alpha=0.8, label=ref_label)
        extra.bar(xs + 0.2, sv, width=0.4, color="tab:orange", alpha=0.8, label=smp_label)
        extra.set_xticks(xs, keys, fontsize=8)
        extra.set_ylim(0, 1)
        extra.set_title("structure", fontsize=10)
    for ax in list(axes.flat)[len(names) + (extra is not None) :]:
        ax.axis("off")
    handles, leg_labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, leg_labels, loc="upper right", fontsize=9)
    fig.suptitle(title or f"mean OA {cmp.mean_oa:.3f}, mean KL {cmp.mean_kl:.3f}")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    out = Path(path)
    fig.savefig(out, dpi=100)
    return out
