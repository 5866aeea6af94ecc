"""The workers' PreToolUse path guard: an edit outside the held task's touches is denied (or warned of),
judged from a local record with no network; `..`, links and paths outside are refused; the JSON is exact."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mavps import Config
from mavps.cli import cli
from mavps.hook import HookOptions, stop_hook
from mavps.hooks import pre_tool_use as g

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    proj = tmp_path / "proj"
    (proj / "src" / "auth").mkdir(parents=True)
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(proj))
    return proj


def hold(project: Path, touches: list[str], root: str | None = None, task_id: int = 7) -> None:
    g.write_held(str(project), task_id, touches, "w1", "sftp://vps/ws", root)


def event(path: str, tool: str = "Write", cwd: str | None = None) -> dict:
    key = "notebook_path" if tool == "NotebookEdit" else "file_path"
    return {"session_id": "s", "hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": {key: path},
            "cwd": cwd or os.environ["CLAUDE_PROJECT_DIR"]}


def answer(path: str, mode: str = "deny", **kw) -> str:
    return g.guard(event(path, **kw), Config().with_values({"path_guard": mode}, "test")).stdout()


def denied(out: str) -> str:
    """The reason of a deny, after checking the answer is exactly Claude Code's deny shape."""
    data = json.loads(out)
    assert list(data) == ["hookSpecificOutput"]
    spec = data["hookSpecificOutput"]
    assert list(spec) == ["hookEventName", "permissionDecision", "permissionDecisionReason"]
    assert spec["hookEventName"] == "PreToolUse" and spec["permissionDecision"] == "deny"
    return spec["permissionDecisionReason"]


def test_no_held_task_or_no_touches_allows_silently(project):
    assert answer(str(project / "anything.py")) == ""
    hold(project, [])
    assert answer(str(project / "anything.py")) == "" and not (project / ".mavps" / "held.json").exists()


def test_inside_the_touches_is_allowed_outside_is_denied_with_the_reason(project):
    hold(project, ["src/auth/**", "docs/api.md"])
    assert answer(str(project / "src" / "auth" / "login.py")) == ""
    assert answer("src/auth/new/deep.py") == ""  # relative to the session's cwd
    assert answer(str(project / "docs" / "api.md"), tool="Edit") == ""
    why = denied(answer(str(project / "src" / "main.py")))
    assert "src/main.py" in why and "#7" in why and "src/auth/**, docs/api.md" in why
    assert "mavps task edit 7 --touches" in why and "mavps send" in why
    assert denied(answer(str(project / "x.ipynb"), tool="NotebookEdit"))
    assert denied(answer(str(project / "src" / "main.py"), tool="MultiEdit"))
    assert answer(str(project / "src" / "main.py"), tool="Bash") == ""  # not an edit tool


def test_paths_map_to_the_workspace_root_or_the_project(project, tmp_path):
    ws_root = tmp_path / "ws"
    (ws_root / "src").mkdir(parents=True)
    hold(project, ["src/**"], root=str(ws_root))
    assert answer(str(ws_root / "src" / "a.py")) == ""  # local transport: the workspace itself
    assert answer(str(project / "src" / "a.py")) == ""  # a pulled copy in the project
    assert "outside the workspace and the project" in denied(answer(str(tmp_path / "elsewhere" / "src" / "a.py")))
    assert "outside" in denied(answer("/etc/passwd"))


def test_dotdot_and_links_are_denied(project, tmp_path):
    hold(project, ["src/**"])
    outside = tmp_path / "outside"
    outside.mkdir()
    assert "'..'" in denied(answer(str(project / "src" / ".." / "src" / "a.py")))
    assert "'..'" in denied(answer("src/../../proj/src/a.py"))
    (project / "src" / "linkdir").symlink_to(outside)
    assert "symbolic link" in denied(answer(str(project / "src" / "linkdir" / "a.py")))
    (project / "src" / "linkfile.py").symlink_to(outside / "f.py")
    assert "symbolic link" in denied(answer(str(project / "src" / "linkfile.py")))


def test_warn_allows_with_a_note_and_off_says_nothing(project):
    hold(project, ["src/**"])
    warned = json.loads(answer(str(project / "README.md"), mode="warn"))
    assert "permissionDecision" not in warned["hookSpecificOutput"]
    assert "warn only" in warned["systemMessage"] and warned["hookSpecificOutput"]["additionalContext"]
    assert answer(str(project / "README.md"), mode="off") == ""


def test_a_planted_or_foreign_record_is_ignored(project, tmp_path):
    (project / ".mavps").mkdir()
    (project / ".mavps" / "held.json").write_text("[1, 2]")
    assert answer(str(project / "x.py")) == ""
    (project / ".mavps" / "held.json").unlink()
    (project / ".mavps").rmdir()
    elsewhere = tmp_path / "planted"
    elsewhere.mkdir()
    (elsewhere / "held.json").write_text(json.dumps({"task_id": 1, "touches": ["nothing/**"]}))
    (project / ".mavps").symlink_to(elsewhere)
    assert answer(str(project / "x.py")) == ""  # read through no link
    with pytest.raises(OSError):
        hold(project, ["src/**"])  # and never written through one


def test_the_hook_command_prints_exactly_the_deny_and_exits_0(project):
    hold(project, ["src/**"])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLAUDE_PROJECT_DIR": str(project), "MAVPS_CONFIG": os.devnull}
    for cmd in ([sys.executable, "-m", "mavps", "hook", "pre-tool-use"], [sys.executable, "hooks/pre_tool_use.py"]):
        run = subprocess.run(cmd, input=json.dumps(event(str(project / "other.py"))), capture_output=True,
                             text=True, env=env, cwd=ROOT, timeout=60)
        assert run.returncode == 0 and run.stderr == ""
        assert "other.py" in denied(run.stdout.strip())
        ok = subprocess.run(cmd, input=json.dumps(event(str(project / "src" / "x.py"))), capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=60)
        assert ok.returncode == 0 and ok.stdout == ""
    off = subprocess.run([sys.executable, "-m", "mavps", "hook", "pre-tool-use"], capture_output=True, text=True,
                         input=json.dumps(event(str(project / "other.py"))), cwd=ROOT, timeout=60,
                         env={**env, "MAVPS_PATH_GUARD": "off"})
    assert off.returncode == 0 and off.stdout == ""


# ----- the record is written when a task is handed over, and cleared when it ends ----------------------
def conn_args(target) -> list[str]:
    args = ["--workspace", target.url]
    s = target.settings
    if s.get("identity_file"):
        args += ["--identity-file", str(s["identity_file"]), "--known-hosts", str(s["known_hosts"])]
    return args


@pytest.mark.usefixtures("clean_env")
def test_claim_records_the_held_task_and_complete_forgets_it(ws, target, tmp_path, monkeypatch):
    monkeypatch.delenv("CLAUDE_PROJECT_DIR", raising=False)
    ws.queue.add("auth", "x", touches=["src/auth/**"])
    ws.queue.add("free", "y")
    runner = CliRunner()
    assert runner.invoke(cli, [*conn_args(target), "claim", "--worker", "w1"]).exit_code == 0
    held = json.loads((tmp_path / ".mavps" / "held.json").read_text())  # clean_env: the cwd is tmp_path
    assert held["task_id"] == 1 and held["touches"] == ["src/auth/**"] and held["worker"] == "w1"
    assert held["root"] == (str(target.path) if target.kind == "local" else None)
    assert runner.invoke(cli, [*conn_args(target), "complete", "1", "--worker", "w1"]).exit_code == 0
    assert not (tmp_path / ".mavps" / "held.json").exists()


def test_the_stop_hook_hand_over_records_the_held_task(ws, target, tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.setenv("CLAUDE_PROJECT_DIR", str(proj))
    ws.queue.add("auth", "x", touches=["src/auth/**"])
    cfg = Config().with_values({"workspace": target.url, "worker_id": "w1", "hook_wait": 0, **target.settings}, "t")
    got = stop_hook({"session_id": "s", "hook_event_name": "Stop", "stop_hook_active": False}, cfg,
                    HookOptions(state_path=str(tmp_path / "st.json")))
    assert got.task_id == 1 and "an edit elsewhere is denied): src/auth/**" in got.reason
    assert g.read_held(str(proj))["touches"] == ["src/auth/**"]
    assert denied(g.guard(event(str(proj / "README.md")), cfg).stdout())
