"""A workspace on a local directory: the embedded default, no SSH needed.

It answers every request the way OpenSSH's sftp-server does (plain rename
refuses an existing target; replace is rename(2)), so a local client and an
SFTP client can share one workspace.
"""
from __future__ import annotations

import os
import stat as statmod

from .base import Batch, Behind, NotPredicted, Stat, Transport

FILE_MODE = 0o644
DIR_MODE = 0o755


def to_stat(st: os.stat_result) -> Stat:
    m = st.st_mode
    return Stat(st.st_size, st.st_mtime, statmod.S_ISDIR(m), statmod.S_IMODE(m), statmod.S_ISLNK(m),
                statmod.S_ISREG(m), st.st_uid, st.st_gid, st.st_ino)


class LocalTransport(Transport):
    #: opens never follow a final symlink (O_NOFOLLOW) and never block on a planted FIFO (O_NONBLOCK)
    follows_links = False

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = os.path.abspath(os.path.expanduser(root))
        self.location = self.root
        self._append_fds: set[int] = set()

    def _path(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel not in ("", ".") else self.root

    def _execute(self, batch: Batch) -> None:
        for op, args, reply in batch.ops:
            if args and isinstance(args[0], Behind):  # in order: the open has run; its handle or nothing
                if not args[0].opened.ok:
                    reply.set(error=NotPredicted(f"{op} behind an open that failed"))
                    continue
                args = (args[0].opened.value, *args[1:])
            try:
                reply.set(getattr(self, "_op_" + op)(*args))
            except OSError as exc:
                reply.set(error=exc)

    def _op_mkdir(self, path: str) -> None:
        os.mkdir(self._path(path), DIR_MODE)

    def _op_rmdir(self, path: str) -> None:
        os.rmdir(self._path(path))

    def _op_remove(self, path: str) -> None:
        os.unlink(self._path(path))

    def _op_rename(self, src: str, dst: str) -> None:
        s, d = self._path(src), self._path(dst)
        if statmod.S_ISREG(os.lstat(s).st_mode):
            os.link(s, d)  # like sftp-server: link then unlink, refusing a target
            os.unlink(s)
            return
        if os.path.lexists(d):
            raise FileExistsError(17, "File exists", dst)
        os.rename(s, d)

    def _op_replace(self, src: str, dst: str) -> None:
        os.replace(self._path(src), self._path(dst))

    def _op_link(self, src: str, dst: str) -> None:
        os.link(self._path(src), self._path(dst))

    def _op_stat(self, path: str) -> Stat:
        return to_stat(os.stat(self._path(path)))

    def _op_lstat(self, path: str) -> Stat:
        return to_stat(os.lstat(self._path(path)))

    def _op_fstat(self, fd: int) -> Stat:
        return to_stat(os.fstat(fd))

    def _op_truncate(self, path: str, size: int) -> None:
        os.truncate(self._path(path), size)

    def _op_open(self, path: str, mode: str) -> int:
        flags = {
            "r": os.O_RDONLY,
            "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
            "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            "e": os.O_WRONLY | os.O_APPEND,
        }[mode]
        fd = os.open(self._path(path), flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
        if mode in ("a", "e"):
            self._append_fds.add(fd)
        return fd

    def _op_read(self, fd: int, offset: int, size: int) -> bytes:
        return os.pread(fd, size, offset)

    def _op_write(self, fd: int, offset: int, data: bytes) -> None:
        if fd in self._append_fds:
            import portalocker  # an advisory lock keeps lines whole on any filesystem

            portalocker.lock(fd, portalocker.LOCK_EX)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                portalocker.unlock(fd)
            return
        view = memoryview(data)
        while view:
            done = os.pwrite(fd, view, offset)
            view, offset = view[done:], offset + done

    def _op_close(self, fd: int | list) -> None:
        if isinstance(fd, list):  # a directory handle (opendir)
            return
        self._append_fds.discard(fd)
        os.close(fd)

    def _op_opendir(self, path: str) -> list:
        """A directory handle: its entries, each lstat'ed, handed out by the first readdir (like sftp-server)."""
        folder = self._path(path)
        out = []
        for name in sorted(os.listdir(folder)):
            try:
                out.append((name, to_stat(os.lstat(os.path.join(folder, name)))))
            except FileNotFoundError:
                continue
        return [out]

    def _op_readdir(self, handle: list) -> list:
        return handle.pop() if handle else []

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(self._path(path)))
