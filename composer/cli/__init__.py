"""The ``composer`` command line. Thin: parse options, call library functions, print what they return.

Every domain failure (ComposerError) becomes one line on stderr and exit status 1; ``--debug`` shows the
traceback instead. Each command group lives in a module of its own (``data``, ``train``, ``generate``,
``render``, ``live``, ``evaluate``), imported only when one of its commands runs or is listed, so the data
commands never wait for torch to load.
"""

from __future__ import annotations

import importlib

import click

from composer import __version__
from composer.cli.base import ComposerGroup

#: Command name -> "module:attribute" of its click command.
COMMANDS = {
    "accompany": "composer.cli.accompany:accompany_command",
    "corpus": "composer.cli.data:corpus",
    "decode": "composer.cli.data:decode",
    "encode": "composer.cli.data:encode",
    "evaluate": "composer.cli.evaluate:evaluate_command",
    "fit-cache": "composer.cli.train:fit_cache_command",
    "generate": "composer.cli.generate:generate_command",
    "info": "composer.cli.train:info_command",
    "infill": "composer.cli.accompany:infill_command",
    "play": "composer.cli.live:play_command",
    "ports": "composer.cli.live:ports_command",
    "render": "composer.cli.render:render_command",
    "train": "composer.cli.train:train_command",
}


class LazyGroup(ComposerGroup):
    """The top-level group: each command imported from ``COMMANDS`` when it is first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="composer")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Learn music from a folder of MIDI files with an LSTM, and write new pieces for your DAW."""
    ctx.meta["composer.debug"] = debug


__all__ = ["main"]
