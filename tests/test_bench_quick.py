"""Round-trip waits per operation must not regress (counts, not wall-clock).

Runs every operation once against the real sshd (no added latency: a count of
round-trip waits does not depend on the link) and checks it against the
budget in tests/benchmarks/bench.py. The full benchmark with wall times is
`python tests/benchmarks/bench.py [--quick]`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench import (BUDGET, CLI_BUDGET, EXCHANGE_FILES, exchange_ops, exchange_setup, hook_ops, message_ops,
                              write_state)

pytestmark = [pytest.mark.bench, pytest.mark.sftp]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sftp_ws(sshd, tmp_path):
    from conftest import sftp_settings
    from mavps import Workspace

    path = tmp_path / "ws"
    write_state(path, finished=250, pending=10, instructions=True)  # recent history, as archiving leaves it
    ws = Workspace.open(sshd.url(str(path)), agent="bench", **sftp_settings(sshd))
    yield ws
    ws.close()


def waits(ws, fn):
    before = ws.transport.round_trips
    result = fn()
    return ws.transport.round_trips - before, result


def test_round_trips_per_operation(sftp_ws, tmp_path):
    ws, q = sftp_ws, sftp_ws.queue
    seen = {}
    seen["add"], _ = waits(ws, lambda: q.add("bench task", "# do it\n"))
    seen["claim"], task = waits(ws, lambda: q.claim("w1"))
    assert task is not None
    seen["heartbeat"], _ = waits(ws, lambda: q.heartbeat("w1"))
    seen["complete"], _ = waits(ws, lambda: q.complete(task.id, "w1", result="ok"))
    seen["log append"], _ = waits(ws, lambda: ws.log.append("note"))
    seen["status (board)"], _ = waits(ws, ws.board)
    seen["ready"], _ = waits(ws, q.ready)
    hooks = hook_ops(tmp_path)
    if hooks is not None:
        seen["hook decision"], _ = waits(ws, lambda: hooks["hook decision"](ws, 0))
        q.add("work for the hook", "# do it\n")
        name = "Stop hook, whole (work ready, connected)"
        seen[name], answer = waits(ws, lambda: hooks[name](ws, 0))
        assert answer.outcome == "block" and answer.task_id is not None
    ops: dict = {}
    message_ops(ws, 0, lambda name, fn: ops.setdefault(name, waits(ws, fn)))
    seen.update({name: n for name, (n, _) in ops.items()})
    over = {op: (n, BUDGET[op]) for op, n in seen.items() if n > BUDGET[op]}
    assert not over, f"round-trip waits over budget (got, budget): {over}"


def test_exchange_round_trips(sshd, tmp_path):
    """Pulling, and pushing back, 100 files of 10 KB each: at most 6 round-trip waits (pipelined)."""
    from conftest import sftp_settings
    from mavps import Workspace

    path = tmp_path / "ex"
    with Workspace.open(sshd.url(str(path)), agent="bench", **sftp_settings(sshd)) as ws:
        ws.init()
        tid = exchange_setup(ws, path)
        ops = exchange_ops(ws, tid, tmp_path / "pulled", 1)
        seen = {}
        name = "pull (100 files of 10 KB)"
        seen[name], got = waits(ws, ops[name])
        assert len(got["files"]) == EXCHANGE_FILES
        ops["edit"]()
        name = "push (100 files of 10 KB)"
        seen[name], done = waits(ws, ops[name])
        assert len(done["written"]) == EXCHANGE_FILES
    over = {op: (n, BUDGET[op]) for op, n in seen.items() if n > BUDGET[op]}
    assert not over and seen, f"round-trip waits over budget (got, budget): {over or seen}"


def test_claim_waits_do_not_grow_with_history(sshd, tmp_path):
    from conftest import sftp_settings
    from mavps import Workspace

    counts = []
    for finished in (0, 5000):
        path = tmp_path / f"h{finished}"
        write_state(path, finished=finished, pending=3)
        with Workspace.open(sshd.url(str(path)), agent="bench", **sftp_settings(sshd)) as ws:
            n, task = waits(ws, lambda: ws.queue.claim("w1"))
            assert task is not None
            counts.append(n)
    assert counts[0] == counts[1] <= BUDGET["claim"]


def test_import_mavps_is_light():
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import mavps"], capture_output=True, text=True,
                         cwd=str(ROOT), check=True)
    for heavy in ("paramiko", "rich"):
        assert f" {heavy}\n" not in out.stderr and f" {heavy}." not in out.stderr, f"`import mavps` loads {heavy}"


# ----- the CLI: every command, as a person or an agent runs it -------------------------------
@pytest.fixture
def cli_waits(sshd, tmp_path, monkeypatch):
    """Run a CLI command (in process, through click) against the real sshd; the round-trip waits of every
    connection it opened, after the SSH and SFTP handshakes."""
    from click.testing import CliRunner
    from conftest import sftp_settings

    import mavps.workspace
    from mavps.cli import cli

    path = tmp_path / "ws"
    write_state(path, finished=250, pending=0)
    for key in [k for k in os.environ if k.startswith("MAVPS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("MAVPS_CONFIG", os.devnull)
    monkeypatch.setenv("MAVPS_WORKSPACE", sshd.url(str(path)))
    for key, value in sftp_settings(sshd).items():
        monkeypatch.setenv(f"MAVPS_{key.upper()}", value)
    monkeypatch.setenv("MAVPS_HOOK_STATE", str(tmp_path / "hook-state.json"))
    monkeypatch.setenv("MAVPS_HOOK_WAIT", "0")
    opened = []
    real = mavps.workspace.open_transport

    def counting(*a, **kw):
        opened.append(real(*a, **kw))
        return opened[-1]

    monkeypatch.setattr(mavps.workspace, "open_transport", counting)

    def run(*args: str, input: str | None = None, code: int = 0, group=cli) -> tuple[int, str]:
        opened.clear()
        result = CliRunner().invoke(group, list(args), input=input, catch_exceptions=False)
        assert result.exit_code == code, (result.stdout, result.stderr)
        return sum(t.round_trips for t in opened), result.stdout
    return run


def test_cli_round_trips_per_command(cli_waits):
    from mavps.hookcli import hook

    seen = {}
    seen["add"], out = cli_waits("--json", "task", "add", "cli task", "--instructions", "# do it\n")
    seen["claim"], out = cli_waits("--json", "claim", "--worker", "w1")
    task = json.loads(out)
    assert task["instructions"] == "# do it\n" and task["instructions_error"] is None
    seen["heartbeat"], out = cli_waits("--json", "worker", "heartbeat", "w1")
    assert json.loads(out)["held_tasks"] == [task["id"]]
    seen["complete"], _ = cli_waits("--json", "complete", str(task["id"]), "--worker", "w1", "--result", "ok")
    seen["status (board)"], _ = cli_waits("--json", "status")
    seen["ready"], _ = cli_waits("--json", "ready")
    cli_waits("task", "add", "work for the hook", "--instructions", "# do it\n")
    stop = json.dumps({"session_id": "s1", "stop_hook_active": False, "hook_event_name": "Stop"})
    os.environ["MAVPS_WORKER_ID"] = "w2"
    try:
        seen["Stop hook, whole (work ready, connected)"], out = cli_waits("stop", input=stop, group=hook)
    finally:
        del os.environ["MAVPS_WORKER_ID"]
    assert json.loads(out)["decision"] == "block"
    over = {op: (n, CLI_BUDGET[op]) for op, n in seen.items() if n > CLI_BUDGET[op]}
    assert not over, f"CLI round-trip waits over budget (got, budget): {over} (all: {seen})"
