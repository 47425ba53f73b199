"""``composer evaluate``: a checkpoint's likelihood, long-range gain and music statistics."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from composer.baselines import MAX_ORDER, MIN_ORDER
from composer.cli.base import echo_err
from composer.cli.options import device_option
from composer.errors import ComposerError
from composer.evaluate import DEFAULT_NGRAM_ORDER
from composer.longrange import DEFAULT_DISTANCES, MAX_TARGETS


def _distances(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        ds = tuple(int(x) for x in value.replace(" ", "").split(",") if x)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated token counts, got {value!r}") from None
    if any(d < 1 for d in ds):
        raise click.BadParameter(f"distances must be at least 1, got {value!r}")
    return ds


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write every figure to this JSON file.",
)
@click.option(
    "--samples",
    type=click.IntRange(0, 1024),
    default=16,
    show_default=True,
    help="Songs to generate and compare with the data (0: skip the music statistics).",
)
@click.option(
    "--samples-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Compare these already generated MIDI files instead of generating new ones.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a figure of each feature's distribution, samples against the data (PNG).",
)
@click.option(
    "--distances",
    default=",".join(map(str, DEFAULT_DISTANCES)),
    show_default=True,
    callback=_distances,
    help="Long-range test: history lengths (tokens) the model is cut to; empty to skip.",
)
@click.option(
    "--targets",
    type=click.IntRange(min=1),
    default=MAX_TARGETS,
    show_default=True,
    help="Long-range test: target tokens measured (at most), the same for every distance.",
)
@click.option(
    "--order",
    type=click.IntRange(MIN_ORDER, MAX_ORDER),
    default=DEFAULT_NGRAM_ORDER,
    show_default=True,
    help="Order of the n-gram baseline.",
)
@click.option(
    "--cache/--no-cache",
    default=None,
    help="Also measure the LSTM mixed with its neural cache (fitted by 'composer fit-cache') "
    "[default: when the checkpoint has one].",
)
@click.option(
    "--controls",
    "control_songs",
    type=click.IntRange(min=0),
    default=0,
    help="Also measure whether the controls are obeyed, with this many songs per requested value: key, "
    "density and tempo levels, labels (a classifier trained on the labelled pieces), instruments.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Sampling seed.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Sampling temperature.")
@device_option(default="auto", help="Where the model runs.")
def evaluate_command(
    checkpoint: Path,
    data: Path | None,
    json_path: Path | None,
    samples: int,
    samples_dir: Path | None,
    plot_path: Path | None,
    distances: tuple[int, ...],
    targets: int,
    order: int,
    cache: bool | None,
    control_songs: int,
    seed: int,
    temperature: float,
    device: str,
) -> None:
    """Measure a CHECKPOINT on DATA: a folder of MIDI files or a corpus (its validation split).

    Prints nats per token and per note (with unigram and n-gram baselines fit on the training corpus),
    how much the model gains from context older than --distances tokens (beside the share of tokens that
    copying from that far back predicts), and how samples compare with the data on Yang & Lerch's music
    statistics and in form (repeated bars, loops). With the checkpoint's fitted neural cache, the
    likelihood and the long-range gain also with the cache. Without DATA, the corpus the checkpoint was
    trained on.

    Example: composer evaluate checkpoints/bach corpora/bach --json eval.json --plot eval.png

    Example: composer evaluate checkpoints/bach --samples 0 --distances '' --controls 8
    """
    from composer.eval_report import format_report, report_json
    from composer.evaluate import evaluate_checkpoint
    from composer.sample import check_sampling_options

    check_sampling_options(temperature, None, None)
    if plot_path is not None and samples == 0 and samples_dir is None:
        raise ComposerError("--plot draws the music statistics: give --samples N or --samples-dir")
    ev = evaluate_checkpoint(
        checkpoint,
        data,
        samples=samples,
        samples_dir=samples_dir,
        distances=distances,
        ngram_order=order,
        max_targets=targets,
        cache=cache,
        seed=seed,
        temperature=temperature,
        device=device,
        log=echo_err if sys.stderr.isatty() else _quiet,
    )
    click.echo(format_report(ev.report))
    if control_songs:
        ev.report["controls"] = _controls(checkpoint, data, control_songs, seed, temperature, device)
    if json_path is not None:
        try:
            json_path.write_text(report_json(ev.report))
        except OSError as e:
            raise ComposerError(f"{json_path}: cannot write ({e.strerror or e})") from None
        click.echo(f"figures written to {json_path}")
    if plot_path is not None and ev.music is not None:
        from composer.plot import plot_comparison

        try:
            plot_comparison(ev.music, plot_path, title=f"{ev.report['checkpoint']}: samples vs data")
        except OSError as e:
            raise ComposerError(f"{plot_path}: cannot write ({e.strerror or e})") from None
        click.echo(f"distributions drawn in {plot_path}")


def _controls(
    checkpoint: Path, data: Path | None, songs: int, seed: int, temperature: float, device: str
) -> dict[str, object]:
    """``--controls``: measured and printed as a table."""
    from composer.checkpoint import load_checkpoint
    from composer.controls import ControlOptions, controls_table, labelled_corpus, measure_controls
    from composer.device import resolve_device

    ckpt = load_checkpoint(checkpoint, device=resolve_device(device))
    corpus = labelled_corpus(ckpt, None if data is None else str(data))
    opts = ControlOptions(songs=songs, seed=seed, temperature=temperature)
    result = measure_controls(ckpt, corpus, opts, log=echo_err if sys.stderr.isatty() else _quiet)
    rows = controls_table(result)
    click.echo("\ncontrols (songs asked for each value, measured)")
    if not rows:
        click.echo("  none: the checkpoint has no conditions and records no instruments")
    width = max((len(r[0]) for r in rows), default=0)
    for name, measured, target in rows:
        click.echo(f"  {name:<{width}}  {measured}" + (f"  [target {target}]" if target else ""))
    return result


def _quiet(msg: str) -> None:
    pass
