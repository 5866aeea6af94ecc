"""The hooks' SFTP when `ssh` is not set: openssh (a shared master) where an `ssh` client is on PATH, else paramiko,
also within the same call when ssh cannot be used; a user's `ssh: paramiko` is respected and the CLI stays on paramiko.
Against the real test sshd; the transport is told by its class (paramiko's client, or ssh's pipe) and by the master
socket in the control directory. Nothing here measures time."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

import mavps.workspace
from mavps import Workspace

pytestmark = [pytest.mark.sftp, pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client")]

STOP = json.dumps({"session_id": "s-transport", "stop_hook_active": False, "hook_event_name": "Stop"})


@pytest.fixture
def control() -> Iterator[Path]:
    """A private control directory for this test's masters, ended with the test."""
    path = Path(tempfile.mkdtemp(prefix="mvht"))
    yield path
    for sock in path.glob("mavps-*"):
        subprocess.run(["ssh", "-F", os.devnull, "-o", f"ControlPath={sock}", "-O", "exit", "x"],
                       capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def hook_env(sshd, control, tmp_path, monkeypatch) -> Path:
    """The environment a worker's hook runs in: the workspace over SFTP, `ssh` not set anywhere; one task waiting."""
    path = tmp_path / "ws"
    with Workspace.open(str(path), agent="coordinator") as ws:
        ws.init()
        ws.queue.add("over the hook's transport", "# do it\n")
    for key in [k for k in os.environ if k.startswith(("MAVPS_", "CLAUDE"))]:
        monkeypatch.delenv(key)
    for key, value in {"WORKSPACE": sshd.url(str(path)), "IDENTITY_FILE": sshd.client_key,
                       "KNOWN_HOSTS": sshd.known_hosts, "SSH_CONFIG": os.devnull, "CONFIG": os.devnull,
                       "SSH_CONTROL_DIR": str(control), "HOOK_STATE": str(tmp_path / "state.json"),
                       "WORKER_ID": "w1", "HOOK_WAIT": "0", "AUTO_PULL": "false"}.items():
        monkeypatch.setenv(f"MAVPS_{key}", value)
    return path


@pytest.fixture
def opened(monkeypatch) -> list:
    """Every transport the workspace opens, in order."""
    seen: list = []
    real = mavps.workspace.open_transport

    def recording(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(mavps.workspace, "open_transport", recording)
    return seen


def kinds(transports: list) -> list[str]:
    return ["openssh" if t.client is None and type(t.sftp.sock).__name__ == "SSHPipe" else "paramiko"
            for t in transports]


def stop_hook() -> str:
    """One Stop hook call through its click entry point; the task it handed over (its reason)."""
    from mavps.hookcli import hook

    result = CliRunner().invoke(hook, ["stop"], input=STOP)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["reason"]


def test_the_hook_uses_openssh_where_ssh_is_on_path_else_paramiko(hook_env, control, opened, tmp_path,
                                                                  monkeypatch):
    assert "Task #1: over the hook's transport" in stop_hook()
    assert kinds(opened) == ["openssh"] and list(control.glob("mavps-*")), "a master socket is up"
    opened.clear()
    empty = tmp_path / "no-ssh-here"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert "still hold task #1: over the hook's transport" in stop_hook()  # read over paramiko
    assert kinds(opened) == ["paramiko"]


def test_the_hook_falls_back_to_paramiko_within_the_call_when_ssh_cannot_be_used(hook_env, control, opened,
                                                                                 tmp_path, monkeypatch):
    """An ssh that fails as BatchMode does with a key it cannot use: the same call goes on over paramiko."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "ssh-calls"
    fake = bin_dir / "ssh"
    fake.write_text(f"#!/bin/sh\necho called >> {calls}\necho 'Permission denied (publickey).' >&2\nexit 255\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert "Task #1: over the hook's transport" in stop_hook()
    assert calls.read_text().split() == ["called"], "ssh was tried first, once"
    assert kinds(opened) == ["paramiko"] and not list(control.glob("mavps-*"))


def test_only_the_users_choice_keeps_the_hook_on_paramiko_and_the_cli_stays_on_it(hook_env, control, opened,
                                                                                  monkeypatch):
    from mavps.cli import cli

    monkeypatch.setenv("MAVPS_SSH", "paramiko")
    stop_hook()
    assert kinds(opened) == ["paramiko"] and not list(control.glob("mavps-*"))
    monkeypatch.delenv("MAVPS_SSH")
    assert CliRunner().invoke(cli, ["status"]).exit_code == 0
    assert kinds(opened) == ["paramiko", "paramiko"] and not list(control.glob("mavps-*"))
    stop_hook()
    assert kinds(opened) == ["paramiko", "paramiko", "openssh"]
