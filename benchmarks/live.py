"""Does ``generate --live`` keep time while the next song is sampled? Lateness of every message, as one table.

    python benchmarks/live.py [CHECKPOINT] [--songs N] [--bars N] [--seed S] [--repeats R]

The pipeline ``composer generate --live`` runs (``composer.live.stream`` over songs sampled one by one
with ``composer.sample.generate``, each written to a file, the next sampled in a background thread while
one plays) sends to a test port that records when each message arrives. Rows:

* **quiet**: the first song played alone, nothing else running (the scheduler's own floor);
* **live**: the whole stream, the sampler busy beside the player (what a user hears);
* **live, 5 ms switch**: the same with Python's default thread switch interval, the reference the
  scheduler's 0.5 ms interval (``composer.live.SWITCH_S``) is measured against;
* **waited**: how long each song after the first started after the previous one ended plus the gap
  (zero where the sampler kept ahead: generation faster than real time).

Lateness = arrival - due time. Target: p95 under 5 ms, max under 20 ms, no waiting. Default checkpoint:
``checkpoints/bach``; none there, a message and exit 0. Threads: one (sampling uses one).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.machine import cpu_name  # noqa: E402

DEFAULT = ROOT / "checkpoints" / "bach"


class Recorder:
    def __init__(self) -> None:
        self.at: list[float] = []

    def send(self, msg) -> None:
        self.at.append(time.perf_counter())


def lateness(events, at, start) -> list[float]:
    return [a - start - e.time for e, a in zip(events, at)]


def row(name: str, late: list[float], extra: str = "") -> str:
    late = sorted(late)
    p = lambda f: 1e3 * late[min(len(late) - 1, int(f * len(late)))]  # noqa: E731
    return f"| {name} | {len(late)} | {p(0.5):.2f} | {p(0.95):.2f} | {1e3 * late[-1]:.2f} | {extra} |"


def run_stream(ckpt, out: Path, n: int, bars: int, seed: int, gap: float):
    """One ``generate --live`` run into a Recorder: per song (events, arrival times, start)."""
    from composer import live
    from composer.sample import Length, generate
    from composer.songs import save_songs

    def songs():
        for i in range(1, n + 1):
            t0 = time.perf_counter()
            (song,) = generate(ckpt, n=1, seed=seed + i - 1, length=Length(bars=bars))
            song.index = i
            (path,) = save_songs([song], out, force=True)
            sampled.append(time.perf_counter() - t0)
            yield path

    port, sampled, per_song = Recorder(), [], []

    def on_song(path, events) -> None:
        per_song.append([events, len(port.at), time.perf_counter()])

    def on_played(path, report) -> None:
        per_song[-1].append(time.perf_counter())

    live.stream(songs(), port, gap=gap, on_song=on_song, on_played=on_played)
    res = []
    for events, first, start, end in per_song:
        res.append((events, port.at[first : first + len(events)], start, end))
    return res, sampled


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", nargs="?", type=Path, default=None)
    ap.add_argument("--songs", type=int, default=3)
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gap", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    path = args.checkpoint or (DEFAULT if DEFAULT.exists() else None)
    if path is None:
        print(f"no checkpoint given and {DEFAULT} does not exist (make demo trains it); nothing to measure")
        return 0
    import torch

    from composer import live
    from composer.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    ckpt = load_checkpoint(path)
    print(f"# live, {datetime.date.today()}, {cpu_name()}, 1 thread; {path}")
    print(f"# {args.songs} songs of {args.bars} bars per run, gap {args.gap} s, {args.repeats} runs each")
    print("| run | messages | median ms late | p95 | max | |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for switch, name in ((live.SWITCH_S, "live"), (0.005, "live, 5 ms switch")):
                saved = live.SWITCH_S
                live.SWITCH_S = switch
                try:
                    res, sampled = run_stream(ckpt, Path(tmp), args.songs, args.bars, args.seed, args.gap)
                finally:
                    live.SWITCH_S = saved
                late = [x for events, at, start, _ in res for x in lateness(events, at, start)]
                waited = [max(0.0, res[k][2] - res[k - 1][3] - args.gap) for k in range(1, len(res))]
                secs = [events[-1].time for events, *_ in res]
                print(
                    row(
                        f"{name} #{rep + 1}",
                        late,
                        f"sampling {statistics.mean(sampled):.1f} s per {statistics.mean(secs):.1f} s song; "
                        f"waited {max(waited, default=0) * 1e3:.0f} ms max",
                    )
                )
            events = live.timeline(Path(tmp) / "song_001.mid")
            port = Recorder()
            t0 = time.perf_counter()
            live.play(events, port)
            print(row(f"quiet #{rep + 1}", lateness(events, port.at, t0), "nothing else running"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
