"""MIDI files for a corpus: found under folders, and each read, encoded and described (its musical
attributes, ``composer.attributes``) within a time limit.

Hostile input must neither crash a build nor hang it: every failure of the reader or the encoder
becomes ``EncodedFile.error``, a one-line reason, and a file that takes longer than ``FILE_TIME_LIMIT_S``
is given up.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from composer.archives import Listing, MemberData, is_archive, list_midi_members, read_midi_members
from composer.attributes import Attributes, attributes_of, instrument_set
from composer.errors import ComposerError, CorpusError, MidiReadError
from composer.midi import MAX_FILE_BYTES, is_midi_path, parse_midi_bytes
from composer.tokenizer import Tokenizer

#: A file that takes longer than this to read and encode is skipped (hostile input must not hang a build).
FILE_TIME_LIMIT_S = 60


def find_midi_files(sources: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """MIDI files under the given files or folders (recursively), sorted, each once."""
    found: set[Path] = set()
    for src in sources:
        p = Path(src)
        if p.is_dir():
            for root, _dirs, files in os.walk(p, followlinks=False):
                for name in files:
                    fp = Path(root) / name
                    if is_midi_path(fp):
                        found.add(fp)
        elif p.is_file():
            found.add(p)
        else:
            raise CorpusError(f"{p}: no such file or folder")
    return sorted(found)


@dataclass
class Sources:
    """What a build reads: plain MIDI files (sorted), then each archive's MIDI members (in archive order).
    ``paths`` names them all in that order; an archive that could not be read to its end adds one
    ``problems`` entry (named by the archive) after them."""

    files: list[Path]
    archives: list[Listing]

    @property
    def paths(self) -> list[Path]:
        return [*self.files, *(p for a in self.archives for p in a.paths)]

    @property
    def problems(self) -> list[MemberData]:
        return [MemberData(a.archive, error=f"archive {a.damage}") for a in self.archives if a.damage]

    def __len__(self) -> int:
        return len(self.files) + sum(len(a.names) for a in self.archives) + len(self.problems)

    def items(self) -> Iterator[str | MemberData]:
        """Each file's path (a worker reads it) and each member's bytes (read here, one at a time), in the
        order of ``paths``, then the problems."""
        yield from (str(f) for f in self.files)
        for a in self.archives:
            yield from read_midi_members(a)
        yield from self.problems


def find_sources(sources: Iterable[str | os.PathLike[str]]) -> Sources:
    """MIDI files under the given files and folders (as ``find_midi_files``) and the MIDI members of the
    archives among them (``composer.archives``; an archive inside a folder is read too), each listed."""
    files: list[Path] = []
    archives: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_file() and is_archive(p):
            archives.append(p)
        elif p.is_dir():
            for root, _dirs, names in os.walk(p, followlinks=False):
                archives.extend(Path(root) / n for n in names if is_archive(n))
            files.extend(find_midi_files([p]))
        else:
            files.extend(find_midi_files([p]))
    unique = sorted(set(archives), key=archives.index)
    return Sources(sorted(set(files)), [list_midi_members(a) for a in unique])


@dataclass
class EncodedFile:
    """One file read and encoded, or the one-line reason it could not be (``error``)."""

    path: str
    sha256: str
    ids: np.ndarray | None = None
    notes: int = 0
    seconds: float = 0.0
    pitch_min: int | None = None
    pitch_max: int | None = None
    programs: tuple[int, ...] = ()
    lost: dict[str, int] = field(default_factory=dict)
    attributes: Attributes | None = None
    error: str | None = None
    cached: bool = False


class FileTimeout(BaseException):
    """The per-file time limit's alarm; not an ``Exception``, so that no handler in the reader keeps it."""


_alarm_armed = False


def _on_alarm(signum: int, frame: object) -> None:
    if _alarm_armed:  # a signal that arrives after the file is done is ignored
        raise FileTimeout


def _too_slow() -> str:
    return f"took longer than {FILE_TIME_LIMIT_S:g} s to read"


def encode_within_limit(
    path: str | os.PathLike[str] | MemberData, tokenizer: Tokenizer, known: frozenset[str] = frozenset()
) -> EncodedFile:
    """Read and encode one file (or an archive member already read); any failure becomes a one-line
    reason, never an exception.

    A file whose content hash is in ``known`` comes back ``cached``, not encoded. A file that takes
    longer than ``FILE_TIME_LIMIT_S`` is given up, on every path (worker processes, a build in one
    process, ``composer encode``): by SIGALRM in a main thread on Unix (any timer already set is put back
    afterwards), elsewhere (another thread, Windows) by encoding in a helper thread and no longer waiting
    for it at the limit; a thread cannot be stopped, so it runs on in the background.
    """
    if not isinstance(path, MemberData):
        path = str(path)
    limit = FILE_TIME_LIMIT_S
    if not limit or limit <= 0:
        return _encode_file(path, tokenizer, known)
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        return _encode_with_alarm(path, tokenizer, known, limit)
    return _encode_in_thread(path, tokenizer, known, limit)


def _encode_with_alarm(
    path: str | MemberData, tokenizer: Tokenizer, known: frozenset[str], limit: float
) -> EncodedFile:
    global _alarm_armed
    old_handler = signal.signal(signal.SIGALRM, _on_alarm)
    t0, old_delay, old_interval = time.monotonic(), 0.0, 0.0
    _alarm_armed = True
    try:
        try:
            old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, limit)
            return _encode_file(path, tokenizer, known)
        finally:
            _alarm_armed = False  # first: from here on a late alarm is a no-op
            signal.setitimer(signal.ITIMER_REAL, 0)
    except FileTimeout:  # raised outside the reader's own handler (e.g. as the file finished)
        return EncodedFile(_name(path), "", error=_too_slow())
    finally:
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:  # someone else's timer was pending: give it back what is left of it
            left = max(old_delay - (time.monotonic() - t0), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)


def _encode_in_thread(
    path: str | MemberData, tokenizer: Tokenizer, known: frozenset[str], limit: float
) -> EncodedFile:
    done: list[EncodedFile] = []
    helper = threading.Thread(
        target=lambda: done.append(_encode_file(path, tokenizer, known)), name="composer-encode", daemon=True
    )
    helper.start()
    helper.join(limit)
    if done:
        return done[0]
    if helper.is_alive():
        return EncodedFile(_name(path), "", error=_too_slow())
    return EncodedFile(_name(path), "", error="unexpected failure while encoding")


def _name(item: str | MemberData) -> str:
    return str(item.path) if isinstance(item, MemberData) else item


def _read(item: str | MemberData) -> bytes | str:
    """The item's bytes, or why there are none."""
    if isinstance(item, MemberData):
        return item.data if item.data is not None else str(item.error)
    try:
        size = os.stat(item).st_size
        if size > MAX_FILE_BYTES:
            return f"file is {size} bytes, more than the {MAX_FILE_BYTES} a MIDI file may have"
        return Path(item).read_bytes()
    except OSError as e:
        return f"cannot read: {e.strerror or e}"


def _encode_file(item: str | MemberData, tokenizer: Tokenizer, known: frozenset[str]) -> EncodedFile:
    path, data = _name(item), _read(item)
    if isinstance(data, str):
        return EncodedFile(path, "", error=data)
    sha = hashlib.sha256(data).hexdigest()
    if sha in known:
        return EncodedFile(path, sha, cached=True)
    try:
        score, report = parse_midi_bytes(data)
        if score.note_count == 0:
            raise MidiReadError("no notes")
        ids, stats = tokenizer.encode(score)
        if stats.notes_encoded == 0:
            raise MidiReadError(f"no notes in the encodable range ({stats.lost()})")
        attributes = attributes_of(score)
    except ComposerError as e:
        return EncodedFile(path, sha, error=str(e))
    except FileTimeout:
        return EncodedFile(path, sha, error=_too_slow())
    except MemoryError:
        return EncodedFile(path, sha, error="too large to encode in memory")
    except Exception as e:  # a bug of ours on a weird file must not cost the other files
        return EncodedFile(path, sha, error=f"unexpected {type(e).__name__}: {e}")
    pitched = [n.pitch for inst in score.instruments if not inst.is_drum for n in inst.notes]
    lost = {**stats.lost(), **report.problems()}
    return EncodedFile(
        path,
        sha,
        ids=ids,
        notes=stats.notes_encoded,
        seconds=score.duration_seconds,
        pitch_min=min(pitched) if pitched else None,
        pitch_max=max(pitched) if pitched else None,
        programs=instrument_set(score),
        lost=lost,
        attributes=attributes,
    )
