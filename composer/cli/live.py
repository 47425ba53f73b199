"""``composer play`` and ``composer ports``: MIDI out to a synth or DAW in real time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from composer.cli.base import echo_err

F = TypeVar("F", bound=Callable[..., Any])


def port_options(f: F) -> F:
    """``--port`` and ``--virtual``, shared by ``play`` and ``generate --live``."""
    f = click.option(
        "--virtual",
        is_flag=True,
        help="Open a new virtual MIDI port (named by --port, default 'composer') that a DAW can record "
        "from, instead of sending to an existing one (Linux, macOS).",
    )(f)
    f = click.option(
        "--port",
        default=None,
        help="MIDI output to play to: its name or part of it ('composer ports' lists them) "
        "[default: the first that is not Midi Through].",
    )(f)
    return f


@click.command("play")
@click.argument("song", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@port_options
def play_command(song: Path, port: str | None, virtual: bool) -> None:
    """Play a MIDI file to a MIDI output port in real time (needs the 'live' extra: python-rtmidi).

    Ctrl-C stops it and turns every note off.

    Example: composer play songs/song_001.mid --port FLUID

    Example: composer play songs/song_001.mid --virtual   (then record the 'composer' port in the DAW)
    """
    from composer.live import open_output, play, timeline

    events = timeline(song)
    seconds = events[-1].time if events else 0.0
    with open_output(port, virtual=virtual) as (out, name):
        echo_err(f"playing {song} ({seconds:.1f} s, {len(events)} messages) on {name}; Ctrl-C stops")
        report = play(events, out)
    click.echo(f"{song}: {report.describe()}")


@click.command("ports")
def ports_command() -> None:
    """List the MIDI output ports 'composer play' and 'composer generate --live' can play to.

    Example: composer ports
    """
    from composer.live import output_names

    names = output_names()
    if not names:
        echo_err("no MIDI output ports: start a synth or DAW, or play with --virtual")
    for n in names:
        click.echo(n)
