"""Hand reservations of paths: `reserve`, `unreserve`, and the list of what is held now.

A reservation (`reservations.json`) holds globs until its ttl ends, by the
server's clock: a pending task whose touches overlap it is not claimable
(rules.holds, judged in the claim's own transaction). Nothing needs cleaning
up after a crash: an ended reservation never counts, and the next transaction
that writes the file drops it. A running task's touches hold their paths the
same way for as long as its lease lives; `held()` lists both.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from . import globs, validate
from .defaults import MAX_RESERVATION_TTL, RESERVATION_TTL
from .errors import InvalidInput, NotFound, Refused
from .models import QUEUE_FILE, RES_FILE, Reservation, Task, TaskStatus, dump_reservations, load_reservations
from .rules import as_reaped, holds, reserved_by, waiting_on
from .state import ALL_TASKS, load_tasks, read_all
from .store import Store, Txn
from .timeutil import after, iso, utcnow


@dataclass
class HeldRow:
    """One thing holding paths now: a reservation, or a running task's touches; and the tasks it keeps waiting."""

    kind: str  # "reservation" | "task"
    id: str | int
    globs: list[str]
    by: str
    until: str | None
    reason: str | None = None
    created_at: str | None = None
    waiting: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "globs": list(self.globs), "by": self.by, "until": self.until,
                "reason": self.reason, "created_at": self.created_at, "waiting": list(self.waiting)}


def ttl_seconds(ttl: float | None) -> float:
    """The ttl asked for, checked (default RESERVATION_TTL)."""
    if ttl is None:
        return RESERVATION_TTL
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 1 <= ttl <= MAX_RESERVATION_TTL:
        raise InvalidInput(f"ttl {ttl!r}: give seconds between 1 and {MAX_RESERVATION_TTL:g}")
    return float(ttl)


def _live(txn: Txn) -> tuple[list[Reservation], int]:
    """The live reservations a transaction read, and how many ended ones it drops."""
    found = load_reservations(txn.json(RES_FILE, None))
    live = [r for r in found if r.live(txn.now)]
    return live, len(found) - len(live)


def _event(txn: Txn, agent: str, name: str, message: str, r: Reservation) -> dict[str, Any]:
    return {"timestamp": txn.stamp, "agent": agent, "event": name, "message": message, "reservation": r.id,
            "globs": list(r.globs), "by": r.by, "expires_at": r.expires_at}


class Reservations:
    def __init__(self, store: Store, agent: str) -> None:
        self.store = store
        self.agent = agent

    # ----- looking (lock-free) ---------------------------------------------------------------
    def held(self, now: datetime | None = None) -> list[HeldRow]:
        """Live reservations and running tasks' touches, each with the pending tasks whose touches overlap it
        (two round trips: the queue and the reservations read together)."""
        raw = self.store.look([*ALL_TASKS, RES_FILE])  # the backlog's pending tasks may wait too
        now = now or utcnow()
        tasks = as_reaped(read_all(raw), now)
        found = load_reservations(None if raw[RES_FILE] is None else _parse(raw[RES_FILE]))
        rows = []
        for r in found:
            if r.live(now):
                rows.append(HeldRow("reservation", r.id, list(r.globs), r.by, r.expires_at, r.reason, r.created_at,
                                    waiting_on(r.globs, tasks)))
        by_id = {t.id: t for t in tasks}
        for h in holds(tasks, (), now):
            t = by_id[h.task_id]  # type: ignore[index]
            rows.append(HeldRow("task", t.id, list(h.globs), t.claimed_by or "", t.lease_expires_at, t.description,
                                t.claimed_at, waiting_on(h.globs, tasks, t.id)))
        return rows

    # ----- changing (each one transaction) ---------------------------------------------------
    def reserve(self, patterns: Sequence[str], ttl: float | None = None, reason: str | None = None,
                force: bool = False, agent: str | None = None) -> Reservation:
        """Hold these globs for `ttl` seconds. The same agent reserving the same globs again renews it.

        Refused (Refused, nothing written) when a glob overlaps a running task's touches or someone else's
        live reservation, unless `force`: that task may still write there."""
        wanted = globs.check_all(patterns)
        if not wanted:
            raise InvalidInput("give at least one glob to reserve, e.g. `mavps reserve 'src/auth/**'`")
        seconds = ttl_seconds(ttl)
        reason = validate.text(reason, "reason", 1000) if reason else None
        agent = validate.agent_name(agent or self.agent)

        def change(txn: Txn) -> Reservation:
            live, _ended = _live(txn)
            mine = next((r for r in live if r.by == agent and sorted(r.globs) == sorted(wanted)), None)
            if not force:
                _refuse_overlap(wanted, load_tasks(txn.json(QUEUE_FILE, [])), [r for r in live if r is not mine],
                                txn.now)
            ends = iso(after(txn.now, seconds))
            if mine is not None:
                mine.expires_at = ends
                mine.reason = reason if reason is not None else mine.reason
                r, verb = mine, "renewed"
            else:
                r = Reservation(id=f"r-{os.urandom(4).hex()}", globs=list(wanted), by=agent, reason=reason,
                                created_at=txn.stamp, expires_at=ends)
                live.append(r)
                verb = "reserved"
            txn.write(RES_FILE, dump_reservations(live))
            txn.log.append(_event(txn, agent, "reserved", f"{agent} {verb} {', '.join(wanted)} "
                                  f"({reserved_by(r)})", r))
            return r

        return self.store.transact([RES_FILE, QUEUE_FILE], change)

    def unreserve(self, patterns: Sequence[str] = (), all_: bool = False, force: bool = False,
                  agent: str | None = None) -> list[Reservation]:
        """End this agent's reservations of these globs (a reservation of several keeps the others), or all of
        its reservations with `all_`; someone else's only with `force`. What ended (NotFound when nothing)."""
        wanted = globs.check_all(patterns)
        if bool(wanted) == bool(all_):
            raise InvalidInput("give the globs to unreserve, or --all (not both)")
        agent = validate.agent_name(agent or self.agent)

        def change(txn: Txn) -> list[Reservation]:
            live, ended = _live(txn)
            ours = [r for r in live if force or r.by == agent]
            touched = [r for r in ours if all_ or set(r.globs) & set(wanted)]
            if not touched:
                others = [r for r in live if r.by != agent and (all_ or set(r.globs) & set(wanted))]
                hint = f" ({len(others)} by others: add --force to end them)" if others else ""
                raise NotFound(f"no reservation of {agent}'s matches{hint}: see `mavps reservations`")
            gone = []
            for r in touched:
                left = [] if all_ else [g for g in r.globs if g not in wanted]
                dropped = [g for g in r.globs if g not in left]
                if left:
                    r.globs = left
                else:
                    live.remove(r)
                ended_r = Reservation(r.id, dropped, r.by, r.reason, r.created_at, r.expires_at)
                gone.append(ended_r)
                txn.log.append(_event(txn, agent, "unreserved", f"{agent} unreserved {', '.join(dropped)} "
                                      f"(reserved by {r.by})", ended_r))
            txn.write(RES_FILE, dump_reservations(live))
            return gone

        return self.store.transact([RES_FILE, QUEUE_FILE], change)  # the queue: a typo'd workspace is told


def _refuse_overlap(wanted: list[str], tasks: list[Task], others: list[Reservation], now: datetime) -> None:
    """Refused, saying what to do, when a glob overlaps a running task's touches or another live reservation."""
    for h in holds([t for t in tasks if t.status is TaskStatus.IN_PROGRESS], others, now):
        pairs = globs.overlapping(wanted, h.globs)
        if not pairs:
            continue
        mine, theirs = pairs[0]
        if h.task_id is not None:
            raise Refused(f"{mine} overlaps {theirs}, {h.who} (in progress): wait for it (`mavps wait {h.task_id}`),"
                          " or reserve anyway with --force (that task may still write there)")
        raise Refused(f"{mine} overlaps {theirs}, {h.who}: wait for it to end or be unreserved, "
                      "or reserve anyway with --force")


def _parse(data: bytes) -> Any:
    from .state import parse_json

    return parse_json(RES_FILE, data)
