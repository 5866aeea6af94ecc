"""Waiting for the lock: one cheap request per poll, a whole attempt only when the lock looks free or may be stale,
and a pace that puts the longest waiters first (issue 16)."""
from __future__ import annotations

import json
import os
import time

import pytest

from mavps import LockTimeout
from mavps import lock as lk
from mavps.lock import LOCK


def live_lock(path, owner="someone", ttl=600):
    """A lock held by another, alive holder (its owner file says a long lease)."""
    (path / LOCK).mkdir()
    (path / LOCK / "owner.json").write_text(json.dumps(
        {"owner": owner, "host": "elsewhere", "pid": 4242, "token": "feedbeef", "ttl": ttl}))


def record_batches(ws, after=None):
    """The number of requests of each batch the workspace's transport runs (the real server answers them);
    `after(n)` runs after the n-th batch."""
    sizes: list[int] = []
    original = ws.transport.run

    def run(batch):
        sizes.append(len(batch))
        original(batch)
        if after is not None:
            after(len(sizes))
        return batch

    ws.transport.run = run
    return sizes


def test_a_waiter_polls_with_one_request_per_round_trip(open_ws, target):
    """Behind a live holder a waiter sends one lstat per poll, not the ~13-request attempt (with the caller's
    reads) it used to send every time (until its expected turn: a process with no history waits DUE_FIRST)."""
    assert lk.DUE_FIRST > 0.8
    ws = open_ws(lock_timeout=0.8, lock_ttl=600)
    ws.init()
    live_lock(target.path)
    sizes = record_batches(ws)
    with pytest.raises(LockTimeout):
        ws.queue.add("t", "x")
    assert sizes[0] > 10  # the first, whole attempt
    polls = next(i for i, n in enumerate(sizes[1:]) if n != 1)
    assert polls >= 5, sizes
    assert sizes[1 + polls] == 2, f"a whole attempt while the same live holder held the lock: {sizes}"  # owner read


def test_a_waiter_takes_a_released_lock_with_one_whole_attempt(open_ws, target):
    """The poll that sees the lock gone is followed by one whole attempt, which takes it (counted, not timed:
    the holder releases after the waiter's third poll, its fourth sees the lock free)."""
    ws = open_ws(lock_timeout=30, lock_ttl=600)
    ws.init()
    live_lock(target.path)

    def release(n):
        if n == 4:  # the first attempt, then three polls
            (target.path / LOCK / "owner.json").unlink()
            (target.path / LOCK).rmdir()

    sizes = record_batches(ws, release)
    ws.queue.add("t", "x")
    assert sizes[1:5] == [1, 1, 1, 1], sizes
    assert sizes[5] > 2, f"the waiter did not try to take the lock once it saw it free: {sizes}"
    # the winning attempt read the files behind its opens (the previous attempt's handles closed after them)
    assert len(sizes) == 6 + 2, f"the transaction after the wait should take its usual 2 more round trips: {sizes}"
    assert [t["description"] for t in json.loads((target.path / "task-queue.json").read_text())] == ["t"]


def test_a_waiter_past_its_expected_turn_tries_whole_attempts(open_ws, target):
    """Once it has waited a good part (DUE_AT) of what its waits usually last, a waiter retries whole attempts (as
    every waiter used to): a releaser coming straight back must not beat the longest waiter by a round trip."""
    ws = open_ws(lock_timeout=0.8, lock_ttl=600)
    ws.init()
    ws.store.lock.pace.wait = 0.6  # its waits have lasted 0.6 s: due after DUE_AT of that
    live_lock(target.path)
    sizes = record_batches(ws)
    with pytest.raises(LockTimeout):
        ws.queue.add("t", "x")
    due = next(i for i, n in enumerate(sizes) if i > 0 and n > 2)
    assert due >= 3 and set(sizes[1:due]) == {1}, f"polls first: {sizes}"
    timed_out = sizes.index(2, due)  # the timeout's owner read
    assert timed_out - due >= 3 and all(n > 2 for n in sizes[due:timed_out]), f"whole attempts once due: {sizes}"


def test_a_lock_going_stale_while_polled_is_judged_by_the_servers_clock(open_ws, target):
    """Polls read no clock; once the holder may have outlived its lease by the server's clock, a whole attempt
    reads that clock and the lock is broken, well before this process has watched it for a lease itself."""
    ws = open_ws(lock_timeout=30, lock_ttl=3)
    ws.init()
    ws.store.lock.pace.wait = 20.0  # not due for whole attempts: its waits have lasted 20 s
    live_lock(target.path, owner="dying", ttl=3)
    old = time.time() - 2  # taken 2 s ago by the server's clock: stale in about 1 s more
    os.utime(target.path / LOCK / "owner.json", (old, old))
    sizes = record_batches(ws)
    ws.queue.add("t", "x")
    broken = [r for r in ws.log.tail(10) if r["event"] == "lock_broken"]
    assert len(broken) == 1 and broken[0]["holder"]["owner"] == "dying"
    assert broken[0]["server_age_seconds"] > 3, broken[0]
    assert broken[0]["observed_seconds"] < 2.5, "judged by watching it, not by the server's clock"
    judged = sizes.index(2)  # the breaker's owner read
    waiting = sizes[1:judged]
    assert waiting.count(1) >= 3, f"the waiter did not poll cheaply while the lock was fresh: {sizes}"
    clock_reads = len(waiting) - waiting.count(1)  # mtimes are whole seconds over SFTP: a few reads near the limit
    assert 1 <= clock_reads <= 6, f"whole attempts only when the lock may be stale: {sizes}"


def test_the_pace_puts_the_longest_waiters_first():
    """A newcomer behind a known queue polls rarely, a waiter near or past its expected turn often; the courtesy
    a releaser yields lets a polling waiter in (two round trips) and is bounded."""
    pace = lk.Pace(wait=2.0, rtt=0.02)
    steps = [pace.step(w) for w in (0.0, 1.0, 1.6, 1.9, 2.5, 10.0)]
    assert steps == sorted(steps, reverse=True)
    assert steps[0] == lk.POLL_CAP and steps[-1] == steps[-2] == lk.POLL_MIN
    assert lk.Pace().step(0.0) == lk.POLL_MIN  # no history: poll often (a poll is one lstat)
    assert [pace.due(w) for w in (2.0 * lk.DUE_AT - 0.01, 2.0 * lk.DUE_AT, 3.0)] == [False, True, True]
    assert not lk.Pace().due(lk.DUE_FIRST - 0.01) and lk.Pace().due(lk.DUE_FIRST)
    assert pace.courtesy() >= 2 * pace.rtt + lk.POLL_MIN
    assert lk.Pace(rtt=5.0).courtesy() == lk.COURTESY_CAP
