"""The state files as bytes and as objects, both ways: no transport, no lock.

`task-queue.json` (a list of tasks), `worker-status.json` (workers by id),
`workspace.json` (the next task id) and the append-only `task-archive.jsonl`.
A bad file is a CorruptState naming the file and the place, never rewritten.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Iterable

from .codec import dumps, log_line, parse_json  # noqa: F401  (the codec, below the store; re-exported)
from .errors import CorruptState
from .models import ARCHIVE_FILE, BACKLOG_FILE, META_FILE, QUEUE_FILE, WORKERS_FILE, Task, Worker, _check, task_lines
from .window import merged, parse_backlog


def task_event(stamp: str, agent: str, name: str, message: str, task: Task | None, **fields: Any) -> dict[str, Any]:
    """A record for the comms log about a task (its id and status as they are now)."""
    record: dict[str, Any] = {"timestamp": stamp, "agent": agent, "message": message, "event": name}
    if task is not None:
        record["task_id"] = task.id
        record["status"] = task.status.value
    record.update(fields)
    return record


# ----- the queue ---------------------------------------------------------------------
def load_tasks(raw: Any, path: str = QUEUE_FILE) -> list[Task]:
    """Tasks from the parsed queue file (None: no file yet); ids must be unique."""
    if raw is None:
        return []
    if isinstance(raw, dict) and "id" in raw:
        raw = [raw]  # a single task object, as in hand-written examples
    _check(isinstance(raw, list), path, "the file", "must be a JSON array of tasks")
    tasks = [Task.from_dict(t, path) for t in raw]
    seen: set[int] = set()
    for t in tasks:
        _check(t.id not in seen, path, f"task {t.id}", "the id appears twice")
        seen.add(t.id)
    return tasks


def read_tasks(data: bytes | None) -> list[Task]:
    """Tasks from the queue file's bytes (None: no file yet)."""
    return load_tasks(None if data is None else parse_json(QUEUE_FILE, data))


#: A task's own fields (not the unknown ones it carries, which are written back exactly as they came).
_OWN = frozenset(f.name for f in fields(Task)) - {"extra"}


def dump_tasks(tasks: Iterable[Task]) -> list[dict[str, Any]]:
    """Tasks as task-queue.json holds them: a field of the task's own that is null or an empty list is left
    out (reading gives the same task: a missing field is its default). Why: with the null fields a pending
    task is ~1.6x the bytes, and the whole queue crosses the wire twice per change."""
    out = []
    for t in tasks:
        d = t.to_dict()
        out.append({k: v for k, v in d.items() if not (k in _OWN and (v is None or v == []))})
    return out


# ----- the workers -------------------------------------------------------------------
def load_workers(raw: Any, path: str = WORKERS_FILE) -> dict[str, Worker]:
    """Workers by id from the parsed registry file (None: no file yet)."""
    if raw is None:
        return {}
    _check(isinstance(raw, dict), path, "the file", "must be a JSON object keyed by worker id")
    return {wid: Worker.from_dict(wid, w, path) for wid, w in raw.items()}


def read_workers(data: bytes | None) -> dict[str, Worker]:
    """Workers from the registry file's bytes (None: no file yet)."""
    return load_workers(None if data is None else parse_json(WORKERS_FILE, data))


def dump_workers(workers: dict[str, Worker]) -> dict[str, Any]:
    return {wid: w.to_dict() for wid, w in workers.items()}


# ----- workspace.json ----------------------------------------------------------------
def load_meta(raw: Any) -> dict[str, Any]:
    """The workspace's metadata (format, next task id) from the parsed file."""
    meta = {} if raw is None else raw
    if not isinstance(meta, dict):
        raise CorruptState(META_FILE, "must be a JSON object")
    meta.setdefault("format", 1)
    next_id = meta.get("next_task_id", 1)
    if not isinstance(next_id, int) or isinstance(next_id, bool):
        raise CorruptState(META_FILE, "'next_task_id' must be an integer")
    return meta


# ----- the archive -------------------------------------------------------------------
def parse_archive(data: bytes | None) -> list[Task]:
    """Archived tasks; a line cut short by a crash is skipped, the last copy of an id wins.

    Readers let a task in the queue win over its archive copies: a commit that
    failed after appending to the archive leaves such lines behind.
    """
    out: dict[int, Task] = {}
    if not data:
        return []
    for t in task_lines(data, ARCHIVE_FILE):
        out[t.id] = t
    return list(out.values())


def archive_lines(tasks: Iterable[Task]) -> list[bytes]:
    """The archive's lines for these tasks, one each."""
    return [log_line(t.to_dict()) for t in tasks]


# ----- everything: the window, the backlog, the archive ------------------------------
#: What a look reads to see every task that is not archived (window.py): one batch, no extra round trip.
ALL_TASKS = (QUEUE_FILE, META_FILE, BACKLOG_FILE)


def read_backlog(raw: dict[str, bytes | None]) -> list[Task]:
    """The backlog's tasks from a look that read META_FILE and BACKLOG_FILE (only its committed bytes)."""
    meta = load_meta(None if raw.get(META_FILE) is None else parse_json(META_FILE, raw[META_FILE]))
    return parse_backlog(raw.get(BACKLOG_FILE), meta)


def read_all(raw: dict[str, bytes | None]) -> list[Task]:
    """Every task the files read hold, each once: the window (task-queue.json) wins over the archive (when it was
    read), the archive over the backlog (when META_FILE and BACKLOG_FILE were read)."""
    window = read_tasks(raw.get(QUEUE_FILE))
    backlog = read_backlog(raw) if BACKLOG_FILE in raw else []
    archived = parse_archive(raw.get(ARCHIVE_FILE)) if ARCHIVE_FILE in raw else []
    return merged(window, backlog, archived)
