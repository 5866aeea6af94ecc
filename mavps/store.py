"""The one way in and out of the workspace's state: lock-free looks and appends, and locked transactions.

`Store.transact(files, change)` runs one `Transaction` (transaction.py: four
round trips, a single commit point) under the `WorkspaceLock` (lock.py), and
retries it when the lock was taken away before its commit point.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

from . import lock as lk
from . import recovery
from .errors import InvalidInput, LockLost, MavpsError, NotFound, TransportError, UnsafePath
from .codec import LOG_FILE, MAX_LOG_LINE, dumps, log_line, parse_json
from .defaults import LOCK_TIMEOUT, LOCK_TTL
from .transaction import Transaction, Txn
from .models import QUEUE_FILE, WORKERS_FILE
from .transport.base import Batch, Reply, Stat, Transport, joined, regular_file, same_file, unsafe_or_busy

__all__ = ["LOG_FILE", "MAX_LOG_LINE", "Settings", "Store", "Txn", "dumps", "log_line", "no_workspace", "parse_json"]

#: Files `mavps init` makes that every other operation expects: one of them missing means no workspace here.
#: (workspace.json is not among them: a workspace made by hand or by an older version may lack it, and the
#: next task id is then taken from the queue.)
LAYOUT_FILES = frozenset({QUEUE_FILE, WORKERS_FILE, LOG_FILE})


def no_workspace(location: str) -> NotFound:
    """The error for a directory that is not a workspace (a typo in the URL, or never initialised)."""
    err = NotFound(f"no mavps workspace at {location}: run `mavps init`")
    err.hint = "check the workspace URL, or run `mavps init` to create the workspace there"  # type: ignore[attr-defined]
    return err

T = TypeVar("T")


@dataclass
class Settings:
    lock_ttl: float = LOCK_TTL
    lock_timeout: float = LOCK_TIMEOUT


class Store:
    def __init__(self, transport: Transport, agent: str, settings: Settings | None = None,
                 on_event: Callable[[list[dict[str, Any]]], bool | None] | None = None) -> None:
        self.transport = transport
        self.agent = agent
        self.settings = settings or Settings()
        self.lock = lk.WorkspaceLock(transport, agent, self.settings.lock_ttl, self.settings.lock_timeout,
                                     on_event or self._log_events)
        #: lock wait of the last transaction, seconds (for benchmarks and status)
        self.last_lock_wait = 0.0

    # ----- lock-free -------------------------------------------------------
    def look(self, paths: Sequence[str], missing_ok: bool = False) -> dict[str, bytes | None]:
        """Read whole files without the lock: two round trips, never a partial file, never through a link.

        A state file or the log that is not there means there is no workspace here (NotFound), unless
        `missing_ok`: the check costs nothing, the read already says so."""
        found = self.transport.read_files(list(paths))
        if not missing_ok:
            self._expect_layout(found)
        return found

    def look_parts(self, starts: dict[str, Callable[[int], int]]) -> dict[str, tuple[bytes, int, int] | None]:
        """Files read without the lock from offset start(size) (e.g. a log's tail): (bytes, offset, size) each."""
        found = self.transport.read_parts(starts)
        self._expect_layout(found)
        return found

    def require_layout(self) -> None:
        """NotFound unless the files `mavps init` makes are here (one round trip: for the commands that read
        none of them, and to explain a failure)."""
        self._expect_layout(self.kinds(sorted(LAYOUT_FILES)))

    def _expect_layout(self, found: dict[str, Any]) -> None:
        """NotFound when a file `mavps init` makes was read and is not there."""
        if any(found[p] is None for p in found if p in LAYOUT_FILES):
            raise no_workspace(self.transport.location)

    def create_layout(self, folder: str, log: str) -> None:
        """`mavps init`'s files outside the lock: the root, a folder and an empty log, made without following
        or replacing anything planted (the log with O_EXCL); idempotent."""
        b = Batch()
        made_root = b.mkdir("")
        b.mkdir(folder)
        folder_st, log_st = b.lstat(folder), b.lstat(log)
        created = b.open(log, "x")
        self.transport.run(b)
        if created.ok:
            b = Batch()
            b.close(created.value)
            self.transport.run(b)
        elif not log_st.ok:
            if isinstance(created.error, FileNotFoundError):
                raise NotFound(f"cannot create {self.transport.location}: its parent directory does not exist")
            raise TransportError(f"cannot write in {self.transport.location}: {created.error or made_root.error}")
        elif not log_st.value.is_file:
            raise UnsafePath(log, log_st.value.kind(), "a regular file (the comms log)")
        if folder_st.ok and (folder_st.value.is_link or not folder_st.value.is_dir):
            raise UnsafePath(folder, folder_st.value.kind(), "a directory")

    def kinds(self, paths: Sequence[str]) -> dict[str, Stat | None]:
        """An lstat of each path (None where there is nothing), in one round trip; never follows a link."""
        b = Batch()
        asked = {p: b.lstat(p) for p in paths}
        self.transport.run(b)
        return {p: r.value if r.ok else None for p, r in asked.items()}

    def server_now(self) -> float | None:
        """The server's clock now (epoch seconds), or None if it cannot be read."""
        return recovery.server_now(self.transport)

    def break_by_hand(self, info: dict[str, Any]) -> tuple[str, list[str], str]:
        """Break the lock `recovery.lock_info` described (not a newer one): `mavps unlock --force`."""
        return recovery.break_by_hand(self.transport, info)

    def sweep(self, path: str) -> None:
        """Remove a broken lock's directory once what it held is recorded (see recovery.sweep)."""
        if path:
            recovery.sweep(self.transport, path)

    def append(self, path: str, data: bytes) -> None:
        """Append whole records to an existing log file (O_APPEND writes of at most 32 KiB: lines stay whole).

        Two round trips, three over SFTP: there the open follows a symlink, so
        the opened file is checked to be the regular file the path names
        before anything is written (a planted link is refused).
        """
        if len(data) > MAX_LOG_LINE:
            raise InvalidInput(f"log record is {len(data)} bytes, over the {MAX_LOG_LINE} byte limit")
        tr = self.transport
        b = Batch()
        lst, handle = b.lstat(path), b.open(path, "e")
        tr.run(b)
        try:
            if regular_file(path, lst, handle) is None:
                raise no_workspace(tr.location) if path in LAYOUT_FILES else NotFound(f"no {path} in {tr.location}")
            if tr.follows_links:  # the handle may have been led elsewhere: check it before writing
                b = Batch()
                fst, lst2 = b.fstat(handle.value), b.lstat(path)
                tr.run(b)
                tr.confirm_opened(path, handle.value, fst, lst2)
        except (MavpsError, OSError, KeyboardInterrupt):
            if handle.ok:
                b = Batch()
                b.close(handle.value)
                tr.run(b)
            raise
        b = Batch()
        wrote = b.append_lines(handle.value, data)
        closed = b.close(handle.value)
        tr.run(b)
        for reply in [*wrote, closed]:
            if not reply.ok:
                raise MavpsError(f"could not append to {path}: {reply.error}; the record was not written. "
                                 "Free disk space or fix the permissions of the workspace, then retry")

    def append_all(self, appends: dict[str, bytes], folder: str | None = None,
                   reads: Sequence[str] = (), check: Callable[[dict[str, bytes | None]], None] | None = None) -> None:
        """Append whole records to several files in the same round trips as one `append` (three over SFTP).

        Files under `folder` are made on first use (the folder with mkdir, the file with O_EXCL: nothing planted
        is followed or replaced), and `folder` must be a real directory. `reads` are read in the same batches and
        handed to `check` before anything is written (it raises to refuse). Each file gets at most 32 KiB.
        """
        for path, data in appends.items():
            if len(data) > MAX_LOG_LINE:
                raise InvalidInput(f"record for {path} is {len(data)} bytes, over the {MAX_LOG_LINE} byte limit")
        made: list[Reply] = []
        for attempt in range(2):
            opened, missing = self._open_appends(list(appends), folder, list(reads), made)
            try:
                raw = self._confirm_appends(opened, [p for p in appends if p not in missing], list(reads))
                if check is not None:
                    check(raw)
                if missing:
                    self._may_create(missing, folder, attempt)
            except (MavpsError, OSError, KeyboardInterrupt):
                self._close_replies([h for _l, h in opened.values()])
                raise
            if not missing:
                break
            made = self._create_in(folder or "", missing, [h for _l, h in opened.values()])
        b = Batch()
        replies = [(p, r) for p, data in appends.items() for r in b.append_lines(opened[p][1].value, data)]
        replies += [(p, b.close(opened[p][1].value)) for p in appends]
        for p in reads:
            if opened[p][1].ok:
                b.close(opened[p][1].value)
        self.transport.run(b)
        for path, reply in replies:
            if not reply.ok:
                raise MavpsError(f"could not append to {path}: {reply.error}; the record may be missing there. "
                                 "Free disk space or fix the permissions of the workspace, then retry")

    def _open_appends(self, paths: list[str], folder: str | None, reads: list[str],
                      made: list[Reply]) -> tuple[dict[str, tuple[Reply, Reply]], list[str]]:
        """Round trip 1: lstat and open each file (appends with 'e', reads with 'r'); which appends are missing.
        `made`: handles of files just created, closed first."""
        b = Batch()
        for h in made:
            if h.ok:
                b.close(h.value)
        dir_st = b.lstat(folder) if folder else None
        opened = {p: (b.lstat(p), b.open(p, "e" if p in paths else "r")) for p in [*paths, *reads]}
        self.transport.run(b)
        try:
            if dir_st is not None and dir_st.ok and (dir_st.value.is_link or not dir_st.value.is_dir):
                raise UnsafePath(folder or "", dir_st.value.kind(), "a directory")
            missing = [p for p in paths if regular_file(p, *opened[p]) is None]
            for p in reads:
                regular_file(p, *opened[p])
        except (MavpsError, OSError):
            self._close_replies([h for _l, h in opened.values()])
            raise
        return opened, missing

    def _may_create(self, missing: list[str], folder: str | None, attempt: int) -> None:
        """Files missing on append may be made only under `folder`, and only once."""
        outside = [p for p in missing if not folder or not p.startswith(folder + "/")]
        if outside or attempt:
            p = (outside or missing)[0]
            tr = self.transport
            raise no_workspace(tr.location) if p in LAYOUT_FILES else NotFound(f"no {p} in {tr.location}")

    def _create_in(self, folder: str, paths: list[str], to_close: list[Reply]) -> list[Reply]:
        """Make `folder` and empty `paths` in it without following or replacing anything (mkdir, O_EXCL), after
        closing `to_close`; the new files' handles (to close)."""
        b = Batch()
        for h in to_close:
            if h.ok:
                b.close(h.value)
        b.mkdir(folder)
        made = [b.open(p, "x") for p in paths]
        self.transport.run(b)
        return made

    def _confirm_appends(self, opened: dict[str, tuple[Reply, Reply]], paths: list[str],
                         reads: list[str]) -> dict[str, bytes | None]:
        """Round trip 2: each handle is the file its path names (over SFTP, where an open follows a link),
        and the reads' bytes."""
        tr = self.transport
        b = Batch()
        checks = {p: (b.fstat(opened[p][1].value), b.lstat(p)) for p in paths if tr.follows_links}
        got = {p: (b.fstat(opened[p][1].value), b.lstat(p), b.read_span(opened[p][1].value, opened[p][0].value.size))
               for p in reads if opened[p][1].ok}
        tr.run(b)
        for p, (fst, lst) in checks.items():
            tr.confirm_opened(p, opened[p][1].value, fst, lst)
        raw: dict[str, bytes | None] = {p: None for p in reads}
        for p, (fst, lst, replies) in got.items():  # a state file replaced by a commit meanwhile is fine
            if not (fst.ok and lst.ok and lst.value.is_file and same_file(fst.value, lst.value)):
                raise unsafe_or_busy(p)
            raw[p], complete = joined(replies)
            if not complete:
                raise unsafe_or_busy(p)
        return raw

    def _close_replies(self, handles: Sequence[Reply]) -> None:
        """Close the handles that were opened (best effort)."""
        b = Batch()
        for h in handles:
            if h.ok:
                b.close(h.value)
        try:
            self.transport.run(b)
        except MavpsError:
            pass

    # ----- under the lock ----------------------------------------------------
    def transact(self, files: Sequence[str], change: Callable[[Txn], T], ttl: float | None = None,
                 new_files: int = 0, new_dirs: Sequence[str] = (), missing_ok: bool = False,
                 reads: Sequence[str] = ()) -> T:
        """Run `change` on fresh copies of `files` under the lock and commit what it wrote.

        `new_files` reserves temp files for `txn.put` (whole files written in the commit), in the
        directories `new_dirs` (checked under the lock: never a link). A state file that is not there
        means there is no workspace (NotFound, nothing written) unless `missing_ok` (`mavps init`).
        `reads`: other files read under the lock with the state files (in `txn.raw`, None when missing).
        """
        if not missing_ok:
            change = self._expecting_layout(change)
        for attempt in range(3):
            txn = Transaction(self.transport, self.lock, list(files), change, ttl or self.settings.lock_ttl,
                              new_files, lambda line: self.append(LOG_FILE, line), new_dirs, reads)
            try:
                return txn.run()
            except LockLost:
                if attempt == 2:
                    raise
            finally:
                self.last_lock_wait = getattr(txn, "lock_wait", self.last_lock_wait)
        raise AssertionError("unreachable")

    def _expecting_layout(self, change: Callable[[Txn], T]) -> Callable[[Txn], T]:
        """`change`, refused before it runs when a state file it reads is missing (read in round trip 1-2)."""
        def checked(txn: Txn) -> T:
            self._expect_layout(txn.raw)
            return change(txn)
        return checked

    def _log_events(self, records: list[dict[str, Any]]) -> bool:
        """Default sink for lock events: the comms log. Whether it was written: a failure must not fail the
        transaction, but the breaker then keeps the broken lock's evidence (see WorkspaceLock._broke)."""
        try:
            self.append(LOG_FILE, b"".join(log_line(r) for r in records))
            return True
        except MavpsError:
            return False

