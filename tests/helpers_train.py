"""Helpers for the model/training/checkpoint tests: a tiny real corpus built from MIDI made in memory."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature, write_midi
from composer.train_config import TrainConfig

MAJOR = (0, 4, 7, 12, 7, 4)


def make_midi_files(folder: Path, n: int = 12, seed: int = 0, bars: int = 8) -> list[Path]:
    """``n`` short, very regular pieces (arpeggios over a bass line, drums in every third piece)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    tpb = 480
    for i in range(n):
        root = 55 + rng.randrange(12)
        vel = rng.choice((64, 80, 96))
        lead = Instrument(program=0, name="lead")
        bass = Instrument(program=32, name="bass")
        tick = 0
        for bar in range(bars):
            chord_root = root + (0, 5, 7, 0)[bar % 4]
            for k in range(8):
                pitch = chord_root + MAJOR[k % len(MAJOR)]
                lead.notes.append(Note(pitch, vel, tick + k * tpb // 2, tick + (k + 1) * tpb // 2))
            bass.notes.append(Note(chord_root - 24, vel, tick, tick + 4 * tpb))
            tick += 4 * tpb
        instruments = [lead, bass]
        if i % 3 == 0:
            drums = Instrument(program=0, is_drum=True, name="drums")
            for beat in range(bars * 4):
                drums.notes.append(Note(36 if beat % 2 == 0 else 38, 100, beat * tpb, beat * tpb + tpb // 4))
            instruments.append(drums)
        score = Score(
            ticks_per_beat=tpb,
            instruments=instruments,
            tempos=[TempoChange(0, 100.0 + 10 * (i % 3))],
            time_signatures=[TimeSignature(0, 4, 4)],
        )
        path = folder / f"piece_{i:02d}.mid"
        write_midi(score, path)
        paths.append(path)
    return paths


def build_tiny_corpus(tmp: Path, n: int = 12, encoding: str = "beat", bars: int = 8) -> Path:
    from composer.corpus import build_corpus

    midi = make_midi_files(tmp / f"midi-{encoding}-{n}-{bars}", n=n, bars=bars)
    out = tmp / f"corpus-{encoding}-{n}-{bars}"
    build_corpus([midi[0].parent], out, encoding=encoding, workers=1, val_fraction=0.2)
    return out


def tiny_config(**overrides: Any) -> TrainConfig:
    """A model and run small enough for a unit test on one CPU thread."""
    base: dict[str, Any] = {
        "preset": "small",
        "embed_dim": 32,
        "hidden_size": 32,
        "num_layers": 2,
        "dropout": 0.1,
        "batch_size": 4,
        "window": 32,
        "lr": 1e-2,
        "min_lr": 1e-3,
        "warmup_steps": 2,
        "max_steps": 20,
        "eval_every": 5,
        "eval_batches": 4,
        "device": "cpu",
        "num_threads": 1,
        "seed": 7,
        # the cache and form fits at the end of a run sample songs of 32+ bars: seconds each time; the tests
        # of that step (test_formfit, test_cli_cache) ask for it
        "fit_cache": False,
    }
    base.update(overrides)
    return TrainConfig(**base)


def metrics_losses(path: Path) -> dict[int, float]:
    from composer.metrics import read_metrics

    return {int(r["step"]): float(r["train_loss"]) for r in read_metrics(path) if r["train_loss"]}


def metrics_rates(path: Path) -> dict[int, float]:
    """Step -> the learning rate that step was taken with, from ``metrics.csv``."""
    from composer.metrics import read_metrics

    return {int(r["step"]): float(r["lr"]) for r in read_metrics(path) if r["lr"]}
