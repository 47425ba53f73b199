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
