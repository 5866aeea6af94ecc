"""The queue's active window and its backlog, pure: which pending tasks wait in `task-backlog.jsonl`.

`task-queue.json` holds every task that is not pending plus the best-ranked pending ones (at most WINDOW in
normal operation); the backlog holds the other pending tasks, one compact task object per line, in no order.
workspace.json records the backlog's committed state (`"backlog": {"bytes", "count", "first"}`): a reader
takes only the first `bytes` bytes (a failed commit may have appended more), and `first` is a lower bound
of the backlog's best rank, so a claim knows without reading the backlog whether the task it would take
from the window is the best one there is.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from .codec import log_line
from .errors import CorruptState
from .models import BACKLOG_FILE, META_FILE, Task, TaskStatus

Rank = tuple[int, int]


def rank(task: Task) -> Rank:
    """Claim order (rules.claimable): higher priority first, then the older id."""
    return (-task.priority, task.id)


def backlog_info(meta: dict[str, Any]) -> dict[str, Any]:
    """The backlog's committed state from workspace.json: bytes, count, first (a rank, or None when empty)."""
    info = meta.get("backlog") or {}
    if not isinstance(info, dict):
        raise CorruptState(META_FILE, "'backlog' must be an object")
    size, count, first = info.get("bytes", 0), info.get("count", 0), info.get("first")
    if not (isinstance(size, int) and isinstance(count, int) and size >= 0 and count >= 0):
        raise CorruptState(META_FILE, "'backlog' needs integer 'bytes' and 'count'")
    if first is not None and not (isinstance(first, list) and len(first) == 2 and all(isinstance(v, int)
                                                                                      for v in first)):
        raise CorruptState(META_FILE, "'backlog.first' must be [-priority, id]")
    return {"bytes": size, "count": count, "first": None if first is None else (first[0], first[1])}


def set_backlog_info(meta: dict[str, Any], size: int, count: int, first: Rank | None) -> None:
    meta["backlog"] = {"bytes": size, "count": count, "first": None if first is None or not count else list(first)}


def parse_backlog(data: bytes | None, meta: dict[str, Any]) -> list[Task]:
    """Backlog tasks: only the committed bytes; a bad line is skipped, the last copy of an id wins, and an id
    never handed out (a failed add's leftover) is dropped. Callers let the window and the archive win."""
    if not data:
        return []
    data = data[: backlog_info(meta)["bytes"]]
    limit = meta.get("next_task_id")
    out: dict[int, Task] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        try:
            t = Task.from_dict(json.loads(line), BACKLOG_FILE)
        except (ValueError, CorruptState):
            continue
        if t.status is TaskStatus.PENDING and (not isinstance(limit, int) or t.id < limit):
            out[t.id] = t
    return list(out.values())


def backlog_lines(tasks: Iterable[dict[str, Any]]) -> bytes:
    """The backlog's lines for these tasks (compact dicts, as state.dump_tasks gives), one each."""
    return b"".join(log_line(d) for d in tasks)


def merged(window: list[Task], backlog: Iterable[Task], archived: Iterable[Task] = ()) -> list[Task]:
    """Every task once, by id: the window wins over the archive, the archive over the backlog."""
    seen = {t.id for t in window}
    out = list(window)
    for source in (archived, backlog):
        extra = [t for t in source if t.id not in seen]
        seen |= {t.id for t in extra}
        out += extra
    return out


def split(tasks: list[Task], size: int) -> tuple[list[Task], list[Task]]:
    """(window, backlog): every task that is not pending, and the `size` best-ranked pending ones, stay in the
    window (in their order); the other pending tasks go to the backlog."""
    pending = sorted((t for t in tasks if t.status is TaskStatus.PENDING), key=rank)
    out = {t.id for t in pending[size:]}
    return [t for t in tasks if t.id not in out], pending[size:]


def overflow(tasks: list[Task], size: int) -> list[Task]:
    """The worst-ranked pending tasks of a window that holds more than `size` pending (to move out)."""
    return split(tasks, size)[1]


def pending_count(tasks: Iterable[Task]) -> int:
    return sum(1 for t in tasks if t.status is TaskStatus.PENDING)


def lay_out(tasks: list[Task], meta: dict[str, Any], size: int) -> tuple[list[Task], bytes]:
    """Every task laid out as a commit leaves them (for tools and tests that write a workspace directly): the
    window, the backlog's bytes, and `meta` given the backlog's committed state."""
    from .state import dump_tasks

    window, rest = split(tasks, size)
    data = backlog_lines(dump_tasks(rest))
    set_backlog_info(meta, len(data), len(rest), rank(rest[0]) if rest else None)
    return window, data
