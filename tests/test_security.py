"""Security: host keys never trusted silently, no world-writable files, no
secret in errors or the log."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from mavps import Workspace
from mavps.errors import HostKeyError, MavpsError, TransportError

REPO = Path(__file__).resolve().parents[1]


def test_no_auto_add_policy_anywhere():
    out = subprocess.run(["grep", "-rn", "-E", "AutoAddPolicy|WarningPolicy", str(REPO / "mavps")],
                         capture_output=True, text=True)
    assert out.stdout == "", out.stdout


def open_with(sshd, tmp_path, known_hosts: str, **kw):
    return Workspace.open(sshd.url(str(tmp_path / "ws")), identity_file=kw.pop("identity_file", sshd.client_key),
                          known_hosts=known_hosts, ssh_config=os.devnull, connect_timeout=5, **kw)


@pytest.mark.sftp
def test_unknown_host_key_refused_and_not_saved(sshd, tmp_path):
    for content in (None, ""):
        kh = tmp_path / "known_hosts"
        if content is None:
            kh.unlink(missing_ok=True)
        else:
            kh.write_text(content)
        with pytest.raises(HostKeyError, match="unknown host key") as info:
            open_with(sshd, tmp_path, str(kh))
        assert "SHA256:" in str(info.value) and "mavps trust" in str(info.value)
        assert (not kh.exists()) if content is None else kh.read_text() == ""
    assert not (tmp_path / "ws").exists()


@pytest.mark.sftp
def test_changed_host_key_refused(sshd, tmp_path):
    from support.sshd import generate_ed25519_keypair

    other = generate_ed25519_keypair(tmp_path / "other", "impostor")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(other.split()[:2])}\n")
    with pytest.raises(HostKeyError, match="HOST KEY CHANGED"):
        open_with(sshd, tmp_path, str(kh))
    assert kh.read_text().count("\n") == 1
    assert not (tmp_path / "ws").exists()


@pytest.mark.sftp
def test_wrong_passphrase_never_shown(sshd, tmp_path):
    """An encrypted key with a wrong passphrase: the error says so, without the passphrase or the key."""
    from cryptography.hazmat.primitives import serialization

    from mavps.transport import open_transport

    key = serialization.load_ssh_private_key(Path(sshd.client_key).read_bytes(), None)
    secret = "correct-horse-battery-42"
    enc = tmp_path / "enc_key"
    enc.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                      serialization.BestAvailableEncryption(secret.encode())))
    enc.chmod(0o600)
    body = enc.read_text().splitlines()[1]
    wrong = "WRONG-passphrase-xyzzy"
    for pw in (wrong, None):
        with pytest.raises(MavpsError) as info:
            open_transport(sshd.url(str(tmp_path / "ws")), identity_file=str(enc), known_hosts=sshd.known_hosts,
                           ssh_config=os.devnull, connect_timeout=5, passphrase=pw)
        text = str(info.value) + repr(info.value.__cause__) + repr(info.value.__context__)
        assert wrong not in text and secret not in text and body[:20] not in text, text
    # the right one works
    tr = open_transport(sshd.url(str(tmp_path / "ws")), identity_file=str(enc), known_hosts=sshd.known_hosts,
                        ssh_config=os.devnull, connect_timeout=5, passphrase=secret)
    tr.close()


@pytest.mark.sftp
def test_garbage_key_file_content_not_echoed(sshd, tmp_path):
    bad = tmp_path / "bad_key"
    bad.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nTOPSECRETKEYMATERIAL0123456789\n"
                   "-----END OPENSSH PRIVATE KEY-----\n")
    bad.chmod(0o600)
    with pytest.raises(TransportError) as info:
        open_with(sshd, tmp_path, sshd.known_hosts, identity_file=str(bad))
    assert "TOPSECRET" not in str(info.value)


def modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_created_files_never_world_or_group_writable(target, umask):
    old = os.umask(umask)
    try:
        ws = target.open(lock_ttl=1)
        ws.init()
        ws.queue.add("t", "x" * 100)
        t = ws.queue.claim("w1")
        ws.queue.complete(t.id, "w1")
        ws.log.append("hello")
        ws.close()
    finally:
        os.umask(old)
    found = modes(target.path)
    assert found, "nothing created"
    for name, mode in found.items():
        assert mode & 0o002 == 0, f"{name} is world-writable: {oct(mode)}"
        assert mode & 0o020 == 0, f"{name} is group-writable: {oct(mode)}"
        if umask == 0o077 and target.kind == "local":
            assert mode & 0o077 == 0, f"{name} ignores a private umask: {oct(mode)}"


def test_private_workspace_keeps_working(target):
    """A person can make the workspace private to the account (chmod 700) and everything works."""
    ws = target.open(lock_ttl=1)
    ws.init()
    os.chmod(target.path, 0o700)
    ws.queue.add("t", "x")
    assert ws.queue.claim("w1").id == 1
    assert stat.S_IMODE(target.path.stat().st_mode) == 0o700
    ws.close()


@pytest.mark.sftp
def test_no_secret_in_the_log_or_state(sshd, tmp_path):
    ws = open_with(sshd, tmp_path, sshd.known_hosts)
    ws.init()
    ws.queue.add("t", "x")
    ws.queue.claim("w1")
    ws.close()
    key_lines = Path(sshd.client_key).read_text().splitlines()[1:-1]
    for p in (tmp_path / "ws").rglob("*"):
        if p.is_file():
            data = p.read_text(errors="replace")
            assert not any(line[:24] in data for line in key_lines), p
            assert sshd.client_key not in data, f"{p} names the key file"
