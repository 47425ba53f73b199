"""The data commands: ``encode`` and ``decode`` (MIDI <-> token files), ``corpus build|info|bach``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from composer.cli.base import ComposerGroup, echo_err, fmt_counts, progress_bar
from composer.cli.options import encoding_option, force_option, out_folder_option
from composer.errors import ComposerError

T = TypeVar("T")

DEFAULT_BACH_CORPUS = Path("corpora/bach")
#: Skipped files listed on stderr after a build (all of them are in OUT/skipped.txt).
SHOWN_SKIPPED = 20
#: Instruments listed by ``corpus info``.
SHOWN_INSTRUMENTS = 12
#: Keys, instrument sets and label values listed by ``corpus info`` (the most common first).
SHOWN_KEYS, SHOWN_SETS, SHOWN_LABELS = 6, 4, 8
#: Share of files held out for validation by ``corpus build`` (default) and ``corpus bach``.
VAL_FRACTION = 0.1

INPUTS = click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))


# ------------------------------------------------------------------------------------------- encode/decode


@click.command()
@INPUTS
@out_folder_option(help="Folder for the token files (created if missing).", dest="out_dir")
@encoding_option(default="beat", show_default=True, help="Token encoding.")
@force_option(help="Overwrite token files that already exist.")
def encode(inputs: tuple[Path, ...], out_dir: Path, encoding: str, force: bool) -> None:
    """Write MIDI files (or every MIDI file in folders) as readable token files, one token per line.

    Example: composer encode song.mid more_songs/ -o tokens/
    """
    from composer.corpus import encode_file
    from composer.corpus_file import find_midi_files
    from composer.midi import MIDI_SUFFIXES
    from composer.tokenizer import TokenizerConfig, tokenizer_from_config

    tok = tokenizer_from_config(TokenizerConfig(encoding=encoding))
    files = find_midi_files(inputs)
    if not files:
        raise click.ClickException(
            f"no MIDI files ({', '.join(MIDI_SUFFIXES)}) in {', '.join(map(str, inputs))}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    done = failed = 0
    with progress_bar("encoding", len(files), "file") as bar:
        for f in files:
            bar.update(1)
            target = out_dir / _token_name(f, inputs)
            if target.exists() and not force:
                echo_err(f"skipped {f}: {target} exists (use --force to overwrite)")
                failed += 1
                continue
            enc = encode_file(f, tok)
            if enc.error is not None:
                echo_err(f"skipped {f}: {enc.error}")
                failed += 1
                continue
            assert enc.ids is not None  # encode_file sets one of error and ids
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(tok.to_text(enc.ids))
            lost = f" (not kept exactly: {fmt_counts(enc.lost)})" if enc.lost else ""
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


@click.command()
@INPUTS
@out_folder_option(help="Folder for the MIDI files (created if missing).", dest="out_dir")
@encoding_option(help="Encoding of files that carry no composer-tokens header line.")
@force_option(help="Overwrite MIDI files that already exist.")
def decode(inputs: tuple[Path, ...], out_dir: Path, encoding: str | None, force: bool) -> None:
    """Turn token files (from 'composer encode') back into MIDI files.

    Example: composer decode tokens/ -o roundtrip/
    """
    from composer.midi import write_midi
    from composer.tokenizer import tokenizer_for_text

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
            echo_err(f"skipped {f}: not a readable text file ({e})")
            failed += 1
            continue
        try:
            tok = tokenizer_for_text(text, encoding)
            score = tok.decode(tok.from_text(text, source=str(f)))
        except ComposerError as e:
            echo_err(f"skipped {f}: {e}")
            failed += 1
            continue
        if target.exists() and not force:
            echo_err(f"skipped {f}: {target} exists (use --force to overwrite)")
            failed += 1
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        write_midi(score, target)
        click.echo(f"{f} -> {target}: {score.note_count} notes")
        done += 1
    click.echo(f"decoded {done} file(s), skipped {failed}")
    if not done:
        raise click.ClickException("no file could be decoded")


# -------------------------------------------------------------------------------------------------- corpus


@click.group(cls=ComposerGroup)
def corpus() -> None:
    """Build and inspect token corpora."""


def _build_and_report(
    sources: list[Path],
    out: Path,
    *,
    encoding: str | None,
    workers: int | None,
    val_fraction: float,
    strict: bool,
    labels_from_folders: bool = False,
    labels_csv: Path | None = None,
) -> None:
    from composer.corpus import build_corpus

    def bar(results: Iterable[T], total: int) -> Iterator[T]:
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
        labels_from_folders=labels_from_folders,
        labels_csv=labels_csv,
    )
    for warning in r.warnings:
        echo_err(f"warning: {warning}")
    for path, reason in r.skipped[:SHOWN_SKIPPED]:
        echo_err(f"skipped {path}: {reason}")
    if len(r.skipped) > SHOWN_SKIPPED:
        more = len(r.skipped) - SHOWN_SKIPPED
        echo_err(f"... and {more} more skipped (all listed in {out / 'skipped.txt'})")
    dupes = f" ({r.duplicates:,} of them duplicates)" if r.duplicates else ""
    click.echo(
        f"{out}: {r.pieces:,} pieces ({r.encoded:,} encoded, {r.reused:,} reused), {len(r.skipped):,} "
        f"skipped{dupes}, "
        f"{r.tokens:,} tokens, {r.notes:,} notes, {r.seconds / 3600:.2f} h of music in {r.elapsed_s:.1f} s"
    )
    if r.lost:
        click.echo(f"not kept exactly: {fmt_counts(r.lost)}")
    if r.label_columns:
        click.echo(
            f"labels ({', '.join(r.label_columns)}): {r.labelled} of {r.pieces} pieces labelled, "
            f"{r.pieces - r.labelled} unlabelled"
        )
    if not r.pieces:
        raise click.ClickException(f"no usable MIDI file in {', '.join(map(str, sources))}")


CORPUS_ENCODING = encoding_option(help="Token encoding [default: beat, or the existing corpus's].")


@corpus.command("build")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@out_folder_option(help="Corpus folder, e.g. corpora/NAME.")
@CORPUS_ENCODING
@click.option(
    "--workers", type=click.IntRange(min=1), default=None, help="Encoder processes [default: all cores]."
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=VAL_FRACTION,
    show_default=True,
    help="Share of files held out for validation (chosen by content hash).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Fail on the first unusable file instead of skipping it (and on a --labels row naming a file "
    "not found).",
)
@click.option(
    "--labels-from-folders",
    is_flag=True,
    help="Label each piece with the first sub-folder of SOURCES it is in (column 'folder').",
)
@click.option(
    "--labels",
    "labels_csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A UTF-8 CSV with a 'file' column (paths relative to SOURCES) and label columns.",
)
def corpus_build(
    sources: tuple[Path, ...],
    out: Path,
    encoding: str | None,
    workers: int | None,
    val_fraction: float,
    strict: bool,
    labels_from_folders: bool,
    labels_csv: Path | None,
) -> None:
    """Encode every MIDI file under SOURCES (recursively) into a corpus folder.

    SOURCES are MIDI files, folders and archives (.zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz; read
    without unpacking, members named ARCHIVE/PATH; archives inside a folder are read too). Files with the
    same content are kept once (the others are skipped as duplicates). Re-running on a grown folder
    encodes only new or changed files. Unusable files are skipped with a reason (listed in
    OUT/skipped.txt). Each piece's key, note density, tempo and instruments are recorded; labels come
    from this build's --labels-from-folders / --labels only (files without one are unlabelled; a CSV row
    naming a file not found is a warning).

    Example: composer corpus build ~/midi/ -o corpora/mine --labels-from-folders
    """
    _build_and_report(
        list(sources),
        out,
        encoding=encoding,
        workers=workers,
        val_fraction=val_fraction,
        strict=strict,
        labels_from_folders=labels_from_folders,
        labels_csv=labels_csv,
    )


@corpus.command("info")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def corpus_info(path: Path, as_json: bool) -> None:
    """Print a corpus's files, tokens, notes, hours of music, instruments, skipped files, the keys,
    density and tempo levels and instrument sets of its pieces, and the counts of its labels.

    Example: composer corpus info corpora/bach
    """
    from composer.corpus import Corpus
    from composer.midi import program_name
    from composer.tokenizer import DRUMS

    s = Corpus.open(path).summary()
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return

    def name(p: int) -> str:
        return program_name(p if p < DRUMS else 0, p == DRUMS)

    shown = list(s["instruments"].items())[:SHOWN_INSTRUMENTS]
    instruments = ", ".join(f"{name(p)} ({n})" for p, n in shown)
    rows = [
        ("corpus", s["path"]),
        ("encoding", f"{s['encoding']} (vocabulary {s['vocab_size']})"),
        ("files", f"{s['files']} ({s['train_files']} train, {s['val_files']} validation)"),
        ("tokens", f"{s['tokens']:,}"),
        ("notes", f"{s['notes']:,}"),
        ("music", f"{s['hours']:.2f} hours"),
        ("instruments", instruments + (" ..." if len(s["instruments"]) > SHOWN_INSTRUMENTS else "")),
        ("skipped files", f"{s['skipped']} (see {Path(s['path']) / 'skipped.txt'})" if s["skipped"] else "0"),
    ]
    if s["not_kept_exactly"]:
        rows.append(("not kept exactly", fmt_counts(s["not_kept_exactly"])))
    rows += _attribute_rows(s["attributes"], name)
    for column, entry in s["labels"].items():
        rows.append((f"label {column}", _label_row(entry)))
    for k, v in rows:
        click.echo(f"{k:>17}  {v}")


def _top(counts: Iterable[tuple[str, int]], shown: int, total: int) -> str:
    items = list(counts)
    text = ", ".join(f"{k} ({n})" for k, n in items[:shown])
    return text + (f" ... ({total} in all)" if len(items) > shown else "")


def _attribute_rows(a: dict[str, Any], name: Callable[[int], str]) -> list[tuple[str, str]]:
    """``corpus info``'s rows for keys, density and tempo levels and instrument sets."""
    if a["missing"]:
        why = "built before attributes were recorded; build it again to add them"
        return [("attributes", f"none for {a['missing']} pieces ({why})")]
    keys = _top(a["keys"].items(), SHOWN_KEYS, len(a["keys"]))
    if a["no_key"]:
        keys += f"; {a['no_key']} without a key"
    rows = [("keys", keys or "none")]
    for attr, unit in (("density", "notes per quarter"), ("tempo", "qpm")):
        levels = ", ".join(f"{lv} {n}" for lv, n in a[f"{attr}_levels"].items())
        bounds = a["level_bounds"].get(attr)
        split = f" (terciles {bounds[0]:.3g} and {bounds[1]:.3g} {unit})" if bounds else ""
        rows.append((f"{attr} levels", levels + split))
    sets = [(" + ".join(name(p) for p in e["programs"]) or "none", e["pieces"]) for e in a["instrument_sets"]]
    rows.append(("instrument sets", _top(sets, SHOWN_SETS, len(sets))))
    return rows


def _label_row(entry: dict[str, Any]) -> str:
    counts = entry["counts"]
    if entry["numeric"] and len(counts) > SHOWN_LABELS:
        text = f"numbers {entry['min']:g} to {entry['max']:g} ({len(counts)} distinct)"
    else:
        text = _top(counts.items(), SHOWN_LABELS, len(counts))
    return f"{text}; {entry['unlabelled']} unlabelled" if entry["unlabelled"] else text


@corpus.command("bach")
@click.option(
    "-o",
    "--out",
    default=DEFAULT_BACH_CORPUS,
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Corpus folder.",
)
@CORPUS_ENCODING
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
        echo_err(f"skipped chorale {name}: {reason}")
    click.echo(f"{len(exp.written)} chorales as MIDI in {midi_dir}")
    _build_and_report(
        [midi_dir], out, encoding=encoding, workers=workers, val_fraction=VAL_FRACTION, strict=False
    )
