"""Shared fixtures: one real OpenSSH sshd per session, and every workspace
test run against both transports (local directory and SFTP)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.sshd import SSHServer, Unsupported  # noqa: E402

REQUIRE_SSHD = os.environ.get("MAVPS_REQUIRE_SSHD") == "1"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MAVPS_* from the developer's shell, no config file, no ssh config (CLI tests)."""
    for key in list(os.environ):
        if key.startswith("MAVPS_"):
            monkeypatch.delenv(key)
    empty = tmp_path / "empty-config.yaml"
    empty.write_text("")
    monkeypatch.setenv("MAVPS_CONFIG", str(empty))
    monkeypatch.setenv("MAVPS_SSH_CONFIG", os.devnull)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    yield from running(SSHServer(tmp_path_factory.mktemp("sshd")), "SFTP")


def running(server: SSHServer, what: str) -> Iterator[SSHServer]:
    """Start a test sshd for a fixture: skip loudly where it cannot run, fail if CI requires it."""
    try:
        server.start()
    except Unsupported as exc:
        if REQUIRE_SSHD:
            pytest.fail(f"MAVPS_REQUIRE_SSHD=1 but the {what} sshd cannot run: {exc}")
        pytest.skip(f"{what} TESTS SKIPPED: {exc} (install openssh-server; CI sets MAVPS_REQUIRE_SSHD=1)")
    try:
        yield server
    finally:
        server.stop()


def sftp_settings(server: SSHServer) -> dict:
    """Settings that reach the test sshd and nothing of the user's own ssh setup."""
    return {"identity_file": server.client_key, "known_hosts": server.known_hosts, "ssh_config": os.devnull}


@pytest.fixture(scope="session")
def ssh_control() -> Iterator[Path]:
    """A private, short control directory for the OpenSSH transport's masters; every master started in the
    session is ended at its end (ControlPersist would keep it 10 minutes)."""
    import shutil
    import subprocess
    import tempfile
    import time

    path = Path(tempfile.mkdtemp(prefix="mvssh"))
    old = os.environ.get("MAVPS_SSH_CONTROL_DIR")
    os.environ["MAVPS_SSH_CONTROL_DIR"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("MAVPS_SSH_CONTROL_DIR", None)
        else:
            os.environ["MAVPS_SSH_CONTROL_DIR"] = old
        for sock in path.glob("mavps-*"):
            subprocess.run(["ssh", "-F", os.devnull, "-o", f"ControlPath={sock}", "-O", "exit", "x"],
                           capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while any(path.glob("mavps-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(path, ignore_errors=True)


class Target:
    """Where a test's workspace lives, and how to open it from any process.

    kind: "local" (a directory), "sftp" (paramiko to the test sshd) or "openssh" (SFTP over the `ssh`
    command with a shared ControlMaster, to the same sshd)."""

    def __init__(self, kind: str, path: Path, server: SSHServer | None) -> None:
        self.kind = kind
        self.path = path  # the same directory, seen locally
        self.server = server
        self.url = server.url(str(path)) if server else str(path)
        self.settings = sftp_settings(server) if server else {}
        if kind == "openssh":
            self.settings["ssh"] = "openssh"
        elif kind == "sftp":  # said, so that a hook run with these settings stays on paramiko (its default: openssh)
            self.settings["ssh"] = "paramiko"

    def open(self, agent: str | None = None, **settings):
        from mavps import Workspace

        return Workspace.open(self.url, agent=agent, **{**self.settings, **settings})


@pytest.fixture(params=["local", pytest.param("sftp", marks=pytest.mark.sftp),
                        pytest.param("openssh", marks=pytest.mark.sftp)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    server = request.getfixturevalue("sshd") if request.param != "local" else None
    if request.param == "openssh":
        import shutil

        if shutil.which("ssh") is None:
            if REQUIRE_SSHD:
                pytest.fail("MAVPS_REQUIRE_SSHD=1 but there is no OpenSSH client (ssh) for the openssh transport")
            pytest.skip("OPENSSH TRANSPORT TESTS SKIPPED: no ssh client")
        request.getfixturevalue("ssh_control")
    return Target(request.param, tmp_path / "ws", server)


@pytest.fixture
def open_ws(target: Target) -> Iterator[Callable]:
    opened = []

    def factory(agent: str | None = None, **settings):
        ws = target.open(agent, **settings)
        opened.append(ws)
        return ws

    yield factory
    for ws in opened:
        ws.close()


@pytest.fixture
def ws(open_ws: Callable):
    workspace = open_ws()
    workspace.init()
    return workspace
