"""The queue's rules as pure functions over tasks: no transport, no lock, the time passed in.

What is claimable, what a reap returns to the queue, what the archive may
take, why a pending task waits, what a hand edit must not do. queue.py runs
them inside `Store.transact`; the CLI, the hooks and `mavps doctor` call the
same functions on what they read, so a look agrees with the change that follows.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Iterable, NamedTuple, Sequence

from . import globs, validate
from .defaults import ARCHIVE_BATCH, KEEP_FINISHED
from .errors import Fenced, InvalidInput, NotFound
from .models import FINISHED, Reservation, Task, TaskStatus, Worker
from .timeutil import parse


class Expired(NamedTuple):
    """A task whose lease a reap found run out, and who held it."""

    task: Task
    holder: str | None


# ----- finding and holding ---------------------------------------------------------------
def find(tasks: list[Task], tid: int) -> Task:
    for t in tasks:
        if t.id == tid:
            return t
    raise NotFound(f"no live task {tid} in the queue (finished tasks may be archived: `mavps task show {tid}`)")


def by_token(tasks: list[Task], worker: str, token: str) -> Task | None:
    """The task a claim with this token already gave this worker (a retried claim returns it)."""
    return next((t for t in tasks if t.claim_token == token and t.held_by(worker)), None)


def held_by(tasks: list[Task], worker: str) -> list[Task]:
    """The tasks this worker holds, oldest claimed first (the queue says, not the worker's record)."""
    held = [t for t in tasks if t.held_by(worker)]
    held.sort(key=lambda t: (t.claimed_at or "", t.id))
    return held


def check_holder(task: Task, worker: str, token: str | None) -> None:
    """Only the worker holding the task may finish it; everyone else is fenced."""
    if task.held_by(worker, token):
        return
    if task.status is TaskStatus.PENDING and task.claimed_by is None:
        raise Fenced(f"task {task.id} is not claimed by {worker} (it is pending, maybe after its lease expired); "
                     "nothing was recorded: claim work with `mavps claim`")
    holder = f"held by {task.claimed_by}" if task.status is TaskStatus.IN_PROGRESS else task.status.value
    raise Fenced(f"task {task.id} is no longer {worker}'s (now {holder}); nothing was recorded. "
                 "If your lease expired, claim new work with `mavps claim`")


def already_completed(task: Task, worker: str, token: str | None) -> bool:
    """This worker's completion already happened: a retry returns it instead of being fenced."""
    return task.status is TaskStatus.COMPLETED and task.claimed_by == worker \
        and (token is None or task.claim_token == token)


def known_capabilities(workers: dict[str, Worker]) -> set[str]:
    """Every capability some registered worker has."""
    return {c for w in workers.values() for c in w.capabilities}


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


# ----- leases ----------------------------------------------------------------------------
def reap(tasks: list[Task], now: datetime, spare: Iterable[int] = ()) -> list[Expired]:
    """Apply `Task.expire` to every task whose lease ran out by `now` (except the ids in `spare`)."""
    spared = set(spare)
    out = []
    for t in tasks:
        if t.id not in spared and t.lease_expired(now):
            holder = t.claimed_by
            t.expire(now)
            out.append(Expired(t, holder))
    return out


def as_reaped(tasks: list[Task], now: datetime) -> list[Task]:
    """The tasks as the next change would see them, after its reap; the tasks given are not changed.

    For looks only (nothing is written): the next claim reaps them for real.
    """
    out = [replace(t, extra=dict(t.extra)) if t.lease_expired(now) else t for t in tasks]
    reap(out, now)
    return out


# ----- dependencies and claims -----------------------------------------------------------
def _completed(task: Task | None) -> bool:
    return task is not None and task.status is TaskStatus.COMPLETED


def claimable(tasks: list[Task], caps: set[str] | None, index: dict[int, Task] | None = None,
              reservations: Sequence[Reservation] = (), now: datetime | None = None) -> list[Task]:
    """Pending tasks whose dependencies are completed and requirements covered, best first,
    leaving out those whose touches overlap paths held now (see `holds`, `touch_wait`).

    A dependency counts as done only when it is completed: in the queue, or in
    `index` (from `Queue.dependency_index`, which adds archived tasks). One that
    is nowhere to be found is not done.
    """
    index = {t.id: t for t in tasks} if index is None else index
    held = holds(tasks, reservations, now)
    out = [
        t for t in tasks
        if t.status is TaskStatus.PENDING
        and not t.held
        and all(_completed(index.get(d)) for d in t.depends_on)
        and (caps is None or set(t.requires) <= caps)
        and not (held and touch_wait(t, held))
    ]
    out.sort(key=lambda t: (-t.priority, t.id))
    return out


def missing_dependencies(tasks: list[Task]) -> set[int]:
    """Ids pending tasks depend on that the queue does not hold (archived, or never existed)."""
    present = {t.id for t in tasks}
    return {d for t in tasks if t.status is TaskStatus.PENDING for d in t.depends_on if d not in present}


def dependency_index(tasks: list[Task], archived: Iterable[Task]) -> dict[int, Task]:
    """Tasks by id for judging dependencies: the queue's, plus the archived ones pending tasks
    depend on and the queue lacks (the queue always wins over the archive)."""
    index = {t.id: t for t in tasks}
    missing = missing_dependencies(tasks)
    index.update({t.id: t for t in archived if t.id in missing})
    return index


def blocked_reason(task: Task, tasks_by_id: dict[int, Task], caps_known: set[str] | None,
                   held: Sequence["Hold"] = ()) -> str | None:
    """Why a pending task is not claimable, or None (it is, or it is not pending).

    "blocked: ..." when a dependency will never complete by itself (cancelled,
    failed, missing, or blocked in turn); "needs capability ..." when no
    registered worker has one it requires (`caps_known`: their capabilities,
    None to skip this check); "waits for #N" while a dependency is still to
    finish. `tasks_by_id` should come from `Queue.dependency_index`, or an id
    only the archive holds reads as missing. "waits for GLOB held by #N (W)" /
    "... reserved by A until T": its touches overlap paths in `held` (see `holds`).
    """
    if task.status is not TaskStatus.PENDING:
        return None
    if task.held:
        return f"held: a draft nobody can claim; release it with `mavps task release {task.id}`"
    dead = dead_dependency(task, tasks_by_id)
    if dead is not None:
        return dead
    lacking = [] if caps_known is None else [c for c in task.requires if c not in caps_known]
    if lacking:
        names = ", ".join(repr(c) for c in lacking)
        return f"needs capability {names} that no registered worker has: register one (`mavps worker register W " \
               f"--capability ...`) or edit this task's requirements"
    waits = [d for d in task.depends_on if not _completed(tasks_by_id.get(d))]
    if waits:
        return "waits for " + ", ".join(f"#{d}" for d in waits)
    return touch_wait(task, held)


# ----- touches and reservations ----------------------------------------------------------
class Hold(NamedTuple):
    """Paths held now, that no other task touching them may start on: a running task's touches, or a live
    reservation. `who` ends a reason: "held by #12 (worker-2)", "reserved by alice until 12:30 UTC (why)"."""

    globs: tuple[str, ...]
    who: str
    task_id: int | None = None
    reservation: str | None = None


def valid_globs(values: Iterable[str]) -> list[str]:
    """The well-formed globs among these, normalised; a malformed one (a hand edit) is left out
    (`mavps doctor` lists it): it neither waits nor blocks."""
    out = []
    for v in values:
        try:
            out.append(globs.check(v))
        except InvalidInput:
            continue
    return out


def holds(tasks: Iterable[Task], reservations: Iterable[Reservation] = (), now: datetime | None = None) -> list[Hold]:
    """What is held at `now`: the touches of each task in progress under a live lease, and each live
    reservation. A task with no touches holds nothing. `now` None: every lease and reservation counts."""
    out = []
    for t in tasks:
        if t.status is TaskStatus.IN_PROGRESS and t.touches and not (now is not None and t.lease_expired(now)):
            out.append(Hold(tuple(valid_globs(t.touches)), f"held by #{t.id} ({_plain(t.claimed_by)})", t.id))
    for r in reservations:
        if r.globs and (now is None or r.live(now)):
            out.append(Hold(tuple(valid_globs(r.globs)), reserved_by(r), reservation=r.id))
    return [h for h in out if h.globs]


def reserved_by(r: Reservation) -> str:
    """"reserved by alice until 12:30 UTC (reason)": how a reason names a reservation."""
    ends = parse(r.expires_at)
    until = f" until {ends:%H:%M} UTC" if ends is not None else ""
    why = f" ({_plain(r.reason)[:200]})" if r.reason else ""
    return f"reserved by {_plain(r.by)}{until}{why}"


def touch_wait(task: Task, held: Sequence[Hold]) -> str | None:
    """"waits for GLOB held by ..." when the task's touches overlap paths someone else holds, else None.
    A task with no touches never waits for them."""
    mine = valid_globs(task.touches)
    if not mine:
        return None
    for h in held:
        if h.task_id == task.id:
            continue
        pairs = globs.overlapping(mine, h.globs)
        if pairs:
            return f"waits for {_plain(pairs[0][1])} {h.who}"
    return None


def waiting_on(held_globs: Sequence[str], tasks: Iterable[Task], task_id: int | None = None) -> list[int]:
    """Pending tasks whose touches overlap these globs (what a hold keeps waiting)."""
    return [t.id for t in tasks if t.status is TaskStatus.PENDING and t.id != task_id
            and globs.overlapping(valid_globs(t.touches), held_globs)]


def touches_problems(tasks: Iterable[Task]) -> list[str]:
    """A line for each task touch that is not a well-formed glob (a hand edit: it is ignored)."""
    out = []
    for t in tasks:
        for g in t.touches:
            try:
                globs.check(g)
            except InvalidInput as exc:
                out.append(f"task {t.id}: {exc}")
    return out


def _plain(text: object) -> str:
    """Text from the workspace as one printable line (no terminal escapes in a reason)."""
    return "".join(c if c.isprintable() else "?" for c in str(text or ""))


def is_stuck(reason: str | None) -> bool:
    """A reason from `blocked_reason` that will not go away by itself (a person must act)."""
    return reason is not None and not reason.startswith("waits for ")


def _never_completes(d: int, dep: Task | None, via: str) -> str | None:
    """Why dependency #d (reached `via` others) will never complete by itself, or None."""
    fix = f"requeue #{d} or edit the dependencies"
    if dep is None:
        return f"blocked: depends on #{d}{via}, which does not exist: edit the dependencies"
    if dep.status is TaskStatus.CANCELLED:
        return f"blocked: depends on #{d}{via}, which was cancelled: {fix}"
    if dep.status is TaskStatus.FAILED:
        return f"blocked: depends on #{d}{via}, which failed for good: {fix}"
    return None


def dead_dependency(task: Task, tasks_by_id: dict[int, Task]) -> str | None:
    """"blocked: ..." naming the first dependency (direct or through others) that will never complete."""
    path: list[int] = [task.id]
    seen: set[int] = set()

    def walk(t: Task) -> str | None:
        for d in t.depends_on:
            dep = tasks_by_id.get(d)
            if d in path:
                circle = " -> ".join(f"#{i}" for i in [*path[path.index(d):], d])
                return f"blocked: dependencies in a circle ({circle}): edit the dependencies"
            via = f" (through {', '.join(f'#{i}' for i in path[1:])})" if len(path) > 1 else ""
            found = _never_completes(d, dep, via)
            if found is None and dep is not None and dep.status is TaskStatus.PENDING and d not in seen:
                seen.add(d)
                path.append(d)
                found = walk(dep)
                path.pop()
            if found is not None:
                return found
        return None

    return walk(task)


def dependency_cycle(tasks: list[Task]) -> list[int] | None:
    """A chain of task ids that depend on each other in a circle, or None.

    `add` cannot make one (a new task depends only on older ones); a hand edit can.
    """
    deps = {t.id: list(t.depends_on) for t in tasks}
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


def dependency_problem(deps: list[int], live: dict[int, Task], archived: dict[int, Task]) -> str | None:
    """Why a new task cannot depend on these ids, or None: each must exist and may still complete."""
    for d in deps:
        if d in live:
            continue
        if d not in archived:
            return f"depends_on: no task {d}"
        if archived[d].status is not TaskStatus.COMPLETED:
            return f"depends_on: task {d} was {archived[d].status.value}; it will never complete"
    return None


def edited_dependency_problem(task: Task, deps: list[int], tasks: list[Task], archived: dict[int, Task]) -> str | None:
    """Why `task` cannot depend on these ids instead, or None: not on itself, each one existing and able to
    complete (as for a new task), and no circle through the queue."""
    if task.id in deps:
        return f"depends_on: task {task.id} cannot depend on itself"
    problem = dependency_problem(deps, {t.id: t for t in tasks}, archived)
    if problem:
        return problem
    cycle = dependency_cycle([replace(t, depends_on=deps) if t.id == task.id else t for t in tasks])
    if cycle:
        return "depends_on: that makes a circle (" + " -> ".join(f"#{i}" for i in cycle) + ")"
    return None


# ----- the archive -----------------------------------------------------------------------
def to_archive(tasks: list[Task], keep: int = KEEP_FINISHED, batch: int = ARCHIVE_BATCH) -> list[Task]:
    """The finished tasks to move to the archive now (none until `keep + batch` have gathered), oldest first.

    Failed tasks stay (a person must look at them) and so does anything a live
    task depends on; `keep` of the newest completed or cancelled ones stay too.
    """
    finished = [t for t in tasks if t.status in (TaskStatus.COMPLETED, TaskStatus.CANCELLED)]
    if len(finished) <= keep + batch:
        return []
    needed = {d for t in tasks if t.status not in FINISHED for d in t.depends_on}
    movable = sorted((t for t in finished if t.id not in needed), key=lambda t: (t.completed_at or "", t.id))
    return movable[: len(finished) - keep]
