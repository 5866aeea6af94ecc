"""Records as they are on disk: tasks and workers, and every change of their state.

Each is a small typed class with `from_dict`/`to_dict`. Fields another
version may have written are kept in `extra` and written back unchanged.
A state change is one method (`Task.claim`, `Task.complete`, ...) that sets
every field the change implies, so no caller can set half of them.
Loading whole state files lives in state.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Any, Iterator

from .defaults import MAX_ATTEMPTS

from .errors import CorruptState, Refused
from .timeutil import after, iso, parse

QUEUE_FILE = "task-queue.json"
WORKERS_FILE = "worker-status.json"
META_FILE = "workspace.json"
ARCHIVE_FILE = "task-archive.jsonl"
#: Pending tasks beyond the active window (one per line); its committed length is in workspace.json.
BACKLOG_FILE = "task-backlog.jsonl"
TASKS_DIR = "tasks"
#: Hand reservations of paths (`mavps reserve`); absent means none.
RES_FILE = "reservations.json"


class TaskStatus(str, Enum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


FINISHED = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class WorkerStatus(str, Enum):
    """What a worker's record says. Only these two are ever set: a worker is active from its
    registration or any heartbeat, and offline once the Stop hook lets it stop (or `mavps demo`
    ends). There is no "idle": marking a waiting worker would cost the Stop hook a transaction
    per wait, and its idleness is already told by `idle_since` and its last heartbeat."""

    ACTIVE = "active"
    OFFLINE = "offline"

    def __str__(self) -> str:
        return self.value


def instruction_path(task_id: int) -> str:
    return f"{TASKS_DIR}/task-{task_id}-instructions.md"


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    """A record's field names but `extra`, in order (dataclasses.fields is slow: a queue of 10 000 tasks
    called it 20 000 times per change)."""
    return tuple(f.name for f in fields(cls) if f.name != "extra")


def _check(cond: bool, path: str, where: str, what: str) -> None:
    if not cond:
        raise CorruptState(path, f"{where}: {what}")


def _opt_str(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_TEXT_FIELDS = ("instruction_file", "claimed_by", "claimed_at", "completed_at", "lease_expires_at", "claim_token",
                "created_at", "created_by", "updated_at", "result", "error", "plan_name", "plan_digest")
#: Fields written only when they differ from their default: a queue without drafts or plans reads as before.
_OPTIONAL = {"held": False, "touches": [], "plan_name": None, "plan_digest": None, "questions": []}
#: The keys of one question in `Task.questions` (`mavps ask` / `mavps answer`).
QUESTION_KEYS = ("asked_at", "asked_by", "text", "answer", "answered_at", "answered_by")
#: What `Task.edit` may change.
EDITABLE = ("description", "context_files", "requires", "priority", "depends_on", "max_attempts", "instruction_file",
            "touches")


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
    max_attempts: int = MAX_ATTEMPTS
    attempts: int = 0
    lease_expires_at: str | None = None
    claim_token: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    updated_at: str | None = None
    result: str | None = None
    error: str | None = None
    #: A draft nobody can claim until `release_hold` (written only when true, so older readers keep working).
    held: bool = False
    #: Globs of the files the task will write: it waits while another task or a reservation holds one (rules.holds).
    touches: list[str] = field(default_factory=list)
    #: Its name in the plan that added it, and that plan item's digest (`mavps plan apply`; written only then).
    plan_name: str | None = None
    plan_digest: str | None = None
    #: Its holder's questions to the coordinator, oldest first, each {QUESTION_KEYS}; the last one whose
    #: "answer" is null is pending (written only once a question was asked).
    questions: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any, path: str = QUEUE_FILE) -> "Task":
        _check(isinstance(raw, dict), path, "a task", f"must be an object, not {type(raw).__name__}")
        tid = raw.get("id")
        where = f"task {tid!r}"
        _check(_int(tid) and tid > 0, path, where, "'id' must be a positive integer")
        known = _field_names(cls)
        values = {k: raw[k] for k in known if k in raw and raw[k] is not None}
        _check(isinstance(values.get("description", ""), str), path, where, "'description' must be text")
        for name in _TEXT_FIELDS:
            _check(_opt_str(values.get(name)), path, where, f"'{name}' must be text or null")
        for name in ("context_files", "requires", "touches"):
            _check(_texts(values.get(name, [])), path, where, f"'{name}' must be a list of text")
        _check(isinstance(values.get("held", False), bool), path, where, "'held' must be true or false")
        _check(_questions(values.get("questions", [])), path, where,
               "'questions' must be a list of objects with text fields " + ", ".join(QUESTION_KEYS))
        deps = values.get("depends_on", [])
        _check(isinstance(deps, list) and all(_int(x) for x in deps), path, where,
               "'depends_on' must be a list of task ids")
        for name in ("priority", "max_attempts", "attempts"):
            _check(_int(values.get(name, 0)), path, where, f"'{name}' must be an integer")
        values["status"] = _status(TaskStatus, values.get("status", "pending"), path, where)
        task = cls(**values)
        task.extra = {k: v for k, v in raw.items() if k not in known}
        return task

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in _field_names(type(self)):
            v = getattr(self, name)
            if name in _OPTIONAL and v == _OPTIONAL[name]:
                continue
            if name == "questions":
                v = [dict(q) for q in v]
            out[name] = v.value if isinstance(v, Enum) else (list(v) if isinstance(v, list) else v)
        out.update(self.extra)
        return out

    # ----- the lease -------------------------------------------------------------------
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

    def held_by(self, worker: str, token: str | None = None) -> bool:
        """In progress under this worker (and this claim, when a token is given)."""
        return self.status is TaskStatus.IN_PROGRESS and self.claimed_by == worker \
            and (token is None or self.claim_token == token)

    # ----- state changes: each sets every field it implies ------------------------------
    def claim(self, worker: str, token: str, now: datetime, lease_ttl: float) -> None:
        """Pending -> in progress under `worker`: one more attempt, a fresh lease."""
        self.status = TaskStatus.IN_PROGRESS
        self.claimed_by = worker
        self.claimed_at = iso(now)
        self.completed_at = None
        self.attempts += 1
        self.claim_token = token
        self._touch(now)
        self.renew(now, lease_ttl)

    def renew(self, now: datetime, lease_ttl: float) -> None:
        """The holder is alive: its lease runs `lease_ttl` from now."""
        self.lease_expires_at = iso(after(now, lease_ttl))

    def complete(self, result: str | None, now: datetime) -> None:
        """Done by its holder (who stays named, with its claim token, so a retry is recognised)."""
        self.status = TaskStatus.COMPLETED
        self.completed_at = iso(now)
        self.result = result
        self.lease_expires_at = None
        self._touch(now)

    def fail(self, error: str | None, now: datetime) -> bool:
        """The holder gave up: back to pending while attempts are left, else failed for good (True)."""
        self.error = error or "failed without a reason"
        self._touch(now)
        if self.attempts < self.max_attempts:
            self._unclaim()
            return False
        self._dead_letter(now)
        return True

    def release(self, now: datetime) -> None:
        """Given back untried (by its holder, or with its removed worker): the attempt does not count."""
        self.attempts = max(0, self.attempts - 1)
        self._unclaim()
        self._touch(now)

    def cancel(self, now: datetime) -> None:
        """Stopped by the coordinator; a holder's later result is refused (fenced)."""
        if self.status in FINISHED:
            raise Refused(f"task {self.id} is already {self.status.value}; nothing to cancel")
        self.status = TaskStatus.CANCELLED
        self.completed_at = iso(now)
        self.lease_expires_at = None
        self._touch(now)

    def requeue(self, now: datetime) -> None:
        """A failed or cancelled task gets a fresh start: pending, attempts from zero."""
        if self.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise Refused(f"task {self.id} is {self.status.value}: only failed or cancelled tasks can be requeued")
        self._unclaim()
        self.attempts = 0
        self.completed_at = None
        self._touch(now)

    def expire(self, now: datetime) -> bool:
        """The lease ran out: back to pending, or failed for good (True) when out of attempts."""
        holder = self.claimed_by
        self._touch(now)
        if self.attempts < self.max_attempts:
            self._unclaim()
            return False
        self.error = f"lease expired while held by {holder} (attempt {self.attempts} of {self.max_attempts})"
        self._dead_letter(now)
        return True

    def edit(self, changes: dict[str, Any], now: datetime) -> list[str]:
        """The coordinator reshapes a task that is not running (fields already checked); the fields changed."""
        if self.status is TaskStatus.IN_PROGRESS and set(changes) - {"touches"}:
            raise Refused(f"task {self.id} is running (held by {self.claimed_by}): cancel it first, or wait "
                          "(only its touches may change while it runs)")
        if self.status is TaskStatus.COMPLETED:
            raise Refused(f"task {self.id} is completed: add a new task instead")
        changed = []
        for name, value in changes.items():
            if name not in EDITABLE:
                raise ValueError(f"not an editable field: {name}")
            if getattr(self, name) != value:
                setattr(self, name, value)
                changed.append(name)
        if changed:
            self._touch(now)
        return changed

    def release_hold(self, now: datetime) -> None:
        """A held draft becomes claimable."""
        if not self.held:
            raise Refused(f"task {self.id} is not held: it is already claimable once pending "
                          "(hold new drafts with `mavps task add --hold`)")
        self.held = False
        self._touch(now)

    # ----- questions to the coordinator ---------------------------------------------------
    def pending_question(self) -> dict[str, Any] | None:
        """The question its holder is waiting to have answered, or None.

        Only while the task runs, and only its current holder's: a question left by a holder whose lease
        ran out is history, not something anyone waits for.
        """
        if self.status is not TaskStatus.IN_PROGRESS or not self.questions:
            return None
        last = self.questions[-1]
        return last if last.get("answer") is None and last.get("asked_by") == self.claimed_by else None

    def ask(self, worker: str, text: str, now: datetime, lease_ttl: float) -> dict[str, Any]:
        """Its holder asks the coordinator (the caller checked it is the holder); the lease is renewed."""
        if self.pending_question() is not None:
            raise Refused(f"task {self.id} already waits for an answer to its question: end your turn and "
                          "the Stop hook hands you the answer when it comes")
        question = {"asked_at": iso(now), "asked_by": worker, "text": text, "answer": None, "answered_at": None,
                    "answered_by": None}
        self.questions = [*self.questions, question]
        self.renew(now, lease_ttl)
        self._touch(now)
        return question

    def answer(self, text: str, agent: str, now: datetime) -> dict[str, Any]:
        """The coordinator (or a person) answers the pending question."""
        question = self.pending_question()
        if question is None:
            raise Refused(f"task {self.id} has no question waiting for an answer: nothing was recorded "
                          f"(see `mavps task show {self.id}`; send a message instead)")
        question.update(answer=text, answered_at=iso(now), answered_by=agent)
        self._touch(now)
        return question

    def _unclaim(self) -> None:
        self.status = TaskStatus.PENDING
        self.claimed_by = None
        self.claimed_at = None
        self.claim_token = None
        self.lease_expires_at = None

    def _dead_letter(self, now: datetime) -> None:
        self.status = TaskStatus.FAILED
        self.completed_at = iso(now)
        self.lease_expires_at = None

    def _touch(self, now: datetime) -> None:
        self.updated_at = iso(now)


@dataclass
class Worker:
    id: str
    status: WorkerStatus = WorkerStatus.ACTIVE
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
        for name in ("registered_at", "last_heartbeat", "last_task_claimed", "last_task_completed", "idle_since"):
            _check(_opt_str(values.get(name)), path, where, f"'{name}' must be text or null")
        _check(_texts(values.get("capabilities", [])), path, where, "'capabilities' must be a list of text")
        current = values.get("current_task")
        _check(current is None or _int(current), path, where, "'current_task' must be a task id or null")
        values["status"] = _status(WorkerStatus, values.get("status", "active"), path, where)
        w = cls(id=wid, **values)
        w.extra = {k: v for k, v in raw.items() if k not in known}
        return w

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "id")}
        out["status"] = self.status.value
        out["capabilities"] = list(self.capabilities)
        out.update(self.extra)
        return out

    # ----- state changes -----------------------------------------------------------------
    def beat(self, now: datetime) -> bool:
        """A heartbeat: the worker is alive, so active; True when it was not."""
        self.last_heartbeat = iso(now)
        woke = self.status is not WorkerStatus.ACTIVE
        self.status, self.idle_since = WorkerStatus.ACTIVE, None
        return woke

    def holds(self, task: Task, now: datetime) -> None:
        """It holds `task` (a held task handed back to it): alive, and that task is its current one."""
        self.beat(now)
        self.current_task = task.id

    def claimed(self, task: Task, now: datetime) -> None:
        """It was just given `task` by a claim."""
        self.holds(task, now)
        self.last_task_claimed = iso(now)

    def finished(self, task: Task, now: datetime) -> None:
        """It completed, failed or released `task`."""
        self.last_heartbeat = iso(now)
        if self.current_task == task.id:
            self.current_task = None
        if task.status is TaskStatus.COMPLETED:
            self.last_task_completed = iso(now)

    def set_status(self, status: WorkerStatus, now: datetime) -> bool:
        """Mark it so; True when that changed something (going offline starts `idle_since`)."""
        status = WorkerStatus(status)
        if self.status is status:
            return False
        self.status = status
        if status is WorkerStatus.OFFLINE and not self.idle_since:
            self.idle_since = iso(now)
        return True


@dataclass
class Reservation:
    """Paths held by hand (`mavps reserve`) until `expires_at`: tasks touching them wait, nothing else."""

    id: str
    globs: list[str] = field(default_factory=list)
    by: str = ""
    reason: str | None = None
    created_at: str | None = None
    expires_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any, path: str = RES_FILE) -> "Reservation":
        _check(isinstance(raw, dict), path, "a reservation", "must be an object")
        rid = raw.get("id")
        where = f"reservation {rid!r}"
        _check(isinstance(rid, str) and bool(rid), path, where, "'id' must be non-empty text")
        for name in ("by", "reason", "created_at", "expires_at"):
            _check(_opt_str(raw.get(name)), path, where, f"'{name}' must be text or null")
        _check(_texts(raw.get("globs", [])), path, where, "'globs' must be a list of text")
        known = {f.name for f in fields(cls)} - {"extra"}
        r = cls(**{k: raw[k] for k in known if raw.get(k) is not None})
        r.extra = {k: v for k, v in raw.items() if k not in known}
        return r

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["globs"] = list(self.globs)
        out.update(self.extra)
        return out

    def live(self, now: datetime) -> bool:
        """Still in force at `now`; an unreadable end time counts as ended (nothing waits for ever)."""
        ends = parse(self.expires_at)
        return ends is not None and ends > now


def load_reservations(raw: Any, path: str = RES_FILE) -> list[Reservation]:
    """Reservations from the parsed file (None: no file, none)."""
    if raw is None:
        return []
    _check(isinstance(raw, dict) and isinstance(raw.get("reservations", []), list), path, "the file",
           'must be a JSON object {"reservations": [...]}')
    return [Reservation.from_dict(r, path) for r in raw.get("reservations", [])]


def dump_reservations(reservations: list[Reservation]) -> dict[str, Any]:
    return {"reservations": [r.to_dict() for r in reservations]}


def _questions(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(q, dict) and all(_opt_str(q.get(k)) for k in QUESTION_KEYS)
                                       for q in v)


def _texts(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _status(kind: type[Enum], value: Any, path: str, where: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(s.value for s in kind)  # type: ignore[attr-defined]
        raise CorruptState(path, f"{where}: unknown status {value!r} (one of {names})") from None


def __getattr__(name: str) -> Any:
    """The loaders' old home: `models.load_tasks` and `models.load_workers` live in state.py now."""
    if name in ("load_tasks", "load_workers"):
        import importlib

        return getattr(importlib.import_module(f"{__package__}.state"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def task_lines(data: bytes, path: str) -> Iterator[Task]:
    """The tasks of a file of one JSON task per line (the archive, the backlog); a line cut short by a crash,
    or otherwise not a task, is skipped."""
    import json

    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        try:
            yield Task.from_dict(json.loads(line), path)
        except (ValueError, CorruptState):
            continue
