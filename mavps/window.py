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
from .models import BACKLOG_FILE, META_FILE, Task, TaskStatus, task_lines

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
    for t in task_lines(data, BACKLOG_FILE):
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


#: A backlog line kept as it is: its rank, its id, its bytes (with the newline).
Entry = tuple[Rank, int, bytes]


def backlog_entries(data: bytes | None, meta: dict[str, Any], skip: set[int]) -> list[Entry]:
    """The backlog's committed lines as entries, without making tasks of them (a refill of 100 000 keeps most
    lines as they are): the last line of an id wins; bad lines, ids in `skip` (the window's) and ids never handed
    out are left out, as `parse_backlog` leaves them out."""
    if not data:
        return []
    limit = meta.get("next_task_id")
    out: dict[int, Entry] = {}
    for line in data[: backlog_info(meta)["bytes"]].splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if not isinstance(d, dict):
            continue
        tid, prio = d.get("id"), d.get("priority", 0)
        if not (isinstance(tid, int) and isinstance(prio, int)) or isinstance(tid, bool) or tid in skip:
            continue
        if d.get("status", "pending") == "pending" and (not isinstance(limit, int) or tid < limit):
            out[tid] = ((-prio, tid), tid, line + b"\n")
    return list(out.values())


def take_best(entries: list[Entry], count: int | None) -> tuple[list[Task], list[Entry]]:
    """The `count` best-ranked entries as tasks (None: all), and the other entries as they are. A line that is not
    a valid task is dropped (readers skip it too)."""
    import heapq

    chosen = entries if count is None else heapq.nsmallest(count, entries)
    taken = {c[1] for c in chosen}
    rest = [] if count is None else [e for e in entries if e[1] not in taken]
    tasks = []
    for _rank, _tid, line in chosen:
        try:
            tasks.append(Task.from_dict(json.loads(line), BACKLOG_FILE))
        except (ValueError, CorruptState):
            continue
    return tasks, rest
