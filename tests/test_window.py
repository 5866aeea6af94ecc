"""The queue's active window and its backlog (window.py): a claim's cost does not grow with the pending tasks,
every task stays exactly once, and everything that lists tasks sees the backlog's."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from mavps import TaskStatus
from mavps import defaults
from mavps.models import BACKLOG_FILE, META_FILE, QUEUE_FILE, WORKERS_FILE, Task
from mavps.state import dump_tasks, load_tasks
from mavps.store import LOG_FILE, dumps
from mavps.transport.base import Batch


# ----- helpers ---------------------------------------------------------------------------------
def write_pending(path: Path, n: int, seed: int = 1) -> list[Task]:
    """A workspace holding `n` pending tasks (priorities 0-9), all of them in task-queue.json as a hand edit or an
    older version leaves it (the first claim splits it); the tasks."""
    rnd = random.Random(seed)
    stamp = "2026-01-01T00:00:00Z"
    tasks = [Task(id=i, description=f"task {i}: refactor module {i % 97} and add tests", priority=rnd.randrange(10),
                  instruction_file=f"tasks/task-{i}-instructions.md", created_at=stamp, created_by="t",
                  updated_at=stamp) for i in range(1, n + 1)]
    path.mkdir(parents=True, exist_ok=True)
    (path / "tasks").mkdir(exist_ok=True)
    (path / QUEUE_FILE).write_bytes(dumps(dump_tasks(tasks)))
    (path / WORKERS_FILE).write_bytes(dumps({}))
    (path / META_FILE).write_bytes(dumps({"format": 1, "next_task_id": n + 1}))
    (path / LOG_FILE).touch()
    return tasks


def best(tasks: list[Task]) -> Task:
    return min((t for t in tasks if t.status is TaskStatus.PENDING), key=lambda t: (-t.priority, t.id))


class Meter:
    """Bytes a transport read and wrote (read replies, write requests), counted under its `run`."""

    def __init__(self, transport: Any) -> None:
        self.read = self.written = 0
        run = transport.run

        def counted(batch: Batch) -> Batch:
            self.written += sum(len(args[2]) for op, args, _r in batch.ops if op == "write")
            out = run(batch)
            self.read += sum(len(r.value) for op, _a, r in batch.ops if op == "read" and r.ok and r.value)
            return out

        transport.run = counted

    @property
    def total(self) -> int:
        return self.read + self.written


def ids_everywhere(path: Path) -> list[int]:
    """Every task id the files hold where a reader looks (window, committed backlog, archive), with repeats."""
    window = [t["id"] for t in json.loads((path / QUEUE_FILE).read_text())]
    meta = json.loads((path / META_FILE).read_text())
    data = (path / BACKLOG_FILE).read_bytes()[: meta.get("backlog", {}).get("bytes", 0)] \
        if (path / BACKLOG_FILE).exists() else b""
    backlog = [json.loads(line)["id"] for line in data.splitlines() if line.strip()]
    archive = path / "task-archive.jsonl"
    archived = [json.loads(line)["id"] for line in archive.read_text().splitlines()] if archive.exists() else []
    return window + backlog + archived


# ----- cost -----------------------------------------------------------------------------------
def claim_bytes(target, n: int) -> tuple[int, list[int], list[int]]:
    """Bytes of the second claim in a workspace with `n` pending (the first one splits the hand-made window),
    the ids claimed and the ids best by the rule."""
    import shutil

    shutil.rmtree(target.path, ignore_errors=True)
    tasks = write_pending(target.path, n)
    ws = target.open("t")
    try:
        first = ws.queue.claim("w1")
        expected = [best(tasks).id]
        tasks = [t for t in tasks if t.id != expected[0]]
        meter = Meter(ws.transport)
        second = ws.queue.claim("w1")
        expected.append(best(tasks).id)
        return meter.total, [first.id, second.id], expected
    finally:
        ws.close()


def test_claim_with_10000_pending_moves_at_most_twice_the_bytes_of_100(target):
    small, got_small, want_small = claim_bytes(target, 100)
    big, got_big, want_big = claim_bytes(target, 10_000)
    assert got_small == want_small and got_big == want_big  # the same task as the rule over every task
    assert big <= 2 * small, (small, big)
    assert sorted(ids_everywhere(target.path)) == list(range(1, 10_001))  # each task exactly once


# ----- the same choices as one big window ------------------------------------------------------
def run_scenario(ws) -> list[tuple[str, int | None]]:
    """Adds (some with dependencies and capabilities), claims by two kinds of worker, completions, failures,
    edits and cancels, in a fixed order; what each claim got."""
    rnd = random.Random(7)
    q = ws.queue
    for i in range(40):
        deps = [rnd.randrange(1, i + 1)] if i and rnd.random() < 0.2 else []
        q.add(f"t{i}", "x", priority=rnd.randrange(5), depends_on=deps,
              requires=["gpu"] if rnd.random() < 0.2 else [], max_attempts=2)
    out: list[tuple[str, int | None]] = []
    for step in range(70):
        worker, caps = ("a", ["gpu"]) if step % 3 == 0 else ("b", [])
        task = q.claim(worker, caps)
        out.append((worker, task.id if task else None))
        if task is not None:
            if step % 7 == 3:
                q.fail(task.id, worker, "try again")
            else:
                q.complete(task.id, worker)
        if step == 10:
            q.add("late and urgent", "x", priority=9)
        if step == 12:
            q.edit(38, priority=8)  # very likely in the backlog by then
        if step == 14:
            q.cancel(39)
    return out


def test_small_window_gives_the_same_tasks_as_one_big_window(open_ws, target, monkeypatch):
    monkeypatch.setattr(defaults, "WINDOW", 10**6)
    whole = open_ws("c")
    whole.init()
    expected = run_scenario(whole)
    import shutil

    shutil.rmtree(target.path)
    monkeypatch.setattr(defaults, "WINDOW", 4)
    small = open_ws("c")
    small.init()
    got = run_scenario(small)
    assert got == expected
    assert json.loads((target.path / META_FILE).read_text())["backlog"]["count"] >= 0
    assert sorted(ids_everywhere(target.path)) == list(range(1, 42))


# ----- readers ---------------------------------------------------------------------------------
def test_every_reader_sees_the_backlog(ws, target, monkeypatch):
    monkeypatch.setattr(defaults, "WINDOW", 3)
    for i in range(10):
        ws.queue.add(f"t{i}", "x", priority=i % 3)
    window = json.loads((target.path / QUEUE_FILE).read_text())
    assert len(window) == 3 and (target.path / BACKLOG_FILE).stat().st_size > 0
    assert sorted(t.id for t in ws.queue.list()) == list(range(1, 11))
    assert sorted(t.id for t in ws.queue.list(include_archived=True)) == list(range(1, 11))
    assert len(ws.queue.ready()) == 10
    assert ws.board()["counts"]["pending"] == 10
    in_backlog = next(i for i in range(1, 11) if i not in {t["id"] for t in window})
    assert ws.queue.get(in_backlog).id == in_backlog
    assert ws.queue.wait([in_backlog], timeout=0)["still_running"] == [in_backlog]
    ws.queue.cancel(in_backlog)
    assert ws.queue.get(in_backlog).status is TaskStatus.CANCELLED
    assert ws.queue.add("after", "x", depends_on=[best(load_tasks(window)).id]).id == 11
    assert sorted(ids_everywhere(target.path)) == list(range(1, 12))


def test_stop_hook_sees_work_only_the_backlog_holds(ws, target, monkeypatch):
    monkeypatch.setattr(defaults, "WINDOW", 2)
    gate = ws.queue.add("gate", "x", priority=5)
    ws.queue.add("blocked", "x", priority=5, depends_on=[gate.id])
    ws.queue.add("blocked too", "x", priority=5, depends_on=[gate.id])
    free = ws.queue.add("free", "x")
    assert ws.queue.claim("w0").id == gate.id
    assert free.id not in {t["id"] for t in json.loads((target.path / QUEUE_FILE).read_text())}
    assert [t.id for t in ws.queue.ready()] == [free.id]
    assert ws.queue.claim("w1").id == free.id  # nothing claimable in the window: refilled from the backlog


# ----- a failed commit's leftovers -------------------------------------------------------------
def test_lines_past_the_committed_length_are_ignored_then_cut(ws, target, monkeypatch):
    monkeypatch.setattr(defaults, "WINDOW", 2)
    for i in range(4):
        ws.queue.add(f"t{i}", "x")
    in_window = json.loads((target.path / QUEUE_FILE).read_text())[0]
    stale = {**in_window, "description": "a stale copy a failed commit left"}
    with open(target.path / BACKLOG_FILE, "ab") as fh:  # what a crash between the append and the commit leaves
        fh.write(json.dumps(stale).encode() + b"\n" + json.dumps({**stale, "id": 99}).encode() + b"\n")
    assert sorted(t.id for t in ws.queue.list()) == [1, 2, 3, 4]
    assert ws.queue.get(in_window["id"]).description == in_window["description"]
    ws.queue.add("t4", "x")  # goes to the backlog: the leftovers are cut first
    meta = json.loads((target.path / META_FILE).read_text())
    assert (target.path / BACKLOG_FILE).stat().st_size == meta["backlog"]["bytes"]
    assert sorted(ids_everywhere(target.path)) == [1, 2, 3, 4, 5]
    assert sorted(ws.queue.claim("w").id for _ in range(5)) == [1, 2, 3, 4, 5]


@pytest.mark.slow
def test_one_hundred_thousand_pending_work_with_defaults(target):
    import shutil

    shutil.rmtree(target.path, ignore_errors=True)
    write_pending(target.path, 100_000)
    ws = target.open("t")
    try:
        first = ws.queue.claim("w1")
        ws.queue.complete(first.id, "w1")
        for _ in range(3):
            ws.queue.add("more", "x")
        for _ in range(110):  # past a refill
            t = ws.queue.claim("w1")
            ws.queue.complete(t.id, "w1")
        assert ws.board()["counts"]["pending"] == 100_003 - 111
    finally:
        ws.close()
    ids = ids_everywhere(target.path)
    assert sorted(ids) == list(range(1, 100_004))


# ----- interleavings ---------------------------------------------------------------------------
RACER = r"""
import json, sys
from mavps import Workspace, defaults
defaults.WINDOW = 4
role, url, out, settings = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
ws = Workspace.open(url, agent=role, **settings)
got = []
if role == "adder":
    for i in range(30):
        got.append(ws.queue.add(f"added {i}", "x", priority=i % 4).id)
else:
    idle = 0
    while idle < 40:
        t = ws.queue.claim(role)
        if t is None:
            idle += 1
            continue
        idle = 0
        got.append(t.id)
        ws.queue.complete(t.id, role)
ws.close()
json.dump(got, open(out, "w"))
"""


@pytest.mark.timeout(300)
def test_claims_racing_adds_and_refills_lose_and_repeat_nothing(ws, target, tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setattr(defaults, "WINDOW", 4)
    for i in range(12):
        ws.queue.add(f"t{i}", "x", priority=i % 3)
    assert sorted(ids_everywhere(target.path)) == list(range(1, 13))
    settings = {k: v for k, v in target.settings.items()}
    env = {**__import__("os").environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    roles = ["adder", "c1", "c2"]
    procs = [subprocess.Popen([sys.executable, "-c", RACER, r, target.url, str(tmp_path / f"{r}.json"),
                               json.dumps(settings)], env=env) for r in roles]
    for p in procs:
        assert p.wait(timeout=280) == 0
    got = {r: json.loads((tmp_path / f"{r}.json").read_text()) for r in roles}
    assert sorted(got["adder"]) == list(range(13, 43))
    ids = ids_everywhere(target.path)
    assert sorted(ids) == list(range(1, 43))  # each task once: window, backlog, archive
    claimed = got["c1"] + got["c2"]
    leftover = [t.id for t in ws.queue.list() if t.status is TaskStatus.PENDING]
    assert len(claimed) == len(set(claimed))  # no task given twice
    assert sorted(claimed + leftover) == list(range(1, 43))


def test_backlog_edits_stick_and_a_fruitless_claim_leaves_the_backlog_file(ws, target, monkeypatch):
    monkeypatch.setattr(defaults, "WINDOW", 2)
    for i in range(6):
        ws.queue.add(f"t{i}", "x", requires=["gpu"])
    ws.queue.edit(6, description="edited in the backlog")
    assert ws.queue.get(6).description == "edited in the backlog"
    assert 6 not in {t["id"] for t in json.loads((target.path / QUEUE_FILE).read_text())}
    before = (target.path / BACKLOG_FILE).stat()
    assert ws.queue.claim("cpu-only", []) is None  # read the backlog, found nothing: nothing rewritten
    after = (target.path / BACKLOG_FILE).stat()
    assert (before.st_ino, before.st_size) == (after.st_ino, after.st_size)
    assert sorted(ids_everywhere(target.path)) == list(range(1, 7))
    ws.queue.edit(6, priority=5)
    assert ws.queue.claim("gpu-one", ["gpu"]).id == 6


def test_doctor_checks_the_backlog(ws, target, monkeypatch):
    from mavps.admin import _check_workspace

    def checks() -> dict[str, tuple[bool, str]]:
        out: dict[str, tuple[bool, str]] = {}
        _check_workspace(ws, lambda name, ok, detail, fix=None: out.setdefault(name, (ok, detail)))
        return out

    monkeypatch.setattr(defaults, "WINDOW", 2)
    for i in range(5):
        ws.queue.add(f"t{i}", "x")
    ok, detail = checks()["backlog"]
    assert ok and "3 pending" in detail
    meta = json.loads((target.path / META_FILE).read_text())
    meta["backlog"]["bytes"] += 1000
    (target.path / META_FILE).write_text(json.dumps(meta))
    ok, detail = checks()["backlog"]
    assert not ok and "shorter" in detail


def test_a_plan_spills_to_the_backlog_and_applied_again_sees_its_tasks_there(ws, target, tmp_path, monkeypatch):
    from mavps import plan

    monkeypatch.setattr(defaults, "WINDOW", 3)
    body = "tasks:\n" + "".join(f"  - name: s{i}\n    description: step {i}\n" for i in range(8))
    (tmp_path / "p.yaml").write_text(body)
    out = plan.apply(ws.queue, plan.load(str(tmp_path / "p.yaml")))
    assert out["added"] == 8
    assert len(json.loads((target.path / QUEUE_FILE).read_text())) == 3
    again = plan.apply(ws.queue, plan.load(str(tmp_path / "p.yaml")))
    assert again["added"] == 0 and again["unchanged"] == 8
    (tmp_path / "p.yaml").write_text(body.replace("step 7", "step seven"))
    changed = plan.apply(ws.queue, plan.load(str(tmp_path / "p.yaml")), dry_run=True)
    assert [r["name"] for r in changed["tasks"] if r["action"] == "changed"] == ["s7"]  # s7 waits in the backlog
    more = "".join(f"  - name: d{i}\n    description: after\n    depends_on: [7]\n" for i in range(2))
    (tmp_path / "p.yaml").write_text(body + more)
    assert plan.apply(ws.queue, plan.load(str(tmp_path / "p.yaml")))["added"] == 2  # 7 is a backlog task: live
    assert sorted(ids_everywhere(target.path)) == list(range(1, 11))
