"""Open an SFTP session the way a person's `ssh` would: ~/.ssh/config, the
agent and default keys, known_hosts always checked, every wait bounded."""
from __future__ import annotations

import logging
import os
import socket
from typing import Any

import paramiko

from ..errors import HostKeyError, TransportError
from .sftp import Endpoint, SFTPTransport


def fingerprint(key: paramiko.PKey) -> str:
    return key.fingerprint  # "SHA256:..." like ssh-keygen -l


def resolve(host: str, port: int | None, user: str | None, path: str,
            identity_file: str | None, ssh_config: str | None) -> Endpoint:
    """Apply ~/.ssh/config (HostName, User, Port, IdentityFile, ProxyCommand)."""
    cfg_path = os.path.expanduser(ssh_config or "~/.ssh/config")
    entry: dict[str, Any] = {}
    if os.path.isfile(cfg_path):
        try:
            entry = paramiko.SSHConfig.from_path(cfg_path).lookup(host)
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


def _local_user() -> str:
    import getpass

    return getpass.getuser()


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """Never trust a host silently: say what its key is and how to trust it."""

    def __init__(self, known_hosts: str) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyError(
            f"unknown host key for {hostname}: {key.get_name()} {fingerprint(key)} is not in "
            f"{self.known_hosts}. If that fingerprint is the server's, trust it with "
            f"`mavps trust {hostname}` (or `ssh-keyscan` into {self.known_hosts})"
        )


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
    client.set_missing_host_key_policy(_RefuseUnknown(known))
    where = f"{endpoint.user}@{endpoint.host}:{endpoint.port}"
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
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyError(
            f"HOST KEY CHANGED for {endpoint.host}: the server offered {exc.key.get_name()} "
            f"{fingerprint(exc.key)}, {known} expects {fingerprint(exc.expected_key)}. This may be "
            f"an attack. If the server was really reinstalled, remove the old key "
            f"(`ssh-keygen -R {endpoint.host} -f {known}`) and run `mavps trust {endpoint.host}`"
        ) from None
    except paramiko.AuthenticationException as exc:
        client.close()
        tried = ", ".join(endpoint.identity_files) or "the SSH agent and default keys (~/.ssh/id_*)"
        raise TransportError(
            f"authentication failed for {where} (tried {tried}): {exc}. "
            "Check the user and give the right key with --identity-file"
        ) from None
    except (paramiko.ssh_exception.NoValidConnectionsError, ConnectionRefusedError):
        client.close()
        raise TransportError(
            f"cannot connect to {where}: connection refused. Check the host and port, and that sshd runs there"
        ) from None
    except (socket.timeout, TimeoutError):
        client.close()
        raise TransportError(
            f"cannot reach {where}: no answer within {connect_timeout:g}s. "
            "Check the address, the port and that sshd runs"
        ) from None
    except (OSError, EOFError, paramiko.SSHException) as exc:
        client.close()
        raise TransportError(f"cannot connect to {where}: {exc}") from None
    return SFTPTransport(client, sftp, endpoint)
