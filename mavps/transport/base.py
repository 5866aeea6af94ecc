"""The small interface every workspace transport implements.

Everything above this layer (lock, store, queue) is written once against it,
so the local disk and SFTP cannot drift apart. Work is grouped in a `Batch`:
requests are sent together and their replies read together, which on SFTP is
one round trip however many requests it holds (OpenSSH answers in order).
Requests run in the order they were added; none is conditional on another,
so a caller that needs "only if the previous one worked" uses two batches.
The one kind that depends on an earlier request, a read-only request on the
handle an open of the same batch returns (`read_behind`), counts only when
that open worked and returned the handle it was sent with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

#: Largest read or write sent in one request: a size every SFTP server takes.
CHUNK = 32 * 1024


@dataclass(frozen=True)
class Stat:
    size: int
    mtime: float
    is_dir: bool
    mode: int = 0
    is_link: bool = False
    is_file: bool = True  #: a regular file (False for directories, links, fifos, devices...)
    uid: int | None = None
    gid: int | None = None
    ino: int | None = None  #: inode number where the transport knows it (local only; SFTP v3 has none)

    def kind(self) -> str:
        """'file', 'directory', 'symlink' or 'special file': for messages."""
        if self.is_link:
            return "symlink"
        if self.is_dir:
            return "directory"
        return "file" if self.is_file else "special file"


def same_file(a: Stat, b: Stat) -> bool:
    """Whether two stats describe one file: by inode where known, else by every attribute SFTP v3 has.

    Used to check that an opened handle (fstat) is the very file an lstat of
    its path saw, so a symlink swapped in between is caught.
    """
    if a.ino is not None and b.ino is not None:
        return a.ino == b.ino
    return (a.size, int(a.mtime), a.mode, a.uid, a.gid, a.is_dir, a.is_link) == \
        (b.size, int(b.mtime), b.mode, b.uid, b.gid, b.is_dir, b.is_link)


class Reply:
    """The answer to one request of a batch, filled in when the batch ran."""

    __slots__ = ("_value", "_error", "_done")

    def __init__(self) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._done = False

    def set(self, value: Any = None, error: BaseException | None = None) -> None:
        self._value, self._error, self._done = value, error, True

    @property
    def ok(self) -> bool:
        return self._done and self._error is None

    @property
    def error(self) -> BaseException | None:
        return self._error

    @property
    def value(self) -> Any:
        if not self._done:
            raise RuntimeError("batch not run yet")
        if self._error is not None:
            raise self._error
        return self._value


class NotPredicted(OSError):
    """A request behind an open did not run on that open's handle (the open failed, or the server handed out
    another handle than predicted): its answer was discarded. Read the file the usual way."""


class Behind:
    """The handle argument of a request pipelined behind an OPEN of the same batch (`Batch.read_behind`)."""

    __slots__ = ("opened",)

    def __init__(self, opened: Reply) -> None:
        self.opened = opened


class Batch:
    """Requests to run together, in order. Build it, then `transport.run(batch)`."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, tuple[Any, ...], Reply]] = []

    def _add(self, op: str, *args: Any) -> Reply:
        reply = Reply()
        self.ops.append((op, args, reply))
        return reply

    def __len__(self) -> int:
        return len(self.ops)

    # Paths are relative to the workspace root.
    def mkdir(self, path: str) -> Reply:
        return self._add("mkdir", path)

    def rmdir(self, path: str) -> Reply:
        return self._add("rmdir", path)

    def remove(self, path: str) -> Reply:
        return self._add("remove", path)

    def rename(self, src: str, dst: str) -> Reply:
        """Rename that refuses an existing target (OpenSSH's plain rename)."""
        return self._add("rename", src, dst)

    def replace(self, src: str, dst: str) -> Reply:
        """Atomic rename over the target (rename(2), posix-rename@openssh.com)."""
        return self._add("replace", src, dst)

    def link(self, src: str, dst: str) -> Reply:
        """Hard link; refuses an existing target."""
        return self._add("link", src, dst)

    def stat(self, path: str) -> Reply:
        return self._add("stat", path)

    def lstat(self, path: str) -> Reply:
        """Like stat, but a symlink is reported as itself (`is_link`), not followed."""
        return self._add("lstat", path)

    def truncate(self, path: str, size: int) -> Reply:
        """Set a file's size by path (SETSTAT size; extends with zero bytes). Follows links: own files only."""
        return self._add("truncate", path, size)

    def fstat(self, handle: Any) -> Reply:
        """Stat of an open handle: the file actually opened, whatever its path now names."""
        return self._add("fstat", handle)

    def open(self, path: str, mode: str) -> Reply:
        """mode: 'r' read, 'x' create-exclusive for writing, 'a' append (create), 'e' append to an existing file.

        'x' never follows a symlink (O_CREAT|O_EXCL refuses any existing name);
        'e' never creates a file, so it cannot create one at a dangling link's target.

        The local transport never follows a symlink in the last component
        (O_NOFOLLOW); over SFTP the server does, so callers that must not be
        led outside the workspace compare `fstat` of the handle with `lstat`
        of the path (see `same_file`)."""
        assert mode in ("r", "x", "a", "e")
        return self._add("open", path, mode)

    def read(self, handle: Any, offset: int, size: int) -> Reply:
        """Bytes at offset (b'' at end of file); may be shorter than asked."""
        return self._add("read", handle, offset, size)

    # Requests on the handle an open earlier in this batch is about to return, so that a file is opened and read
    # in one round trip. Only read-only requests may go behind an open (fstat, read), never a close or a write:
    # over SFTP the handle is predicted (transport/handles.py) and a wrong guess must never change anything.
    # Each reply is the request's answer only if the open worked and returned the handle it was sent with;
    # otherwise it is a `NotPredicted` error and the caller falls back to requests on the open's real handle.
    def fstat_behind(self, opened: Reply) -> Reply:
        """`fstat` of the handle `opened` (an open of this batch, added before) will return."""
        return self._add("fstat", self._behind(opened))

    def read_behind(self, opened: Reply, offset: int, size: int) -> Reply:
        """`read` on the handle `opened` (an open of this batch, added before) will return."""
        return self._add("read", self._behind(opened), offset, size)

    def read_span_behind(self, opened: Reply, size: int) -> list[Reply]:
        """`read_span` on the handle `opened` will return: `size` bytes plus one chunk, so the end is seen."""
        behind = self._behind(opened)
        return [self._add("read", behind, off, CHUNK) for off in range(0, size + CHUNK, CHUNK)]

    def _behind(self, opened: Reply) -> Behind:
        if not any(r is opened and op == "open" for op, _a, r in self.ops):
            raise ValueError("a request behind an open needs that open earlier in the same batch")
        return Behind(opened)

    def write(self, handle: Any, offset: int, data: bytes) -> Reply:
        return self._add("write", handle, offset, data)

    def close(self, handle: Any) -> Reply:
        return self._add("close", handle)

    def opendir(self, path: str) -> Reply:
        """A directory handle (follows a link: callers lstat the path around it); close it with `close`."""
        return self._add("opendir", path)

    def readdir(self, handle: Any) -> Reply:
        """The next entries of an open directory as [(name, lstat)], [] at its end; send two to see the end."""
        return self._add("readdir", handle)

    def write_all(self, handle: Any, data: bytes, offset: int = 0) -> list[Reply]:
        """Writes of at most CHUNK bytes each: no request above what every SFTP server accepts."""
        return [
            self.write(handle, offset + i, data[i : i + CHUNK])
            for i in range(0, max(len(data), 1), CHUNK)
            if data[i : i + CHUNK] or i == 0
        ]

    def append_lines(self, handle: Any, data: bytes) -> list[Reply]:
        """Appends of whole lines, at most CHUNK bytes per request (each request is one write(2) on the
        server, so lines of concurrent appenders never interleave; a longer line is sent alone, and one over
        4 CHUNKs is cut: no request may exceed the server's packet limit, 256 KiB on OpenSSH)."""
        out, start = [], 0
        while start < len(data):
            end = start + CHUNK
            if end < len(data):
                cut = data.rfind(b"\n", start, end)
                end = cut + 1 if cut >= start else min(data.find(b"\n", end) + 1 or len(data), start + 4 * CHUNK)
            out.append(self.write(handle, 0, data[start:end]))
            start = end
        return out

    def read_span(self, handle: Any, size: int) -> list[Reply]:
        """Reads covering `size` bytes plus one chunk more, so the end is seen."""
        return [self.read(handle, off, CHUNK) for off in range(0, size + CHUNK, CHUNK)]


def _whole(size: int) -> int:
    return 0


def regular_file(path: str, lst: Reply, handle: Reply | None = None) -> Stat | None:
    """The lstat of `path` if it is a regular file, None if it does not exist; anything else is refused.

    `handle` is the reply of an open of the same path sent after the lstat:
    its error is raised when the lstat found a file that could not be opened.
    """
    from ..errors import UnsafePath

    if not lst.ok:
        if isinstance(lst.error, FileNotFoundError):
            return None
        raise lst.error  # type: ignore[misc]
    st: Stat = lst.value
    if not st.is_file:
        raise UnsafePath(path, st.kind(), "a regular file")
    if handle is not None and not handle.ok:
        if isinstance(handle.error, FileNotFoundError):
            return None  # removed between the two requests
        if isinstance(handle.error, OSError) and handle.error.errno == 40:  # ELOOP: O_NOFOLLOW met a link
            raise UnsafePath(path, "symlink", "a regular file")
        if isinstance(handle.error, PermissionError):
            from ..errors import Refused

            raise Refused(f"cannot open {path}: permission denied for this account; nothing was changed. "
                          "Ask the workspace's owner to make it readable and writable for the agents' group")
        raise handle.error  # type: ignore[misc]
    return st


def opened_is(path: str, lst: Reply, fst: Reply) -> None:
    """Refuse an open handle that is not the file the lstat before it saw (a link swapped in between).

    For files that change only under the lock; files others append to use `Transport.confirm_opened`.
    """
    if not fst.ok or not same_file(fst.value, lst.value):
        raise unsafe_or_busy(path)


def unsafe_or_busy(path: str) -> Exception:
    from ..errors import UnsafePath

    return UnsafePath(path, "file that kept changing into another one while it was opened (a symlink being "
                      "swapped in?)", "a regular file")


def joined(replies: list[Reply]) -> tuple[bytes, bool]:
    """The bytes of consecutive read replies, and whether the end was reached."""
    out = bytearray()
    for reply in replies:
        chunk = reply.value
        out += chunk
        if len(chunk) < CHUNK:
            return bytes(out), True
    return bytes(out), False


class Transport:
    """A workspace root reached somehow. Subclasses implement `_execute`."""

    #: A URL-ish description for messages (never contains secrets).
    location: str = ""
    #: Whether opening a path follows a symlink at its end (sftp-server does): then an open handle is
    #: checked against the path with fstat before it is written to.
    follows_links: bool = True

    def __init__(self) -> None:
        self.round_trips = 0
        self.requests = 0
        #: The last size seen of each file a transaction read or wrote (-1: missing): how much to read behind
        #: its next open.
        self.sizes: dict[str, int] = {}

    def run(self, batch: Batch) -> Batch:
        """Run every request of the batch; one round trip on a remote transport."""
        if batch.ops:
            self.round_trips += 1
            self.requests += len(batch.ops)
            self._execute(batch)
        return batch

    def _execute(self, batch: Batch) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def listdir(self, path: str) -> list[str]:  # pragma: no cover - interface
        raise NotImplementedError

    def read_files(self, paths: list[str]) -> dict[str, bytes | None]:
        """Whole regular files, None for missing ones: two round trips for any number."""
        got = self.read_parts({p: _whole for p in paths})
        return {p: None if part is None else part[0] for p, part in got.items()}

    def read_from(self, path: str, start: Callable[[int], int]) -> tuple[bytes, int] | None:
        """Bytes of a regular file from offset `start(size)` to its size, and the size; None when missing."""
        part = self.read_parts({path: start})[path]
        return None if part is None else (part[0], part[2])

    def read_parts(self, starts: dict[str, Callable[[int], int]]) -> dict[str, tuple[bytes, int, int] | None]:
        """For each regular file, (its bytes from offset start(size) to size, that offset, size); None when
        missing. Two round trips for any number of files.

        Never through a link: each path is lstat'ed before it is opened, and
        the open handle's fstat must match an lstat of the path taken right
        after it (a file replaced by a commit in between is simply read again).
        """
        out: dict[str, tuple[bytes, int, int] | None] = {}
        todo = list(starts)
        for _attempt in range(5):
            first = Batch()
            asked = {p: (first.lstat(p), first.open(p, "r")) for p in todo}
            self.run(first)
            second = Batch()
            reads: dict[str, tuple[int, int, Reply, Reply, list[Reply]]] = {}
            try:
                for path, (lst, handle) in asked.items():
                    if regular_file(path, lst, handle) is None:
                        out[path] = None
                        continue
                    size = lst.value.size
                    begin = min(max(0, starts[path](size)), size)
                    reads[path] = (begin, size, second.fstat(handle.value), second.lstat(path),
                                   [second.read(handle.value, off, CHUNK) for off in range(begin, size + CHUNK, CHUNK)])
            finally:
                for _lst, handle in asked.values():
                    if handle.ok:
                        second.close(handle.value)
                self.run(second)
            todo = []
            for path, (begin, size, fst, lst2, replies) in reads.items():
                data, complete = joined(replies)
                if complete and fst.ok and lst2.ok and same_file(fst.value, lst2.value):
                    out[path] = (data[: size - begin] if begin else data, begin, size)
                else:  # grew past what lstat said, or replaced meanwhile: read it again
                    todo.append(path)
            if not todo:
                return out
        raise unsafe_or_busy(todo[0])

    def confirm_opened(self, path: str, handle: Any, fst: Reply, lst: Reply, tries: int = 3) -> None:
        """Check an open handle is the file its path names (fstat and lstat sent together); ask again a few
        times when the file changed in between (a concurrent append); refuse otherwise."""
        for _ in range(tries):
            if fst.ok and lst.ok and same_file(fst.value, lst.value):
                return
            b = Batch()
            fst, lst = b.fstat(handle), b.lstat(path)
            self.run(b)
        if not (fst.ok and lst.ok and same_file(fst.value, lst.value)):
            raise unsafe_or_busy(path)

    def close(self) -> None:
        pass

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
