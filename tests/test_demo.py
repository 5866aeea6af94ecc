"""`mavps demo` runs for real in the suite: worker processes, a board, the check."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mavps import demo as demo_mod
from mavps.cli import cli

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("clean_env")


def test_plan_has_dependencies_capabilities_and_a_retry() -> None:
    p = demo_mod.plan(12)
    assert any(t["after"] for t in p) and any(t["requires"] for t in p)
    assert sum(t["fail_once"] for t in p) == 1
    assert all(a < i + 1 for i, t in enumerate(p) for a in t["after"])
    assert demo_mod.plan(1)[0]["fail_once"]


@pytest.mark.timeout(90)
def test_demo_default_in_a_subprocess_like_a_user() -> None:
    """`mavps demo` with nothing configured: temporary workspace, plain progress lines, summary, exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAVPS_")}
    env["PYTHONPATH"] = str(REPO)
    env["MAVPS_CONFIG"] = os.devnull
    out = subprocess.run([sys.executable, "-m", "mavps", "demo"], capture_output=True, text=True, env=env, timeout=80)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "check passed: every task completed exactly once" in out.stdout
    assert "completed 12" in out.stdout  # the plain-text board's last line
    assert "(temporary, removed)" in out.stdout
    tmp = out.stdout.split("workspace: ")[-1].split(" (temporary")[0]
    assert not os.path.exists(tmp)


@pytest.mark.timeout(90)
def test_demo_json_summary_and_keep(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--json", "demo", "--workers", "2", "--tasks", "6", "--keep"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    assert s["check"]["ok"] and s["check"]["problems"] == []
    assert s["tasks"] == 6 and s["workers"] == 2 and s["check"]["completed_events"] == 6
    assert s["check"]["retries"] == 1 and s["check"]["failed_events"] == 1
    assert all(r["status"] == "completed" for r in s["rows"])
    assert sum(w["completed"] for w in s["per_worker"].values()) == 6
    assert set(s["exit_codes"].values()) == {0}
    assert os.path.isdir(s["workspace"])
    # the kept workspace is a normal workspace
    listed = CliRunner().invoke(cli, ["--workspace", s["workspace"], "--json", "task", "list"])
    assert len(json.loads(listed.stdout)) == 6
    shutil.rmtree(os.path.dirname(s["workspace"]))


@pytest.mark.sftp
@pytest.mark.timeout(120)
def test_demo_over_sftp(sshd, tmp_path: Path) -> None:
    url = sshd.url(str(tmp_path / "demo-ws"))
    result = CliRunner().invoke(cli, ["--workspace", url, "--identity-file", sshd.client_key, "--known-hosts",
                                      sshd.known_hosts, "--json", "demo", "--workers", "3", "--tasks", "8"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    assert s["check"]["ok"], s
    assert s["workspace"].startswith("sftp://")
    assert json.loads((tmp_path / "demo-ws" / "task-queue.json").read_text())[0]["status"] == "completed"


@pytest.mark.timeout(60)
def test_demo_refuses_a_workspace_with_tasks(tmp_path: Path) -> None:
    ws = str(tmp_path / "real")
    CliRunner().invoke(cli, ["--workspace", ws, "init"])
    CliRunner().invoke(cli, ["--workspace", ws, "task", "add", "real work"])
    result = CliRunner().invoke(cli, ["--workspace", ws, "demo"])
    assert result.exit_code == 1 and "already has tasks" in result.stderr


def test_demo_check_catches_a_double_completion(tmp_path: Path) -> None:
    """verify() is the judge: a task completed twice in the log fails the check."""
    from mavps import Workspace

    with Workspace.open(str(tmp_path / "ws"), agent="coordinator") as ws:
        ws.init()
        t = ws.queue.add("only once")
        ws.queue.claim("w1")
        ws.queue.complete(t.id, "w1")
        ws.log.append("Completed task #1", agent="w1", event="task_completed", task_id=t.id)
        s = demo_mod.verify(ws, [t.id], {"w1": []}, {"w1": 0}, [{"fail_once": False}])
    assert not s["check"]["ok"] and "completed 2 times" in s["check"]["problems"][0]
