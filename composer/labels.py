"""Labels of a corpus's pieces: from the folders the files sit in, or from a CSV file.

A label is a value in a named column: ``folder`` (``--labels-from-folders``: the first sub-folder of the
source folder a file was found under, e.g. ``folk`` for ``SRC/folk/reels/a.mid``; none for a file directly
in it), or any column of a labels CSV (``--labels FILE.csv``). The CSV is UTF-8 (a byte-order mark is
fine) with a header row holding a ``file`` column and one or more label columns, e.g.::

    file,valence,arousal
    happy/theme.mid,1,1
    boss.mid,-1,1

``file`` is a MIDI file's path relative to the source folder it is found under (its name, for a file
directly in it), or the path as found on the command line, or an absolute path. A file without a row, or
with an empty cell, has no label in that column: it is counted as unlabelled, not refused. A column whose
every value is a number is stored as numbers (an integer where written as one, e.g. VGMIDI's -1/1 valence;
otherwise a float); any other column as text, as written (surrounding spaces dropped).

A row naming a file that is not among the MIDI files found is a warning (a typo or a file not copied yet
should not cost a whole build), an error under ``strict``; a CSV none of whose rows names a file found is
an error, since its paths are then written some other way. Everything else wrong with the CSV -- unreadable,
not UTF-8, malformed quoting, no ``file`` column, no label column, a column without a name or named twice,
a row with more cells than the header, a file listed twice or matching two files -- is one ConfigError
naming the CSV (and the line).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from composer.archives import is_archive
from composer.errors import ConfigError
from composer.fsutil import describe_os_error

#: A label value: text, or a number where its whole column is numbers.
LabelValue = str | int | float
#: The column ``--labels-from-folders`` fills.
FOLDER_COLUMN = "folder"
FILE_COLUMN = "file"
#: Label column names: they become option values and, later, condition tokens.
COLUMN_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
#: Unmatched CSV files named in a warning (the count is always given).
SHOWN_UNMATCHED = 3


@dataclass(frozen=True)
class LabelTable:
    """A labels CSV as read: its label columns and, per ``file`` value, the labels of that row."""

    path: Path
    columns: tuple[str, ...]
    rows: dict[str, dict[str, LabelValue]]
    lines: dict[str, int]  # the line of each file's row, for messages


@dataclass
class Labels:
    """The labels of one build: per file path (as the corpus records it) its labels, and the warnings."""

    columns: tuple[str, ...] = ()
    by_path: dict[str, dict[str, LabelValue]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def read_label_csv(path: str | os.PathLike[str]) -> LabelTable:
    """Read and check a labels CSV (see the module docstring); ConfigError naming the file otherwise."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the labels file: {describe_os_error(e)}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: the labels file is not UTF-8 text (byte {e.start})") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: not a readable CSV file (it holds NUL bytes: binary, not text)")
    try:
        records = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as e:
        raise ConfigError(f"{path}: not a readable CSV file ({e})") from None
    numbered = [(i + 1, r) for i, r in enumerate(records) if any(cell.strip() for cell in r)]
    if not numbered:
        raise ConfigError(f"{path}: the labels file is empty (expected a header row with a 'file' column)")
    header_line, header = numbered[0]
    names = [h.strip() for h in header]
    _check_header(path, names)
    file_at = [n.lower() for n in names].index(FILE_COLUMN)
    columns = tuple(n for i, n in enumerate(names) if i != file_at)
    raw: dict[str, dict[str, str]] = {}
    lines: dict[str, int] = {}
    for line, record in numbered[1:]:
        if len(record) > len(names):
            raise ConfigError(
                f"{path}:{line}: {len(record)} cells, but the header names {len(names)} columns "
                f"({', '.join(names)})"
            )
        cells = [c.strip() for c in record] + [""] * (len(names) - len(record))
        name = _normal(cells[file_at])
        if not name:
            raise ConfigError(f"{path}:{line}: the '{names[file_at]}' cell is empty")
        if name in raw:
            raise ConfigError(f"{path}:{line}: {name} is listed again (first on line {lines[name]})")
        raw[name] = {c: v for c, v in zip(names, cells) if c != names[file_at] and v}
        lines[name] = line
    if not raw:
        raise ConfigError(f"{path}: no rows after the header on line {header_line}")
    numeric = {c for c in columns if all(_FLOAT_RE.fullmatch(r[c]) for r in raw.values() if c in r)}
    rows = {
        name: {c: (_number(v) if c in numeric else v) for c, v in labels.items()}
        for name, labels in raw.items()
    }
    return LabelTable(path, columns, rows, lines)


def _check_header(path: Path, names: list[str]) -> None:
    lowered = [n.lower() for n in names]
    if FILE_COLUMN not in lowered:
        raise ConfigError(
            f"{path}: no '{FILE_COLUMN}' column (the header has: {', '.join(names) or 'nothing'})"
        )
    for i, n in enumerate(names):
        if not n:
            raise ConfigError(f"{path}: column {i + 1} of the header has no name")
        if lowered.index(n.lower()) != i:
            raise ConfigError(f"{path}: column {n!r} appears twice in the header")
        if lowered[i] != FILE_COLUMN and not COLUMN_RE.fullmatch(n):
            raise ConfigError(
                f"{path}: column {n!r}: label column names are letters, digits, '_', '.' and '-'"
            )
    if len(names) < 2:
        raise ConfigError(f"{path}: no label column besides '{FILE_COLUMN}'")


def _number(text: str) -> int | float:
    return int(text) if _INT_RE.fullmatch(text) else float(text)


def _normal(name: str) -> str:
    """A ``file`` value or a path, compared as written with forward slashes and no leading './'."""
    name = name.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def source_of(path: Path, sources: Iterable[Path]) -> Path | None:
    """The first source folder or archive (in the order given) that ``path`` was found under; None for a
    file given by itself."""
    for src in sources:
        if (src.is_dir() or (is_archive(src) and src.is_file())) and path.is_relative_to(src) and path != src:
            return src
    return None


def folder_labels(files: Iterable[Path], sources: list[Path]) -> dict[str, str]:
    """Per file (as ``str(path)``), the first sub-folder of its source folder; files directly in a source
    folder, or given by themselves, have none."""
    out: dict[str, str] = {}
    for f in files:
        src = source_of(f, sources)
        if src is not None:
            parts = f.relative_to(src).parts
            if len(parts) > 1:
                out[str(f)] = parts[0]
    return out


def match_table(table: LabelTable, files: list[Path], sources: list[Path], strict: bool) -> Labels:
    """The CSV's rows matched to the files found; see the module docstring for what is refused."""
    names: dict[str, set[str]] = {}
    for f in files:
        src = source_of(f, sources)
        relative = f.relative_to(src).as_posix() if src is not None else f.name
        for name in {relative, _normal(str(f)), f.resolve().as_posix()}:
            names.setdefault(name, set()).add(str(f))
    labels = Labels(columns=table.columns)
    unmatched: list[str] = []
    claimed: dict[str, str] = {}
    for name, row in table.rows.items():
        found = names.get(name) or names.get(Path(name).resolve().as_posix()) if name else None
        if not found:
            unmatched.append(name)
            continue
        if len(found) > 1:
            raise ConfigError(
                f"{table.path}:{table.lines[name]}: {name} matches {len(found)} files "
                f"({', '.join(sorted(found)[:2])}); write it as a longer path"
            )
        (path,) = found
        if path in claimed:
            raise ConfigError(
                f"{table.path}:{table.lines[name]}: {name} is {path}, already labelled on line "
                f"{table.lines[claimed[path]]} as {claimed[path]}"
            )
        claimed[path] = name
        if row:
            labels.by_path[path] = dict(row)
    if unmatched and len(unmatched) == len(table.rows):
        example = (
            files[0].relative_to(source_of(files[0], sources) or files[0].parent).as_posix() if files else ""
        )
        hint = f", e.g. {example}" if example else ""
        raise ConfigError(
            f"{table.path}: none of its {len(unmatched)} files is among the {len(files)} MIDI files found "
            f"(write each as its path relative to the source folder{hint})"
        )
    if unmatched:
        shown = ", ".join(unmatched[:SHOWN_UNMATCHED]) + (" ..." if len(unmatched) > SHOWN_UNMATCHED else "")
        msg = f"{table.path}: {len(unmatched)} file(s) listed are not among the MIDI files found: {shown}"
        if strict:
            raise ConfigError(msg)
        labels.warnings.append(msg)
    return labels


def build_labels(
    files: list[Path],
    sources: list[Path],
    from_folders: bool = False,
    table: LabelTable | None = None,
    strict: bool = False,
) -> Labels:
    """The labels of a build: the ``folder`` column where ``from_folders``, the CSV's columns where a
    table is given (a CSV column named ``folder`` then clashes and is refused)."""
    if table is None:
        labels = Labels()
    else:
        if from_folders and FOLDER_COLUMN in {c.lower() for c in table.columns}:
            raise ConfigError(
                f"{table.path}: column '{FOLDER_COLUMN}' is also what --labels-from-folders fills; rename it"
            )
        labels = match_table(table, files, sources, strict)
    if from_folders:
        labels.columns = (FOLDER_COLUMN, *labels.columns)
        folders = folder_labels(files, sources)
        for path, folder in folders.items():
            labels.by_path[path] = {FOLDER_COLUMN: folder, **labels.by_path.get(path, {})}
        if files and not folders:
            labels.warnings.append(
                "--labels-from-folders: no MIDI file is in a sub-folder of a source folder, so none has a "
                "folder label"
            )
    return labels


def label_counts(
    labels: Iterable[Mapping[str, LabelValue]], columns: Iterable[str] | None = None
) -> dict[str, dict[LabelValue, int]]:
    """Per column, how many pieces carry each value, most common first (ties in value order)."""
    counts: dict[str, dict[LabelValue, int]] = {c: {} for c in columns or ()}
    for piece in labels:
        for c, v in piece.items():
            col = counts.setdefault(c, {})
            col[v] = col.get(v, 0) + 1
    return {
        c: dict(sorted(col.items(), key=lambda kv: (-kv[1], isinstance(kv[0], str), kv[0])))
        for c, col in counts.items()
    }
