"""The Claude Code hooks, run as Claude Code runs them: a subprocess fed the
protocol's JSON on stdin, against a local workspace and over the real sshd."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mavps import Config, TaskStatus
from mavps.hook import HookOptions, session_start_hook, stop_hook
from support.silent import silent_server

ROOT = Path(__file__).resolve().parents[1]
WORKER = "w1"


def stop_input(session: str = "sess-1", active: bool = False) -> dict:
    """A Stop hook's stdin as Claude Code 2.1 sends it (fields seen on the wire)."""
    return {
        "session_id": session,
        "transcript_path": f"/tmp/{session}.jsonl",
        "cwd": "/tmp/project",
        "prompt_id": "p-1",
        "permission_mode": "default",
        "effort": "medium",
        "hook_event_name": "Stop",
        "stop_hook_active": active,
        "last_assistant_message": "I am done.",
        "background_tasks": [],
        "session_crons": [],
        "a_field_from_a_future_release": {"x": 1},
    }


def start_input(session: str = "sess-1") -> dict:
    return {"session_id": session, "transcript_path": f"/tmp/{session}.jsonl", "cwd": "/tmp/project",
            "hook_event_name": "SessionStart", "source": "startup"}


def hook_env(target, tmp_path: Path, **settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAVPS_", "CLAUDE"))}
    env.update({"PYTHONPATH": str(ROOT), "MAVPS_CONFIG": os.devnull, "MAVPS_HOOK_STATE": str(tmp_path / "state.json"),
                "MAVPS_WORKER_ID": WORKER, "MAVPS_HOOK_POLL_MAX": "0.3"})
    if target is not None:
        env["MAVPS_WORKSPACE"] = target.url
        for key, value in target.settings.items():
            env[f"MAVPS_{key.upper()}"] = value
    for key, value in settings.items():
        if value is None:
            env.pop(f"MAVPS_{key.upper()}", None)
        else:
            env[f"MAVPS_{key.upper()}"] = str(value)
    return env


def run_hook(env: dict, payload, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return subprocess.run([sys.executable, "-m", "mavps.hookcli", *args], input=data, capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=env.get("HOME_DIR", None))


def block_reason(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["decision"] == "block", answer
    return answer["reason"]


def assert_lets_stop(proc: subprocess.CompletedProcess, failure: bool = False) -> None:
    """Exit 0 and no block; a failure is shown to the user as the answer's only field, systemMessage."""
    assert proc.returncode == 0, proc.stderr
    if failure:
        answer = json.loads(proc.stdout)
        assert list(answer) == ["systemMessage"] and answer["systemMessage"].strip(), proc.stdout
    else:
        assert proc.stdout == "", proc.stdout
    assert "Traceback" not in proc.stderr


def run_lines(reason: str) -> list[str]:
    return re.findall(r"^RUN: (.+)$", reason, re.MULTILINE)


def log_events(target) -> list[dict]:
    return [json.loads(line) for line in (target.path / "agent-comms.jsonl").read_text().splitlines()]


# ----- the branches ------------------------------------------------------------------
def test_hands_over_a_claimed_task_with_everything_needed(ws, target, tmp_path):
    ws.queue.add("Create the user model", "## Steps\nWrite src/user.py\nRUN: touch user.py\nRUN: echo ok\n",
                 context_files=["docs/schema.md"])
    proc = run_hook(hook_env(target, tmp_path), stop_input(), "stop")
    reason = block_reason(proc)
    assert "task #1" in reason and "Create the user model" in reason
    assert "Write src/user.py" in reason and "docs/schema.md" in reason
    assert "no other context" in reason
    assert run_lines(reason) == ["touch user.py", "echo ok", 'mavps complete 1 --worker w1 --result "done"']
    assert "mavps fail 1 --worker w1 --error" in reason
    task = ws.queue.get(1)
    assert task.status is TaskStatus.IN_PROGRESS and task.claimed_by == WORKER
    assert "handed task #1" in proc.stderr


def test_held_task_is_named_with_how_to_finish(ws, target, tmp_path):
    ws.queue.add("Write docs", "x")
    ws.queue.claim(WORKER)
    reason = block_reason(run_hook(hook_env(target, tmp_path), stop_input(active=True), "stop"))
    assert "still hold task #1: Write docs" in reason
    assert run_lines(reason) == ['mavps complete 1 --worker w1 --result "done"']
    assert "mavps fail 1 --worker w1" in reason


def test_chains_tasks_then_waits_then_idles_out(ws, target, tmp_path):
    ws.queue.add("first", "one")
    ws.queue.add("second", "two", requires=["gpu"])
    env = hook_env(target, tmp_path, hook_wait=0, idle_timeout=3600)
    assert "Task #1: first" in block_reason(run_hook(env, stop_input(), "stop"))
    ws.queue.complete(1, WORKER, "done")
    # task 2 needs a capability w1 lacks: nothing for it
    reason = block_reason(run_hook(env, stop_input(active=True), "stop"))
    assert reason.startswith("mavps: no task for worker w1 yet") and not run_lines(reason)
    env_gpu = dict(env, MAVPS_CAPABILITIES="gpu")
    assert "Task #2: second" in block_reason(run_hook(env_gpu, stop_input(active=True), "stop"))


def test_not_a_worker_is_never_blocked(ws, target, tmp_path):
    ws.queue.add("t", "x")
    proc = run_hook(hook_env(target, tmp_path, worker_id=None), stop_input(), "stop")
    assert_lets_stop(proc)
    assert ws.queue.get(1).status is TaskStatus.PENDING


def test_long_poll_hands_over_a_task_added_while_waiting(ws, target, tmp_path):
    env = hook_env(target, tmp_path, hook_wait=60, idle_timeout=3600)
    stdin = tmp_path / "stdin.json"
    stdin.write_text(json.dumps(stop_input()))
    with open(stdin) as fh:
        proc = subprocess.Popen([sys.executable, "-m", "mavps.hookcli", "stop"], stdin=fh,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(2.0)
        assert proc.poll() is None, "the hook should be waiting for work"
        added = time.monotonic()
        ws.queue.add("appeared later", "do it\nRUN: true\n")
        out, err = proc.communicate(timeout=30)
        handed = time.monotonic() - added
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    answer = json.loads(out)
    assert answer["decision"] == "block" and "Task #1: appeared later" in answer["reason"], err
    assert handed < 20, f"handed over after {handed:.1f}s (poll interval is 0.3s)"
    assert ws.queue.get(1).claimed_by == WORKER


def test_idle_timeout_lets_the_worker_stop_and_marks_it_offline(ws, target, tmp_path):
    env = hook_env(target, tmp_path, hook_wait=0, idle_timeout=2)
    reason = block_reason(run_hook(env, stop_input(), "stop"))
    assert "stop" in reason or "end your turn" in reason
    time.sleep(2.2)
    proc = run_hook(env, stop_input(active=True), "stop")
    assert_lets_stop(proc)
    assert "no work for" in proc.stderr
    assert ws.workers.get(WORKER).worker.status == "offline"
    assert log_events(target)[-1]["event"] == "worker_offline"


def test_waits_inside_the_hook_until_idle_timeout(ws, target, tmp_path):
    """With hook_wait longer than the idle time left, the hook waits it out and lets go in one call."""
    env = hook_env(target, tmp_path, hook_wait=30, idle_timeout=2)
    started = time.monotonic()
    assert_lets_stop(run_hook(env, stop_input(), "stop"))
    proc_time = time.monotonic() - started
    assert proc_time > 1.0, "the hook let go before the worker had been idle for idle_timeout (2 s)"


def test_runaway_guard_with_no_work(ws, target, tmp_path):
    env = dict(hook_env(target, tmp_path, hook_wait=0, idle_timeout=3600), MAVPS_HOOK_MAX_BLOCKS="2")
    for _ in range(2):
        block_reason(run_hook(env, stop_input(active=True), "stop"))
    proc = run_hook(env, stop_input(active=True), "stop")
    assert_lets_stop(proc)
    assert "runaway guard" in proc.stderr
    assert log_events(target)[-1]["event"] == "hook_runaway"
    # another session of the same worker starts afresh
    block_reason(run_hook(env, stop_input(session="sess-2"), "stop"))


def test_blocks_after_a_real_wait_do_not_trip_the_guard(ws, target, tmp_path):
    """idle_timeout, not the runaway guard, ends a worker that really waited each time."""
    env = dict(hook_env(target, tmp_path, hook_wait=1.2, idle_timeout=3600), MAVPS_HOOK_MAX_BLOCKS="1")
    for _ in range(3):
        assert "no task for" in block_reason(run_hook(env, stop_input(active=True), "stop"))


def test_runaway_guard_with_a_task_never_finished(ws, target, tmp_path):
    ws.queue.add("t", "x")
    env = dict(hook_env(target, tmp_path, hook_wait=0), MAVPS_HOOK_MAX_BLOCKS="2")
    assert "just claimed task #1" in block_reason(run_hook(env, stop_input(), "stop"))
    for _ in range(2):
        assert "still hold task #1" in block_reason(run_hook(env, stop_input(active=True), "stop"))
    proc = run_hook(env, stop_input(active=True), "stop")
    assert_lets_stop(proc)
    assert "runaway guard" in proc.stderr


def test_progress_resets_the_runaway_count(ws, target, tmp_path):
    env = dict(hook_env(target, tmp_path, hook_wait=0, idle_timeout=3600), MAVPS_HOOK_MAX_BLOCKS="2")
    for i in range(3):
        ws.queue.add(f"t{i}", "x")
    for i in range(3):
        reason = block_reason(run_hook(env, stop_input(active=True), "stop"))
        assert f"Task #{i + 1}:" in reason
        block_reason(run_hook(env, stop_input(active=True), "stop"))  # reminded once
        ws.queue.complete(i + 1, WORKER, "ok")


# ----- fail safe -------------------------------------------------------------------------
def test_invalid_stdin_is_an_error_not_a_block(tmp_path):
    env = hook_env(None, tmp_path, workspace=str(tmp_path / "ws"))
    for bad in ("not json", "[1, 2]", '{"session_id": '):
        proc = run_hook(env, bad, "stop")
        assert_lets_stop(proc, failure=True)
        assert "mavps hook stop: stdin" in proc.stderr


def test_config_error_lets_the_agent_stop(tmp_path):
    env = hook_env(None, tmp_path, workspace=str(tmp_path / "ws"), lock_ttl="soon")
    proc = run_hook(env, stop_input(), "stop")
    assert_lets_stop(proc, failure=True)
    assert "lock_ttl" in proc.stderr and "MAVPS_LOCK_TTL" in proc.stderr


def test_missing_workspace_lets_the_agent_stop(tmp_path):
    env = hook_env(None, tmp_path, workspace=str(tmp_path / "nowhere"))
    proc = run_hook(env, stop_input(), "stop")
    assert_lets_stop(proc, failure=True)
    assert "letting w1 stop" in proc.stderr


def _unreachable_env(tmp_path: Path, port: int) -> dict:
    env = hook_env(None, tmp_path, workspace=f"sftp://nobody@127.0.0.1:{port}/srv/ws", connect_timeout=2,
                   known_hosts=os.devnull, ssh_config=os.devnull)
    return env


@pytest.mark.timeout(60)
def test_unreachable_port_answers_quickly(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens
    started = time.monotonic()
    proc = run_hook(_unreachable_env(tmp_path, port), stop_input(), "stop", timeout=30)
    assert_lets_stop(proc, failure=True)
    assert time.monotonic() - started < 15
    assert "cannot" in proc.stderr and "letting w1 stop" in proc.stderr


@pytest.mark.timeout(60)
def test_silent_server_answers_within_its_bound(tmp_path):
    """A socket that accepts and never speaks: the hook gives up after connect_timeout."""
    with silent_server() as port:
        started = time.monotonic()
        proc = run_hook(_unreachable_env(tmp_path, port), stop_input(), "stop", timeout=40)
        took = time.monotonic() - started
        start_proc = run_hook(_unreachable_env(tmp_path, port), start_input(), "session-start", "--role", "worker",
                              timeout=40)
    assert_lets_stop(proc, failure=True)
    assert took < 20, f"took {took:.1f}s with connect_timeout 2"
    assert "letting w1 stop" in proc.stderr
    assert start_proc.returncode == 0 and "Traceback" not in start_proc.stderr
    context = json.loads(start_proc.stdout)["hookSpecificOutput"]["additionalContext"]
    assert "could not be reached" in context


def test_hard_deadline_backstop(tmp_path):
    """A hook stuck past its hard limit still answers: nothing on stdout, exit 0."""
    code = ("import sys, time, mavps.hooks.options as options, mavps.hooks.stop as stop\n"
            "options.hard_limit = lambda cfg, event='Stop': 1.0\n"
            "stop.stop_hook = lambda data, cfg, opts=None: time.sleep(30)\n"
            "from mavps.hookcli import main\n"
            "main(['stop'])\n")
    env = hook_env(None, tmp_path, workspace=str(tmp_path / "ws"))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(stop_input()), capture_output=True,
                          text=True, env=env, timeout=30)
    assert_lets_stop(proc, failure=True)
    assert time.monotonic() - started < 10
    assert "ran out of time" in proc.stderr


# ----- SessionStart -------------------------------------------------------------------------
def test_session_start_registers_the_worker(ws, target, tmp_path):
    env = hook_env(target, tmp_path, capabilities="backend,db")
    proc = run_hook(env, start_input(), "session-start", "--role", "worker")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)["hookSpecificOutput"]
    assert out["hookEventName"] == "SessionStart"
    ctx = out["additionalContext"]
    assert "you are worker w1" in ctx and "mavps complete ID --worker w1" in ctx and "no memory" in ctx
    w = ws.workers.get(WORKER)
    assert w.online and w.worker.capabilities == ["backend", "db"]


def test_session_start_for_the_coordinator_shows_the_board(ws, target, tmp_path):
    ws.queue.add("a task", "x")
    env = hook_env(target, tmp_path, worker_id=None)
    proc = run_hook(env, start_input(), "session-start", "--role", "coordinator")
    ctx = json.loads(proc.stdout)["hookSpecificOutput"]["additionalContext"]
    assert "you are the coordinator" in ctx and "mavps task add" in ctx
    assert "pending 1" in ctx and "ready to claim: #1" in ctx


def test_session_start_resets_idle_time(ws, target, tmp_path):
    """A worker registered long ago is not idle-timed-out at the first Stop of a new session."""
    env = hook_env(target, tmp_path, hook_wait=0, idle_timeout=2)
    run_hook(env, start_input("old"), "session-start", "--role", "worker")
    time.sleep(2.2)
    run_hook(env, start_input("new"), "session-start", "--role", "worker")
    block_reason(run_hook(env, stop_input("new"), "stop"))
    assert_lets_stop(run_hook(env, stop_input("old"), "stop"))


# ----- the click objects and the library functions directly -------------------------------
def test_hook_group_through_clirunner(ws, target, tmp_path, monkeypatch):
    from mavps.hookcli import hook

    for key, value in hook_env(target, tmp_path, hook_wait=0).items():
        if key.startswith("MAVPS_"):
            monkeypatch.setenv(key, value)
    ws.queue.add("via click", "x")
    result = CliRunner().invoke(hook, ["stop"], input=json.dumps(stop_input()))
    assert result.exit_code == 0
    assert "Task #1: via click" in json.loads(result.stdout)["reason"]
    result = CliRunner().invoke(hook, ["stop"], input="{oops")
    assert result.exit_code == 0 and "not valid JSON" in json.loads(result.stdout)["systemMessage"]


def test_library_functions(ws, target, tmp_path):
    cfg = Config().with_values({"workspace": target.url, "worker_id": WORKER, "hook_wait": 0,
                                **target.settings}, "test")
    opts = HookOptions(state_path=str(tmp_path / "st.json"))
    start = session_start_hook(start_input(), cfg, "worker", opts)
    assert start.outcome == "context" and start.stdout().startswith('{"hookSpecificOutput"')
    answer = stop_hook(stop_input(), cfg, opts)
    assert answer.block and answer.outcome == "block" and "no task for worker" in answer.reason
    ws.queue.add("lib", "x")
    answer = stop_hook(stop_input(), cfg, opts)
    assert answer.task_id == 1 and json.loads(answer.stdout())["decision"] == "block"
    assert stop_hook(stop_input(), Config(), opts).stdout() == ""


# ----- the waiting loop, with an injected clock and sleep (no real sleeping) -------------------------
class FakeTime:
    """A monotonic clock that only the injected sleep moves; `on_sleep[n]` runs at the n-th sleep."""

    def __init__(self, on_sleep: dict | None = None) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep or {}

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        action = self.on_sleep.get(len(self.sleeps))
        if action is not None:
            action()


def _hook_config(target, **values) -> Config:
    return Config().with_values({"workspace": target.url, "worker_id": WORKER, **target.settings,
                                 **{k: str(v) for k, v in values.items()}}, "test")


def test_wait_loop_backs_off_and_hands_over_a_task_added_while_waiting(ws, target, tmp_path):
    fake = FakeTime({4: lambda: ws.queue.add("came later", "x")})
    opts = HookOptions(state_path=str(tmp_path / "st.json"), poll_start=0.5, poll_max=2.0,
                       sleep=fake.sleep, monotonic=fake.monotonic)
    answer = stop_hook(stop_input(), _hook_config(target, hook_wait=60, idle_timeout=3600), opts)
    assert answer.outcome == "block" and answer.task_id == 1, answer
    assert "Task #1: came later" in answer.reason
    assert fake.sleeps == [0.5, 0.75, 1.125, 1.6875]  # grows by half each time; the look after the 4th sees it
    assert ws.queue.get(1).claimed_by == WORKER


def test_wait_loop_waits_hook_wait_and_renews_the_heartbeat(ws, target, tmp_path, monkeypatch):
    fake = FakeTime()
    opts = HookOptions(state_path=str(tmp_path / "st.json"), poll_start=0.5, poll_max=5.0, heartbeat_every=20,
                       sleep=fake.sleep, monotonic=fake.monotonic)
    transactions = []
    real = type(ws.queue).next_task
    monkeypatch.setattr(type(ws.queue), "next_task",
                        lambda self, *a, **kw: transactions.append(kw.get("claim", True)) or real(self, *a, **kw))
    answer = stop_hook(stop_input(), _hook_config(target, hook_wait=60, idle_timeout=3600), opts)
    assert answer.outcome == "block" and answer.task_id is None
    assert answer.reason.startswith("mavps: no task for worker w1 yet (waited 60s")
    assert sum(fake.sleeps) == pytest.approx(60) and max(fake.sleeps) == 5.0
    assert transactions[0] is True and transactions[1:] == [False, False]  # the claim, then a heartbeat per 20 s


def _proxy_config(sshd, proxy, path: Path, tmp_path: Path, **values) -> Config:
    key_type, key_b64 = sshd.host_pub.split()[:2]
    known = tmp_path / "proxy_known_hosts"
    known.write_text(f"[127.0.0.1]:{proxy.port} {key_type} {key_b64}\n")
    return Config().with_values({"workspace": f"sftp://{sshd.user}@127.0.0.1:{proxy.port}{path}",
                                 "worker_id": WORKER, "identity_file": sshd.client_key, "known_hosts": str(known),
                                 "ssh_config": os.devnull, **{k: str(v) for k, v in values.items()}}, "test")


@pytest.mark.sftp
@pytest.mark.timeout(120)
def test_a_dropped_connection_while_waiting_is_reopened(sshd, tmp_path):
    """The connection drops while the hook waits for work: it reconnects and still hands the task over."""
    from mavps import Workspace
    from support.proxy import LatencyProxy

    path = tmp_path / "ws"
    with Workspace.open(str(path)) as direct, LatencyProxy("127.0.0.1", sshd.port) as proxy:
        direct.init()
        fake = FakeTime({2: proxy.cut_all, 4: lambda: direct.queue.add("after the drop", "x")})
        opts = HookOptions(state_path=str(tmp_path / "st.json"), sleep=fake.sleep, monotonic=fake.monotonic)
        cfg = _proxy_config(sshd, proxy, path, tmp_path, hook_wait=60, idle_timeout=3600, reply_timeout=5)
        answer = stop_hook(stop_input(), cfg, opts)
        assert proxy.cuts >= 1 and proxy.connections_total == 2
        assert answer.outcome == "block" and answer.task_id == 1, answer.message
        assert direct.queue.get(1).claimed_by == WORKER
