"""Who did what when, from the comms log: attempts (claimed to their end) and point events, pure.

An attempt opens at `task_claimed` and closes at the next record that ends it for that task, whoever
wrote it: the holder's `task_completed`/`task_failed`/`task_released`, mavps's `lease_expired`, the
coordinator's `task_cancelled` or a removal's `task_released`. One still open is running (drawn to now).
A record that closes an attempt whose claim is older than the log window read opens it at the window's
start (`cut`). Lock breaks and messages are markers on the lane of the agent who wrote them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from ..timeutil import parse

#: Event -> how an attempt ends.
ENDS = {"task_completed": "completed", "task_failed": "failed", "task_released": "released",
        "lease_expired": "expired", "task_cancelled": "cancelled"}
#: Event -> marker kind.
MARKS = {"lock_broken": "lock", "message": "message", "message_sent": "message"}


@dataclass
class Attempt:
    lane: str
    task: int
    start: datetime
    end: datetime | None = None
    outcome: str = "running"
    cut: bool = False


@dataclass(frozen=True)
class Mark:
    lane: str
    kind: str
    at: datetime
    text: str


@dataclass(frozen=True)
class Timeline:
    lanes: list[str]
    attempts: list[Attempt]
    marks: list[Mark]
    start: datetime | None
    end: datetime


def _task_id(rec: dict[str, Any]) -> int | None:
    tid = rec.get("task_id")
    return tid if isinstance(tid, int) and not isinstance(tid, bool) else None


def _lane_of(rec: dict[str, Any], open_attempt: Attempt | None) -> str:
    if open_attempt is not None:
        return open_attempt.lane
    holder = rec.get("previous_holder")
    return holder if isinstance(holder, str) and holder else str(rec.get("agent") or "?")


def timeline(records: Iterable[dict[str, Any]], now: datetime, workers: Iterable[str] = ()) -> Timeline:
    """The attempts and markers in these log records (oldest first), with one lane per worker."""
    opened: dict[int, Attempt] = {}
    attempts: list[Attempt] = []
    marks: list[Mark] = []
    first: datetime | None = None
    for rec in records:
        at = parse(rec.get("timestamp"))
        if at is None:
            continue
        first = at if first is None else min(first, at)
        event, tid = rec.get("event"), _task_id(rec)
        if event == "task_claimed" and tid is not None:
            opened[tid] = Attempt(str(rec.get("agent") or "?"), tid, at)
            attempts.append(opened[tid])
        elif event in ENDS and tid is not None:
            att = opened.pop(tid, None)
            if att is None:
                if event == "task_cancelled":
                    continue  # a pending task cancelled: no attempt to close
                att = Attempt(_lane_of(rec, None), tid, at, cut=True)
                attempts.append(att)
            att.end, att.outcome = at, ENDS[event]
        elif event in MARKS:
            marks.append(Mark(str(rec.get("agent") or "?"), MARKS[event], at, str(rec.get("message") or event)))
    start = first
    for att in attempts:
        if att.cut and start is not None:
            att.start = start
    lanes = list(dict.fromkeys([*sorted(workers), *(a.lane for a in attempts), *(m.lane for m in marks)]))
    return Timeline(lanes, attempts, marks, start, max(now, *(a.end for a in attempts if a.end), first or now))
