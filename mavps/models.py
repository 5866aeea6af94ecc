"""Records as they are on disk: tasks, workers, log records.

Each is a small typed class with `from_dict`/`to_dict`. Fields another
version may have written are kept in `extra` and written back unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum
from typing import Any

from .errors import CorruptState
from .timeutil import parse

QUEUE_FILE = "task-queue.json"
WORKERS_FILE = "worker-status.json"
META_FILE = "workspace.json"
ARCHIVE_FILE = "task-archive.jsonl"
TASKS_DIR = "tasks"


class TaskStatus(str, Enum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


FINISHED = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


def instruction_path(task_id: int) -> str:
    return f"{TASKS_DIR}/task-{task_id}-instructions.md"


def _check(cond: bool, path: str, where: str, what: str) -> None:
    if not cond:
        raise CorruptState(path, f"{where}: {what}")


def _opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class Task:
    id: int
    description: str = ""
    instruction_file: str | None = None
    context_files: list[str] = field(default_factory=list)
    status: TaskStatus = TaskStatus.PENDING
    claimed_by: str | None = None
    claimed_at: str | None = None
    completed_at: str | None = None
    requires: list[str] = field(default_factory=list)
    priority: int = 0
    depends_on: list[int] = field(default_factory=list)
    max_attempts: int = 3
    attempts: int = 0
    lease_expires_at: str | None = None
    claim_token: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    updated_at: str | None = None
    result: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any, path: str = QUEUE_FILE) -> "Task":
        _check(isinstance(raw, dict), path, "a task", f"must be an object, not {type(raw).__name__}")
        tid = raw.get("id")
        where = f"task {tid!r}"
        _check(_int(tid) and tid > 0, path, where, "'id' must be a positive integer")
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: raw[k] for k in known if k in raw and raw[k] is not None}
        for name in ("description",):
            _check(isinstance(values.get(name, ""), str), path, where, f"'{name}' must be text")
        for name in ("instruction_file", "claimed_by", "claimed_at", "completed_at", "lease_expires_at",
                     "claim_token", "created_at", "created_by", "updated_at", "result", "error"):
            _check(_opt_str(values.get(name)), path, where, f"'{name}' must be text or null")
        for name in ("context_files", "requires"):
            v = values.get(name, [])
            _check(isinstance(v, list) and all(isinstance(x, str) for x in v), path, where, f"'{name}' must be a list of text")
        deps = values.get("depends_on", [])
        _check(isinstance(deps, list) and all(_int(x) for x in deps), path, where, "'depends_on' must be a list of task ids")
        for name in ("priority", "max_attempts", "attempts"):
            _check(_int(values.get(name, 0)), path, where, f"'{name}' must be an integer")
        status = values.get("status", "pending")
        try:
            values["status"] = TaskStatus(status)
        except ValueError:
            raise CorruptState(path, f"{where}: unknown status {status!r} (one of {', '.join(s.value for s in TaskStatus)})") from None
        task = cls(**values)
        task.extra = {k: v for k, v in raw.items() if k not in known}
        return task

    def lease_expired(self, now: datetime) -> bool:
        """True when this task is in progress and its lease ran out by `now`: the one definition.

        A missing or unreadable lease time counts as run out; otherwise nothing
        would ever return such a task (hand-edited, or written by another tool) to the queue.
        """
        if self.status is not TaskStatus.IN_PROGRESS:
            return False
        expires = parse(self.lease_expires_at)
        return expires is None or expires <= now

    def lease_left(self, now: datetime) -> float | None:
        """Seconds of lease left (negative once run out); None when there is no readable lease."""
        expires = parse(self.lease_expires_at)
        return None if expires is None else (expires - now).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            out[f.name] = v.value if isinstance(v, Enum) else (list(v) if isinstance(v, list) else v)
        out.update(self.extra)
        return out


@dataclass
class Worker:
    id: str
    status: str = "active"
    capabilities: list[str] = field(default_factory=list)
    registered_at: str | None = None
    last_heartbeat: str | None = None
    last_task_claimed: str | None = None
    last_task_completed: str | None = None
    current_task: int | None = None
    idle_since: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, wid: str, raw: Any, path: str = WORKERS_FILE) -> "Worker":
        where = f"worker {wid!r}"
        _check(isinstance(raw, dict), path, where, "must be an object")
        known = {f.name for f in fields(cls)} - {"extra", "id"}
        values = {k: raw[k] for k in known if k in raw and raw[k] is not None}
        for name in ("status", "registered_at", "last_heartbeat", "last_task_claimed", "last_task_completed", "idle_since"):
            _check(_opt_str(values.get(name)), path, where, f"'{name}' must be text or null")
        caps = values.get("capabilities", [])
        _check(isinstance(caps, list) and all(isinstance(c, str) for c in caps), path, where, "'capabilities' must be a list of text")
        _check(values.get("current_task") is None or _int(values.get("current_task")), path, where, "'current_task' must be a task id or null")
        w = cls(id=wid, **values)
        w.extra = {k: v for k, v in raw.items() if k not in known}
        return w

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "id")}
        out["capabilities"] = list(self.capabilities)
        out.update(self.extra)
        return out


def load_tasks(raw: Any, path: str = QUEUE_FILE) -> list[Task]:
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


def load_workers(raw: Any, path: str = WORKERS_FILE) -> dict[str, Worker]:
    if raw is None:
        return {}
    _check(isinstance(raw, dict), path, "the file", "must be a JSON object keyed by worker id")
    return {wid: Worker.from_dict(wid, w, path) for wid, w in raw.items()}
