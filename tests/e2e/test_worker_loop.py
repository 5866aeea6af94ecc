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

import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mavps.timeutil import parse

from .claude_env import require_claude
from .fake_model import FakeModel, ScriptedWorker, last_instruction
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
    # What the model was told: the whole task and the exact completion command, nothing else needed.
    feedback = [text for _, text in (last_instruction(r.body["messages"]) for r in model.main_requests())
                if text.startswith("Stop hook feedback:")]
    first = next(text for text in feedback if "task #1 " in text)
    for part in ("worker w1", "Task #1: Task 1: append task-1 to the work log", f"RUN: echo task-1 >> {work}",
                 "mavps complete 1 --worker w1", "mavps fail 1 --worker w1"):
        assert part in first, (part, first)
    print("\n[e2e block reason]\n" + first)
    figure("1 one worker drains a queue", tasks=n, workers=1, wall=done_at - worker.started,
           requests=busy_requests, idle_requests=idle_requests, idle_seconds=idle_seconds,
           extra=f"then exit after {idle_seconds:.0f}s idle (hook_wait 3s, idle_timeout 6s)")


def requests_between(model: FakeModel, start: float, end: float) -> int:
    """Main model requests received in the wall-clock interval [start, end)."""
    return sum(1 for r in model.main_requests() if start <= r.time < end)


# ---------------------------------------------------------------------------
# 2. A waiting worker picks up a task added later, then stops by itself


@pytest.mark.timeout(300)
def test_waiting_worker_picks_up_a_new_task_then_stops_when_idle(stand_factory: Any, model: FakeModel) -> None:
    hook_wait, idle_timeout = 5.0, 20.0
    stand = stand_factory(hook_wait=hook_wait, idle_timeout=idle_timeout)
    work = stand.shared / "work.log"
    worker = stand.worker("w1").start()
    t0 = time.time()
    wait_for("w1 registered", lambda: "w1" in stand.workers(), 60)
    time.sleep(8)  # well into its wait inside the Stop hook
    # A context file in the workspace: the agent is not on the VPS, the reason says how to read it.
    (stand.ws_path / "notes").mkdir()
    (stand.ws_path / "notes" / "brief.md").write_text("brief-1\n")
    added = time.time()
    with stand.open("coordinator") as ws:
        task = ws.queue.add("Late task: append late-1 to the work log",
                            "Append one line to the shared work log, then the brief.\n"
                            f"RUN: echo late-1 >> {work}\nRUN: mavps cat notes/brief.md >> {work}\n",
                            context_files=["notes/brief.md"])
    done = wait_for("the late task completed",
                    lambda: stand.tasks()[task.id].status.value == "completed" and time.time(), 60)
    picked_up = done - added
    rc = worker.wait(idle_timeout + 60)
    ended = time.time()
    assert rc == 0, (worker.stdout, worker.stderr)
    assert_clean(model)

    assert work_lines(work) == ["late-1", "brief-1"]
    reasons = [text for _, text in (last_instruction(r.body["messages"]) for r in model.main_requests())]
    assert any("notes/brief.md  (read it with: mavps cat notes/brief.md)" in text for text in reasons), reasons
    final = stand.tasks()[task.id]
    assert final.claimed_by == "w1"
    # Waiting happens in the hook: before the task, the prompt's turn plus about one
    # "no work yet" turn per hook_wait; the task itself is 4 turns (2 RUN lines, complete, end).
    before = requests_between(model, t0 - 5, added)
    assert before <= 1 + (added - t0) / hook_wait + 1, before
    task_requests = requests_between(model, added, done + 0.5)
    assert task_requests <= 5, task_requests
    after = requests_between(model, done + 0.5, ended + 1)
    assert after <= idle_timeout / hook_wait + 2, after
    # It stopped by itself at the idle timeout, and says so in the workspace.
    idle_for = ended - done
    assert idle_timeout - 2 <= idle_for <= idle_timeout + hook_wait + 20, idle_for
    w1 = stand.workers()["w1"]
    assert w1.worker.status == "offline"
    assert any(r.get("event") == "worker_offline" and r.get("worker") == "w1" for r in stand.log())
    idle_req = before - 1 + after  # minus the prompt's own turn
    idle_secs = (added - t0) + idle_for
    figure("2 waiting worker picks up a late task", tasks=1, workers=1, wall=ended - t0,
           requests=task_requests, idle_requests=idle_req, idle_seconds=idle_secs,
           extra=f"picked up {picked_up:.1f}s after it was added (done), exit {idle_for:.0f}s after "
                 f"the last task (hook_wait {hook_wait:.0f}s, idle_timeout {idle_timeout:.0f}s)")


# ---------------------------------------------------------------------------
# 3. Workers with different capabilities share one queue


@pytest.mark.timeout(300)
def test_workers_with_capabilities_share_a_queue(stand_factory: Any, model: FakeModel) -> None:
    stand = stand_factory(hook_wait=3, idle_timeout=8)
    work = stand.shared / "work.log"
    caps = {"w-py": ["python"], "w-js": ["js"], "w-plain": []}
    kinds = {"python": ["python"], "js": ["js"], "any": []}
    expected = {}
    with stand.open("coordinator") as ws:
        for i in range(12):
            kind = list(kinds)[i % 3]
            t = ws.queue.add(f"Task {i} ({kind})",
                             f"Append a line naming this task and yourself to the shared work log.\n"
                             f"RUN: sleep 0.5; echo t{i}:$MAVPS_WORKER_ID >> {work}\n",
                             requires=kinds[kind])
            expected[t.id] = i
    workers = [stand.worker(name, capabilities=c) for name, c in caps.items()]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    done_at = wait_for("all tasks completed", lambda: all(
        t.status.value == "completed" for t in stand.tasks().values()) and time.monotonic(), 240)
    busy_requests = len(model.main_requests())
    for w in workers:
        assert w.wait(120) == 0, (w.name, w.stdout, w.stderr)
    assert_clean(model)

    tasks = stand.tasks()
    lines = work_lines(work)
    assert len(lines) == len(expected) == len(set(lines)), lines  # none done twice
    by_task = dict(line.split(":", 1) for line in lines)
    for tid, i in expected.items():
        t = tasks[tid]
        assert t.status.value == "completed"
        assert set(t.requires) <= set(caps[t.claimed_by]), (t.id, t.requires, t.claimed_by)
        assert t.attempts == 1
        assert by_task[f"t{i}"] == t.claimed_by  # the Bash tool saw the settings' MAVPS_WORKER_ID
    share = Counter(t.claimed_by for t in tasks.values())
    assert set(share) == set(caps), share  # everyone got work (each kind has its own worker)
    figure("3 three workers, capabilities", tasks=len(tasks), workers=len(workers), wall=done_at - t0,
           requests=busy_requests, extra=f"share {dict(share)}")


# ---------------------------------------------------------------------------
# 4. A worker killed mid-task: its lease runs out, another worker finishes it


@pytest.mark.timeout(300)
def test_killed_worker_task_is_finished_by_another(stand_factory: Any, model: FakeModel) -> None:
    # A long hook_wait (as in real use): the rescuer must notice the expired lease
    # while it waits inside the Stop hook, not only at its next Stop.
    lease_ttl, hook_wait = 5.0, 30.0
    stand = stand_factory(hook_wait=hook_wait, idle_timeout=12, lease_ttl=lease_ttl)
    work = stand.shared / "work.log"
    first_try = stand.shared / "first-try"
    with stand.open("coordinator") as ws:
        task = ws.queue.add("Slow the first time",
                            "The first attempt hangs (it gets killed); a later one is quick.\n"
                            f"RUN: test -e {first_try} || {{ touch {first_try}; sleep 600; }}\n"
                            f"RUN: echo slow-1:$MAVPS_WORKER_ID >> {work}\n")
    t0 = time.monotonic()
    victim = stand.worker("w-victim").start()
    wait_for("the victim to be inside the task", lambda: first_try.exists(), 60)
    assert stand.tasks()[task.id].claimed_by == "w-victim"
    rescuer = stand.worker("w-rescuer").start()
    wait_for("w-rescuer registered", lambda: "w-rescuer" in stand.workers(), 60)
    victim.kill()
    killed = time.monotonic()
    expires = parse(stand.tasks()[task.id].lease_expires_at)
    done = wait_for("the task completed by the rescuer",
                    lambda: stand.tasks()[task.id].status.value == "completed" and time.monotonic(), 90)
    assert rescuer.wait(120) == 0, (rescuer.stdout, rescuer.stderr)
    assert_clean(model)

    final = stand.tasks()[task.id]
    assert final.claimed_by == "w-rescuer"
    assert final.attempts == 2
    assert work_lines(work) == ["slow-1:w-rescuer"]
    assert any(r.get("event") == "lease_expired" for r in stand.log())
    reclaimed = (parse(final.claimed_at) - expires).total_seconds()
    assert reclaimed < 8, f"claimed {reclaimed:.1f}s after the lease expired"
    figure("4 killed worker, lease expiry", tasks=1, workers=2, wall=done - t0,
           requests=len(model.main_requests()),
           extra=f"reclaimed {reclaimed:.1f}s after the lease expired, finished {done - killed:.1f}s after "
                 f"the kill (lease_ttl {lease_ttl:.0f}s, hook_wait {hook_wait:.0f}s)")


# ---------------------------------------------------------------------------
# 5. The coordinator side: a claude -p coordinator adds tasks, the workers do them


@pytest.mark.timeout(300)
def test_coordinator_session_adds_tasks_workers_complete_them(stand_factory: Any, model: FakeModel) -> None:
    hook_wait, idle_timeout = 5.0, 15.0
    stand = stand_factory(hook_wait=hook_wait, idle_timeout=idle_timeout)
    work = stand.shared / "work.log"
    workers = [stand.worker("w-a"), stand.worker("w-b", capabilities=["docs"])]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    wait_for("both workers registered", lambda: {"w-a", "w-b"} <= set(stand.workers()), 60)
    # The coordinator may run only `mavps ...` (the installer's rule): no --allow-bash.
    # Its own stand-in model, so that its requests are counted apart from the workers'.
    coord_model = FakeModel(ScriptedWorker()).start()
    coordinator = stand.agent("coord", role="coordinator", allow_bash=False, model_url=coord_model.url)
    n = 6
    adds = []
    for i in range(1, n + 1):
        requires = " --requires docs" if i % 3 == 0 else ""
        adds.append(f"RUN: mavps task add 'Coordinated task {i}'{requires} "
                    f"--instructions 'RUN: echo c{i}:$MAVPS_WORKER_ID >> {work}'")
    prompt = "You are the mavps coordinator. Add these tasks to the queue:\n" + "\n".join(adds) + "\n"
    try:
        coordinator.run(prompt, timeout=120)
    finally:
        coord_model.stop()
    assert coordinator.returncode == 0, (coordinator.stdout, coordinator.stderr)
    assert_clean(coord_model)
    coordinator_requests = len(coord_model.main_requests())
    first = str(coord_model.main_requests()[0].body)
    assert "mavps: you are the coordinator" in first  # its SessionStart context reached the model
    # One Bash call per task, one ending turn; then its Stop hook kept it until none of its tasks was in
    # flight, blocking once per digest (or per hook_wait with no news): each completion reported once.
    feedback = [last_instruction(r.body.get("messages", []))[1] for r in coord_model.main_requests()[n + 1:]]
    assert coordinator_requests == n + 1 + len(feedback) and feedback, coordinator_requests
    assert all(t.status.value == "completed" for t in stand.tasks().values())  # it stopped only then
    reported = [int(x) for text in feedback for x in re.findall(r"^- #(\d+) completed by ", text, re.MULTILINE)]
    assert sorted(reported) == list(range(1, n + 1)), feedback
    tasks = stand.tasks()
    assert len(tasks) == n, [t.description for t in tasks.values()]
    assert all(t.created_by == "coordinator" for t in tasks.values()), [t.created_by for t in tasks.values()]
    done_at = wait_for("all tasks completed", lambda: all(
        t.status.value == "completed" for t in stand.tasks().values()) and time.monotonic(), 120)
    busy_requests = len(model.main_requests())
    for w in workers:
        assert w.wait(idle_timeout + 60) == 0, (w.name, w.stdout, w.stderr)
    ended = max(w.ended for w in workers)
    assert_clean(model)

    tasks = stand.tasks()
    lines = work_lines(work)
    assert sorted(lines) == sorted(f"c{i}:{tasks[i].claimed_by}" for i in tasks), lines
    assert all(t.claimed_by == "w-b" for t in tasks.values() if t.requires == ["docs"])
    bodies = " ".join(str(r.body) for r in model.main_requests())
    assert "mavps: you are worker w-a" in bodies and "mavps: you are worker w-b" in bodies
    share = Counter(t.claimed_by for t in tasks.values())
    figure("5 coordinator session + 2 workers", tasks=n, workers=2, wall=done_at - t0,
           requests=busy_requests,
           idle_requests=len(model.main_requests()) - busy_requests, idle_seconds=2 * (ended - done_at),
           extra=f"coordinator: {coordinator_requests} requests, {coordinator.wall:.1f}s; share {dict(share)}; "
                 "worker requests include their turns before the tasks came; idle = both workers after")
