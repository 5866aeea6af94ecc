"""The lock's files: the names mavps gives its lock, candidates and transactions, and the owner record.

Every name that carries a token is one holder's or one transaction's alone: only
paths of these shapes are ever removed by mavps (see recovery.sweep).
"""
from __future__ import annotations

import json
import os
import re
from typing import Any

from .errors import UnsafePath
from .timeutil import iso, utcnow
from .transport.base import Stat

LOCK = ".mavps.lock"
MAX_SANE_TTL = 24 * 3600  # a declared lock lease beyond this is ignored
COMMIT = ".mavps.commit"  # a committed transaction being applied (see transaction.py)
OWNER = "owner.json"
_TOKEN = r"[0-9a-f]{16}"
TEMP_RE = re.compile(rf"(.+)\.({_TOKEN})\.(tmp|bak|del)")  # <quoted target>.<token>.tmp|del, <file>.<token>.bak
TXN_RE = re.compile(rf"txn\.({_TOKEN})")
HELD_RE = re.compile(rf"held\.({_TOKEN})")


def new_token() -> str:
    return os.urandom(8).hex()  # secrets.token_hex(8), without importing secrets (hmac, hashlib: start-up)


def candidate_dir(token: str) -> str:
    return f"{LOCK}.{token}"


def stale_dir(token: str) -> str:
    return f"{LOCK}.stale-{token}"


def held_dir(token: str) -> str:
    """An empty directory in the lock naming its holder: `.mavps.lock/held.<token>/..` resolves only while the
    lock is this holder's, so removals through it can never touch a later holder's lock."""
    return f"held.{token}"


def txn_dir(token: str) -> str:
    """Where a transaction's new files wait, inside the lock, until its commit point."""
    return f"txn.{token}"


def temp_name(target: str, token: str) -> str:
    """A temp file's name says its target, so whoever rolls a commit forward needs nothing else."""
    from urllib.parse import quote  # here: `status` and the other reads never need it (start-up time)

    return f"{quote(target, safe='')}.{token}.tmp"


def delete_name(target: str, token: str) -> str:
    """A committed delete's marker (an empty file): whoever rolls the commit forward removes the target."""
    from urllib.parse import quote

    return f"{quote(target, safe='')}.{token}.del"


def owner_size(token: str) -> int:
    """Each holder's owner file has its own size: with the mtime, it names one lock instance."""
    return 512 + int(token[:6], 16) % 3584


def owner_record(agent: str, token: str, ttl: float) -> bytes:
    record = {
        "owner": agent,
        "host": os.uname().nodename,  # socket.gethostname(), without importing socket (start-up time)
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
