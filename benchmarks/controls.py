"""Are the controls obeyed? ``composer.controls.measure_controls`` on trained checkpoints, as one table.

    python benchmarks/controls.py [CHECKPOINT ...] [--songs N] [--bars N] [--seed S] [--json OUT]

For each checkpoint (default: ``checkpoints/bach``, where it exists) songs are generated for each value
of each condition it was trained with, and measured with the same analysers the corpus uses: key accuracy
beside the unconditioned songs' share in that key (chance), density and tempo levels (ordered, share in the
asked level's corpus range), instruments (only those asked; all of them), labels (a classifier trained on
the labelled training pieces: asked label recognised in songs against true label in held-out real pieces;
held-out pieces likelier under their own label). Targets from issue #13: key >= 80%, density ordered and
>= 70% in range, instruments 100%, labels: songs recognised at least as often as real pieces.

The label and key checks read the checkpoint's training corpus (where it still exists). Threads: one (set
before torch starts), as generation uses. Nothing to measure: a message, exit 0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from composer.checkpoint import load_checkpoint  # noqa: E402
from composer.controls import ControlOptions, controls_table, labelled_corpus, measure_controls  # noqa: E402
from composer.errors import ComposerError  # noqa: E402

DEFAULT = ROOT / "checkpoints" / "bach"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="*", type=Path)
    ap.add_argument("--songs", type=int, default=8, help="songs per requested value")
    ap.add_argument("--bars", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    paths = args.checkpoints or ([DEFAULT] if DEFAULT.exists() else [])
    if not paths:
        print(f"no checkpoint given and {DEFAULT} does not exist (make demo trains it); nothing to measure")
        return 0
    import platform

    import torch

    torch.set_num_threads(1)
    print(f"# controls, {datetime.date.today()}, {platform.processor() or platform.machine()}, 1 thread")
    print(f"# {args.songs} songs of {args.bars} bars per requested value, seed {args.seed}")
    out = {}
    for path in paths:
        try:
            ckpt = load_checkpoint(path)
        except ComposerError as e:
            print(f"{path}: {e}")
            continue
        corpus = labelled_corpus(ckpt, None)
        t0 = time.perf_counter()
        result = measure_controls(
            ckpt, corpus, ControlOptions(songs=args.songs, bars=args.bars, seed=args.seed), log=print
        )
        result["seconds"] = round(time.perf_counter() - t0, 1)
        out[str(path)] = result
        where = corpus.path if corpus else "gone: no label checks"
        print(f"\n## {path} (corpus {where}), {result['seconds']} s")
        print("| control | measured | target |\n|---|---|---|")
        for name, measured, target in controls_table(result):
            print(f"| {name} | {measured} | {target} |")
        for name in ("key", "density", "tempo", "instruments"):
            for row in (result.get(name) or {}).get("rows", []):
                print(f"  {name}: {row}")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
