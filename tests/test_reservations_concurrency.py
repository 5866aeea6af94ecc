"""Eight worker processes, each with its own connection, drain tasks with overlapping and disjoint touches:
no two overlapping tasks ever run at once, and disjoint ones do.

Time is read from the comms log's order: records are appended under the lock in commit order (those of a
transaction that did not commit are named by a later `rolled_back` record and left out), so a task runs
from its `task_claimed` record to its `task_completed` record."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from mavps import globs

ROOT = Path(__file__).resolve().parent.parent

WORKER = textwrap.dedent("""
    import os, sys, time
    from mavps import Workspace

    url, worker = sys.argv[1:3]
    settings = {"lock_timeout": 120.0}
    if len(sys.argv) > 4:
        settings.update(identity_file=sys.argv[3], known_hosts=sys.argv[4], ssh_config=os.devnull)
    with Workspace.open(url, agent=worker, **settings) as ws:
        while True:
            task = ws.queue.claim(worker)
            if task is None:
                if not ws.queue.list(status="pending") and not ws.queue.list(status="in_progress"):
                    sys.exit(0)
                time.sleep(0.05)
                continue
            time.sleep(0.3)  # the work: long enough for others to claim meanwhile
            ws.queue.complete(task.id, worker)
""")

TOUCHES = [
    ["src/auth/**"], ["src/auth/login.py"], ["src/*/login.py"], ["src/auth/"],  # one group
    ["docs/**"], ["docs/api.md"], ["docs/*.md"],  # another
    ["lib/a.py", "lib/b.py"], ["lib/b.py"], ["lib/[ab].py"],  # a third
    *[[f"solo{i}/**"] for i in range(8)],  # disjoint from everything
    [], [],  # no touches: never wait, never block
]


def intervals(log: Path) -> dict[int, tuple[int, int]]:
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    undone = {r.get("txn") for r in records if r.get("event") == "rolled_back"}
    out: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        if r.get("txn") in undone and r.get("event") != "rolled_back":
            continue
        if r.get("event") == "task_claimed":
            out.setdefault(r["task_id"], [i, -1])[0] = i
        elif r.get("event") == "task_completed":
            out[r["task_id"]][1] = i
    return {tid: (a, b) for tid, (a, b) in out.items()}


@pytest.mark.timeout(300)
def test_eight_workers_never_run_overlapping_tasks_at_once(target, open_ws, tmp_path):
    ws = open_ws()
    ws.init()
    tasks = [ws.queue.add(f"task {i}", "x", touches=t) for i, t in enumerate(TOUCHES)]
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    extra = [str(target.settings["identity_file"]), str(target.settings["known_hosts"])] if target.server else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, str(script), target.url, f"w{i}", *extra], env=env)
             for i in range(8)]
    assert [p.wait(timeout=280) for p in procs] == [0] * 8

    final = {t.id: t for t in ws.queue.list()}
    assert all(t.status.value == "completed" for t in final.values())
    seen = intervals(target.path / "agent-comms.jsonl")
    lines = (target.path / "agent-comms.jsonl").read_text().splitlines()
    events = Counter(json.loads(line)["event"] for line in lines)
    assert events["task_completed"] == len(TOUCHES) and set(seen) == {t.id for t in tasks}
    at_once = []
    for a, b in itertools.combinations(tasks, 2):
        (a0, a1), (b0, b1) = seen[a.id], seen[b.id]
        meet = a0 < b1 and b0 < a1
        if globs.overlapping(a.touches, b.touches):
            assert not meet, f"#{a.id} {a.touches} and #{b.id} {b.touches} ran at once"
        elif meet:
            at_once.append((a.id, b.id))
    assert at_once, "no two disjoint tasks ran at once: the rule serialised everything"
