"""Fuzz MIDI -> tokens -> MIDI with mutated real files, for a fixed time budget.

Each input is a real MIDI file with a few random mutations (bit flips, byte runs overwritten, bytes inserted
or deleted, chunk lengths rewritten, truncation, spliced halves). It goes through the reader, both
encodings, the decoders, the writer and the reader again. A clean ``ComposerError`` (a one-line refusal) is
fine; any other exception, or a round trip that loses notes, is a crash: the input is saved under
``tests/fixtures/fuzz/`` (or ``--save``) so that ``tests/test_hostile.py`` replays it forever.

    python benchmarks/fuzz.py --seconds 60 [--seed 1] [--corpus DIR]

Seeds come from ``corpora/bach/midi`` (built by ``composer corpus bach``), ``--corpus DIR``, or in-memory
fixtures when neither exists.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from composer.errors import ComposerError  # noqa: E402
from composer.midi import parse_midi_bytes, read_midi, write_midi  # noqa: E402
from composer.tokenizer import TokenizerConfig, tokenizer_from_config  # noqa: E402

TOKENIZERS = [tokenizer_from_config(TokenizerConfig(encoding=e)) for e in ("beat", "performance")]


def mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not b:
            break
        op = rng.randrange(7)
        i = rng.randrange(len(b))
        if op == 0:  # flip a bit
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # overwrite a run with random or interesting bytes
            run = bytes(
                rng.choice([0x00, 0x7F, 0x80, 0xFF, rng.randrange(256)]) for _ in range(rng.randint(1, 8))
            )
            b[i : i + len(run)] = run
        elif op == 2:  # insert bytes
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 3:  # delete bytes
            del b[i : i + rng.randint(1, 32)]
        elif op == 4:  # rewrite a chunk length
            j = b.find(b"MTrk", rng.randrange(len(b)))
            if j >= 0 and j + 8 <= len(b):
                b[j + 4 : j + 8] = rng.choice(
                    [0, 1, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 20)]
                ).to_bytes(4, "big")
        elif op == 5:  # truncate
            del b[i:]
        else:  # splice with another file
            other = rng.choice(pool)
            b = b[:i] + bytearray(other[rng.randrange(len(other)) :])
    return bytes(b)


def run_one(data: bytes, workdir: Path) -> str | None:
    """None if fine; else a description of the crash."""
    try:
        score, _ = parse_midi_bytes(data)
    except ComposerError:
        return None
    except Exception:
        return "reader: " + traceback.format_exc(limit=3)
    for tok in TOKENIZERS:
        try:
            ids, stats = tok.encode(score)
        except ComposerError:
            continue
        except Exception:
            return f"{tok.encoding} encode: " + traceback.format_exc(limit=3)
        try:
            decoded = tok.decode(ids)
            path = workdir / "out.mid"
            write_midi(decoded, path)
            back = read_midi(path)
        except Exception:
            return f"{tok.encoding} decode/write/read: " + traceback.format_exc(limit=3)
        if back.note_count != stats.notes_encoded:
            return (
                f"{tok.encoding}: {stats.notes_encoded} notes encoded, {back.note_count} after the round trip"
            )
    return None


def seeds(corpus: Path | None) -> list[bytes]:
    folders = [corpus] if corpus else [ROOT / "corpora" / "bach" / "midi"]
    files = [f for d in folders if d and d.is_dir() for f in sorted(d.rglob("*.mid"))]
    if files:
        return [f.read_bytes() for f in files[:200]]
    sys.path.insert(0, str(ROOT / "tests"))
    from tests.midi_factory import SCORES

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in SCORES.items():
            p = Path(tmp) / f"{name}.mid"
            write_midi(make(), p)
            out.append(p.read_bytes())
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--corpus", type=Path, default=None)
    ap.add_argument("--save", type=Path, default=ROOT / "tests" / "fixtures" / "fuzz")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    pool = seeds(args.corpus)
    ran = refused = crashes = 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        while time.perf_counter() - t0 < args.seconds:
            data = mutate(rng.choice(pool), rng, pool)
            ran += 1
            try:
                parse_midi_bytes(data)
            except ComposerError:
                refused += 1
            except Exception:  # reported by run_one below
                pass
            problem = run_one(data, Path(tmp))
            if problem:
                crashes += 1
                args.save.mkdir(parents=True, exist_ok=True)
                name = hashlib.sha256(data).hexdigest()[:16] + ".mid"
                (args.save / name).write_bytes(data)
                print(f"CRASH saved {args.save / name}: {problem.splitlines()[-1]}")
    elapsed = time.perf_counter() - t0
    print("| inputs | refused cleanly | crashes | seconds | inputs/s |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {ran} | {refused} | {crashes} | {elapsed:.0f} | {ran / elapsed:.0f} |")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
