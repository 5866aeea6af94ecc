"""The Stop hook's decision: a pure function of what it saw, what the session remembers, and the time.

    decide(view, session, clock, limits) -> Decision

Called once after the first transaction (heartbeat + claim), and, when that
found nothing, once more after waiting for work. No I/O here: the caller
(`hooks.stop`) reads the workspace into a `View`, and carries out the
`Decision` (the block reason to print, the session record to write, the worker
to mark offline, the event to log).

The rules, for a worker:
1. a task claimed on its behalf -> block with the whole task;
2. it holds a task -> block: finish it (the runaway guard lets it go after
   `max_blocks` reminders in a row with no claim or completion);
3. nothing yet and not waited -> wait in the hook, up to hook_wait and no
   longer than its idle time left;
4. still nothing: idle for `idle_timeout` -> let it stop, mark it offline;
   else block with "stop again to keep waiting" (the runaway guard counts
   only blocks that could not wait, each of which is a wasted turn);
5. the workspace failed -> let it stop, with the reason on stderr.

A worker that holds a task with a question (`mavps ask`):
- its answer came and was not handed over in this session -> block with it;
- still unanswered and not waited -> wait in the hook for the answer (heartbeats keep the lease);
- still unanswered after waiting -> block with "end your turn to keep waiting" (the runaway guard counts it
  only when the hook could not really wait, as for work).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol, Sequence

from ..models import Task, Worker
from ..timeutil import iso, parse
from . import texts
from .options import MAX_NO_PROGRESS_BLOCKS
from .session import SessionRecord

HAND_OVER = "hand_over"  # block with the whole task just claimed
REMIND = "remind"  # block: finish the task you hold
WAIT = "wait"  # nothing yet: wait in the hook for `Decision.wait` seconds, then decide again
NO_WORK = "no_work"  # block: nothing to do, end your turn again
LET_GO = "let_go"  # let the agent stop (idle or runaway), mark it offline
ERROR = "error"  # the workspace failed: let the agent stop, say why on stderr
AWAIT_ANSWER = "await_answer"  # its question is unanswered: wait in the hook for `Decision.wait` seconds
ANSWER = "answer"  # block with the answer to its question
ASKING = "asking"  # block: still no answer, end your turn to keep waiting

#: A wait shorter than this did not really wait: its block counts for the runaway guard.
SPIN_SECONDS = 1.0


class Clock(Protocol):
    def now(self) -> datetime:
        """The server's time now."""


@dataclass(frozen=True)
class Limits:
    """The numbers the decision depends on (from the capped config and the hook options)."""

    idle_timeout: float
    hook_wait: float
    max_blocks: int = MAX_NO_PROGRESS_BLOCKS


@dataclass(frozen=True)
class View:
    """What the hook learned from the workspace in this call."""

    worker: str
    claimed: Task | None = None  # claimed on the worker's behalf just now
    held: Sequence[Task] = ()  # tasks it holds (leases just renewed)
    record: Worker | None = None  # its record in worker-status.json
    waited: float | None = None  # seconds waited for work in this call; None: not waited yet
    answer_waited: float | None = None  # seconds waited for an answer in this call; None: not waited yet
    error: str | None = None  # set: the workspace could not be used (why)


@dataclass(frozen=True)
class Decision:
    """What to answer, and what to record."""

    kind: str
    reason: str | None = None  # the block reason (HAND_OVER: built by the caller, it needs the instructions)
    task: Task | None = None
    wait: float = 0.0  # WAIT: seconds to wait for work
    session: SessionRecord | None = None  # write this record (None: leave the file alone)
    forget: bool = False  # drop the session's record
    offline: str | None = None  # mark the worker offline, with this reason
    log_event: str | None = None  # log this event with the `offline` text
    message: str = ""  # one line for stderr

    @property
    def block(self) -> bool:
        return self.kind in (HAND_OVER, REMIND, NO_WORK, ANSWER, ASKING)

    @property
    def outcome(self) -> str:
        return "block" if self.block else "error" if self.kind == ERROR else "allow"


def marker(record: Worker | None) -> list[Any]:
    """Progress as the worker's record shows it: a new claim or completion changes it."""
    return [record.last_task_claimed, record.last_task_completed] if record else [None, None]


def idle_seconds(session: SessionRecord, record: Worker | None, now: datetime) -> float:
    """Seconds since the session started or the worker last registered, claimed or completed."""
    stamps = [session.started]
    if record is not None:
        stamps += [record.registered_at, record.last_task_claimed, record.last_task_completed]
    times = [t for t in map(parse, stamps) if t is not None]
    if not times:
        return 0.0
    # the stamps are whole seconds: compare whole seconds, or idle_timeout fires up to 1 s early
    return (now.replace(microsecond=0) - max(times)).total_seconds()


def decide(view: View, session: SessionRecord, clock: Clock, limits: Limits) -> Decision:
    """The Stop hook's answer for this view of the workspace (see the module's rules)."""
    if view.error is not None:
        return Decision(ERROR, message=texts.gave_up(view.worker, view.error))
    now = clock.now()
    session = replace(session, worker=session.worker or view.worker, started=session.started or iso(now))
    if view.claimed is not None:
        task = view.claimed
        done = view.record.last_task_completed if view.record else None
        return Decision(HAND_OVER, task=task, session=session.counted(0, [task.claimed_at, done]),
                        message=texts.handed(view.worker, task.id))
    progress = marker(view.record)
    blocks = session.blocks if session.marker == progress else 0
    if view.held:
        return _asked(view, session, blocks, limits) or _remind(view, session, blocks, limits)
    idle = idle_seconds(session, view.record, now)
    if view.waited is None:
        return Decision(WAIT, wait=max(0.0, min(limits.hook_wait, limits.idle_timeout - idle)), session=session)
    if idle >= limits.idle_timeout:
        return _let_go(texts.idle_out(view.worker, idle, limits.idle_timeout), None)
    spun = view.waited < SPIN_SECONDS
    if spun and blocks >= limits.max_blocks:
        return _let_go(texts.runaway_no_work(view.worker, blocks), "hook_runaway")
    return Decision(NO_WORK, reason=texts.waiting_reason(view.worker, view.waited, idle, limits.idle_timeout),
                    session=session.counted(blocks + 1 if spun else blocks, progress),
                    message=texts.no_work_yet(view.worker))


def answer_key(task: Task) -> str:
    """Names the last question of a task under its current claim (what the session remembers handing over)."""
    return f"{task.id}:{len(task.questions) - 1}:{task.claim_token or ''}"


def new_answer(task: Task, worker: str, session: SessionRecord) -> dict[str, Any] | None:
    """The answer to this worker's last question on the task, asked under this claim and not yet handed over."""
    if not task.questions:
        return None
    last = task.questions[-1]
    if last.get("asked_by") != worker or last.get("answer") is None or answer_key(task) in session.delivered:
        return None
    asked, claimed = parse(last.get("asked_at")), parse(task.claimed_at)
    return last if asked is None or claimed is None or asked >= claimed else None


def _asked(view: View, session: SessionRecord, blocks: int, limits: Limits) -> Decision | None:
    """A held task with a question of the worker's: hand the answer over, wait for it, or say it is awaited."""
    for task in view.held:
        got = new_answer(task, view.worker, session)
        if got is not None:
            return Decision(ANSWER, reason=texts.answer_reason(task, view.worker, got), task=task,
                            session=session.delivering(answer_key(task)).counted(0, marker(view.record)),
                            message=texts.answered(view.worker, task.id))
    task = next((t for t in view.held if (q := t.pending_question()) and q.get("asked_by") == view.worker), None)
    if task is None:
        return None
    if view.answer_waited is None:
        return Decision(AWAIT_ANSWER, task=task, wait=max(0.0, limits.hook_wait), session=session)
    spun = view.answer_waited < SPIN_SECONDS
    if spun and blocks >= limits.max_blocks:
        return _let_go(texts.runaway_asking(view.worker, blocks, task.id), "hook_runaway")
    return Decision(ASKING, reason=texts.asking_reason(task, view.worker, view.answer_waited), task=task,
                    session=session.counted(blocks + 1 if spun else blocks, marker(view.record)),
                    message=texts.awaits_answer(view.worker, task.id))


def _remind(view: View, session: SessionRecord, blocks: int, limits: Limits) -> Decision:
    task = view.held[0]
    reason = texts.held_reason(task, view.worker)
    if view.waited is not None:  # given a task by someone else while waiting: that is progress
        return Decision(REMIND, reason=reason, task=task, session=session.counted(0, marker(view.record)))
    if blocks >= limits.max_blocks:
        return _let_go(texts.runaway_held(view.worker, blocks, task.id), "hook_runaway")
    return Decision(REMIND, reason=reason, task=task, session=session.counted(blocks + 1, marker(view.record)),
                    message=texts.still_holds(view.worker, task.id))


def _let_go(why: str, event: str | None) -> Decision:
    """Let the agent stop: mark it offline (that logs worker_offline), log `event` too if given."""
    return Decision(LET_GO, forget=True, offline=why, log_event=event, message=texts.hook_says(why))
