"""Choose the transport for a workspace URL, in one place."""
from __future__ import annotations

import os
import re

from ..defaults import SSH_HOOK_DEFAULT
from ..errors import ConfigError
from .base import CHUNK, Batch, Reply, Stat, Transport

__all__ = ["Batch", "Reply", "Stat", "Transport", "CHUNK", "parse_url", "open_transport"]


def parse_url(url: str) -> tuple[str, dict]:
    """('local', {'path'}) or ('sftp', {'host', 'port', 'user', 'path'}).

    Accepted: a local path, sftp://[user@]host[:port]/abs/path, and scp's [user@]host:/abs/path.
    Anything that looks like a mistyped URL is refused with what to type instead, never taken as a
    local relative path (a workspace silently made in the current directory looks like success)."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("no workspace given: pass --workspace PATH or sftp://[user@]host[:port]/path")
    if url.startswith("sftp://"):
        return "sftp", _sftp_url(url)
    _refuse_malformed(url)
    if url.startswith("file:"):
        return "local", {"path": url[5:]}
    scp = _SCP.match(url)
    if scp and not (os.name == "nt" and len(scp.group("host")) == 1):  # C:/dir is a Windows path
        user, host, path = scp.group("user"), scp.group("host"), scp.group("path")
        if not path.startswith("/") or path.rstrip("/") == "":
            raise ConfigError(f"workspace {url!r} needs an absolute directory path after the colon: "
                              f"use {user + '@' if user else ''}{host}:/ABSOLUTE/PATH")
        return "sftp", {"host": host, "port": None, "user": user, "path": path.rstrip("/")}
    return "local", {"path": url}


#: scp's form: a colon before any slash, e.g. myvps:/ws/cc or agent@myvps:/ws/cc.
_SCP = re.compile(r"^(?:(?P<user>[^@/:\s]+)@)?(?P<host>[A-Za-z0-9][A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\]):(?P<path>.*)$")


def _sftp_url(url: str) -> dict:
    from urllib.parse import unquote, urlsplit  # here: a local workspace never needs it (start-up time)

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(f"bad host or port in workspace URL {url!r}: "
                          "use sftp://[user@]host[:port]/abs/path") from None
    path = unquote(parts.path)
    if not parts.hostname:
        raise ConfigError(f"no host in workspace URL {url!r}: use sftp://HOST{path or '/abs/path'}")
    if not path.startswith("/") or path == "/":
        raise ConfigError(f"workspace URL {url!r} needs an absolute directory path, e.g. sftp://{parts.netloc}/srv/ws")
    return {"host": parts.hostname, "port": port,
            "user": unquote(parts.username) if parts.username else None, "path": path.rstrip("/")}


def _refuse_malformed(url: str) -> None:
    """`sftp:/host/path`, `sftp:host/path`, `ssh://...`: say what was probably meant."""
    scheme, sep, rest = url.partition(":")
    if not sep or "/" in scheme or "@" in scheme:
        return
    low = scheme.lower()
    if low in ("sftp", "ssh", "scp"):
        if rest.startswith("//"):
            rest = rest[2:]
        rest = rest.lstrip("/")
        suggestion = f"sftp://{rest}" if rest else "sftp://HOST/abs/path"
        raise ConfigError(f"workspace URL {url!r} is not valid: use {suggestion} "
                          "(sftp://[user@]host[:port]/abs/path), or host:/abs/path")
    if "://" in url:
        raise ConfigError(f"unsupported workspace URL {url!r}: use a local path, sftp://[user@]host[:port]/abs/path "
                          "or host:/abs/path")


def open_transport(url: str, *, identity_file: str | None = None, known_hosts: str | None = None,
                   connect_timeout: float = 10.0, reply_timeout: float = 30.0,
                   ssh_config: str | None = None, passphrase: str | None = None,
                   ssh: str = "paramiko") -> Transport:
    kind, parts = parse_url(url)
    if kind == "local":
        from .local import LocalTransport

        return LocalTransport(parts["path"])
    if ssh == SSH_HOOK_DEFAULT:
        from .connect import open_preferring_openssh

        return open_preferring_openssh(parts["host"], parts["port"], parts["user"], parts["path"],
                                       identity_file=identity_file, known_hosts=known_hosts, ssh_config=ssh_config,
                                       connect_timeout=connect_timeout, reply_timeout=reply_timeout,
                                       passphrase=passphrase)
    if ssh == "openssh":
        from .openssh import open_openssh

        return open_openssh(parts["host"], parts["port"], parts["user"], parts["path"],
                            identity_file=identity_file, known_hosts=known_hosts, ssh_config=ssh_config,
                            connect_timeout=connect_timeout, reply_timeout=reply_timeout)
    from .connect import open_sftp, resolve  # paramiko is only loaded here

    endpoint = resolve(parts["host"], parts["port"], parts["user"], parts["path"], identity_file, ssh_config)
    return open_sftp(endpoint, known_hosts, connect_timeout, reply_timeout, passphrase)
