"""What every benchmark prints about the machine it ran on."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def source_corpora(sources: dict, work, **build_options) -> list:
    """(name, corpus folder) for each named list of MIDI folders that exists here, built once into
    ``work`` (``composer.corpus.build_corpus`` with ``build_options``); prints the ones skipped."""
    from composer.corpus import build_corpus

    out = []
    for name, srcs in sources.items():
        srcs = [s for s in srcs if s.exists()]
        if not srcs:
            print(f"{name}: not here, skipped")
            continue
        folder = work / f"corpus-{name.split()[0]}"
        if not (folder / "manifest.json").exists():
            build_corpus(srcs, folder, encoding="beat", workers=1, **build_options)
        out.append((name, folder))
    return out


def benchmark_runs(checkpoints: list, corpora: list, work, minutes: float, reuse: bool = False) -> list:
    """(name, Checkpoint, Corpus) for each ``NAME=RUN`` in ``checkpoints`` (used as it is) and each
    (name, corpus folder) in ``corpora``: the default model trained ``minutes`` CPU-minutes on 1 thread
    into ``work/run-NAME`` (a run already there is used as it is when ``reuse``)."""
    from composer.checkpoint import load_checkpoint
    from composer.corpus import Corpus
    from composer.train import train
    from composer.train_config import TrainConfig

    runs = []
    for item in checkpoints:
        name, _, path = item.partition("=")
        ckpt = load_checkpoint(path)
        runs.append((name, ckpt, Corpus.open(ckpt.meta["corpus"]["path"])))
    for name, path in corpora:
        run = work / f"run-{name.split()[0]}"
        if not (reuse and (run / "best" / "checkpoint.json").exists()):
            cfg = TrainConfig(device="cpu", num_threads=1, max_minutes=minutes, seed=1337)
            train(path, run, cfg, progress=False, plot=False, overwrite=True)
        runs.append((name, load_checkpoint(run), Corpus.open(path)))
    return runs
