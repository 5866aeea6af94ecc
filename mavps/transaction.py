"""One locked read-modify-write, in three round trips, with a single commit point.

  1. make a lock candidate with its transaction directory and temp files,
     take the lock (rename), lstat, open and read the state files (after the
     rename, so under the lock) and open the log; the reads go right behind
     each open, on the handle the open is predicted to return
     (transport/handles.py): the lock is held from here to step 3
  (2.) only if a read behind an open did not count (a wrong guess, a file
     larger than guessed, a handle that did not match its lstat): check and
     read those files again on their real handles, as a fourth round trip
  2. record the owner, close the inputs, write the new contents into the
     temp files and the transaction's log records into the log; every reply
     is checked here
  3. commit: rename the transaction directory to `.mavps.commit` (the single
     commit point, see commit.py), move each temp file over its target, keep
     the old files as `<name>.bak`, release the lock

Nothing is renamed into place unless every write of step 3 worked: a commit
happens completely, with its log records, or not at all (then its records,
if written, are followed by a `rolled_back` record naming the transaction).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Generic, Sequence, TypeVar

from . import lock as lk
from . import lockpaths as lp
from .recovery import roll_forward
from .errors import LockLost, MavpsError, NotFound, TransportError, UnsafePath
from .codec import LOG_FILE, dumps, log_line, parse_json
from .defaults import READ_GUESS_BATCH, READ_GUESS_EXTRA, READ_GUESS_FIRST
from .models import META_FILE, QUEUE_FILE, WORKERS_FILE
from .timeutil import from_epoch, iso, utcnow
from .transport.base import CHUNK, Batch, Reply, Transport, joined, opened_is, regular_file, same_file

T = TypeVar("T")

#: The state files `mavps init` makes: opened before files a workspace may lack, whose failed open would shift
#: the handles guessed for every open after it (see _stage_inputs).
ALWAYS_THERE = frozenset({QUEUE_FILE, WORKERS_FILE, META_FILE})
R = TypeVar("R")


@dataclass
class Txn:
    """What a change function sees: the files as read, the server's time; what it writes."""

    now: datetime
    raw: dict[str, bytes | None]
    token: str
    writes: dict[str, Any] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    appends: dict[str, list[bytes]] = field(default_factory=dict)
    puts: dict[str, bytes] = field(default_factory=dict)
    slots: int = 0
    #: Files removed in the commit (`delete`), and the lstat under the lock of each directory in new_dirs.
    deletes: list[str] = field(default_factory=list)
    dirs: dict[str, Any] = field(default_factory=dict)
    riders: list[Any] = field(default_factory=list)

    def put(self, path: str, data: bytes) -> None:
        """Create or replace a whole non-state file (e.g. instructions) in the commit."""
        if path not in self.puts and len(self.puts) + len(self.deletes) >= self.slots:
            raise RuntimeError("transaction opened with too few new-file slots")
        self.puts[path] = data

    def delete(self, path: str) -> None:
        """Remove a non-state file in the commit (rolled forward like a put); it takes a new-file slot."""
        if path not in self.deletes and len(self.puts) + len(self.deletes) >= self.slots:
            raise RuntimeError("transaction opened with too few new-file slots")
        if path not in self.deletes:
            self.deletes.append(path)
    def ride(self, rider: R) -> R:
        """Have a read ride in this transaction's write and commit batches (riders.RidingRead): its
        `stage(batch, step)` adds requests to them, and closes what it opened when the transaction gives up."""
        self.riders.append(rider)
        return rider

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


class Transaction(Generic[T]):
    """The three (sometimes four) round trips of one attempt at a change; `run()` returns what `change` returned."""

    def __init__(self, transport: Transport, lock: lk.WorkspaceLock, files: list[str],
                 change: Callable[[Txn], T], ttl: float, new_files: int,
                 note: Callable[[bytes], None], new_dirs: Sequence[str] = (), reads: Sequence[str] = ()) -> None:
        self.tr = transport
        self.lock = lock
        self.files = files
        self.reads = [r for r in reads if r not in files]  # non-state files read under the lock (not written)
        self.change = change
        self.ttl = ttl
        self.note = note  # appends a log line without the lock (rollback notes)
        self.token = token = lp.new_token()
        self.temps = {f: lp.temp_name(f, token) for f in files}
        self.slots = [f"new{i}.{token}.tmp" for i in range(new_files)]
        self.txd = f"{lp.LOCK}/{lp.txn_dir(token)}"
        self.record = lp.owner_record(lock.agent, token, ttl)
        self.inputs: dict[str, tuple[Reply, Reply]] = {}
        self.ahead: dict[str, tuple[Reply, list[Reply]]] = {}  # fstat and reads behind each input's open
        self.pending: list[Any] = []  # handles to close in the write batch (or when giving up)
        self.owner_written = False  # the owner record goes out with the writes unless needed sooner
        self.baks: dict[str, Reply] = {}
        self.new_dirs = list(new_dirs)  # where new files may go: lstat'ed under the lock before anything is made
        self.dirs: dict[str, Reply] = {}
        self.acquired = 0.0
        self.named: list[str] = []  # new files' temp names once renamed after their target (_stage_puts)
        self.riders: list[Any] = []  # reads riding in the write and commit batches (Txn.ride)

    # ----- round trip 1: take the lock -------------------------------------
    def run(self) -> T:
        self.lock.courtesy()
        started = time.monotonic()
        b = Batch()
        cand = self._candidate = self.lock.stage_candidate(b, self.token, lambda path: self._stage_temps(b, path))
        self.log_l, self.log_h = b.lstat(LOG_FILE), b.open(LOG_FILE, "e")
        self.log_ahead = (b.fstat_behind(self.log_h), b.lstat(LOG_FILE))  # confirm_opened's pair, if predicted
        first = self.lock.stage_attempt(b, cand, None)
        self._stage_inputs(b)
        self.tr.run(b)
        made = cand.made + list(self.out_h.values()) + self.slot_h
        if not all(r.ok for r in made):
            self.lock.drop_candidate(cand, self._open_handles())
            err = next(r.error for r in made if not r.ok)
            if isinstance(err, FileNotFoundError):
                raise NotFound(f"no mavps workspace at {self.tr.location}: run `mavps init`") from None
            raise TransportError(f"cannot create the lock in {self.tr.location}: {err}") from None
        self.owner_h = cand.owner
        self.log_ok = False
        try:
            attempt = self.lock.acquire(cand, first, self.record, self._retry)
        except BaseException:
            self.lock.drop_candidate(cand, self._open_handles())
            raise
        self.acquired = time.monotonic()
        self.lock_wait = self.acquired - started
        try:
            txn, result = self._read_and_change(attempt)
            changed = self._write(txn)
        except BaseException:
            self._abort()
            raise
        return self._commit(txn, result, changed)

    def _stage_temps(self, b: Batch, cand: str) -> None:
        txd = f"{cand}/{lp.txn_dir(self.token)}"
        b.mkdir(txd)
        self.out_h = {f: b.open(f"{txd}/{self.temps[f]}", "x") for f in self.files}
        self.slot_h = [b.open(f"{txd}/{s}", "x") for s in self.slots]

    def _stage_inputs(self, b: Batch) -> None:
        """The reads behind an attempt's rename: they count only if the rename won, so under the lock. Each file is
        read right behind its open, as much as its last size suggests (within one batch's budget): a lost race
        for the lock, whose reads still run, never drags more than that."""
        names = [*self.files, *self.reads]
        sizes = self.tr.sizes
        # files missing last time are opened last, and files never seen that a workspace may lack (reservations)
        # after those it always has: an open that fails takes no handle, and every guess after it in the batch
        # would be one off
        staged = {f: (b.lstat(f), b.open(f, "r")) for f in sorted(names, key=lambda f: _open_order(f, sizes))}
        self.inputs = {f: staged[f] for f in names}
        self.ahead = {}
        budget = READ_GUESS_BATCH
        for f, (_lst, h) in staged.items():
            guess = self._guess(f)
            if guess + CHUNK <= budget:
                budget -= guess + CHUNK
                self.ahead[f] = (b.fstat_behind(h), b.read_span_behind(h, guess))
        self.baks = {f: b.lstat(f"{f}.bak") for f in self.files}
        self.dirs = {d: b.lstat(d) for d in self.new_dirs}

    def _guess(self, f: str) -> int:
        """How much of a file to read behind its open: its last size seen (-1: missing) and some growth."""
        last = self.tr.sizes.get(f)
        return READ_GUESS_FIRST if last is None else int(max(last, 0) * 1.25) + READ_GUESS_EXTRA

    def _opened(self) -> list[Any]:
        return [h.value for _l, h in self.inputs.values() if h.ok]

    def _retry(self, b: Batch, previous: lk.Attempt) -> lk.Attempt:
        old = self._opened()  # inputs opened behind the previous, failed attempt
        attempt = self.lock.stage_attempt(b, self._candidate, self.record)
        self._stage_inputs(b)
        for handle in old:  # closed last: the new opens get no handle freed in this batch, so theirs are predicted
            b.close(handle)
        return attempt

    def _open_handles(self) -> list[Any]:
        hs = [self._candidate.owner, *self.out_h.values(), *self.slot_h, self.log_h]
        return [h.value for h in hs if isinstance(h, Reply) and h.ok] + self._opened()

    # ----- the reads: from round trip 1, or a round trip of their own ----------
    def _read_and_change(self, attempt: lk.Attempt) -> tuple[Txn, T]:
        tr = self.tr
        self.pending = [self.owner_h.value, *self._opened()]
        if attempt.commit.ok and (attempt.commit.value.is_link or not attempt.commit.value.is_dir):
            raise UnsafePath(lp.COMMIT, attempt.commit.value.kind(), "a directory (a committed change)")
        if attempt.commit.ok:  # a committed transaction is not fully applied yet: finish it first
            self.pending = [self.owner_h.value]
            _close(tr, self._opened())
            roll_forward(tr)
            b = Batch()
            self._stage_inputs(b)
            tr.run(b)
            self.pending += self._opened()
        server_now = from_epoch(attempt.owner.value.mtime) if attempt.owner.ok else utcnow()
        reads, log_after = self._reads_ahead()
        b = Batch()
        if self.ttl > self.lock.ttl:  # a longer lease than waiters assume for an unknown holder: say so first
            b.write_all(self.owner_h.value, self.record)
            self.owner_written = True
        if self.log_h.ok and log_after is None:
            log_after = (b.fstat(self.log_h.value), b.lstat(LOG_FILE))
        for f, (lst, h) in self.inputs.items():
            if h.ok and f not in reads and lst.ok and lst.value.is_file:
                reads[f] = (b.fstat(h.value), b.read_span(h.value, lst.value.size))
        if b.ops:  # a round trip only for what round trip 1's replies could not settle
            tr.run(b)
        raw: dict[str, bytes | None] = {f: self._checked(f, reads.get(f)) for f in self.inputs}
        self.tr.sizes.update({f: -1 if data is None else len(data) for f, data in raw.items()})
        for f, bak in self.baks.items():
            if bak.ok and not bak.value.is_file:
                raise UnsafePath(f"{f}.bak", bak.value.kind(), "a regular file (the previous copy)")
        txn = Txn(now=server_now, raw=raw, token=self.token, slots=len(self.slots),
                  dirs={d: r.value if r.ok else None for d, r in self.dirs.items()})
        result = self.change(txn)
        self.riders = txn.riders
        self._check_lease()
        self.log_ok = self._log_usable(log_after, bool(txn.log))
        return txn, result

    def _reads_ahead(self) -> tuple[dict[str, tuple[Reply, list[Reply]]], tuple[Reply, Reply] | None]:
        """The reads behind round trip 1's opens that count: on the open's own handle (the transport checked
        the prediction), read to the end, of the file the lstat saw; and the log's fstat and lstat."""
        reads = {}
        for f, (fst, replies) in self.ahead.items():
            lst, h = self.inputs[f]
            if not (h.ok and lst.ok and fst.ok and all(r.ok for r in replies)):
                continue
            if same_file(fst.value, lst.value) and joined(replies)[1]:
                reads[f] = (fst, replies)
        fst, lst = self.log_ahead
        return reads, (self.log_ahead if self.log_h.ok and fst.ok and lst.ok else None)

    def _checked(self, f: str, read: tuple[Reply, list[Reply]] | None) -> bytes | None:
        lst, h = self.inputs[f]
        if f in self.reads and not lst.ok and not isinstance(lst.error, FileNotFoundError):
            raise MavpsError(f"cannot read {f} in the workspace ({lst.error}: is a directory on its way a file?); "
                             "nothing was changed")
        if regular_file(f, lst, h) is None or read is None:
            return None
        fst, replies = read
        opened_is(f, lst, fst)
        data, complete = joined(replies)
        if not complete:
            if f in self.reads:  # a project file: people edit those without the lock
                raise MavpsError(f"{f} changed in the workspace while it was read; nothing was changed: try again")
            raise TransportError(f"{f} changed while locked: someone writes it without the lock")
        return data

    def _log_usable(self, after: tuple[Reply, Reply] | None, needed: bool) -> bool:
        """Whether the log can take this transaction's records; if it has records and cannot, refuse the commit."""
        if not needed:
            return False
        if regular_file(LOG_FILE, self.log_l, self.log_h) is None:
            raise NotFound(f"no {LOG_FILE} in {self.tr.location}: run `mavps init`; nothing was changed")
        assert after is not None
        self.tr.confirm_opened(LOG_FILE, self.log_h.value, *after)
        return True

    def _check_lease(self) -> None:
        if time.monotonic() - self.acquired > self.ttl / 2:
            raise LockLost(f"held the lock for more than half its {self.ttl:g}s lease before committing; retrying")

    # ----- round trip 2 (or 3): write and check everything ----------------
    def _write(self, txn: Txn) -> list[str]:
        """The new contents and the log records written and checked; nothing visible yet."""
        changed = [f for f in self.files if f in txn.writes]
        b = Batch()
        if not self.owner_written:
            b.write_all(self.owner_h.value, self.record)
        for handle in self.pending:  # the owner file, the inputs
            b.close(handle)
        self.pending = []
        checks = self._stage_contents(b, txn) + self._stage_puts(b, txn)
        targets = self._stage_target_checks(b, [*txn.puts, *txn.deletes])
        for f in changed:
            if txn.raw.get(f) is not None:
                # the previous copy, kept as <name>.bak; made through held.<token>/.. so that it lands only
                # in our own lock (a link into a later holder's lock would keep it from being released)
                b.link(f, f"{lp.LOCK}/{lp.held_dir(self.token)}/../{f}.{self.token}.bak")
        wrote_log = self._stage_log(b, txn)
        for rider in self.riders:
            rider.stage(b, "write")
        self.tr.run(b)
        try:
            _check_all([r for _, r in checks], "write the new state", "nothing was changed", [p for p, _ in checks])
            for path, want, reply in targets:
                _check_target(path, want, reply)
            _check_all(wrote_log, f"append to {LOG_FILE}", "nothing was changed")
            self._append_extra(txn)
            self._check_lease()
        except BaseException:
            if wrote_log:
                self._rollback_note()
            raise
        return changed

    def _stage_target_checks(self, b: Batch, paths: list[str]) -> list[tuple[str, str, Reply]]:
        """Requests checking where new files go. Their directory was lstat'ed under the lock: a real one gets a
        writability probe (a directory made and removed in it), a missing one is made (mkdir never follows a
        link), anything else is refused before any request goes near it. The file itself must be absent or a
        regular file."""
        checks: list[tuple[str, str, Reply]] = []
        made: set[str] = set()
        for path in paths:
            folder = path.rpartition("/")[0]
            if folder and folder not in made:
                parts = folder.split("/")
                for d in ("/".join(parts[: i + 1]) for i in range(len(parts))):  # each level, outermost first
                    if d not in self.dirs:
                        raise RuntimeError(f"transaction opened without {d} in new_dirs")
                    seen = self.dirs[d]
                    if seen.ok and (seen.value.is_link or not seen.value.is_dir):
                        raise UnsafePath(d, seen.value.kind(), "a directory")
                    if not seen.ok and d not in made:
                        checks.append((d, "made", b.mkdir(d)))
                    made.add(d)
                checks.append((folder, "writable", b.mkdir(f"{folder}/.mavps-probe.{self.token}")))
                b.rmdir(f"{folder}/.mavps-probe.{self.token}")
            checks.append((path, "file", b.lstat(path)))
        return checks

    def _stage_contents(self, b: Batch, txn: Txn) -> list[tuple[str, Reply]]:
        checks: list[tuple[str, Reply]] = []
        for f in self.files:
            if f in txn.writes:
                data = dumps(txn.writes[f])
                self.tr.sizes[f] = len(data)
                checks += [(f, r) for r in b.write_all(self.out_h[f].value, data)]
            checks.append((f, b.close(self.out_h[f].value)))
            if f not in txn.writes:
                b.remove(f"{self.txd}/{self.temps[f]}")
        return checks

    def _stage_puts(self, b: Batch, txn: Txn) -> list[tuple[str, Reply]]:
        """New whole files: written in their slot, then named after their target (see commit.temp_name)."""
        checks: list[tuple[str, Reply]] = []
        puts = list(txn.puts.items())
        for i, h in enumerate(self.slot_h):
            slot = f"{self.txd}/{self.slots[i]}"
            if len(puts) <= i < len(puts) + len(txn.deletes):  # a delete: an empty marker named after its target
                path = txn.deletes[i - len(puts)]
                self.named.append(lp.delete_name(path, self.token))
                checks.append((path, b.close(h.value)))
                checks.append((path, b.rename(slot, f"{self.txd}/{lp.delete_name(path, self.token)}")))
                continue
            if i >= len(puts):
                b.close(h.value)
                b.remove(slot)
                continue
            path, data = puts[i]
            self.tr.sizes[path] = len(data)
            self.named.append(lp.temp_name(path, self.token))
            checks += [(path, r) for r in b.write_all(h.value, data)]
            checks.append((path, b.close(h.value)))
            checks.append((path, b.rename(slot, f"{self.txd}/{lp.temp_name(path, self.token)}")))
        return checks

    def _stage_log(self, b: Batch, txn: Txn) -> list[Reply]:
        for r in txn.log:
            r.setdefault("txn", self.token)
        lines = b"".join(log_line(r) for r in txn.log)
        wrote = b.append_lines(self.log_h.value, lines) if self.log_ok and lines else []
        if self.log_h.ok:
            b.close(self.log_h.value)
        return wrote

    def _append_extra(self, txn: Txn) -> None:
        """Append to files other than the log (the archive) before the commit point; every reply checked.

        A later failed commit leaves those lines behind: readers let a task in
        task-queue.json win over its archive copies.
        """
        if not txn.appends:
            return
        tr = self.tr
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
        wrote: dict[str, list[Reply]] = {}
        for p, (_l, h) in opened.items():
            data = b"".join(txn.appends[p])  # a new file is written at offsets; an existing one appended to
            wrote[p] = b.write_all(h.value, data) if p in missing else b.append_lines(h.value, data)
            wrote[p].append(b.close(h.value))
        tr.run(b)
        torn = [p for p, replies in wrote.items() if not all(r.ok for r in replies)]
        if torn:  # only lock holders append here: cut a half-written append back so no line is left torn
            b = Batch()
            for p in torn:
                b.truncate(p, 0 if p in missing else fst[p].value.size)
            tr.run(b)
        _check_all([r for replies in wrote.values() for r in replies], f"append to {', '.join(txn.appends)}",
                   "nothing was changed")

    # ----- round trip 3 (or 4): the commit point ---------------------------
    def _commit(self, txn: Txn, result: T, changed: list[str]) -> T:
        """The commit point, then apply, keep the .bak copies, release."""
        token, L = self.token, lp.LOCK
        b = Batch()
        committed = b.rename(self.txd, lp.COMMIT)
        applied = {p: b.replace(f"{lp.COMMIT}/{lp.temp_name(p, token)}", p) for p in txn.puts}
        applied.update({f: b.replace(f"{lp.COMMIT}/{self.temps[f]}", f) for f in changed})
        for f in changed:
            if txn.raw.get(f) is not None:
                b.replace(f"{L}/{f}.{token}.bak", f"{f}.bak")
        for p in txn.deletes:  # the target first, then its marker: a roll-forward removes it again if need be
            b.remove(p)
            b.remove(f"{lp.COMMIT}/{lp.delete_name(p, token)}")
        b.rmdir(lp.COMMIT)
        release = self.lock.stage_release(b, token)
        for rider in self.riders:
            rider.stage(b, "commit")
        self.tr.run(b)
        if not committed.ok:
            if txn.log:
                self._rollback_note()
            self.lock.tidy(token)
            raise LockLost(f"the lock was taken away before the commit ({committed.error}); nothing was changed")
        failed = {p: r.error for p, r in applied.items() if not r.ok and not isinstance(r.error, FileNotFoundError)}
        self.lock.released(release, token)
        if failed:
            path, err = next(iter(failed.items()))
            raise MavpsError(f"the change was committed but {path} could not be put in place ({err}); it waits in "
                             f"{lp.COMMIT}/ and the next mavps command finishes it (see `mavps doctor`)")
        return result

    # ----- giving up ---------------------------------------------------------
    def _rollback_note(self) -> None:
        note = {"timestamp": iso(utcnow()), "agent": self.lock.agent, "event": "rolled_back", "txn": self.token,
                "message": "the records with this txn did not take effect: the commit did not happen"}
        try:
            self.note(log_line(note))
        except MavpsError:
            pass

    def _abort(self) -> None:
        """Give the lock back without changing anything (best effort, bounded)."""
        b = Batch()
        for handle in self.pending:
            b.close(handle)
        self.pending = []
        for f in self.files:
            b.close(self.out_h[f].value)
            b.remove(f"{self.txd}/{self.temps[f]}")
            b.remove(f"{lp.LOCK}/{f}.{self.token}.bak")
        for i, h in enumerate(self.slot_h):
            b.close(h.value)
            b.remove(f"{self.txd}/{self.slots[i]}")
        for name in self.named:
            b.remove(f"{self.txd}/{name}")
        if self.log_h.ok:
            b.close(self.log_h.value)
        b.rmdir(self.txd)
        release = self.lock.stage_release(b, self.token)
        for rider in self.riders:
            rider.stage(b, "abort")
        try:
            self.tr.run(b)
            self.lock.released(release, self.token)
        except MavpsError:
            pass


def _open_order(f: str, sizes: dict[str, int]) -> int:
    """0: a file seen last time, or one every workspace has; 1: never seen; 2: missing last time."""
    last = sizes.get(f)
    if last is None:
        return 0 if f in ALWAYS_THERE else 1
    return 2 if last < 0 else 0


def _close(tr: Transport, handles: Sequence[Any]) -> None:
    if handles:
        b = Batch()
        for h in handles:
            b.close(h)
        try:
            tr.run(b)
        except MavpsError:
            pass


def _check_target(path: str, want: str, reply: Reply) -> None:
    if want == "made":
        if not reply.ok:
            raise MavpsError(f"cannot create {path}/ ({reply.error}); nothing was changed")
        return
    if want == "writable":
        if not reply.ok:
            raise MavpsError(f"cannot create files in {path}/ ({reply.error}); nothing was changed. "
                             "Make that directory writable for this account")
        return
    if not reply.ok:
        if not isinstance(reply.error, FileNotFoundError):
            raise MavpsError(f"cannot use {path} ({reply.error}); nothing was changed")
        return
    st = reply.value
    if want == "file" and not st.is_file:
        raise UnsafePath(path, st.kind(), "a regular file (or nothing)")


def _check_all(replies: list[Reply], what: str, outcome: str, names: Sequence[str] = ()) -> None:
    """Every reply must be a success; the first failure becomes one clear error."""
    for i, reply in enumerate(replies):
        if not reply.ok:
            where = f" ({names[i]})" if i < len(names) else ""
            raise MavpsError(f"could not {what}{where}: {reply.error}; {outcome}. Free disk space or fix the "
                             "permissions of the workspace, then retry")
