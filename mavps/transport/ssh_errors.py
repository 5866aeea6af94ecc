"""Every SSH connection failure as one clear line saying what to do: written once for both stacks.

paramiko raises exceptions and `ssh` prints text; each stack only decides which
of these happened (`classify_*`), and the texts live here.
"""
from __future__ import annotations

from ..errors import HostKeyError, TransportError


def known_hosts_entry(host: str, port: int) -> str:
    """The name known_hosts files use: `host` on port 22, `[host]:port` elsewhere (quoted for a shell)."""
    return host if port == 22 else f"'[{host}]:{port}'"


def trust_target(alias: str, port: int) -> str:
    """What to give `mavps trust`: the alias as the user typed it, with the port when it is not 22 and
    the alias alone would not say it (an ssh config alias carries its own port)."""
    return alias if port == 22 or ":" in alias else f"{alias}:{port}"


def host_key_changed(alias: str, host: str, port: int, known: str, offered: str = "",
                     expected: str = "") -> HostKeyError:
    what = f"the server offered {offered}" + (f", {known} expects {expected}" if expected else
                                              f", which is not the key {known} holds for it") if offered else \
        f"the server's key is not the one {known} holds for it"
    return HostKeyError(
        f"HOST KEY CHANGED for {alias}: {what}. This may be an attack. If the server was really reinstalled, "
        f"remove the old key (`ssh-keygen -R {known_hosts_entry(host, port)} -f {known}`) and run "
        f"`mavps trust {trust_target(alias, port)}`")


def host_key_unknown(alias: str, port: int, known: str, offered: str = "", said: str = "") -> HostKeyError:
    key = f": {offered}" if offered else ""
    detail = f" (ssh said: {said})" if said else ""
    return HostKeyError(
        f"unknown host key for {alias}{key} is not in {known}{detail}. If that fingerprint is the server's, "
        f"trust it with `mavps trust {trust_target(alias, port)}` (or `ssh-keyscan` into {known})")


#: What the stacks say that adds nothing to "authentication failed" (paramiko's, ssh's "Permission denied").
_BARE = ("authentication failed", "no authentication methods available")


def auth_failed(where: str, tried: str, detail: str = "", offered: bool = True) -> TransportError:
    """One sentence of what happened and one of what to do; `offered` False: there was no key to try at all."""
    said = detail.strip().rstrip(".").strip()
    if said.lower() in _BARE:
        said = ""
    what = f"tried {tried}" if offered else "no key to offer: none given, no SSH agent, no ~/.ssh/id_* file"
    return TransportError(
        f"authentication failed for {where} ({what}){f': {said}' if said else ''}. Check the user name, and give "
        "the key this account accepts with --identity-file (or IdentityFile in ~/.ssh/config)")


def refused(where: str) -> TransportError:
    return TransportError(f"cannot connect to {where}: connection refused. Check the host and port, "
                          "and that sshd runs there")


def unreachable(where: str, timeout: float, said: str = "") -> TransportError:
    return TransportError(f"cannot reach {where}: no answer within {timeout:g}s. Check the address, the port "
                          f"and that sshd runs{f' (ssh said: {said})' if said else ''}")


def other(where: str, detail: str) -> TransportError:
    return TransportError(f"cannot connect to {where}: {detail}")
