"""`mavps wait`: a coordinator script waits for tasks to end, lock-free, with a bounded backoff."""
from __future__ import annotations

import pytest
from test_cli import Mavps

from mavps.errors import NotFound

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def mavps(target) -> Mavps:
    m = Mavps(target)
    m("init")
    return m


def test_wait_returns_when_the_tasks_end_and_backs_off(ws):
    a, b = ws.queue.add("a", "x"), ws.queue.add("b", "x")
    sleeps: list[float] = []

    def sleep(s: float) -> None:  # the workers act while the coordinator sleeps
        sleeps.append(s)
        if len(sleeps) == 3:
            ws.queue.complete(ws.queue.claim("w1").id, "w1", "done")
        if len(sleeps) == 6:
            ws.queue.complete(ws.queue.claim("w1").id, "w1", "done")

    out = ws.queue.wait([a.id, b.id], sleep=sleep, first=0.5, longest=1.0)
    assert out["ok"] and out["done"] and out["still_running"] == [] and out["polls"] == 7
    assert sleeps == [0.5, 0.75, 1.0, 1.0, 1.0, 1.0]  # backs off, bounded by `longest`
    assert [r["status"] for r in out["tasks"]] == ["completed", "completed"]


def test_wait_any_returns_at_the_first_end(ws):
    a, b = ws.queue.add("a", "x"), ws.queue.add("b", "x")
    ws.queue.cancel(b.id)
    out = ws.queue.wait([a.id, b.id], any_=True, sleep=pytest.fail)
    assert out["done"] and not out["ok"] and out["still_running"] == [a.id]


def test_wait_times_out_with_what_is_still_running(ws):
    t = ws.queue.add("a", "x")
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    out = ws.queue.wait([t.id], timeout=2, sleep=sleep, clock=lambda: now[0])
    assert out["timed_out"] and not out["ok"] and out["still_running"] == [t.id] and now[0] == 2


def test_wait_for_an_unknown_task_is_an_error(ws):
    with pytest.raises(NotFound):
        ws.queue.wait([99], sleep=pytest.fail)


def test_cli_exit_codes_and_json(mavps):
    mavps("task", "add", "a")
    mavps("task", "add", "b", "--max-attempts", "1")
    mavps("claim", "--worker", "w1")
    mavps("complete", "1", "--worker", "w1", "--result", "ok")
    assert mavps.json("wait", "1")["ok"] is True
    out = mavps("wait", "1", "2", "--timeout", "0", code=1)
    assert "still running: #2" in out.stdout
    data = mavps.json("wait", "1", "2", "--any", "--timeout", "0")
    assert data["ok"] and data["still_running"] == [2]
    mavps("claim", "--worker", "w1")
    mavps("fail", "2", "--worker", "w1", "--error", "broken")
    data = mavps.json("wait", "1", "2", code=1)  # #2 failed for good
    assert data["done"] and not data["ok"] and [r["status"] for r in data["tasks"]] == ["completed", "failed"]
