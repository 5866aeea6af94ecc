"""Atomic JSON state under the lock, and lock-free looks and appends.

`Store.transact(files, change)` is the one way state changes. On SFTP it is
four round trips however many files it touches:

  1. make a lock candidate with its transaction directory and temp files,
     take the lock (rename), lstat and open the state files (after the rename,
     so under the lock) and the log
  2. record the owner, check the opened files are the ones lstat saw, read them
  3. write the new contents into the temp files and the transaction's log
     records into the log; every reply is checked here
  4. commit: rename the transaction directory to `.mavps.commit` (the single
     commit point, see lock.py), move each temp file over its target, keep
     the old files as `<name>.bak`, release the lock

Nothing is renamed into place unless every write of step 3 worked: a commit
happens completely, with its log records, or not at all (then its records,
if written, are followed by a `rolled_back` record naming the transaction).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence, TypeVar

from . import lock as lk
from .defaults import LOCK_TIMEOUT, LOCK_TTL, MAX_LOG_LINE
from .errors import InvalidInput, LockLost, LockTimeout, MavpsError, NotFound, TransportError, UnsafePath
from .state import dumps, log_line, parse_json  # noqa: F401  (their old home: store.dumps, store.parse_json)
from .timeutil import from_epoch, iso, utcnow
from .transport.base import Batch, Reply, Stat, Transport, joined, opened_is, regular_file

T = TypeVar("T")

LOG_FILE = "agent-comms.jsonl"

# Waiting for a busy lock. Retries back off with jitter from POLL_FIRST up to
# POLL_CAP; a waiter that has waited AGE_AFTER seconds polls at most POLL_AGED
# apart, so waiters that just arrived cannot starve it. A process whose last
# transaction had to wait first yields up to COURTESY seconds before taking the
# lock again: otherwise the process that has just released the lock wins it
# back before any sleeping waiter polls (measured: 16 workers draining a
# queue, p99 lock wait 5.4 s, and 30 s lock timeouts with a larger queue).
POLL_FIRST = 0.02
POLL_CAP = 0.25
POLL_AGED = 0.04
AGE_AFTER = 1.0
COURTESY = 0.05
CONTENDED_FOR = 2.0  # seconds after a contended transaction during which the next one yields


@dataclass
class Txn:
    """What a change function sees: the files as read, the server's time."""

    now: datetime
    raw: dict[str, bytes | None]
    token: str
    writes: dict[str, Any] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    appends: dict[str, list[bytes]] = field(default_factory=dict)
    puts: dict[str, bytes] = field(default_factory=dict)
    slots: int = 0

    def put(self, path: str, data: bytes) -> None:
        """Create or replace a whole non-state file (e.g. instructions) in the commit."""
        if path not in self.puts and len(self.puts) >= self.slots:
            raise RuntimeError("transaction opened with too few new-file slots")
        self.puts[path] = data

    def json(self, path: str, default: Any) -> Any:
        data = self.raw.get(path)
        if data is None:
            return default
        return parse_json(path, data)

    def write(self, path: str, value: Any) -> None:
        self.writes[path] = value

    def append(self, path: str, line: bytes) -> None:
        self.appends.setdefault(path, []).append(line)

    @property
    def stamp(self) -> str:
        return iso(self.now)


@dataclass
class Settings:
    lock_ttl: float = LOCK_TTL
    lock_timeout: float = LOCK_TIMEOUT


@dataclass
class _Attempt:
    """The replies of one try at the lock, and of the reads it opened behind it."""

    rename: Reply
    lock: Reply
    owner: Reply  #: lstat of the lock's owner file: ours, freshly written, once the rename worked
    commit: Reply
    probe: Reply  #: something made just now: the server's clock while waiting
    inputs: dict[str, tuple[Reply, Reply]]
    baks: dict[str, Reply]

    def opened(self) -> list[Any]:
        return [h.value for _l, h in self.inputs.values() if h.ok]


class Store:
    def __init__(self, transport: Transport, agent: str, settings: Settings | None = None,
                 on_event: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
        self.transport = transport
        self.agent = agent
        self.settings = settings or Settings()
        self.watch = lk.StaleWatch()
        #: lock wait of the last transaction, seconds (for benchmarks and status)
        self.last_lock_wait = 0.0
        self._contended_at = -1e9  # monotonic time our last transaction found the lock busy
        self._on_event = on_event or self._log_events

    # ----- lock-free -------------------------------------------------------
    def look(self, paths: Sequence[str]) -> dict[str, bytes | None]:
        """Read whole files without the lock: two round trips, never a partial file, never through a link."""
        return self.transport.read_files(list(paths))

    def look_parts(self, starts: dict[str, Callable[[int], int]]) -> dict[str, tuple[bytes, int, int] | None]:
        """Files read without the lock from offset start(size) (e.g. a log's tail): (bytes, offset, size) each."""
        return self.transport.read_parts(starts)

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
                raise NotFound(f"no {path} in {tr.location}: run `mavps init`")
        except BaseException:
            self._close([handle])
            raise
        if tr.follows_links:  # the handle may have been led elsewhere: check it before writing
            b = Batch()
            fst, lst2 = b.fstat(handle.value), b.lstat(path)
            tr.run(b)
            try:
                tr.confirm_opened(path, handle.value, fst, lst2)
            except UnsafePath:
                self._close([handle])
                raise
        b = Batch()
        wrote = b.append_lines(handle.value, data)
        closed = b.close(handle.value)
        tr.run(b)
        _check_all(wrote + [closed], f"append to {path}", "the record was not written")

    # ----- under the lock ----------------------------------------------------
    def transact(self, files: Sequence[str], change: Callable[[Txn], T], ttl: float | None = None,
                 new_files: int = 0) -> T:
        """Run `change` on fresh copies of `files` under the lock and commit what it wrote.

        `new_files` reserves temp files for `txn.put` (whole files written in the commit).
        """
        for attempt in range(3):
            try:
                return self._transact_once(list(files), change, ttl or self.settings.lock_ttl, new_files)
            except LockLost:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _transact_once(self, files: list[str], change: Callable[[Txn], T], ttl: float, new_files: int) -> T:
        tr = self.transport
        token = lk.new_token()
        cand = lk.candidate_dir(token)
        txd = lk.txn_dir(token)
        temps = {f: lk.temp_name(f, token) for f in files}
        slots = [f"new{i}.{token}.tmp" for i in range(new_files)]
        if time.monotonic() - self._contended_at < CONTENDED_FOR:
            time.sleep(random.uniform(0, COURTESY))  # let a waiter have the lock we just gave back
        started = time.monotonic()

        # Round trip 1: candidate, transaction directory and temp files; take the lock; open the inputs.
        b = Batch()
        made = b.mkdir(cand)
        b.mkdir(f"{cand}/{txd}")
        b.mkdir(f"{cand}/{lk.held_dir(token)}")
        owner_h = b.open(f"{cand}/{lk.OWNER}", "x")
        b.truncate(f"{cand}/{lk.OWNER}", lk.owner_size(token))  # this holder's own size, and a fresh mtime
        out_h = {f: b.open(f"{cand}/{txd}/{temps[f]}", "x") for f in files}
        slot_h = [b.open(f"{cand}/{txd}/{s}", "x") for s in slots]
        log_l, log_h = b.lstat(LOG_FILE), b.open(LOG_FILE, "e")
        attempt = self._attempt(b, cand, files, fresh=True)
        tr.run(b)
        made_all = [made, owner_h, *out_h.values(), *slot_h]
        handles = [owner_h, *out_h.values(), *slot_h, log_h]
        if not all(r.ok for r in made_all):
            self._drop_candidate(cand, txd, handles, attempt)
            err = next(r.error for r in made_all if not r.ok)
            if isinstance(err, FileNotFoundError):
                raise NotFound(f"no mavps workspace at {tr.location}: run `mavps init`") from None
            raise TransportError(f"cannot create the lock in {tr.location}: {err}") from None
        record = lk.owner_record(self.agent, token, ttl)
        try:
            attempt = self._acquire(attempt, cand, files, owner_h.value, record, started)
        except BaseException:
            self._drop_candidate(cand, txd, handles, attempt)
            raise
        acquired = time.monotonic()
        self.last_lock_wait = acquired - started
        try:
            prepared = self._prepare(attempt, files, change, token, owner_h, record, log_l, log_h, out_h, slot_h,
                                     temps, acquired, ttl)
        except BaseException:
            self._abort(token, files, temps, out_h, slot_h, log_h)
            raise
        return self._finish(*prepared)

    def _prepare(self, attempt: _Attempt, files: list[str], change: Callable[[Txn], T], token: str, owner_h: Reply,
                 record: bytes, log_l: Reply, log_h: Reply, out_h: dict[str, Reply], slot_h: list[Reply],
                 temps: dict[str, str], acquired: float, ttl: float) -> tuple[Txn, T, list[str], dict[str, str]]:
        """Holding the lock: read, run `change`, write and check everything (round trips 2 and 3)."""
        tr = self.transport
        lk.check_lock_stat(attempt.lock.value if attempt.lock.ok else None)
        if attempt.commit.ok:  # a committed transaction is not fully applied yet: finish it first
            self._close(attempt.opened())
            lk.roll_forward(tr)
            b = Batch()
            attempt.inputs = {f: (b.lstat(f), b.open(f, "r")) for f in files}
            tr.run(b)
        server_now = from_epoch(attempt.owner.value.mtime) if attempt.owner.ok else utcnow()
        # Round trip 2: say who holds the lock, check what was opened, read it.
        b = Batch()
        b.write_all(owner_h.value, record)
        b.close(owner_h.value)
        log_f = (b.fstat(log_h.value), b.lstat(LOG_FILE)) if log_h.ok else None
        reads: dict[str, tuple[Reply, list[Reply]]] = {}
        for f, (lst, h) in attempt.inputs.items():
            if h.ok:
                reads[f] = (b.fstat(h.value), b.read_span(h.value, lst.value.size if lst.ok else 0))
                b.close(h.value)
        tr.run(b)
        raw: dict[str, bytes | None] = {}
        for f, (lst, h) in attempt.inputs.items():
            if regular_file(f, lst, h) is None:
                raw[f] = None
                continue
            fst, replies = reads[f]
            opened_is(f, lst, fst)
            data, complete = joined(replies)
            if not complete:
                raise TransportError(f"{f} changed while locked: someone writes it without the lock")
            raw[f] = data
        for f, bak in attempt.baks.items():
            if bak.ok and not bak.value.is_file:
                raise UnsafePath(f"{f}.bak", bak.value.kind(), "a regular file (the previous copy)")
        txn = Txn(now=server_now, raw=raw, token=token, slots=len(slot_h))
        result = change(txn)
        self._check_lease(acquired, ttl)
        log_ok = self._log_handle(log_l, log_h, log_f, bool(txn.log))
        changed = self._write(txn, files, temps, out_h, slot_h, log_h if log_ok else None, acquired, ttl)
        return txn, result, changed, temps

    def _attempt(self, b: Batch, cand: str, files: list[str], fresh: bool, close: Sequence[Any] = (),
                 owner: tuple[Any, bytes] | None = None) -> _Attempt:
        """Requests that try to take the lock, then open the files it guards (after the rename: under it)."""
        for handle in close:  # inputs opened by the previous, failed attempt
            b.close(handle)
        if owner is not None:  # a fresh mtime right before the rename: the lock's age counts from here
            b.write(owner[0], 0, owner[1])
        if not fresh:  # the server's clock now, for judging the holder's age
            b.mkdir(f"{cand}/now")
            probe = b.stat(f"{cand}/now")
            b.rmdir(f"{cand}/now")
        rename = b.rename(cand, lk.LOCK)
        lock = b.lstat(lk.LOCK)
        owner_st = b.lstat(f"{lk.LOCK}/{lk.OWNER}")
        commit = b.lstat(lk.COMMIT)
        if fresh:
            probe = b.lstat(f"{cand}/{lk.OWNER}")  # made in this same batch (still there if the rename failed)
        inputs = {f: (b.lstat(f), b.open(f, "r")) for f in files}
        baks = {f: b.lstat(f"{f}.bak") for f in files}
        return _Attempt(rename, lock, owner_st, commit, probe, inputs, baks)

    def _acquire(self, attempt: _Attempt, cand: str, files: list[str], owner_h: Any, record: bytes,
                 started: float) -> _Attempt:
        """Wait for the lock (breaking it once it is stale); the one acquire loop."""
        tr = self.transport
        deadline = started + self.settings.lock_timeout
        backoff = POLL_FIRST
        if not attempt.rename.ok:
            self._contended_at = started
        limits: dict[tuple[Any, ...], tuple[float, dict[str, Any] | None]] = {}
        while not attempt.rename.ok:
            lk.check_lock_stat(attempt.lock.value if attempt.lock.ok else None)
            sighting = self._sighting(attempt)
            if sighting.identity is not None:
                age = self.watch.age(sighting)
                if sighting.identity not in limits and age > self.settings.lock_ttl:
                    holder, _ = lk.read_owner(tr)  # the holder may have asked for a longer lease
                    limits[sighting.identity] = (lk.holder_ttl(holder, self.settings.lock_ttl), holder)
                limit, holder = limits.get(sighting.identity, (None, None))
                if limit is not None and age > limit:
                    took, unfinished = lk.break_lock(tr, lk.new_token())
                    if took:
                        observed = self.watch.observed_for(sighting.identity)
                        self._note_break(holder, observed, sighting.server_age, unfinished)
                    attempt = self._retry(cand, files, attempt, owner_h, record)
                    continue
            now = time.monotonic()
            if now >= deadline:
                self._close(attempt.opened())
                holder, _ = lk.read_owner(tr)
                raise LockTimeout(now - started, holder, sighting.server_age)
            step = backoff if now - started < AGE_AFTER else min(backoff, POLL_AGED)
            time.sleep(min(random.uniform(step / 2, step), max(0.0, deadline - now)))
            backoff = min(backoff * 2, POLL_CAP)
            self._contended_at = time.monotonic()
            attempt = self._retry(cand, files, attempt, owner_h, record)
        return attempt

    def _retry(self, cand: str, files: list[str], previous: _Attempt, owner_h: Any, record: bytes) -> _Attempt:
        b = Batch()
        attempt = self._attempt(b, cand, files, fresh=False, close=previous.opened(), owner=(owner_h, record))
        self.transport.run(b)
        return attempt

    def _sighting(self, attempt: _Attempt) -> lk.Sighting:
        lock_st = attempt.lock.value if attempt.lock.ok else None
        owner_st = attempt.owner.value if attempt.owner.ok and attempt.owner.value.is_file else None
        ident = lk.identity_of(lock_st, owner_st)
        age = None
        if ident is not None and attempt.probe.ok:
            ref = owner_st or lock_st
            age = attempt.probe.value.mtime - ref.mtime
        return lk.Sighting(ident, age)

    def _log_handle(self, lst: Reply, handle: Reply, after: tuple[Reply, Reply] | None, needed: bool) -> bool:
        """Whether the log can take this transaction's records; if it has records and cannot, refuse the commit."""
        if not needed:
            return False
        if regular_file(LOG_FILE, lst, handle) is None:
            raise NotFound(f"no {LOG_FILE} in {self.transport.location}: run `mavps init`; nothing was changed")
        assert after is not None
        self.transport.confirm_opened(LOG_FILE, handle.value, *after)
        return True

    def _note_break(self, holder: dict[str, Any] | None, observed: float, server_age: float | None,
                    unfinished: Sequence[str] = ()) -> None:
        stamp = iso(utcnow())
        event = {
            "timestamp": stamp, "agent": self.agent, "event": "lock_broken",
            "message": f"broke a stale workspace lock held by {(holder or {}).get('owner', 'an unknown holder')}",
            "holder": holder, "observed_seconds": round(observed, 1), "server_age_seconds": server_age,
        }
        notes = [{"timestamp": stamp, "agent": self.agent, "event": "rolled_back", "txn": t,
                  "message": "a stale lock held this transaction before its commit point: "
                             "records with this txn did not take effect"} for t in unfinished]
        self._on_event([event, *notes])

    def _log_events(self, records: list[dict[str, Any]]) -> None:
        """Default sink for lock events: the comms log (best effort: the event must not fail the transaction)."""
        try:
            self.append(LOG_FILE, b"".join(log_line(r) for r in records))
        except MavpsError:
            pass

    def _check_lease(self, acquired: float, ttl: float) -> None:
        if time.monotonic() - acquired > ttl / 2:
            raise LockLost(f"held the lock for more than half its {ttl:g}s lease before committing; retrying")

    def _write(self, txn: Txn, files: list[str], temps: dict[str, str], out_h: dict[str, Reply],
               slot_h: list[Reply], log_h: Reply | None, acquired: float, ttl: float) -> list[str]:
        """Round trip 3: the new contents and the log records written and checked; nothing visible yet."""
        tr = self.transport
        L, token = lk.LOCK, txn.token
        txd = f"{L}/{lk.txn_dir(token)}"
        changed = [f for f in files if f in txn.writes]
        puts = list(txn.puts.items())
        b = Batch()
        checks: list[tuple[str, Reply]] = []
        for f in files:
            if f in txn.writes:
                checks += [(f, r) for r in b.write_all(out_h[f].value, dumps(txn.writes[f]))]
            checks.append((f, b.close(out_h[f].value)))
            if f not in txn.writes:
                b.remove(f"{txd}/{temps[f]}")
        for i, h in enumerate(slot_h):
            if i < len(puts):
                path, data = puts[i]
                checks += [(path, r) for r in b.write_all(h.value, data)]
                checks.append((path, b.close(h.value)))
                checks.append((path, b.rename(f"{txd}/new{i}.{token}.tmp", f"{txd}/{lk.temp_name(path, token)}")))
            else:
                b.close(h.value)
                b.remove(f"{txd}/new{i}.{token}.tmp")
        targets = self._check_targets(b, [p for p, _ in puts], token)
        for f in changed:
            if txn.raw.get(f) is not None:
                b.link(f, f"{L}/{f}.{token}.bak")  # the previous copy, kept as <name>.bak after the commit
        for r in txn.log:
            r.setdefault("txn", token)
        lines = b"".join(log_line(r) for r in txn.log)
        wrote_log = b.append_lines(log_h.value, lines) if log_h is not None and lines else []
        if log_h is not None:
            b.close(log_h.value)
        tr.run(b)
        try:
            _check_all([r for _, r in checks], "write the new state", "nothing was changed", [p for p, _ in checks])
            for path, want, reply in targets:
                _check_target(path, want, reply)
            _check_all(wrote_log, f"append to {LOG_FILE}", "nothing was changed")
            self._append_extra(txn)
            self._check_lease(acquired, ttl)
        except BaseException:
            if wrote_log:
                self._rollback_note(txn)
            raise
        return changed

    def _finish(self, txn: Txn, result: T, changed: list[str], temps: dict[str, str]) -> T:
        """Round trip 4: the commit point, then apply, keep the .bak copies, release.

        The removals in the lock go through `held.<token>/..`, a path that only
        resolves while the lock is still ours, so a holder whose lock was
        broken never removes anything of the next holder's.
        """
        tr = self.transport
        L, token = lk.LOCK, txn.token
        held = f"{L}/{lk.held_dir(token)}"
        puts = list(txn.puts)
        b = Batch()
        committed = b.rename(f"{L}/{lk.txn_dir(token)}", lk.COMMIT)
        applied = {p: b.replace(f"{lk.COMMIT}/{lk.temp_name(p, token)}", p) for p in puts}
        applied.update({f: b.replace(f"{lk.COMMIT}/{temps[f]}", f) for f in changed})
        for f in changed:
            if txn.raw.get(f) is not None:
                b.replace(f"{L}/{f}.{token}.bak", f"{f}.bak")
        b.rmdir(lk.COMMIT)
        b.remove(f"{held}/../{lk.OWNER}")
        b.rmdir(held)
        released = b.rmdir(L)
        tr.run(b)
        if not committed.ok:
            if txn.log:
                self._rollback_note(txn)
            self._tidy_lock(token)
            raise LockLost(f"the lock was taken away before the commit ({committed.error}); nothing was changed")
        failed = {p: r.error for p, r in applied.items() if not r.ok and not isinstance(r.error, FileNotFoundError)}
        if not released.ok:
            self._tidy_lock(token)
        if failed:
            path, err = next(iter(failed.items()))
            raise MavpsError(f"the change was committed but {path} could not be put in place ({err}); it waits in "
                             f"{lk.COMMIT}/ and the next mavps command finishes it (see `mavps doctor`)")
        return result

    def _check_targets(self, b: Batch, paths: list[str], token: str) -> list[tuple[str, str, Reply]]:
        """Requests checking where new files go: each directory on the way a real directory (made if missing)
        and writable (a probe made and removed in it), the file itself absent or a regular file."""
        checks: list[tuple[str, str, Reply]] = []
        for path in paths:
            folder = path.rpartition("/")[0]
            if folder:
                for prefix in _prefixes(folder):
                    b.mkdir(prefix)  # usually there already: then this fails and the lstat below decides
                    checks.append((prefix, "directory", b.lstat(prefix)))
                checks.append((folder, "writable", b.mkdir(f"{folder}/.mavps-probe.{token}")))
                b.rmdir(f"{folder}/.mavps-probe.{token}")
            checks.append((path, "file", b.lstat(path)))
        return checks

    def _append_extra(self, txn: Txn) -> None:
        """Append to files other than the log (the archive) before the commit point; every reply checked.

        A later failed commit leaves those lines behind: readers let a task in
        task-queue.json win over its archive copies (queue.parse_archive).
        """
        if not txn.appends:
            return
        tr = self.transport
        b = Batch()
        opened = {p: (b.lstat(p), b.open(p, "e")) for p in txn.appends}
        tr.run(b)
        missing = [p for p, (lst, h) in opened.items() if regular_file(p, lst, h) is None]
        if missing:
            b = Batch()
            opened.update({p: (opened[p][0], b.open(p, "x")) for p in missing})  # O_EXCL: never through a link
            tr.run(b)
        b = Batch()
        fst = {p: b.fstat(h.value) for p, (_l, h) in opened.items() if h.ok}
        tr.run(b)
        for p, (lst, h) in opened.items():
            if not h.ok:
                raise MavpsError(f"cannot append to {p}: {h.error}; nothing was changed")
            if p not in missing:
                opened_is(p, lst, fst[p])
        b = Batch()
        wrote = []
        for p, (_l, h) in opened.items():
            data = b"".join(txn.appends[p])  # a new file is written at offsets; an existing one appended to
            wrote += b.write_all(h.value, data) if p in missing else b.append_lines(h.value, data)
            wrote.append(b.close(h.value))
        tr.run(b)
        _check_all(wrote, f"append to {', '.join(txn.appends)}", "nothing was changed")

    def _rollback_note(self, txn: Txn) -> None:
        note = {"timestamp": iso(utcnow()), "agent": self.agent, "event": "rolled_back", "txn": txn.token,
                "message": "the records with this txn did not take effect: the commit did not happen"}
        try:
            self.append(LOG_FILE, log_line(note))
        except MavpsError:
            pass

    def _tidy_lock(self, token: str) -> None:
        """Release when rmdir found leftovers: remove only our own names, and the lock only if it is ours."""
        try:
            names = self.transport.listdir(lk.LOCK)
        except (FileNotFoundError, NotADirectoryError, MavpsError):
            return
        held = lk.held_dir(token)
        if held not in names:
            return  # not our lock (any more)
        b = Batch()
        for n in names:
            if token in n and n != held:
                b.remove(f"{lk.LOCK}/{n}")
        b.remove(f"{lk.LOCK}/{held}/../{lk.OWNER}")
        b.rmdir(f"{lk.LOCK}/{held}")
        b.rmdir(lk.LOCK)
        try:
            self.transport.run(b)
        except MavpsError:
            pass

    def _abort(self, token: str, files: list[str], temps: dict[str, str], out_h: dict[str, Reply],
               slot_h: list[Reply], log_h: Reply) -> None:
        """Give the lock back without changing anything (best effort, bounded)."""
        txd = f"{lk.LOCK}/{lk.txn_dir(token)}"
        b = Batch()
        for f in files:
            b.close(out_h[f].value)
            b.remove(f"{txd}/{temps[f]}")
        for i, h in enumerate(slot_h):
            b.close(h.value)
            b.remove(f"{txd}/new{i}.{token}.tmp")
        if log_h.ok:
            b.close(log_h.value)
        for f in files:
            b.remove(f"{lk.LOCK}/{f}.{token}.bak")
        b.rmdir(txd)
        held = f"{lk.LOCK}/{lk.held_dir(token)}"
        b.remove(f"{held}/../{lk.OWNER}")  # resolves only while the lock is ours
        b.rmdir(held)
        b.rmdir(lk.LOCK)
        try:
            self.transport.run(b)
        except MavpsError:
            pass

    def _drop_candidate(self, cand: str, txd: str, handles: list[Reply], attempt: _Attempt | None) -> None:
        b = Batch()
        for h in handles:
            if h.ok:
                b.close(h.value)
        if attempt is not None:
            for h in attempt.opened():
                b.close(h)
        try:
            self.transport.run(b)
        except MavpsError:
            return
        try:
            lk.sweep(self.transport, cand)
        except (MavpsError, OSError):
            pass

    def _close(self, handles: Sequence[Any]) -> None:
        handles = [h.value if isinstance(h, Reply) else h for h in handles]
        handles = [h for h in handles if h is not None]
        if handles:
            b = Batch()
            for h in handles:
                b.close(h)
            try:
                self.transport.run(b)
            except MavpsError:
                pass


def _prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _check_target(path: str, want: str, reply: Reply) -> None:
    if want == "writable":
        if not reply.ok:
            raise MavpsError(f"cannot create files in {path}/ ({reply.error}); nothing was changed. "
                             "Make that directory writable for this account")
        return
    if not reply.ok:
        if want == "directory" or not isinstance(reply.error, FileNotFoundError):
            raise MavpsError(f"cannot use {path} ({reply.error}); nothing was changed")
        return
    st = reply.value
    if want == "directory" and (st.is_link or not st.is_dir):
        raise UnsafePath(path, st.kind(), "a directory")
    if want == "file" and not st.is_file:
        raise UnsafePath(path, st.kind(), "a regular file (or nothing)")


def _check_all(replies: list[Reply], what: str, outcome: str, names: Sequence[str] = ()) -> None:
    """Every reply must be a success; the first failure becomes one clear error."""
    for i, reply in enumerate(replies):
        if not reply.ok:
            where = f" ({names[i]})" if i < len(names) else ""
            raise MavpsError(f"could not {what}{where}: {reply.error}; {outcome}. Free disk space or fix the "
                             "permissions of the workspace, then retry")
