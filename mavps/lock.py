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

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import LockTimeout, MavpsError
from .lockpaths import (COMMIT, LOCK, OWNER, candidate_dir, check_lock_stat, held_dir, holder_ttl, identity_of,
                        new_token, owner_size, stale_dir)
from .recovery import break_lock, read_owner, sweep
from .timeutil import iso, utcnow
from .transport.base import Batch, Reply, Transport


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

    def sighting(self) -> Sighting:
        lock_st = self.lock.value if self.lock.ok else None
        owner_st = self.owner.value if self.owner.ok and self.owner.value.is_file else None
        ident = identity_of(lock_st, owner_st)
        age = None
        if ident is not None and self.probe.ok:
            age = self.probe.value.mtime - (owner_st or lock_st).mtime
        return Sighting(ident, age)


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
        self._contended_at = -1e9  # monotonic time our last acquire found the lock busy

    def courtesy(self) -> None:
        """After a contended transaction, let a waiter have the lock we just gave back."""
        if time.monotonic() - self._contended_at < CONTENDED_FOR:
            time.sleep(random.uniform(0, COURTESY))

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

        `retry(batch, attempt)` stages the next attempt (and the caller's reads behind it).
        """
        started = time.monotonic()
        deadline = started + self.timeout
        attempt, backoff = first, POLL_FIRST
        limits: dict[tuple[Any, ...], tuple[float, dict[str, Any] | None]] = {}
        if not attempt.rename.ok:
            self._contended_at = started
        while not attempt.rename.ok:
            check_lock_stat(attempt.lock.value if attempt.lock.ok else None)
            sighting = attempt.sighting()
            if self._broke(sighting, limits):
                attempt = self._next(cand, record, attempt, retry)
                continue
            now = time.monotonic()
            if now >= deadline:
                holder, _ = read_owner(self.transport)
                raise LockTimeout(now - started, holder, sighting.server_age)
            step = backoff if now - started < AGE_AFTER else min(backoff, POLL_AGED)
            time.sleep(min(random.uniform(step / 2, step), max(0.0, deadline - now)))
            backoff = min(backoff * 2, POLL_CAP)
            self._contended_at = time.monotonic()
            attempt = self._next(cand, record, attempt, retry)
        return attempt  # now ours: whatever it finds (a planted `.mavps.commit`) the caller handles holding it

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
