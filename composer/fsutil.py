"""Files that are never left half-written, and folders one process writes at a time."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError


def describe_os_error(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "the disk is full"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied"
    return e.strerror or str(e)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``write(fh)`` to a temp file beside ``path``, fsync, then rename over it.

    On any failure (a full disk included) the temp file is removed and the previous file is untouched;
    an OSError becomes a ComposerError naming the file.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise ComposerError(
            f"{path}: cannot write ({describe_os_error(e)}); the previous file is kept"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


@contextlib.contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (a ``.lock`` file in it) or fail at once with a clear error.

    The lock is released when the process ends, however it ends (SIGKILL included).
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise ComposerError(
                f"{folder}: {holder} is writing to this folder; wait for it to finish or pick another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"a {what} (pid {os.getpid()})".encode(), 0)
        yield
    finally:
        os.close(fd)
