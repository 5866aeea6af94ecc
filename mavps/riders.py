"""A workspace file read riding in a transaction's last two round trips instead of taking two of its own.

Why: `mavps claim` prints the claimed task's instructions; read after the claim, they cost two more
round trips (six waits instead of four). The claim's transaction knows the file once its change has run,
and still has two batches to send (write, commit): the read's own two batches go out with them.

The checks are files.read_file's, request for request (every directory along the path lstat'ed around
the open, the handle's fstat the very file those lstats saw), only spread over the two batches; the file
is read in one window. Whatever is not certain (a check that failed, a file bigger than one window, a
path that is not a plain relative one, a transaction that gave up) leaves `data()` None and the caller
reads the file the usual way: a rider never makes its transaction fail and never returns unchecked bytes.
"""
from __future__ import annotations

from typing import Any

from . import validate
from .errors import MavpsError
from .files import Look, _check_path, _look, _window, prefixes
from .transport.base import CHUNK, Batch, Reply, same_file

#: The steps a transaction calls `stage` with: its write batch, its commit batch, or its abort batch.
WRITE, COMMIT, ABORT = "write", "commit", "abort"


class RidingRead:
    """One small file read in a transaction's write and commit batches (`Txn.ride`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.dirs: list[str] = []
        self.before: list[Look] = []
        self.after: list[Look] = []
        self.opened: Reply | None = None
        self.fst: Reply | None = None
        self.reads: list[Reply] = []
        self.closed = False
        try:
            self.path = validate.relative_path(path)
            self.usable = True
        except MavpsError:
            self.usable = False  # the usual read says what is wrong with it
        if self.usable:
            self.dirs = prefixes(self.path)[:-1]

    def stage(self, b: Batch, step: str) -> None:
        """Add this read's requests to a batch of the transaction (never raises for what the server said)."""
        if not self.usable:
            return
        if step == WRITE:
            self.before = _look(b, self.dirs, self.path)
            self.opened = b.open(self.path, "r")
            self.after = _look(b, self.dirs, self.path)
            return
        if self.opened is None or not self.opened.ok or self.closed:
            return
        handle: Any = self.opened.value
        if step == COMMIT:
            self.fst = b.fstat(handle)
            first = _lasts_first(self.before)
            self.reads = _window(b, handle, 0, first.size if first is not None else 0)
        b.close(handle)
        self.closed = True

    def data(self) -> bytes | None:
        """The file's bytes if every check passed and it was read whole in the window; else None."""
        if self.fst is None or not self.fst.ok or not self.reads:
            return None
        try:
            seen = _check_path(self.path, self.dirs, self.before + self.after)
        except MavpsError:
            return None
        if not all(same_file(self.fst.value, st) for st in seen):
            return None
        return _whole(self.reads)


def _whole(reads: list[Reply]) -> bytes | None:
    """The chunks read from offset 0 up to the first short one (the end), as files._pump takes them."""
    out = []
    for reply in reads:
        if not reply.ok:
            return None
        out.append(reply.value)
        if len(reply.value) < CHUNK:
            return b"".join(out)
    return None  # the window ended before the file did


def _lasts_first(looks: list[Look]) -> Any:
    """The first lstat of the file itself, if it was one of a file (its size is the read's hint)."""
    for _pairs, lasts in looks:
        for reply in lasts:
            return reply.value if reply.ok and not reply.value.is_link else None
    return None
