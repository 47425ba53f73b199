"""``composer train`` (its options derived from ``TrainConfig``), ``composer info`` (a checkpoint) and
``composer fit-cache`` (a checkpoint's neural cache)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, TypeVar

import click

from composer.cache import FIT_TOKENS
from composer.cli.base import echo_err
from composer.cli.options import device_option, out_folder_option
from composer.errors import ConfigError
from composer.model import PRESETS
from composer.train_config import PRESET_LR, TrainConfig

F = TypeVar("F", bound=Callable[..., object])

#: TrainConfig's defaults: those of the train options, each named after its field (--threads: num_threads).
DEFAULTS: dict[str, object] = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}


def config_option(
    *decls: str,
    field: str,
    help: str,
    type: click.ParamType | None = None,
    show_default: bool = True,
) -> Callable[[F], F]:
    """An option that sets TrainConfig ``field`` (its parameter name), defaulting to the field's default."""
    default = DEFAULTS[field]
    return click.option(
        *decls,
        field,
        type=type,
        default=default,
        show_default=show_default and default is not None,
        help=help,
    )


def _sci(x: float) -> str:
    """5e-3, not 0.005 or 5e-03."""
    mantissa, exponent = f"{x:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


LR_DEFAULTS = ", ".join(f"{preset} {_sci(lr)}" for preset, lr in PRESET_LR.items())


@click.command("train")
@click.argument("corpus_dir", metavar="CORPUS", type=click.Path(path_type=Path))
@out_folder_option(help="Run folder for checkpoints, metrics.csv and loss.png, e.g. checkpoints/NAME.")
@config_option(
    "--preset",
    field="preset",
    type=click.Choice(list(PRESETS)),
    help="Model size: small (CPU minutes), medium, large (3 x 512, for a GPU).",
)
@config_option(
    "--tie-weights/--no-tie-weights",
    field="tie_weights",
    help="Share the embedding matrix with the output layer [default: the preset's, tied]; untied is what "
    "learnt benchmarks/long_lag.py's 1,000-token lag.",
)
@device_option(
    default=str(DEFAULTS["device"]), help="Where to train; auto picks CUDA, then MPS, then the CPU."
)
@config_option(
    "--batch-size", field="batch_size", type=click.IntRange(min=1), help="Pieces streamed in parallel."
)
@config_option(
    "--window",
    field="window",
    type=click.IntRange(min=1),
    help="Tokens per backpropagation window (the LSTM state carries across windows).",
)
@config_option(
    "--lr",
    field="lr",
    type=click.FloatRange(min=0.0, min_open=True),
    help=f"Peak learning rate (warm-up, then cosine decay to a tenth of it) [default: {LR_DEFAULTS}].",
)
@config_option(
    "--max-steps",
    field="max_steps",
    type=click.IntRange(min=1),
    help="Optimizer steps to train for (in total, counting a resumed run's earlier steps).",
)
@config_option(
    "--max-minutes",
    field="max_minutes",
    type=click.FloatRange(min=0.0, min_open=True),
    help="Also stop after this many minutes (this invocation).",
)
@config_option(
    "--eval-every",
    field="eval_every",
    type=click.IntRange(min=1),
    help="Steps between validation runs (each saves last/, and best/ when it improves).",
)
@config_option(
    "--patience",
    field="patience",
    type=click.IntRange(min=0),
    help="Stop after this many validations without improvement (0: never).",
)
@click.option("--resume", is_flag=True, help="Continue the run in OUT exactly where it stopped.")
@click.option("--overwrite", is_flag=True, help="Replace a run already in OUT instead of refusing.")
@config_option("--seed", field="seed", type=click.IntRange(min=0), help="Random seed.")
@config_option(
    "--amp/--no-amp",
    field="amp",
    help="Mixed precision on CUDA (float16 autocast with loss scaling).",
)
@config_option(
    "--grad-accum",
    field="grad_accum",
    type=click.IntRange(min=1),
    help="Windows accumulated per optimizer step.",
)
@config_option(
    "--transpose",
    field="transpose",
    type=click.IntRange(min=0, max=127),
    help="Augmentation: transpose each piece by up to this many semitones either way (drums never). "
    "It costs likelihood in runs of minutes, and regularises long runs on a small corpus.",
)
@config_option(
    "--velocity-jitter",
    field="velocity_jitter",
    type=click.IntRange(min=0, max=127),
    help="Augmentation: shift each piece's velocities by up to this many bins either way.",
)
@config_option(
    "--time-stretch",
    field="time_stretch",
    type=click.FloatRange(min=0.0, max=0.5),
    help="Augmentation (performance encoding): stretch each piece's timing by up to this fraction.",
)
@config_option(
    "--threads",
    field="num_threads",
    type=click.IntRange(min=0),
    show_default=False,
    help="CPU threads for torch [default: one per four cores].",
)
@config_option(
    "--music-stats",
    field="music_samples",
    type=click.IntRange(min=0, max=256),
    help="Songs sampled at each validation to log music statistics (Yang & Lerch overlap with the data) "
    "to metrics.csv; 0: off.",
)
@config_option(
    "--cell-penalty",
    field="cell_penalty",
    type=click.FloatRange(min=0.0, max=1e3),
    help="Penalty on carried LSTM cells beyond +-(--cell-limit), so the state stays useful over long "
    "pieces; 0: off.",
)
@config_option(
    "--cell-limit",
    field="cell_limit",
    type=click.FloatRange(min=0.0, max=1e6),
    help="Cell values inside +-this are free of the penalty.",
)
@config_option(
    "--chrono-init",
    field="chrono_init",
    type=click.IntRange(min=0, max=1 << 24),
    help="Chrono initialisation of the LSTM gate biases (Tallec & Ollivier 2018) for time scales up to "
    "this many tokens [default: twice --window]; 0: off (forget-gate bias 1).",
)
@config_option(
    "--fit-cache/--no-fit-cache",
    field="fit_cache",
    help="At the end, fit the neural cache (copying from the piece's own past) on the validation split.",
)
@config_option(
    "--conditions",
    field="conditions",
    help="What generation can steer by: auto (every attribute and label column the corpus has), none, "
    "or a comma list of key, density, tempo, labels, label:COLUMN.",
)
@config_option(
    "--condition-dropout",
    field="condition_dropout",
    type=click.FloatRange(0.0, 1.0),
    help="Chance that each condition of a piece is hidden (NONE) in training, so songs asked for "
    "nothing stay good.",
)
@click.pass_context
def train_command(
    ctx: click.Context, corpus_dir: Path, out: Path, resume: bool, overwrite: bool, **options: Any
) -> None:
    """Train an LSTM on a corpus (from 'composer corpus build' or 'composer corpus bach').

    Shows a progress bar with loss, tokens/s and the time left; validates every --eval-every steps and
    keeps OUT/last (to resume) and OUT/best (lowest validation loss), plus OUT/metrics.csv and
    OUT/loss.png. Ctrl-C stops after the current step and saves; --resume continues exactly (even after a
    crash). With --resume, only the options you give override the run's stored settings.

    Example: composer train corpora/bach -o checkpoints/bach --max-minutes 5
    """
    from click.core import ParameterSource

    from composer.runstate import load_train_config
    from composer.train import train

    given = {k: v for k, v in options.items() if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT}
    if "lr" in given:
        given["min_lr"] = None  # the cosine floor follows the new peak
    stored = load_train_config(out) if resume else None
    config = stored.replace(**given) if stored is not None else TrainConfig(**options)
    interactive = sys.stderr.isatty()
    result = train(
        corpus_dir,
        out,
        config,
        resume=resume,
        progress=interactive,
        overwrite=overwrite,
        run_args={"argv": sys.argv[1:]},
        log=None if interactive else echo_err,
    )
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 alone reports
        return
    minutes = result.elapsed_s / 60
    click.echo(
        f"{result.steps} steps ({result.stop_reason.replace('_', ' ')}), {minutes:.1f} min, "
        f"{result.tokens_per_s:,.0f} tokens/s"
    )
    if result.best_val_loss is not None:
        click.echo(f"best validation loss {result.best_val_loss:.4f} nats/token at step {result.best_step}")
    if result.val_loss is not None and result.val_nats_per_note is not None:
        click.echo(
            f"last validation loss {result.val_loss:.4f} nats/token, {result.val_nats_per_note:.3f} nats/note"
        )
    click.echo(f"checkpoints in {out} (best/, last/, metrics.csv, loss.png)")
    if result.stop_reason == "interrupted":
        echo_err(f"interrupted: continue with  composer train {corpus_dir} -o {out} --resume")
        ctx.exit(130)


@click.command("info")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def info_command(checkpoint: Path, as_json: bool) -> None:
    """Describe a checkpoint (a run folder means its best/, else last/): model, vocabulary, corpus, steps.

    Example: composer info checkpoints/bach
    """
    from composer.checkpoint import checkpoint_info

    s = checkpoint_info(checkpoint)
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    for k, v in _info_rows(s):
        click.echo(f"{k:>14}  {v}")


def _info_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    m = s["model_config"]
    tied = ", tied embedding" if m["tie_weights"] else ""
    best = s["best_val_loss"]
    rows = [
        ("checkpoint", s["checkpoint"]),
        ("model", f"LSTM {m['num_layers']} x {m['hidden_size']}, embedding {m['embed_dim']}{tied}, "
                  f"dropout {m['dropout']}, {s['parameters']:,} parameters"),
        ("vocabulary", f"{s['vocab_size']} tokens ({s['encoding']} encoding)"),
        ("corpus", f"{s['corpus']} (fingerprint {s['corpus_fingerprint']})"),
        ("steps", str(s["step"])),
        ("best val loss", "-" if best is None else f"{best:.4f} nats/token at step {s['best_step']}"),
    ]  # fmt: skip
    if s["val_loss"] is not None:
        per_note = s["val_nats_per_note"]
        rows.append(
            (
                "last val loss",
                f"{s['val_loss']:.4f} nats/token"
                + ("" if per_note is None else f", {per_note:.3f} nats/note"),
            )
        )
    tc = s["train_config"] or {}
    keys: tuple[str, ...] = ("preset", "batch_size", "window", "lr", "max_steps", "seed", "device", "amp")
    if tc.get("lr") is None and tc.get("preset") in PRESET_LR:  # the preset's rate was used
        tc = {**tc, "lr": f"{PRESET_LR[tc['preset']]:g} (the preset's)"}
    if "chrono_init" in tc:  # checkpoints from before chrono init have no such field
        try:
            tokens = TrainConfig.from_dict(s["train_config"]).chrono_tokens
        except ConfigError:  # a config this version cannot read: its stored value as it is
            tokens = tc["chrono_init"]
        chrono = f"{tokens} (twice the window)" if tc["chrono_init"] is None else tokens
        tc = {**tc, "chrono_init": "off" if tokens == 0 else chrono}
        keys = (*keys, "chrono_init")
    rows.append(("training", ", ".join(f"{k} {tc[k]}" for k in keys if k in tc)))
    rows.append(("cache", cache_summary(s.get("cache"))))
    rows.append(("conditions", conditions_summary(s.get("conditions"), tc)))
    rows.append(("written", f"{s['created']} by composer {s['composer_version']}"))
    return rows


def conditions_summary(stored: Any, train_config: dict[str, Any]) -> str:
    """The ``conditions`` line of ``composer info``: each condition and its values (what generate's
    --key, --density, --tempo, --label accept)."""
    from composer.conditions import ConditionSet

    if stored is None:
        return "none (generate cannot steer it by key, density, tempo or label)"
    try:
        cs = ConditionSet.from_dict(stored)
    except ConfigError as e:
        return f"unreadable ({e})"
    drop = train_config.get("condition_dropout")
    parts = "; ".join(f"{name}: {values}" for name, values in cs.describe())
    return parts + ("" if drop is None else f" (each dropped in training with p {drop:g})")


def cache_summary(stored: Any) -> str:
    """The ``cache`` line of ``composer info``: the stored config and how the fit went."""
    if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
        return "none (composer fit-cache CHECKPOINT fits one)"
    c = stored["config"]
    if c.get("lam", 0) > 0:
        text = f"theta {c.get('theta'):g}, lambda {c.get('lam'):g}, size {c.get('size')}"
    else:
        text = "off (lambda 0: it did not help on its fitting data)"
    fit = stored.get("fit")
    if isinstance(fit, dict) and fit.get("nll_model") is not None and fit.get("nll_cache") is not None:
        text += f" (fit: {fit['nll_model']:.2f} -> {fit['nll_cache']:.2f} nats/token on {_fit_data(fit)})"
    sampling = fit.get("sampling") if isinstance(fit, dict) else None
    if c.get("sample_lam") is not None and isinstance(sampling, dict):
        text += (
            f"; sampling lambda {c['sample_lam']:g}"
            + (f" copying from {c['sample_min_lag']}+ tokens back" if c.get("sample_min_lag") else "")
            + " (songs repeat bars like the held-out music: "
            f"{float(sampling.get('reference_share') or 0):.0%} of {sampling.get('bars')} bars)"
        )
    return text


def _fit_data(fit: dict[str, Any]) -> str:
    tokens = f"{int(fit.get('targets') or 0):,}"
    if fit.get("data") and fit.get("split") is None:
        return f"{tokens} tokens of {fit['data']}"
    return f"{tokens} validation tokens"


@click.command("fit-cache")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click.option(
    "--tokens",
    "max_tokens",
    type=click.IntRange(min=1),
    default=FIT_TOKENS,
    show_default=True,
    help="Tokens of DATA to fit on, at most.",
)
@device_option(default="auto", help="Where the model runs.")
def fit_cache_command(checkpoint: Path, data: Path | None, max_tokens: int, device: str) -> None:
    """Fit the neural cache of a CHECKPOINT (a run folder: its best/ and last/) on held-out DATA.

    The cache mixes the model's prediction with what followed similar moments earlier in the same piece
    (Grave et al. 2017); its theta, lambda and size are chosen for the lowest NLL on DATA (a corpus: its
    validation split, or a folder of MIDI files; default the training corpus's validation split) and
    stored in the checkpoint, where 'composer evaluate' uses them. A lambda of 0 means the cache does not
    help: it is stored as off.

    Example: composer fit-cache checkpoints/bach
    """
    from composer.evaluate import fit_cache_on_data

    fits = fit_cache_on_data(
        checkpoint,
        data,
        max_tokens=max_tokens,
        device=device,
        log=echo_err,
    )
    for f in fits:
        names = " and ".join(p.name for p in f.folders)
        c, fit = f.fit.config, f.fit
        where = f"{f.data_path} validation split" if f.data_kind == "corpus" else str(f.data_path)
        if c.enabled:
            verdict = f"theta {c.theta:g}, lambda {c.lam:g}, size {c.size}"
        else:
            verdict = "lambda 0: the cache does not help on this data, stored as off"
        click.echo(f"cache of {names} (step {f.step}): {verdict}")
        click.echo(
            f"  NLL on {fit.targets:,} tokens of {where}: {fit.nll_model:.4f} nats/token without the "
            f"cache, {fit.nll_cache:.4f} with it"
        )
        if f.sampling is not None:
            s = f.sampling
            warm = f", copying from {s.min_lag}+ tokens back" if s.min_lag else ""
            click.echo(
                f"  sampling lambda {s.sample_lam:g}{warm}: songs of {s.bars} bars repeat bars as the "
                f"data's {s.reference_share:.0%} without losing its texture (by lambda: {s.describe_tried()})"
                if s.tried
                else f"  sampling lambda {s.sample_lam:g}, as for likelihood: the data repeats "
                f"{s.reference_share:.0%} of its bars, too few to match"
            )
        click.echo(f"  stored in {', '.join(str(w) for w in f.written)}")
