"""Options that several commands declare, each with its choices taken from the library."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from composer.tokenizer.config import ENCODINGS

F = TypeVar("F", bound=Callable[..., object])


def encoding_option(*, help: str, default: str | None = None, show_default: bool = False) -> Callable[[F], F]:
    """``--encoding`` with the tokenizer's encodings as choices."""
    return click.option(
        "--encoding", type=click.Choice(ENCODINGS), default=default, show_default=show_default, help=help
    )


def device_option(*, default: str, help: str) -> Callable[[F], F]:
    """``--device`` with ``composer.device.DEVICE_CHOICES`` as choices (imports torch)."""
    from composer.device import DEVICE_CHOICES

    return click.option(
        "--device", type=click.Choice(DEVICE_CHOICES), default=default, show_default=True, help=help
    )


def out_folder_option(*, help: str, dest: str = "out") -> Callable[[F], F]:
    """``-o/--out``: a folder (created if missing), required."""
    return click.option(
        "-o", "--out", dest, required=True, type=click.Path(file_okay=False, path_type=Path), help=help
    )


def force_option(*, help: str) -> Callable[[F], F]:
    return click.option("--force", is_flag=True, help=help)
