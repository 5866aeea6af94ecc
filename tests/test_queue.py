"""The queue's behaviour, on the local transport and over the real sshd."""
from __future__ import annotations

import json
import time

import pytest

from mavps import CorruptState, Fenced, InvalidInput, NotFound, Refused, TaskStatus


def test_add_writes_task_and_instructions(ws, target):
    task = ws.queue.add("Create user model", "## Objective\nDo it", context_files=["docs/a.md"], requires=["backend"])
    assert task.id == 1 and task.status is TaskStatus.PENDING
    on_disk = json.loads((target.path / "task-queue.json").read_text())
    assert on_disk[0]["id"] == 1 and on_disk[0]["instruction_file"] == "tasks/task-1-instructions.md"
    assert (target.path / "tasks/task-1-instructions.md").read_text() == "## Objective\nDo it"
    assert ws.queue.instructions(task) == "## Objective\nDo it"
    log = [json.loads(line) for line in (target.path / "agent-comms.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "task_added" and log[-1]["task_id"] == 1


def test_claim_gives_each_task_once_then_none(ws):
    for i in range(3):
        ws.queue.add(f"t{i}", "x")
    got = [ws.queue.claim("w1").id for _ in range(3)]
    assert sorted(got) == [1, 2, 3]
    assert ws.queue.claim("w1") is None


def test_claim_sets_lease_and_attempts(ws):
    ws.queue.add("t", "x")
    task = ws.queue.claim("w1")
    assert task.claimed_by == "w1" and task.attempts == 1
    assert task.claim_token and task.lease_expires_at and task.claimed_at.endswith("Z")
    worker = ws.workers.get("w1").worker
    assert worker.last_task_claimed == task.claimed_at and worker.current_task == task.id


def test_priority_then_id_order(ws):
    ws.queue.add("low", "x")
    ws.queue.add("high", "x", priority=10)
    ws.queue.add("high too", "x", priority=10)
    assert [ws.queue.claim("w").description for _ in range(3)] == ["high", "high too", "low"]


def test_dependencies_gate_claims(ws):
    first = ws.queue.add("first", "x")
    second = ws.queue.add("second", "x", depends_on=[first.id], priority=100)
    assert [t.id for t in ws.queue.ready()] == [first.id]
    assert ws.queue.claim("w").id == first.id
    assert ws.queue.claim("w") is None
    ws.queue.complete(first.id, "w")
    assert ws.queue.claim("w").id == second.id


def test_unknown_dependency_refused_and_nothing_written(ws, target):
    before = (target.path / "task-queue.json").read_bytes()
    with pytest.raises(InvalidInput, match="no task 42"):
        ws.queue.add("x", "y", depends_on=[42])
    assert (target.path / "task-queue.json").read_bytes() == before


def test_capabilities_route_tasks(ws):
    ws.queue.add("frontend work", "x", requires=["frontend"])
    ws.queue.add("backend work", "x", requires=["backend", "database"])
    assert ws.queue.claim("w-none", []) is None
    assert ws.queue.claim("w-back", ["backend"]) is None
    assert ws.queue.claim("w-back", ["backend", "database"]).description == "backend work"
    assert ws.queue.claim("w-front", ["frontend"]).description == "frontend work"


def test_registered_capabilities_are_used_when_claim_gives_none(ws):
    ws.queue.add("needs gpu", "x", requires=["gpu"])
    ws.workers.register("w1", ["gpu"])
    assert ws.queue.claim("w1").description == "needs gpu"


def test_complete_by_other_worker_is_fenced(ws):
    ws.queue.add("t", "x")
    task = ws.queue.claim("w1")
    with pytest.raises(Fenced):
        ws.queue.complete(task.id, "w2")
    assert ws.queue.get(task.id).status is TaskStatus.IN_PROGRESS


def test_complete_twice_is_idempotent_for_holder(ws):
    ws.queue.add("t", "x")
    task = ws.queue.claim("w1")
    done = ws.queue.complete(task.id, "w1", "ok")
    again = ws.queue.complete(task.id, "w1", "ok")
    assert done.completed_at == again.completed_at
    completions = [r for r in ws.log.tail(50) if r.get("event") == "task_completed"]
    assert len(completions) == 1


def test_claim_retry_with_same_token_returns_same_task(ws):
    ws.queue.add("a", "x")
    ws.queue.add("b", "x")
    first = ws.queue.claim("w1", token="abc123")
    again = ws.queue.claim("w1", token="abc123")
    assert again.id == first.id
    assert ws.queue.list(status="pending")[0].id != first.id


def test_lease_expiry_returns_task_and_fences_old_holder(open_ws):
    ws = open_ws(lease_ttl=1)
    ws.init()
    ws.queue.add("t", "x")
    task = ws.queue.claim("slow")
    time.sleep(2.2)
    other = ws.queue.claim("fast")
    assert other is not None and other.id == task.id and other.attempts == 2
    with pytest.raises(Fenced, match="no longer slow's"):
        ws.queue.complete(task.id, "slow", "late")
    assert ws.queue.complete(task.id, "fast").status is TaskStatus.COMPLETED
    events = [r["event"] for r in ws.log.tail(20)]
    assert "lease_expired" in events


def test_heartbeat_renews_lease(open_ws):
    ws = open_ws(lease_ttl=2)
    ws.init()
    ws.queue.add("t", "x")
    task = ws.queue.claim("w1")
    for _ in range(3):
        time.sleep(1.1)
        held = ws.queue.heartbeat("w1")
        assert [t.id for t in held] == [task.id]
    assert ws.queue.claim("w2") is None  # never expired
    assert ws.queue.get(task.id).claimed_by == "w1"


def test_fail_retries_then_dead_letters_then_requeue(open_ws):
    ws = open_ws(max_attempts=2)
    ws.init()
    ws.queue.add("flaky", "x")
    t = ws.queue.claim("w1")
    assert ws.queue.fail(t.id, "w1", "boom 1").status is TaskStatus.PENDING
    t = ws.queue.claim("w1")
    failed = ws.queue.fail(t.id, "w1", "boom 2")
    assert failed.status is TaskStatus.FAILED and failed.error == "boom 2"
    assert ws.queue.claim("w1") is None
    assert ws.queue.requeue(t.id).status is TaskStatus.PENDING
    assert ws.queue.claim("w1").id == t.id


def test_expired_lease_at_max_attempts_dead_letters(open_ws):
    ws = open_ws(lease_ttl=1)
    ws.init()
    ws.queue.add("t", "x", max_attempts=1)
    ws.queue.claim("w1")
    time.sleep(2.2)
    assert ws.queue.reap()[0].status is TaskStatus.FAILED


def test_release_gives_back_untried(ws):
    ws.queue.add("t", "x")
    t = ws.queue.claim("w1")
    released = ws.queue.release(t.id, "w1")
    assert released.status is TaskStatus.PENDING and released.attempts == 0


def test_cancel_and_refusals(ws):
    t = ws.queue.add("t", "x")
    assert ws.queue.cancel(t.id).status is TaskStatus.CANCELLED
    with pytest.raises(Refused):
        ws.queue.cancel(t.id)
    with pytest.raises(Refused):
        ws.queue.requeue(ws.queue.add("p", "x").id)
    with pytest.raises(NotFound):
        ws.queue.get(999)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside", "a/../../b", "", "a\x00b"])
def test_paths_outside_workspace_refused(ws, bad):
    with pytest.raises(InvalidInput):
        ws.queue.add("t", "x", context_files=[bad])
    assert ws.queue.list() == []


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x" * 65, "a b", "new\nline"])
def test_bad_worker_ids_refused(ws, bad):
    with pytest.raises(InvalidInput):
        ws.queue.claim(bad)


def test_corrupt_queue_left_untouched(ws, target):
    (target.path / "task-queue.json").write_text('[{"id": 1, "description": "x"},')
    with pytest.raises(CorruptState, match=r"task-queue.json: invalid JSON at line 1"):
        ws.queue.add("t", "x")
    assert (target.path / "task-queue.json").read_text() == '[{"id": 1, "description": "x"},'
    assert not list(target.path.glob(".mavps.lock*"))


def test_duplicate_ids_reported(ws, target):
    (target.path / "task-queue.json").write_text('[{"id": 1}, {"id": 1}]')
    with pytest.raises(CorruptState, match="appears twice"):
        ws.queue.claim("w1")


def test_seed_examples_load(ws, target):
    (target.path / "task-queue.json").write_text(json.dumps([{
        "id": 1234, "description": "Create user model", "instruction_file": "tasks/task-1234-instructions.md",
        "context_files": ["docs/schema.md", "src/models/base.py"], "status": "completed",
        "claimed_by": "worker-backend", "claimed_at": "2025-11-09T10:15:00", "completed_at": "2025-11-09T10:20:00",
        "custom_field": {"kept": True}}]))
    (target.path / "worker-status.json").write_text(json.dumps({"worker-backend": {
        "status": "active", "capabilities": ["backend", "database"], "registered_at": "2025-11-09T10:00:00",
        "last_heartbeat": "2025-11-09T10:20:30", "last_task_claimed": "2025-11-09T10:15:00",
        "last_task_completed": "2025-11-09T10:20:00"}}))
    (target.path / "workspace.json").unlink()
    task = ws.queue.get(1234)
    assert task.status is TaskStatus.COMPLETED and task.claimed_by == "worker-backend"
    new = ws.queue.add("next", "x")
    assert new.id == 1235  # never reuses ids
    raw = json.loads((target.path / "task-queue.json").read_text())
    assert raw[0]["custom_field"] == {"kept": True}
    assert [w.worker.id for w in ws.workers.list()] == ["worker-backend"]


def test_bak_keeps_previous_version(ws, target):
    ws.queue.add("one", "x")
    before = (target.path / "task-queue.json").read_text()
    ws.queue.add("two", "x")
    assert (target.path / "task-queue.json.bak").read_text() == before


def test_workers_register_list_remove(ws):
    ws.workers.register("w1", ["backend"])
    views = ws.workers.list()
    assert views[0].worker.capabilities == ["backend"] and views[0].online
    ws.queue.add("t", "x")
    ws.queue.claim("w1")
    with pytest.raises(Refused, match="holds task"):
        ws.workers.remove("w1")
    ws.workers.remove("w1", force=True)
    assert ws.workers.list() == []
    assert ws.queue.list(status="pending")[0].attempts == 0


def test_log_append_tail_filter(ws):
    ws.log.append("hello", agent="coordinator")
    ws.log.append("from worker", agent="w1", task_id=3)
    assert ws.log.tail(1)[0]["message"] == "from worker"
    assert [r["message"] for r in ws.log.tail(5, agent="coordinator", event="message")] == ["hello"]
    assert ws.log.tail(5, task=3)[0]["agent"] == "w1"
    with pytest.raises(InvalidInput, match="32768"):
        ws.log.append("x" * 40000)


def test_history_is_archived_and_ids_stay_unique(open_ws, target):
    from mavps import queue as q

    ws = open_ws()
    ws.init()
    total = q.KEEP_FINISHED + q.ARCHIVE_BATCH + 5
    for i in range(total):
        ws.queue.add(f"t{i}", "x")
    # finish them all quickly, by hand-editing the state the way a person might not: through the API
    for _ in range(total):
        t = ws.queue.claim("w")
        ws.queue.complete(t.id, "w")
    live = json.loads((target.path / "task-queue.json").read_text())
    assert len(live) <= q.KEEP_FINISHED + q.ARCHIVE_BATCH
    assert (target.path / "task-archive.jsonl").exists()
    assert len(ws.queue.list(include_archived=True)) == total
    assert ws.queue.get(1).status is TaskStatus.COMPLETED  # read from the archive
    assert ws.queue.add("new", "x").id == total + 1


def test_ready_counts_expired_leases_as_claimable(open_ws):
    ws = open_ws(lease_ttl=1)
    ws.init()
    ws.queue.add("t", "x")
    ws.queue.claim("crashed")
    assert ws.queue.ready() == []
    time.sleep(2.2)
    assert [t.id for t in ws.queue.ready()] == [1]
    assert ws.queue.claim("next").id == 1


def test_workspace_files_read_write_and_stay_inside(ws, target, tmp_path):
    from mavps import InvalidInput, NotFound

    assert ws.write_file("src/models/user.py", b"class User: ...\n") == 16
    assert (target.path / "src/models/user.py").read_bytes() == b"class User: ...\n"
    assert ws.read_file("src/models/user.py") == b"class User: ...\n"
    ws.write_file("src/models/user.py", b"v2")
    assert ws.read_file("src/models/user.py") == b"v2"
    assert not [p for p in (target.path / "src/models").iterdir() if p.name.endswith(".tmp")]
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    (target.path / "link").symlink_to(outside)
    (target.path / "dirlink").symlink_to(tmp_path)
    for bad in ("link", "dirlink/secret.txt", "../secret.txt", "/etc/passwd"):
        with pytest.raises(InvalidInput):
            ws.read_file(bad)
    with pytest.raises(InvalidInput):
        ws.write_file("dirlink/evil.txt", b"x")
    assert not (tmp_path / "evil.txt").exists()
    with pytest.raises(InvalidInput, match="state"):
        ws.write_file("task-queue.json", b"[]")
    with pytest.raises(NotFound):
        ws.read_file("missing.md")


def test_edit_refuses_a_dependency_cycle():
    from mavps.admin import validate_state

    with pytest.raises(ValueError, match="circle: 1 -> 2 -> 1"):
        validate_state("task-queue.json", b'[{"id": 1, "depends_on": [2]}, {"id": 2, "depends_on": [1]}]')


def test_log_readers_drop_rolled_back_transactions():
    from mavps.log import parse_lines

    lines = b"\n".join([
        b'{"event": "task_added", "task_id": 1, "txn": "a"}',
        b'{"event": "task_claimed", "task_id": 1, "txn": "b"}',
        b'{"event": "rolled_back", "txn": "b"}',
        b'{"event": "task_claimed", "task_id": 1, "txn": "c"}',
    ])
    assert [(r["event"], r.get("txn")) for r in parse_lines(lines, False)] == [
        ("task_added", "a"), ("rolled_back", "b"), ("task_claimed", "c")]


def test_instruction_file_symlinked_outside_is_refused(ws, target, tmp_path):
    secret = tmp_path / "secret.md"
    secret.write_text("top secret")
    (target.path / "tasks" / "evil.md").symlink_to(secret)
    with pytest.raises(InvalidInput, match="symlink"):
        ws.queue.add("t", instruction_file="tasks/evil.md")
    (target.path / "tasks" / "ok.md").write_text("fine")
    task = ws.queue.add("t", instruction_file="tasks/ok.md")
    assert ws.queue.instructions(task) == "fine"
