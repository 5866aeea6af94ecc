"""The workspace lock and the commit point of a transaction.

The lock is a directory, `.mavps.lock/`, with `owner.json` inside. It is taken
by renaming a prepared candidate `.mavps.lock.<token>/` onto that name: the
rename is atomic and refuses an existing lock (a candidate is never empty).

A transaction prepares its new files in `.mavps.lock/txn.<token>/` and commits
by ONE rename of that directory to `.mavps.commit/` (`COMMIT`). That rename
works only while the lock is still this holder's (otherwise the source path
does not exist), so it is the single commit point of a multi-file change.
After it the transaction is applied file by file; whoever takes the lock next
and finds `.mavps.commit/` finishes applying it before reading anything
(`roll_forward`), so nobody reads a half-applied transaction.

A lock whose owner is older than its lease by the *server's* clock is stale.
A breaker renames it away to a unique name and never puts it back: if it took
a live holder's lock, that holder's commit point fails and it retries, so two
holders never both commit (knowledge/04 has the protocol, tests/test_lock_model.py
enumerates its interleavings). Nothing here follows a symlink: every path is
lstat'ed and only names of the shapes mavps makes are ever removed.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from .errors import MavpsError, UnsafePath
from .timeutil import iso, utcnow
from .transport.base import Batch, Stat, Transport

LOCK = ".mavps.lock"
OWNER = "owner.json"
COMMIT = ".mavps.commit"
MAX_SANE_TTL = 24 * 3600
_TOKEN = r"[0-9a-f]{16}"
_TEMP_RE = re.compile(rf"(.+)\.({_TOKEN})\.(tmp|bak)")  # <quoted target>.<token>.tmp, <file>.<token>.bak
_TXN_RE = re.compile(rf"txn\.({_TOKEN})")
_HELD_RE = re.compile(rf"held\.({_TOKEN})")


def new_token() -> str:
    return secrets.token_hex(8)


def candidate_dir(token: str) -> str:
    return f"{LOCK}.{token}"


def stale_dir(token: str) -> str:
    return f"{LOCK}.stale-{token}"


def txn_dir(token: str) -> str:
    """Where a transaction's new files wait, inside the lock, until its commit point."""
    return f"txn.{token}"


def held_dir(token: str) -> str:
    """An empty directory in the lock naming its holder: `.mavps.lock/held.<token>/..` resolves only while the
    lock is this holder's, so removals through it can never touch a later holder's lock."""
    return f"held.{token}"


def temp_name(target: str, token: str) -> str:
    """A temp file's name says its target, so whoever rolls a commit forward needs nothing else."""
    return f"{quote(target, safe='')}.{token}.tmp"


def owner_size(token: str) -> int:
    """Each holder's owner file has its own size: with the mtime, it names one lock instance."""
    return 512 + int(token[:6], 16) % 3584


def owner_record(agent: str, token: str, ttl: float) -> bytes:
    record = {
        "owner": agent,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "token": token,
        "acquired_at": iso(utcnow()),  # the client's clock: shown to people, never trusted
        "ttl": ttl,
        "version": 2,
    }
    data = json.dumps(record, indent=2).encode()
    size = owner_size(token)
    return data + b" " * max(0, size - len(data) - 1) + b"\n"


def parse_owner(data: bytes | None) -> dict[str, Any] | None:
    """The holder's record, or None for an empty, not yet written or garbled owner file."""
    if not data:
        return None
    try:
        record = json.loads(data.rstrip(b"\0 \n").decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def holder_ttl(record: dict[str, Any] | None, default: float) -> float:
    ttl = record.get("ttl") if record else None
    if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and 0 < ttl <= MAX_SANE_TTL:
        return float(ttl)
    return default


def identity_of(lock_stat: Stat | None, owner_stat: Stat | None) -> tuple[Any, ...] | None:
    """Name one lock instance by what an lstat shows: its owner file's mtime and (per-holder) size."""
    if owner_stat is not None:
        return ("owner", owner_stat.mtime, owner_stat.size)
    if lock_stat is not None:
        return ("bare", lock_stat.mtime)
    return None


def check_lock_stat(st: Stat | None, path: str = LOCK) -> None:
    """A lock must be a real directory: a planted symlink or file is refused, never followed or removed."""
    if st is not None and (st.is_link or not st.is_dir):
        raise UnsafePath(path, st.kind(), "a directory (the workspace lock)",
                         "Look at it (`ls -la`); `mavps unlock --force` removes it as itself, never following it")


@dataclass
class Sighting:
    """What a waiter saw of the lock in one attempt."""

    identity: tuple[Any, ...] | None  # None: no lock there any more
    server_age: float | None  # seconds since the holder took it, by the server's clock; None if unknown


@dataclass
class StaleWatch:
    """Since when (monotonic) this process has seen each lock instance: the judge when the server's clock is not
    available."""

    first_seen: dict[tuple[Any, ...], float] = field(default_factory=dict)

    def observed_for(self, identity: tuple[Any, ...]) -> float:
        now = time.monotonic()
        return now - self.first_seen.setdefault(identity, now)

    def age(self, sighting: Sighting) -> float:
        """How long the lock has been held, by the server's clock or by how long this process has watched this
        very instance (never by comparing clocks). Neither can exceed the real time held: the owner file's mtime
        is refreshed when the holder takes the lock, and each holder's instance has its own identity."""
        observed = self.observed_for(sighting.identity) if sighting.identity is not None else 0.0
        return max(sighting.server_age or 0.0, observed)


def read_owner(transport: Transport, lock_path: str = LOCK) -> tuple[dict[str, Any] | None, Stat | None]:
    """The owner record of a lock directory and its lstat (two round trips); never through a link."""
    path = f"{lock_path}/{OWNER}"
    b = Batch()
    lock_st = b.lstat(lock_path)
    owner_st = b.lstat(path)
    transport.run(b)
    if lock_st.ok:
        check_lock_stat(lock_st.value, lock_path)
    if not owner_st.ok or not owner_st.value.is_file:
        return None, None
    try:
        got = transport.read_from(path, lambda size: 0)
    except (MavpsError, OSError):
        return None, owner_st.value
    return (parse_owner(got[0]) if got else None), owner_st.value


def sweep(transport: Transport, path: str) -> list[str]:
    """Remove a lock-like directory mavps made (a broken lock, a leftover candidate).

    Returns the tokens of the transactions found uncommitted in it. A symlink
    is removed as a link, never listed through; inside, only names of the
    shapes mavps makes are removed, so nothing of anyone else's is deleted.
    """
    b = Batch()
    st = b.lstat(path)
    transport.run(b)
    if not st.ok:
        return []
    if st.value.is_link or not st.value.is_dir:
        b = Batch()
        b.remove(path)
        transport.run(b)
        return []
    try:
        names = transport.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []
    unfinished = [m.group(1) for n in names if (m := _TXN_RE.fullmatch(n))]
    b = Batch()
    kinds = {n: b.lstat(f"{path}/{n}") for n in names}
    transport.run(b)
    b = Batch()
    for n, k in kinds.items():
        if not k.ok:
            continue
        if k.value.is_dir and (_TXN_RE.fullmatch(n) or _HELD_RE.fullmatch(n) or n == "now"):
            for inner in _listdir(transport, f"{path}/{n}"):
                if _TEMP_RE.fullmatch(inner):
                    b.remove(f"{path}/{n}/{inner}")
            b.rmdir(f"{path}/{n}")
        elif not k.value.is_dir and (n == OWNER or _TEMP_RE.fullmatch(n)):
            b.remove(f"{path}/{n}")
    b.rmdir(path)
    transport.run(b)
    return unfinished


def _listdir(transport: Transport, path: str) -> list[str]:
    try:
        return transport.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def break_lock(transport: Transport, my_token: str) -> tuple[bool, list[str]]:
    """Take a stale lock away: (whether this call took it, tokens of the commits it never made).

    Only one breaker's rename can take a given lock, and it is never put back:
    if a new holder took the lock after it was judged stale, that holder's
    commit point fails and it retries (no two holders ever both commit).
    """
    away = stale_dir(my_token)
    b = Batch()
    moved = b.rename(LOCK, away)
    transport.run(b)
    if not moved.ok:
        return False, []
    return True, sweep(transport, away)


def roll_forward(transport: Transport) -> list[str]:
    """Finish applying a committed transaction left in `.mavps.commit/` (call only holding the lock).

    Each temp file is renamed to the target its name gives; one already moved
    (by its own holder, still running) is skipped. Returns the targets applied.
    """
    b = Batch()
    st = b.lstat(COMMIT)
    transport.run(b)
    if not st.ok:
        return []
    if st.value.is_link or not st.value.is_dir:
        raise UnsafePath(COMMIT, st.value.kind(), "a directory (a committed change being applied)")
    moves: dict[str, Any] = {}
    b = Batch()
    for name in _listdir(transport, COMMIT):
        m = _TEMP_RE.fullmatch(name)
        target = unquote(m.group(1)) if m and m.group(3) == "tmp" else ""
        if target and not target.startswith("/") and ".." not in target.split("/"):
            moves[target] = b.replace(f"{COMMIT}/{name}", target)
    done = b.rmdir(COMMIT)
    transport.run(b)
    failed = {t: r.error for t, r in moves.items() if not r.ok and not isinstance(r.error, FileNotFoundError)}
    if failed:
        target, err = next(iter(failed.items()))
        raise MavpsError(f"a committed change could not be applied: {target}: {err}. It waits in {COMMIT}/; "
                         f"make {target} a writable regular file (or remove what is in its way), then retry")
    if not done.ok and not isinstance(done.error, FileNotFoundError):
        b = Batch()  # something foreign inside: move it aside for `mavps doctor`, do not block every commit
        b.rename(COMMIT, stale_dir(new_token()))
        transport.run(b)
    return sorted(moves)


def unfinished_commits(names: list[str]) -> list[str]:
    """Transactions whose directory is still inside a lock: their commit point was never reached."""
    return sorted(m.group(1) for n in names if (m := _TXN_RE.fullmatch(n)))
