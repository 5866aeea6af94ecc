"""Complete a task and claim the next in one transaction (`Queue.complete_and_claim`, `mavps complete --next`)."""
from __future__ import annotations

import json

import pytest
from test_cli import Mavps

from mavps.errors import Refused

pytestmark = pytest.mark.usefixtures("clean_env")


def events(target) -> list[str]:
    lines = (target.path / "agent-comms.jsonl").read_text().splitlines()
    return [json.loads(line)["event"] for line in lines if line.strip()]


def test_one_transaction_completes_and_claims_the_next(ws, target) -> None:
    warm = ws.queue.add("warm-up", "w", priority=3)
    a = ws.queue.add("first", "do a", priority=2)
    b = ws.queue.add("second", "do b")
    ws.queue.claim("w1")
    ws.queue.complete(warm.id, "w1")  # the transport has seen the files once (reads guessed from their sizes)
    before = ws.store.transport.round_trips
    assert ws.queue.claim("w1").id == a.id
    one_claim = ws.store.transport.round_trips - before
    before = ws.store.transport.round_trips
    done, got = ws.queue.complete_and_claim(a.id, "w1", "a done", read=True)
    spent = ws.store.transport.round_trips - before
    assert done.id == a.id and done.status.value == "completed" and done.result == "a done"
    assert got.task is not None and got.task.id == b.id and got.task.claimed_by == "w1"
    assert got.instructions == b"do b"  # read in the same transaction
    assert spent == one_claim  # one transaction, where complete then claim take two
    tasks = {t.id: t for t in ws.queue.list()}
    assert tasks[a.id].status.value == "completed" and tasks[b.id].status.value == "in_progress"
    assert events(target)[-2:] == ["task_completed", "task_claimed"]


def test_nothing_left_still_completes(ws) -> None:
    a = ws.queue.add("only", "x")
    ws.queue.claim("w1")
    done, got = ws.queue.complete_and_claim(a.id, "w1")
    assert done.status.value == "completed" and got.task is None


def test_another_workers_task_is_refused_and_nothing_changes(ws, target) -> None:
    a = ws.queue.add("first", "x")
    ws.queue.add("second", "y")
    ws.queue.claim("w1")
    before = (target.path / "task-queue.json").read_bytes()
    with pytest.raises(Refused):
        ws.queue.complete_and_claim(a.id, "w2")
    assert (target.path / "task-queue.json").read_bytes() == before


def test_a_repeated_completion_claims_without_completing_twice(ws, target) -> None:
    a = ws.queue.add("first", "x")
    b = ws.queue.add("second", "y")
    ws.queue.claim("w1")
    ws.queue.complete(a.id, "w1", "done")
    done, got = ws.queue.complete_and_claim(a.id, "w1", "done")
    assert done.status.value == "completed" and got.task is not None and got.task.id == b.id
    assert events(target).count("task_completed") == 1


def test_cli_complete_next(target) -> None:
    m = Mavps(target)
    m("init")
    m("task", "add", "first", "--instructions", "do a", "--priority", "2")
    m("task", "add", "second", "--instructions", "do b")
    m("claim", "--worker", "w1")
    out = m.json("complete", "1", "--worker", "w1", "--result", "ok", "--next")
    assert out["completed"]["id"] == 1 and out["completed"]["status"] == "completed"
    assert out["next"]["id"] == 2 and out["next"]["instructions"] == "do b"
    text = m("complete", "2", "--worker", "w1", "--next", code=3)
    assert "Completed" in text.stdout and "nothing claimable for w1" in text.stderr
