"""Piano-roll pictures of a Score: one colour per instrument, time in seconds, bar lines where known.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no display, no global state), so it is
safe in any process and the same score gives the same PNG.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from composer.fsutil import atomic_write
from composer.midi import Score, program_name

#: Bar lines are drawn only when there are at most this many (beyond that they are a grey blur).
MAX_BAR_LINES = 400


def bar_starts(score: Score) -> np.ndarray:
    """Ticks at which bars start, from the time signatures, up to the end of the last note."""
    end = score.end_tick
    sigs = sorted(score.time_signatures, key=lambda t: t.tick)
    if not sigs or end <= 0:
        return np.zeros(0, dtype=np.int64)
    starts: list[int] = []
    tpb = score.ticks_per_beat
    for k, ts in enumerate(sigs):
        stop = sigs[k + 1].tick if k + 1 < len(sigs) else end
        step = max(1, tpb * 4 * ts.numerator // ts.denominator)
        starts.extend(range(ts.tick, stop, step))
        if len(starts) > MAX_BAR_LINES:
            break
    return np.array(starts, dtype=np.int64)


def plot_piano_roll(score: Score, path: str | os.PathLike[str], title: str = "", dpi: int = 100) -> Path:
    """Write ``score`` as a piano-roll PNG at ``path`` and return the path."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=(12, 5), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
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
    bars = bar_starts(score)
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
    fig.tight_layout()
    out = Path(path)
    atomic_write(out, lambda fh: fig.savefig(fh, format="png", metadata={"Software": None}))
    return out
