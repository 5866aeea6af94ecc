"""A hook that fails says so where people look: Claude Code's systemMessage (shown to the user), the
local hook log (its path printed by `mavps doctor`), and the workspace log when the workspace is reachable.
The hook still exits 0 and lets the agent go on."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_hook import hook_env, log_events, run_hook, start_input, stop_input

from mavps.cli import cli

pytestmark = pytest.mark.usefixtures("clean_env")


def answer(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def hook_log(tmp_path: Path) -> str:
    return (tmp_path / "hook.log").read_text()


@pytest.mark.sftp
def test_unknown_host_key_is_shown_and_logged(sshd, tmp_path) -> None:
    """The case from the issue: a worker's known_hosts lacks the VPS's key."""
    from conftest import sftp_settings

    settings = sftp_settings(sshd)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    env = hook_env(None, tmp_path, workspace=sshd.url(str(tmp_path / "ws")), identity_file=settings["identity_file"],
                   known_hosts=empty)
    out = answer(run_hook(env, stop_input(), "stop"))
    assert "decision" not in out  # the agent may stop: nothing to hand over
    assert "host key" in out["systemMessage"].lower() or "known_hosts" in out["systemMessage"]
    assert out["systemMessage"].split(":")[0] in hook_log(tmp_path)
    assert "known_hosts" in hook_log(tmp_path) or "host key" in hook_log(tmp_path).lower()


def test_missing_workspace_is_shown_and_logged(tmp_path) -> None:
    env = hook_env(None, tmp_path, workspace=tmp_path / "typo")
    out = answer(run_hook(env, stop_input(), "stop"))
    assert "no mavps workspace at" in out["systemMessage"] and "decision" not in out
    assert "no mavps workspace at" in hook_log(tmp_path)


def test_failure_after_opening_goes_to_the_workspace_log(ws, target, tmp_path) -> None:
    (target.path / "task-queue.json").write_text("{not json")
    out = answer(run_hook(hook_env(target, tmp_path), stop_input(), "stop"))
    assert "task-queue.json" in out["systemMessage"]
    failed = [r for r in log_events(target) if r["event"] == "hook_failed"]
    assert len(failed) == 1 and failed[0]["agent"] == "w1" and "task-queue.json" in failed[0]["message"]
    assert "task-queue.json" in hook_log(tmp_path)


def test_session_start_failure_is_shown_with_the_context(tmp_path) -> None:
    env = hook_env(None, tmp_path, workspace=tmp_path / "typo")
    out = answer(run_hook(env, start_input(), "session-start", "--role", "worker"))
    assert out["hookSpecificOutput"]["additionalContext"]
    assert "no mavps workspace at" in out["systemMessage"]
    assert "no mavps workspace at" in hook_log(tmp_path)


def test_bad_stdin_is_shown(tmp_path) -> None:
    env = hook_env(None, tmp_path, workspace=tmp_path / "typo")
    out = answer(run_hook(env, "{not json", "stop"))
    assert "not valid JSON" in out["systemMessage"]


def test_a_working_hook_prints_no_message(ws, target, tmp_path) -> None:
    ws.queue.add("x", "do x")
    out = answer(run_hook(hook_env(target, tmp_path), stop_input(), "stop"))
    assert out["decision"] == "block" and "systemMessage" not in out
    assert not (tmp_path / "hook.log").exists()


def test_doctor_prints_the_hook_log(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MAVPS_HOOK_STATE", str(tmp_path / "state.json"))
    result = CliRunner().invoke(cli, ["--json", "--workspace", str(tmp_path / "ws"), "doctor"])
    checks = {c["check"]: c for c in json.loads(result.stdout)}
    assert checks["hook log"]["detail"].startswith(str(tmp_path / "hook.log"))
    (tmp_path / "hook.log").write_text("2026-01-01T00:00:00 [stop, pid 1] mavps hook: something broke\n")
    result = CliRunner().invoke(cli, ["--json", "--workspace", str(tmp_path / "ws"), "doctor"])
    checks = {c["check"]: c for c in json.loads(result.stdout)}
    assert "something broke" in checks["hook log"]["detail"]
