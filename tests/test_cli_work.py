"""The task, worker and log commands through click's CliRunner, against both transports."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import REPO, Mavps, conn_args

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def mavps(target) -> Mavps:
    m = Mavps(target)
    m("init")
    return m


def test_task_commands(mavps: Mavps) -> None:
    t1 = mavps.json("task", "add", "Write the parser", "--instructions", "Use a recursive descent parser.",
                    "--requires", "backend", "--priority", "5", "--context", "docs/grammar.md", "--max-attempts", "2")
    assert t1["id"] == 1 and t1["status"] == "pending" and t1["requires"] == ["backend"]
    assert t1["priority"] == 5 and t1["max_attempts"] == 2 and t1["context_files"] == ["docs/grammar.md"]
    src = Path("instr.md")
    src.write_text("Instructions from a local file.\n")
    t2 = mavps.json("task", "add", "Document it", "--instructions-file", str(src), "--depends-on", "1")
    assert t2["depends_on"] == [1]
    t3 = mavps.json("task", "add", "Templated", "--template", "task-instructions")
    shown = mavps.json("task", "show", "3")
    assert "Templated" in shown["instructions"] and shown["id"] == 3
    assert mavps.json("task", "show", "2")["instructions"] == "Instructions from a local file.\n"
    listed = mavps.json("task", "list")
    assert [t["id"] for t in listed] == [1, 2, 3]
    assert {"id", "description", "status", "claimed_by", "depends_on", "requires"} <= set(listed[0])
    assert mavps.json("task", "list", "--status", "completed") == []
    assert [t["id"] for t in mavps.json("ready")] == [1, 3]  # any capabilities; 2 waits for 1
    assert [t["id"] for t in mavps.json("ready", "--capability", "docs")] == [3]
    cancelled = mavps.json("task", "cancel", str(t3["id"]))
    assert cancelled["status"] == "cancelled"
    assert mavps.json("task", "requeue", "3")["status"] == "pending"
    human = mavps("task", "list").stdout
    assert "Write the parser" in human and "pending" in human


def test_claim_complete_fail_release(mavps: Mavps) -> None:
    mavps.json("task", "add", "Needs python", "--instructions", "Step one, step two.", "--requires", "python")
    # nothing claimable for a worker without the capability: exit 3, JSON null
    result = mavps("--json", "claim", "--worker", "w1", code=3)
    assert json.loads(result.stdout) is None
    result = mavps("claim", "--worker", "w1", code=3)
    assert result.stdout == "" and "nothing claimable" in result.stderr
    t = mavps.json("claim", "--worker", "w1", "--capability", "python")
    assert t["id"] == 1 and t["status"] == "in_progress" and t["claimed_by"] == "w1"
    assert t["instructions"] == "Step one, step two."
    beat = mavps.json("worker", "heartbeat", "w1")
    assert beat["id"] == "w1" and beat["held_tasks"] == [1]
    # someone else cannot finish it
    err = mavps("complete", "1", "--worker", "w2", code=1)
    assert err.stderr.startswith("mavps: ") and "Traceback" not in err.output
    failed = mavps.json("fail", "1", "--worker", "w1", "--error", "flaky test")
    assert failed["status"] == "pending" and failed["error"] == "flaky test"
    again = mavps.json("claim", "--worker", "w1", "--capability", "python")
    assert again["attempts"] == 2
    released = mavps.json("release", "1", "--worker", "w1")
    assert released["status"] == "pending" and released["attempts"] == 1
    human = mavps("claim", "--worker", "w1").stdout
    assert "Step one, step two." in human
    assert "complete 1 --worker w1 --result" in human and "fail 1 --worker w1 --error" in human
    assert "--workspace" in human  # the workspace came from the command line: repeated in the hints
    done = mavps.json("complete", "1", "--worker", "w1", "--result", "all green")
    assert done["status"] == "completed" and done["result"] == "all green"


def test_worker_from_environment(mavps: Mavps) -> None:
    mavps.json("task", "add", "anything")
    t = mavps.json("claim", env={"MAVPS_WORKER_ID": "env-worker"})
    assert t["claimed_by"] == "env-worker"
    result = mavps("complete", "1", code=1)
    assert "needs a worker id" in result.stderr and "MAVPS_WORKER_ID" in result.stderr
    assert mavps.json("--worker", "env-worker", "complete", "1")["status"] == "completed"


def test_worker_commands(mavps: Mavps) -> None:
    w = mavps.json("worker", "register", "w1", "--capability", "python", "--capability", "docs")
    assert w["id"] == "w1" and w["capabilities"] == ["python", "docs"]
    listed = mavps.json("worker", "list")
    assert listed[0]["id"] == "w1" and listed[0]["online"] is True
    assert "w1" in mavps("worker", "list").stdout
    mavps.json("task", "add", "x")
    mavps.json("claim", "--worker", "w1")
    refused = mavps("worker", "remove", "w1", code=1)
    assert "holds task" in refused.stderr
    removed = mavps.json("worker", "remove", "w1", "--force")
    assert removed["id"] == "w1"
    assert mavps.json("task", "show", "1")["status"] == "pending"


def test_log_and_status(mavps: Mavps) -> None:
    rec = mavps.json("log", "API schema is in docs/api.md", "--agent", "coordinator")
    assert rec["agent"] == "coordinator" and rec["message"] == "API schema is in docs/api.md"
    mavps.json("task", "add", "x")
    mavps.json("claim", "--worker", "w1")
    mavps.json("log", "working on it", "--agent", "w1", "--task", "1")
    tail = mavps.json("log", "--tail", "2")
    assert [r["message"] for r in tail][-1] == "working on it"
    assert all(r["agent"] == "w1" for r in mavps.json("log", "--agent", "w1"))
    assert {r["event"] for r in mavps.json("log", "--task", "1", "--tail", "50")} >= {"task_claimed", "message"}
    assert "working on it" in mavps("log").stdout
    board = mavps.json("status")
    assert {"counts", "in_progress", "workers", "recent", "ready", "failed", "workspace"} <= set(board)
    assert board["counts"]["in_progress"] == 1 and board["in_progress"][0]["claimed_by"] == "w1"
    assert board["in_progress"][0]["lease_left"] > 0
    human = mavps("status").stdout
    assert "in_progress 1" in human and "w1" in human
    watched = mavps("status", "--watch", "--interval", "0.1", "--max-seconds", "0.5")
    assert "in_progress 1" in watched.stdout

def test_log_follow_streams(target) -> None:
    """Records appended while `log --follow` runs come out as they arrive, one JSON document per line."""
    Mavps(target)("init")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "mavps", *conn_args(target), "--json", "log", "--follow",
                             "--tail", "0", "--interval", "0.1", "--max-seconds", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        with target.open("coordinator") as ws:
            while proc.poll() is None:  # until the follower stops: its start-up time varies with the load
                ws.log.append("hello followers")
                time.sleep(0.2)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines and all(r["message"] == "hello followers" for r in lines)
