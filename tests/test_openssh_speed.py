"""`ssh: openssh` after the first call: no `ssh -G` process while nothing it reads changed, and no round trip
waited for on close (ssh is stopped once every reply is in; the master closes the channel)."""
from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest
from conftest import sftp_settings

from mavps import Workspace

pytestmark = pytest.mark.sftp


@pytest.fixture
def logged_ssh(tmp_path, monkeypatch, ssh_control):
    """`ssh` on PATH is a wrapper that logs its arguments, then runs the real one."""
    import shutil

    real = shutil.which("ssh")
    if real is None:
        pytest.skip("no ssh client")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "ssh.log"
    wrapper = bindir / "ssh"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return log


def _g_runs(log: Path) -> int:
    return sum(1 for line in log.read_text().splitlines() if line.startswith("-G ") or " -G " in f" {line}")


def test_ssh_G_runs_again_only_when_the_config_changed(sshd, tmp_path, logged_ssh):
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host *\n  ServerAliveCountMax 3\n")
    settings = {**sftp_settings(sshd), "ssh_config": str(cfg)}
    url = sshd.url(str(tmp_path / "ws"))
    for i in range(3):
        with Workspace.open(url, ssh="openssh", **settings) as ws:
            if i == 0:
                ws.init()
            assert ws.location.startswith(f"sftp://{sshd.user}@127.0.0.1:{sshd.port}/")
    assert _g_runs(logged_ssh) == 1
    cfg.write_text("Host *\n  ServerAliveCountMax 4\n")
    with Workspace.open(url, ssh="openssh", **settings) as ws:
        assert ws.queue.list() == []
    assert _g_runs(logged_ssh) == 2


def test_match_exec_is_never_cached(sshd, tmp_path, logged_ssh):
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Match exec \"true\"\n  ServerAliveCountMax 3\n")
    settings = {**sftp_settings(sshd), "ssh_config": str(cfg)}
    url = sshd.url(str(tmp_path / "ws"))
    for _ in range(2):
        with Workspace.open(url, ssh="openssh", **settings):
            pass
    assert _g_runs(logged_ssh) == 2


def test_close_stops_ssh_without_waiting_for_the_server(sshd, tmp_path, ssh_control):
    """Through 400 ms of RTT, ssh cannot have closed its channel by itself: it was stopped (SIGTERM)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "faults"))
    from helpers import proxy_known_hosts
    from support.proxy import LatencyProxy

    path = tmp_path / "ws"
    with Workspace.open(str(path)) as local:
        local.init()
    with LatencyProxy(sshd.host, sshd.port, 0.2) as proxy:
        known = proxy_known_hosts(sshd, proxy.port, tmp_path / "known_hosts")
        url = f"sftp://{sshd.user}@127.0.0.1:{proxy.port}{path}"
        for _ in range(2):  # the second call goes through the master the first one started
            ws = Workspace.open(url, ssh="openssh", identity_file=sshd.client_key, known_hosts=known,
                                ssh_config=os.devnull)
            assert ws.queue.list() == []
            ws.close()
            # ssh catches SIGTERM and exits 255 ("Killed by signal 15"); left to end by itself, it exits 0
            assert ws.transport.sftp.sock.proc.returncode in (255, -signal.SIGTERM)
