"""Choose the transport for a workspace URL, in one place."""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

from ..errors import ConfigError
from .base import CHUNK, Batch, Reply, Stat, Transport

__all__ = ["Batch", "Reply", "Stat", "Transport", "CHUNK", "parse_url", "open_transport"]


def parse_url(url: str) -> tuple[str, dict]:
    """('local', {'path'}) or ('sftp', {'host', 'port', 'user', 'path'})."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("no workspace given: pass --workspace PATH or sftp://[user@]host[:port]/path")
    if url.startswith("sftp://"):
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ConfigError(f"bad host or port in workspace URL {url!r}") from None
        if not parts.hostname:
            raise ConfigError(f"no host in workspace URL {url!r}: use sftp://[user@]host[:port]/abs/path")
        path = unquote(parts.path)
        if not path.startswith("/") or path == "/":
            raise ConfigError(
                f"workspace URL {url!r} needs an absolute directory path, e.g. sftp://host/srv/ws"
            )
        return "sftp", {
            "host": parts.hostname,
            "port": port,
            "user": unquote(parts.username) if parts.username else None,
            "path": path.rstrip("/"),
        }
    if "://" in url:
        raise ConfigError(f"unsupported workspace URL {url!r}: use a local path or sftp://")
    if url.startswith("file:"):
        url = url[5:]
    return "local", {"path": url}


def open_transport(url: str, *, identity_file: str | None = None, known_hosts: str | None = None,
                   connect_timeout: float = 10.0, reply_timeout: float = 30.0,
                   ssh_config: str | None = None, passphrase: str | None = None,
                   ssh: str = "paramiko") -> Transport:
    kind, parts = parse_url(url)
    if kind == "local":
        from .local import LocalTransport

        return LocalTransport(parts["path"])
    if ssh == "openssh":
        from .openssh import open_openssh

        return open_openssh(parts["host"], parts["port"], parts["user"], parts["path"],
                            identity_file=identity_file, known_hosts=known_hosts, ssh_config=ssh_config,
                            connect_timeout=connect_timeout, reply_timeout=reply_timeout)
    from .connect import open_sftp, resolve  # paramiko is only loaded here

    endpoint = resolve(parts["host"], parts["port"], parts["user"], parts["path"], identity_file, ssh_config)
    return open_sftp(endpoint, known_hosts, connect_timeout, reply_timeout, passphrase)
