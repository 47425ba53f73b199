"""``composer generate``: new songs from a trained checkpoint."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from composer import __version__
from composer.cli.base import echo_err, progress_bar
from composer.cli.live import port_options
from composer.cli.options import (
    cache_option,
    device_option,
    force_option,
    out_folder_option,
    plot_option,
    sampling_options,
)
from composer.errors import ComposerError

if TYPE_CHECKING:  # pragma: no cover
    from composer.sample import Length
    from composer.songs import GeneratedSong


@click.command("generate")
@click.argument("checkpoint", required=False, type=click.Path(path_type=Path))
@out_folder_option(help="Folder for song_001.mid, song_001.json, ... (created if missing).", dest="out_dir")
@click.option("-n", "--num", "n", type=click.IntRange(1, 1024), default=4, show_default=True, help="Songs.")
@click.option(
    "--seconds", type=float, default=None, help="Length in seconds, after the primer [default: 30]."
)
@click.option("--bars", type=int, default=None, help="Length in bars, after the primer (beat encoding).")
@click.option("--tokens", type=int, default=None, help="Length in tokens, after the primer.")
@sampling_options
@click.option(
    "--primer",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A MIDI file the songs continue (kept unchanged at their start).",
)
@click.option(
    "--bpm",
    type=float,
    default=None,
    help="One tempo for the songs (20-400). Beat encoding: the model is steered to it and the files "
    "carry exactly it. Performance encoding: notes keep their times, the files' grid gets this tempo.",
)
@cache_option
@click.option(
    "--label",
    "labels",
    multiple=True,
    help="Steer to a label of the training corpus: VALUE (e.g. sad) or COLUMN=VALUE (e.g. valence=1); "
    "repeatable. 'composer info' lists what the model knows.",
)
@click.option("--key", default=None, help="Steer to a key, e.g. 'D minor', 'F# major', 'Bb'.")
@click.option(
    "--density", default=None, help="Steer to a note-density level: low, mid or high (corpus terciles)."
)
@click.option("--tempo", default=None, help="Steer to a tempo level: low, mid or high (--bpm sets it too).")
@click.option(
    "--instruments",
    default=None,
    help="Play only these instruments, e.g. piano,bass,drums (short names, General MIDI names or "
    "program numbers 0-127; the grammar admits no other).",
)
@device_option(default="cpu", help="Where the model runs (sampling itself is always on the CPU).")
@plot_option
@click.option(
    "--live",
    is_flag=True,
    help="Play the songs to a MIDI port as they are sampled, each sampled while the one before plays "
    "(files are written as usual; each sidecar's seed makes its song again with -n 1).",
)
@port_options
@force_option(help="Overwrite songs already in OUT.")
def generate_command(  # one parameter per option, as click passes them
    checkpoint: Path | None,
    out_dir: Path,
    n: int,
    seconds: float | None,
    bars: int | None,
    tokens: int | None,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int | None,
    primer: Path | None,
    bpm: float | None,
    cache: bool | None,
    labels: tuple[str, ...],
    key: str | None,
    density: str | None,
    tempo: str | None,
    instruments: str | None,
    device: str,
    plot: bool,
    live: bool,
    port: str | None,
    virtual: bool,
    force: bool,
) -> None:
    """Write N new songs from a trained CHECKPOINT (a run folder or checkpoint; default checkpoints/bach).

    The songs are sampled as one batch and are valid by construction: every note is closed and each
    piece ends cleanly near the requested length (after the primer, if any). The same checkpoint,
    options and --seed give byte-identical files. Each song gets a JSON sidecar with its options and
    statistics; warnings flag degenerate output (long silences, one repeated note, very few notes, one
    or two bars over and over). Where the checkpoint has a fitted neural cache it is used (--no-cache
    samples from the LSTM alone); the sidecar says whether it was.

    A model trained with conditions (the default wherever the corpus has them) can be steered by key,
    note density, tempo level and the corpus's labels; --instruments limits any model to some of the
    instruments it was trained on.

    Example: composer generate checkpoints/bach -o songs/ -n 4 --bars 16 --seed 1 --plot

    Example: composer generate checkpoints/bach -o minor/ --key "D minor" --density high

    Example: composer generate -o live/ -n 8 --live --virtual   (record the 'composer' port in a DAW)
    """
    import secrets

    from composer.checkpoint import load_checkpoint
    from composer.conditions import parse_instruments, steering
    from composer.device import resolve_device
    from composer.sample import Length, check_bpm, check_sampling_options, generate
    from composer.songs import prepare_out_dir, save_songs

    if (port is not None or virtual) and not live:
        raise click.UsageError("--port and --virtual play songs as they are sampled: add --live")
    length = Length(seconds=seconds, bars=bars, tokens=tokens)
    check_sampling_options(temperature, top_k, top_p)
    check_bpm(bpm)
    checkpoint = checkpoint if checkpoint is not None else _default_checkpoint()
    prepare_out_dir(out_dir, n=n, plot=plot, force=force, create=False)  # refuse existing files first
    programs = None if instruments is None else parse_instruments(instruments)
    ckpt = load_checkpoint(checkpoint, device=resolve_device(device))
    conditions = steering(
        ckpt.tokenizer.conditions, labels=labels, key=key, density=density, tempo=tempo, bpm=bpm
    )
    if seed is None:
        seed = secrets.randbelow(2**31)
    options = {
        "n": n,
        **length.to_dict(),
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "primer": None if primer is None else str(primer),
        "bpm": bpm,
        "cache": cache,
        "conditions": conditions,
        "instruments": None if programs is None else list(programs),
        "device": device,
    }
    meta = {
        "checkpoint": str(ckpt.path),
        "checkpoint_step": ckpt.step,
        "seed": seed,
        "options": options,
        "composer_version": __version__,
    }
    make = functools.partial(
        generate,
        ckpt,
        length=length,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        primer=primer,
        bpm=bpm,
        cache=cache,
        device=device,
        conditions=conditions,
        instruments=programs,
    )
    if live:
        _generate_live(make, out_dir, n, seed, meta, plot=plot, force=force, port=port, virtual=virtual)
        return
    with _progress(n, length) as (tick, notices):
        songs = make(n=n, seed=seed, progress=tick, notices=notices)
    paths = save_songs(songs, out_dir, force=force, plot=plot, meta=meta)
    _echo_songs(songs, paths)
    click.echo(f"seed {seed}; {len(paths)} song(s) in {out_dir}")


def _generate_live(
    make: Callable[..., list[GeneratedSong]],
    out_dir: Path,
    n: int,
    seed: int,
    meta: dict[str, Any],
    *,
    plot: bool,
    force: bool,
    port: str | None,
    virtual: bool,
) -> None:
    """Song i is sampled alone with seed + i - 1 (its sidecar says so) while song i - 1 plays."""
    from composer.live import open_output, stream
    from composer.songs import prepare_out_dir, save_songs

    def songs() -> Iterator[Path]:
        prepare_out_dir(out_dir, n=n, plot=plot, force=force)  # checked for all n before the first
        for i in range(1, n + 1):
            notices: list[str] = []
            (song,) = make(n=1, seed=seed + i - 1, notices=notices)
            song.index = i
            (path,) = save_songs([song], out_dir, force=True, plot=plot, meta={**meta, "seed": seed + i - 1})
            for msg in notices:
                echo_err(f"note: {msg}")
            _echo_songs([song], [path])
            yield path

    with open_output(port, virtual=virtual) as (out, name):
        echo_err(f"sampling song 1 of {n}; songs play on {name} as they come; Ctrl-C stops")

        def on_song(path: Path, events: list[Any]) -> None:
            secs = events[-1].time if events else 0.0
            echo_err(f"playing {path.name} ({secs:.1f} s)")

        reports = stream(songs(), out, on_song=on_song)
    late = max((r.late_max for r in reports), default=0.0)
    click.echo(
        f"seed {seed}; {len(reports)} song(s) played and written to {out_dir}; latest message "
        f"{1e3 * late:.1f} ms late"
    )


def _echo_songs(songs: list[GeneratedSong], paths: list[Path]) -> None:
    for s, p in zip(songs, paths):
        bars_txt = "" if s.bars is None else f", {s.bars} bars"
        click.echo(f"{p}: {s.notes} notes, {s.seconds:.1f} s{bars_txt}, {s.tokens} tokens")
        for w in s.warnings:
            echo_err(f"warning: {p.name}: {w}")


def _default_checkpoint() -> Path:
    from composer.sample import DEFAULT_CHECKPOINT

    if not DEFAULT_CHECKPOINT.exists():
        raise ComposerError(
            f"no CHECKPOINT given and the default {DEFAULT_CHECKPOINT} does not exist: train it first "
            f"(make demo, or: composer corpus bach && composer train corpora/bach -o {DEFAULT_CHECKPOINT})"
        )
    return DEFAULT_CHECKPOINT


@contextlib.contextmanager
def _progress(n: int, length: Length) -> Iterator[tuple[Callable[[float, float], None], list[str]]]:
    """A progress bar over the songs' length: yields ``generate``'s ``progress`` callback and a list for
    its ``notices``, echoed as ``note:`` lines once it is done."""
    notices: list[str] = []
    with progress_bar(f"generating {n} song{'s' * (n > 1)}", total=None, unit=length.unit) as pb:
        pb.total = length.amount

        def tick(done: float, total: float) -> None:
            if total != pb.total:  # a length known only once sampling starts (accompany: the song's bars)
                pb.total = total
            pb.update(done - pb.n)

        yield tick, notices
    for msg in notices:
        echo_err(f"note: {msg}")
