"""The ``composer`` command line. Thin: parse options, call library functions, print what they return.

Every domain failure (ComposerError) becomes one line on stderr and exit status 1; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from composer import __version__
from composer.errors import ComposerError

DEFAULT_BACH_CORPUS = Path("corpora/bach")


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


def progress_bar(desc: str, total: int | None = None, unit: str = "it") -> Any:
    """A tqdm bar on stderr, shown only on a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None, file=sys.stderr, dynamic_ncols=True)


@click.group(cls=ComposerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="composer")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Learn music from a folder of MIDI files with an LSTM, and write new pieces for your DAW."""
    ctx.meta["composer.debug"] = debug


# ------------------------------------------------------------------------------------------- encode/decode

ENCODING_CHOICE = click.Choice(["beat", "performance"])
TOKEN_HEADER = "# composer-tokens "


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the token files (created if missing).",
)
@click.option("--encoding", type=ENCODING_CHOICE, default="beat", show_default=True, help="Token encoding.")
@click.option("--force", is_flag=True, help="Overwrite token files that already exist.")
def encode(inputs: tuple[Path, ...], out_dir: Path, encoding: str, force: bool) -> None:
    """Write MIDI files (or every MIDI file in folders) as readable token files, one token per line.

    Example: composer encode song.mid more_songs/ -o tokens/
    """
    from composer.corpus import encode_file, find_midi_files
    from composer.tokenizer import TokenizerConfig, tokenizer_from_config

    tok = tokenizer_from_config(TokenizerConfig(encoding=encoding))
    files = find_midi_files(inputs)
    if not files:
        raise click.ClickException(
            f"no MIDI files (.mid, .midi, .kar, .smf, .rmi) in {', '.join(map(str, inputs))}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    header = TOKEN_HEADER + json.dumps(tok.config.to_dict(), separators=(",", ":"))
    done = failed = 0
    with progress_bar("encoding", len(files), "file") as bar:
        for f in files:
            bar.update(1)
            target = out_dir / _token_name(f, inputs)
            if target.exists() and not force:
                click.echo(f"skipped {f}: {target} exists (use --force to overwrite)", err=True)
                failed += 1
                continue
            enc = encode_file(f, tok)
            if enc.error is not None:
                click.echo(f"skipped {f}: {enc.error}", err=True)
                failed += 1
                continue
            assert enc.ids is not None
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(header + "\n" + "\n".join(tok.ids_to_tokens(enc.ids)) + "\n")
            lost = f" (not kept exactly: {_fmt_counts(enc.lost)})" if enc.lost else ""
            click.echo(f"{f} -> {target}: {enc.notes} notes, {len(enc.ids)} tokens{lost}")
            done += 1
    click.echo(f"encoded {done} file(s), skipped {failed}")
    if not done:
        raise click.ClickException("no file could be encoded")


def _token_name(f: Path, inputs: tuple[Path, ...]) -> Path:
    """Token file name: the MIDI path relative to the folder it was found in, with .txt."""
    for root in inputs:
        if root.is_dir():
            try:
                return f.relative_to(root).with_suffix(".txt")
            except ValueError:
                continue
    return Path(f.stem + ".txt")


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the MIDI files (created if missing).",
)
@click.option(
    "--encoding",
    type=ENCODING_CHOICE,
    default=None,
    help="Encoding of files that carry no composer-tokens header line.",
)
@click.option("--force", is_flag=True, help="Overwrite MIDI files that already exist.")
def decode(inputs: tuple[Path, ...], out_dir: Path, encoding: str | None, force: bool) -> None:
    """Turn token files (from 'composer encode') back into MIDI files.

    Example: composer decode tokens/ -o roundtrip/
    """
    from composer.midi import write_midi
    from composer.tokenizer import TokenizerConfig, tokenizer_from_config

    files: list[Path] = []
    for p in inputs:
        files.extend(sorted(p.rglob("*.txt")) if p.is_dir() else [p])
    if not files:
        raise click.ClickException(f"no token files (.txt) in {', '.join(map(str, inputs))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    done = failed = 0
    for f in files:
        target = out_dir / _token_name(f, inputs).with_suffix(".mid")
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            click.echo(f"skipped {f}: not a readable text file ({e})", err=True)
            failed += 1
            continue
        first = text.split("\n", 1)[0]
        try:
            if first.startswith(TOKEN_HEADER):
                config = TokenizerConfig.from_dict(json.loads(first[len(TOKEN_HEADER) :]))
            elif encoding is not None:
                config = TokenizerConfig(encoding=encoding)
            else:
                raise ComposerError("no composer-tokens header line; say which --encoding it uses")
            tok = tokenizer_from_config(config)
            ids = tok.text_to_ids(text, source=str(f))
            score = tok.decode(ids)
        except (ComposerError, json.JSONDecodeError) as e:
            click.echo(f"skipped {f}: {e}", err=True)
            failed += 1
            continue
        if target.exists() and not force:
            click.echo(f"skipped {f}: {target} exists (use --force to overwrite)", err=True)
            failed += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        write_midi(score, target)
        click.echo(f"{f} -> {target}: {score.note_count} notes")
        done += 1
    click.echo(f"decoded {done} file(s), skipped {failed}")
    if not done:
        raise click.ClickException("no file could be decoded")


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())


# -------------------------------------------------------------------------------------------------- corpus


@main.group(cls=ComposerGroup)
def corpus() -> None:
    """Build and inspect token corpora."""


def _build_and_report(
    sources: list[Path],
    out: Path,
    encoding: str | None,
    workers: int | None,
    val_fraction: float,
    strict: bool,
) -> None:
    from composer.corpus import build_corpus

    def bar(results: Any, total: int) -> Any:
        with progress_bar("encoding", total, "file") as pb:
            for r in results:
                pb.update(1)
                yield r

    r = build_corpus(
        sources,
        out,
        encoding=encoding,
        workers=workers,
        val_fraction=val_fraction,
        strict=strict,
        progress=bar,
    )
    for path, reason in r.skipped[:20]:
        click.echo(f"skipped {path}: {reason}", err=True)
    if len(r.skipped) > 20:
        click.echo(
            f"... and {len(r.skipped) - 20} more skipped (all listed in {out / 'skipped.txt'})", err=True
        )
    click.echo(
        f"{out}: {r.pieces} pieces ({r.encoded} encoded, {r.reused} reused), {len(r.skipped)} skipped, "
        f"{r.tokens:,} tokens, {r.notes:,} notes, {r.seconds / 3600:.2f} h of music in {r.elapsed_s:.1f} s"
    )
    if r.lost:
        click.echo(f"not kept exactly: {_fmt_counts(r.lost)}")
    if not r.pieces:
        raise click.ClickException(f"no usable MIDI file in {', '.join(map(str, sources))}")


@corpus.command("build")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Corpus folder, e.g. corpora/NAME.",
)
@click.option(
    "--encoding",
    type=ENCODING_CHOICE,
    default=None,
    help="Token encoding [default: beat, or the existing corpus's].",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Encoder processes [default: all cores]."
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.1,
    show_default=True,
    help="Share of files held out for validation (chosen by content hash).",
)
@click.option("--strict", is_flag=True, help="Fail on the first unusable file instead of skipping it.")
def corpus_build(
    sources: tuple[Path, ...],
    out: Path,
    encoding: str | None,
    workers: int | None,
    val_fraction: float,
    strict: bool,
) -> None:
    """Encode every MIDI file under SOURCES (recursively) into a corpus folder.

    Re-running on a grown folder encodes only new or changed files. Unusable files are skipped with a
    reason (listed in OUT/skipped.txt).

    Example: composer corpus build ~/midi/ -o corpora/mine
    """
    _build_and_report(list(sources), out, encoding, workers, val_fraction, strict)


@corpus.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def corpus_info(path: Path, as_json: bool) -> None:
    """Print a corpus's files, tokens, notes, hours of music, instruments and skipped files.

    Example: composer corpus info corpora/bach
    """
    from composer.corpus import Corpus
    from composer.midi import program_name

    s = Corpus.open(path).summary()
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    instruments = ", ".join(
        f"{program_name(p if p < 128 else 0, p == 128)} ({n})" for p, n in list(s["instruments"].items())[:12]
    )
    rows = [
        ("corpus", s["path"]),
        ("encoding", f"{s['encoding']} (vocabulary {s['vocab_size']})"),
        ("files", f"{s['files']} ({s['train_files']} train, {s['val_files']} validation)"),
        ("tokens", f"{s['tokens']:,}"),
        ("notes", f"{s['notes']:,}"),
        ("music", f"{s['hours']:.2f} hours"),
        ("instruments", instruments + (" ..." if len(s["instruments"]) > 12 else "")),
        ("skipped files", f"{s['skipped']} (see {Path(s['path']) / 'skipped.txt'})" if s["skipped"] else "0"),
    ]
    if s["not_kept_exactly"]:
        rows.append(("not kept exactly", _fmt_counts(s["not_kept_exactly"])))
    for k, v in rows:
        click.echo(f"{k:>17}  {v}")


@corpus.command("bach")
@click.option(
    "-o",
    "--out",
    default=DEFAULT_BACH_CORPUS,
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Corpus folder.",
)
@click.option(
    "--encoding",
    type=ENCODING_CHOICE,
    default=None,
    help="Token encoding [default: beat, or the existing corpus's].",
)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes [default: all cores].")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Only the first N chorales (a quick try; the full set is about 400).",
)
def corpus_bach(out: Path, encoding: str | None, workers: int | None, limit: int | None) -> None:
    """Build the built-in corpus: the Bach chorales that ship with music21, offline.

    The chorales are converted to MIDI in OUT/midi/ and encoded into OUT. Needs music21
    (pip install 'composer[bach]'). Re-running reuses what is already there.

    Example: composer corpus bach -o corpora/bach
    """
    from composer.bach import export_chorales

    midi_dir = out / "midi"
    with progress_bar("converting chorales", unit="chorale") as pb:

        def tick(done: int, total: int) -> None:
            pb.total = total
            pb.n = done
            pb.refresh()

        exp = export_chorales(midi_dir, workers=workers, progress=tick, limit=limit)
    for name, reason in exp.failed:
        click.echo(f"skipped chorale {name}: {reason}", err=True)
    click.echo(f"{len(exp.written)} chorales as MIDI in {midi_dir}")
    _build_and_report([midi_dir], out, encoding, workers, 0.1, False)


# --------------------------------------------------------------------------------------------------- train

# CLI option name -> TrainConfig field (for --resume, only options given on the command line override)
_TRAIN_OPTIONS = {
    "preset": "preset", "device": "device", "batch_size": "batch_size", "window": "window", "lr": "lr",
    "max_steps": "max_steps", "max_minutes": "max_minutes", "eval_every": "eval_every",
    "patience": "patience", "seed": "seed", "amp": "amp", "grad_accum": "grad_accum",
    "threads": "num_threads", "music_stats": "music_samples", "transpose": "transpose",
    "velocity_jitter": "velocity_jitter", "time_stretch": "time_stretch",
}  # fmt: skip


@main.command("train")
@click.argument("corpus_dir", metavar="CORPUS", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder for checkpoints, metrics.csv and loss.png, e.g. checkpoints/NAME.",
)
@click.option(
    "--preset",
    type=click.Choice(["small", "medium", "large"]),
    default="small",
    show_default=True,
    help="Model size: small (CPU minutes), medium, large (3 x 512, for a GPU).",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda", "mps"]),
    default="auto",
    show_default=True,
    help="Where to train; auto picks CUDA, then MPS, then the CPU.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Pieces streamed in parallel.",
)
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Tokens per backpropagation window (the LSTM state carries across windows).",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Peak learning rate (warm-up, then cosine decay to a tenth of it) "
    "[default: small 5e-3, medium 3e-3, large 1e-3].",
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=6000,
    show_default=True,
    help="Optimizer steps to train for (in total, counting a resumed run's earlier steps).",
)
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Also stop after this many minutes (this invocation).",
)
@click.option(
    "--eval-every",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Steps between validation runs (each saves last/, and best/ when it improves).",
)
@click.option(
    "--patience",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Stop after this many validations without improvement (0: never).",
)
@click.option("--resume", is_flag=True, help="Continue the run in OUT exactly where it stopped.")
@click.option("--overwrite", is_flag=True, help="Replace a run already in OUT instead of refusing.")
@click.option("--seed", type=click.IntRange(min=0), default=1337, show_default=True, help="Random seed.")
@click.option(
    "--amp/--no-amp",
    default=True,
    show_default=True,
    help="Mixed precision on CUDA (float16 autocast with loss scaling).",
)
@click.option(
    "--grad-accum",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Windows accumulated per optimizer step.",
)
@click.option(
    "--transpose",
    type=click.IntRange(min=0, max=127),
    default=0,
    show_default=True,
    help="Augmentation: transpose each piece by up to this many semitones either way (drums never). "
    "It costs likelihood in runs of minutes, and regularises long runs on a small corpus.",
)
@click.option(
    "--velocity-jitter",
    type=click.IntRange(min=0, max=127),
    default=1,
    show_default=True,
    help="Augmentation: shift each piece's velocities by up to this many bins either way.",
)
@click.option(
    "--time-stretch",
    type=click.FloatRange(min=0.0, max=0.5),
    default=0.05,
    show_default=True,
    help="Augmentation (performance encoding): stretch each piece's timing by up to this fraction.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    help="CPU threads for torch [default: one per four cores].",
)
@click.option(
    "--music-stats",
    type=click.IntRange(min=0, max=256),
    default=0,
    show_default=True,
    help="Songs sampled at each validation to log music statistics (Yang & Lerch overlap with the data) "
    "to metrics.csv; 0: off.",
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

    from composer.train import TrainConfig, load_train_config, train

    given = {
        field: options[opt]
        for opt, field in _TRAIN_OPTIONS.items()
        if ctx.get_parameter_source(opt) is not ParameterSource.DEFAULT
    }
    if "lr" in given:
        given["min_lr"] = None  # the cosine floor follows the new peak
    stored = load_train_config(out) if resume else None
    if stored is not None:
        config = stored.replace(**given)
    else:
        config = TrainConfig(**{field: options[opt] for opt, field in _TRAIN_OPTIONS.items()})
    interactive = sys.stderr.isatty()
    result = train(
        corpus_dir,
        out,
        config,
        resume=resume,
        progress=interactive,
        overwrite=overwrite,
        run_args={"argv": sys.argv[1:]},
        log=None if interactive else (lambda msg: click.echo(msg, err=True)),
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
        click.echo(f"interrupted: continue with  composer train {corpus_dir} -o {out} --resume", err=True)
        ctx.exit(130)


@main.command("info")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def info_command(checkpoint: Path, as_json: bool) -> None:
    """Describe a checkpoint (a run folder means its best/, else last/): model, vocabulary, corpus, steps.

    Example: composer info checkpoints/bach
    """
    from composer.checkpoint import checkpoint_info
    from composer.train import PRESET_LR

    s = checkpoint_info(checkpoint)
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
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
    keys = ("preset", "batch_size", "window", "lr", "max_steps", "seed", "device", "amp")
    if tc.get("lr") is None and tc.get("preset") in PRESET_LR:  # the preset's rate was used
        tc = {**tc, "lr": f"{PRESET_LR[tc['preset']]:g} (the preset's)"}
    rows.append(("training", ", ".join(f"{k} {tc[k]}" for k in keys if k in tc)))
    rows.append(("written", f"{s['created']} by composer {s['composer_version']}"))
    for k, v in rows:
        click.echo(f"{k:>14}  {v}")


# ------------------------------------------------------------------------------------------ generate/render


@main.command("generate")
@click.argument("checkpoint", required=False, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for song_001.mid, song_001.json, ... (created if missing).",
)
@click.option("-n", "--num", "n", type=click.IntRange(1, 1024), default=4, show_default=True, help="Songs.")
@click.option(
    "--seconds", type=float, default=None, help="Length in seconds, after the primer [default: 30]."
)
@click.option("--bars", type=int, default=None, help="Length in bars, after the primer (beat encoding).")
@click.option("--tokens", type=int, default=None, help="Length in tokens, after the primer.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Sampling temperature (> 0).")
@click.option("--top-k", type=int, default=None, help="Sample only among the k likeliest tokens.")
@click.option("--top-p", type=float, default=None, help="Sample only from the top-p probability mass (0-1].")
@click.option(
    "--seed", type=click.IntRange(0, 2**63 - 1), default=None, help="Random seed [default: random]."
)
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
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda", "mps"]),
    default="cpu",
    show_default=True,
    help="Where the model runs (sampling itself is always on the CPU).",
)
@click.option("--plot", is_flag=True, help="Also write a piano-roll picture song_NNN.png per song.")
@click.option("--force", is_flag=True, help="Overwrite songs already in OUT.")
def generate_command(
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
    device: str,
    plot: bool,
    force: bool,
) -> None:
    """Write N new songs from a trained CHECKPOINT (a run folder or checkpoint; default checkpoints/bach).

    The songs are sampled as one batch and are valid by construction: every note is closed and each
    piece ends cleanly near the requested length (after the primer, if any). The same checkpoint,
    options and --seed give byte-identical files. Each song gets a JSON sidecar with its options and
    statistics; warnings flag degenerate output (long silences, one repeated note, very few notes).

    Example: composer generate checkpoints/bach -o songs/ -n 4 --bars 16 --seed 1 --plot
    """
    import secrets

    from composer.checkpoint import load_checkpoint
    from composer.device import resolve_device
    from composer.sample import (
        DEFAULT_CHECKPOINT,
        Length,
        check_bpm,
        check_sampling_options,
        generate,
        prepare_out_dir,
        save_songs,
    )

    length = Length(seconds=seconds, bars=bars, tokens=tokens)
    check_sampling_options(temperature, top_k, top_p)
    check_bpm(bpm)
    if checkpoint is None:
        checkpoint = DEFAULT_CHECKPOINT
        if not checkpoint.exists():
            raise ComposerError(
                f"no CHECKPOINT given and the default {checkpoint} does not exist: train it first "
                f"(make demo, or: composer corpus bach && composer train corpora/bach -o {checkpoint})"
            )
    prepare_out_dir(out_dir, n, plot, force, create=False)  # refuse existing files before any work
    ckpt = load_checkpoint(checkpoint, device=resolve_device(device))
    if seed is None:
        seed = secrets.randbelow(2**31)
    notices: list[str] = []
    with progress_bar(f"generating {n} song{'s' * (n > 1)}", total=None, unit=length.unit) as pb:
        pb.total = length.amount

        def tick(done: float, total: float) -> None:
            pb.update(done - pb.n)

        songs = generate(ckpt, n, length, temperature, top_k, top_p, seed, primer, bpm, device, tick, notices)
    for msg in notices:
        click.echo(f"note: {msg}", err=True)
    meta = {
        "checkpoint": str(ckpt.path),
        "checkpoint_step": ckpt.step,
        "seed": seed,
        "options": {
            "n": n,
            **length.to_dict(),
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "primer": None if primer is None else str(primer),
            "bpm": bpm,
            "device": device,
        },
        "composer_version": __version__,
    }
    paths = save_songs(songs, out_dir, force=force, plot=plot, meta=meta)
    for s, p in zip(songs, paths):
        bars_txt = "" if s.bars is None else f", {s.bars} bars"
        click.echo(f"{p}: {s.notes} notes, {s.seconds:.1f} s{bars_txt}, {s.tokens} tokens")
        for w in s.warnings:
            click.echo(f"warning: {p.name}: {w}", err=True)
    click.echo(f"seed {seed}; {len(paths)} song(s) in {out_dir}")


@main.command("render")
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
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
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


# ------------------------------------------------------------------------------------------------ evaluate


def _distances(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        ds = tuple(int(x) for x in value.replace(" ", "").split(",") if x)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated token counts, got {value!r}") from None
    if any(d < 1 for d in ds):
        raise click.BadParameter(f"distances must be at least 1, got {value!r}")
    return ds


@main.command("evaluate")
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
    default="64,256,1024",
    show_default=True,
    callback=_distances,
    help="Long-range test: history lengths (tokens) the model is cut to; empty to skip.",
)
@click.option(
    "--targets",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="Long-range test: target tokens measured (at most), the same for every distance.",
)
@click.option(
    "--order", type=click.IntRange(2, 8), default=5, show_default=True, help="Order of the n-gram baseline."
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Sampling seed.")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Sampling temperature.")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda", "mps"]),
    default="auto",
    show_default=True,
    help="Where the model runs.",
)
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
    seed: int,
    temperature: float,
    device: str,
) -> None:
    """Measure a CHECKPOINT on DATA: a folder of MIDI files or a corpus (its validation split).

    Prints nats per token and per note (with unigram and n-gram baselines fit on the training corpus),
    how much the model gains from context older than --distances tokens, and how samples compare with
    the data on Yang & Lerch's music statistics. Without DATA, the corpus the checkpoint was trained on.

    Example: composer evaluate checkpoints/bach corpora/bach --json eval.json --plot eval.png
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
        seed=seed,
        temperature=temperature,
        device=device,
        log=lambda msg: click.echo(msg, err=True) if sys.stderr.isatty() else None,
    )
    click.echo(format_report(ev.report))
    if json_path is not None:
        try:
            json_path.write_text(report_json(ev.report))
        except OSError as e:
            raise ComposerError(f"{json_path}: cannot write ({e.strerror or e})") from None
        click.echo(f"figures written to {json_path}")
    if plot_path is not None and ev.music is not None:
        from composer.musicstats import plot_comparison

        try:
            plot_comparison(ev.music, plot_path, title=f"{ev.report['checkpoint']}: samples vs data")
        except OSError as e:
            raise ComposerError(f"{plot_path}: cannot write ({e.strerror or e})") from None
        click.echo(f"distributions drawn in {plot_path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
