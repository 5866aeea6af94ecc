"""The task queue: add, claim, complete, fail, release, leases, reaping.

All changes run through `Store.transact`, so each is one locked
read-modify-write of `task-queue.json` (and `worker-status.json` where the
worker's record changes). Times come from the server's clock (`txn.now`),
so leases mean the same to every client whatever its own clock says.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Iterable, Sequence

from . import validate
from .errors import CorruptState, Fenced, InvalidInput, MavpsError, NotFound, Refused
from .models import (TASKS_DIR, ARCHIVE_FILE, FINISHED, META_FILE, QUEUE_FILE, WORKERS_FILE, Task, TaskStatus, Worker,
                     instruction_path, load_tasks, load_workers)
from .store import Store, Txn, log_line
from .timeutil import after, iso, utcnow

#: Finished tasks kept in task-queue.json; older ones move to the archive.
KEEP_FINISHED = 200
#: Archive in batches, so the archive's extra round trip is rare.
ARCHIVE_BATCH = 100


@dataclass
class NextTask:
    """What `Queue.next_task` found: held tasks, or the one just claimed, and the state seen."""

    held: list[Task]
    claimed: Task | None
    tasks: list[Task]
    worker: Worker
    now: datetime


@dataclass
class Claimed:
    """What `Queue.get_work` gave: the task, and whether the worker already held it."""

    task: Task | None
    already_held: bool = False


@dataclass
class QueueSettings:
    lease_ttl: float = 1800.0
    max_attempts: int = 3


class Queue:
    def __init__(self, store: Store, agent: str, settings: QueueSettings | None = None) -> None:
        self.store = store
        self.agent = agent
        self.settings = settings or QueueSettings()

    # ----- reading ---------------------------------------------------------
    def list(self, status: str | None = None, worker: str | None = None, include_archived: bool = False) -> list[Task]:
        """Tasks without taking the lock (two round trips; the archive costs two more)."""
        tasks = load_tasks(self._look(QUEUE_FILE))
        if include_archived:
            live = {t.id for t in tasks}
            tasks = [t for t in self._archived() if t.id not in live] + tasks
            tasks.sort(key=lambda t: t.id)
        return filter_tasks(tasks, status, worker)

    def get(self, task_id: int | str) -> Task:
        tid = validate.task_id(task_id)
        for t in load_tasks(self._look(QUEUE_FILE)):
            if t.id == tid:
                return t
        for t in self._archived():
            if t.id == tid:
                return t
        raise NotFound(f"no task {tid}: see `mavps task list --all`")

    def instructions(self, task: Task) -> str:
        if not task.instruction_file:
            return ""
        from .files import read_file  # refuses '..' and symlinks leading out of the workspace

        try:
            data = read_file(self.store.transport, task.instruction_file)
        except NotFound:
            return ""
        return data.decode("utf-8", "replace")

    def ready(self, capabilities: Iterable[str] | None = None) -> list[Task]:
        """What is claimable now (by a worker with these capabilities, if given)."""
        caps = None if capabilities is None else set(validate.capabilities(list(capabilities)))
        tasks = load_tasks(self._look(QUEUE_FILE))
        return claimable(as_reaped(tasks, utcnow()), caps, self.dependency_index(tasks))

    def waiting(self) -> list[tuple[Task, str]]:
        """Pending tasks that cannot be claimed now, each with why (see `blocked_reason`).

        Two round trips (the queue and the worker registry), two more when the
        archive must be read (a pending task depends on an id the queue lacks).
        """
        raw = self.store.look([QUEUE_FILE, WORKERS_FILE])
        tasks = load_tasks(_parsed(QUEUE_FILE, raw[QUEUE_FILE]))
        caps = known_capabilities(load_workers(_parsed(WORKERS_FILE, raw[WORKERS_FILE])))
        tasks = as_reaped(tasks, utcnow())
        index = self.dependency_index(tasks)
        out = []
        for t in tasks:
            reason = blocked_reason(t, index, caps)
            if reason is not None:
                out.append((t, reason))
        return out

    def blocked_reason(self, task: Task) -> str | None:
        """Why this task cannot be claimed now, or None (see `blocked_reason`)."""
        if task.status is not TaskStatus.PENDING:
            return None
        return next((why for t, why in self.waiting() if t.id == task.id), None)

    def dependency_index(self, tasks: list[Task]) -> dict[int, Task]:
        """Tasks by id for judging dependencies: the queue's, plus archived tasks that pending
        tasks depend on and the queue lacks (the archive is read only then; the queue always wins)."""
        index = {t.id: t for t in tasks}
        missing = missing_dependencies(tasks)
        if missing:
            for t in self._archived():
                if t.id in missing:
                    index[t.id] = t
        return index

    def read_instructions(self, task: Task) -> tuple[str, str | None]:
        """The instruction text, and why it could not be read (None when it could).

        A claim must never fail after it committed, so this never raises for the
        workspace's contents (a link, a directory, an absolute path, a missing file).
        """
        if not task.instruction_file:
            return "", None
        from .files import read_file

        try:
            data = read_file(self.store.transport, task.instruction_file)
        except (MavpsError, OSError) as exc:
            return "", str(exc)
        return data.decode("utf-8", "replace"), None

    def _look(self, path: str) -> Any:
        from .store import parse_json

        data = self.store.look([path])[path]
        return None if data is None else parse_json(path, data)

    def _archived(self) -> list[Task]:
        """Archived tasks (the last line of an id wins); callers let the queue win over them."""
        data = self.store.look([ARCHIVE_FILE])[ARCHIVE_FILE]
        return parse_archive(data)

    # ----- changing --------------------------------------------------------
    def add(self, description: str, instructions: str | None = None, *, instruction_file: str | None = None,
            context_files: Sequence[str] = (), requires: Sequence[str] = (), priority: int = 0,
            depends_on: Sequence[int] = (), max_attempts: int | None = None, agent: str | None = None,
            extra: dict[str, Any] | None = None) -> Task:
        """Add a pending task; its instructions go to tasks/task-<id>-instructions.md."""
        description = validate.text(description, "description", validate.MAX_DESCRIPTION, allow_empty=False)
        if instructions is not None:
            instructions = validate.text(instructions, "instructions")
        if instruction_file is not None:
            if instructions is not None:
                raise InvalidInput("give instructions as text or as an existing file, not both")
            instruction_file = validate.relative_path(instruction_file, "instruction_file")
        context = [validate.relative_path(c, "context file") for c in context_files]
        reqs = validate.capabilities(list(requires))
        priority = validate.integer(priority, "priority", -10**6, 10**6)
        attempts = validate.integer(self.settings.max_attempts if max_attempts is None else max_attempts, "max_attempts", 1, 100)
        deps = sorted({validate.task_id(d) for d in depends_on})
        agent = validate.agent_name(agent or self.agent)
        if instruction_file is not None:
            from .files import read_file

            try:
                read_file(self.store.transport, instruction_file)
            except NotFound:
                raise NotFound(f"instruction file {instruction_file} does not exist in the workspace: "
                               "write it first (`mavps put`)") from None

        def change(txn: Txn) -> Task:
            tasks = load_tasks(txn.json(QUEUE_FILE, []))
            reap(txn, tasks)
            meta = read_meta(txn)
            by_id = {t.id: t for t in tasks}
            next_id = max([meta.get("next_task_id", 1)] + [t.id + 1 for t in tasks])
            missing = [d for d in deps if d not in by_id]
            if missing:
                archived = {t.id: t for t in self._archived()} if any(d < next_id for d in missing) else {}
                for d in missing:
                    if d not in archived:
                        raise InvalidInput(f"depends_on: no task {d}")
                    if archived[d].status is not TaskStatus.COMPLETED:
                        raise InvalidInput(f"depends_on: task {d} was {archived[d].status.value}; it will never complete")
            task = Task(id=next_id, description=description, context_files=context, requires=reqs,
                        priority=priority, depends_on=deps, max_attempts=attempts,
                        created_at=txn.stamp, created_by=agent, updated_at=txn.stamp)
            if extra:
                task.extra = {k: v for k, v in extra.items() if k not in task.to_dict()}
            if instruction_file is not None:
                task.instruction_file = instruction_file
            else:
                task.instruction_file = instruction_path(task.id)
                txn.put(task.instruction_file, (instructions or f"# Task {task.id}: {description}\n").encode("utf-8"))
            tasks.append(task)
            meta["next_task_id"] = next_id + 1
            txn.write(META_FILE, meta)
            txn.write(QUEUE_FILE, [t.to_dict() for t in tasks])
            txn.log.append(event(txn, agent, "task_added", f"Added task #{task.id}: {description[:200]}", task))
            return task

        return self.store.transact([QUEUE_FILE, META_FILE], change, new_files=1, new_dirs=[TASKS_DIR])

    def claim(self, worker: str, capabilities: Sequence[str] | None = None, token: str | None = None) -> Task | None:
        """Hand the best claimable task to this worker, or None when nothing is claimable.

        `token` makes a retry safe: a claim repeated with the token of one that
        already happened returns that task instead of claiming another.
        """
        worker = validate.worker_id(worker)
        caps = None if capabilities is None else validate.capabilities(list(capabilities))
        token = token or secrets.token_hex(8)

        def change(txn: Txn) -> Task | None:
            tasks, workers = self._load(txn)
            for t in tasks:
                if t.claim_token == token and t.claimed_by == worker and t.status is TaskStatus.IN_PROGRESS:
                    return t  # this claim already happened
            w = ensure_worker(txn, workers, worker, caps)
            reap(txn, tasks)
            choice = self._take(txn, tasks, w, token)
            self._save(txn, tasks, workers)
            return choice

        return self.store.transact([QUEUE_FILE, WORKERS_FILE], change)

    def get_work(self, worker: str, capabilities: Sequence[str] | None = None, token: str | None = None) -> Claimed:
        """What a worker asking for work should do: the task it already holds (oldest claimed
        first, all its leases renewed), else a newly claimed one, else nothing.

        Why: a claim whose answer was lost (Ctrl-C, a dropped connection, an
        unreadable instruction file) must not strand the task it claimed; asking
        again hands that task back instead of claiming another.
        """
        worker = validate.worker_id(worker)
        caps = None if capabilities is None else validate.capabilities(list(capabilities))
        token = token or secrets.token_hex(8)

        def change(txn: Txn) -> Claimed:
            tasks, workers = self._load(txn)
            for t in tasks:
                if t.claim_token == token and t.claimed_by == worker and t.status is TaskStatus.IN_PROGRESS:
                    return Claimed(t)  # this claim already happened
            w = ensure_worker(txn, workers, worker, caps)
            held = held_by(tasks, worker)
            reap(txn, tasks, spare={t.id for t in held})
            if held:
                for t in held:
                    t.lease_expires_at = iso(after(txn.now, self.settings.lease_ttl))
                w.last_heartbeat = txn.stamp
                w.current_task = held[0].id
                w.status, w.idle_since = "active", None
                txn.log.append(event(txn, worker, "task_held", f"{worker} asked for work while holding task "
                                     f"#{held[0].id}: handed it back, lease renewed", held[0]))
                self._save(txn, tasks, workers)
                return Claimed(held[0], already_held=True)
            choice = self._take(txn, tasks, w, token)
            self._save(txn, tasks, workers)
            return Claimed(choice)

        return self.store.transact([QUEUE_FILE, WORKERS_FILE], change)

    def heartbeat(self, worker: str) -> list[Task]:
        """Renew the leases of every task this worker holds; returns them."""
        return self.next_task(worker, claim=False).held

    def next_task(self, worker: str, capabilities: Sequence[str] | None = None, claim: bool = True) -> "NextTask":
        """Heartbeat, then claim the best task if the worker holds none: the Stop hook's one transaction.

        Returns what the worker holds or was just given, and the queue and the
        worker's record as committed (so the caller needs no second look).
        """
        worker = validate.worker_id(worker)
        caps = None if capabilities is None else validate.capabilities(list(capabilities))
        token = secrets.token_hex(8)

        def change(txn: Txn) -> NextTask:
            tasks, workers = self._load(txn)
            w = ensure_worker(txn, workers, worker, caps)
            held = held_by(tasks, worker)
            reap(txn, tasks, spare={t.id for t in held})
            for t in held:
                t.lease_expires_at = iso(after(txn.now, self.settings.lease_ttl))
            w.last_heartbeat = txn.stamp
            if w.status != "active":  # a heartbeat means the worker is alive again
                w.status = "active"
                w.idle_since = None
                txn.log.append(event(txn, worker, "worker_active", f"{worker} is active again", None))
            claimed = self._take(txn, tasks, w, token) if claim and not held else None
            self._save(txn, tasks, workers)
            return NextTask(held, claimed, tasks, w, txn.now)

        return self.store.transact([QUEUE_FILE, WORKERS_FILE], change)

    def _take(self, txn: Txn, tasks: list[Task], w: Worker, token: str) -> Task | None:
        """Give the best claimable task to worker `w` (inside a transaction)."""
        choice = next(iter(claimable(tasks, set(w.capabilities), self.dependency_index(tasks))), None)
        if choice is None:
            return None
        choice.status = TaskStatus.IN_PROGRESS
        choice.claimed_by = w.id
        choice.claimed_at = txn.stamp
        choice.completed_at = None
        choice.attempts += 1
        choice.claim_token = token
        choice.lease_expires_at = iso(after(txn.now, self.settings.lease_ttl))
        choice.updated_at = txn.stamp
        w.last_task_claimed = txn.stamp
        w.last_heartbeat = txn.stamp
        w.current_task = choice.id
        w.status = "active"
        w.idle_since = None
        txn.log.append(event(txn, w.id, "task_claimed", f"Claimed task #{choice.id}", choice, attempt=choice.attempts))
        return choice

    def complete(self, task_id: int | str, worker: str, result: str | None = None, token: str | None = None) -> Task:
        result = validate.text(result, "result", 64 * 1024) if result is not None else None
        return self._finish(task_id, worker, "complete", result, token)

    def fail(self, task_id: int | str, worker: str, error: str | None = None, token: str | None = None) -> Task:
        error = validate.text(error, "error", 64 * 1024) if error is not None else None
        return self._finish(task_id, worker, "fail", error, token)

    def release(self, task_id: int | str, worker: str, token: str | None = None) -> Task:
        return self._finish(task_id, worker, "release", None, token)

    def _finish(self, task_id: int | str, worker: str, how: str, text: str | None, token: str | None) -> Task:
        tid = validate.task_id(task_id)
        worker = validate.worker_id(worker)

        def change(txn: Txn) -> Task:
            tasks, workers = self._load(txn)
            task = find(tasks, tid)
            if how == "complete" and task.status is TaskStatus.COMPLETED and task.claimed_by == worker \
                    and (token is None or task.claim_token == token):
                return task  # a retry of a completion that already happened
            check_holder(task, worker, token)
            reap(txn, tasks, spare={tid})
            w = ensure_worker(txn, workers, worker, None)
            w.last_heartbeat = txn.stamp
            if w.current_task == tid:
                w.current_task = None
            task.updated_at = txn.stamp
            task.lease_expires_at = None
            if how == "complete":
                task.status = TaskStatus.COMPLETED
                task.completed_at = txn.stamp
                task.result = text
                w.last_task_completed = txn.stamp
                txn.log.append(event(txn, worker, "task_completed", f"Completed task #{tid}", task,
                                     **({"result": text[:2000]} if text else {})))
            elif how == "fail":
                task.error = text or "failed without a reason"
                if task.attempts >= task.max_attempts:
                    task.status = TaskStatus.FAILED
                    task.completed_at = txn.stamp
                    txn.log.append(event(txn, worker, "task_failed",
                                         f"Task #{tid} failed for good after {task.attempts} attempts: {task.error[:500]}",
                                         task, final=True))
                else:
                    back_to_pending(task)
                    txn.log.append(event(txn, worker, "task_failed",
                                         f"Task #{tid} failed (attempt {task.attempts} of {task.max_attempts}), back to pending: {task.error[:500]}",
                                         task, final=False))
            else:
                task.attempts = max(0, task.attempts - 1)  # given back untried
                back_to_pending(task)
                txn.log.append(event(txn, worker, "task_released", f"Released task #{tid} untried", task))
            self._save(txn, tasks, workers)
            return task

        return self.store.transact([QUEUE_FILE, WORKERS_FILE], change)

    def cancel(self, task_id: int | str, agent: str | None = None) -> Task:
        return self._steer(task_id, "cancel", agent)

    def requeue(self, task_id: int | str, agent: str | None = None) -> Task:
        return self._steer(task_id, "requeue", agent)

    def _steer(self, task_id: int | str, how: str, agent: str | None) -> Task:
        tid = validate.task_id(task_id)
        agent = validate.agent_name(agent or self.agent)

        def change(txn: Txn) -> Task:
            tasks = load_tasks(txn.json(QUEUE_FILE, []))
            task = find(tasks, tid)
            if how == "cancel":
                if task.status in FINISHED:
                    raise Refused(f"task {tid} is already {task.status.value}; nothing to cancel")
                was = task.claimed_by if task.status is TaskStatus.IN_PROGRESS else None
                task.status = TaskStatus.CANCELLED
                task.completed_at = txn.stamp
                task.lease_expires_at = None
                msg = f"Cancelled task #{tid}" + (f" (held by {was}, whose result will be refused)" if was else "")
                txn.log.append(event(txn, agent, "task_cancelled", msg, task))
            else:
                if task.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
                    raise Refused(f"task {tid} is {task.status.value}: only failed or cancelled tasks can be requeued")
                back_to_pending(task)
                task.attempts = 0
                task.completed_at = None
                txn.log.append(event(txn, agent, "task_requeued", f"Requeued task #{tid}", task))
            task.updated_at = txn.stamp
            reap(txn, tasks)
            txn.write(QUEUE_FILE, [t.to_dict() for t in archive(txn, tasks)])
            return task

        return self.store.transact([QUEUE_FILE], change)

    def reap(self) -> list[Task]:
        """Return expired leases to the queue now (any change does this too)."""
        def change(txn: Txn) -> list[Task]:
            tasks = load_tasks(txn.json(QUEUE_FILE, []))
            reaped = reap(txn, tasks)
            if reaped:
                txn.write(QUEUE_FILE, [t.to_dict() for t in tasks])
            return reaped

        return self.store.transact([QUEUE_FILE], change)

    # ----- helpers ---------------------------------------------------------
    def _load(self, txn: Txn) -> tuple[list[Task], dict[str, Worker]]:
        return load_tasks(txn.json(QUEUE_FILE, [])), load_workers(txn.json(WORKERS_FILE, {}))

    def _save(self, txn: Txn, tasks: list[Task], workers: dict[str, Worker]) -> None:
        txn.write(QUEUE_FILE, [t.to_dict() for t in archive(txn, tasks)])
        txn.write(WORKERS_FILE, {wid: w.to_dict() for wid, w in workers.items()})


# ----- pure logic, shared with the CLI and hooks ------------------------------
def _parsed(path: str, data: bytes | None) -> Any:
    from .store import parse_json

    return None if data is None else parse_json(path, data)


def event(txn: Txn, agent: str, name: str, message: str, task: Task | None, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"timestamp": txn.stamp, "agent": agent, "message": message, "event": name}
    if task is not None:
        record["task_id"] = task.id
        record["status"] = task.status.value
    record.update(fields)
    return record


def find(tasks: list[Task], tid: int) -> Task:
    for t in tasks:
        if t.id == tid:
            return t
    raise NotFound(f"no live task {tid} in the queue (finished tasks may be archived: `mavps task show {tid}`)")


def check_holder(task: Task, worker: str, token: str | None) -> None:
    """Only the worker holding the task may finish it; everyone else is fenced."""
    if task.status is TaskStatus.IN_PROGRESS and task.claimed_by == worker and (token is None or task.claim_token == token):
        return
    if task.status is TaskStatus.PENDING and task.claimed_by is None:
        raise Fenced(f"task {task.id} is not claimed by {worker} (it is pending, maybe after its lease expired); "
                     "nothing was recorded: claim work with `mavps claim`")
    holder = f"held by {task.claimed_by}" if task.status is TaskStatus.IN_PROGRESS else task.status.value
    raise Fenced(f"task {task.id} is no longer {worker}'s (now {holder}); nothing was recorded. "
                 "If your lease expired, claim new work with `mavps claim`")


def back_to_pending(task: Task) -> None:
    task.status = TaskStatus.PENDING
    task.claimed_by = None
    task.claimed_at = None
    task.claim_token = None
    task.lease_expires_at = None


def ensure_worker(txn: Txn, workers: dict[str, Worker], wid: str, caps: list[str] | None) -> Worker:
    w = workers.get(wid)
    if w is None:
        w = workers[wid] = Worker(id=wid, capabilities=caps or [], registered_at=txn.stamp, last_heartbeat=txn.stamp)
        txn.log.append({"timestamp": txn.stamp, "agent": wid, "message": f"Registered worker {wid}",
                        "event": "worker_registered", "worker": wid, "capabilities": w.capabilities})
    elif caps is not None and caps != w.capabilities:
        w.capabilities = caps
    return w


def reap(txn: Txn, tasks: list[Task], spare: set[int] = frozenset()) -> list[Task]:  # type: ignore[assignment]
    """Expired leases go back to pending, or to failed when out of attempts."""
    reaped = []
    for t in tasks:
        if t.id in spare or not t.lease_expired(txn.now):
            continue
        holder = t.claimed_by
        if t.attempts >= t.max_attempts:
            t.status = TaskStatus.FAILED
            t.error = f"lease expired while held by {holder} (attempt {t.attempts} of {t.max_attempts})"
            t.completed_at = txn.stamp
            t.lease_expires_at = None
        else:
            back_to_pending(t)
        t.updated_at = txn.stamp
        txn.log.append(event(txn, "mavps", "lease_expired",
                             f"Lease of task #{t.id} held by {holder} expired; task is {t.status.value}",
                             t, previous_holder=holder))
        reaped.append(t)
    return reaped


def claimable(tasks: list[Task], caps: set[str] | None, index: dict[int, Task] | None = None) -> list[Task]:
    """Pending tasks whose dependencies are completed and requirements covered, best first.

    A dependency counts as done only when it is completed: in the queue, or in
    `index` (from `Queue.dependency_index`, which adds archived tasks). One that
    is nowhere to be found is not done.
    """
    index = {t.id: t for t in tasks} if index is None else index
    out = [
        t for t in tasks
        if t.status is TaskStatus.PENDING
        and all(_completed(index.get(d)) for d in t.depends_on)
        and (caps is None or set(t.requires) <= caps)
    ]
    out.sort(key=lambda t: (-t.priority, t.id))
    return out


def _completed(task: Task | None) -> bool:
    return task is not None and task.status is TaskStatus.COMPLETED


def as_reaped(tasks: list[Task], now: datetime) -> list[Task]:
    """The tasks as the next change would see them: expired leases with attempts left back to pending.

    For looks only (nothing is written): the next claim reaps them for real.
    """
    out = []
    for t in tasks:
        if t.lease_expired(now) and t.attempts < t.max_attempts:
            t = replace(t, extra=dict(t.extra))
            back_to_pending(t)
        out.append(t)
    return out


def held_by(tasks: list[Task], worker: str) -> list[Task]:
    """The tasks this worker holds, oldest claimed first (the queue says, not the worker's record)."""
    held = [t for t in tasks if t.status is TaskStatus.IN_PROGRESS and t.claimed_by == worker]
    held.sort(key=lambda t: (t.claimed_at or "", t.id))
    return held


def known_capabilities(workers: dict[str, Worker]) -> set[str]:
    """Every capability some registered worker has."""
    return {c for w in workers.values() for c in w.capabilities}


def missing_dependencies(tasks: list[Task]) -> set[int]:
    """Ids pending tasks depend on that the queue does not hold (archived, or never existed)."""
    present = {t.id for t in tasks}
    return {d for t in tasks if t.status is TaskStatus.PENDING for d in t.depends_on if d not in present}


def blocked_reason(task: Task, tasks_by_id: dict[int, Task], caps_known: set[str] | None) -> str | None:
    """Why a pending task is not claimable, or None (it is, or it is not pending).

    "blocked: ..." when a dependency will never complete by itself (cancelled,
    failed, missing, or blocked in turn); "needs capability ..." when no
    registered worker has one it requires (`caps_known`: their capabilities,
    None to skip this check); "waits for #N" while a dependency is still to
    finish. `tasks_by_id` should come from `Queue.dependency_index`, or an id
    only the archive holds reads as missing.
    """
    if task.status is not TaskStatus.PENDING:
        return None
    dead = dead_dependency(task, tasks_by_id)
    if dead is not None:
        return dead
    if caps_known is not None:
        lacking = [c for c in task.requires if c not in caps_known]
        if lacking:
            names = ", ".join(repr(c) for c in lacking)
            return f"needs capability {names} that no registered worker has: register one (`mavps worker register W " \
                   f"--capability ...`) or edit this task's requirements"
    waits = [d for d in task.depends_on if not _completed(tasks_by_id.get(d))]
    if waits:
        return "waits for " + ", ".join(f"#{d}" for d in waits)
    return None


def is_stuck(reason: str | None) -> bool:
    """A reason from `blocked_reason` that will not go away by itself (a person must act)."""
    return reason is not None and not reason.startswith("waits for ")


def dead_dependency(task: Task, tasks_by_id: dict[int, Task]) -> str | None:
    """"blocked: ..." naming the first dependency (direct or through others) that will never complete."""
    path: list[int] = [task.id]
    seen: set[int] = set()

    def walk(t: Task) -> str | None:
        for d in t.depends_on:
            dep = tasks_by_id.get(d)
            via = f" (through {', '.join(f'#{i}' for i in path[1:])})" if len(path) > 1 else ""
            fix = f"requeue #{d} or edit the dependencies"
            if d in path:
                circle = " -> ".join(f"#{i}" for i in [*path[path.index(d):], d])
                return f"blocked: dependencies in a circle ({circle}): edit the dependencies"
            if dep is None:
                return f"blocked: depends on #{d}{via}, which does not exist: edit the dependencies"
            if dep.status is TaskStatus.CANCELLED:
                return f"blocked: depends on #{d}{via}, which was cancelled: {fix}"
            if dep.status is TaskStatus.FAILED:
                return f"blocked: depends on #{d}{via}, which failed for good: {fix}"
            if dep.status is TaskStatus.PENDING and d not in seen:
                seen.add(d)
                path.append(d)
                found = walk(dep)
                path.pop()
                if found is not None:
                    return found
        return None

    return walk(task)


def path_problem(tasks: list[Task]) -> str | None:
    """What is wrong with a path some task points to (instruction or context file), or None.

    `add` checks these; a hand edit must be held to the same rule, or a claim
    would hand out a task whose instructions can never be read.
    """
    for t in tasks:
        named = ([("instruction_file", t.instruction_file)] if t.instruction_file is not None else []) \
            + [("context file", c) for c in t.context_files]
        for what, path in named:
            try:
                validate.relative_path(path, what)
            except InvalidInput as exc:
                return f"task {t.id}: {exc}"
    return None


def dependency_cycle(tasks: list[Task]) -> list[int] | None:
    """A chain of task ids that depend on each other in a circle, or None.

    `add` cannot make one (a new task depends only on older ones); a hand edit can.
    """
    deps = {t.id: [d for d in t.depends_on] for t in tasks}
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    for start in deps:
        if state.get(start):
            continue
        path, stack = [start], [iter(deps[start])]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt in deps and not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(deps[nxt]))
    return None


def filter_tasks(tasks: list[Task], status: str | None, worker: str | None) -> list[Task]:
    if status is not None:
        try:
            wanted = TaskStatus(status)
        except ValueError:
            raise InvalidInput(f"unknown status {status!r}: one of {', '.join(s.value for s in TaskStatus)}") from None
        tasks = [t for t in tasks if t.status is wanted]
    if worker is not None:
        tasks = [t for t in tasks if t.claimed_by == worker]
    return tasks


def read_meta(txn: Txn) -> dict[str, Any]:
    meta = txn.json(META_FILE, {})
    if not isinstance(meta, dict):
        raise CorruptState(META_FILE, "must be a JSON object")
    meta.setdefault("format", 1)
    if not isinstance(meta.get("next_task_id", 1), int):
        raise CorruptState(META_FILE, "'next_task_id' must be an integer")
    return meta


def archive(txn: Txn, tasks: list[Task]) -> list[Task]:
    """Move the oldest finished tasks to the append-only archive, keeping the queue small.

    Failed tasks stay (a person must look at them) and so does anything a live
    task depends on. Ids stay unique: workspace.json keeps the next id.
    """
    finished = [t for t in tasks if t.status in (TaskStatus.COMPLETED, TaskStatus.CANCELLED)]
    if len(finished) <= KEEP_FINISHED + ARCHIVE_BATCH:
        return tasks
    needed = {d for t in tasks if t.status not in FINISHED for d in t.depends_on}
    movable = sorted((t for t in finished if t.id not in needed), key=lambda t: (t.completed_at or "", t.id))
    moving = movable[: len(finished) - KEEP_FINISHED]
    gone = {t.id for t in moving}
    for t in moving:
        txn.append(ARCHIVE_FILE, log_line(t.to_dict()))
    if moving:
        txn.log.append({"timestamp": txn.stamp, "agent": "mavps", "event": "tasks_archived",
                        "message": f"Archived {len(moving)} finished tasks to {ARCHIVE_FILE}",
                        "task_ids": sorted(gone)})
    return [t for t in tasks if t.id not in gone]


def parse_archive(data: bytes | None) -> list[Task]:
    """Archived tasks; a line cut short by a crash is skipped, the last copy of an id wins."""
    out: dict[int, Task] = {}
    if not data:
        return []
    for line in data.decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        try:
            t = Task.from_dict(json.loads(line), ARCHIVE_FILE)
        except (ValueError, CorruptState):
            continue
        out[t.id] = t
    return list(out.values())
