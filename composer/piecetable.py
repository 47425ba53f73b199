"""Per-piece metadata of a corpus as columns: one ``pieces-<hash>.npz`` beside the token file.

A corpus of 176,000 files opens in a few milliseconds: the table is a handful of numpy arrays (about 100
bytes per piece), read without parsing anything per piece. :class:`Piece` objects are made only when a
command asks for them (``Corpus.pieces``), and a build collects its pieces into columns as it goes
(:class:`TableBuilder`), so neither holds a Python object per file for longer than it needs to.

Columns (``n`` pieces; text as one UTF-8 blob with cumulative end offsets, lists the same way)::

    path_blob uint8, path_end int64[n]     source path
    sha256    uint8[n, 32]                 content hash
    offset, length, notes  int64[n]        token offset and length in the token file, notes
    seconds   float64[n]
    split     uint8[n]                     0 train, 1 val
    pitch_min, pitch_max  int16[n]         -1: no pitched notes
    program   int16, program_end int64[n]  the programs played (drums as DRUMS)
    has_attributes bool[n]                 False: built before attributes were recorded
    key       int8[n]                      tonic * 2 + mode index (MODES), -1: no key
    key_correlation, density, tempo  float64[n]   (NaN: no correlation)
    density_level, tempo_level  int8[n]    index in LEVELS, -1: none
    extras    uint8                        JSON {"lost": {i: {...}}, "labels": {i: {...}}}, sparse

Loading never runs code (``allow_pickle=False``); a table whose columns disagree with each other or with
the token file is refused with one line.
"""

from __future__ import annotations

import array
import json
import math
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from composer.attributes import LEVELS, MODES, Attributes, Key
from composer.errors import CorpusError
from composer.labels import LabelValue

SPLIT_NAMES = ("train", "val")
TABLE_VERSION = 1

#: column -> dtype; every column but the blobs and ``sha256`` has one value per piece.
_PER_PIECE = {
    "path_end": np.int64,
    "offset": np.int64,
    "length": np.int64,
    "notes": np.int64,
    "seconds": np.float64,
    "split": np.uint8,
    "pitch_min": np.int16,
    "pitch_max": np.int16,
    "program_end": np.int64,
    "has_attributes": np.bool_,
    "key": np.int8,
    "key_correlation": np.float64,
    "density": np.float64,
    "tempo": np.float64,
    "density_level": np.int8,
    "tempo_level": np.int8,
}
_OTHER = {
    "path_blob": np.uint8,
    "sha256": np.uint8,
    "program": np.int16,
    "extras": np.uint8,
    "version": np.int64,
}


@dataclass(frozen=True)
class Piece:
    path: str
    sha256: str
    offset: int
    length: int
    notes: int
    seconds: float
    split: str
    pitch_min: int | None
    pitch_max: int | None
    programs: tuple[int, ...] = ()
    lost: dict[str, int] = field(default_factory=dict)
    attributes: Attributes | None = None  # None: built before attributes were recorded
    density_level: str | None = None
    tempo_level: str | None = None
    labels: dict[str, LabelValue] = field(default_factory=dict)


def _key_code(key: Key | None) -> int:
    return -1 if key is None else key.tonic * 2 + MODES.index(key.mode)


def _level_code(level: str | None) -> int:
    return -1 if level is None else LEVELS.index(level)


class PieceTable:
    """The columns of one corpus's pieces; ``piece(i)`` / ``pieces()`` make :class:`Piece` objects."""

    def __init__(
        self, columns: dict[str, np.ndarray], lost: dict[int, dict[str, int]], labels: dict[int, Any]
    ):
        self.columns = columns
        self.lost = lost
        self.labels = labels

    def __len__(self) -> int:
        return len(self.columns["offset"])

    # -------------------------------------------------------------------------------------- reading

    def path(self, i: int) -> str:
        ends = self.columns["path_end"]
        start = int(ends[i - 1]) if i else 0
        return bytes(self.columns["path_blob"][start : int(ends[i])]).decode("utf-8")

    def sha256(self, i: int) -> str:
        return bytes(self.columns["sha256"][i]).hex()

    def splits(self) -> list[str]:
        return [SPLIT_NAMES[s] for s in self.columns["split"].tolist()]

    def piece(self, i: int) -> Piece:
        return next(self._pieces(i, i + 1))

    def pieces(self) -> list[Piece]:
        return list(self._pieces(0, len(self)))

    def _pieces(self, lo: int, hi: int) -> Iterator[Piece]:
        c = self.columns
        cols = {k: c[k][lo:hi].tolist() for k in _PER_PIECE if k not in ("path_end", "program_end")}
        # the text and list columns of pieces lo..hi only: one piece costs O(1), not O(pieces)
        path_end = c["path_end"][max(lo - 1, 0) : hi].tolist()
        prog_end = c["program_end"][max(lo - 1, 0) : hi].tolist()
        if lo == 0:
            path_end, prog_end = [0, *path_end], [0, *prog_end]
        blob = bytes(c["path_blob"][path_end[0] : path_end[-1]])
        prog = c["program"][prog_end[0] : prog_end[-1]].tolist()
        p0, g0 = path_end[0], prog_end[0]
        sha = c["sha256"][lo:hi].tobytes()
        for j, i in enumerate(range(lo, hi)):
            attrs = None
            if cols["has_attributes"][j]:
                k = cols["key"][j]
                corr = cols["key_correlation"][j]
                key = None if k < 0 else Key(k // 2, MODES[k % 2], None if math.isnan(corr) else corr)
                attrs = Attributes(key, cols["density"][j], cols["tempo"][j])
            dl, tl = cols["density_level"][j], cols["tempo_level"][j]
            yield Piece(
                path=blob[path_end[j] - p0 : path_end[j + 1] - p0].decode("utf-8"),
                sha256=sha[32 * j : 32 * j + 32].hex(),
                offset=cols["offset"][j],
                length=cols["length"][j],
                notes=cols["notes"][j],
                seconds=cols["seconds"][j],
                split=SPLIT_NAMES[cols["split"][j]],
                pitch_min=None if cols["pitch_min"][j] < 0 else cols["pitch_min"][j],
                pitch_max=None if cols["pitch_max"][j] < 0 else cols["pitch_max"][j],
                programs=tuple(prog[prog_end[j] - g0 : prog_end[j + 1] - g0]),
                lost=dict(self.lost.get(i, {})),
                attributes=attrs,
                density_level=None if dl < 0 else LEVELS[dl],
                tempo_level=None if tl < 0 else LEVELS[tl],
                labels=dict(self.labels.get(i, {})),
            )

    # ------------------------------------------------------------------------------------ file

    def save(self, path: Path) -> None:
        extras = {
            "lost": {str(i): v for i, v in sorted(self.lost.items())},
            "labels": {str(i): v for i, v in sorted(self.labels.items())},
        }
        blob = np.frombuffer(json.dumps(extras, sort_keys=True).encode(), dtype=np.uint8)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            arrays: dict[str, Any] = {"version": np.array([TABLE_VERSION]), "extras": blob, **self.columns}
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, total_tokens: int) -> PieceTable:
        """The table in ``path``, checked against itself and a token file of ``total_tokens`` tokens."""
        if not path.is_file():
            raise CorpusError(
                f"{path}: piece table is missing (rebuild the corpus with 'composer corpus build')"
            )
        rebuild = "; rebuild the corpus with 'composer corpus build'"
        try:
            with open(path, "rb") as fh:
                if fh.read(4) != b"PK\x03\x04":  # np.load would take anything else for a pickle
                    raise CorpusError(f"{path}: unreadable piece table (not an .npz file){rebuild}")
            with np.load(path, allow_pickle=False) as npz:
                raw = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise CorpusError(f"{path}: unreadable piece table ({e}){rebuild}") from None
        try:
            return cls._checked(raw, total_tokens)
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
            raise CorpusError(f"{path}: malformed piece table ({e}){rebuild}") from None

    @classmethod
    def _checked(cls, raw: dict[str, np.ndarray], total: int) -> PieceTable:
        missing = sorted((set(_PER_PIECE) | set(_OTHER)) - set(raw))
        if missing:
            raise KeyError(f"no column {missing[0]}")
        if raw["version"].tolist() != [TABLE_VERSION]:
            raise ValueError(f"version must be {TABLE_VERSION}, got {raw['version'].tolist()}")
        cols: dict[str, np.ndarray] = {}
        for name, dtype in {**_PER_PIECE, **_OTHER}.items():
            if name in ("version", "extras"):
                continue
            if raw[name].dtype != dtype:
                raise TypeError(f"column {name} is {raw[name].dtype}, expected {np.dtype(dtype)}")
            cols[name] = raw[name]
        n = len(cols["offset"])
        for name in _PER_PIECE:
            if cols[name].shape != (n,):
                raise ValueError(f"column {name} has shape {cols[name].shape}, expected ({n},)")
        if cols["sha256"].shape != (n, 32):
            raise ValueError(f"column sha256 has shape {cols['sha256'].shape}, expected ({n}, 32)")
        for ends, values in (("path_end", "path_blob"), ("program_end", "program")):
            e = cols[ends]
            if n and (np.any(np.diff(e) < 0) or e[0] < 0 or e[-1] != len(cols[values])):
                raise ValueError(f"column {ends} does not divide {values}")
        off, length = cols["offset"], cols["length"]
        bad = np.flatnonzero((off < 0) | (length < 2) | (off + length > total))
        if len(bad):
            raise ValueError(f"piece {int(bad[0])} lies outside the token file")
        if np.any(cols["split"] > 1) or np.any(cols["key"] > 23) or np.any(cols["key"] < -1):
            raise ValueError("split or key out of range")
        for name in ("density_level", "tempo_level"):
            if np.any((cols[name] < -1) | (cols[name] > 2)):
                raise ValueError(f"{name} out of range")
        has = cols["has_attributes"]
        if np.any(has & ~(np.isfinite(cols["density"]) & (cols["density"] >= 0))) or np.any(
            has & ~(np.isfinite(cols["tempo"]) & (cols["tempo"] > 0))
        ):
            raise ValueError("density or tempo out of range")
        extras = json.loads(bytes(raw["extras"]).decode("utf-8"))
        lost = {int(i): {str(k): int(v) for k, v in d.items()} for i, d in extras["lost"].items()}
        labels = {int(i): {str(k): _label(v) for k, v in d.items()} for i, d in extras["labels"].items()}
        if any(not 0 <= i < n for i in (*lost, *labels)):
            raise ValueError("extras name a piece that is not there")
        return cls(cols, lost, labels)


def _label(value: Any) -> LabelValue:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"a label is text or a number, got {value!r}")
    return value


class TableBuilder:
    """Pieces appended one by one during a build, held as typed arrays (no object per piece)."""

    def __init__(self) -> None:
        self.path_blob = bytearray()
        self.sha = bytearray()
        self.cols: dict[str, array.array[Any]] = {
            "path_end": array.array("q"),
            "offset": array.array("q"),
            "length": array.array("q"),
            "notes": array.array("q"),
            "seconds": array.array("d"),
            "split": array.array("B"),
            "pitch_min": array.array("h"),
            "pitch_max": array.array("h"),
            "program_end": array.array("q"),
            "has_attributes": array.array("B"),
            "key": array.array("b"),
            "key_correlation": array.array("d"),
            "density": array.array("d"),
            "tempo": array.array("d"),
        }
        self.program = array.array("h")
        self.lost: dict[int, dict[str, int]] = {}
        self.labels: dict[int, dict[str, LabelValue]] = {}

    def __len__(self) -> int:
        return len(self.cols["offset"])

    def path(self, i: int) -> str:
        ends = self.cols["path_end"]
        return self.path_blob[ends[i - 1] if i else 0 : ends[i]].decode("utf-8")

    def add(
        self,
        *,
        path: str,
        sha256: str,
        offset: int,
        length: int,
        notes: int,
        seconds: float,
        split: str,
        pitch_min: int | None,
        pitch_max: int | None,
        programs: tuple[int, ...],
        lost: dict[str, int],
        attributes: Attributes | None,
        labels: dict[str, LabelValue],
    ) -> None:
        i = len(self)
        c = self.cols
        self.path_blob += path.encode("utf-8")
        c["path_end"].append(len(self.path_blob))
        self.sha += bytes.fromhex(sha256)
        c["offset"].append(offset)
        c["length"].append(length)
        c["notes"].append(notes)
        c["seconds"].append(seconds)
        c["split"].append(SPLIT_NAMES.index(split))
        c["pitch_min"].append(-1 if pitch_min is None else pitch_min)
        c["pitch_max"].append(-1 if pitch_max is None else pitch_max)
        self.program.extend(programs)
        c["program_end"].append(len(self.program))
        c["has_attributes"].append(attributes is not None)
        key = None if attributes is None else attributes.key
        c["key"].append(_key_code(key))
        corr = None if key is None else key.correlation
        c["key_correlation"].append(math.nan if corr is None else corr)
        c["density"].append(math.nan if attributes is None else attributes.density)
        c["tempo"].append(math.nan if attributes is None else attributes.tempo)
        if lost:
            self.lost[i] = dict(lost)
        if labels:
            self.labels[i] = dict(labels)

    def table(
        self, density_level: np.ndarray | None = None, tempo_level: np.ndarray | None = None
    ) -> PieceTable:
        n = len(self)
        cols = {
            k: np.frombuffer(v, dtype=_PER_PIECE[k]).copy() if len(v) else np.zeros(0, _PER_PIECE[k])
            for k, v in self.cols.items()
        }
        cols["has_attributes"] = cols["has_attributes"].astype(np.bool_)
        none = np.full(n, -1, np.int8)
        cols["density_level"] = none.copy() if density_level is None else density_level.astype(np.int8)
        cols["tempo_level"] = none.copy() if tempo_level is None else tempo_level.astype(np.int8)
        cols["path_blob"] = np.frombuffer(bytes(self.path_blob), dtype=np.uint8).copy()
        cols["sha256"] = np.frombuffer(bytes(self.sha), dtype=np.uint8).reshape(n, 32).copy()
        cols["program"] = np.frombuffer(self.program, dtype=np.int16).copy() if n else np.zeros(0, np.int16)
        return PieceTable(cols, dict(self.lost), dict(self.labels))


def table_of(pieces: list[Piece]) -> PieceTable:
    """The columns of ``pieces`` (a manifest from before piece tables lists them as JSON)."""
    b = TableBuilder()
    for p in pieces:
        b.add(
            path=p.path, sha256=p.sha256, offset=p.offset, length=p.length, notes=p.notes,
            seconds=p.seconds, split=p.split, pitch_min=p.pitch_min, pitch_max=p.pitch_max,
            programs=p.programs, lost=p.lost, attributes=p.attributes, labels=p.labels,
        )  # fmt: skip
    dl = np.array([_level_code(p.density_level) for p in pieces], np.int8)
    tl = np.array([_level_code(p.tempo_level) for p in pieces], np.int8)
    return b.table(dl, tl)
