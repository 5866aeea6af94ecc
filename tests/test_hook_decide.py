"""The Stop hook's decision, branch by branch: decide() is pure, so no workspace, no subprocess, no sleeping.

A fake clock stands for the server's time; the session record and the view are
built by hand, as the I/O loop (mavps.hooks.stop) would build them.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mavps.hooks import texts
from mavps.hooks.decide import (ERROR, HAND_OVER, LET_GO, NO_WORK, REMIND, WAIT, Limits, View, decide, idle_seconds,
                                marker)
from mavps.hooks.session import SessionRecord
from mavps.models import Task, TaskStatus, Worker
from mavps.timeutil import iso

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
W = "w1"
LIMITS = Limits(idle_timeout=600, hook_wait=240, max_blocks=3)


class FakeClock:
    """The server's time, moved by the test."""

    def __init__(self, at: datetime = T0) -> None:
        self.at = at
        self.reads = 0

    def now(self) -> datetime:
        self.reads += 1
        return self.at

    def advance(self, seconds: float) -> "FakeClock":
        self.at += timedelta(seconds=seconds)
        return self


def stamp(seconds: float = 0) -> str:
    return iso(T0 + timedelta(seconds=seconds))


def worker(**kw) -> Worker:
    return Worker(W, registered_at=stamp(-3600), last_heartbeat=stamp(), **kw)


def task(tid: int = 1, claimed: float = 0) -> Task:
    return Task(tid, description=f"task {tid}", status=TaskStatus.IN_PROGRESS, claimed_by=W,
                claimed_at=stamp(claimed), attempts=1)


def fresh(**kw) -> SessionRecord:
    """A session that started at T0 (as SessionStart records it)."""
    return SessionRecord(worker=W, started=stamp(), **kw)


# ----- a task for the worker ----------------------------------------------------------------------
def test_a_task_claimed_now_is_handed_over_and_resets_the_count():
    rec = worker(last_task_claimed=stamp(), last_task_completed=stamp(-50))
    d = decide(View(W, claimed=task(), record=rec), fresh(blocks=2, marker=["x", "y"]), FakeClock(), LIMITS)
    assert d.kind == HAND_OVER and d.block and d.outcome == "block"
    assert d.task.id == 1 and d.reason is None  # the caller adds the instructions it reads
    assert d.session.blocks == 0 and d.session.marker == [stamp(), stamp(-50)]
    assert d.offline is None and not d.forget
    assert d.message == texts.handed(W, 1)


def test_a_held_task_is_named_and_counted():
    rec = worker(last_task_claimed=stamp(-10))
    d = decide(View(W, held=[task(claimed=-10)], record=rec), fresh(), FakeClock(), LIMITS)
    assert d.kind == REMIND and d.task.id == 1
    assert d.reason == texts.held_reason(task(claimed=-10), W)
    assert d.session.blocks == 1 and d.session.marker == marker(rec)
    again = decide(View(W, held=[task(claimed=-10)], record=rec), d.session, FakeClock().advance(5), LIMITS)
    assert again.kind == REMIND and again.session.blocks == 2


def test_runaway_guard_lets_go_of_a_task_never_finished():
    rec = worker(last_task_claimed=stamp(-10))
    session = fresh(blocks=LIMITS.max_blocks, marker=marker(rec))
    d = decide(View(W, held=[task(claimed=-10)], record=rec), session, FakeClock(), LIMITS)
    assert d.kind == LET_GO and not d.block and d.outcome == "allow"
    assert d.forget and d.log_event == "hook_runaway"
    assert d.offline == texts.runaway_held(W, LIMITS.max_blocks, 1) and "runaway guard" in d.message


def test_progress_resets_the_runaway_count():
    """A completion since the count changes the marker: the count starts again."""
    old = worker(last_task_claimed=stamp(-10))
    session = fresh(blocks=LIMITS.max_blocks, marker=marker(old))
    done = worker(last_task_claimed=stamp(-5), last_task_completed=stamp(-6))
    d = decide(View(W, held=[task(2, claimed=-5)], record=done), session, FakeClock(), LIMITS)
    assert d.kind == REMIND and d.session.blocks == 1


def test_a_task_given_while_waiting_is_progress():
    rec = worker(last_task_claimed=stamp(-10))
    session = fresh(blocks=LIMITS.max_blocks, marker=marker(rec))
    d = decide(View(W, held=[task()], record=rec, waited=30), session, FakeClock(), LIMITS)
    assert d.kind == REMIND and d.session.blocks == 0 and d.message == ""


# ----- no work ------------------------------------------------------------------------------------
def test_no_work_yet_waits_within_hook_wait():
    d = decide(View(W, record=worker()), fresh(), FakeClock().advance(10), LIMITS)
    assert d.kind == WAIT and not d.block and d.wait == LIMITS.hook_wait
    assert d.session.started == stamp()


def test_the_wait_never_passes_the_idle_time_left():
    d = decide(View(W, record=worker()), fresh(), FakeClock().advance(500), LIMITS)
    assert d.kind == WAIT and d.wait == 100


def test_a_new_session_starts_its_idle_time_now():
    clock = FakeClock().advance(7200)  # registered two hours ago, but this session starts now
    d = decide(View(W, record=worker()), SessionRecord(), clock, LIMITS)
    assert d.kind == WAIT and d.wait == LIMITS.hook_wait
    assert d.session.started == iso(clock.at) and d.session.worker == W


def test_after_waiting_with_idle_time_left_block_and_stop_again():
    d = decide(View(W, record=worker(), waited=240), fresh(), FakeClock().advance(250), LIMITS)
    assert d.kind == NO_WORK and d.block and d.outcome == "block"
    assert d.reason == texts.waiting_reason(W, 240, 250, LIMITS.idle_timeout)
    assert "end your turn" in d.reason
    assert d.session.blocks == 0  # a real wait is not a wasted turn
    assert d.message == texts.no_work_yet(W)


def test_idle_timeout_lets_the_worker_stop_and_marks_it_offline():
    d = decide(View(W, record=worker(), waited=100), fresh(), FakeClock().advance(600), LIMITS)
    assert d.kind == LET_GO and not d.block
    assert d.offline == texts.idle_out(W, 600, LIMITS.idle_timeout)
    assert d.log_event is None  # marking it offline logs worker_offline
    assert d.forget and d.session is None


def test_idle_time_counts_from_the_last_claim_or_completion():
    rec = worker(last_task_completed=stamp(550))
    d = decide(View(W, record=rec, waited=100), fresh(), FakeClock().advance(600), LIMITS)
    assert d.kind == NO_WORK
    assert idle_seconds(fresh(), rec, T0 + timedelta(seconds=600, microseconds=900_000)) == 50


def test_runaway_guard_when_the_hook_cannot_wait():
    """hook_wait 0: every block is a wasted turn; after max_blocks of them the session is let go."""
    limits = Limits(idle_timeout=3600, hook_wait=0, max_blocks=2)
    rec, session, clock = worker(), fresh(), FakeClock()
    kinds = []
    for _ in range(3):
        first = decide(View(W, record=rec), session, clock, limits)
        assert first.kind == WAIT and first.wait == 0
        d = decide(View(W, record=rec, waited=0.0), first.session, clock.advance(1), limits)
        kinds.append(d.kind)
        session = d.session or session
    assert kinds == [NO_WORK, NO_WORK, LET_GO]
    assert d.log_event == "hook_runaway" and d.offline == texts.runaway_no_work(W, 2)


def test_blocks_after_a_real_wait_never_trip_the_guard():
    session = fresh(blocks=99, marker=marker(worker()))
    d = decide(View(W, record=worker(), waited=1.5), session, FakeClock().advance(5), LIMITS)
    assert d.kind == NO_WORK and d.session.blocks == 99


# ----- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("problem", ["cannot open the workspace (refused)", "TransportError: gone"])
def test_errors_let_the_agent_stop_quietly_with_the_reason(problem):
    clock = FakeClock()
    d = decide(View(W, error=problem, claimed=task()), fresh(blocks=1), clock, LIMITS)
    assert d.kind == ERROR and not d.block and d.outcome == "error"
    assert d.message == texts.gave_up(W, problem) and problem in d.message
    assert d.session is None and not d.forget  # the session file is left alone
    assert d.offline is None and d.log_event is None
    assert clock.reads == 0


def test_session_record_round_trip_keeps_unknown_keys():
    rec = SessionRecord.from_dict({"worker": W, "session_started": stamp(), "blocks": "2", "marker": [1, 2],
                                   "updated": 5.0, "later": {"x": 1}})
    assert rec.blocks == 2 and rec.started == stamp() and rec.marker == [1, 2]
    assert rec.to_dict() == {"later": {"x": 1}, "worker": W, "session_started": stamp(), "blocks": 2,
                             "marker": [1, 2]}
    assert SessionRecord.from_dict({"blocks": "many", "marker": "x"}) == SessionRecord()
