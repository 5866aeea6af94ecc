"""Stale lock variants, broken by several processes racing at once; and a holder
paused (SIGSTOP) past its lease while others break its lock, then resumed.

Mutual exclusion is measured with a counter: every process increments
counter.json through Store.transact; a lost update (two holders at once)
shows as a counter below the number of increments that reported success."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from .helpers import LOCK, check_counter, figures, spawn, wait_all

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]
RUNS = int(os.environ.get("MAVPS_STALE_RUNS", "2"))
TTL = 1.0
#: over the `ssh` command every client start and request costs more; with 4 processes on 2 busy cores a holder
#: could overrun a 1 s lease (and be broken, rightly), which this test would count as a second break
TTLS = {"openssh": 2.0}
BREAKERS, INCREMENTS = 4, 3
VARIANTS = ["bare", "garbage", "empty", "far_future", "far_past", "future_acquired_at", "leftover_commit"]


def plant(path, variant: str, ttl: float = TTL) -> None:
    lock = path / LOCK
    lock.mkdir()
    owner = lock / "owner.json"
    if variant == "garbage":
        owner.write_bytes(b"\x00{not json")
    elif variant == "empty":
        owner.write_bytes(b"")
    elif variant != "bare":
        owner.write_text(json.dumps({"owner": "ghost", "host": "far", "pid": 1, "token": "0123456789abcdef",
                                     "ttl": ttl, "acquired_at": "2999-01-01T00:00:00Z"
                                     if variant == "future_acquired_at" else "1999-01-01T00:00:00Z"}))
    if variant == "leftover_commit":  # died with a written but uncommitted temp file
        (lock / "counter.json.0123456789abcdef.tmp").write_text('{"n": 1000}')
    if variant in ("far_future", "far_past"):
        stamp = time.time() + (10 * 365 * 86400 if variant == "far_future" else -10 * 365 * 86400)
        for p in (owner, lock):
            os.utime(p, (stamp, stamp))


@pytest.mark.parametrize("run", range(RUNS))
@pytest.mark.parametrize("variant", VARIANTS)
def test_stale_lock_broken_by_racing_breakers(target, open_ws, tmp_path, variant, run):
    ttl = TTLS.get(target.kind, TTL)
    ws = open_ws(lock_ttl=ttl)
    ws.init()
    plant(target.path, variant, ttl)
    settings = {**target.settings, "lock_ttl": ttl, "lock_timeout": 30}
    outs = [tmp_path / f"b{i}.out" for i in range(BREAKERS)]
    started = time.time()
    procs = [spawn({"mode": "counter", "url": target.url, "worker": f"b{i}", "out": str(outs[i]),
                    "settings": settings, "n": INCREMENTS}) for i in range(BREAKERS)]
    wait_all(procs, 60)
    report = check_counter(target.path, outs)
    recs = [json.loads(line) for o in outs for line in o.read_text().splitlines()]
    first = min((r["t"] for r in recs if r.get("ev") == "counted"), default=None)
    # recovery: a lease of observation, plus process start-up and polling slack
    if first is None or first - started > ttl * 2 + 4:
        report.bad(f"first increment only after {None if first is None else round(first - started, 1)}s")
    if report.stats.get("errors"):
        report.bad(f"{report.stats['errors']} increments failed")
    if (target.path / LOCK).exists() or list(target.path.glob(f"{LOCK}.*")):
        report.bad(f"lock debris left: {[p.name for p in target.path.glob(LOCK + '*')]}")
    breaks = sum(1 for r in ws.log.tail(200) if r.get("event") == "lock_broken")
    # the planted lock is broken exactly once; on a busy machine a live holder may also overrun its lease and be
    # broken rightly, but then it is fenced and rolls back (safety is the counter check above): so every break
    # beyond the first must match a rolled-back transaction
    if breaks < 1 or breaks - 1 > report.stats.get("rolled_back", 0):
        report.bad(f"{breaks} lock_broken events, {report.stats.get('rolled_back', 0)} rolled back: the stale lock "
                   "should be broken exactly once, and only holders that overran their lease after it")
    figures(f"stale lock: {variant}", target.kind, report.stats.get("increments", 0), BREAKERS,
            len(report.violations), recovery=None if first is None else round(first - started, 2))
    assert not report.violations, report.violations


@pytest.mark.parametrize("fence", ["lease_check", "path_fence"])
@pytest.mark.parametrize("run", range(RUNS))
def test_slow_holder_late_commit_refused(target, open_ws, tmp_path, fence, run):
    """SIGSTOP a holder inside its transaction for several leases; others break the
    lock and commit; SIGCONT: the late commit is refused (LockLost, then a retry)."""
    ws = open_ws(lock_ttl=TTL)
    ws.init()
    settings = {**target.settings, "lock_ttl": TTL, "lock_timeout": 30}
    marker = tmp_path / "inside"
    outs = [tmp_path / "slow.out"] + [tmp_path / f"b{i}.out" for i in range(BREAKERS)]
    slow = spawn({"mode": "hold", "url": target.url, "worker": "slow", "out": str(outs[0]), "settings": settings,
                  "marker": str(marker), "hold": 0.2, "no_lease_check": fence == "path_fence"})
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert marker.exists(), "the slow holder never got the lock"
    slow.send_signal(signal.SIGSTOP)
    try:
        procs = [spawn({"mode": "counter", "url": target.url, "worker": f"b{i}", "out": str(outs[i + 1]),
                        "settings": settings, "n": INCREMENTS}) for i in range(BREAKERS)]
        wait_all(procs, 60)
    finally:
        slow.send_signal(signal.SIGCONT)
    wait_all([slow], 60)
    report = check_counter(target.path, outs)
    slow_recs = [json.loads(line) for line in outs[0].read_text().splitlines()]
    counted = [r for r in slow_recs if r.get("ev") == "counted"]
    # the slow holder read 0; if it counted, it must have re-read (a retry), never written 0 -> 1 late
    if counted and counted[0]["tries"] < 2:
        report.bad(f"the slow holder's late commit was applied: {counted}")
    figures(f"slow holder (SIGSTOP), refused by {fence.replace('_', ' ')}", target.kind,
            report.stats.get("increments", 0), 1, len(report.violations))
    assert not report.violations, report.violations
