"""Work inside a song: add parts to it (``accompany``) or write some of its bars again (``infill``).

The song is encoded with the checkpoint's tokenizer and handed to sampling as a constraint
(``Tokenizer.keep_parts``): at every grid position the kept notes are written as forced tokens in the
encoder's canonical order and the model samples only the rest, reading the kept parts as it goes. The
songs span the input's bars, with its tempo and time signatures.

The LSTM reads left to right, so a bar range written again has not seen what follows it. ``infill``
therefore samples several candidates for each song and keeps those under which the model finds the kept
bars after the range likeliest (p(middle | before) x p(after | before, middle) ranks the middles by how
well they lead into what comes after).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from composer.errors import ComposerError, ConfigError, MidiReadError
from composer.midi import Score, read_midi
from composer.sample import (
    CLOSE_BUDGET,
    MAX_EMPTY_BARS,
    MAX_SONGS,
    MAX_UNISON,
    Length,
    ProgressFn,
    _cache_config,
    _checkpoint,
    check_sampling_options,
    corpus_statistics,
    sample_ids,
)
from composer.songs import GeneratedSong, songs_from_sample

if TYPE_CHECKING:  # pragma: no cover
    from composer.checkpoint import Checkpoint
    from composer.tokenizer import Tokenizer
    from composer.tokenizer.grammar import Constraint

#: Tokens a song may sample per kept token, beyond the kept tokens themselves (a cap well above music).
CAP_PER_KEPT = 8


def kept_notes(score: Score, programs: set[int]) -> Counter[tuple[int, int, int, int, int]]:
    """The notes of ``programs`` (drums as 128) as (program, pitch, start, end, velocity) ticks at 480."""
    from composer.tokenizer import DRUMS

    out: Counter[tuple[int, int, int, int, int]] = Counter()
    scale = 480 / score.ticks_per_beat
    for inst in score.instruments:
        p = DRUMS if inst.is_drum else inst.program
        if p in programs:
            for n in inst.notes:
                out[(p, n.pitch, round(n.start * scale), round(n.end * scale), n.velocity)] += 1
    return out


@dataclass
class _Song:
    """A song read for working inside it: its tokens, decoded notes and the instruments it plays."""

    path: Path
    ids: np.ndarray
    decoded: Score
    programs: set[int]


def _read_song(path: Path, tok: Tokenizer, notices: list[str] | None, what: str) -> _Song:
    from composer.tokenizer import DRUMS

    try:
        score = read_midi(path)
    except MidiReadError as e:
        raise MidiReadError(f"{path}: {e}") from None
    if score.note_count == 0:
        raise MidiReadError(f"{path}: has no notes to {what}")
    try:
        ids, stats = tok.encode(score)
    except ComposerError as e:
        raise ComposerError(f"{path}: {e}") from None
    lost = stats.lost()
    if lost and notices is not None:
        notices.append(f"{path.name}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in lost.items()))
    programs = {DRUMS if i.is_drum else i.program for i in score.instruments if i.notes}
    return _Song(path, np.asarray(ids, dtype=np.int64), tok.decode(ids), programs)


def _beat_checkpoint(checkpoint: str | os.PathLike[str] | None, device: str, command: str) -> Checkpoint:
    from composer.device import resolve_device

    ckpt = _checkpoint(checkpoint, resolve_device(device))
    if not ckpt.tokenizer.has_bars:
        raise ConfigError(
            f"{command} needs a model with the beat encoding; {ckpt.path} uses the "
            f"{ckpt.tokenizer.encoding} encoding"
        )
    return ckpt


def _sample_kept(
    ckpt: Checkpoint,
    song: _Song,
    constraint: Constraint,
    programs: set[int],
    n: int,
    *,
    seed: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    cache: bool | None,
    progress: ProgressFn | None,
) -> list[GeneratedSong]:
    """``n`` songs sampled under ``constraint``, playing only ``programs``, each checked against it."""
    tok = ckpt.tokenizer
    g = tok.grammar()
    g.limit_unisons(MAX_UNISON)
    g.limit_empty_bars(MAX_EMPTY_BARS)
    g.limit_programs(programs)  # an added instrument plays: the constraint brings each in
    length = Length(bars=constraint.bars, cap=len(song.ids) * (1 + CAP_PER_KEPT) + 1024)
    raw = sample_ids(
        ckpt.model,
        tok,
        n,
        length,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=torch.Generator(device="cpu").manual_seed(int(seed)),
        device=next(ckpt.model.parameters()).device,
        progress=progress,
        grammar=g,
        close_budget=CLOSE_BUDGET + len(song.ids),
        cache=_cache_config(ckpt, cache),
        constraint=constraint,
    )
    songs = songs_from_sample(raw, tok, density=corpus_statistics(ckpt)[1])
    for s in songs:  # the constraint's promise, checked: never a silent wrong answer
        if not constraint.kept_in(s.ids):
            raise ComposerError(
                f"song {s.index}: the kept parts of {song.path} were not kept exactly (a bug)"
            )
    return songs


def accompany(
    checkpoint: str | os.PathLike[str] | None,
    song: str | os.PathLike[str],
    add: Sequence[int],
    n: int = 4,
    *,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    cache: bool | None = None,
    device: str = "cpu",
    progress: ProgressFn | None = None,
    notices: list[str] | None = None,
) -> tuple[list[GeneratedSong], int]:
    """``n`` songs that play ``song``'s tracks note for note (on the encoding's grid) with instruments
    ``add`` (programs, drums 128) sampled around them. ``notices`` collects what the encoding could not
    keep exactly (pitches out of range, time signatures moved). Returns the songs and the kept notes."""
    from composer.conditions import instrument_names

    check_sampling_options(temperature, top_k, top_p)
    _check_n(n)
    if not add:
        raise ConfigError("--add needs at least one instrument")
    ckpt = _beat_checkpoint(checkpoint, device, "accompany")
    s = _read_song(Path(song), ckpt.tokenizer, notices, "accompany")
    both = sorted(s.programs & set(add))
    if both:
        raise ConfigError(f"--add: {s.path} already plays {instrument_names(both)}; add other instruments")
    programs = corpus_statistics(ckpt)[0]
    if programs is not None:
        unknown = sorted(set(add) - programs)
        if unknown:
            raise ConfigError(
                f"--add: the model never heard {instrument_names(unknown)}; it was trained on "
                f"{instrument_names(sorted(programs))}"
            )
    constraint = ckpt.tokenizer.keep_parts(s.ids, set(add))
    songs = _sample_kept(
        ckpt, s, constraint, s.programs | set(add), n, seed=seed, temperature=temperature, top_k=top_k,
        top_p=top_p, cache=cache, progress=progress,
    )  # fmt: skip
    want = kept_notes(s.decoded, s.programs)
    for x in songs:
        if kept_notes(x.score, s.programs) != want:
            raise ComposerError(f"song {x.index}: the kept parts of {s.path} were not kept exactly (a bug)")
    return songs, sum(want.values())


def _check_n(n: int) -> None:
    if not 1 <= n <= MAX_SONGS:
        raise ConfigError(f"number of songs must be in 1..{MAX_SONGS}, got {n}")


def parse_bar_range(text: str) -> tuple[int, int]:
    """``9-12`` -> (9, 12); ``5`` -> (5, 5). ConfigError naming ``--bars`` otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(text))
    if not m:
        raise ConfigError(f"--bars: {text!r} is not a bar range like 9-12 (bars count from 1)")
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if not 1 <= lo <= hi:
        raise ConfigError(f"--bars: {text!r} must run from a first bar >= 1 to a last bar >= it")
    return lo, hi


@dataclass
class Infilled:
    """``infill``'s songs, best first, and how the kept bars after the range fared (nats per token)."""

    songs: list[GeneratedSong]
    after_nats: list[float]  # per song; empty where the range runs to the end
    candidates_nats: list[float]  # every candidate sampled, for comparison


def infill(
    checkpoint: str | os.PathLike[str] | None,
    song: str | os.PathLike[str],
    bars: tuple[int, int],
    n: int = 4,
    *,
    tracks: Sequence[int] | None = None,
    tries: int = 4,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    cache: bool | None = None,
    device: str = "cpu",
    progress: ProgressFn | None = None,
    notices: list[str] | None = None,
) -> Infilled:
    """``n`` songs identical to ``song`` outside ``bars`` (first, last; 1-based), with new music inside:
    for all its instruments, or only ``tracks`` (programs; the others keep their notes there too).
    ``tries`` candidates are sampled per song and the ones that best lead into the bars after the range
    are kept (the model's likelihood of those bars)."""
    from composer.conditions import instrument_names
    from composer.nll import piece_nlls

    check_sampling_options(temperature, top_k, top_p)
    _check_n(n)
    if not 1 <= tries <= 64:
        raise ConfigError(f"--tries must be in 1..64, got {tries}")
    if n * tries > MAX_SONGS:
        raise ConfigError(f"-n x --tries must be at most {MAX_SONGS}, got {n * tries}")
    ckpt = _beat_checkpoint(checkpoint, device, "infill")
    tok = ckpt.tokenizer
    s = _read_song(Path(song), tok, notices, "infill")
    total = int((s.ids == tok.vocab.encode_event("BAR")).sum())
    lo, hi = bars
    if hi > total:
        raise ConfigError(f"--bars {lo}-{hi}: {s.path} has {total} bar{'s' * (total != 1)}")
    free = set(s.programs if tracks is None else tracks)
    missing = sorted(free - s.programs)
    if missing:
        raise ConfigError(
            f"--tracks: {s.path} does not play {instrument_names(missing)}; it plays "
            f"{instrument_names(sorted(s.programs))}"
        )
    constraint = tok.keep_parts(s.ids, set(), free_bars=(lo, hi), free_programs=free)
    after = hi < total
    k = tries if after else 1  # nothing after the range: nothing to rank by
    cands = _sample_kept(
        ckpt, s, constraint, s.programs, n * k, seed=seed, temperature=temperature, top_k=top_k,
        top_p=top_p, cache=cache, progress=progress,
    )  # fmt: skip
    if not after:
        return Infilled(cands, [], [])
    bar_id = tok.vocab.encode_event("BAR")
    starts = [int(np.flatnonzero(c.ids == bar_id)[hi]) for c in cands]  # the first BAR after the range
    nlls = piece_nlls(ckpt.model, [c.ids.astype(np.int64) for c in cands], pad_id=tok.pad_id)
    score = [float(nl[st - 1 :].mean()) for nl, st in zip(nlls, starts)]  # nll[j] is token j + 1's
    order = sorted(range(len(cands)), key=lambda i: score[i])[:n]
    songs = [cands[i] for i in order]
    for j, x in enumerate(songs):
        x.index = j + 1
    return Infilled(songs, [score[i] for i in order], score)
