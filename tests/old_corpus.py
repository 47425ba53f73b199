"""A built corpus rewritten as builds before piece tables wrote it (manifest format_version 1, the pieces
listed in the manifest as JSON), to test that such corpora still open."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from composer.corpus import Corpus, Piece


def v1_entry(p: Piece) -> dict[str, Any]:
    attributes = None
    if p.attributes is not None:
        attributes = {
            **p.attributes.to_dict(),
            "density_level": p.density_level,
            "tempo_level": p.tempo_level,
        }
    return {
        "path": p.path,
        "sha256": p.sha256,
        "offset": p.offset,
        "length": p.length,
        "notes": p.notes,
        "seconds": p.seconds,
        "split": p.split,
        "pitch_min": p.pitch_min,
        "pitch_max": p.pitch_max,
        "programs": list(p.programs),
        "lost": p.lost,
        "attributes": attributes,
        "labels": p.labels,
    }


def write_v1(out: Path) -> dict[str, Any]:
    """Rewrite the corpus in ``out`` as a format_version 1 manifest (its piece table removed); returns it."""
    c = Corpus.open(out)
    m = dict(c.manifest)
    m["format_version"] = 1
    table = out / m.pop("pieces_file")
    del m["pieces"]
    m["files"] = [v1_entry(p) for p in c.pieces()]
    (out / "manifest.json").write_text(json.dumps(m, indent=1))
    table.unlink()
    return m
