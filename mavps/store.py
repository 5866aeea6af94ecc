"""Atomic JSON state under the lock, and lock-free looks and appends.

`Store.transact(files, change)` is the one way state changes. On SFTP it is
four round trips however many files it touches:

  1. make a lock candidate and its temp files, take the lock (rename), stat
     and open the state files (opened after the rename, so under the lock)
  2. record the owner, read the files
  3. write the new contents into temp files inside the lock directory
  4. commit: keep the old file as `<name>.bak`, rename each temp file over
     its target, append the log lines, release the lock

Writes are checked (step 3) before anything is renamed into place (step 4):
a write that failed is never committed. The renames in step 4 start from
`.mavps.lock/<name>.<token>.tmp`, a path that exists only while this process
still holds the lock, so a holder whose lock was broken cannot commit.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Sequence, TypeVar

from . import lock as lk
from .errors import CorruptState, LockLost, LockTimeout, MavpsError, NotFound, TransportError
from .timeutil import from_epoch, iso, utcnow
from .transport.base import Batch, Reply, Transport, joined

T = TypeVar("T")

LOG_FILE = "agent-comms.jsonl"
MAX_LOG_LINE = 32 * 1024  # larger appends could interleave with other writers

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


def dumps(value: Any) -> bytes:
    """Pretty JSON for files people read with cat and jq."""
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def log_line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(", ", ": ")) + "\n").encode("utf-8")


def parse_json(path: str, data: bytes) -> Any:
    """Parse a state file; a bad one is reported with its position, never rewritten."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptState(path, f"not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise CorruptState(path, "the file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptState(path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


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
    lock_ttl: float = 10.0
    lock_timeout: float = 30.0


class Store:
    def __init__(self, transport: Transport, agent: str, settings: Settings | None = None) -> None:
        self.transport = transport
        self.agent = agent
        self.settings = settings or Settings()
        self.watch = lk.StaleWatch()
        #: lock wait of the last transaction, seconds (for benchmarks and status)
        self.last_lock_wait = 0.0
        self.events: list[dict[str, Any]] = []  # lock breaks seen, for tests and doctor
        self._contended_at = -1e9  # monotonic time our last transaction found the lock busy

    # ----- lock-free -------------------------------------------------------
    def look(self, paths: Sequence[str]) -> dict[str, bytes | None]:
        """Read whole files without the lock: two round trips, never a partial file."""
        return self.transport.read_files(list(paths))

    def append(self, path: str, data: bytes) -> None:
        """Append one record (an O_APPEND write of at most 32 KiB: lines stay whole)."""
        if len(data) > MAX_LOG_LINE:
            from .errors import InvalidInput

            raise InvalidInput(f"log record is {len(data)} bytes, over the {MAX_LOG_LINE} byte limit")
        b = Batch()
        handle = b.open(path, "a")
        self.transport.run(b)
        b = Batch()
        wrote = b.write(handle.value, 0, data)
        b.close(handle.value)
        self.transport.run(b)
        wrote.value

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
        tmp = {f: f"{f}.{token}.tmp" for f in files}
        tmp.update({f"#new{i}": f"new{i}.{token}.tmp" for i in range(new_files)})
        if time.monotonic() - self._contended_at < CONTENDED_FOR:
            time.sleep(random.uniform(0, COURTESY))  # let a waiter have the lock we just gave back
        started = time.monotonic()
        deadline = started + self.settings.lock_timeout

        # Round trip 1: candidate + temp files, take the lock, open the inputs.
        b = Batch()
        made = b.mkdir(cand)
        owner_h = b.open(f"{cand}/{lk.OWNER}", "x")
        out_h = {f: b.open(f"{cand}/{tmp[f]}", "x") for f in tmp}
        log_h = b.open(LOG_FILE, "a")
        attempt = self._attempt(b, cand, files, probe=False)
        sent = time.monotonic()
        tr.run(b)
        if not made.ok or not owner_h.ok:
            self._cleanup_candidate(cand, [owner_h, *out_h.values()], log_h, [f"{cand}/{t}" for t in tmp.values()])
            err = made.error or owner_h.error
            if isinstance(err, FileNotFoundError):
                raise NotFound(f"workspace {tr.location} does not exist: run `mavps init`") from None
            raise TransportError(f"cannot create the lock in {tr.location}: {err}") from None
        backoff = POLL_FIRST
        if not attempt["rename"].ok:
            self._contended_at = started
        limits: dict[tuple[Any, ...], tuple[float, dict[str, Any] | None]] = {}
        while not attempt["rename"].ok:
            to_close = [h.value for _st, h in attempt["inputs"].values() if h.ok]
            sighting = self._sighting(attempt)
            if sighting.identity is not None:
                observed = self.watch.observed_for(sighting.identity)
                seen = max(observed, sighting.server_age or 0.0)
                if sighting.identity not in limits and seen > self.settings.lock_ttl:
                    holder, _ = lk.read_owner(tr)  # the holder may have asked for a longer lease
                    limits[sighting.identity] = (lk.holder_ttl(holder, self.settings.lock_ttl), holder)
                limit, holder = limits.get(sighting.identity, (None, None))
                if limit is not None and seen > limit:
                    token_seen = holder.get("token") if holder else None
                    unfinished: list[str] = []
                    if lk.break_lock(tr, sighting.identity, token_seen, token, unfinished) == "broken":
                        self._note_break(holder, observed, sighting.server_age, unfinished)
                    b = Batch()
                    attempt = self._attempt(b, cand, files, probe=True, close=to_close)
                    sent = time.monotonic()
                    tr.run(b)
                    continue
            now = time.monotonic()
            if now >= deadline:
                self._close_handles(to_close)
                holder, _ = lk.read_owner(tr)
                self._cleanup_candidate(cand, [owner_h, *out_h.values()], log_h, [f"{cand}/{t}" for t in tmp.values()])
                raise LockTimeout(now - started, holder, sighting.server_age)
            step = backoff if now - started < AGE_AFTER else min(backoff, POLL_AGED)
            time.sleep(min(random.uniform(step / 2, step), max(0.0, deadline - now)))
            backoff = min(backoff * 2, POLL_CAP)
            self._contended_at = time.monotonic()
            b = Batch()
            attempt = self._attempt(b, cand, files, probe=True, close=to_close)
            sent = time.monotonic()
            tr.run(b)
        self.last_lock_wait = sent - started
        acquired = sent
        clock = attempt["now"]
        server_now = from_epoch(clock.value.mtime) if clock.ok else utcnow()
        try:
            # Round trip 2: say who holds the lock, read the files.
            b = Batch()
            record = lk.owner_record(self.agent, token, ttl)
            b.write_all(owner_h.value, json.dumps(record, indent=2).encode() + b"\n")
            b.close(owner_h.value)
            reads: dict[str, list[Reply]] = {}
            for f, (st, h) in attempt["inputs"].items():
                if h.ok:
                    reads[f] = b.read_span(h.value, st.value.size if st.ok else 0)
                    b.close(h.value)
                elif not isinstance(h.error, FileNotFoundError):
                    raise TransportError(f"cannot read {f}: {h.error}")
            tr.run(b)
            raw: dict[str, bytes | None] = {f: None for f in files}
            for f, replies in reads.items():
                data, complete = joined(replies)
                if not complete:
                    raise TransportError(f"{f} changed while locked: someone writes it without the lock")
                raw[f] = data
            txn = Txn(now=server_now, raw=raw, token=token, slots=new_files)
            result = change(txn)
            self._check_lease(acquired, ttl)
            return self._commit(txn, result, files, tmp, out_h, log_h, acquired, ttl)
        except BaseException:
            self._abort(token, list(tmp), tmp, out_h, log_h)
            raise

    def _attempt(self, b: Batch, cand: str, files: list[str], probe: bool, close: Sequence[Any] = ()) -> dict[str, Any]:
        """Requests that try to take the lock, then open the files it guards."""
        out: dict[str, Any] = {}
        for handle in close:  # inputs opened by the previous, failed attempt
            b.close(handle)
        if probe:  # a fresh mtime from the server's clock, for judging ages
            b.mkdir(f"{cand}/now")
            out["probe"] = b.stat(f"{cand}/now")
            b.rmdir(f"{cand}/now")
        out["rename"] = b.rename(cand, lk.LOCK)
        out["lock"] = b.stat(lk.LOCK)
        out["me"] = b.stat(f"{lk.LOCK}/{lk.OWNER}")  # ours if the rename worked
        if not probe:
            out["probe"] = b.stat(f"{cand}/{lk.OWNER}")  # created in this same batch
        out["now"] = out["probe"] if probe else out["me"]
        out["inputs"] = {f: (b.stat(f), b.open(f, "r")) for f in files}
        return out

    def _sighting(self, attempt: dict[str, Any]) -> lk.Sighting:
        lock_st = attempt["lock"].value if attempt["lock"].ok else None
        owner_st = attempt["me"].value if attempt["me"].ok else None
        ident = lk.identity_of(lock_st, owner_st)
        age = None
        if ident is not None and attempt["probe"].ok:
            ref = owner_st or lock_st
            age = attempt["probe"].value.mtime - ref.mtime
        return lk.Sighting(ident, age)

    def _note_break(self, holder: dict[str, Any] | None, observed: float, age: float | None,
                    unfinished: Sequence[str] = ()) -> None:
        event = {
            "timestamp": iso(utcnow()),
            "agent": self.agent,
            "event": "lock_broken",
            "message": f"broke a stale workspace lock held by {(holder or {}).get('owner', 'an unknown holder')}",
            "holder": holder,
            "observed_seconds": round(observed, 1),
            "server_age_seconds": age,
        }
        self.events.append(event)
        notes = [{"timestamp": event["timestamp"], "agent": self.agent, "event": "rolled_back", "txn": t,
                  "message": "a stale lock held this transaction's unfinished commit: "
                             "records with this txn did not take effect"} for t in unfinished]
        try:
            self.append(LOG_FILE, b"".join(log_line(r) for r in [event, *notes]))
        except MavpsError:
            pass

    def _check_lease(self, acquired: float, ttl: float) -> None:
        if time.monotonic() - acquired > ttl / 2:
            raise LockLost(f"held the lock for more than half its {ttl:g}s lease before committing; retrying")

    def _commit(self, txn: Txn, result: T, files: list[str], tmp: dict[str, str],
                out_h: dict[str, Reply], log_h: Reply, acquired: float, ttl: float) -> T:
        tr = self.transport
        L = lk.LOCK
        changed = [f for f in files if f in txn.writes]
        content = {f: dumps(txn.writes[f]) for f in changed}
        targets = {f: f for f in changed}
        for i, (path, data) in enumerate(txn.puts.items()):
            content[f"#new{i}"] = data
            targets[f"#new{i}"] = path
        # Round trip 3: new contents into the temp files; checked before any rename.
        b = Batch()
        checks: list[Reply] = []
        for f in tmp:
            if f in content:
                checks += b.write_all(out_h[f].value, content[f])
            checks.append(b.close(out_h[f].value))
            if f not in content:
                b.remove(f"{L}/{tmp[f]}")
        extra = {p: b.open(p, "a") for p in txn.appends}
        for d in sorted({p.rpartition("/")[0] for p in txn.puts} - {""}):
            b.mkdir(d)  # usually there already; the rename below reports a real problem
        if content or extra:
            tr.run(b)
            for reply in checks + list(extra.values()):
                if not reply.ok:
                    raise MavpsError(f"could not write the new state ({reply.error}); nothing was changed")
            self._check_lease(acquired, ttl)
            b = Batch()
        # Round trip 4: log, commit, release. The log lines go first, tagged with the
        # transaction: a process that dies before the last rename (the first file
        # named, the commit point) leaves its temp files in the lock, and whoever
        # breaks that lock marks the transaction rolled back (lock.break_lock).
        for r in txn.log:
            r.setdefault("txn", txn.token)
        lines = b"".join(log_line(r) for r in txn.log)
        if log_h.ok:
            if lines:
                b.write(log_h.value, 0, lines)
            b.close(log_h.value)
        for p, h in extra.items():
            b.write(h.value, 0, b"".join(txn.appends[p]))
            b.close(h.value)
        renames: list[Reply] = []
        order = [k for k in content if k.startswith("#new")] + changed[::-1]  # new files first, commit point last
        for f in order:
            if not f.startswith("#new"):
                b.link(f, f"{L}/{f}.{txn.token}.bak")
            renames.append(b.replace(f"{L}/{tmp[f]}", targets[f]))
            if not f.startswith("#new"):
                b.replace(f"{L}/{f}.{txn.token}.bak", f"{f}.bak")
        b.remove(f"{L}/{lk.OWNER}")
        released = b.rmdir(L)
        tr.run(b)
        if renames and not renames[-1].ok:
            if txn.log:
                self._rollback_note(txn)
            raise LockLost(f"the lock was taken away before the commit ({renames[-1].error}); nothing was changed")
        if not released.ok:
            self._tidy_lock(txn.token)
        return result

    def _rollback_note(self, txn: Txn) -> None:
        note = {"timestamp": iso(utcnow()), "agent": self.agent, "event": "rolled_back", "txn": txn.token,
                "message": "the records just above with this txn did not take effect: the lock was lost"}
        for r in txn.log:
            r.setdefault("txn", txn.token)
        try:
            self.append(LOG_FILE, log_line(note))
        except MavpsError:
            pass

    def _tidy_lock(self, token: str) -> None:
        """Release when rmdir found leftovers: remove only our own files."""
        try:
            names = self.transport.listdir(lk.LOCK)
        except (FileNotFoundError, MavpsError):
            return
        b = Batch()
        mine = [n for n in names if token in n]
        for n in mine:
            b.remove(f"{lk.LOCK}/{n}")
        if len(mine) == len(names):
            b.rmdir(lk.LOCK)
        self.transport.run(b)

    def _abort(self, token: str, files: list[str], tmp: dict[str, str], out_h: dict[str, Reply], log_h: Reply) -> None:
        """Give the lock back without changing anything (best effort, bounded)."""
        b = Batch()
        for f in files:
            if out_h[f].ok:
                b.close(out_h[f].value)
            b.remove(f"{lk.LOCK}/{tmp[f]}")
        if log_h.ok:
            b.close(log_h.value)
        b.remove(f"{lk.LOCK}/{lk.OWNER}")
        b.rmdir(lk.LOCK)
        try:
            self.transport.run(b)
        except MavpsError:
            pass

    def _cleanup_candidate(self, cand: str, handles: list[Reply], log_h: Reply, paths: list[str]) -> None:
        b = Batch()
        for h in handles + [log_h]:
            if h.ok:
                b.close(h.value)
        for p in paths:
            b.remove(p)
        b.remove(f"{cand}/{lk.OWNER}")
        b.rmdir(cand)
        try:
            self.transport.run(b)
        except MavpsError:
            pass

    def _close_handles(self, handles: Sequence[Any]) -> None:
        if handles:
            b = Batch()
            for h in handles:
                b.close(h)
            self.transport.run(b)
