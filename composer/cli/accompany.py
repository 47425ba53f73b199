"""``composer accompany``: new parts for a song, its own tracks kept note for note."""

from __future__ import annotations

from pathlib import Path

import click

from composer import __version__
from composer.cli.base import echo_err
from composer.cli.options import (
    cache_option,
    device_option,
    force_option,
    out_folder_option,
    plot_option,
    sampling_options,
)


@click.command("accompany")
@click.argument("song", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("checkpoint", required=False, type=click.Path(path_type=Path))
@click.option(
    "--add",
    required=True,
    help="The instruments to add, e.g. drums,bass (short names, General MIDI names or program numbers "
    "0-127); none that SONG already plays.",
)
@out_folder_option(help="Folder for song_001.mid, song_001.json, ... (created if missing).", dest="out_dir")
@click.option("-n", "--num", "n", type=click.IntRange(1, 1024), default=4, show_default=True, help="Songs.")
@sampling_options
@cache_option
@device_option(default="cpu", help="Where the model runs (sampling itself is always on the CPU).")
@plot_option
@force_option(help="Overwrite songs already in OUT.")
def accompany_command(  # one parameter per option, as click passes them
    song: Path,
    checkpoint: Path | None,
    add: str,
    out_dir: Path,
    n: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int | None,
    cache: bool | None,
    device: str,
    plot: bool,
    force: bool,
) -> None:
    """Add instruments to SONG (a MIDI file) with a trained CHECKPOINT (beat encoding; default
    checkpoints/bach): every note of SONG's tracks is kept, on the model's grid, and only the added
    instruments are sampled, bar for bar with SONG's tempo and time signatures.

    The model reads the kept parts as it goes: at every grid position their notes are written as forced
    tokens and it samples the rest. Each song's sidecar says what was kept and added.

    Example: composer accompany melody.mid -o band/ --add bass,drums -n 4 --seed 1
    """
    import secrets

    from composer.accompany import accompany
    from composer.cli.generate import _default_checkpoint, _echo_songs, _progress
    from composer.conditions import parse_instruments
    from composer.sample import Length, check_sampling_options
    from composer.songs import prepare_out_dir, save_songs

    check_sampling_options(temperature, top_k, top_p)
    checkpoint = checkpoint if checkpoint is not None else _default_checkpoint()
    programs = parse_instruments(add, option="--add")
    prepare_out_dir(out_dir, n=n, plot=plot, force=force, create=False)  # refuse existing files first
    if seed is None:
        seed = secrets.randbelow(2**31)
    with _progress(n, Length(bars=1)) as (tick, notices):
        songs, kept = accompany(
            checkpoint,
            song,
            programs,
            n,
            seed=seed,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            cache=cache,
            device=device,
            progress=tick,
            notices=notices,
        )
    meta = {
        "checkpoint": str(checkpoint),
        "seed": seed,
        "options": {
            "n": n,
            "song": str(song),
            "add": list(programs),
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "cache": cache,
            "device": device,
        },
        "kept_notes": kept,
        "composer_version": __version__,
    }
    paths = save_songs(songs, out_dir, force=force, plot=plot, meta=meta)
    _echo_songs(songs, paths)
    echo_err(f"kept {kept} notes of {song.name} in every song")
    click.echo(f"seed {seed}; {len(paths)} song(s) in {out_dir}")


@click.command("infill")
@click.argument("song", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("checkpoint", required=False, type=click.Path(path_type=Path))
@click.option("--bars", "bar_range", required=True, help="The bars to write again, e.g. 9-12 (from 1).")
@click.option(
    "--tracks",
    default=None,
    help="Write only these instruments again in those bars, e.g. piano,bass; the others keep their notes "
    "[default: all].",
)
@click.option(
    "--tries",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Candidates sampled per song; those that lead best into the bars after the range are kept.",
)
@out_folder_option(help="Folder for song_001.mid, song_001.json, ... (created if missing).", dest="out_dir")
@click.option("-n", "--num", "n", type=click.IntRange(1, 1024), default=4, show_default=True, help="Songs.")
@sampling_options
@cache_option
@device_option(default="cpu", help="Where the model runs (sampling itself is always on the CPU).")
@plot_option
@force_option(help="Overwrite songs already in OUT.")
def infill_command(  # one parameter per option, as click passes them
    song: Path,
    checkpoint: Path | None,
    bar_range: str,
    tracks: str | None,
    tries: int,
    out_dir: Path,
    n: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int | None,
    cache: bool | None,
    device: str,
    plot: bool,
    force: bool,
) -> None:
    """Write bars of SONG (a MIDI file) again with a trained CHECKPOINT (beat encoding; default
    checkpoints/bach): the songs are SONG note for note outside --bars, with new music inside, for all
    its instruments or only --tracks.

    The LSTM reads left to right, so it writes the range after what comes before it; of --tries
    candidates per song, those under which the model finds the bars after the range likeliest are kept,
    so the new bars lead into what follows. The output names each song's fit (nats per token of the bars
    after the range; lower fits better) beside the candidates' mean.

    Example: composer infill song.mid -o fills/ --bars 9-12 -n 4 --seed 1

    Example: composer infill song.mid checkpoints/pop -o fills/ --bars 5-8 --tracks bass
    """
    import secrets

    from composer.accompany import infill, parse_bar_range
    from composer.cli.generate import _default_checkpoint, _echo_songs, _progress
    from composer.conditions import parse_instruments
    from composer.sample import Length, check_sampling_options
    from composer.songs import prepare_out_dir, save_songs

    check_sampling_options(temperature, top_k, top_p)
    lo, hi = parse_bar_range(bar_range)
    checkpoint = checkpoint if checkpoint is not None else _default_checkpoint()
    programs = None if tracks is None else parse_instruments(tracks, option="--tracks")
    prepare_out_dir(out_dir, n=n, plot=plot, force=force, create=False)  # refuse existing files first
    if seed is None:
        seed = secrets.randbelow(2**31)
    with _progress(n, Length(bars=1)) as (tick, notices):
        res = infill(
            checkpoint,
            song,
            (lo, hi),
            n,
            tracks=programs,
            tries=tries,
            seed=seed,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            cache=cache,
            device=device,
            progress=tick,
            notices=notices,
        )
    meta = {
        "checkpoint": str(checkpoint),
        "seed": seed,
        "options": {
            "n": n,
            "song": str(song),
            "bars": [lo, hi],
            "tracks": None if programs is None else list(programs),
            "tries": tries,
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "cache": cache,
            "device": device,
        },
        "composer_version": __version__,
    }
    paths = []
    for i, s in enumerate(res.songs):
        fit = {"after_range_nats_per_token": round(res.after_nats[i], 4)} if res.after_nats else {}
        paths += save_songs([s], out_dir, force=True if i else force, plot=plot, meta={**meta, **fit})
    _echo_songs(res.songs, paths)
    if res.after_nats:
        mean = sum(res.candidates_nats) / len(res.candidates_nats)
        fits = ", ".join(f"{x:.3f}" for x in res.after_nats)
        echo_err(
            f"fit to the bars after {hi}: {fits} nats/token (the {len(res.candidates_nats)} candidates: "
            f"{mean:.3f} on average)"
        )
    click.echo(f"seed {seed}; {len(paths)} song(s) in {out_dir}")
