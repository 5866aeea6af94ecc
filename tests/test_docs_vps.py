"""The docs are executable: the shell blocks of knowledge/06-vps-setup.md and of README's "Using a VPS"
run as written, in order, against a real sshd, building the very account they describe (user `mavps`,
chrooted, SFTP only) and then using it through the alias `myvps` and the workspace `sftp://myvps/ws`.

What the test changes, and nothing else: the paths the blocks create on the "VPS" (/srv/mavps,
/etc/ssh/authorized_keys.d, /etc/ssh/sshd_config) move under a temporary root; the host name becomes
127.0.0.1 with the test sshd's port; `sshd -t` checks the test sshd's config and `systemctl reload ssh`
reloads the test sshd (SIGHUP). `ssh` and `mavps` run from a PATH directory: `mavps` is this tree's, and
`ssh` is the real one told to use $HOME's ~/.ssh (it takes `~` from the passwd entry, not $HOME)."""
from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import REQUIRE_SSHD, running
from support.sshd import CHROOT_BASE, SSHServer

pytestmark = [pytest.mark.sftp, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "mavps"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(text: str) -> list[tuple[str, str]]:
    """(kind, body) of every fenced block with a kind: sh, sshd_config, ssh_config."""
    return [(kind, body) for kind, body in FENCE.findall(text) if kind in ("sh", "sshd_config", "ssh_config")]


def readme_vps_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Using a VPS")
    return text[start:text.index("\n## ", start + 1)]


def all_blocks() -> list[tuple[str, str]]:
    return blocks((ROOT / "knowledge" / "06-vps-setup.md").read_text()) + blocks(readme_vps_section())


def test_the_docs_have_the_blocks_this_test_runs():
    kinds = [k for k, _ in all_blocks()]
    assert kinds.count("sshd_config") == 1 and kinds.count("ssh_config") == 2 and kinds.count("sh") >= 5
    assert "--template task-instructions" in readme_vps_section()


@pytest.fixture
def vps(tmp_path: Path) -> Iterator[SSHServer]:
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        why = "needs root and useradd (it creates the account `mavps` as the docs say)"
        if REQUIRE_SSHD:
            pytest.fail(f"MAVPS_REQUIRE_SSHD=1 but the executable-docs test cannot run: {why}")
        pytest.skip(f"EXECUTABLE DOCS TEST SKIPPED: {why}")
    try:
        pwd.getpwnam(ACCOUNT)
        pytest.fail(f"a user {ACCOUNT!r} already exists here; this test creates (and removes) its own")
    except KeyError:
        pass
    try:
        yield from running(SSHServer(tmp_path / "sshd"), "EXECUTABLE DOCS")
    finally:
        subprocess.run(["userdel", ACCOUNT], capture_output=True, timeout=30)


def _tools(bindir: Path) -> None:
    """`mavps` from this tree; `ssh` reading $HOME's files (ssh itself would read the passwd home's)."""
    bindir.mkdir()
    (bindir / "mavps").write_text(f"#!/bin/sh\nexec {sys.executable} -m mavps \"$@\"\n")
    (bindir / "ssh").write_text(
        "#!/bin/bash\nargs=(-F \"$HOME/.ssh/config\" -o \"UserKnownHostsFile=$HOME/.ssh/known_hosts\")\n"
        "for k in \"$HOME\"/.ssh/*_ed25519; do [ -f \"$k\" ] && args+=(-i \"$k\"); done\n"
        f"exec {shutil.which('ssh')} \"${{args[@]}}\" \"$@\"\n")
    for tool in bindir.iterdir():
        tool.chmod(0o755)


def _reload(server: SSHServer) -> None:
    """`systemctl reload ssh` for the test sshd: SIGHUP (sshd re-executes itself with the new config and
    writes its pid file again once it listens)."""
    Path(server.pid_file).unlink(missing_ok=True)
    os.kill(server.pid, signal.SIGHUP)
    for _ in range(200):
        if Path(server.pid_file).exists() and server._banner_ok():
            return
        time.sleep(0.05)
    raise AssertionError(f"the test sshd did not come back after the reload: {server.log_text()}")


def test_the_vps_setup_and_readme_blocks_run_as_written(vps: SSHServer, tmp_path: Path):
    base = Path(tempfile.mkdtemp(prefix="docs-", dir=CHROOT_BASE))
    os.chmod(base, 0o755)  # every component of a chroot is root-owned and not writable by others
    home, admin, bindir = tmp_path / "home", tmp_path / "admin", tmp_path / "bin"
    home.mkdir()
    admin.mkdir()
    _tools(bindir)
    paths = {"/srv/mavps": f"{base}/srv/mavps", "/etc/ssh/authorized_keys.d": f"{base}/etc/ssh/authorized_keys.d",
             "/etc/ssh/sshd_config": vps.config_path}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAVPS_", "SSH_AUTH"))}
    env.update(HOME=str(home), PATH=f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}", PYTHONPATH=str(ROOT),
               MAVPS_CONFIG=os.devnull)
    said = []
    try:
        for kind, body in all_blocks():
            for old, new in paths.items():
                body = body.replace(old, new)
            if kind == "sshd_config":
                with open(vps.config_path, "a") as fh:
                    fh.write("\n" + body)
            elif kind == "ssh_config":
                body = body.replace("HostName vps.example.org", f"HostName {vps.host}\n    Port {vps.port}")
                assert body != body.replace(f"Port {vps.port}", "")
                (home / ".ssh" / "config").write_text(body)
            else:
                said.append(_run(body, vps, env, home, admin))
        queue = Path(paths["/srv/mavps"]) / "ws" / "task-queue.json"
        tasks = json.loads(queue.read_text())
        assert [t["description"] for t in tasks] == ["Create the User model"]
        assert pwd.getpwuid(queue.stat().st_uid).pw_name == ACCOUNT
        assert any("This service allows sftp connections only." in out for out in said)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run(body: str, server: SSHServer, env: dict, home: Path, admin: Path) -> str:
    """One shell block, stopping at its first failure; the admin's blocks run where the agent's .pub landed."""
    body = body.replace("sshd -t", f"{server.sshd} -t -f {server.config_path}")
    body = body.replace("systemctl reload ssh", "echo RELOAD-TEST-SSHD")
    pub = home / ".ssh" / "mavps_ed25519.pub"
    if pub.exists():
        shutil.copy(pub, admin / pub.name)  # "send the .pub file to the VPS admin"
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=admin, env=env, input="y\n",
                          capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"this block failed ({proc.returncode}):\n{body}\n--- output:\n{out}"
    if "RELOAD-TEST-SSHD" in proc.stdout:
        _reload(server)
    return out


DOCS = ["README.md", "CLAUDE.md", "TO_DO.md", "templates/mavps.yaml", "knowledge/06-vps-setup.md"]


def _epilogs() -> str:
    import click

    from mavps.cli import cli

    found = []

    def walk(cmd: click.Command) -> None:
        found.append(cmd.epilog or "")
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)
    walk(cli)
    return "\n".join(found)


def test_one_example_everywhere():
    """knowledge/06's alias, account and path: every VPS URL in the docs and the --help examples is under
    sftp://myvps/ws, and every ssh alias block uses the account mavps."""
    texts = {name: (ROOT / name).read_text() for name in DOCS}
    texts["--help examples"] = _epilogs()
    for name, text in texts.items():
        for url in re.findall(r"sftp://[^\s`'\")]+", text):
            if url.startswith("sftp://[") or "..." in url:
                continue  # the syntax, not an example
            assert url == "sftp://myvps/ws" or url.startswith("sftp://myvps/ws/"), f"{name}: {url}"
        for block in re.findall(r"^ *Host myvps\n((?: {4,}.*\n)+)", text, re.M):
            assert re.search(r"^\s*User mavps$", block, re.M), f"{name}: {block}"
    assert "--template task " not in texts["README.md"] + texts["CLAUDE.md"]


def test_to_do_refers_to_the_one_account_block():
    """TO_DO.md points at knowledge/06's commands instead of keeping a second copy that drifts."""
    to_do = (ROOT / "TO_DO.md").read_text()
    assert "knowledge/06-vps-setup.md" in to_do
    for line in ("Match User mavps", "ForceCommand internal-sftp", "useradd ", "chmod 750"):
        assert not re.search(rf"^\s*{re.escape(line)}", to_do, re.M), f"TO_DO.md copies {line!r}"
