"""The optional OpenSSH transport (`ssh = openssh`): SFTP over `ssh -s sftp` with a
shared ControlMaster, against the real test sshd. Nothing here measures time."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import sftp_settings
from mavps import Workspace
from mavps.errors import ConfigError, HostKeyError, TransportError

pytestmark = [pytest.mark.sftp, pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client")]


@pytest.fixture(scope="module")
def control(sshd, ssh_control) -> Path:
    """The private control directory for the masters (conftest's ssh_control ends them all at the end)."""
    return ssh_control


def _open(sshd, path: Path, **settings) -> Workspace:
    return Workspace.open(sshd.url(str(path)), ssh="openssh", **{**sftp_settings(sshd), **settings})


def _ssh_children() -> list[int]:
    """Our own child processes that are ssh sessions (not reaped or still running)."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        if ppid == me and cmd and cmd[0].endswith(b"ssh") and b"sftp" in cmd:
            found.append(int(entry))
    return found


def test_queue_round_trips_unchanged(sshd, control, tmp_path):
    ws = _open(sshd, tmp_path / "ws", agent="w")
    try:
        assert ws.transport.client is None and type(ws.transport.sftp.sock).__name__ == "SSHPipe"
        ws.init()
        ws.workers.register("w")
        ws.queue.add("warm", "x")
        counts = {}
        for name, op in [("add", lambda: ws.queue.add("t", "x")), ("claim", lambda: ws.queue.claim("w")),
                         ("complete", lambda: ws.queue.complete(1, "w"))]:
            before = ws.transport.round_trips
            op()
            counts[name] = ws.transport.round_trips - before
        assert counts == {"add": 3, "claim": 3, "complete": 3}
        ws.write_file("notes/a.txt", b"hello " * 20000)
        assert ws.read_file("notes/a.txt") == b"hello " * 20000
        assert ws.board()["counts"]["completed"] == 1
        assert ws.location.startswith(f"sftp://{sshd.user}@127.0.0.1:{sshd.port}/")
    finally:
        ws.close()
    assert (tmp_path / "ws" / "task-queue.json").is_file()


def test_master_is_reused_and_sessions_end(sshd, control, tmp_path):
    first = _open(sshd, tmp_path / "ws")
    first.init()
    sock = Path(first.transport.control_path)
    first.close()
    assert sock.parent == control and sock.is_socket(), "ControlPersist keeps the master after close"
    assert _ssh_children() == [], "closing the workspace ends its ssh session"
    assert first.transport.sftp.sock.proc.returncode is not None
    check = subprocess.run(["ssh", "-F", os.devnull, "-o", f"ControlPath={sock}", "-O", "check", "x"],
                           capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    assert check.returncode == 0, check.stderr
    with _open(sshd, tmp_path / "ws", agent="w2") as second:
        assert second.transport.control_path == str(sock)
        assert second.queue.add("over the master", "x").id == 1
    assert _ssh_children() == []


def test_unknown_host_key_is_refused(sshd, control, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError) as err:
        _open(sshd, tmp_path / "ws", known_hosts=str(empty))
    assert "unknown host key" in str(err.value) and "mavps trust" in str(err.value)
    assert _ssh_children() == []


def test_changed_host_key_is_refused(sshd, control, tmp_path):
    from support.sshd import generate_ed25519_keypair

    other = tmp_path / "known_hosts"
    key = generate_ed25519_keypair(tmp_path / "not_the_host_key", "other").split()[1]
    other.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {key}\n")
    with pytest.raises(HostKeyError) as err:
        _open(sshd, tmp_path / "ws", known_hosts=str(other))
    assert "HOST KEY CHANGED" in str(err.value)
    # the same advice as the paramiko stack (one mapper): the real known_hosts entry, the port kept
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in str(err.value)
    assert f"mavps trust 127.0.0.1:{sshd.port}" in str(err.value)


def test_wrong_key_is_an_authentication_error(sshd, control, tmp_path):
    from support.sshd import generate_ed25519_keypair

    wrong = tmp_path / "wrong_key"
    generate_ed25519_keypair(wrong, "nobody")
    with pytest.raises(TransportError) as err:
        _open(sshd, tmp_path / "ws", identity_file=str(wrong))
    assert "authentication failed" in str(err.value)
    assert "BEGIN" not in str(err.value)
    assert _ssh_children() == []


def test_closed_port_fails_in_bounded_time(sshd, control, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransportError) as err:
        Workspace.open(f"sftp://{sshd.user}@127.0.0.1:{port}{tmp_path}/ws", ssh="openssh", connect_timeout=3,
                       **sftp_settings(sshd))
    assert "connection refused" in str(err.value)
    assert _ssh_children() == []


def test_dead_session_is_a_transport_error(sshd, control, tmp_path):
    ws = _open(sshd, tmp_path / "ws")
    try:
        ws.init()
        ws.transport.sftp.sock.proc.kill()
        with pytest.raises(TransportError):
            ws.queue.add("t", "x")
        with pytest.raises(TransportError, match="closed"):
            ws.queue.add("t", "x")
    finally:
        ws.close()
    assert _ssh_children() == []


def test_setting_is_validated_and_defaults_to_paramiko(sshd, tmp_path):
    from mavps.config import Config, load

    assert Config().ssh == "paramiko"
    assert load(env={"MAVPS_SSH": "OpenSSH"}, path=os.devnull).ssh == "openssh"
    with pytest.raises(ConfigError, match="ssh = 'putty' from MAVPS_SSH"):
        load(env={"MAVPS_SSH": "putty"}, path=os.devnull)
    with Workspace.open(sshd.url(str(tmp_path / "ws")), **sftp_settings(sshd)) as ws:
        assert ws.transport.client is not None  # paramiko
