"""The workspace lock: a directory, `.mavps.lock/`, with `owner.json` inside.

Taking it: a candidate directory `.mavps.lock.<token>/` holding `owner.json`
is renamed to `.mavps.lock`. The rename is atomic and refuses an existing
lock, and since a candidate is never empty, two racing renames cannot both
win. It is sent in the same pipeline as the reads that follow it, so taking
the lock costs no round trip of its own (see store.py).

Stale locks are judged without trusting client clocks: a lock is stale when
the *server's* clock says its owner file is older than the holder's lease
(ages are differences of two server mtimes), or when this process has seen
the very same lock, unchanged, for longer than the lease on its own monotonic
clock. A breaker renames the stale lock away to a unique name (only one
rename can win), checks that what it took is what it judged stale, and puts
it back otherwise. A holder never needs to re-read its token: it commits by
renaming files *out of* `.mavps.lock/` under token-named paths, which fails
if its lock was taken away. knowledge/04-vps-api-specification.md has more.
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

from .timeutil import iso, utcnow
from .transport.base import Batch, Transport, joined

LOCK = ".mavps.lock"
OWNER = "owner.json"
MAX_SANE_TTL = 24 * 3600
_TMP_RE = re.compile(r".+\.([0-9a-f]{16})\.tmp")  # <file>.<token>.tmp, see store.py


def new_token() -> str:
    return secrets.token_hex(8)


def candidate_dir(token: str) -> str:
    return f"{LOCK}.{token}"


def stale_dir(token: str) -> str:
    return f"{LOCK}.stale-{token}"


def owner_record(agent: str, token: str, ttl: float) -> dict[str, Any]:
    return {
        "owner": agent,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "token": token,
        "acquired_at": iso(utcnow()),  # the client's clock: shown to people, never trusted
        "ttl": ttl,
        "version": 1,
    }


def parse_owner(data: bytes | None) -> dict[str, Any] | None:
    """The holder's record, or None for an empty or garbled owner file."""
    if not data:
        return None
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def holder_ttl(record: dict[str, Any] | None, default: float) -> float:
    ttl = record.get("ttl") if record else None
    if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and 0 < ttl <= MAX_SANE_TTL:
        return float(ttl)
    return default


@dataclass
class Sighting:
    """What a waiter saw of the lock in one attempt."""

    identity: tuple[Any, ...] | None  # None: no lock there any more
    server_age: float | None  # seconds, by the server's clock; None if unknown


@dataclass
class StaleWatch:
    """Remembers since when (monotonic) each lock identity has been seen."""

    first_seen: dict[tuple[Any, ...], float] = field(default_factory=dict)

    def observed_for(self, identity: tuple[Any, ...]) -> float:
        now = time.monotonic()
        return now - self.first_seen.setdefault(identity, now)


def identity_of(lock_stat: Any, owner_stat: Any) -> tuple[Any, ...] | None:
    """Name one lock instance by what a stat shows (mtime and size of its owner file)."""
    if owner_stat is not None:
        return ("owner", owner_stat.mtime, owner_stat.size)
    if lock_stat is not None:
        return ("bare", lock_stat.mtime)
    return None


def read_owner(transport: Transport, lock_path: str = LOCK) -> tuple[dict[str, Any] | None, Any]:
    """The owner record of a lock directory and its stat (two round trips)."""
    b = Batch()
    st = b.stat(f"{lock_path}/{OWNER}")
    handle = b.open(f"{lock_path}/{OWNER}", "r")
    transport.run(b)
    if not handle.ok:
        return None, st.value if st.ok else None
    b = Batch()
    reads = b.read_span(handle.value, st.value.size if st.ok else 0)
    b.close(handle.value)
    transport.run(b)
    try:
        data, _ = joined(reads)
    except OSError:
        data = b""
    return parse_owner(data), st.value if st.ok else None


def remove_tree(transport: Transport, path: str) -> list[str]:
    """Remove a lock-like directory and the files in it (no deeper levels); returns their names."""
    try:
        names = transport.listdir(path)
    except FileNotFoundError:
        return []
    b = Batch()
    for name in names:
        b.remove(f"{path}/{name}")
    b.rmdir(path)
    transport.run(b)
    return names


def unfinished_commits(names: list[str]) -> list[str]:
    """Transactions whose temp files are still in a lock: their commit point was not reached."""
    return sorted({m.group(1) for n in names if (m := _TMP_RE.fullmatch(n))})


def break_lock(transport: Transport, judged: tuple[Any, ...], judged_token: str | None, my_token: str,
               unfinished: list[str] | None = None) -> str:
    """Take a stale lock away. Returns 'broken', 'gone' or 'restored'.

    `unfinished` receives the transactions whose commit the dead holder did not
    finish (their log records, if written, must be marked rolled back).

    Only one breaker's rename can take a given lock. If what was taken is not
    the lock judged stale (a new holder took the lock in between), it is put
    back; if that fails the displaced holder's commit is refused by the path
    fence and it retries, so two holders never both commit.
    """
    away = stale_dir(my_token)
    b = Batch()
    moved = b.rename(LOCK, away)
    st_dir = b.stat(away)
    st_owner = b.stat(f"{away}/{OWNER}")
    transport.run(b)
    if not moved.ok:
        return "gone"
    took = identity_of(st_dir.value if st_dir.ok else None, st_owner.value if st_owner.ok else None)
    same = took == judged
    if same and judged_token is not None:
        record, _ = read_owner(transport, away)
        same = bool(record) and record.get("token") == judged_token
    if not same:
        b = Batch()
        back = b.rename(away, LOCK)
        transport.run(b)
        if back.ok:
            return "restored"
    names = remove_tree(transport, away)
    if unfinished is not None:
        unfinished += unfinished_commits(names)
    return "broken"
