"""SSH failures as a person sees them from the CLI, and `mavps trust`, against the real sshd."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mavps.cli import cli
from support.silent import silent_server
from support.sshd import generate_ed25519_keypair



pytestmark = [pytest.mark.sftp, pytest.mark.usefixtures("clean_env")]


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def ws_args(sshd, tmp_path: Path, known_hosts: Path | str | None = None, identity: str | None = None) -> list[str]:
    return ["--workspace", sshd.url(str(tmp_path / "ws")), "--identity-file", identity or sshd.client_key,
            "--known-hosts", str(known_hosts or sshd.known_hosts)]


def host_fingerprint(sshd) -> str:
    import paramiko

    kind, b64 = sshd.host_pub.split()[:2]
    return paramiko.PKey.from_type_string(kind, __import__("base64").b64decode(b64)).fingerprint


@pytest.mark.timeout(60)
def test_unknown_host_key_shows_fingerprint_and_trust(sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    result = run(*ws_args(sshd, tmp_path, empty), "init")
    assert result.exit_code == 1
    assert result.stderr.startswith("mavps: ") and "Traceback" not in result.stderr
    assert host_fingerprint(sshd) in result.stderr
    assert "mavps trust" in result.stderr
    assert empty.read_text() == ""  # never auto-accepted


@pytest.mark.timeout(60)
def test_changed_host_key_is_refused(sshd, tmp_path: Path) -> None:
    other = generate_ed25519_keypair(tmp_path / "impostor", "impostor")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {other}\n")
    result = run(*ws_args(sshd, tmp_path, kh), "init")
    assert result.exit_code == 1
    assert "HOST KEY CHANGED" in result.stderr and host_fingerprint(sshd) in result.stderr
    # on a port other than 22 the advice names the entry known_hosts really has, and a trust that uses the port
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in result.stderr, result.stderr
    assert f"mavps trust 127.0.0.1:{sshd.port}" in result.stderr, result.stderr
    doctor = json.loads(run("--json", *ws_args(sshd, tmp_path, kh), "doctor").stdout)
    bad = [c for c in doctor if not c["ok"]]
    assert bad[0]["check"] == "host key" and "mavps trust" in bad[0]["fix"]


@pytest.mark.timeout(60)
def test_wrong_key_says_which_identities_were_tried(sshd, tmp_path: Path) -> None:
    generate_ed25519_keypair(tmp_path / "wrong_key", "wrong")
    result = run(*ws_args(sshd, tmp_path, identity=str(tmp_path / "wrong_key")), "init")
    assert result.exit_code == 1
    assert "authentication failed" in result.stderr and str(tmp_path / "wrong_key") in result.stderr


@pytest.mark.timeout(60)
def test_closed_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run("--workspace", f"sftp://me@127.0.0.1:{port}/srv/ws", "--known-hosts", str(tmp_path / "kh"),
                 "--connect-timeout", "3", "task", "list")
    assert result.exit_code == 1
    assert f"127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.timeout(60)
def test_silent_server_times_out_within_connect_timeout(tmp_path: Path) -> None:
    """A listening socket that never says a word: bounded by connect_timeout, not a hang."""
    with silent_server() as port:
        started = time.monotonic()
        result = run("--workspace", f"sftp://me@127.0.0.1:{port}/srv/ws", "--known-hosts", str(tmp_path / "kh"),
                     "--connect-timeout", "1.5", "status")
        elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert f"127.0.0.1:{port}" in result.stderr
    assert elapsed < 45  # bounded: well before the pytest timeout


@pytest.mark.timeout(60)
def test_trust_adds_the_key_after_confirmation(sshd, tmp_path: Path) -> None:
    kh = tmp_path / "ssh" / "known_hosts"
    target = f"127.0.0.1:{sshd.port}"
    declined = run("trust", target, "--known-hosts", str(kh), input="n\n")
    assert declined.exit_code == 1
    assert host_fingerprint(sshd) in declined.output and "ssh-ed25519" in declined.output
    assert not kh.exists()
    accepted = run("trust", target, "--known-hosts", str(kh), input="y\n")
    assert accepted.exit_code == 0, accepted.output
    line = kh.read_text().strip()
    assert line.startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    assert oct(kh.parent.stat().st_mode & 0o777) == "0o700"
    # the workspace now opens with that file
    assert run(*ws_args(sshd, tmp_path, kh), "init").exit_code == 0
    again = json.loads(run("--json", "trust", target, "--known-hosts", str(kh), "--yes").stdout)
    assert again["known"] == "same" and again["added"] is False
    assert len(kh.read_text().splitlines()) == 1


@pytest.mark.timeout(60)
def test_trust_hashed_with_yes_and_sftp_url(sshd, tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    result = run("--json", "trust", sshd.url("/srv"), "--known-hosts", str(kh), "--yes", "--hash")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["fingerprint"] == host_fingerprint(sshd) and info["added"] is True
    assert kh.read_text().startswith("|1|")
    assert run(*ws_args(sshd, tmp_path, kh), "init").exit_code == 0


@pytest.mark.timeout(60)
def test_trust_warns_about_a_different_key(sshd, tmp_path: Path) -> None:
    other = generate_ed25519_keypair(tmp_path / "impostor", "impostor")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {other}\n")
    result = run("trust", f"[127.0.0.1]:{sshd.port}", "--known-hosts", str(kh), "--yes")
    assert result.exit_code == 1
    assert "DIFFERENT key" in result.stderr and "ssh-keygen -R" in result.stderr
    assert kh.read_text() == f"[127.0.0.1]:{sshd.port} {other}\n"  # left alone


@pytest.mark.timeout(60)
def test_trust_unreachable(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run("trust", f"127.0.0.1:{port}", "--known-hosts", str(tmp_path / "kh"), "--yes")
    assert result.exit_code == 1 and f"127.0.0.1:{port}" in result.stderr
