"""MIDI files inside archives (.tar, .tar.gz / .tgz, .tar.bz2, .tar.xz, .zip), read without unpacking.

A member is named by the archive's path and its own, ``lmd_full.tar.gz/lmd_full/0/0a1b.mid``, so it reads
like a file under a folder (labels from folders and a labels CSV see the path inside the archive). Tar
archives are read as a stream, in the archive's order, twice: once to list the MIDI members (the build
needs the list before it encodes) and once to read them; neither pass keeps more than one member in
memory. A damaged archive (truncated, bad checksum) gives the members read before the damage and one
reason for the rest; a member that cannot be read (too large, encrypted, an unknown compression) gets its
own reason, and the other members are read on.
"""

from __future__ import annotations

import lzma
import os
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from composer.midi import MAX_FILE_BYTES, MIDI_SUFFIXES

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)
ARCHIVE_SUFFIXES = TAR_SUFFIXES + ZIP_SUFFIXES

# what the standard library raises on a damaged or unsupported archive
_DAMAGE = (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError)


def is_archive(path: str | os.PathLike[str]) -> bool:
    name = Path(path).name.lower()
    return any(name.endswith(s) for s in ARCHIVE_SUFFIXES)


def _is_midi_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in MIDI_SUFFIXES


def _clean(name: str) -> str:
    """A member's name as a relative path (no leading slash, no empty or '.' parts)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


def member_path(archive: Path, name: str) -> Path:
    """How a member is named in a corpus: the archive's path, then the member's."""
    return archive / _clean(name)


def _describe(e: BaseException) -> str:
    return str(e) or type(e).__name__


@dataclass
class Listing:
    """An archive's MIDI members in archive order; ``damage``: why the listing ended early, if it did."""

    archive: Path
    names: list[str] = field(default_factory=list)
    damage: str | None = None

    @property
    def paths(self) -> list[Path]:
        return [member_path(self.archive, n) for n in self.names]


def list_midi_members(archive: str | os.PathLike[str]) -> Listing:
    """The MIDI members of ``archive``: regular files with a MIDI suffix, each name once, in archive order."""
    archive = Path(archive)
    listing = Listing(archive)
    seen: set[str] = set()
    try:
        for name, _size in _entries(archive):
            clean = _clean(name)
            if _is_midi_name(clean) and clean and clean not in seen:
                seen.add(clean)
                listing.names.append(clean)
    except _DAMAGE as e:
        listing.damage = _damage_reason(archive, e, len(listing.names))
    return listing


def _damage_reason(archive: Path, e: BaseException, done: int) -> str:
    what = "not a readable archive" if done == 0 else f"damaged after {done} MIDI member(s)"
    return f"{what} ({type(e).__name__}: {_describe(e)})"


def _entries(archive: Path) -> Iterator[tuple[str, int]]:
    """(name, size) of every regular file in the archive."""
    if _is_zip(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, info.file_size
        return
    with tarfile.open(archive, mode="r|*") as tar:
        while (m := tar.next()) is not None:
            if m.isfile():
                yield m.name, m.size
            _forget_headers(tar)


def _forget_headers(tar: tarfile.TarFile) -> None:
    """A TarFile keeps every member header it has read (``members``, not in its typed interface); a
    stream needs none of them once past, and 176k of them would grow a build's memory with the archive."""
    members = getattr(tar, "members", None)
    if isinstance(members, list):
        members.clear()


def _is_zip(archive: Path) -> bool:
    return archive.name.lower().endswith(ZIP_SUFFIXES)


@dataclass
class MemberData:
    """One member read: its bytes, or the one-line reason it could not be read."""

    path: Path
    data: bytes | None = None
    error: str | None = None


def read_midi_members(listing: Listing) -> Iterator[MemberData]:
    """Each listed member's bytes, in archive order (one member in memory at a time). Members the read
    cannot reach (the archive damaged before them) come back with the damage as their reason."""
    wanted = set(listing.names)
    got: set[str] = set()
    damage: str | None = None
    try:
        if _is_zip(listing.archive):
            yield from _read_zip(listing, wanted, got)
        else:
            yield from _read_tar(listing, wanted, got)
    except _DAMAGE as e:
        damage = _damage_reason(listing.archive, e, len(got))
    for name in listing.names:
        if name not in got:
            reason = damage or listing.damage or "not found on reading the archive again"
            yield MemberData(member_path(listing.archive, name), error=f"archive {reason}")


def _too_large(size: int) -> str:
    return f"member is {size} bytes, more than the {MAX_FILE_BYTES} a MIDI file may have"


def _read_tar(listing: Listing, wanted: set[str], got: set[str]) -> Iterator[MemberData]:
    with tarfile.open(listing.archive, mode="r|*") as tar:
        while (m := tar.next()) is not None:
            name = _clean(m.name)
            if m.isfile() and name in wanted and name not in got:
                got.add(name)
                path = member_path(listing.archive, name)
                if m.size > MAX_FILE_BYTES:
                    yield MemberData(path, error=_too_large(m.size))
                else:
                    fh = tar.extractfile(m)
                    assert fh is not None  # a regular file always has one
                    yield MemberData(path, data=fh.read())
            _forget_headers(tar)


def _read_zip(listing: Listing, wanted: set[str], got: set[str]) -> Iterator[MemberData]:
    with zipfile.ZipFile(listing.archive) as zf:
        for info in zf.infolist():
            name = _clean(info.filename)
            if info.is_dir() or name not in wanted or name in got:
                continue
            got.add(name)
            path = member_path(listing.archive, name)
            if info.file_size > MAX_FILE_BYTES:
                yield MemberData(path, error=_too_large(info.file_size))
                continue
            if info.flag_bits & 0x1:
                yield MemberData(path, error="member is encrypted")
                continue
            try:
                with zf.open(info) as fh:
                    data = fh.read(MAX_FILE_BYTES + 1)  # a member may be larger than its header says
            except (
                zipfile.BadZipFile,
                NotImplementedError,
                RuntimeError,
                zlib.error,
                EOFError,
                OSError,
            ) as e:
                yield MemberData(path, error=f"cannot read member ({type(e).__name__}: {_describe(e)})")
                continue
            if len(data) > MAX_FILE_BYTES:
                yield MemberData(path, error=_too_large(len(data)))
            else:
                yield MemberData(path, data=data)
