"""Rules that keep tasks from being stranded: a held task comes back first, a claim is reported
even when its instructions cannot be read, one definition of an expired lease, dependencies
satisfied only by completion (the queue winning over the archive), blocked tasks said to be so.
"""
from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from mavps import TaskStatus
from mavps.cli import cli

PACKAGE = Path(__file__).resolve().parents[1] / "mavps"

pytestmark = pytest.mark.usefixtures("clean_env")


def conn_args(target) -> list[str]:
    args = ["--workspace", target.url]
    s = target.settings
    if s.get("identity_file"):
        args += ["--identity-file", str(s["identity_file"]), "--known-hosts", str(s["known_hosts"])]
    return args


def run(target, *args: str, code: int | None = 0, env: dict | None = None):
    result = CliRunner().invoke(cli, [*conn_args(target), *args], env=env, catch_exceptions=False)
    if code is not None:
        assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def run_json(target, *args: str, code: int = 0, env: dict | None = None):
    return json.loads(run(target, "--json", *args, code=code, env=env).stdout)


def queue_file(target) -> Path:
    return target.path / "task-queue.json"


def rewrite_queue(target, change) -> None:
    """Edit task-queue.json by hand (as a person, an old version or another tool might have)."""
    tasks = json.loads(queue_file(target).read_text())
    change({t["id"]: t for t in tasks})
    queue_file(target).write_text(json.dumps(tasks))


def write_state(target, tasks: list[dict], archived: list[dict] = ()) -> None:
    """A workspace as a hand edit or an old version could leave it: queue, archive, next id."""
    queue_file(target).write_text(json.dumps(tasks))
    (target.path / "task-archive.jsonl").write_text("".join(json.dumps(t) + "\n" for t in archived))
    ids = [t["id"] for t in [*tasks, *archived]]
    (target.path / "workspace.json").write_text(json.dumps({"format": 1, "next_task_id": max(ids) + 1}))


# ----- item 6: a claim never strands a task -----------------------------------------------
def test_claim_when_already_holding_returns_the_held_task(ws, target):
    ws.queue.add("first", "one")
    ws.queue.add("second", "two")
    lost = ws.queue.claim("w1")  # a claim whose answer never arrived (Ctrl-C, a dropped connection)
    rewrite_queue(target, lambda by_id: by_id[1].update(lease_expires_at="2000-01-01T00:00:00Z"))
    again = run_json(target, "claim", "--worker", "w1")
    assert again["id"] == lost.id and again["already_held"] is True and again["instructions"] == "one"
    assert again["lease_expires_at"] > "2000-01-01T00:00:00Z"  # the lease was renewed
    assert ws.queue.get(2).status is TaskStatus.PENDING  # no second task was taken
    human = run(target, "claim", "--worker", "w1").stdout
    assert "You already hold task #1" in human and "one" in human and "complete 1 --worker w1" in human
    fresh = run_json(target, "claim", "--worker", "w2")
    assert fresh["id"] == 2 and fresh["already_held"] is False


def test_the_oldest_held_task_comes_back_first(ws, target):
    ws.queue.add("a", "x")
    ws.queue.add("b", "x")
    ws.queue.claim("w1")
    ws.queue.claim("w1")

    def older_second(by_id: dict) -> None:
        by_id[1]["claimed_at"], by_id[2]["claimed_at"] = "2030-01-01T00:00:02Z", "2030-01-01T00:00:01Z"
    rewrite_queue(target, older_second)
    got = ws.queue.get_work("w1")
    assert got.task.id == 2 and got.already_held
    assert [t.id for t in ws.queue.next_task("w1", claim=False).held] == [2, 1]


@pytest.mark.parametrize("planted", ["directory", "symlink", "absolute"])
def test_claim_is_reported_when_the_instructions_cannot_be_read(ws, target, planted):
    ws.queue.add("t", "x")
    path = target.path / "tasks" / "task-1-instructions.md"
    path.unlink()
    if planted == "directory":
        path.mkdir()
    elif planted == "symlink":
        path.symlink_to("/etc/hostname")
    else:  # what `mavps edit` used to accept
        rewrite_queue(target, lambda by_id: by_id[1].update(instruction_file="/etc/hostname"))
    got = run_json(target, "claim", "--worker", "w1")
    assert got["id"] == 1 and got["claimed_by"] == "w1" and got["instructions_error"]
    assert ws.queue.get(1).status is TaskStatus.IN_PROGRESS
    human = run(target, "claim", "--worker", "w1").stdout  # asked again: the same task, said so
    assert "You already hold task #1" in human and "could not be read" in human
    for verb in ("complete 1 --worker w1", "fail 1 --worker w1", "release 1 --worker w1"):
        assert verb in human
    shown = run_json(target, "task", "show", "1")
    assert shown["id"] == 1 and shown["instructions_error"]


EDITOR = textwrap.dedent("""\
    import json, os, sys
    path = sys.argv[1]
    with open(path) as fh:
        data = json.load(fh)
    data[0][os.environ["FIELD"]] = json.loads(os.environ["VALUE"])
    with open(path, "w") as fh:
        json.dump(data, fh)
""")


@pytest.mark.parametrize("field, value, expect", [
    ("instruction_file", "/etc/passwd", "absolute"),
    ("instruction_file", "tasks/../../secret.md", "leaves the workspace"),
    ("context_files", ["docs/a.md", "/root/.ssh/id_ed25519"], "absolute"),
    ("context_files", ["../outside.md"], "leaves the workspace"),
])
def test_edit_refuses_paths_that_leave_the_workspace(ws, target, tmp_path, field, value, expect):
    ws.queue.add("t", "x")
    before = queue_file(target).read_bytes()
    script = tmp_path / "editor.py"
    script.write_text(EDITOR)
    env = {"EDITOR": f"{sys.executable} {script}", "FIELD": field, "VALUE": json.dumps(value)}
    result = run(target, "edit", "queue", env=env, code=1)
    assert expect in result.stderr and "not saved" in result.stderr
    os.unlink(result.stderr.split("saved at ")[1].strip())
    assert queue_file(target).read_bytes() == before


# ----- item 8: leases ----------------------------------------------------------------------
@pytest.mark.parametrize("lease", [None, "garbage", ""])
def test_unreadable_lease_is_reaped_by_reap_and_by_the_next_claim(ws, target, lease):
    ws.queue.add("a", "x")
    ws.queue.add("b", "x")
    ws.queue.claim("w1")
    ws.queue.claim("w1")
    rewrite_queue(target, lambda by_id: [by_id[i].update(lease_expires_at=lease) for i in (1, 2)])
    checks = {c["check"]: c for c in run_json(target, "doctor", code=1)}
    assert not checks["leases"]["ok"] and "#1" in checks["leases"]["detail"]
    assert [t.id for t in ws.queue.ready()] == [1, 2]  # a look agrees with the claim that follows
    assert [t.id for t in ws.queue.reap()] == [1, 2]
    ws.queue.claim("w1")
    rewrite_queue(target, lambda by_id: by_id[1].update(lease_expires_at=lease))
    got = ws.queue.claim("w2")  # the claim reaps it first, then takes it
    assert got.id == 1 and got.claimed_by == "w2"
    assert any(r.get("event") == "lease_expired" and r.get("task_id") == 1 for r in ws.log.tail(20))


def test_lease_expired_is_defined_once():
    """Only models.py reads a lease time: every judgement goes through Task.lease_expired."""
    reads = re.compile(r"parse\([^()]*lease_expires_at|lease_expires_at\s*(<|>|<=|>=)"
                       r"|(<|>|<=|>=)\s*\w*\.?lease_expires_at")
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "models.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if reads.search(line):
                offenders.append(f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}")
    assert offenders == []


# ----- item 8: dependencies ------------------------------------------------------------------
def _task(tid: int, status: str = "pending", deps: tuple = (), requires: tuple = ()) -> dict:
    return {"id": tid, "description": f"task {tid}", "status": status, "depends_on": list(deps),
            "requires": list(requires), "instruction_file": f"tasks/task-{tid}-instructions.md"}


def test_dependent_of_a_cancelled_archived_task_is_blocked(ws, target):
    write_state(target, [_task(2, deps=[1]), _task(4, deps=[3])],
                archived=[_task(1, "cancelled"), _task(3, "completed")])
    assert [t.id for t in ws.queue.ready()] == [4]  # an archived completion still counts
    assert ws.queue.claim("w1").id == 4
    assert ws.queue.claim("w2") is None
    blocked = {b["id"]: b["reason"] for b in ws.board()["blocked"]}
    assert list(blocked) == [2] and "#1" in blocked[2] and "cancelled" in blocked[2] and "requeue #1" in blocked[2]
    rows = run_json(target, "ready", "--blocked")
    assert [(r["id"], r["blocked_reason"]) for r in rows] == [(2, blocked[2])]
    assert "#2 blocked: depends on #1, which was cancelled" in run(target, "ready").stdout
    assert run_json(target, "task", "show", "2")["blocked_reason"] == blocked[2]


def test_archive_line_for_a_task_still_in_the_queue_is_ignored(ws, target):
    # task 1 is cancelled in the queue; a stale archive line says completed: the queue wins
    write_state(target, [_task(1, "cancelled"), _task(2, deps=[1]), _task(3, deps=[9])],
                archived=[_task(1, "completed"), _task(9, "completed")])
    assert [t.id for t in ws.queue.ready()] == [3]
    assert ws.queue.get(1).status is TaskStatus.CANCELLED
    assert [(t.id, t.status.value) for t in ws.queue.list(include_archived=True)][:1] == [(1, "cancelled")]
    assert [b["id"] for b in ws.board()["blocked"]] == [2]
    assert ws.queue.claim("w1").id == 3 and ws.queue.claim("w2") is None


def test_dependent_of_a_failed_task_is_blocked_and_doctor_warns(open_ws, target):
    ws = open_ws(max_attempts=1)
    ws.init()
    ws.queue.add("flaky", "x")
    ws.queue.add("after", "x", depends_on=[1])
    ws.queue.add("later still", "x", depends_on=[2])
    ws.queue.fail(ws.queue.claim("w1").id, "w1", "boom")
    reasons = dict((t.id, why) for t, why in ws.queue.waiting())
    assert reasons[2].startswith("blocked: depends on #1, which failed")
    assert reasons[3].startswith("blocked: depends on #1 (through #2), which failed")
    assert [b["id"] for b in ws.board()["blocked"]] == [2, 3]
    checks = {c["check"]: c for c in run_json(target, "doctor")}  # a warning: doctor still passes
    assert checks["blocked tasks"]["ok"] and "#2 blocked" in checks["blocked tasks"]["detail"]
    assert "warning" in run(target, "doctor").stdout
    ws.queue.requeue(1)
    assert [b["id"] for b in ws.board()["blocked"]] == []
    assert {w["id"]: w["reason"] for w in ws.board()["waiting"]} == {2: "waits for #1", 3: "waits for #2"}


# ----- item 6: every held task is listed ------------------------------------------------------
def test_worker_list_shows_every_task_a_worker_holds(ws, target):
    ws.queue.add("a", "x")
    ws.queue.add("b", "x")
    ws.queue.claim("w1")
    ws.queue.claim("w1")
    rows = {r["id"]: r for r in run_json(target, "worker", "list")}
    assert rows["w1"]["held_tasks"] == [1, 2] and rows["w1"]["current_task"] in (1, 2)
    assert "w1 holds 2 tasks: #1, #2" in run(target, "worker", "list").stdout
    assert [w["held_tasks"] for w in ws.board()["workers"]] == [[1, 2]]
    ws.queue.complete(2, "w1")
    rewrite_queue(target, lambda by_id: by_id[1].update(status="pending", claimed_by=None))
    view = ws.workers.get("w1").to_dict()
    assert view["held_tasks"] == [] and view["current_task"] is None  # the record's stale id is not shown
