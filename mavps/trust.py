"""`mavps trust HOST`: fetch a server's host key and add it to known_hosts.

Only this command ever adds a key, and only after a person confirmed its
fingerprint (or passed --yes). The entry is written the way `ssh-keyscan`
does: `host` on port 22, `[host]:port` otherwise, optionally hashed.
"""
from __future__ import annotations

import os
import socket
from typing import Any

from .transport.sftp import paramiko  # without `invoke`, like the transports

from .config import Config
from .errors import ConfigError, HostKeyError, TransportError


def split_host(text: str, port: int | None) -> tuple[str, int | None]:
    """HOST, HOST:PORT, [HOST]:PORT, user@HOST or an sftp:// URL -> (host, port)."""
    if text.startswith("sftp://"):
        from .transport import parse_url

        _kind, parts = parse_url(text if text.count("/") > 2 else text + "/x")
        return parts["host"], port or parts["port"]
    if "@" in text:
        text = text.rsplit("@", 1)[1]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            return host, port or _port(rest[1:])
        return host, port
    if text.count(":") == 1:
        host, _, p = text.partition(":")
        return host, port or _port(p)
    return text, port


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"bad port {text!r}") from None
    if not 0 < value < 65536:
        raise ConfigError(f"bad port {text!r}")
    return value


def entry_name(host: str, port: int) -> str:
    """The known_hosts name paramiko and ssh look up."""
    return host if port == 22 else f"[{host}]:{port}"


def fetch_key(host_arg: str, port: int | None, config: Config) -> dict[str, Any]:
    """Connect (no authentication) and return the host key offered, with what known_hosts says."""
    from .transport.connect import resolve

    host, port = split_host(host_arg, port)
    ep = resolve(host, port, None, "/", None, config.ssh_config)
    known = os.path.expanduser(config.known_hosts or "~/.ssh/known_hosts")
    timeout = config.connect_timeout
    where = f"{ep.host}:{ep.port}"
    sock: Any
    try:
        if ep.proxy_command:
            sock = paramiko.ProxyCommand(ep.proxy_command)
        else:
            sock = socket.create_connection((ep.host, ep.port), timeout=timeout)
    except (socket.timeout, TimeoutError):
        raise TransportError(f"cannot reach {where}: no answer within {timeout:g}s") from None
    except OSError as exc:
        raise TransportError(f"cannot connect to {where}: {exc.strerror or exc}") from None
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    try:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise TransportError(f"{where} did not complete an SSH handshake: {exc}") from None
    finally:
        transport.close()
    entry = entry_name(ep.host, ep.port)
    status = "unknown"
    if os.path.isfile(known):
        try:
            keys = paramiko.HostKeys(known)
        except Exception as exc:
            raise HostKeyError(f"cannot read known_hosts file {known}: {exc}") from None
        have = keys.lookup(entry)
        if have is not None:
            name = key.get_name()
            status = "same" if have.get(name) == key else ("different" if name in have else "unknown")
    return {"host": ep.host, "port": ep.port, "entry": entry, "key_type": key.get_name(),
            "fingerprint": key.fingerprint, "known_hosts": known, "known": status, "key": key}


def add_key(info: dict[str, Any], hashed: bool = False) -> str:
    """Append the key to known_hosts (creating ~/.ssh with mode 0700 if needed); returns the line."""
    key = info["key"]
    name = paramiko.HostKeys.hash_host(info["entry"]) if hashed else info["entry"]
    line = f"{name} {key.get_name()} {key.get_base64()}\n"
    path = info["known_hosts"]
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):
        os.makedirs(folder, mode=0o700, exist_ok=True)
    prefix = b""
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                prefix = b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "ab") as fh:
        fh.write(prefix + line.encode())
    return line
