"""SFTP over an OpenSSH `ssh -s sftp` subprocess, sharing one connection (ControlMaster).

Why: every `mavps` CLI call is a fresh process. With paramiko each one pays the
whole SSH set-up (~250 ms at 20 ms RTT, ~12 round trips) plus the paramiko
import. Here the first call starts a background OpenSSH master
(ControlPersist) and later calls open a new session over it: SFTP is reached
in a fraction of that. It also brings the user's whole ~/.ssh/config
(ProxyJump, Match, certificates, agents) as ssh itself reads it.

The batching layer is unchanged: paramiko's `SFTPClient` speaks the protocol
over any object with send/recv/settimeout/close, which `SSHPipe` provides.
`ssh` runs with BatchMode (it never prompts) and StrictHostKeyChecking=yes
(an unknown or changed host key is refused by ssh itself); every wait here is
bounded. A master is shared only by calls with the same identity file,
known_hosts and ssh config, so a different key never rides on a connection
authenticated with another one.
"""
from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import pwd
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time
from typing import IO, Any

from ..errors import ConfigError, TransportError
from . import ssh_errors as say
from .sftp import Endpoint, SFTPTransport, paramiko  # paramiko without invoke

CONTROL_PERSIST = 600  # seconds an idle master stays up
_SOCKET_MAX = 100  # sun_path is 108 bytes; ssh appends a random suffix while binding


class SSHPipe:
    """The stdin/stdout of an `ssh -s sftp` process, shaped like a socket for paramiko."""

    def __init__(self, proc: subprocess.Popen, stderr: IO[bytes]) -> None:
        self.proc = proc
        self.stderr = stderr
        assert proc.stdin is not None and proc.stdout is not None
        self._in = proc.stdin.fileno()
        self._out = proc.stdout.fileno()
        os.set_blocking(self._in, False)
        self._timeout: float | None = None
        self.closed = False

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def get_name(self) -> str:
        return "openssh"

    def _wait(self, read: bool) -> None:
        if self.closed:
            raise EOFError("ssh connection closed")
        fds = ([self._out], []) if read else ([], [self._in])
        ready = select.select(fds[0], fds[1], [], self._timeout)
        if not (ready[0] or ready[1]):
            raise socket.timeout("ssh did not answer in time")

    def send(self, data: bytes) -> int:
        while True:
            self._wait(read=False)
            try:
                return os.write(self._in, data)
            except BlockingIOError:  # select said writable, but another writer filled the pipe
                continue

    def recv(self, n: int) -> bytes:
        self._wait(read=True)
        return os.read(self._out, n)

    def stderr_text(self) -> str:
        """What ssh said on stderr (its errors; never secrets), as one line."""
        try:
            self.stderr.seek(0)
            text = self.stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        lines = [ln.strip() for ln in text.replace("\r", "\n").split("\n") if ln.strip()]
        return " ".join(ln.strip("@ ") for ln in lines
                        if ln.strip("@") and not ln.startswith("Pseudo-terminal"))

    def close(self) -> None:
        """End the session: EOF to ssh, then terminate and kill, each wait bounded.

        Every request has had its reply by now, so ssh is not left to close the channel itself (a round trip
        to the server and back): it is told to stop at once, and the master closes the channel."""
        if self.closed:
            return
        self.closed = True
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        for step in (self.proc.terminate, self.proc.kill):
            if step is not None:
                try:
                    step()
                except OSError:
                    pass
            try:
                self.proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            self.stderr.close()
        except OSError:
            pass


def _ssh_binary() -> str:
    found = shutil.which("ssh")
    if not found:
        raise TransportError("ssh = openssh needs the OpenSSH client (`ssh`) on PATH; install openssh-client "
                             "or use ssh = paramiko")
    return os.path.abspath(found)


def _private_dir(path: str) -> str | None:
    """`path` created 0700 and owned by us, or None if that is not possible."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
        if st.st_uid != os.getuid():
            return None
        if st.st_mode & 0o077:
            os.chmod(path, 0o700)
        return path
    except OSError:
        return None


def control_dir() -> str:
    """Where master sockets live: MAVPS_SSH_CONTROL_DIR, $XDG_RUNTIME_DIR/mavps-ssh,
    ~/.cache/mavps/ssh, else /tmp/mavps-ssh-UID; the path must stay short."""
    explicit = os.environ.get("MAVPS_SSH_CONTROL_DIR")
    candidates = [explicit] if explicit else []
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        candidates.append(os.path.join(xdg, "mavps-ssh"))
    candidates.append(os.path.expanduser("~/.cache/mavps/ssh"))
    candidates.append(os.path.join(tempfile.gettempdir(), f"mavps-ssh-{os.getuid()}"))
    for cand in candidates:
        # "/mavps-" + 40 (%C) + "-" + 8 (settings tag)
        if cand and len(os.fsencode(cand)) + 56 < _SOCKET_MAX and _private_dir(cand):
            return cand
    raise TransportError("no private, short directory for the ssh control socket: set MAVPS_SSH_CONTROL_DIR")


def _passwd_home() -> str | None:
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return None


def own_files(known_hosts: str | None, ssh_config: str | None) -> tuple[str, str | None]:
    """The known_hosts file and ssh config this call uses, as mavps names them everywhere (`~` is $HOME, as
    for paramiko and `mavps trust`). `ssh` itself takes `~` from the passwd entry and ignores $HOME, so
    where the two differ the files under $HOME are handed to it explicitly: it then reads the config and
    checks the known_hosts file that mavps names in its messages, not another home's."""
    known = os.path.expanduser(known_hosts or "~/.ssh/known_hosts")
    if ssh_config:
        return known, os.path.expanduser(ssh_config)
    home = os.path.expanduser("~")
    if home == "~" or os.path.realpath(home) == os.path.realpath(_passwd_home() or home):
        return known, None  # ssh's own default (~/.ssh/config, then /etc/ssh/ssh_config) is the same file
    config = os.path.join(home, ".ssh", "config")
    return known, config if os.path.isfile(config) else os.devnull


def ssh_args(host: str, port: int | None, user: str | None, *, identity_file: str | None,
             known_hosts: str | None, ssh_config: str | None, connect_timeout: float,
             control: str) -> list[str]:
    """The ssh options shared by `ssh -G` and the session (no destination, no command)."""
    known_hosts, ssh_config = own_files(known_hosts, ssh_config)
    tag = hashlib.sha256(repr((identity_file, known_hosts, ssh_config)).encode()).hexdigest()[:8]
    args = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={max(1, math.ceil(connect_timeout))}",
            "-o", "ControlMaster=auto", "-o", f"ControlPath={control}/mavps-%C-{tag}",
            "-o", f"ControlPersist={CONTROL_PERSIST}", "-o", "ServerAliveInterval=15",
            "-o", "LogLevel=ERROR"]
    if ssh_config:
        args[:0] = ["-F", ssh_config]
    if identity_file:
        args += ["-i", os.path.expanduser(identity_file), "-o", "IdentitiesOnly=yes"]
    args += ["-o", f"UserKnownHostsFile={known_hosts}"]
    if port:
        args += ["-p", str(int(port))]
    if user:
        args += ["-l", user]
    return args


def _resolve(ssh: str, args: list[str], host: str, path: str, timeout: float) -> tuple[Endpoint, str]:
    """Endpoint (after ssh's own config) and the control socket path, from `ssh -G` (no network)."""
    try:
        out = subprocess.run([ssh, "-G", *args, "--", host], capture_output=True, timeout=timeout,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TransportError(f"cannot run ssh -G for {host}: {exc}") from None
    if out.returncode != 0:
        msg = out.stderr.decode("utf-8", "replace").strip()[-500:]
        raise TransportError(f"ssh cannot use its configuration for {host}: {msg}")
    conf: dict[str, str] = {}
    for line in out.stdout.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(" ")
        conf.setdefault(key.lower(), value)
    endpoint = Endpoint(host=conf.get("hostname", host), port=int(conf.get("port", "22")),
                        user=conf.get("user"), path=path, alias=host)
    return endpoint, conf.get("controlpath", "")


def _resolve_cached(ssh: str, args: list[str], host: str, path: str, timeout: float,
                    control: str) -> tuple[Endpoint, str]:
    """`_resolve`, its answer kept beside the master sockets (a private directory) while the ssh binary and
    every config file it reads (Include'd ones too) are unchanged, for at most CONTROL_PERSIST seconds. Why:
    `ssh -G` is a process start (~10-20 ms) on every call. A config whose answer may change by itself
    (`Match exec`, `Match localnetwork`) is not cached."""
    stamp = _config_stamp(ssh, args)
    cache = os.path.join(control, f"ssh-G-{hashlib.sha256(repr((ssh, args, host)).encode()).hexdigest()[:16]}")
    if stamp is not None:
        hit = _cached(cache, stamp)
        if hit is not None:
            return Endpoint(host=hit["host"], port=int(hit["port"]), user=hit["user"], path=path, alias=host), \
                hit["control"]
    endpoint, sock = _resolve(ssh, args, host, path, timeout)
    if stamp is not None:
        rec = {"stamp": stamp, "at": time.time(), "host": endpoint.host, "port": endpoint.port,
               "user": endpoint.user, "control": sock}
        try:
            tmp = f"{cache}.{os.getpid()}.tmp"
            with open(tmp, "w") as fh:
                json.dump(rec, fh)
            os.replace(tmp, cache)
        except OSError:
            pass  # no cache: the next call runs ssh -G again
    return endpoint, sock


def _cached(cache: str, stamp: list[Any]) -> dict[str, Any] | None:
    try:
        with open(cache) as fh:
            rec = json.load(fh)
        fresh = rec["stamp"] == stamp and 0 <= time.time() - float(rec["at"]) < CONTROL_PERSIST
        ok = fresh and isinstance(rec["host"], str) and isinstance(rec["control"], str)
        return rec if ok and isinstance(rec["port"], int) and (rec["user"] is None or isinstance(rec["user"], str)) \
            else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


_VOLATILE = re.compile(r"^\s*match\b.*\b(exec|localnetwork)\b", re.I | re.M)
_INCLUDE = re.compile(r"^\s*include\s+(.+)$", re.I | re.M)


def _config_stamp(ssh: str, args: list[str]) -> list[Any] | None:
    """What `ssh -G`'s answer depends on, as (path, mtime, size) of the binary and the config files read (and
    of the directories an Include globs in); None when a config has a `Match` whose answer can change."""
    home = _passwd_home() or os.path.expanduser("~")
    if "-F" in args:
        configs = [args[args.index("-F") + 1]]
    else:
        configs = [os.path.join(home, ".ssh", "config"), "/etc/ssh/ssh_config"]
    stamp: list[Any] = [_stat(ssh)]
    todo, seen = list(configs), set()
    while todo:
        path = todo.pop(0)
        if path in seen or len(seen) > 64:
            continue
        seen.add(path)
        stamp.append(_stat(path))
        try:
            with open(path, "rb") as fh:
                text = fh.read(1 << 20).decode("utf-8", "replace")
        except OSError:
            continue
        if _VOLATILE.search(text):
            return None
        base = "/etc/ssh" if path.startswith("/etc/ssh/") else os.path.join(home, ".ssh")  # as ssh_config(5)
        for pattern in (p for line in _INCLUDE.findall(text) for p in line.split()):
            pattern = os.path.join(base, os.path.expanduser(pattern.strip('"')))
            stamp.append(_stat(os.path.dirname(pattern)))
            todo += sorted(glob.glob(pattern))
    return stamp


def _stat(path: str) -> list[Any]:
    try:
        st = os.stat(path)
        return [path, st.st_mtime_ns, st.st_size, st.st_ino]
    except OSError:
        return [path, None]


def _error(pipe: SSHPipe, where: str, host: str, identity_file: str | None, known: str,
           timeout: float, why: str, port: int = 22) -> Exception:
    """What ssh printed, classified into the words every stack uses (ssh_errors)."""
    full = pipe.stderr_text()
    low = full.lower()
    said = full[-600:]
    if "remote host identification has changed" in low:
        offered = re.search(r"The fingerprint for the (\S+) key sent by the remote host is\s+(\S+?)\.?(\s|$)", full)
        key = f"{offered.group(1)} {offered.group(2)}" if offered else ""
        return say.host_key_changed(host, host, port, known, key)
    if "host key verification failed" in low or "no matching host key" in low:
        return say.host_key_unknown(host, port, known, said=said)
    if "permission denied" in low:
        return say.auth_failed(where, identity_file or "ssh's agent and default keys", said)
    if "connection refused" in low:
        return say.refused(where)
    if "timed out" in low or why == "timeout":
        return say.unreachable(where, timeout, said)
    return say.other(where, f"SFTP over ssh failed ({why}){f': {said}' if said else ''}")


def open_openssh(host: str, port: int | None, user: str | None, path: str, *,
                 identity_file: str | None = None, known_hosts: str | None = None,
                 ssh_config: str | None = None, connect_timeout: float = 10.0,
                 reply_timeout: float = 30.0) -> SFTPTransport:
    """An SFTPTransport over `ssh -s sftp`, reusing (or starting) a ControlMaster."""
    if host.startswith("-") or (user or "").startswith("-"):
        raise ConfigError(f"bad host or user in workspace URL: {host!r}")
    ssh = _ssh_binary()
    control = control_dir()
    args = ssh_args(host, port, user, identity_file=identity_file, known_hosts=known_hosts,
                    ssh_config=ssh_config, connect_timeout=connect_timeout, control=control)
    endpoint, _socket = _resolve_cached(ssh, args, host, path, max(5.0, connect_timeout), control)
    where = f"{endpoint.user + '@' if endpoint.user else ''}{endpoint.host}:{endpoint.port}"
    known = own_files(known_hosts, ssh_config)[0]  # the very file ssh was told to check
    stderr = tempfile.TemporaryFile()  # a file, not a pipe: a backgrounded master could hold a pipe open
    try:
        proc = subprocess.Popen([ssh, *args, "-s", "--", host, "sftp"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr, bufsize=0, start_new_session=True)
    except OSError as exc:
        stderr.close()
        raise TransportError(f"cannot start {ssh}: {exc.strerror}") from None
    pipe = SSHPipe(proc, stderr)
    # The whole set-up (TCP, auth, master, SFTP version) within connect_timeout, plus a
    # little so that ssh's own ConnectTimeout message is the one reported.
    pipe.settimeout(connect_timeout + 2.0)
    try:
        sftp = paramiko.SFTPClient(pipe)
    except (socket.timeout, TimeoutError):
        err = _error(pipe, where, endpoint.alias, identity_file, known, connect_timeout, "timeout", endpoint.port)
        pipe.close()
        raise err from None
    except (EOFError, OSError, paramiko.SSHException) as exc:
        try:  # ssh has exited or is exiting: let it finish writing why
            proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass
        err = _error(pipe, where, endpoint.alias, identity_file, known, connect_timeout,
                     f"ssh exited with {proc.returncode}" if proc.returncode is not None else str(exc),
                     endpoint.port)
        pipe.close()
        raise err from None
    pipe.settimeout(reply_timeout)
    transport = SFTPTransport(None, sftp, endpoint)
    transport.control_path = _socket  # type: ignore[attr-defined]  # for `ssh -O exit` and tests
    return transport
