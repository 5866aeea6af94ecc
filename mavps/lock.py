"""The workspace lock and the commit point of a transaction.

The lock is a directory, `.mavps.lock/`, with `owner.json` inside. It is taken
by renaming a prepared candidate `.mavps.lock.<token>/` onto that name: the
rename is atomic and refuses an existing lock (a candidate is never empty).

A transaction prepares its new files in `.mavps.lock/txn.<token>/` and commits
by ONE rename of that directory to `.mavps.commit/` (`COMMIT`). That rename
works only while the lock is still this holder's (otherwise the source path
does not exist), so it is the single commit point of a multi-file change.
After it the transaction is applied file by file; whoever takes the lock next
and finds `.mavps.commit/` finishes applying it before reading anything
(`roll_forward`), so nobody reads a half-applied transaction.

A lock whose owner is older than its lease by the *server's* clock is stale.
A breaker renames it away to a unique name and never puts it back: if it took
a live holder's lock, that holder's commit point fails and it retries, so two
holders never both commit (knowledge/04 has the protocol, tests/test_lock_model.py
enumerates its interleavings). Nothing here follows a symlink: every path is
lstat'ed and only names of the shapes mavps makes are ever removed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import LockTimeout, MavpsError
from .lockpaths import (COMMIT, LOCK, OWNER, candidate_dir, check_lock_stat, held_dir, holder_ttl, identity_of,
                        new_token, owner_size, stale_dir)
from .recovery import break_lock, read_owner, sweep
from .timeutil import iso, utcnow
from .transport.base import Batch, Reply, Transport


# Waiting for a busy lock. A waiter watches the lock with ONE lstat of its owner file per poll (free? the same
# holder?) and sends a whole attempt (owner rewrite, server-clock probe, rename, the caller's reads: ~17 requests)
# only when the lock looked free, when its holder may have outlived its lease by the server's clock (the stale
# judgement then needs that clock), or once it is well into its expected wait. That expectation is how long this
# process's recent contended waits lasted: the contention itself (the holders ahead of a waiter times how long
# each holds). Polls are spaced by the wait still expected, so a newcomer behind many waiters polls rarely; from
# DUE_AT of its expected wait (DUE_FIRST without a history) a waiter retries whole attempts every POLL_MIN plus a
# round trip, as every waiter used to: a process that has just released the lock without having waited comes
# straight back a round trip later and beats a waiter that must first see the lock free (measured: 4 workers, a
# 6 s wait). Near first come, first served, without tickets. A process whose last transaction had to wait yields,
# before taking the lock again, two round trips plus POLL_MIN: otherwise it wins its lock back before any waiter
# can (measured with the old full-attempt polls: 16 workers, p99 lock wait 6.7 s, 28 round trips a transaction).
POLL_MIN = 0.01  # the shortest sleep between two polls (the due and overdue waiters')
POLL_CAP = 0.25  # the longest
POLL_SPREAD = 8.0  # a waiter sleeps 1/POLL_SPREAD of the time it still expects to wait
COURTESY_CAP = 0.2  # the longest a process yields after a contended transaction
CONTENDED_FOR = 2.0  # seconds after a contended transaction during which the next one yields
AVERAGE = 0.3  # weight of the newest value in the running estimates (wait, round trip)
DUE_AT = 0.5  # a waiter is due for whole attempts after this share of its expected wait
DUE_FIRST = 1.0  # a waiter with no history of waits is due after this
CLOCK_EVERY = 0.25  # while a holder may be stale, read the server's clock (a whole attempt) at most this often


@dataclass
class Sighting:
    """What a waiter saw of the lock in one attempt."""

    identity: tuple[Any, ...] | None  # None: no lock there any more
    server_age: float | None  # seconds since the holder took it, by the server's clock; None if unknown


@dataclass
class StaleWatch:
    """Since when (monotonic) this process has seen each lock instance: the judge when the server's clock is not
    available."""

    first_seen: dict[tuple[Any, ...], float] = field(default_factory=dict)

    def observed_for(self, identity: tuple[Any, ...]) -> float:
        now = time.monotonic()
        return now - self.first_seen.setdefault(identity, now)

    def age(self, sighting: Sighting) -> float:
        """How long the lock has been held, by the server's clock or by how long this process has watched this
        very instance (never by comparing clocks). Neither can exceed the real time held: the owner file's mtime
        is refreshed when the holder takes the lock, and each holder's instance has its own identity."""
        observed = self.observed_for(sighting.identity) if sighting.identity is not None else 0.0
        return max(sighting.server_age or 0.0, observed)



@dataclass
class Attempt:
    """The replies of one try at the lock (the caller's reads staged behind it are its own)."""

    rename: Reply
    lock: Reply
    owner: Reply  #: lstat of the lock's owner file: ours, freshly written, once the rename worked
    commit: Reply  #: lstat of `.mavps.commit`: a committed transaction waiting to be applied
    probe: Reply  #: something made just now: the server's clock while waiting

    def server_now(self) -> float | None:
        """The server's clock when this attempt ran (its probe's mtime), if the probe worked."""
        return self.probe.value.mtime if self.probe.ok else None

    def sighting(self) -> Sighting:
        lock_st = self.lock.value if self.lock.ok else None
        owner_st = self.owner.value if self.owner.ok and self.owner.value.is_file else None
        ident = identity_of(lock_st, owner_st)
        age = None
        if ident is not None and self.probe.ok:
            age = self.probe.value.mtime - (owner_st or lock_st).mtime
        return Sighting(ident, age)


def _average(old: float, new: float) -> float:
    return new if old <= 0 else old + AVERAGE * (new - old)


@dataclass
class Pace:
    """What this process has learnt of the lock's traffic, across its waits: how long a wait lasts (holders
    ahead of it times their cycle: the contention) and a poll's round trip."""

    wait: float = 0.0  #: seconds a contended acquire waited, running average
    rtt: float = 0.0  #: seconds a poll took, running average

    def step(self, waited: float) -> float:
        """Sleep before the next poll: the longer the wait still expected, the longer; the due waiters the least."""
        return min(POLL_CAP, max(POLL_MIN, (self.wait - waited) / POLL_SPREAD))

    def due(self, waited: float) -> bool:
        """Past its expected turn: whole attempts, so that the lock freed goes to the longest waiters."""
        return waited >= (self.wait * DUE_AT if self.wait > 0 else DUE_FIRST)

    def courtesy(self) -> float:
        """Long enough for a waiter polling every POLL_MIN to see the lock free and take it."""
        return min(COURTESY_CAP, 2 * self.rtt + POLL_MIN)


@dataclass
class Wait:
    """One acquire's wait: when it began, and the server's clock as its last whole attempt read it."""

    started: float
    clock: tuple[float, float] | None = None  #: (server time, monotonic time) of the last probe

    def read(self, attempt: Attempt) -> None:
        server = attempt.server_now()
        if server is not None:
            self.clock = (server, time.monotonic())

    def server_age(self, identity: tuple[Any, ...] | None) -> float | None:
        """A lock instance's age by the server's clock as last read plus the time since: only to decide when
        to read that clock again (a whole attempt), never to judge the lock."""
        if self.clock is None or identity is None or identity[0] != "owner":
            return None
        server, at = self.clock
        return server + (time.monotonic() - at) - identity[1]


@dataclass
class Candidate:
    """A prepared lock directory `.mavps.lock.<token>/`, before and while trying to take the lock."""

    token: str
    made: list[Reply]
    owner: Reply  #: the open handle of its owner.json

    @property
    def path(self) -> str:
        return candidate_dir(self.token)


class WorkspaceLock:
    """The workspace lock: stages taking it into a caller's batch, judges what a waiter sees, breaks a stale
    lock, stages the release; the only acquire loop, with its backoff policy.

    Events (a lock broken, transactions it rolled back) leave through `on_event`; the log formats them.
    """

    def __init__(self, transport: Transport, agent: str, ttl: float, timeout: float,
                 on_event: Callable[[list[dict[str, Any]]], bool | None]) -> None:
        self.transport = transport
        self.agent = agent
        self.ttl = ttl
        self.timeout = timeout
        self.on_event = on_event
        self.watch = StaleWatch()
        self.pace = Pace()
        self._contended_at = -1e9  # monotonic time our last acquire found the lock busy

    def courtesy(self) -> None:
        """After a contended transaction, let a waiter have the lock we just gave back."""
        if time.monotonic() - self._contended_at < CONTENDED_FOR:
            time.sleep(self.pace.courtesy())

    def stage_candidate(self, b: Batch, token: str, inside: Callable[[str], None] | None = None) -> Candidate:
        """Make `.mavps.lock.<token>/` with its owner file (this holder's own size, a fresh mtime) and the
        holder's marker; `inside(path)` stages the caller's own files in it."""
        cand = candidate_dir(token)
        made = [b.mkdir(cand)]
        b.mkdir(f"{cand}/{held_dir(token)}")
        owner = b.open(f"{cand}/{OWNER}", "x")
        b.truncate(f"{cand}/{OWNER}", owner_size(token))
        if inside is not None:
            inside(cand)
        return Candidate(token, made + [owner], owner)

    def stage_attempt(self, b: Batch, cand: Candidate, record: bytes | None) -> Attempt:
        """One try: refresh the owner file (so the lock's age counts from this rename), rename the candidate
        onto the lock, and look at what is there; the caller stages its reads right after."""
        fresh = record is None
        if not fresh:
            b.write(cand.owner.value, 0, record)
            b.mkdir(f"{cand.path}/now")  # the server's clock now, for judging the holder's age
            probe = b.stat(f"{cand.path}/now")
            b.rmdir(f"{cand.path}/now")
        rename = b.rename(cand.path, LOCK)
        lock = b.lstat(LOCK)
        owner = b.lstat(f"{LOCK}/{OWNER}")
        commit = b.lstat(COMMIT)
        if fresh:
            probe = b.lstat(f"{cand.path}/{OWNER}")  # made in this batch (still there if the rename failed)
        return Attempt(rename, lock, owner, commit, probe)

    def acquire(self, cand: Candidate, first: Attempt, record: bytes,
                retry: Callable[[Batch, Attempt], Attempt]) -> Attempt:
        """Wait until an attempt takes the lock, breaking it once it is stale; LockTimeout after `timeout`.

        `retry(batch, attempt)` stages the next whole attempt (and the caller's reads behind it): sent when a
        one-request poll saw the lock free, or when the holder may be stale by the server's clock.
        """
        wait = Wait(time.monotonic())
        deadline = wait.started + self.timeout
        attempt, limits = first, {}
        if attempt.rename.ok:
            return attempt
        self._contended_at = wait.started
        sighting = self._seen(attempt, wait)
        while not attempt.rename.ok:
            if self._broke(sighting, limits):
                attempt = self._next(cand, record, attempt, retry)
                sighting = self._seen(attempt, wait)
                continue
            now = time.monotonic()
            if now >= deadline:
                holder, _ = read_owner(self.transport)
                age = sighting.server_age if sighting.server_age is not None else wait.server_age(sighting.identity)
                raise LockTimeout(now - wait.started, holder, age)
            time.sleep(min(self.pace.step(now - wait.started), max(0.0, deadline - now)))
            self._contended_at = time.monotonic()
            sighting = Sighting(None, None) if self.pace.due(self._contended_at - wait.started) else self._poll()
            if sighting.identity is None or self._due(sighting, wait, limits):
                attempt = self._next(cand, record, attempt, retry)
                sighting = self._seen(attempt, wait)
        self.pace.wait = _average(self.pace.wait, time.monotonic() - wait.started)
        return attempt  # now ours: whatever it finds (a planted `.mavps.commit`) the caller handles holding it

    def _seen(self, attempt: Attempt, wait: Wait) -> Sighting:
        """What a whole attempt saw of the lock (refusing a lock that is not a directory)."""
        if attempt.rename.ok:
            return Sighting(None, None)
        check_lock_stat(attempt.lock.value if attempt.lock.ok else None)
        wait.read(attempt)
        return attempt.sighting()

    def _poll(self) -> Sighting:
        """One request, one round trip: lstat the lock's owner file. No identity when the lock looks free, or
        when what is there is not a lock mavps made (a whole attempt then looks, and judges, as ever)."""
        b = Batch()
        owner = b.lstat(f"{LOCK}/{OWNER}")
        began = time.monotonic()
        self.transport.run(b)
        self.pace.rtt = _average(self.pace.rtt, time.monotonic() - began)
        if not owner.ok or not owner.value.is_file:
            return Sighting(None, None)
        return Sighting(identity_of(None, owner.value), None)

    def _due(self, sighting: Sighting, wait: Wait,
             limits: dict[tuple[Any, ...], tuple[float, dict[str, Any] | None]]) -> bool:
        """Whether the holder polled may have outlived its lease by the server's clock: then read that clock."""
        age = wait.server_age(sighting.identity)
        limit = limits[sighting.identity][0] if sighting.identity in limits else self.ttl
        if age is None or age <= limit or wait.clock is None:
            return False
        return time.monotonic() - wait.clock[1] >= CLOCK_EVERY  # the clock reads whole seconds over SFTP

    def _next(self, cand: Candidate, record: bytes, previous: Attempt,
              retry: Callable[[Batch, Attempt], Attempt]) -> Attempt:
        b = Batch()
        attempt = retry(b, previous)
        self.transport.run(b)
        return attempt

    def _broke(self, sighting: Sighting, limits: dict[tuple[Any, ...], tuple[float, dict[str, Any] | None]]) -> bool:
        """Judge the lock seen; break it when it has been held longer than its holder's lease."""
        if sighting.identity is None:
            return False
        age = self.watch.age(sighting)
        if sighting.identity not in limits and age > self.ttl:
            holder, owner_st = read_owner(self.transport)  # the holder may have asked for a longer lease
            if owner_st is not None and identity_of(None, owner_st) != sighting.identity:
                return False  # a new holder took the lock meanwhile: judge it when it is seen again
            limits[sighting.identity] = (holder_ttl(holder, self.ttl), holder)
        limit, holder = limits.get(sighting.identity, (None, None))
        if limit is None or age <= limit:
            return False
        token = new_token()
        took, unfinished = break_lock(self.transport, token)
        if took and self._note_break(holder, self.watch.observed_for(sighting.identity), sighting.server_age,
                                     unfinished):
            sweep(self.transport, stale_dir(token))  # else it stays, with its evidence, for a later sweep
        return True

    def _note_break(self, holder: dict[str, Any] | None, observed: float, server_age: float | None,
                    unfinished: list[str]) -> bool:
        """Log the break and roll back what the broken lock held; False if that could not be written."""
        stamp = iso(utcnow())
        event = {
            "timestamp": stamp, "agent": self.agent, "event": "lock_broken",
            "message": f"broke a stale workspace lock held by {(holder or {}).get('owner', 'an unknown holder')}",
            "holder": holder, "observed_seconds": round(observed, 1), "server_age_seconds": server_age,
        }
        notes = [{"timestamp": stamp, "agent": self.agent, "event": "rolled_back", "txn": t,
                  "message": "a stale lock held this transaction before its commit point: "
                             "records with this txn did not take effect"} for t in unfinished]
        return self.on_event([event, *notes]) is not False

    @staticmethod
    def stage_release(b: Batch, token: str) -> tuple[Reply, Reply]:
        """Give the lock back. The removals go through `held.<token>/..`, a path that resolves only while the
        lock is still ours, so a holder whose lock was broken never removes the next holder's owner file.
        Returns the replies `released` needs: the marker's removal and the lock's."""
        held = f"{LOCK}/{held_dir(token)}"
        b.remove(f"{held}/../{OWNER}")
        return b.rmdir(held), b.rmdir(LOCK)

    def released(self, replies: tuple[Reply, Reply], token: str) -> None:
        """After `stage_release`: a lock that was ours but could not be removed (something foreign inside) is
        moved aside at once, as a breaker would, rather than left for every waiter to wait out its lease."""
        marker, lock = replies
        if lock.ok or isinstance(lock.error, FileNotFoundError):
            return
        if not marker.ok:
            self.tidy(token)  # our own names may be left: remove them, and the lock if it is still ours
            return
        b = Batch()
        moved = b.rename(LOCK, stale_dir(token))
        self.transport.run(b)
        if moved.ok:
            sweep(self.transport, stale_dir(token))

    def tidy(self, token: str) -> None:
        """Release when rmdir found leftovers: remove only our own names, and the lock only if it is ours."""
        try:
            names = self.transport.listdir(LOCK)
        except (FileNotFoundError, NotADirectoryError, MavpsError):
            return
        if held_dir(token) not in names:
            return  # not our lock (any more)
        b = Batch()
        for n in names:
            if token in n and n != held_dir(token):
                b.remove(f"{LOCK}/{n}")
        replies = self.stage_release(b, token)
        try:
            self.transport.run(b)
            self.released(replies, token)
        except MavpsError:
            pass

    def drop_candidate(self, cand: Candidate, handles: list[Any]) -> None:
        """Give up a candidate that never became the lock (best effort, bounded)."""
        b = Batch()
        for h in handles:
            b.close(h)
        try:
            self.transport.run(b)
            sweep(self.transport, cand.path)
        except (MavpsError, OSError):
            pass
