"""The small interface every workspace transport implements.

Everything above this layer (lock, store, queue) is written once against it,
so the local disk and SFTP cannot drift apart. Work is grouped in a `Batch`:
requests are sent together and their replies read together, which on SFTP is
one round trip however many requests it holds (OpenSSH answers in order).
Requests run in the order they were added; none is conditional on another,
so a caller that needs "only if the previous one worked" uses two batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    def done(self) -> bool:
        return self._done

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
        """mode: 'r' read, 'x' create-exclusive for writing, 'a' append (create).

        The local transport never follows a symlink in the last component
        (O_NOFOLLOW); over SFTP the server does, so callers that must not be
        led outside the workspace compare `fstat` of the handle with `lstat`
        of the path (see `same_file`)."""
        assert mode in ("r", "x", "a")
        return self._add("open", path, mode)

    def read(self, handle: Any, offset: int, size: int) -> Reply:
        """Bytes at offset (b'' at end of file); may be shorter than asked."""
        return self._add("read", handle, offset, size)

    def write(self, handle: Any, offset: int, data: bytes) -> Reply:
        return self._add("write", handle, offset, data)

    def close(self, handle: Any) -> Reply:
        return self._add("close", handle)

    def write_all(self, handle: Any, data: bytes, offset: int = 0) -> list[Reply]:
        return [
            self.write(handle, offset + i, data[i : i + CHUNK])
            for i in range(0, max(len(data), 1), CHUNK)
            if data[i : i + CHUNK] or i == 0
        ]

    def read_span(self, handle: Any, size: int) -> list[Reply]:
        """Reads covering `size` bytes plus one chunk more, so the end is seen."""
        return [self.read(handle, off, CHUNK) for off in range(0, size + CHUNK, CHUNK)]


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

    def __init__(self) -> None:
        self.round_trips = 0
        self.requests = 0

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
        """Whole files, None for missing ones: two round trips for any number."""
        out: dict[str, bytes | None] = {}
        todo = list(paths)
        for _attempt in range(5):
            first = Batch()
            asked = {p: (first.stat(p), first.open(p, "r")) for p in todo}
            self.run(first)
            second = Batch()
            reads: dict[str, list[Reply]] = {}
            for path, (st, handle) in asked.items():
                if not handle.ok:
                    if isinstance(handle.error, FileNotFoundError):
                        out[path] = None
                        continue
                    raise handle.error  # type: ignore[misc]
                reads[path] = second.read_span(handle.value, st.value.size if st.ok else 0)
                second.close(handle.value)
            self.run(second)
            todo = []
            for path, replies in reads.items():
                data, complete = joined(replies)
                if complete:
                    out[path] = data
                else:  # grew past what stat said: read it again
                    todo.append(path)
            if not todo:
                return out
        raise OSError(f"{todo[0]} keeps growing while it is read")

    def close(self) -> None:
        pass

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
