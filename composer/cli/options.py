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


def sampling_options(f: F) -> F:
    """``--temperature``, ``--top-k``, ``--top-p`` and ``--seed``: how songs are sampled."""
    for opt in reversed(
        [
            click.option(
                "--temperature",
                type=float,
                default=1.0,
                show_default=True,
                help="Sampling temperature (> 0).",
            ),
            click.option("--top-k", type=int, default=None, help="Sample only among the k likeliest tokens."),
            click.option(
                "--top-p", type=float, default=None, help="Sample only from the top-p probability mass (0-1]."
            ),
            click.option(
                "--seed",
                type=click.IntRange(0, 2**63 - 1),
                default=None,
                help="Random seed [default: random].",
            ),
        ]
    ):
        f = opt(f)
    return f


def cache_option(f: F) -> F:
    """``--cache/--no-cache``: sample with the checkpoint's neural cache."""
    return click.option(
        "--cache/--no-cache",
        default=None,
        help="Mix the model with its neural cache over each song's own past (fitted by "
        "'composer fit-cache'), so themes come back [default: on where the checkpoint has one].",
    )(f)


def plot_option(f: F) -> F:
    """``--plot``: a picture beside each song."""
    return click.option(
        "--plot",
        is_flag=True,
        help="Also write song_NNN.png per song: its piano roll and, beside it, its bar self-similarity "
        "matrix (bar against bar; a returning section shows as a stripe parallel to the diagonal).",
    )(f)
