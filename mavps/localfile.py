"""Files on this machine (not in the workspace): one atomic write and one lock.

The hook's session file and a project's `.claude/settings.json` are written
here, by processes that may run at the same time (two hooks of one worker, two
`install-hooks`). A reader must see the old file or the new one, never half of
one, and two writers must not interleave their read-modify-write: hence one
replace-by-rename and one advisory lock (fcntl.flock: POSIX, like the hook's
SIGALRM deadline; it needs no import beyond the standard library, which keeps
the hook's start fast).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from typing import BinaryIO, Callable, Iterator, TypeVar

T = TypeVar("T")


def atomic_write(path: str, data: str | bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` in one rename: a temp file in the same directory, fsynced, then
    os.replace. The old file's permission bits are kept; a new file gets `mode`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    import tempfile  # here: importing it (and shutil) costs every command's start-up, most never write locally

    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            keep = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            keep = mode
        os.chmod(tmp, keep)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_through_temp(path: str, fill: Callable[[BinaryIO], T]) -> T:
    """Write `path` whole or not at all: `fill` writes a temp file in the same directory, then one os.replace.
    No fsync (unlike atomic_write): for copies fetched from the workspace, many at a time, that a crash may
    leave old but never half written. Returns what `fill` returned."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            result = fill(fh)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return result


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` for the block: a directory is locked as itself, any other
    path is a lock file created if missing (left in place: removing it would race the next locker)."""
    if os.path.isdir(path):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    else:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the flock
