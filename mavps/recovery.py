"""What crashed, paused or hostile processes leave in the workspace, and how mavps deals with it.

A lock directory of a dead holder is broken (renamed away, never put back) and
swept; a committed transaction left in `.mavps.commit/` is rolled forward by
the next holder; old candidates and broken locks are cleaned up. Nothing here
follows a symlink: every path is lstat'ed, a link is removed as itself, and
only names of the shapes in lockpaths.py are removed.
"""
from __future__ import annotations

from typing import Any, Callable

from .errors import MavpsError, UnsafePath
from .lockpaths import (COMMIT, HELD_RE, LOCK, OWNER, TEMP_RE, TXN_RE, candidate_dir, check_lock_stat,
                        holder_ttl, identity_of, new_token, parse_owner, stale_dir)
from .transport.base import Batch, Stat, Transport


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


def unfinished_in(transport: Transport, path: str) -> list[str]:
    """Tokens of the transactions still inside a lock-like directory (never reached their commit point)."""
    b = Batch()
    st = b.lstat(path)
    transport.run(b)
    if not st.ok or st.value.is_link or not st.value.is_dir:
        return []
    return [m.group(1) for n in list_names(transport, path) if (m := TXN_RE.fullmatch(n))]


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
    unfinished = [m.group(1) for n in names if (m := TXN_RE.fullmatch(n))]
    b = Batch()
    kinds = {n: b.lstat(f"{path}/{n}") for n in names}
    transport.run(b)
    b = Batch()
    for n, k in kinds.items():
        if not k.ok:
            continue
        if k.value.is_dir and (TXN_RE.fullmatch(n) or HELD_RE.fullmatch(n) or n == "now"):
            for inner in list_names(transport, f"{path}/{n}"):
                if TEMP_RE.fullmatch(inner):
                    b.remove(f"{path}/{n}/{inner}")
            b.rmdir(f"{path}/{n}")
        elif not k.value.is_dir and (n == OWNER or TEMP_RE.fullmatch(n)):
            b.remove(f"{path}/{n}")
    b.rmdir(path)
    transport.run(b)
    return unfinished


def list_names(transport: Transport, path: str) -> list[str]:
    try:
        return transport.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def break_lock(transport: Transport, my_token: str) -> tuple[bool, list[str]]:
    """Take a stale lock away to `stale_dir(my_token)`: (whether this call took it, tokens of the commits it
    never made). The caller records those transactions as rolled back, and only then sweeps the directory:
    removed first, the evidence would be lost with a failed log write.

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
    return True, unfinished_in(transport, away)



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
    from urllib.parse import unquote  # here: a read that finds no commit never needs it (start-up time)

    moves: dict[str, Any] = {}
    b = Batch()
    deletes = []
    for name in list_names(transport, COMMIT):
        m = TEMP_RE.fullmatch(name)
        target = unquote(m.group(1)) if m and m.group(3) in ("tmp", "del") else ""
        if target and not target.startswith("/") and ".." not in target.split("/"):
            if m and m.group(3) == "del":
                deletes.append((target, name))
            else:
                moves[target] = b.replace(f"{COMMIT}/{name}", target)
    for target, name in deletes:  # after the moves, as the commit itself does
        moves[target] = b.remove(target)
        b.remove(f"{COMMIT}/{name}")
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
    return sorted(m.group(1) for n in names if (m := TXN_RE.fullmatch(n)))


def server_now(tr: Transport) -> float | None:
    """The server's clock (the mtime of a directory made and removed just now)."""
    probe = candidate_dir(new_token())
    b = Batch()
    b.mkdir(probe)
    st = b.stat(probe)
    b.rmdir(probe)
    tr.run(b)
    return st.value.mtime if st.ok else None


def lock_info(tr: Transport, default_ttl: float) -> dict[str, Any]:
    """Who holds the workspace lock, for how long by the server's clock, and whether it is stale."""
    b = Batch()
    lock_st = b.lstat(LOCK)
    tr.run(b)
    if not lock_st.ok:
        return {"held": False, "holder": None, "held_for": None, "ttl": default_ttl, "stale": False}
    if lock_st.value.is_link or not lock_st.value.is_dir:  # planted: never followed; `unlock --force` removes it
        return {"held": True, "holder": None, "held_for": None, "ttl": default_ttl, "stale": True,
                "planted": lock_st.value.kind(), "identity": ("planted", lock_st.value.kind())}
    record, owner_st = read_owner(tr)
    now = server_now(tr)
    ref = owner_st or lock_st.value
    held_for = None if now is None else round(max(0.0, now - ref.mtime), 1)
    ttl = holder_ttl(record, default_ttl)
    return {"held": True, "holder": record, "held_for": held_for, "ttl": ttl,
            "stale": held_for is not None and held_for > ttl,
            "identity": identity_of(lock_st.value, owner_st)}


def leftovers(tr: Transport, older_than: float) -> list[str]:
    """Candidate (`.mavps.lock.<token>`) and broken (`.mavps.lock.stale-*`) directories older than this, and
    links planted under such names (judged by the link's own mtime; removed as links, never followed)."""
    names = [n for n in tr.listdir("") if n.startswith(LOCK + ".")]
    if not names:
        return []
    b = Batch()
    stats = {n: b.lstat(n) for n in names}
    tr.run(b)
    now = server_now(tr)
    if now is None:
        return []
    return sorted(n for n, st in stats.items()
                  if st.ok and (st.value.is_dir or st.value.is_link) and now - st.value.mtime > older_than)


def cleanup_leftovers(tr: Transport, older_than: float,
                      note: Callable[[list[str]], bool] | None = None) -> list[str]:
    """Remove old leftovers. One that still holds uncommitted transactions (a breaker could not log their
    rollback) is removed only once `note(tokens)` has recorded them rolled back."""
    removed = []
    for name in leftovers(tr, older_than):
        held = unfinished_in(tr, name)
        if held and (note is None or not note(held)):
            continue  # keep the evidence until the rollback can be recorded
        sweep(tr, name)  # only the names mavps makes; a link is removed as a link, never listed through
        b = Batch()
        gone = b.lstat(name)
        tr.run(b)
        if not gone.ok:
            removed.append(name)
    return removed


def break_by_hand(tr: Transport, info: dict[str, Any]) -> tuple[str, list[str], str]:
    """`mavps unlock --force`: break the lock `lock_info` described, not a newer one.

    Returns ('broken' | 'gone' | 'changed', the transactions it held uncommitted, where it was moved): the
    caller records the rollbacks, then sweeps that directory.
    """
    now = lock_info(tr, info.get("ttl") or 10.0)
    if not now["held"]:
        return "gone", [], ""
    if now.get("identity") != info.get("identity"):
        return "changed", [], ""  # a newer holder: show it again rather than break it blind
    token = new_token()
    took, unfinished = break_lock(tr, token)
    return ("broken" if took else "gone"), unfinished, stale_dir(token)
