"""The least-privilege VPS account of knowledge/06-vps-setup.md, for real:
a dedicated user, key-only, `ForceCommand internal-sftp`, chrooted. mavps and
its hooks work through it; a shell command on it is refused."""
from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import running
from support.sshd import SSHServer

pytestmark = [pytest.mark.sftp, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[1]
USER = "mavpsagent"


@pytest.fixture(scope="module")
def jail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    yield from running(SSHServer(tmp_path_factory.mktemp("sshd-lp"), sftp_only_user=USER), "LEAST-PRIVILEGE SFTP")


def url(server: SSHServer, path: str = "/ws/project") -> str:
    return f"sftp://{USER}@{server.host}:{server.port}{path}"


def settings(server: SSHServer) -> dict:
    return {"identity_file": server.sftp_only_key, "known_hosts": server.known_hosts, "ssh_config": os.devnull}


def test_mavps_works_through_the_chrooted_sftp_only_account(jail):
    from mavps import TaskStatus, Workspace

    with Workspace.open(url(jail), agent="coordinator", **settings(jail)) as ws:
        ws.init()
        ws.queue.add("through the jail", "do it", context_files=["docs/a.md"])
        task = ws.queue.claim("w1")
        assert task is not None and task.id == 1
        ws.queue.complete(1, "w1", "done")
        assert ws.queue.get(1).status is TaskStatus.COMPLETED
        assert ws.board()["counts"]["completed"] == 1
    host_dir = Path(jail.sftp_only_ws) / "project"  # /ws/project inside the chroot
    queue = json.loads((host_dir / "task-queue.json").read_text())
    assert queue[0]["status"] == "completed" and queue[0]["result"] == "done"
    owner = pwd.getpwuid((host_dir / "task-queue.json").stat().st_uid).pw_name
    assert owner == USER
    assert not (host_dir / ".mavps.lock").exists()


def test_the_stop_hook_works_through_it(jail, tmp_path):
    from mavps import Workspace

    with Workspace.open(url(jail, "/ws/hooked"), **settings(jail)) as ws:
        ws.init()
        ws.queue.add("hooked task", "RUN: true\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAVPS_", "CLAUDE"))}
    env.update({f"MAVPS_{k.upper()}": v for k, v in settings(jail).items()})
    env.update(PYTHONPATH=str(ROOT), MAVPS_CONFIG=os.devnull, MAVPS_WORKSPACE=url(jail, "/ws/hooked"),
               MAVPS_WORKER_ID="w1", MAVPS_HOOK_STATE=str(tmp_path / "state.json"))
    proc = subprocess.run([sys.executable, "-m", "mavps.hookcli", "stop"], input=json.dumps({"session_id": "s"}),
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Task #1: hooked task" in json.loads(proc.stdout)["reason"]


def test_a_shell_command_is_refused(jail):
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(jail.known_hosts)
    client.connect(jail.host, port=jail.port, username=USER, key_filename=jail.sftp_only_key,
                   allow_agent=False, look_for_keys=False, timeout=10)
    try:
        marker = Path(jail.sftp_only_ws) / "shell-was-here"
        stdin, stdout, stderr = client.exec_command(f"touch /ws/{marker.name}; id; echo SHELL-RAN", timeout=10)
        stdin.channel.shutdown_write()
        deadline = time.monotonic() + 10
        while not stdout.channel.exit_status_ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        out = stdout.read().decode(errors="replace")
        status = stdout.channel.recv_exit_status() if stdout.channel.exit_status_ready() else None
        assert "SHELL-RAN" not in out and "uid=" not in out
        assert not marker.exists()
        # OpenSSH: "This service allows sftp connections only."
        assert status is not None and status != 0, (status, out)
    finally:
        client.close()


def test_the_main_account_key_cannot_log_in_as_the_agent(jail):
    """Key-only: the other test key is not in the agent's authorized_keys."""
    from mavps import TransportError, Workspace

    with pytest.raises(TransportError, match="authentication failed"):
        Workspace.open(url(jail), identity_file=jail.client_key, known_hosts=jail.known_hosts,
                       ssh_config=os.devnull, connect_timeout=5)
