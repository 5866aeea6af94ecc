"""`mavps install-hooks`: merges into .claude/settings.json, idempotent, explicit timeouts."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from mavps.hookcli import install_hooks
from mavps.templates import list_templates, render_task_template

ROOT = Path(__file__).resolve().parents[1]


def install(project: Path, *args: str):
    return CliRunner().invoke(install_hooks, ["--project", str(project), *args])


def settings(project: Path, name: str = "settings.json") -> dict:
    return json.loads((project / ".claude" / name).read_text())


def commands(data: dict, event: str) -> list[str]:
    return [h["command"] for g in data.get("hooks", {}).get(event, []) for h in g["hooks"]]


def test_worker_on_an_empty_project(tmp_path):
    result = install(tmp_path, "--role", "worker", "--worker", "worker-1", "--workspace", "sftp://myvps/srv/ws",
                     "--capability", "backend", "--capability", "db")
    assert result.exit_code == 0, result.output
    data = settings(tmp_path)
    assert data["hooks"]["Stop"] == [{"hooks": [{"type": "command", "command": "mavps hook stop", "timeout": 600}]}]
    assert data["hooks"]["PreToolUse"] == [{"matcher": "Edit|Write|MultiEdit|NotebookEdit", "hooks": [
        {"type": "command", "command": "mavps hook pre-tool-use", "timeout": 10}]}]
    assert data["hooks"]["SessionStart"] == [{"matcher": "startup|resume|clear|compact", "hooks": [
        {"type": "command", "command": "mavps hook session-start --role worker", "timeout": 60}]}]
    assert data["env"] == {"CLAUDE_CODE_STOP_HOOK_BLOCK_CAP": "100", "MAVPS_WORKER_ID": "worker-1",
                           "MAVPS_WORKSPACE": "sftp://myvps/srv/ws", "MAVPS_CAPABILITIES": "backend,db"}
    assert data["permissions"] == {"allow": ["Bash(mavps:*)"]}
    assert "+ hooks.Stop: 'mavps hook stop' (timeout 600s)" in result.output


def test_merges_with_other_hooks_and_keys(tmp_path):
    (tmp_path / ".claude").mkdir()
    before = {
        "model": "opus",
        "hooks": {
            "Stop": [{"hooks": [{"type": "command", "command": "./notify.sh", "timeout": 5}]}],
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "./guard.sh"}]}],
        },
        "env": {"FOO": "bar", "CLAUDE_CODE_STOP_HOOK_BLOCK_CAP": "500"},
        "permissions": {"allow": ["Read"], "deny": ["Bash(rm:*)"]},
    }
    (tmp_path / ".claude" / "settings.json").write_text(json.dumps(before))
    result = install(tmp_path, "--role", "worker", "--worker", "w2")
    assert result.exit_code == 0, result.output
    data = settings(tmp_path)
    assert data["model"] == "opus"
    assert commands(data, "Stop") == ["./notify.sh", "mavps hook stop"]
    assert data["hooks"]["PreToolUse"] == before["hooks"]["PreToolUse"] + [  # the user's guard kept, ours added
        {"matcher": "Edit|Write|MultiEdit|NotebookEdit",
         "hooks": [{"type": "command", "command": "mavps hook pre-tool-use", "timeout": 10}]}]
    assert data["env"]["FOO"] == "bar"
    assert data["env"]["CLAUDE_CODE_STOP_HOOK_BLOCK_CAP"] == "500"  # a higher cap is never lowered
    assert data["permissions"] == {"allow": ["Read", "Bash(mavps:*)"], "deny": ["Bash(rm:*)"]}


def test_twice_in_a_row_changes_nothing(tmp_path):
    args = ["--role", "worker", "--worker", "w3", "--workspace", "/srv/ws", "--allow-bash"]
    assert install(tmp_path, *args).exit_code == 0
    path = tmp_path / ".claude" / "settings.json"
    first = path.read_bytes()
    stamp = path.stat().st_mtime_ns
    result = install(tmp_path, *args)
    assert result.exit_code == 0
    assert "already up to date, nothing changed" in result.output
    assert path.read_bytes() == first and path.stat().st_mtime_ns == stamp
    assert settings(tmp_path)["permissions"]["allow"] == ["Bash(mavps:*)", "Bash"]


def test_updates_its_own_entry_in_place(tmp_path):
    (tmp_path / ".claude").mkdir()
    old = {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "\"$CLAUDE_PROJECT_DIR\"/hooks/stop.py"},
                                         {"type": "command", "command": "mavps hook stop", "timeout": 30}]}]}}
    (tmp_path / ".claude" / "settings.json").write_text(json.dumps(old))
    result = install(tmp_path, "--role", "worker")
    assert result.exit_code == 0
    assert commands(settings(tmp_path), "Stop") == ["mavps hook stop"]
    assert settings(tmp_path)["hooks"]["Stop"][0]["hooks"][0]["timeout"] == 600
    assert "no worker id" in result.output


def test_coordinator_gets_its_own_stop_hook_and_switching_replaces_the_workers(tmp_path):
    assert install(tmp_path, "--role", "worker", "--worker", "w").exit_code == 0
    result = install(tmp_path, "--role", "coordinator")
    assert result.exit_code == 0, result.output
    data = settings(tmp_path)
    assert commands(data, "Stop") == ["mavps hook stop --role coordinator"]
    assert data["hooks"]["Stop"][0]["hooks"][0]["timeout"] == 600
    assert commands(data, "SessionStart") == ["mavps hook session-start --role coordinator"]
    assert "~ hooks.Stop: 'mavps hook stop' -> 'mavps hook stop --role coordinator'" in result.output
    assert install(tmp_path, "--role", "coordinator").output.endswith("already up to date, nothing changed\n")
    assert install(tmp_path, "--role", "worker").exit_code == 0
    assert commands(settings(tmp_path), "Stop") == ["mavps hook stop"]


def test_local_settings_file(tmp_path):
    assert install(tmp_path, "--role", "worker", "--worker", "w", "--local").exit_code == 0
    assert settings(tmp_path, "settings.local.json")["env"]["MAVPS_WORKER_ID"] == "w"
    assert not (tmp_path / ".claude" / "settings.json").exists()


def test_refuses_a_broken_settings_file_and_bad_values(tmp_path):
    (tmp_path / ".claude").mkdir()
    path = tmp_path / ".claude" / "settings.json"
    path.write_text("{not json")
    result = install(tmp_path, "--role", "worker")
    assert result.exit_code == 1 and "not valid JSON" in result.output
    assert path.read_text() == "{not json"
    path.write_text("{}")
    assert install(tmp_path, "--role", "worker", "--worker", "bad id!").exit_code == 1
    assert install(tmp_path, "--role", "worker", "--workspace", "http://x/y").exit_code == 1
    assert path.read_text() == "{}"


def test_python_form_runs_the_hook_it_installed(tmp_path):
    """Installed with --python, the command in the settings works as Claude Code would run it."""
    proc = subprocess.run([sys.executable, "-m", "mavps.hookcli", "install-hooks", "--role", "worker", "--python",
                           "--project", str(tmp_path), "--worker", "w9", "--workspace", str(tmp_path / "nowhere")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = settings(tmp_path)
    command = commands(data, "Stop")[0]
    assert command == f"\"{sys.executable}\" -m mavps.hookcli stop"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAVPS_", "CLAUDE"))}
    env.update(data["env"], PYTHONPATH=str(ROOT), MAVPS_CONFIG=os.devnull, CLAUDE_PROJECT_DIR=str(tmp_path),
               MAVPS_HOOK_STATE=str(tmp_path / "state.json"))
    run = subprocess.run(command, shell=True, input=json.dumps({"session_id": "s", "hook_event_name": "Stop"}),
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert run.returncode == 0  # the workspace does not exist: fail safe, and says so to the user
    assert "no mavps workspace" in json.loads(run.stdout)["systemMessage"]
    assert "letting w9 stop" in run.stderr
    start = commands(data, "SessionStart")[0]
    run = subprocess.run(shlex.split(start), input="{}", capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=60)
    assert run.returncode == 0 and "you are worker w9" in run.stdout


def test_settings_templates_match_the_installer():
    from mavps import install as inst

    for role, kw in (("worker", dict(worker="worker-1", workspace="sftp://myvps/srv/mavps/ws",
                                     capabilities=["backend"])),
                     ("coordinator", dict(workspace="sftp://myvps/srv/mavps/ws"))):
        data: dict = {}
        inst.merge(data, role, **kw)
        assert json.loads((ROOT / "templates" / f"settings.{role}.json").read_text()) == data


def test_task_template_renders():
    assert "task-instructions" in list_templates()
    text = render_task_template("task-instructions", {"description": "Create the User model",
                                                      "context_files": ["docs/schema.md"],
                                                      "steps": ["Import Base", "Add fields"],
                                                      "acceptance_criteria": ["tests pass"]})
    for heading in ("## Objective", "## Requirements", "## Context Files", "## Steps", "## Acceptance Criteria"):
        assert heading in text
    assert "# Task: Create the User model" in text and "- docs/schema.md" in text
    assert "1. Import Base\n2. Add fields" in text and "- [ ] tests pass" in text
    assert "(to be filled in: requirements)" in text
    assert (ROOT / "templates" / "task-instructions.md").read_text() == \
        (ROOT / "mavps" / "templates" / "task-instructions.md").read_text()


def test_settings_are_replaced_atomically_keeping_their_mode(tmp_path):
    (tmp_path / ".claude").mkdir()
    path = tmp_path / ".claude" / "settings.json"
    path.write_text("{}")
    path.chmod(0o600)
    assert install(tmp_path, "--role", "worker", "--worker", "w").exit_code == 0
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in (tmp_path / ".claude").iterdir()) == ["settings.json"]  # no temp file left


def test_install_waits_for_another_installer_of_the_same_project(tmp_path):
    """The read-modify-write runs under the project's lock: a second installer cannot interleave."""
    import threading

    from mavps.localfile import locked

    results = []
    with locked(str(tmp_path)):
        t = threading.Thread(target=lambda: results.append(install(tmp_path, "--role", "worker", "--worker", "w")))
        t.start()
        t.join(0.5)
        assert t.is_alive() and not (tmp_path / ".claude" / "settings.json").exists()
    t.join(10)
    assert results[0].exit_code == 0 and settings(tmp_path)["env"]["MAVPS_WORKER_ID"] == "w"


def test_hook_session_file_is_private(tmp_path):
    from mavps.hooks.session import SessionState

    state = SessionState(str(tmp_path / "state.json"))
    state.put("s1", {"blocks": 1})
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600
    assert state.get("s1")["blocks"] == 1
    state.put("s1", None)
    assert state.get("s1") == {}


def test_allow_edits_allows_the_tools_the_path_guard_watches(tmp_path):
    assert install(tmp_path, "--role", "worker", "--worker", "w").exit_code == 0
    assert settings(tmp_path)["permissions"]["allow"] == ["Bash(mavps:*)"]  # not without asking
    result = install(tmp_path, "--role", "worker", "--worker", "w", "--allow-edits")
    assert result.exit_code == 0, result.output
    assert settings(tmp_path)["permissions"]["allow"] == ["Bash(mavps:*)", "Edit", "Write", "MultiEdit",
                                                          "NotebookEdit"]
    guard = settings(tmp_path)["hooks"]["PreToolUse"][0]
    assert set(guard["matcher"].split("|")) == {"Edit", "Write", "MultiEdit", "NotebookEdit"}
