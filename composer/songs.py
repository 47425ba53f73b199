"""Songs in and out of generation: a primer read from MIDI, and the generated songs written as files.

Each song is ``song_NNN.mid`` plus ``song_NNN.json`` (the run's options, the song's notes, seconds, bars,
tokens, warnings, ``cut``: whether a length limit stopped it, ``repeated_bars``: the share of its bars that
repeat an earlier one exactly and up to transposition, ``cache``: whether the neural cache was used and its
config) and, when asked, ``song_NNN.png``: the piano roll with the bar self-similarity matrix beside it.
Existing files are never overwritten without ``force``, and that is checked before anything is sampled.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from composer.errors import ComposerError, ConfigError, MidiReadError
from composer.midi import Score, program_name, read_midi

if TYPE_CHECKING:  # pragma: no cover
    from composer.cache import CacheConfig
    from composer.form import BarRepeats
    from composer.sample import SampleOutput
    from composer.tokenizer import Tokenizer

#: The longest primer, in tokens.
MAX_PRIMER_TOKENS = 500_000


@dataclass
class GeneratedSong:
    """One generated piece: its tokens, the decoded Score, and what it came to."""

    index: int  # 1-based place in the batch
    ids: np.ndarray
    score: Score
    notes: int
    seconds: float
    bars: int | None  # bars (an encoding with bars), None otherwise
    tokens: int
    primer_notes: int = 0
    warnings: list[str] = field(default_factory=list)
    #: A limit stopped it: the token cap before its length, or closed by force after the close budget.
    cut: bool = False
    #: How its bars repeat (``composer.form.bar_repeats``), where it was measured.
    repeats: BarRepeats | None = None
    #: The neural cache it was sampled with, None without one.
    cache: CacheConfig | None = None

    def stats(self) -> dict[str, Any]:
        rep = self.repeats
        return {
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "bars": self.bars,
            "tokens": self.tokens,
            "primer_notes": self.primer_notes,
            "warnings": list(self.warnings),
            "cut": self.cut,
            "repeated_bars": {
                "exact": None if rep is None else _round(rep.exact),
                "transposed": None if rep is None else _round(rep.transposed),
            },
            "cache": {"used": self.cache is not None, **(self.cache.to_dict() if self.cache else {})},
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def songs_from_sample(
    raw: SampleOutput,
    tok: Tokenizer,
    *,
    bpm: float | None = None,
    density: float | None = None,
    min_seconds: float = 0.0,
    primer_notes: int = 0,
) -> list[GeneratedSong]:
    """The sampled rows decoded (given one tempo, ``bpm``, if asked), each with its warnings.

    ``density``: the training music's notes per second, ``min_seconds``: the length asked for (both for
    ``degenerate_warnings``).
    """
    from composer.form import bar_repeats
    from composer.musicstats import degenerate_warnings

    songs = []
    for i, ids in enumerate(raw.ids):
        score = tok.decode(ids)
        if bpm is not None:
            score = tok.retime(score, bpm)
        warns = degenerate_warnings(score, density, min_seconds=min_seconds)
        if raw.hit_cap[i]:
            warns.append(f"stopped by the token cap ({raw.token_cap} tokens) before the requested length")
        if raw.forced[i]:
            warns.append(
                f"did not end within {raw.close_budget} tokens of the requested end; closed by force"
            )
        songs.append(
            GeneratedSong(
                index=i + 1,
                ids=ids,
                score=score,
                notes=score.note_count,
                seconds=score.duration_seconds,
                bars=int(raw.bars[i]) if tok.has_bars else None,
                tokens=len(ids),
                primer_notes=primer_notes,
                warnings=warns,
                cut=bool(raw.cut[i]),
                repeats=bar_repeats(score),
                cache=raw.cache,
            )
        )
    return songs


# ------------------------------------------------------------------------------------------------ primer


def encode_primer(path: Path, tok: Tokenizer) -> tuple[np.ndarray, Score]:
    """A primer MIDI file as token ids (BOS ..., EOS dropped); one-line errors naming the file."""
    try:
        score = read_midi(path)
    except MidiReadError as e:
        raise MidiReadError(f"primer {path}: {e}") from None
    if score.note_count == 0:
        raise MidiReadError(f"primer {path}: has no notes")
    try:
        ids, _stats = tok.encode(score)
    except ComposerError as e:
        raise ComposerError(f"primer {path}: {e}") from None
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) and ids[-1] == tok.eos_id:
        ids = ids[:-1]
    if len(ids) > MAX_PRIMER_TOKENS:
        raise ConfigError(f"primer {path}: {len(ids)} tokens, more than the {MAX_PRIMER_TOKENS} allowed")
    return ids, score


def check_primer_programs(path: Path, score: Score, programs: set[int]) -> None:
    """Refuse a primer that plays instruments (PROGRAM values, drums as DRUMS) the model never saw."""
    from composer.tokenizer import DRUMS

    used = {DRUMS if i.is_drum else i.program for i in score.instruments if i.notes}
    unseen = sorted(used - programs)
    if unseen:
        names = ", ".join(f"{program_name(p if p < DRUMS else 0, p == DRUMS)} (program {p})" for p in unseen)
        raise ConfigError(f"primer {path} uses instruments the model never saw: {names}")


# ---------------------------------------------------------------------------------------------- saving


def song_paths(out_dir: Path, n: int, plot: bool) -> list[Path]:
    """Every file ``save_songs`` will write for ``n`` songs."""
    paths = []
    for i in range(1, n + 1):
        stem = f"song_{i:03d}"
        paths += [out_dir / f"{stem}.mid", out_dir / f"{stem}.json"]
        if plot:
            paths.append(out_dir / f"{stem}.png")
    return paths


def prepare_out_dir(out_dir: Path, n: int, plot: bool, force: bool, create: bool = True) -> None:
    """Check, before anything is generated, that every song file may be written; create ``out_dir``.

    With ``create=False`` nothing is touched: the folder (or the nearest existing folder above it) must
    be a writable folder, and without ``force`` none of the files may exist yet.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ComposerError(f"{out_dir}: cannot write songs there (it is a file, not a folder)")
    if not force and out_dir.is_dir():
        for p in song_paths(out_dir, n, plot):
            if p.exists():
                raise ComposerError(f"{p} exists (use --force to overwrite)")
    if not create:
        _check_creatable(out_dir)
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ComposerError(f"{out_dir}: cannot create the output folder ({e.strerror or e})") from None
    probe = out_dir / f".composer-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ComposerError(f"{out_dir}: output folder is not writable ({e.strerror or e})") from None


def _check_creatable(out_dir: Path) -> None:
    """The nearest existing folder at or above ``out_dir`` is a folder we may write in."""
    above = out_dir
    while not above.exists() and above != above.parent:
        above = above.parent
    if above.exists() and not above.is_dir():
        raise ComposerError(f"{out_dir}: cannot create the output folder ({above} is a file)")
    if not os.access(above, os.W_OK | os.X_OK):
        raise ComposerError(f"{out_dir}: cannot write songs there ({above} is not writable)")


def save_songs(
    songs: list[GeneratedSong],
    out_dir: str | os.PathLike[str],
    force: bool = False,
    plot: bool = False,
    meta: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``song_NNN.mid`` + ``song_NNN.json`` (+ ``song_NNN.png`` with ``plot``: the piano roll and
    the bar self-similarity matrix, ``composer.plot.plot_song``) for each song.

    ``meta`` (checkpoint, options, seed ...) goes into every sidecar. Existing files are refused without
    ``force`` before anything is written. Returns the MIDI paths.
    """
    from composer.fsutil import atomic_write_text
    from composer.midi import write_midi

    out = Path(out_dir)
    prepare_out_dir(out, max((s.index for s in songs), default=0), plot, force)
    written = []
    for s in songs:
        stem = f"song_{s.index:03d}"
        mid = out / f"{stem}.mid"
        try:
            write_midi(s.score, mid)
            sidecar = {"file": mid.name, **(meta or {}), "index": s.index, **s.stats()}
            atomic_write_text(out / f"{stem}.json", json.dumps(sidecar, indent=2) + "\n")
            if plot:
                from composer.plot import plot_song

                plot_song(s.score, out / f"{stem}.png", title=stem)
        except OSError as e:
            raise ComposerError(f"{mid}: cannot write ({e.strerror or e})") from None
        written.append(mid)
    return written
