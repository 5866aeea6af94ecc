"""The task queue: add, claim, complete, fail, release, cancel, requeue, reap.

The thin part: each verb is one `Store.transact` (one locked read-modify-write
of `task-queue.json`, and `worker-status.json` where the worker's record
changes) that loads the state (state.py), applies the rules (rules.py) and
the Task's own state change (models.py), and writes the log records. Times
come from the server's clock (`txn.now`), so leases mean the same to every
client whatever its own clock says. `task-queue.json` is the active window;
the pending tasks beyond it wait in `task-backlog.jsonl` (window.py), which a
change reads only when it must (`_full`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Iterable, Sequence, TypeVar

from . import globs, validate
from .defaults import (ARCHIVE_BATCH, KEEP_FINISHED, LEASE_TTL, MAX_ATTEMPTS, MAX_DESCRIPTION,  # noqa: F401
                       MAX_PRIORITY, MAX_RESULT, RANGES)
from .errors import CorruptState, InvalidInput, MavpsError, NotFound
from .models import (ARCHIVE_FILE, BACKLOG_FILE, FINISHED, META_FILE, QUEUE_FILE, RES_FILE, TASKS_DIR, WORKERS_FILE,
                     Reservation, Task, TaskStatus, Worker, instruction_path, load_reservations)
from .rules import (already_completed, as_reaped, blocked_reason, by_token, check_holder, claimable,  # noqa: F401
                    dead_dependency, dependency_cycle, dependency_index, dependency_problem, edited_dependency_problem,
                    filter_tasks, find,
                    held_by, is_stuck, known_capabilities, missing_dependencies, path_problem, to_archive)
from .rules import holds
from .riders import RidingRead
from .rules import reap as reap_leases
from .state import (ALL_TASKS, archive_lines, dump_tasks, dump_workers, load_meta, load_tasks,  # noqa: F401
                    load_workers, parse_archive, read_all, read_backlog, read_tasks, read_workers)
from . import defaults
from .window import backlog_entries, backlog_info, backlog_lines, merged, overflow, pending_count, rank, \
    set_backlog_info, split, take_best
from .lockpaths import new_token
from .store import Store, Txn
from .timeutil import utcnow
from .workers import ensure_worker, event

# The imports marked noqa keep their old names importable from here (queue.claimable, queue.KEEP_FINISHED, ...).

#: What a holder's verb does to the task (and logs), given the transaction, the task and the worker's id.
Apply = Callable[[Txn, Task, str], None]
T = TypeVar("T")


class NeedBacklog(Exception):
    """Raised by a change that must see the backlog (the window lacks the task, has nothing claimable, runs low,
    or the backlog has leftovers of a failed commit): the change runs again as a full one (`_full`), which reads
    the backlog and rewrites it in the same commit. The attempt that raised it wrote nothing."""


@dataclass
class NextTask:
    """What `Queue.next_task` found: held tasks, or the one just claimed, and the state seen."""

    held: list[Task]
    claimed: Task | None
    tasks: list[Task]
    worker: Worker
    now: datetime
    reservations: list[Reservation] = field(default_factory=list)
    #: The instructions of the task to hand over (the one claimed, else the oldest held) by task id, when
    #: `next_task(..., read=True)` could read them in its own round trips.
    instructions: dict[int, bytes] = field(default_factory=dict)


@dataclass
class Claimed:
    """What `Queue.get_work` gave: the task, and whether the worker already held it."""

    task: Task | None
    already_held: bool = False
    #: The task's instructions as read in the claim's own round trips (`get_work(..., read=True)`), else None.
    instructions: bytes | None = None


@dataclass
class QueueSettings:
    lease_ttl: float = LEASE_TTL
    max_attempts: int = MAX_ATTEMPTS


class Queue:
    def __init__(self, store: Store, agent: str, settings: QueueSettings | None = None) -> None:
        self.store = store
        self.agent = agent
        self.settings = settings or QueueSettings()

    # ----- reading (lock-free) -------------------------------------------------------------
    def list(self, status: str | None = None, worker: str | None = None, include_archived: bool = False) -> list[Task]:
        """Tasks without taking the lock (two round trips, the archive read in the same ones), the backlog's too."""
        if include_archived:
            tasks = read_all(self.store.look([*ALL_TASKS, ARCHIVE_FILE]))
            tasks.sort(key=lambda t: t.id)
        else:
            tasks = self._tasks()
        return filter_tasks(tasks, status, worker)

    def get(self, task_id: int | str) -> Task:
        return self._find_all([validate.task_id(task_id)])[0]

    def instructions(self, task: Task) -> str:
        """The instruction text ("" when there is none or the file is gone)."""
        try:
            return self._instruction_text(task)
        except NotFound:
            return ""

    def read_instructions(self, task: Task) -> tuple[str, str | None]:
        """The instruction text, and why it could not be read (None when it could).

        A claim must never fail after it committed, so this never raises for the
        workspace's contents (a link, a directory, an absolute path, a missing file).
        """
        try:
            return self._instruction_text(task), None
        except (MavpsError, OSError) as exc:
            return "", str(exc)

    def _instruction_text(self, task: Task) -> str:
        if not task.instruction_file:
            return ""
        from .files import read_file  # refuses '..' and symlinks leading out of the workspace

        return read_file(self.store.transport, task.instruction_file).decode("utf-8", "replace")

    def ready(self, capabilities: Iterable[str] | None = None) -> list[Task]:
        """What is claimable now (by a worker with these capabilities, if given)."""
        caps = None if capabilities is None else set(validate.capabilities(list(capabilities)))
        raw = self.store.look([*ALL_TASKS, RES_FILE])  # the backlog, the reservations in the same two round trips
        tasks, now = read_all(raw), utcnow()
        return claimable(as_reaped(tasks, now), caps, self.dependency_index(tasks), read_reservations(raw[RES_FILE]),
                         now)

    def waiting(self) -> list[tuple[Task, str]]:
        """Pending tasks that cannot be claimed now, each with why (see `rules.blocked_reason`).

        Two round trips (the queue, the worker registry and the reservations), two more when the
        archive must be read (a pending task depends on an id the queue lacks).
        """
        raw = self.store.look([*ALL_TASKS, WORKERS_FILE, RES_FILE])
        caps = known_capabilities(read_workers(raw[WORKERS_FILE]))
        now = utcnow()
        tasks = as_reaped(read_all(raw), now)
        index = self.dependency_index(tasks)
        held = holds(tasks, read_reservations(raw[RES_FILE]), now)
        return [(t, why) for t in tasks if (why := blocked_reason(t, index, caps, held)) is not None]

    def blocked_reason(self, task: Task) -> str | None:
        """Why this task cannot be claimed now, or None (see `rules.blocked_reason`)."""
        if task.status is not TaskStatus.PENDING:
            return None
        return next((why for t, why in self.waiting() if t.id == task.id), None)

    def dependency_index(self, tasks: list[Task]) -> dict[int, Task]:
        """Tasks by id for judging dependencies (see `rules.dependency_index`); the archive is read
        only when a pending task depends on an id the queue lacks."""
        return dependency_index(tasks, self._archived() if missing_dependencies(tasks) else ())

    def wait(self, task_ids: Sequence[int | str], any_: bool = False, timeout: float | None = None,
             sleep: Callable[[float], Any] = time.sleep, clock: Callable[[], float] = time.monotonic,
             first: float = 0.5, longest: float = 10.0) -> dict[str, Any]:
        """Poll (lock-free, backing off from `first` to `longest` seconds) until the tasks reach an end state:
        all of them, or the first one with `any_`; or until `timeout` seconds pass.

        `ok` is True when it did not time out and every task that ended completed (all of them, without `any_`).
        """
        ids = list(dict.fromkeys(validate.task_id(i) for i in task_ids))
        if not ids:
            raise InvalidInput("give at least one task id to wait for")
        deadline = None if timeout is None else clock() + max(0.0, timeout)
        delay, polls = first, 0
        while True:
            found = self._find_all(ids)
            polls += 1
            ended = [t for t in found if t.status in FINISHED]
            done = bool(ended) if any_ else len(ended) == len(found)
            left = None if deadline is None else deadline - clock()
            if done or (left is not None and left <= 0):
                break
            sleep(delay if left is None else min(delay, left))
            delay = min(delay * 1.5, longest)
        rows = [{"id": t.id, "status": t.status.value, "description": t.description, "result": t.result,
                 "error": t.error} for t in found]
        return {"ok": done and all(t.status is TaskStatus.COMPLETED for t in ended), "done": done,
                "timed_out": not done, "mode": "any" if any_ else "all", "polls": polls, "tasks": rows,
                "still_running": [t.id for t in found if t.status not in FINISHED]}

    def _find_all(self, ids: list[int]) -> list[Task]:
        """These tasks as they are now: from the window, the archive and the backlog read (in one look) only for
        ids the window lacks."""
        live = {t.id: t for t in read_tasks(self.store.look([QUEUE_FILE])[QUEUE_FILE])}
        if any(i not in live for i in ids):
            raw = self.store.look([ARCHIVE_FILE, META_FILE, BACKLOG_FILE])
            others = merged(parse_archive(raw[ARCHIVE_FILE]), read_backlog(raw))
            live.update({t.id: t for t in others if t.id in ids and t.id not in live})
        missing = [i for i in ids if i not in live]
        if missing:
            raise NotFound(f"no task {', '.join(map(str, missing))}: see `mavps task list --all`")
        return [live[i] for i in ids]

    def _tasks(self) -> list[Task]:
        """Every task that is not archived: the window and the backlog, read in the same round trips."""
        return read_all(self.store.look(ALL_TASKS))

    def _archived(self) -> list[Task]:
        """Archived tasks (the last line of an id wins); callers let the queue win over them."""
        return parse_archive(self.store.look([ARCHIVE_FILE])[ARCHIVE_FILE])

    def _outside(self) -> tuple[dict[int, Task], dict[int, Task]]:
        """(archived, backlog) tasks by id, read in one look; an id in both counts as archived."""
        raw = self.store.look([ARCHIVE_FILE, META_FILE, BACKLOG_FILE])
        archived = {t.id: t for t in parse_archive(raw[ARCHIVE_FILE])}
        return archived, {t.id: t for t in read_backlog(raw) if t.id not in archived}

    def _elsewhere(self) -> list[Task]:
        """The tasks outside the window: archived ones, and the backlog's (the archive wins), in one look."""
        raw = self.store.look([ARCHIVE_FILE, META_FILE, BACKLOG_FILE])
        return merged(parse_archive(raw[ARCHIVE_FILE]), read_backlog(raw))

    # ----- adding ----------------------------------------------------------------------------
    def add(self, description: str, instructions: str | None = None, *, instruction_file: str | None = None,
            context_files: Sequence[str] = (), requires: Sequence[str] = (), priority: int = 0,
            depends_on: Sequence[int] = (), max_attempts: int | None = None, agent: str | None = None,
            extra: dict[str, Any] | None = None, hold: bool = False, touches: Sequence[str] = ()) -> Task:
        """Add a pending task; its instructions go to tasks/task-<id>-instructions.md.

        `hold`: a draft nobody can claim until `release_hold` (to be filled in with `edit` first).
        `touches`: globs of the files it will write (globs.py); it waits while another holds one of them.
        """
        if instructions is not None and instruction_file is not None:
            raise InvalidInput("give instructions as text or as an existing file, not both")
        checked = validate.task_fields(description, instruction_file, context_files, requires, priority, depends_on,
                                       self.settings.max_attempts if max_attempts is None else max_attempts)
        draft = Task(id=0, **checked, held=bool(hold), touches=globs.check_all(touches))
        if extra:
            draft.extra = {k: v for k, v in extra.items() if k not in draft.to_dict()}
        text = None if instructions is None else validate.text(instructions, "instructions")
        agent = validate.agent_name(agent or self.agent)
        if draft.instruction_file is not None:
            self._check_exists(draft.instruction_file)

        def change(txn: Txn, full: int) -> Task:
            tasks = self._view(txn, full)
            self._reap(txn, tasks)
            meta = load_meta(txn.json(META_FILE, None))
            next_id = max([meta.get("next_task_id", 1)] + [t.id + 1 for t in tasks])
            self._check_dependencies(draft.depends_on, tasks, next_id)
            task = replace(draft, id=next_id, created_at=txn.stamp, created_by=agent, updated_at=txn.stamp)
            if task.instruction_file is None:
                task.instruction_file = instruction_path(task.id)
                txn.put(task.instruction_file, (text or f"# Task {task.id}: {task.description}\n").encode("utf-8"))
            tasks.append(task)
            meta["next_task_id"] = next_id + 1
            self._save_window(txn, tasks, meta, full, archiving=False)
            held = " (held: a draft)" if task.held else ""
            txn.log.append(event(txn, agent, "task_added", f"Added task #{task.id}{held}: {task.description[:200]}",
                                 task))
            return task

        return self._full([QUEUE_FILE, META_FILE], change, new_files=1, new_dirs=[TASKS_DIR])

    # ----- shaping a task that is not running ------------------------------------------------
    def edit(self, task_id: int | str, *, description: str | None = None, instructions: str | None = None,
             context_files: Sequence[str] | None = None, requires: Sequence[str] | None = None,
             priority: int | None = None, depends_on: Sequence[int] | None = None, max_attempts: int | None = None,
             agent: str | None = None, touches: Sequence[str] | None = None) -> Task:
        """Change what is given (None: left as is) of a task that is not running, in one transaction.

        New instructions go to tasks/task-<id>-instructions.md (the task then points there). Dependencies
        must exist, may still complete and make no circle.
        """
        tid = validate.task_id(task_id)
        agent = validate.agent_name(agent or self.agent)
        changes = edit_fields(description, context_files, requires, priority, depends_on, max_attempts)
        if touches is not None:
            changes["touches"] = globs.check_all(touches)
        text = None if instructions is None else validate.text(instructions, "instructions")
        if not changes and text is None:
            raise InvalidInput("nothing to change: give at least one field (see `mavps task edit --help`)")

        def change(txn: Txn, full: int) -> Task:
            tasks = self._view(txn, full)
            self._reap(txn, tasks)
            task = self._find(txn, tasks, tid, full)
            fields = dict(changes)
            if "depends_on" in fields:
                if _rest(txn, full) or (not full and self._backlog(txn)["count"] and any(
                        d not in {t.id for t in tasks} for d in fields["depends_on"])):
                    raise NeedBacklog  # a circle may go through the backlog: judge it on every task
                self._check_edited_dependencies(task, fields["depends_on"], tasks)
            if text is not None:
                fields["instruction_file"] = instruction_path(task.id)
            changed = task.edit(fields, txn.now)
            if text is not None:
                txn.put(instruction_path(task.id), text.encode("utf-8"))
                changed = sorted(set(changed) | {"instructions"})
            txn.log.append(event(txn, agent, "task_edited", f"Edited task #{task.id}: {', '.join(changed) or 'nothing'}"
                                 " changed", task, fields=changed))
            self._save_window(txn, tasks, None, full, archiving=False)
            return task

        if text is None:
            return self._full([QUEUE_FILE], change)
        return self._full([QUEUE_FILE], change, new_files=1, new_dirs=[TASKS_DIR])

    def _check_edited_dependencies(self, task: Task, deps: list[int], tasks: list[Task]) -> None:
        live = {t.id for t in tasks}
        archived = {t.id: t for t in self._archived()} if any(d not in live for d in deps) else {}
        problem = edited_dependency_problem(task, deps, tasks, archived)
        if problem:
            raise InvalidInput(f"task {task.id}: {problem}")

    def release_hold(self, task_id: int | str, agent: str | None = None) -> Task:
        """A held draft becomes claimable."""
        def apply(txn: Txn, task: Task, agent: str) -> None:
            task.release_hold(txn.now)
            txn.log.append(event(txn, agent, "task_released_hold", f"Task #{task.id} is no longer held: "
                                 "claimable once its dependencies complete", task))

        return self._as_coordinator(task_id, agent, apply)

    def _check_exists(self, path: str) -> None:
        from .files import read_file

        try:
            read_file(self.store.transport, path)
        except NotFound:
            raise NotFound(f"instruction file {path} does not exist in the workspace: write it first (`mavps put`)") \
                from None

    def _check_dependencies(self, deps: list[int], tasks: list[Task], next_id: int) -> None:
        """Each dependency must exist and may still complete (the archive and the backlog are read only when
        needed: a pending backlog task counts as live)."""
        live = {t.id: t for t in tasks}
        missing = [d for d in deps if d not in live]
        archived: dict[int, Task] = {}
        if any(d < next_id for d in missing):
            archived, backlog = self._outside()
            live.update({i: t for i, t in backlog.items() if i not in live})
        problem = dependency_problem(deps, live, archived)
        if problem:
            raise InvalidInput(problem)

    # ----- a worker asking for work ----------------------------------------------------------
    def claim(self, worker: str, capabilities: Sequence[str] | None = None, token: str | None = None) -> Task | None:
        """Hand the best claimable task to this worker, or None when nothing is claimable.

        `token` makes a retry safe: a claim repeated with the token of one that
        already happened returns that task instead of claiming another.
        """
        def pick(txn: Txn, tasks: list[Task], w: Worker, token: str, full: int) -> Claimed:
            self._reap(txn, tasks)
            return Claimed(self._take(txn, tasks, w, token, _reservations(txn), full))

        return self._ask(worker, capabilities, token, pick).task

    def get_work(self, worker: str, capabilities: Sequence[str] | None = None, token: str | None = None,
                 read: bool = False) -> Claimed:
        """What a worker asking for work should do: the task it already holds (oldest claimed
        first, all its leases renewed), else a newly claimed one, else nothing.

        Why: a claim whose answer was lost (Ctrl-C, a dropped connection, an
        unreadable instruction file) must not strand the task it claimed; asking
        again hands that task back instead of claiming another.
        """
        def pick(txn: Txn, tasks: list[Task], w: Worker, token: str, full: int) -> Claimed:
            held = self._renew(txn, tasks, w.id)
            if not held:
                return Claimed(self._take(txn, tasks, w, token, _reservations(txn), full))
            w.holds(held[0], txn.now)
            txn.log.append(event(txn, w.id, "task_held", f"{w.id} asked for work while holding task "
                                 f"#{held[0].id}: handed it back, lease renewed", held[0]))
            return Claimed(held[0], already_held=True)

        return self._ask(worker, capabilities, token, pick, read)

    def _ask(self, worker: str, capabilities: Sequence[str] | None, token: str | None,
             pick: Callable[[Txn, list[Task], Worker, str, bool], Claimed], read: bool = False) -> Claimed:
        """One transaction for a worker asking for work; a retry of a claim that happened returns its task.
        With `read`, the task's instructions ride in the transaction's last two round trips."""
        worker, caps, token = _asking(worker, capabilities, token)
        riding: list[RidingRead] = []

        def change(txn: Txn, full: int) -> Claimed:
            riding.clear()  # an attempt that gave up: its rider is dropped with it
            tasks, workers = self._load(txn, full)
            done = by_token(tasks, worker, token)
            got = Claimed(done) if done is not None else None  # a claim that already happened
            if got is None:
                got = pick(txn, tasks, ensure_worker(txn, workers, worker, caps), token, full)
                self._save(txn, tasks, workers, full)
            if read and got.task is not None and got.task.instruction_file:
                riding.append(txn.ride(RidingRead(got.task.instruction_file)))
            return got

        got = self._full([QUEUE_FILE, WORKERS_FILE, RES_FILE], change)
        if riding:
            got.instructions = riding[0].data()
        return got

    def claimed_instructions(self, got: Claimed) -> tuple[str, str | None]:
        """A claimed task's instructions, and why they could not be read: as read with the claim when they
        were, else read now (`read_instructions`)."""
        if got.task is None:
            return "", None
        if got.instructions is not None:
            return got.instructions.decode("utf-8", "replace"), None
        return self.read_instructions(got.task)

    def heartbeat(self, worker: str) -> list[Task]:
        """Renew the leases of every task this worker holds; returns them."""
        return self.next_task(worker, claim=False).held

    def next_task(self, worker: str, capabilities: Sequence[str] | None = None, claim: bool = True,
                  read: bool = False) -> NextTask:
        """Heartbeat, then claim the best task if the worker holds none: the Stop hook's one transaction.

        Returns what the worker holds or was just given, and the queue and the
        worker's record as committed (so the caller needs no second look).
        """
        worker, caps, token = _asking(worker, capabilities, None)
        riding: dict[int, RidingRead] = {}

        def change(txn: Txn, full: int) -> NextTask:
            riding.clear()  # an attempt that gave up: its rider is dropped with it
            tasks, workers = self._load(txn, full)
            w = ensure_worker(txn, workers, worker, caps)
            held = self._renew(txn, tasks, worker)
            if w.beat(txn.now):  # a heartbeat means the worker is alive again
                txn.log.append(event(txn, worker, "worker_active", f"{worker} is active again", None))
            claimed = self._take(txn, tasks, w, token, _reservations(txn), full) if claim and not held else None
            self._save(txn, tasks, workers, full)
            handed = claimed or (held[0] if held else None)
            if read and handed is not None and handed.instruction_file:
                riding[handed.id] = txn.ride(RidingRead(handed.instruction_file))
            return NextTask(held, claimed, tasks, w, txn.now, _reservations(txn))

        found = self._full([QUEUE_FILE, WORKERS_FILE, RES_FILE], change)
        for tid, rider in riding.items():
            data = rider.data()
            if data is not None:
                found.instructions[tid] = data
        return found

    def _renew(self, txn: Txn, tasks: list[Task], worker: str) -> list[Task]:
        """Reap the others' expired leases and renew every lease this worker holds; what it holds."""
        held = held_by(tasks, worker)
        self._reap(txn, tasks, spare=[t.id for t in held])
        for t in held:
            t.renew(txn.now, self.settings.lease_ttl)
        return held

    def _take(self, txn: Txn, tasks: list[Task], w: Worker, token: str,
              reservations: Sequence[Reservation] = (), full: int = True) -> Task | None:
        """Give the best claimable task to worker `w` (inside a transaction): none whose touches overlap
        what a running task or a live reservation holds (read in the same transaction: no extra round trip).
        Without `full` (the window only), NeedBacklog when the backlog may hold a better one or the window
        runs low (`_refill_needed`)."""
        choice = next(iter(claimable(tasks, set(w.capabilities), self.dependency_index(tasks), reservations,
                                     txn.now)), None)
        if not full and self._refill_needed(txn, tasks, choice):
            raise NeedBacklog
        rest = _rest(txn, full)
        if rest and (choice is None or rank(choice) > min(rest)[0]):
            raise NeedBacklog  # the best claimable task may be among the lines not made tasks
        if choice is None:
            return None
        choice.claim(w.id, token, txn.now, self.settings.lease_ttl)
        w.claimed(choice, txn.now)
        txn.log.append(event(txn, w.id, "task_claimed", f"Claimed task #{choice.id}", choice, attempt=choice.attempts))
        return choice

    # ----- the holder's verbs ------------------------------------------------------------------
    def complete(self, task_id: int | str, worker: str, result: str | None = None, token: str | None = None) -> Task:
        """Record the holder's result; a retry of a completion that already happened returns it."""
        return self._as_holder(task_id, worker, token, _completion(result), repeat=already_completed)

    def complete_and_claim(self, task_id: int | str, worker: str, result: str | None = None,
                           capabilities: Sequence[str] | None = None, token: str | None = None,
                           read: bool = False) -> tuple[Task, Claimed]:
        """Complete a task and claim this worker's next one in one transaction: a worker going straight on
        takes the lock once instead of twice. `token` fences the completion as in `complete`; the claim is
        `get_work`'s (with `read`, the new task's instructions ride along)."""
        tid = validate.task_id(task_id)
        apply = _completion(result)
        done: list[Task] = []

        def pick(txn: Txn, tasks: list[Task], w: Worker, claim_token: str, full: int) -> Claimed:
            done.clear()
            task = self._find(txn, tasks, tid, full)
            if not already_completed(task, w.id, token):
                check_holder(task, w.id, token)
                apply(txn, task, w.id)
                w.finished(task, txn.now)
            done.append(task)
            self._reap(txn, tasks, spare=[tid])
            return Claimed(self._take(txn, tasks, w, claim_token, _reservations(txn), full))

        got = self._ask(worker, capabilities, None, pick, read)
        return (done[0] if done else self.get(tid)), got

    def fail(self, task_id: int | str, worker: str, error: str | None = None, token: str | None = None) -> Task:
        """The holder gave up: back to pending while attempts are left, else failed for good."""
        error = validate.text(error, "error", MAX_RESULT) if error is not None else None

        def apply(txn: Txn, task: Task, worker: str) -> None:
            final = task.fail(error, txn.now)
            why = (task.error or "")[:500]
            tries = f"{task.attempts} attempt{'' if task.attempts == 1 else 's'}"
            msg = f"Task #{task.id} failed for good after {tries}: {why}" if final else \
                f"Task #{task.id} failed (attempt {task.attempts} of {task.max_attempts}), back to pending: {why}"
            txn.log.append(event(txn, worker, "task_failed", msg, task, final=final))

        return self._as_holder(task_id, worker, token, apply)

    def release(self, task_id: int | str, worker: str, token: str | None = None) -> Task:
        """The holder gives the task back untried (the attempt does not count)."""
        def apply(txn: Txn, task: Task, worker: str) -> None:
            task.release(txn.now)
            txn.log.append(event(txn, worker, "task_released", f"Released task #{task.id} untried", task))

        return self._as_holder(task_id, worker, token, apply)

    def ask(self, task_id: int | str, worker: str, text: str, token: str | None = None) -> Task:
        """The holder asks the coordinator a question; the task waits for an answer, its lease renewed."""
        text = validate.text(text, "question", MAX_RESULT, allow_empty=False)

        def apply(txn: Txn, task: Task, worker: str) -> None:
            task.ask(worker, text, txn.now, self.settings.lease_ttl)
            txn.log.append(event(txn, worker, "question_asked", f"{worker} asks on task #{task.id}: {text[:500]}",
                                 task, question=text[:2000]))

        return self._as_holder(task_id, worker, token, apply, finishes=False)

    def answer(self, task_id: int | str, text: str, agent: str | None = None) -> Task:
        """Answer the question the task's holder is waiting on (the coordinator, or a person)."""
        text = validate.text(text, "answer", MAX_RESULT, allow_empty=False)

        def apply(txn: Txn, task: Task, agent: str) -> None:
            asked = task.answer(text, agent, txn.now)
            txn.log.append(event(txn, agent, "question_answered", f"{agent} answered {asked.get('asked_by')} on "
                                 f"task #{task.id}: {text[:500]}", task, answer=text[:2000]))

        return self._as_coordinator(task_id, agent, apply)

    def _as_holder(self, task_id: int | str, worker: str, token: str | None, apply: Apply,
                   repeat: Callable[[Task, str, str | None], bool] | None = None, finishes: bool = True) -> Task:
        """One transaction for a verb only the task's holder may use (everyone else is fenced)."""
        tid = validate.task_id(task_id)
        worker = validate.worker_id(worker)

        def change(txn: Txn) -> Task:
            tasks, workers = self._load(txn)
            task = find(tasks, tid)
            if repeat is not None and repeat(task, worker, token):
                return task  # a retry of what already happened
            check_holder(task, worker, token)
            self._reap(txn, tasks, spare=[tid])
            w = ensure_worker(txn, workers, worker, None)
            apply(txn, task, worker)
            if finishes:
                w.finished(task, txn.now)
            else:
                w.holds(task, txn.now)
            self._save(txn, tasks, workers)
            return task

        return self.store.transact([QUEUE_FILE, WORKERS_FILE], change)

    # ----- the coordinator's verbs -------------------------------------------------------------
    def cancel(self, task_id: int | str, agent: str | None = None) -> Task:
        """Stop a task that is not finished; its holder's result will be refused."""
        def apply(txn: Txn, task: Task, agent: str) -> None:
            was = task.claimed_by if task.status is TaskStatus.IN_PROGRESS else None
            task.cancel(txn.now)
            msg = f"Cancelled task #{task.id}" + (f" (held by {was}, whose result will be refused)" if was else "")
            txn.log.append(event(txn, agent, "task_cancelled", msg, task))

        return self._as_coordinator(task_id, agent, apply)

    def requeue(self, task_id: int | str, agent: str | None = None) -> Task:
        """Give a failed or cancelled task a fresh start."""
        def apply(txn: Txn, task: Task, agent: str) -> None:
            task.requeue(txn.now)
            txn.log.append(event(txn, agent, "task_requeued", f"Requeued task #{task.id}", task))

        return self._as_coordinator(task_id, agent, apply)

    def _as_coordinator(self, task_id: int | str, agent: str | None, apply: Apply) -> Task:
        tid = validate.task_id(task_id)
        agent = validate.agent_name(agent or self.agent)

        def change(txn: Txn, full: int) -> Task:
            tasks = self._view(txn, full)
            task = self._find(txn, tasks, tid, full)
            apply(txn, task, agent)
            self._reap(txn, tasks)
            self._save_window(txn, tasks, None, full)
            return task

        return self._full([QUEUE_FILE], change)

    def reap(self) -> list[Task]:
        """Return expired leases to the queue now (any change does this too)."""
        def change(txn: Txn) -> list[Task]:
            tasks = load_tasks(txn.json(QUEUE_FILE, []))
            reaped = self._reap(txn, tasks)
            if reaped:
                txn.write(QUEUE_FILE, dump_tasks(tasks))
            return reaped

        return self.store.transact([QUEUE_FILE], change)

    # ----- helpers -------------------------------------------------------------------------------
    def _reap(self, txn: Txn, tasks: list[Task], spare: Iterable[int] = ()) -> list[Task]:
        """Expired leases go back to pending, or to failed when out of attempts; each logged."""
        expired = reap_leases(tasks, txn.now, spare)
        for t, holder in expired:
            txn.log.append(event(txn, "mavps", "lease_expired",
                                 f"Lease of task #{t.id} held by {holder} expired; task is {t.status.value}",
                                 t, previous_holder=holder))
        return [t for t, _ in expired]

    def _load(self, txn: Txn, full: int = False) -> tuple[list[Task], dict[str, Worker]]:
        return self._view(txn, full), load_workers(txn.json(WORKERS_FILE, {}))

    def _save(self, txn: Txn, tasks: list[Task], workers: dict[str, Worker], full: int = False) -> None:
        self._save_window(txn, tasks, None, full, claims_only=True)  # the claims' and the holders' verbs
        txn.write(WORKERS_FILE, dump_workers(workers))

    # ----- the window and the backlog (window.py) ----------------------------------------------
    def _full(self, files: list[str], change: Callable[[Txn, bool], T], new_files: int = 0,
              new_dirs: Sequence[str] = (), reads: Sequence[str] = ()) -> T:
        """Run `change(txn, full=0)` on the window (META_FILE read along, a few hundred bytes); when it raises
        NeedBacklog, run `change(txn, full=1)` with the backlog read and rewritten in the same commit (its best
        WINDOW tasks as tasks, the other lines kept as they are), and if that is not enough, `full=2` (every
        backlog line a task)."""
        files = sorted(files, key=lambda f: f != META_FILE)  # META_FILE first: put in place before the window, so a
        # look during a commit that moved tasks to the backlog sees them twice (the window's copy wins), never not
        try:
            return self.store.transact(files, lambda txn: change(txn, 0), new_files=new_files,
                                       new_dirs=new_dirs, reads=[*reads, *([] if META_FILE in files else [META_FILE])])
        except NeedBacklog:
            pass
        with_meta = [*([] if META_FILE in files else [META_FILE]), *files]
        for level in (1, 2):
            try:
                return self.store.transact(with_meta, lambda txn: change(txn, level), new_files=new_files + 1,
                                           new_dirs=new_dirs, reads=[*reads, BACKLOG_FILE])
            except NeedBacklog:
                if level == 2:
                    raise AssertionError("a change asked for more than the whole backlog") from None
        raise AssertionError("unreachable")

    def _backlog(self, txn: Txn) -> dict[str, Any]:
        """The backlog's committed state as the transaction read it (bytes, count, first)."""
        return backlog_info(load_meta(txn.json(META_FILE, None)))

    def _view(self, txn: Txn, full: int) -> list[Task]:
        """The tasks a change works on: the window; with `full`, the backlog's tasks too."""
        tasks = load_tasks(txn.json(QUEUE_FILE, []))
        if not full:
            return tasks
        meta = load_meta(txn.json(META_FILE, None))
        if txn.raw.get(BACKLOG_FILE) is None and backlog_info(meta)["count"]:
            raise CorruptState(BACKLOG_FILE, f"is missing but {META_FILE} says it holds {backlog_info(meta)['count']} "
                               "pending tasks: restore it, or remove 'backlog' from workspace.json (`mavps edit "
                               "workspace.json`) to go on without them")
        entries = backlog_entries(txn.raw.get(BACKLOG_FILE), meta, {t.id for t in tasks})
        taken, rest = take_best(entries, defaults.WINDOW if full == 1 else None)
        txn.backlog_rest = rest  # type: ignore[attr-defined]  # the lines left as they are, for _save_window
        txn.backlog_raw = {e[1]: e[2] for e in entries}  # type: ignore[attr-defined]  # each id's line as read
        return tasks + taken

    def _find(self, txn: Txn, tasks: list[Task], tid: int, full: int) -> Task:
        """The task in the window; one only the backlog holds makes the change run again on every task."""
        try:
            return find(tasks, tid)
        except NotFound:
            if (not full and self._backlog(txn)["count"]) or _rest(txn, full):
                raise NeedBacklog from None
            raise

    def _save_window(self, txn: Txn, tasks: list[Task], meta: dict[str, Any] | None, full: int,
                     archiving: bool = True, claims_only: bool = False) -> None:
        """Write the window: with `full`, split every task between the window and a rewritten backlog; else the
        worst-ranked pending tasks beyond WINDOW move to the backlog with one append (`meta`: the workspace.json
        the change writes, None when it writes none and so moves nothing)."""
        if archiving:
            tasks = archive(txn, tasks)
        size = defaults.WINDOW  # read at call time: tests set it small
        if full:
            meta = load_meta(txn.json(META_FILE, None)) if meta is None else meta
            window, out = split(tasks, size)
            self._rewrite_backlog(txn, out, meta, claims_only)
        else:
            window = tasks
            out = overflow(tasks, size) if meta is not None else []
            if out:
                self._spill(txn, out, meta)  # type: ignore[arg-type]
                gone = {t.id for t in out}
                window = [t for t in tasks if t.id not in gone]
        if meta is not None:
            txn.write(META_FILE, meta)
        txn.write(QUEUE_FILE, dump_tasks(window))

    def _rewrite_backlog(self, txn: Txn, out: list[Task], meta: dict[str, Any], claims_only: bool) -> None:
        """The new backlog, whole, renamed into place by the commit: `out` and the lines a `full=1` change left
        as they are. The claims' verbs change no backlog task but the one they take, so there a task read from the
        backlog is written back as the very line it was (no encoding), and a claim that took nothing from it
        leaves the file as it is."""
        kept = getattr(txn, "backlog_rest", [])
        raw: dict[int, bytes] = getattr(txn, "backlog_raw", {}) if claims_only else {}
        if claims_only and {t.id for t in out} | {e[1] for e in kept} == raw.keys():
            return
        data = b"".join(raw.get(t.id) or backlog_lines(dump_tasks([t])) for t in out) + \
            b"".join(line for _r, _i, line in kept)
        txn.put(BACKLOG_FILE, data)
        ranks = [rank(t) for t in out[:1]] + ([min(kept)[0]] if kept else [])
        set_backlog_info(meta, len(data), len(out) + len(kept), min(ranks) if ranks else None)

    def _spill(self, txn: Txn, out: list[Task], meta: dict[str, Any]) -> None:
        """Append these pending tasks to the backlog and record its new committed length. The file must end where
        the last commit left it: anything past that (a failed commit's lines) makes the change run as a full one,
        which rewrites the backlog without it."""
        info = backlog_info(meta)
        found = self.store.kinds([BACKLOG_FILE])[BACKLOG_FILE]  # one round trip, only when tasks move out
        if (found.size if found is not None and found.is_file else 0) != info["bytes"] or \
                (found is not None and not found.is_file):
            raise NeedBacklog
        data = backlog_lines(dump_tasks(out))
        txn.append(BACKLOG_FILE, data)
        first = min([r for r in (info["first"], rank(out[0])) if r is not None])
        set_backlog_info(meta, info["bytes"] + len(data), info["count"] + len(out), first)

    def _refill_needed(self, txn: Txn, tasks: list[Task], choice: Task | None) -> bool:
        """Whether a claim must see the backlog: it holds tasks and the window has nothing to give this worker,
        runs low (WINDOW/2 pending or fewer), or what it would give ranks after the backlog's best; or the window
        holds over twice WINDOW pending (to split)."""
        info, pending = self._backlog(txn), pending_count(tasks)
        if pending > 2 * defaults.WINDOW:
            return True  # a window grown by hand or by an older version: split it once
        if not info["count"]:
            return False
        if choice is None or pending <= defaults.WINDOW // 2:
            return True
        return info["first"] is not None and rank(choice) > info["first"]


def edit_fields(description: str | None, context_files: Sequence[str] | None, requires: Sequence[str] | None,
                priority: int | None, depends_on: Sequence[int] | None, max_attempts: int | None) -> dict[str, Any]:
    """The fields an edit gives (None: not given), each checked as for a new task."""
    low, high = RANGES["max_attempts"]
    checks: dict[str, tuple[Any, Callable[[Any], Any]]] = {
        "description": (description, lambda v: validate.text(v, "description", MAX_DESCRIPTION, allow_empty=False)),
        "context_files": (context_files, lambda v: [validate.relative_path(c, "context file") for c in v]),
        "requires": (requires, lambda v: validate.capabilities(list(v))),
        "priority": (priority, lambda v: validate.integer(v, "priority", -MAX_PRIORITY, MAX_PRIORITY)),
        "depends_on": (depends_on, lambda v: sorted({validate.task_id(d) for d in v})),
        "max_attempts": (max_attempts, lambda v: validate.integer(v, "max_attempts", int(low), int(high))),
    }
    return {name: check(value) for name, (value, check) in checks.items() if value is not None}


def read_reservations(data: bytes | None) -> list[Reservation]:
    """Reservations from the file's bytes (None: no file, none)."""
    from .state import parse_json

    return load_reservations(None if data is None else parse_json(RES_FILE, data))


def _reservations(txn: Txn) -> list[Reservation]:
    """The reservations a transaction read (it lists RES_FILE among its files)."""
    return load_reservations(txn.json(RES_FILE, None))


def _rest(txn: Txn, full: int) -> list[Any]:
    """The backlog lines a `full=1` change left as they are (none at other levels)."""
    return getattr(txn, "backlog_rest", []) if full == 1 else []


def _completion(result: str | None) -> Apply:
    """The holder's completion with its result (checked here, before any transaction)."""
    result = validate.text(result, "result", MAX_RESULT) if result is not None else None

    def apply(txn: Txn, task: Task, worker: str) -> None:
        task.complete(result, txn.now)
        txn.log.append(event(txn, worker, "task_completed", f"Completed task #{task.id}", task,
                             **({"result": result[:2000]} if result else {})))

    return apply


def _asking(worker: str, capabilities: Sequence[str] | None, token: str | None) -> tuple[str, list[str] | None, str]:
    """A worker asking for work, checked: its id, its capabilities (None: as registered), the claim's token."""
    caps = None if capabilities is None else validate.capabilities(list(capabilities))
    return validate.worker_id(worker), caps, token or new_token()


def archive(txn: Txn, tasks: list[Task]) -> list[Task]:
    """Move the oldest finished tasks to the append-only archive (see `rules.to_archive`); the rest.

    Ids stay unique: workspace.json keeps the next id.
    """
    moving = to_archive(tasks, KEEP_FINISHED, ARCHIVE_BATCH)  # read at call time: tests set them small
    if not moving:
        return tasks
    for line in archive_lines(moving):
        txn.append(ARCHIVE_FILE, line)
    gone = {t.id for t in moving}
    txn.log.append({"timestamp": txn.stamp, "agent": "mavps", "event": "tasks_archived",
                    "message": f"Archived {len(moving)} finished tasks to {ARCHIVE_FILE}", "task_ids": sorted(gone)})
    return [t for t in tasks if t.id not in gone]
