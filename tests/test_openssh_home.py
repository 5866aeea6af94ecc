"""`ssh: openssh` and $HOME. `ssh` itself takes `~` from the passwd entry and ignores $HOME (`HOME=/x ssh -G`
still reads the passwd home's ~/.ssh/config and known_hosts); mavps names ~/.ssh/config and known_hosts by
$HOME everywhere (paramiko, `mavps trust`), so the openssh stack hands ssh the files under $HOME: it then
reads the config and checks the known_hosts file that mavps names, not another home's."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from mavps import Workspace
from mavps.errors import HostKeyError

pytestmark = [pytest.mark.sftp, pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client")]


@pytest.fixture
def home(tmp_path, monkeypatch, sshd) -> Path:
    """A $HOME that is not the passwd home, with an alias to the test sshd in its ~/.ssh/config."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    assert str(home) != pwd.getpwuid(os.getuid()).pw_dir
    (home / ".ssh" / "config").write_text(
        f"Host myvps\n    HostName {sshd.host}\n    Port {sshd.port}\n    User {sshd.user}\n"
        f"    IdentityFile {sshd.client_key}\n    IdentitiesOnly yes\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    ctl = tmp_path / "ctl"
    monkeypatch.setenv("MAVPS_SSH_CONTROL_DIR", str(ctl))
    yield home
    for sock in ctl.glob("mavps-*"):
        subprocess.run(["ssh", "-F", os.devnull, "-o", f"ControlPath={sock}", "-O", "exit", "x"],
                       capture_output=True, timeout=10, stdin=subprocess.DEVNULL)


def _open(path: Path) -> Workspace:
    return Workspace.open(f"sftp://myvps{path}", ssh="openssh", connect_timeout=5)


def test_the_alias_and_known_hosts_come_from_home(home, sshd, tmp_path):
    shutil.copy(sshd.known_hosts, home / ".ssh" / "known_hosts")
    with _open(tmp_path / "ws") as ws:
        ws.init()
        assert ws.queue.list() == []


def test_an_unknown_key_names_the_known_hosts_file_ssh_really_checked(home, sshd, tmp_path):
    (home / ".ssh" / "known_hosts").write_text("")
    with pytest.raises(HostKeyError) as err:
        _open(tmp_path / "ws")
    assert f"is not in {home / '.ssh' / 'known_hosts'}" in str(err.value)
    assert "mavps trust myvps" in str(err.value)
