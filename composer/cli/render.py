"""``composer render``: a MIDI file to WAV."""

from __future__ import annotations

from pathlib import Path

import click

from composer.cli.options import force_option


@click.command("render")
@click.argument("song", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="WAV file to write [default: SONG with .wav].",
)
@click.option(
    "--soundfont",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="General MIDI soundfont (.sf2) [default: $COMPOSER_SOUNDFONT or a system one].",
)
@click.option("--sample-rate", type=click.IntRange(8000, 192000), default=44100, show_default=True)
@force_option(help="Overwrite OUT if it exists.")
def render_command(
    song: Path, out: Path | None, soundfont: Path | None, sample_rate: int, force: bool
) -> None:
    """Render a MIDI file to WAV with FluidSynth or TiMidity++ (whichever is installed).

    Example: composer render songs/song_001.mid -o song_001.wav
    """
    from composer.render import render

    r = render(song, out, soundfont=soundfont, sample_rate=sample_rate, force=force)
    sf = f" with {r.soundfont}" if r.soundfont is not None else ""
    click.echo(f"{song} -> {r.path} ({r.bytes / 1e6:.1f} MB, {r.tool}{sf})")
