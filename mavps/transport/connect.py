"""Open an SFTP session the way a person's `ssh` would: ~/.ssh/config, the
agent and default keys, known_hosts always checked, every wait bounded."""
from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import time
from typing import Any

from ..errors import HostKeyError, TransportError
from . import ssh_errors as say
from .sftp import Endpoint, SFTPTransport, allow_match_exec, paramiko  # paramiko without invoke


def fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint  # "SHA256:..." like ssh-keygen -l


def resolve(host: str, port: int | None, user: str | None, path: str,
            identity_file: str | None, ssh_config: str | None) -> Endpoint:
    """Apply ~/.ssh/config (HostName, User, Port, IdentityFile, ProxyCommand)."""
    cfg_path = os.path.expanduser(ssh_config or "~/.ssh/config")
    entry: dict[str, Any] = {}
    if os.path.isfile(cfg_path):
        try:
            entry = _lookup(cfg_path, host)
        except Exception as exc:  # a broken ssh config is the user's to fix
            raise TransportError(f"cannot read {cfg_path}: {exc}") from None
    files: list[str] = []
    if identity_file:
        files.append(os.path.expanduser(identity_file))
    files += [os.path.expanduser(f) for f in entry.get("identityfile", []) if os.path.isfile(os.path.expanduser(f))]
    return Endpoint(
        host=entry.get("hostname", host),
        port=port or int(entry.get("port", 22)),
        user=user or entry.get("user") or _local_user(),
        path=path,
        identity_files=tuple(dict.fromkeys(files)),
        proxy_command=entry.get("proxycommand"),
        alias=host,
    )


def _lookup(cfg_path: str, host: str) -> dict[str, Any]:
    """paramiko's reading of the ssh config for `host`; `Match exec` lines get the `invoke` they need."""
    with open(cfg_path) as fh:  # as paramiko.SSHConfig.from_path reads it
        text = fh.read()
    if re.search(r"\bexec\b", text, re.I):
        allow_match_exec()
    return paramiko.SSHConfig.from_text(text).lookup(host)


def _local_user() -> str:
    import getpass

    return getpass.getuser()


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """Never trust a host silently: say what its key is and how to trust it."""

    def __init__(self, known_hosts: str, endpoint: Endpoint) -> None:
        self.known_hosts = known_hosts
        self.endpoint = endpoint

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        e = self.endpoint
        raise say.host_key_unknown(e.alias or e.host, e.port, self.known_hosts, f"{key.get_name()} {fingerprint(key)}")


def _open_socket(endpoint: Endpoint, timeout: float) -> Any:
    """The connection to sshd, with TCP_NODELAY from the start: the handshake and
    authentication are several small packets each way, which Nagle would hold back."""
    if endpoint.proxy_command:
        return paramiko.ProxyCommand(endpoint.proxy_command)
    sock = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    return sock


def open_sftp(endpoint: Endpoint, known_hosts: str | None, connect_timeout: float,
              reply_timeout: float, passphrase: str | None = None) -> SFTPTransport:
    # paramiko logs its own tracebacks for failures we report ourselves, in one line.
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    known = os.path.expanduser(known_hosts or "~/.ssh/known_hosts")
    client = paramiko.SSHClient()
    if os.path.isfile(known):
        try:
            client.load_host_keys(known)
        except Exception as exc:
            raise HostKeyError(f"cannot read known_hosts file {known}: {exc}") from None
    client.set_missing_host_key_policy(_RefuseUnknown(known, endpoint))
    try:
        sock = _open_socket(endpoint, connect_timeout)
        client.connect(
            endpoint.host,
            port=endpoint.port,
            username=endpoint.user,
            key_filename=list(endpoint.identity_files) or None,
            passphrase=passphrase,
            timeout=connect_timeout,
            banner_timeout=connect_timeout,
            auth_timeout=connect_timeout,
            channel_timeout=connect_timeout,
            allow_agent=True,
            look_for_keys=not endpoint.identity_files,
            sock=sock,
        )
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(reply_timeout)
    except HostKeyError:
        client.close()
        raise
    except Exception as exc:
        client.close()
        raise _mapped(exc, endpoint, known, connect_timeout) from None
    return SFTPTransport(client, sftp, endpoint)


def open_preferring_openssh(host: str, port: int | None, user: str | None, path: str, *,
                            identity_file: str | None, known_hosts: str | None, ssh_config: str | None,
                            connect_timeout: float, reply_timeout: float,
                            passphrase: str | None = None) -> SFTPTransport:
    """The hooks' default (`ssh` not set): SFTP over OpenSSH's shared master where an `ssh` client is on PATH, else
    paramiko; also paramiko, in this same call, when ssh cannot be used (it fails to start, to read its config, to
    authenticate in BatchMode: a key with a passphrase, say). Nothing is remembered: each call tries ssh first.

    Not retried with paramiko: a refused host key (both check the same known_hosts) and an ssh that used up the
    whole connect timeout (an unreachable host would make paramiko wait as long again)."""
    if shutil.which("ssh"):
        from .openssh import open_openssh

        started = time.monotonic()
        try:
            return open_openssh(host, port, user, path, identity_file=identity_file, known_hosts=known_hosts,
                                ssh_config=ssh_config, connect_timeout=connect_timeout, reply_timeout=reply_timeout)
        except HostKeyError:
            raise
        except TransportError:
            if time.monotonic() - started >= connect_timeout:
                raise
    endpoint = resolve(host, port, user, path, identity_file, ssh_config)
    return open_sftp(endpoint, known_hosts, connect_timeout, reply_timeout, passphrase)


def _no_key(exc: BaseException) -> bool:
    """paramiko's "No authentication methods available": it had no key and no agent to offer."""
    return "no authentication methods available" in str(exc).lower()


def _mapped(exc: BaseException, endpoint: Endpoint, known: str, timeout: float) -> TransportError:
    """paramiko's failure, in the words every stack uses (ssh_errors)."""
    where = f"{endpoint.user}@{endpoint.host}:{endpoint.port}"
    alias = endpoint.alias or endpoint.host
    if isinstance(exc, paramiko.BadHostKeyException):
        return say.host_key_changed(alias, endpoint.host, endpoint.port, known,
                                    f"{exc.key.get_name()} {fingerprint(exc.key)}", fingerprint(exc.expected_key))
    if isinstance(exc, paramiko.AuthenticationException) or _no_key(exc):
        tried = ", ".join(endpoint.identity_files) or "the SSH agent and default keys (~/.ssh/id_*)"
        return say.auth_failed(where, tried, str(exc), offered=not _no_key(exc))
    if isinstance(exc, (paramiko.ssh_exception.NoValidConnectionsError, ConnectionRefusedError)):
        return say.refused(where)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return say.unreachable(where, timeout)
    if isinstance(exc, (OSError, EOFError, paramiko.SSHException)):
        return say.other(where, str(exc))
    raise exc
