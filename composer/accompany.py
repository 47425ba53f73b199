"""Add parts to a song: its tracks kept note for note, new instruments sampled around them.

The song is encoded with the checkpoint's tokenizer and handed to sampling as a constraint
(``Tokenizer.keep_parts``): at every grid position the kept notes are written as forced tokens in the
encoder's canonical order and the model samples only the added instruments, reading the kept parts as it
goes. The songs span the input's bars, with its tempo and time signatures.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

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
    from composer.device import resolve_device
    from composer.tokenizer import DRUMS

    check_sampling_options(temperature, top_k, top_p)
    if not 1 <= n <= MAX_SONGS:
        raise ConfigError(f"number of songs must be in 1..{MAX_SONGS}, got {n}")
    if not add:
        raise ConfigError("--add needs at least one instrument")
    path = Path(song)
    dev = resolve_device(device)
    ckpt = _checkpoint(checkpoint, dev)
    tok = ckpt.tokenizer
    if not tok.has_bars:
        raise ConfigError(
            f"accompany needs a model with the beat encoding; {ckpt.path} uses the {tok.encoding} encoding"
        )
    try:
        score = read_midi(path)
    except MidiReadError as e:
        raise MidiReadError(f"{path}: {e}") from None
    if score.note_count == 0:
        raise MidiReadError(f"{path}: has no notes to accompany")
    try:
        ids, stats = tok.encode(score)
    except ComposerError as e:
        raise ComposerError(f"{path}: {e}") from None
    lost = stats.lost()
    if lost and notices is not None:
        notices.append(f"{path.name}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in lost.items()))
    keep = {DRUMS if i.is_drum else i.program for i in score.instruments if i.notes}
    both = sorted(keep & set(add))
    if both:
        raise ConfigError(f"--add: {path} already plays {instrument_names(both)}; add other instruments")
    programs, density = corpus_statistics(ckpt)
    if programs is not None:
        unknown = sorted(set(add) - programs)
        if unknown:
            raise ConfigError(
                f"--add: the model never heard {instrument_names(unknown)}; it was trained on "
                f"{instrument_names(sorted(programs))}"
            )
    constraint = tok.keep_parts(np.asarray(ids), set(add))
    g = tok.grammar()
    g.limit_unisons(MAX_UNISON)
    g.limit_empty_bars(MAX_EMPTY_BARS)
    g.limit_programs(keep | set(add))  # every added one plays: the constraint brings each in
    length = Length(bars=constraint.bars, cap=len(ids) * (1 + CAP_PER_KEPT) + 1024)
    raw = sample_ids(
        ckpt.model,
        tok,
        n,
        length,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=torch.Generator(device="cpu").manual_seed(int(seed)),
        device=dev,
        progress=progress,
        grammar=g,
        close_budget=CLOSE_BUDGET + len(ids),
        cache=_cache_config(ckpt, cache),
        constraint=constraint,
    )
    songs = songs_from_sample(raw, tok, density=density)
    want = kept_notes(tok.decode(ids), keep)
    for s in songs:
        if kept_notes(s.score, keep) != want:  # the constraint's promise: never a silent wrong answer
            raise ComposerError(f"song {s.index}: the kept parts of {path} were not kept exactly (a bug)")
    return songs, sum(want.values())
