"""SIGKILL storm: workers claim and complete while a killer SIGKILLs random ones
(a third of the time the one holding the workspace lock) and restarts them."""
from __future__ import annotations

import os
import random
import signal
import time

import pytest

from .helpers import check_queue, figures, holder_pid, spawn, wait_all

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

RUNS = int(os.environ.get("MAVPS_STORM_RUNS", "2"))
WORKERS, TASKS, KILL_SECONDS = 6, 60, 8.0


@pytest.mark.parametrize("run", range(RUNS))
def test_sigkill_storm(target, open_ws, tmp_path, run):
    rnd = random.Random(f"storm{run}{target.kind}")
    settings = {**target.settings, "lock_ttl": 1.5, "lease_ttl": 2.5, "lock_timeout": 60}
    ws = open_ws(**settings)
    ws.init()
    for i in range(TASKS):
        ws.queue.add(f"task {i}", "x", max_attempts=100)
    outs, procs, instances, born = [], {}, {}, {}

    def start(wid: str) -> None:
        instances[wid] = instances.get(wid, 0) + 1
        out = tmp_path / f"{wid}.{instances[wid]}.out"
        outs.append(out)
        born[wid] = time.monotonic()
        procs[wid] = spawn({"mode": "drain", "url": target.url, "worker": wid, "out": str(out),
                            "settings": settings, "work": 0.25, "max_seconds": 150})

    for i in range(WORKERS):
        start(f"w{i}")
    kills = holder_kills = 0
    stop_at = time.monotonic() + KILL_SECONDS
    while time.monotonic() < stop_at:
        time.sleep(rnd.uniform(0.15, 0.6))
        victim = None
        if rnd.random() < 0.5:  # wait (briefly) for one of ours to hold the lock, and kill it there
            until = time.monotonic() + 0.5
            while victim is None and time.monotonic() < until:
                pid = holder_pid(target.path)
                victim = next((w for w, p in procs.items() if p.pid == pid and p.poll() is None), None)
                time.sleep(rnd.uniform(0, 0.004))
            holder_kills += victim is not None
        if victim is None:
            grown = [w for w in sorted(procs) if time.monotonic() - born[w] > 0.8]
            if not grown:
                continue
            victim = rnd.choice(grown)
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait()
        kills += 1
        start(victim)
    wait_all(list(procs.values()), 150)
    report = check_queue(target.path, TASKS, outs)
    started = time.monotonic()
    ws.queue.reap()  # no orphaned lock outlives its lease
    recovery = time.monotonic() - started
    if recovery > 2 * settings["lock_ttl"] + 2:
        report.bad(f"the lock took {recovery:.1f}s to recover")
    st = report.stats
    figures("sigkill storm", target.kind, st["claims"] + st["completions"], kills, len(report.violations),
            holder_kills=holder_kills, **st)
    assert not report.violations, report.violations
