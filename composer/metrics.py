"""A training run's ``metrics.csv`` (one row per optimizer step) and its ``loss.png``.

``MetricsLog`` writes the rows as the run goes (on resume it keeps those up to the resumed step),
``read_metrics`` reads them back (dropping a line torn by a kill), and ``plot_metrics`` draws the loss
curves from the file. ``Throughput`` adds up one invocation's tokens per second.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from composer.fsutil import atomic_write, atomic_write_text

#: The columns of ``metrics.csv``, in order; validation and music columns are empty between evaluations.
METRIC_FIELDS = (
    "step",
    "elapsed_s",
    "lr",
    "train_loss",
    "grad_norm",
    "tokens_per_s",
    "val_loss",
    "val_nats_per_note",
    "music_mean_oa",
    "music_mean_kl",
    "music_repeated_bars",
    "music_degenerate_rate",
    "skipped",
)


class MetricsLog:
    """``metrics.csv``: one row per optimizer step, validation columns filled at evaluations."""

    def __init__(self, path: Path, enabled: bool, keep_through_step: int | None) -> None:
        self.path = path
        self.enabled = enabled
        self._fh: TextIO | None = None
        if not enabled:
            return
        rows = read_metrics(path) if keep_through_step is not None and path.exists() else []
        rows = [r for r in rows if keep_through_step is not None and int(r["step"]) <= keep_through_step]
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, fieldnames=METRIC_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in METRIC_FIELDS})
        atomic_write_text(path, text.getvalue())
        self._fh = open(path, "a", newline="")  # noqa: SIM115 - kept open for the run, closed in close()
        self._writer = csv.DictWriter(self._fh, fieldnames=METRIC_FIELDS)

    def write(self, row: dict[str, Any]) -> None:
        if self._fh is None:
            return
        self._writer.writerow({k: _fmt(row.get(k)) for k in METRIC_FIELDS})
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class Throughput:
    """A training invocation's throughput and train losses, step by step (``TrainResult``'s figures)."""

    def __init__(self, positions_per_step: int) -> None:
        self.positions_per_step = positions_per_step
        self.started = time.perf_counter()
        self.train_time, self.tokens, self.positions = 0.0, 0, 0
        self.losses: list[float] = []
        self.ema_tps: float | None = None

    def add(self, dt: float, tokens: int, loss: float) -> float:
        """Count a step of ``dt`` seconds over ``tokens`` real target tokens; its tokens per second."""
        self.train_time += dt
        self.tokens += tokens
        self.positions += self.positions_per_step
        tps = tokens / dt if dt > 0 else 0.0
        self.ema_tps = tps if self.ema_tps is None else 0.9 * self.ema_tps + 0.1 * tps
        self.losses.append(loss)
        return tps


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a ``metrics.csv``; a torn last line (no newline: a killed run) is dropped."""
    try:
        with open(path, newline="") as fh:
            text = fh.read()
    except FileNotFoundError:
        return []
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows: list[dict[str, str]] = []
    for r in csv.DictReader(io.StringIO(text, newline="")):
        try:
            int(r.get("step") or "")
        except ValueError:
            continue
        if None in r or any(v is None for v in r.values()):
            continue
        rows.append(r)
    return rows


def _finite_points(rows: list[dict[str, str]], key: str) -> list[tuple[int, float]]:
    points = []
    for r in rows:
        try:
            v = float(r[key])
        except (KeyError, ValueError):
            continue
        if math.isfinite(v):
            points.append((int(r["step"]), v))
    return points


def plot_metrics(metrics_path: Path, out_path: Path, title: str = "") -> None:
    """Draw train/val loss (nats/token) and val nats/note to a PNG, atomically, without pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = read_metrics(metrics_path)
    tr = _finite_points(rows, "train_loss")  # skipped (NaN/inf) steps are not drawn
    va = _finite_points(rows, "val_loss")
    vn = _finite_points(rows, "val_nats_per_note")
    fig = Figure(figsize=(9, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2, 1)
    if tr:
        s, v = zip(*tr, strict=True)
        ax.plot(s, v, color="tab:blue", alpha=0.3, linewidth=0.8, label="train")
        k = max(1, len(v) // 50)
        if k > 1:
            smooth = np.convolve(np.asarray(v), np.ones(k) / k, mode="valid")
            ax.plot(s[k - 1 :], smooth, color="tab:blue", linewidth=1.5, label=f"train (mean of {k})")
    if va:
        s, v = zip(*va, strict=True)
        ax.plot(s, v, "o-", color="tab:orange", markersize=3, label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax2 = fig.add_subplot(1, 2, 2)
    if vn:
        s, v = zip(*vn, strict=True)
        ax2.plot(s, v, "o-", color="tab:green", markersize=3)
    ax2.set_xlabel("step")
    ax2.set_ylabel("val loss (nats/note)")
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(out_path, lambda fh: fig.savefig(fh, format="png", metadata={"Software": None}))
