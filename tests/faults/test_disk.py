"""Disk full (a real tmpfs of a few pages, mounted for the test: needs root) and
permission denied (an SFTP-only chrooted account whose workspace is made
read-only): a clear error, the previous state intact, and work resumes once
the space or the permission is back."""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from mavps import MavpsError, Workspace
from support.sshd import SSHServer, Unsupported

from .helpers import LOCK, env, figures

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]
STATE = ("task-queue.json", "worker-status.json", "workspace.json", "agent-comms.jsonl")


def snapshot(path):
    return {name: (path / name).read_bytes() for name in STATE}


@pytest.fixture
def tiny_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k,mode=0755", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path, leave: int) -> None:
    """Fill the filesystem until at most `leave` bytes are free."""
    with open(path / "filler", "wb") as fh:
        try:
            while True:
                st = os.statvfs(path)
                free = st.f_bavail * st.f_frsize
                if free <= leave:
                    break
                fh.write(b"\0" * min(4096, free - leave if free - leave >= 4096 else 4096))
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


@pytest.mark.parametrize("kind", ["local", pytest.param("sftp", marks=pytest.mark.sftp)])
@pytest.mark.parametrize("leave", [0, 8192])
def test_disk_full(tiny_disk, request, kind, leave):
    ws_path = tiny_disk / "ws"
    settings = {}
    url = str(ws_path)
    if kind == "sftp":
        server = request.getfixturevalue("sshd")
        url = server.url(str(ws_path))
        settings = {"identity_file": server.client_key, "known_hosts": server.known_hosts, "ssh_config": os.devnull}
    with Workspace.open(url, agent="coord", lock_ttl=1, **settings) as ws:
        ws.init()
        ws.queue.add("before", "x")
        ws.queue.claim("w1")
        before = snapshot(ws_path)
        fill(tiny_disk, leave)
        errors = []
        for attempt in (lambda: ws.queue.add("big", "y" * 60_000), lambda: ws.queue.complete(1, "w1", "z" * 60_000)):
            with pytest.raises(MavpsError) as info:
                attempt()
            errors.append(str(info.value))
        for msg in errors:
            assert "No space" in msg or "Failure" in msg or "could not write" in msg or "cannot create" in msg, msg
        assert snapshot(ws_path) == before, "a failed write changed the state"
        assert not (ws_path / LOCK).exists(), "the lock was left behind"
        os.unlink(tiny_disk / "filler")
        ws.queue.complete(1, "w1", "done")
        assert ws.queue.get(1).status.value == "completed"
    figures("disk full", kind, 3, 2, 0, left_free=leave, errors=errors)


@pytest.fixture(scope="module")
def sftp_only(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("an SFTP-only chrooted account needs root")
    server = SSHServer(tmp_path_factory.mktemp("sftponly"), sftp_only_user="mavpsfault")
    try:
        server.start()
    except Unsupported as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.mark.sftp
def test_permission_denied_sftp_only_account(sftp_only):
    s = sftp_only
    url = f"sftp://{s.sftp_only_user}@127.0.0.1:{s.port}/ws/project"
    host_path = s.sftp_only_ws + "/project"
    from pathlib import Path
    path = Path(host_path)
    with Workspace.open(url, agent="coord", lock_ttl=1, identity_file=s.sftp_only_key, known_hosts=s.known_hosts,
                        ssh_config=os.devnull) as ws:
        ws.init()
        ws.queue.add("before", "x")
        before = snapshot(path)
        os.chmod(path, 0o555)  # as root: the account may read, not write
        try:
            with pytest.raises(MavpsError, match="(?i)permission denied") as info:
                ws.queue.add("refused", "x")
            assert [t.description for t in ws.queue.list()] == ["before"], "reading must still work"
            assert snapshot(path) == before
            assert not (path / LOCK).exists()
        finally:
            os.chmod(path, 0o755)
        ws.queue.add("after", "x")
        # files the account created are not world- or group-writable
        for p in [path, *path.rglob("*")]:
            assert p.stat().st_mode & 0o022 == 0, (p, oct(p.stat().st_mode))
    figures("permission denied (sftp-only chroot)", "sftp", 3, 1, 0, error=str(info.value))


def test_permission_denied_local_unprivileged(tmp_path):
    """The local transport as an unprivileged user (setuid nobody) on a root-owned workspace."""
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    import shutil
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="mavps-perm-", dir="/tmp"))  # traversable by nobody
    request_cleanup = lambda: shutil.rmtree(base, ignore_errors=True)  # noqa: E731
    os.chmod(base, 0o755)
    ws_path = base / "ws"
    with Workspace.open(str(ws_path), agent="coord") as ws:
        ws.init()
        ws.queue.add("before", "x")
    before = snapshot(ws_path)
    code = ("import os, sys\n"
            "import mavps.workspace, mavps.transport.local, mavps.queue, portalocker\n"
            "from mavps import Workspace, MavpsError\n"
            "os.setgid(65534); os.setuid(65534)\n"
            f"ws = Workspace.open({str(ws_path)!r}, agent='nobody')\n"
            "assert [t.id for t in ws.queue.list()] == [1]\n"
            "try:\n    ws.queue.add('x', 'y')\nexcept MavpsError as e:\n    print('REFUSED', e); sys.exit(0)\n"
            "sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Permission denied" in r.stdout, r.stdout
    assert snapshot(ws_path) == before
    request_cleanup()
    figures("permission denied (local, setuid nobody)", "local", 2, 1, 0, error=r.stdout.strip())
