"""Corpus building: a folder of MIDI files -> one memory-mapped token file, a piece table and a manifest.

A corpus folder holds::

    tokenizer.json     the encoding config (the vocabulary derives from it)
    tokens-<hash>.bin  every piece's token ids (uint16, BOS ... EOS) end to end; memory-mapped, not pickled
    pieces-<hash>.npz  per piece, as columns (``composer.piecetable``): source path, content hash, token
                       offset and length, notes, seconds, split, musical attributes (key, density, tempo
                       and their levels) and labels
    manifest.json      the token file, the table, the totals, the tokenizer, the level bounds, skipped files
    skipped.txt        one line per file that could not be used, with the reason

Building is incremental (files whose content hash is already in the corpus are copied over, not re-encoded),
parallel, and never lets one bad file cost the others. The new token file and piece table are written under
new names and the manifest switched to them atomically, so an interrupted build leaves the previous corpus
intact. A corpus from before piece tables (manifest format_version 1: the pieces listed in the manifest)
still opens; the next build writes a table.

Attributes (``composer.attributes``) are computed from each file's notes when it is encoded and reused with
its tokens; their levels (low/mid/high by the corpus's terciles) are worked out afresh at every build, over
the pieces of that build. Labels (``composer.labels``) are those of the build's own options: a rebuild
without ``--labels``/``--labels-from-folders`` has none. A manifest from before attributes still opens
(its pieces have ``attributes`` None); the next build re-encodes its files to compute them.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any, BinaryIO, TypedDict

import numpy as np

from composer.archives import MemberData
from composer.attributes import LEVELS, Attributes, level_of, tercile_bounds
from composer.corpus_file import EncodedFile, Sources, encode_within_limit, find_sources
from composer.errors import ComposerError, CorpusError
from composer.fsutil import atomic_write_text, describe_os_error, folder_lock
from composer.labels import Labels, LabelValue, build_labels, label_counts, read_label_csv
from composer.piecetable import Piece, PieceTable, TableBuilder, table_of
from composer.tokenizer import Tokenizer, TokenizerConfig, tokenizer_from_config

#: 2: per-piece metadata in a piece table (``composer.piecetable``); 1 listed the pieces in the manifest
#: as JSON (still opened; the next build writes 2).
MANIFEST_VERSION = 2
READABLE_VERSIONS = (1, 2)
#: The definitions behind the stored attributes; a corpus built under another version is re-encoded.
ATTRIBUTES_VERSION = 1
#: The attributes that get a level (``composer.attributes.LEVELS``) by the corpus's terciles.
LEVELLED = ("density", "tempo")
MANIFEST, TOKENIZER, SKIPPED = "manifest.json", "tokenizer.json", "skipped.txt"
SPLITS = ("train", "val")


class CorpusStatistics(TypedDict, total=False):
    """``Corpus.statistics``: ``pieces`` and ``notes`` always; ``programs`` and ``notes_per_second`` where
    the corpus has pieces and seconds of music."""

    pieces: int
    notes: int
    programs: list[int]
    notes_per_second: float


@dataclass
class BuildResult:
    out_dir: Path
    files_seen: int = 0
    encoded: int = 0
    reused: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    pieces: int = 0
    tokens: int = 0
    notes: int = 0
    seconds: float = 0.0
    lost: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    label_columns: tuple[str, ...] = ()
    labelled: int = 0  # pieces with at least one label
    warnings: list[str] = field(default_factory=list)
    duplicates: int = 0  # files skipped because another file of the build has the same content


# ------------------------------------------------------------------------------------------------- open


class Corpus:
    """A built corpus, opened read-only. Token data stays on disk (memory-mapped)."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        tokenizer: Tokenizer,
        tokens: np.ndarray,
        table: PieceTable,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.tokens = tokens
        self.table = table
        self._cached: list[Piece] | None = None
        self._by_split: dict[str, list[Piece]] = {}
        self.skipped: list[tuple[str, str]] = [(s["path"], s["reason"]) for s in manifest.get("skipped", [])]

    @property
    def _pieces(self) -> list[Piece]:
        """Every piece, made from the table the first time a command asks for them."""
        if self._cached is None:
            self._cached = self.table.pieces()
        return self._cached

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Corpus:
        path = Path(path)
        mpath = path / MANIFEST
        if not path.is_dir():
            raise CorpusError(f"{path}: no such corpus folder (build one with 'composer corpus build')")
        if not mpath.is_file():
            raise CorpusError(f"{path}: not a corpus (no {MANIFEST}; build one with 'composer corpus build')")
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, ValueError) as e:  # ValueError: bad JSON, or not UTF-8
            raise CorpusError(f"{mpath}: unreadable manifest ({e})") from None
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        if version not in READABLE_VERSIONS:
            raise CorpusError(
                f"{mpath}: manifest format_version must be {MANIFEST_VERSION} (or {READABLE_VERSIONS[0]}), "
                f"got {version!r}; rebuild the corpus with 'composer corpus build'"
            )
        try:
            config = TokenizerConfig.from_dict(manifest["tokenizer"])
            tokenizer = tokenizer_from_config(config)
            tfile = path / manifest["tokens_file"]
            total = int(manifest["total_tokens"])
            files = manifest["files"] if version == 1 else None
            table_file = None if version == 1 else path / str(manifest["pieces_file"])
            if version == 1 and not isinstance(files, list):
                raise TypeError("files must be a list")
        except ComposerError as e:
            raise CorpusError(f"{mpath}: {e}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise CorpusError(f"{mpath}: malformed manifest ({e!r})") from None
        if not tfile.is_file():
            raise CorpusError(f"{tfile}: token file is missing")
        size = tfile.stat().st_size
        if size != 2 * total:
            raise CorpusError(
                f"{tfile}: token file is truncated or damaged ({size} bytes, expected {2 * total})"
            )
        tokens = np.memmap(tfile, dtype=np.uint16, mode="r") if total else np.zeros(0, np.uint16)
        if table_file is not None:
            table = PieceTable.load(table_file, total)
        else:
            assert files is not None
            listed = [_piece_from_json(p) for p in files]
            for p in listed:
                if p.offset < 0 or p.length < 2 or p.offset + p.length > total:
                    raise CorpusError(f"{mpath}: piece {p.path} lies outside the token file")
            table = table_of(listed)
        return cls(path, manifest, tokenizer, tokens, table)

    def pieces(self, split: str | None = None) -> list[Piece]:
        if split is None:
            return list(self._pieces)
        if split not in SPLITS:
            raise CorpusError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if split not in self._by_split:
            self._by_split[split] = [p for p in self._pieces if p.split == split]
        return list(self._by_split[split])

    def piece_tokens(self, piece: Piece) -> np.ndarray:
        return np.asarray(self.tokens[piece.offset : piece.offset + piece.length])

    @property
    def content_fingerprint(self) -> str:
        """The token data and the tokenizer config (what builds before split fingerprints called the
        fingerprint)."""
        return str(self.manifest.get("content_fingerprint") or self.manifest["fingerprint"])

    @property
    def fingerprint(self) -> str:
        """The token data, the tokenizer config and the train/validation split of every piece."""
        return split_fingerprint(self.content_fingerprint, self.table.splits())

    @property
    def val_fraction(self) -> float | None:
        value = self.manifest.get("val_fraction")
        return None if value is None else float(value)

    @property
    def encoding(self) -> str:
        return self.tokenizer.encoding

    @property
    def label_columns(self) -> tuple[str, ...]:
        """The label columns of the build that wrote the corpus (none before labels existed)."""
        return tuple(str(c) for c in self.manifest.get("label_columns", ()))

    @property
    def level_bounds(self) -> dict[str, tuple[float, float]]:
        """Per levelled attribute (``density``, ``tempo``), the corpus terciles that divide its levels: below
        the first ``low``, above the second ``high``, ``mid`` between them inclusive."""
        bounds = self.manifest.get("attribute_levels") or {}
        return {k: (float(v[0]), float(v[1])) for k, v in bounds.items() if k in LEVELLED}

    def statistics(self) -> CorpusStatistics:
        """What generation needs to know of the music (a checkpoint keeps it in its corpus metadata):
        pieces, notes, the programs played (drums as DRUMS) and notes per second, where there are any."""
        pieces = self.pieces("train") + self.pieces("val")
        stats = CorpusStatistics(pieces=len(pieces), notes=sum(p.notes for p in pieces))
        if pieces:
            stats["programs"] = sorted({x for p in pieces for x in p.programs})
        seconds = sum(p.seconds for p in pieces)
        if seconds > 0:
            stats["notes_per_second"] = stats["notes"] / seconds
        return stats

    def summary(self) -> dict[str, Any]:
        """Files, tokens, notes, hours, instruments and skipped files, for ``corpus info``."""
        programs: dict[int, int] = {}
        for p in self._pieces:
            for prog in p.programs:
                programs[prog] = programs.get(prog, 0) + 1
        lost: dict[str, int] = {}
        for p in self._pieces:
            for k, v in p.lost.items():
                lost[k] = lost.get(k, 0) + v
        return {
            "path": str(self.path),
            "encoding": self.encoding,
            "vocab_size": self.tokenizer.vocab.size,
            "files": len(self._pieces),
            "train_files": len(self.pieces("train")),
            "val_files": len(self.pieces("val")),
            "tokens": int(self.manifest["total_tokens"]),
            "notes": sum(p.notes for p in self._pieces),
            "hours": sum(p.seconds for p in self._pieces) / 3600,
            "instruments": dict(sorted(programs.items())),
            "skipped": len(self.skipped),
            "not_kept_exactly": lost,
            "fingerprint": self.fingerprint,
            "labels": self._label_summary(),
            "attributes": self._attribute_summary(),
        }

    def _label_summary(self) -> dict[str, dict[str, Any]]:
        """Per label column: labelled and unlabelled pieces and the count of each value (values as text,
        most common first); for a numeric column also its range."""
        out: dict[str, dict[str, Any]] = {}
        for column, counts in label_counts((p.labels for p in self._pieces), self.label_columns).items():
            labelled = sum(counts.values())
            entry: dict[str, Any] = {
                "labelled": labelled,
                "unlabelled": len(self._pieces) - labelled,
                "numeric": bool(counts) and not any(isinstance(v, str) for v in counts),
                "counts": {str(v): n for v, n in counts.items()},
            }
            if entry["numeric"]:
                entry["min"], entry["max"] = min(counts), max(counts)
            out[column] = entry
        return out

    def _attribute_summary(self) -> dict[str, Any]:
        """Keys, density and tempo levels (with the terciles) and instrument sets, each most common first;
        ``missing``: pieces from a build before attributes were recorded."""
        have = [p for p in self._pieces if p.attributes is not None]
        keys = _counted(str(p.attributes.key) for p in have if p.attributes and p.attributes.key)
        sets = _counted(p.programs for p in self._pieces)
        return {
            "missing": len(self._pieces) - len(have),
            "keys": keys,
            "no_key": sum(1 for p in have if p.attributes and p.attributes.key is None),
            "density_levels": {lv: sum(p.density_level == lv for p in have) for lv in LEVELS},
            "tempo_levels": {lv: sum(p.tempo_level == lv for p in have) for lv in LEVELS},
            "level_bounds": {k: list(v) for k, v in self.level_bounds.items()},
            "instrument_sets": [{"programs": list(k), "pieces": n} for k, n in sets.items()],
        }


def _counted(items: Iterable[Any]) -> dict[Any, int]:
    """Counts of each item, most common first (ties in first-seen order)."""
    counts: dict[Any, int] = {}
    for x in items:
        counts[x] = counts.get(x, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _piece_from_json(d: dict[str, Any]) -> Piece:
    try:
        attrs = d.get("attributes")
        return Piece(
            path=str(d["path"]),
            sha256=str(d["sha256"]),
            offset=int(d["offset"]),
            length=int(d["length"]),
            notes=int(d["notes"]),
            seconds=float(d["seconds"]),
            split=str(d["split"]),
            pitch_min=None if d.get("pitch_min") is None else int(d["pitch_min"]),
            pitch_max=None if d.get("pitch_max") is None else int(d["pitch_max"]),
            programs=tuple(int(x) for x in d.get("programs", ())),
            lost={str(k): int(v) for k, v in d.get("lost", {}).items()},
            attributes=None if attrs is None else Attributes.from_dict(attrs),
            density_level=None if attrs is None else _level(attrs.get("density_level")),
            tempo_level=None if attrs is None else _level(attrs.get("tempo_level")),
            labels={str(k): _label_value(v) for k, v in d.get("labels", {}).items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # ConfigError is a ValueError
        raise CorpusError(f"malformed manifest entry {d!r:.80}: {e!r}") from None


def _level(value: Any) -> str | None:
    if value is not None and value not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {value!r}")
    return value


def _label_value(value: Any) -> LabelValue:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"a label is text or a number, got {value!r}")
    return value


# ------------------------------------------------------------------------------------------------ build


def split_of(sha256: str, val_fraction: float) -> str:
    """Deterministic train/val split by content hash."""
    return "val" if int(sha256[:8], 16) / 0x1_0000_0000 < val_fraction else "train"


def split_fingerprint(content_fingerprint: str, splits: Iterable[str]) -> str:
    """A corpus's fingerprint: its content fingerprint and the split of each piece, in token-file order."""
    marks = "".join("v" if s == "val" else "t" for s in splits)
    return hashlib.sha256(f"{content_fingerprint}:{marks}".encode()).hexdigest()[:16]


_worker_tokenizer: Tokenizer | None = None
_worker_known: frozenset[str] = frozenset()


def _init_worker(config: dict[str, Any], known: frozenset[str]) -> None:
    global _worker_tokenizer, _worker_known
    _worker_tokenizer = tokenizer_from_config(TokenizerConfig.from_dict(config))
    _worker_known = known


def encode_file(path: str | os.PathLike[str] | MemberData, tokenizer: Tokenizer) -> EncodedFile:
    """Read and encode one file within the time limit (``composer.corpus_file``); in a build, files whose
    content the corpus already holds come back ``cached``."""
    return encode_within_limit(path, tokenizer, _worker_known)


def _work(items: list[str | MemberData]) -> list[EncodedFile]:
    assert _worker_tokenizer is not None
    return [encode_file(item, _worker_tokenizer) for item in items]


def existing_config(out_dir: Path) -> TokenizerConfig | None:
    """The tokenizer config of a corpus already in ``out_dir``, if any."""
    mpath = out_dir / MANIFEST
    if not mpath.is_file():
        return None
    try:
        return TokenizerConfig.from_dict(json.loads(mpath.read_text())["tokenizer"])
    except (OSError, ValueError, KeyError, TypeError, ComposerError):
        return None


def build_corpus(
    sources: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    config: TokenizerConfig | None = None,
    encoding: str | None = None,
    workers: int | None = None,
    val_fraction: float = 0.1,
    strict: bool = False,
    progress: Callable[[Iterator[EncodedFile], int], Iterator[EncodedFile]] | None = None,
    labels_from_folders: bool = False,
    labels_csv: str | os.PathLike[str] | None = None,
) -> BuildResult:
    """Encode every MIDI file under ``sources`` into a corpus at ``out_dir``; see the module docstring.

    ``config`` (or just ``encoding``) picks the tokenizer; with neither, an existing corpus keeps its own
    and a new one uses the defaults. ``strict`` raises CorpusError on the first bad file instead of skipping
    (and ConfigError on a labels CSV row naming a file not found). ``progress`` wraps the result iterator
    (e.g. a tqdm bar) given the file count. ``labels_from_folders`` and ``labels_csv`` label the pieces
    (``composer.labels``); a labels CSV is read and checked before anything is encoded or written.
    """
    t0 = time.perf_counter()
    source_paths = [Path(s) for s in sources]
    out = Path(out_dir)
    if not 0.0 <= val_fraction < 1.0:
        raise CorpusError(f"val fraction must be in [0, 1), got {val_fraction}")
    if workers is not None and workers < 1:
        raise CorpusError(f"workers must be at least 1, got {workers}")
    table = None if labels_csv is None else read_label_csv(labels_csv)
    old_config = existing_config(out)
    if config is None:
        config = old_config or TokenizerConfig()
        if encoding is not None and encoding != config.encoding:
            config = TokenizerConfig(encoding=encoding)
    found = find_sources(source_paths)
    labels = build_labels(found.paths, source_paths, labels_from_folders, table, strict)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CorpusError(f"{out}: cannot create corpus folder: {describe_os_error(e)}") from None
    with folder_lock(out, "corpus build"):
        return _build_locked(
            found, source_paths, out, config, old_config, workers, val_fraction, strict, progress, t0, labels
        )


def _build_locked(
    found: Sources,
    sources: list[Path],
    out: Path,
    config: TokenizerConfig,
    old_config: TokenizerConfig | None,
    workers: int | None,
    val_fraction: float,
    strict: bool,
    progress: Callable[[Iterator[EncodedFile], int], Iterator[EncodedFile]] | None,
    t0: float,
    labels: Labels,
) -> BuildResult:
    previous = _Previous.load(out) if old_config == config else _Previous()
    if previous.corpus is not None:
        dropped = [c for c in previous.corpus.label_columns if c not in labels.columns]
        if dropped:
            labels.warnings.append(
                f"the labels {', '.join(dropped)} of the previous build are dropped: labels come from each "
                "build's own --labels / --labels-from-folders"
            )
    n_workers = min(workers or os.cpu_count() or 1, max(len(found), 1))
    results = _encode_all(found.items(), len(found), config, previous.known, n_workers)
    if progress is not None:
        results = progress(results, len(found))

    tmp_path = out / f".tokens.{os.getpid()}.tmp"
    written = _Written(val_fraction, strict, labels)
    try:
        with open(tmp_path, "wb") as fh:
            for enc in results:
                if enc.cached:
                    previous.fill(enc)
                written.add(enc, fh)
            fh.flush()
            os.fsync(fh.fileno())
        written.ensure_val()
        written.assign_levels()
        tokens_file = f"tokens-{written.hasher.hexdigest()[:16]}.bin"
        os.replace(tmp_path, out / tokens_file)
    except OSError as e:
        raise CorpusError(
            f"{out}: cannot write the token file ({describe_os_error(e)}); the previous corpus is kept"
        ) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    _write_manifest(out, config, tokens_file, written, val_fraction, sources)
    return written.result(out, len(found), time.perf_counter() - t0)


@dataclass
class _Previous:
    """What the corpus already in the folder holds, by content hash (when the tokenizer is unchanged)."""

    corpus: Corpus | None = None
    by_sha: dict[str, int] = field(default_factory=dict)  # content hash -> index in the old piece table
    skipped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, out: Path) -> _Previous:
        try:
            old = Corpus.open(out)
        except CorpusError:
            return cls()
        # a file refused for its content stays refused; a duplicate is judged afresh each build
        skipped = {
            s["sha256"]: s["reason"]
            for s in old.manifest.get("skipped", [])
            if s.get("sha256") and not s.get("duplicate_of")
        }
        # pieces whose attributes are missing or of other definitions are encoded again to compute them
        current = old.manifest.get("attributes_version") == ATTRIBUTES_VERSION
        t = old.table
        usable = t.columns["has_attributes"] if current else np.zeros(len(t), bool)
        by_sha = {bytes(t.columns["sha256"][i]).hex(): i for i in np.flatnonzero(usable).tolist()}
        return cls(old, by_sha, skipped)

    @property
    def known(self) -> frozenset[str]:
        return frozenset(self.by_sha) | frozenset(self.skipped)

    def fill(self, enc: EncodedFile) -> None:
        """A file the corpus already holds: its reason for being skipped, or its tokens and facts."""
        if enc.sha256 in self.skipped:
            enc.error = self.skipped[enc.sha256]
            return
        assert self.corpus is not None
        prev = self.corpus.table.piece(self.by_sha[enc.sha256])
        enc.ids = self.corpus.piece_tokens(prev)
        enc.notes, enc.seconds = prev.notes, prev.seconds
        enc.pitch_min, enc.pitch_max = prev.pitch_min, prev.pitch_max
        enc.programs, enc.lost = prev.programs, prev.lost
        enc.attributes = prev.attributes


class _Written:
    """The new token file as it is written: the piece table, skipped files and the totals."""

    def __init__(self, val_fraction: float, strict: bool, labels: Labels | None = None) -> None:
        self.val_fraction = val_fraction
        self.strict = strict
        self.labels = labels or Labels()
        self.level_bounds: dict[str, tuple[float, float]] = {}
        self.hasher = hashlib.sha256()
        self.pieces = TableBuilder()
        self.levels: dict[str, np.ndarray] = {}
        self.skipped: list[dict[str, str]] = []
        self.seen_sha: dict[bytes, int] = {}  # content hash -> its piece's index (a few dozen bytes a file)
        self.offset = 0
        self.lost: dict[str, int] = {}
        self.encoded = self.reused = 0

    def add(self, enc: EncodedFile, fh: BinaryIO) -> None:
        """One file: its tokens appended to ``fh`` and its manifest entry, or its reason for being skipped."""
        first = self.seen_sha.get(bytes.fromhex(enc.sha256)) if enc.error is None else None
        duplicate_of = None if first is None else self.pieces.path(first)
        if duplicate_of is not None:
            enc.error = f"duplicate of {duplicate_of}"
        if enc.error is not None:
            if self.strict:
                raise CorpusError(f"{enc.path}: {enc.error}")
            entry = {"path": enc.path, "sha256": enc.sha256, "reason": enc.error}
            if duplicate_of is not None:
                entry["duplicate_of"] = duplicate_of
            self.skipped.append(entry)
            return
        if enc.cached:
            self.reused += 1
        else:
            self.encoded += 1
        assert enc.ids is not None and enc.attributes is not None
        self.seen_sha[bytes.fromhex(enc.sha256)] = len(self.pieces)
        data = np.ascontiguousarray(enc.ids, dtype="<u2").tobytes()
        fh.write(data)
        self.hasher.update(data)
        self.pieces.add(
            path=enc.path,
            sha256=enc.sha256,
            offset=self.offset,
            length=len(enc.ids),
            notes=enc.notes,
            seconds=round(enc.seconds, 3),
            split=split_of(enc.sha256, self.val_fraction),
            pitch_min=enc.pitch_min,
            pitch_max=enc.pitch_max,
            programs=tuple(enc.programs),
            lost=enc.lost,
            attributes=enc.attributes,
            labels=dict(self.labels.by_path.get(enc.path, {})),
        )
        self.offset += len(enc.ids)
        for k, v in enc.lost.items():
            self.lost[k] = self.lost.get(k, 0) + v

    def assign_levels(self) -> None:
        """Each piece's density and tempo level, by the terciles of this build's pieces."""
        for name in LEVELLED:
            values = np.frombuffer(self.pieces.cols[name], dtype=np.float64)
            bounds = tercile_bounds(values.tolist())
            if bounds is None:
                continue
            self.level_bounds[name] = bounds
            codes = [LEVELS.index(level_of(v, bounds)) for v in values.tolist()]
            self.levels[f"{name}_level"] = np.array(codes, dtype=np.int8)

    def ensure_val(self) -> None:
        """A small corpus whose hashes all fell in train still gets one validation piece."""
        split = self.pieces.cols["split"]
        if self.val_fraction > 0 and len(split) >= 2 and 1 not in split:
            sha = bytes(self.pieces.sha)
            first = min(range(len(split)), key=lambda i: sha[32 * i : 32 * i + 32])
            split[first] = 1

    def table(self) -> PieceTable:
        return self.pieces.table(self.levels.get("density_level"), self.levels.get("tempo_level"))

    def result(self, out: Path, files_seen: int, elapsed_s: float) -> BuildResult:
        return BuildResult(
            out_dir=out,
            files_seen=files_seen,
            encoded=self.encoded,
            reused=self.reused,
            skipped=[(s["path"], s["reason"]) for s in self.skipped],
            pieces=len(self.pieces),
            tokens=self.offset,
            notes=sum(self.pieces.cols["notes"]),
            seconds=sum(self.pieces.cols["seconds"]),
            lost=self.lost,
            elapsed_s=elapsed_s,
            label_columns=self.labels.columns,
            labelled=len(self.pieces.labels),
            warnings=list(self.labels.warnings),
            duplicates=sum(1 for s in self.skipped if "duplicate_of" in s),
        )


def _write_manifest(
    out: Path,
    config: TokenizerConfig,
    tokens_file: str,
    written: _Written,
    val_fraction: float,
    sources: list[Path],
) -> None:
    """The piece table, manifest, tokenizer config and skipped list of the new token file (the manifest
    last: until it is replaced, the previous corpus is whole); the old token file and table removed."""
    content_fingerprint = hashlib.sha256(
        (written.hasher.hexdigest() + json.dumps(config.to_dict(), sort_keys=True)).encode()
    ).hexdigest()[:16]
    table = written.table()
    pieces_file = f"pieces-{tokens_file.removeprefix('tokens-').removesuffix('.bin')}-{len(table)}.npz"
    table.save(out / pieces_file)
    manifest = {
        "format_version": MANIFEST_VERSION,
        "tokenizer": config.to_dict(),
        "tokens_file": tokens_file,
        "pieces_file": pieces_file,
        "pieces": len(table),
        "total_tokens": written.offset,
        "fingerprint": split_fingerprint(content_fingerprint, table.splits()),
        "content_fingerprint": content_fingerprint,
        "val_fraction": val_fraction,
        "sources": [str(s) for s in sources],
        "attributes_version": ATTRIBUTES_VERSION,
        "attribute_levels": {k: list(v) for k, v in written.level_bounds.items()},
        "label_columns": list(written.labels.columns),
        "skipped": written.skipped,
    }
    config.save(out / TOKENIZER)
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    atomic_write_text(out / SKIPPED, "".join(f"{s['path']}: {s['reason']}\n" for s in written.skipped))
    # the previous token file is no longer referenced
    for f in [*out.glob("tokens-*.bin"), *out.glob("pieces-*.npz")]:
        if f.name not in (tokens_file, pieces_file):
            f.unlink()


def _encode_all(
    items: Iterator[str | MemberData],
    count: int,
    config: TokenizerConfig,
    known: frozenset[str],
    workers: int,
) -> Iterator[EncodedFile]:
    """Encoded files in the order of ``items``; in worker processes when workers > 1, with a bounded
    number of chunks in flight (an archive's members are read here as the workers need them, never all
    at once)."""
    if workers <= 1 or count <= 1:
        global _worker_tokenizer, _worker_known
        _worker_tokenizer, _worker_known = tokenizer_from_config(config), known
        try:
            for item in items:
                yield encode_file(item, _worker_tokenizer)
        finally:
            _worker_tokenizer, _worker_known = None, frozenset()
        return
    # fork where there is one: workers run only the reader and numpy (no threads), and fork needs no
    # `if __name__ == "__main__"` guard in a user's script; spawn elsewhere.
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    chunk = max(1, min(32, count // (workers * 8)))
    in_flight = 4 * workers
    with ctx.Pool(workers, initializer=_init_worker, initargs=(config.to_dict(), known)) as pool:
        pending: deque[AsyncResult[list[EncodedFile]]] = deque()
        for batch in _batched(items, chunk):
            pending.append(pool.apply_async(_work, (batch,)))
            if len(pending) >= in_flight:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


def _batched(items: Iterator[str | MemberData], n: int) -> Iterator[list[str | MemberData]]:
    batch: list[str | MemberData] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
