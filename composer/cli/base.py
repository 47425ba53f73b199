"""What every command shares: the group that turns failures into one line, the progress bar, counts."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from composer.errors import ComposerError

if TYPE_CHECKING:  # pragma: no cover
    from tqdm import tqdm


class ComposerGroup(click.Group):
    """A click group that turns ComposerError (and Ctrl-C) into one clean line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ComposerError as e:
            if ctx.meta.get("composer.debug"):
                raise
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            if ctx.meta.get("composer.debug"):
                raise
            raise click.ClickException("interrupted") from None
        except OSError as e:  # a full disk, a permission, a vanished file: still one line
            if ctx.meta.get("composer.debug"):
                raise
            from composer.fsutil import describe_os_error

            where = f"{e.filename}: " if e.filename else ""
            raise click.ClickException(f"{where}{describe_os_error(e)}") from None


def progress_bar(desc: str, total: int | None = None, unit: str = "it") -> tqdm[NoReturn]:
    """A tqdm bar on stderr, shown only on a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None, file=sys.stderr, dynamic_ncols=True)


def fmt_counts(counts: dict[str, int]) -> str:
    """``{"time_signatures_moved": 4}`` -> ``time signatures moved 4``."""
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())


def echo_err(msg: str) -> None:
    click.echo(msg, err=True)
