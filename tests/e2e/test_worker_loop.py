"""The worker loop with the real Claude Code CLI, offline (issue 7).

Real ``claude -p`` sessions are mavps agents over the real sshd, configured
only by what ``mavps install-hooks`` writes into their project (plus a test
HOME saying how to reach the test sshd and which short timings to use; see
``stand.py``). The model is ``FakeModel(ScriptedWorker())``: it runs the
``RUN:`` lines of the latest prompt or Stop-hook feedback, then ends its turn.
So the task's own instructions carry a ``RUN:`` line doing its "work", and
the hook's block reason carries the completion command: if the hook's
wording did not give the agent everything, the task would not get done.

Each test prints its figures (``-s``): tasks, workers, wall time, model
requests per task, model requests per minute while idle.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .claude_env import require_claude
from .fake_model import FakeModel, ScriptedWorker
from .stand import Stand, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.sftp]

FIGURES: list[str] = []


@pytest.fixture
def claude() -> str:
    return require_claude()


@pytest.fixture
def model() -> Iterator[FakeModel]:
    with FakeModel(ScriptedWorker()) as fake:
        yield fake


@pytest.fixture
def stand_factory(claude: str, sshd: Any, model: FakeModel, tmp_path: Path) -> Iterator[Any]:
    stands: list[Stand] = []

    def make(**timings: float) -> Stand:
        stand = Stand(tmp_path / f"stand{len(stands)}", sshd, model.url, timings)
        stands.append(stand)
        return stand

    yield make
    for stand in stands:
        stand.close()


def figure(scenario: str, *, tasks: int, workers: int, wall: float, requests: int,
           idle_requests: float | None = None, idle_seconds: float | None = None, extra: str = "") -> str:
    per_task = requests / tasks if tasks else float("nan")
    idle = ""
    if idle_requests is not None and idle_seconds:
        idle = f"; idle: {idle_requests:.0f} model requests in {idle_seconds:.0f}s = " \
               f"{60 * idle_requests / idle_seconds:.1f}/min"
    line = (f"[e2e figures] {scenario}: {tasks} tasks, {workers} worker(s), wall {wall:.1f}s, "
            f"{requests} model requests = {per_task:.2f}/task{idle}{(' ; ' + extra) if extra else ''}")
    print("\n" + line)
    FIGURES.append(line)
    return line


def work_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def assert_clean(model: FakeModel) -> None:
    assert model.errors == []
    assert model.unknown_paths == []


# ---------------------------------------------------------------------------
# 1. One worker drains a queue


@pytest.mark.timeout(300)
def test_one_worker_drains_a_queue(stand_factory: Any, model: FakeModel) -> None:
    n = 10
    stand = stand_factory(hook_wait=3, idle_timeout=6)
    work = stand.shared / "work.log"
    with stand.open("coordinator") as ws:
        for i in range(1, n + 1):
            ws.queue.add(f"Task {i}: append task-{i} to the work log",
                         f"Append one line to the shared work log.\nRUN: echo task-{i} >> {work}\n")
    worker = stand.worker("w1")
    worker.start()
    done_at = wait_for("all tasks completed", lambda: all(
        t.status.value == "completed" for t in stand.tasks().values()) and time.monotonic(), 240)
    busy_requests = len(model.main_requests())
    rc = worker.wait(120)
    assert rc == 0, (worker.stdout, worker.stderr)
    assert_clean(model)

    assert Counter(work_lines(work)) == Counter(f"task-{i}" for i in range(1, n + 1))
    tasks = stand.tasks()
    assert len(tasks) == n
    assert all(t.status.value == "completed" and t.claimed_by == "w1" for t in tasks.values())
    # No spinning: per task one Bash call for the work, one for `mavps complete`, one ending turn.
    assert busy_requests <= 3 * n + 3, busy_requests
    requests = len(model.main_requests())
    idle_requests = requests - busy_requests
    idle_seconds = worker.ended - done_at
    assert stand.workers()["w1"].worker.status == "offline"
    figure("1 one worker drains a queue", tasks=n, workers=1, wall=done_at - worker.started,
           requests=busy_requests, idle_requests=idle_requests, idle_seconds=idle_seconds,
           extra=f"then exit after {idle_seconds:.0f}s idle (hook_wait 3s, idle_timeout 6s)")
