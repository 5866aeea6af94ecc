"""A real, throw-away OpenSSH ``sshd`` for integration tests.

Why: mavps talks SFTP over paramiko to a VPS; mocking the server would hide
exactly the bugs we care about (host-key checking, auth, chroot, concurrency).
This module starts the distribution's ``sshd`` on 127.0.0.1 with generated
ed25519 keys, in a temp dir, without touching ``/etc/ssh``.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["SSHServer", "Unsupported", "find_sshd", "generate_ed25519_keypair"]

#: Where chroot jails are created. Every component of a ChrootDirectory must
#: be root-owned and not group/world-writable, so /tmp (1777) cannot be used.
CHROOT_BASE = Path("/var/lib/mavps-test-chroots")


class Unsupported(RuntimeError):
    """The requested setup is impossible here (e.g. a least-privilege user
    needs root to run ``useradd``); tests should skip on this."""


def find_sshd() -> str | None:
    """Absolute path of the sshd binary, or None if OpenSSH server is absent."""
    found = shutil.which("sshd")
    if found:
        return os.path.abspath(found)
    for cand in ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"):
        if os.access(cand, os.X_OK):
            return cand
    return None


def generate_ed25519_keypair(private_path: Path, comment: str) -> str:
    """Write an unencrypted OpenSSH ed25519 private key (mode 0600, since
    sshd and ssh refuse group/world-readable keys) and ``<path>.pub``.
    Returns the public key line."""
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode() + f" {comment}"
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(priv)
    os.chmod(private_path, 0o600)
    Path(f"{private_path}.pub").write_text(pub + "\n")
    return pub


def _free_port() -> int:
    """A currently free loopback port (racy by nature; start() retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sshd_version(sshd: str) -> tuple[int, int]:
    """OpenSSH (major, minor); options such as PerSourcePenalties only exist
    in newer releases and an unknown option is fatal to sshd."""
    try:
        out = subprocess.run(
            [sshd, "-V"], capture_output=True, text=True, timeout=10
        )
        m = re.search(r"OpenSSH_(\d+)\.(\d+)", out.stderr + out.stdout)
        if m:
            return int(m.group(1)), int(m.group(2))
    except (OSError, subprocess.SubprocessError):
        pass
    return (0, 0)


def _account_locked(user: str) -> bool:
    """True if the shadow password starts with '!': with ``UsePAM no`` sshd
    refuses locked accounts even for public-key logins."""
    try:
        with open("/etc/shadow", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split(":")
                if parts[0] == user and len(parts) > 1:
                    return parts[1].startswith("!")
    except OSError:
        pass
    return False


def _descendant_levels(pid: int) -> list[list[int]]:
    """Descendants of *pid* by depth (children, grandchildren, ...), from
    Linux /proc, best effort. sshd's per-connection children call setsid(),
    so killpg would miss them."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The comm field may contain spaces/parens: parse after the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    levels: list[list[int]] = []
    level = children.get(pid, [])
    while level:
        levels.append(level)
        level = [c for p in level for c in children.get(p, [])]
    return levels


class SSHServer:
    """A real OpenSSH sshd on 127.0.0.1:<free port>, key-only auth.

    Attributes after :meth:`start`: ``host``, ``port``, ``user``,
    ``client_key`` / ``client_pub`` (ed25519 key for ``user``), ``host_pub``
    (public host key line), ``known_hosts`` (file with ``[127.0.0.1]:PORT``).

    With ``sftp_only_user="agent"`` (root only, else :class:`Unsupported`)
    a least-privilege account is also created: Unix user, key-only,
    ``ForceCommand internal-sftp``, chrooted to ``sftp_only_root`` whose only
    writable directory is ``/ws`` (host path ``sftp_only_ws``); its key is
    ``sftp_only_key``. The user is deleted again by :meth:`stop` if this
    instance created it.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        tmpdir: str | os.PathLike[str],
        extra_config: str = "",
        *,
        sftp_only_user: str | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.tmpdir = Path(tmpdir)
        self.extra_config = extra_config
        self.start_timeout = start_timeout
        self.user: str = pwd.getpwuid(os.getuid()).pw_name
        self.port: int = 0
        self.sshd: str | None = find_sshd()
        self.client_key: str = str(self.tmpdir / "client_ed25519")
        self.client_pub: str = ""
        self.host_key: str = str(self.tmpdir / "ssh_host_ed25519_key")
        self.host_pub: str = ""
        self.known_hosts: str = str(self.tmpdir / "known_hosts")
        self.authorized_keys: str = str(self.tmpdir / "authorized_keys")
        self.config_path: str = str(self.tmpdir / "sshd_config")
        self.log_path: str = str(self.tmpdir / "sshd.log")
        self.pid_file: str = str(self.tmpdir / "sshd.pid")
        self.sftp_only_user: str | None = sftp_only_user
        self.sftp_only_key: str | None = None
        self.sftp_only_root: str | None = None
        self.sftp_only_ws: str | None = None
        self._sftp_only_base: Path | None = None
        self._created_user = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: object | None = None

    # ------------------------------------------------------------------ api
    def url(self, path: str = "/") -> str:
        """``sftp://user@127.0.0.1:PORT<path>`` for the main user."""
        return f"sftp://{self.user}@{self.host}:{self.port}{path}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log_text(self) -> str:
        """sshd's stderr so far (for assertion messages)."""
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> SSHServer:
        """Generate keys/config, launch ``sshd -D -e -f cfg`` and wait until
        it answers with an SSH banner. Raises RuntimeError with sshd's stderr
        if it dies; :class:`Unsupported` if sshd or root is missing."""
        if self.running:
            return self
        if self.sshd is None:
            raise Unsupported("sshd (openssh-server) not found")
        if self.sftp_only_user and os.geteuid() != 0:
            raise Unsupported(
                "sftp_only_user needs root (useradd, root-owned chroot)"
            )
        self.tmpdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # Privilege-separation dir; sshd exits "Missing privilege
            # separation directory" without it when run as root.
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.host_pub = generate_ed25519_keypair(Path(self.host_key), "mavps-test-host")
        self.client_pub = generate_ed25519_keypair(
            Path(self.client_key), f"mavps-test-client@{self.user}"
        )
        Path(self.authorized_keys).write_text(self.client_pub + "\n")
        os.chmod(self.authorized_keys, 0o600)
        if self.sftp_only_user:
            self._setup_sftp_only_user(self.sftp_only_user)

        last_err = ""
        for _attempt in range(3):
            self.port = _free_port()
            self._write_config()
            try:
                self._launch()
                break
            except RuntimeError as exc:
                last_err = str(exc)
                if "Address already in use" not in last_err:
                    self.stop()
                    raise
        else:
            self.stop()
            raise RuntimeError(f"sshd could not bind a port: {last_err}")
        key_type, key_b64 = self.host_pub.split()[:2]
        Path(self.known_hosts).write_text(
            f"[{self.host}]:{self.port} {key_type} {key_b64}\n"
        )
        return self

    def stop(self) -> None:
        """Terminate sshd and its per-connection children (bounded: TERM,
        then KILL after 5 s), reap it, undo the sftp-only user. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            self._terminate(proc)
        if self._log_fh is not None:
            self._log_fh.close()  # type: ignore[attr-defined]
            self._log_fh = None
        self._teardown_sftp_only_user()

    def __enter__(self) -> SSHServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ internals
    def _config_text(self) -> str:
        use_pam = "yes" if _account_locked(self.user) else "no"
        lines = [
            "# generated by tests/support/sshd.py",
            f"ListenAddress {self.host}",
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.pid_file}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            # The temp dir lives in /tmp; StrictModes would reject it.
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "HostbasedAuthentication no",
            f"UsePAM {use_pam}",
            "PermitRootLogin prohibit-password",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "LogLevel ERROR",
            # Enough for 32+ simultaneous clients (default is 10:30:100).
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            "Subsystem sftp internal-sftp",
        ]
        if _sshd_version(self.sshd or "") >= (9, 8):
            # Newer sshd penalises a source address for aborted/failed
            # connections; tests deliberately cut connections from 127.0.0.1.
            lines.append("PerSourcePenalties no")
        text = "\n".join(lines) + "\n"
        if self.extra_config.strip():
            text += "\n# extra_config\n" + self.extra_config.strip() + "\n"
        if self.sftp_only_user and self._sftp_only_base is not None:
            text += (
                f"\nMatch User {self.sftp_only_user}\n"
                f"    AuthorizedKeysFile {self._sftp_only_base / 'authorized_keys'}\n"
                f"    ChrootDirectory {self.sftp_only_root}\n"
                "    ForceCommand internal-sftp\n"
                "    AuthenticationMethods publickey\n"
                "    PermitTTY no\n"
                "    AllowTcpForwarding no\n"
                "    AllowAgentForwarding no\n"
                "    AllowStreamLocalForwarding no\n"
                "    PermitTunnel no\n"
                "    X11Forwarding no\n"
            )
        return text

    def _write_config(self) -> None:
        Path(self.config_path).write_text(self._config_text())

    def _launch(self) -> None:
        assert self.sshd is not None
        if self._log_fh is not None:
            self._log_fh.close()  # type: ignore[attr-defined]
        log_fh = open(self.log_path, "ab")
        self._log_fh = log_fh
        log_start = log_fh.tell()
        # -D: stay in foreground (we own the pid); -e: log to stderr (file,
        # not a pipe, so a chatty sshd can never block on a full pipe).
        proc = subprocess.Popen(
            [self.sshd, "-D", "-e", "-f", self.config_path],
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=log_fh,
            start_new_session=True,
        )
        self._proc = proc
        deadline = time.monotonic() + self.start_timeout
        while True:
            if proc.poll() is not None:
                self._proc = None
                with open(self.log_path, "rb") as fh:
                    fh.seek(log_start)
                    err = fh.read().decode(errors="replace")
                raise RuntimeError(
                    f"sshd exited with {proc.returncode}: {err.strip()}"
                )
            if self._banner_ok():
                return
            if time.monotonic() > deadline:
                self._proc = None
                self._terminate(proc)
                raise RuntimeError(
                    f"sshd not accepting on {self.host}:{self.port} after "
                    f"{self.start_timeout}s: {self.log_text().strip()}"
                )
            time.sleep(0.05)

    def _banner_ok(self) -> bool:
        """Connect and read the identification string: proves it is *our*
        sshd listening, not just some port being bound."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as s:
                return s.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes]) -> None:
        """Deepest descendants first, each level while its parent is alive to
        reap it, then the listener itself; TERM, then KILL after a bounded
        wait. Note: sshd's per-session child (``user@internal-sftp``) is
        orphaned to init whenever a client disconnects, even while sshd
        runs; reaping those is init's job, not ours."""
        deadline = time.monotonic() + 3
        for level in reversed(_descendant_levels(proc.pid)):
            for pid in level:
                try:
                    os.kill(pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
            for pid in level:
                while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
                    time.sleep(0.01)
                if os.path.exists(f"/proc/{pid}"):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
        try:
            proc.terminate()
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def _setup_sftp_only_user(self, name: str) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,30}", name):
            raise ValueError(f"bad user name {name!r}")
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        if not os.access(useradd, os.X_OK):
            raise Unsupported("useradd not available")
        os.makedirs(CHROOT_BASE, mode=0o755, exist_ok=True)
        os.chmod(CHROOT_BASE, 0o755)
        base = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=CHROOT_BASE))
        os.chmod(base, 0o755)
        self._sftp_only_base = base
        root = base / "root"
        root.mkdir(mode=0o755)
        os.chmod(root, 0o755)  # root-owned, not group/world-writable
        self.sftp_only_root = str(root)
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            nologin = shutil.which("nologin") or "/usr/sbin/nologin"
            # Password '*' = no password but *not* locked ('!'), which
            # sshd with UsePAM no would refuse even for key logins.
            subprocess.run(
                [useradd, "--no-create-home", "--home-dir", "/ws",
                 "--shell", nologin, "--password", "*", "--user-group", name],
                check=True, capture_output=True, timeout=30,
            )
            self._created_user = True
            pw = pwd.getpwnam(name)
        ws = root / "ws"
        ws.mkdir(mode=0o755)
        os.chown(ws, pw.pw_uid, pw.pw_gid)
        self.sftp_only_ws = str(ws)
        key = base / "id_ed25519"
        pub = generate_ed25519_keypair(key, f"mavps-test-{name}")
        self.sftp_only_key = str(key)
        # sshd reads AuthorizedKeysFile *as the target user*, so it must be
        # world-readable and outside the 0700 pytest temp dir.
        ak = base / "authorized_keys"
        ak.write_text(pub + "\n")
        os.chmod(ak, 0o644)

    def _teardown_sftp_only_user(self) -> None:
        if self._created_user and self.sftp_only_user:
            userdel = shutil.which("userdel") or "/usr/sbin/userdel"
            subprocess.run([userdel, self.sftp_only_user],
                           capture_output=True, timeout=30)
            self._created_user = False
        if self._sftp_only_base is not None:
            shutil.rmtree(self._sftp_only_base, ignore_errors=True)
            self._sftp_only_base = None
