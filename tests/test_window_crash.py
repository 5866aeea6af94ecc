"""A worker killed right after each single request of a refill (the claim that reads the backlog and rewrites it
with the window), and an adder killed during the append that moves a task to the backlog: once the next lock
holder has come by, every task is in exactly one place (window, committed backlog, archive) and a drain claims
each exactly once."""
from __future__ import annotations

import pytest
from conftest import Target
from support import killed
from test_window import ids_everywhere

from mavps import defaults

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("clean_env"), pytest.mark.timeout(900)]

TTL = 0.5  #: the crashed client's lock lease: the next holder breaks its lock after this
TASKS = 12


def prepare(target: Target, claims: int) -> None:
    """11 tasks, a window of 4 (7 in the backlog); after two claims the next one refills, with none an add spills."""
    ws = target.open("c")
    try:
        ws.init()
        for i in range(TASKS - 1):
            ws.queue.add(f"t{i}", "x", priority=i % 3)
        for _ in range(claims):
            ws.queue.claim("w0")
    finally:
        ws.close()


def run_killed(target: Target, call: str, crash_at: int | None, tmp) -> int:
    """`call` ("claim" or "add") in a forked child that dies right after the server carried out request
    `crash_at`; the number of requests it sent when it was not killed (-1 when it was)."""
    def action() -> None:
        defaults.WINDOW = 4
        ws = target.open("w1", lock_ttl=TTL)
        if call == "claim":
            ws.queue.claim("w1")
        else:
            ws.queue.add("last", "x", priority=-1)

    return killed.run_killed(action, crash_at, tmp / "count", call)


def check_after(target: Target) -> None:
    ws = target.open("c", lock_ttl=TTL)
    try:
        ws.queue.reap()  # the next lock holder: breaks the dead one's lock, rolls a commit forward
        ids = ids_everywhere(target.path)
        assert len(ids) == len(set(ids)), sorted(ids)
        total = max(ids)
        assert sorted(ids) == list(range(1, total + 1))
        listed = ws.queue.list()
        assert sorted(t.id for t in listed) == list(range(1, total + 1))
        claimed = []
        while (t := ws.queue.claim("drain")) is not None:
            claimed.append(t.id)
            ws.queue.complete(t.id, "drain")
        running = [t.id for t in listed if t.status.value == "in_progress"]
        assert sorted(claimed + running) == list(range(1, total + 1))
    finally:
        ws.close()


@pytest.mark.parametrize("call", ["claim", "add"])
@pytest.mark.parametrize("kind", ["local", pytest.param("sftp", marks=pytest.mark.sftp)])
def test_a_crash_anywhere_in_a_refill_or_a_spill_loses_and_repeats_no_task(kind, call, tmp_path, request,
                                                                          monkeypatch):
    monkeypatch.setattr(defaults, "WINDOW", 4)
    server = request.getfixturevalue("sshd") if kind == "sftp" else None
    n = 0
    total = None
    while total is None or n <= total:
        target = Target(kind, tmp_path / f"ws{n}", server)
        prepare(target, 2 if call == "claim" else 0)
        got = run_killed(target, call, n, tmp_path)
        if got >= 0:  # finished before request n: every point has been crossed
            total = got
            check_after(target)
            break
        check_after(target)
        n += 1
    assert total is not None and total > 20, total  # a refill or a spill was crossed, not a short look
