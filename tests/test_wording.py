"""The words a new user reads: plurals, what `init` really made, what `doctor` really checked, what to do
when authentication fails (against the real sshd), and when Claude Code's Stop-hook block cap would end an
idle worker early."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from mavps import TransportError, Workspace
from mavps.admin import check_stop_hook_cap, run_checks
from mavps.cli import cli
from mavps.config import Config
from support.sshd import generate_ed25519_keypair


def test_failed_for_good_after_one_attempt_is_singular(tmp_path):
    with Workspace.open(str(tmp_path), agent="c") as ws:
        ws.init()
        ws.queue.add("once", "x", max_attempts=1)
        ws.queue.claim("w1")
        ws.queue.fail(1, "w1", "broken")
        said = [r["message"] for r in ws.log.tail(10) if r.get("event") == "task_failed"]
    assert said == ["Task #1 failed for good after 1 attempt: broken"]


def test_init_says_every_file_it_created_and_nothing_when_there_is_nothing(tmp_path, clean_env):
    where = tmp_path / "ws"
    first = CliRunner().invoke(cli, ["-w", str(where), "init"])
    assert first.exit_code == 0, first.output
    for made in ("task-queue.json", "worker-status.json", "workspace.json", "agent-comms.jsonl", "tasks/"):
        assert made in first.output
    again = CliRunner().invoke(cli, ["-w", str(where), "--json", "init"])
    assert json.loads(again.output)["created"] == []


def test_doctor_does_not_call_missing_state_files_valid(tmp_path, clean_env):
    (tmp_path / "empty").mkdir()
    checks = {c["check"]: c for c in run_checks({"workspace": str(tmp_path / "empty")})}
    line = checks["state files"]
    assert not line["ok"] and "valid JSON" not in line["detail"] and "missing" in line["detail"]


@pytest.mark.sftp
@pytest.mark.parametrize("stack", ["paramiko", "openssh"])
@pytest.mark.parametrize("key", ["wrong", "none"])
def test_authentication_failures_say_what_to_do(sshd, tmp_path, monkeypatch, stack, key):
    import shutil

    if stack == "openssh" and shutil.which("ssh") is None:
        pytest.skip("no OpenSSH client")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))  # no default keys of the developer's
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.setenv("MAVPS_SSH_CONTROL_DIR", str(tmp_path / "ctl"))
    other = None
    if key == "wrong":
        other = tmp_path / "other_ed25519"
        generate_ed25519_keypair(other, "not-authorized")
    with pytest.raises(TransportError) as err:
        Workspace.open(sshd.url(str(tmp_path)), identity_file=str(other) if other else None,
                       known_hosts=sshd.known_hosts, ssh_config=os.devnull, ssh=stack, connect_timeout=5)
    msg = str(err.value)
    assert msg.lower().count("authentication failed") == 1, msg
    assert ".." not in msg and "No authentication methods available" not in msg, msg
    assert msg.endswith("give the key this account accepts with --identity-file (or IdentityFile in ~/.ssh/config)")
    if key == "wrong":
        assert str(other) in msg
    elif stack == "paramiko":
        assert "no key to offer" in msg


def _cap_lines(tmp_path: Path, **cfg) -> list[dict]:
    out: list[dict] = []
    check_stop_hook_cap(Config(worker_id="w1", **cfg), lambda *a: out.append(dict(zip(("check", "ok", "detail",
                                                                                          "fix"), a))), str(tmp_path))
    return out


def test_doctor_warns_when_idle_needs_more_stop_hook_blocks_than_the_cap(tmp_path, monkeypatch):
    monkeypatch.delenv("CLAUDE_CODE_STOP_HOOK_BLOCK_CAP", raising=False)
    assert [line["ok"] for line in _cap_lines(tmp_path)] == [True]  # defaults: 600 / 240 -> 2 blocks
    long_idle = _cap_lines(tmp_path, idle_timeout=3600, hook_wait=240)  # 14 blocks > 8
    assert long_idle[0]["ok"] is False and "14" in long_idle[0]["detail"] and "8" in long_idle[0]["detail"]
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".claude" / "settings.json").write_text(json.dumps({"env": {"CLAUDE_CODE_STOP_HOOK_BLOCK_CAP": "20"}}))
    assert _cap_lines(tmp_path, idle_timeout=3600, hook_wait=240)[0]["ok"] is True
    (tmp_path / ".claude" / "settings.local.json").write_text(
        json.dumps({"env": {"CLAUDE_CODE_STOP_HOOK_BLOCK_CAP": "3"}}))
    assert _cap_lines(tmp_path, idle_timeout=1200, hook_wait=240)[0]["ok"] is False  # 4 blocks > 3


def test_the_cap_from_the_environment_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAUDE_CODE_STOP_HOOK_BLOCK_CAP", "30")
    assert _cap_lines(tmp_path, idle_timeout=3600, hook_wait=240)[0]["ok"] is True


def test_no_cap_line_where_no_worker_runs(tmp_path):
    out: list = []
    check_stop_hook_cap(Config(), lambda *a: out.append(a), str(tmp_path))
    assert out == []
