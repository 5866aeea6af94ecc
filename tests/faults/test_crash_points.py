"""A holder killed after every single request of its commit batch, in turn:
whatever the point, the state files parse, the log agrees with the state
(records of a commit that did not happen are marked rolled back), and the
next holder recovers the lock within its lease."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from mavps import Workspace

from .helpers import check_queue, env, figures

pytestmark = pytest.mark.faults
CHILD = Path(__file__).resolve().parent / "crash_child.py"


def run_child(path: Path, op: str, k: int) -> int:
    return subprocess.run([sys.executable, str(CHILD), str(path), op, str(k)], env=env(), timeout=60).returncode


@pytest.mark.parametrize("op", ["claim", "complete", "add"])
def test_killed_at_every_point_of_the_commit(tmp_path, op):
    points = crashed = 0
    violations: list[str] = []
    for k in range(40):
        path = tmp_path / f"ws{k}"
        with Workspace.open(str(path), agent="setup", lock_ttl=0.5, lease_ttl=1) as ws:
            ws.init()
            ws.queue.add("first", "x", max_attempts=10)
            ws.queue.add("second", "x", max_attempts=10)
            if op == "complete":
                ws.queue.claim("victim")
        rc = run_child(path, op, k)
        if rc == 0:
            break  # k is past the last request: every point was tried
        assert rc == 137
        crashed += 1
        points += 1
        with Workspace.open(str(path), agent="after", lock_ttl=0.5, lease_ttl=1) as ws:
            started = time.monotonic()
            ws.queue.reap()
            assert time.monotonic() - started < 3, "the dead holder's lock outlived its lease"
            time.sleep(1.1)  # let the victim's lease run out, then finish everything
            while (task := ws.queue.claim("after")) is not None:
                ws.queue.complete(task.id, "after")
            n = len(ws.queue.list())
        report = check_queue(path, n, [])
        violations += [f"killed after request {k}: {v}" for v in report.violations]
    figures(f"killed at each point of a {op} commit", "local", points, crashed, len(violations))
    assert points >= 5
    assert not violations, violations
