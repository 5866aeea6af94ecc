"""The queue's rules and the Task's state changes, tested directly: no transport, a fixed `now`."""
from __future__ import annotations

import re
from dataclasses import fields
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mavps import defaults, rules, state
from mavps.config import Config
from mavps.errors import CorruptState, Fenced, InvalidInput, NotFound, Refused
from mavps.models import Task, TaskStatus, Worker, WorkerStatus
from mavps.timeutil import iso

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
STAMP = iso(NOW)
LATER = NOW + timedelta(seconds=60)
README = Path(__file__).resolve().parents[1] / "README.md"


def held(tid: int = 1, worker: str = "w1", attempts: int = 1, max_attempts: int = 3, lease: str | None = "later",
         **kw) -> Task:
    """A task in progress under `worker`; lease "later" runs out a minute after NOW."""
    expires = iso(LATER) if lease == "later" else lease
    return Task(id=tid, status=TaskStatus.IN_PROGRESS, claimed_by=worker, claimed_at="2030-01-01T11:00:00Z",
                claim_token="tok", attempts=attempts, max_attempts=max_attempts, lease_expires_at=expires, **kw)


def pending(tid: int, deps: tuple[int, ...] = (), requires: tuple[str, ...] = (), priority: int = 0) -> Task:
    return Task(id=tid, depends_on=list(deps), requires=list(requires), priority=priority)


def finished(tid: int, status: TaskStatus = TaskStatus.COMPLETED, at: str = "2030-01-01T00:00:00Z") -> Task:
    return Task(id=tid, status=status, completed_at=at)


# ----- every state change and the fields it sets ----------------------------------------------
def test_claim_sets_holder_token_attempt_and_lease():
    t = Task(id=1, completed_at="old", attempts=1)
    t.claim("w1", "tok", NOW, 1800)
    assert (t.status, t.claimed_by, t.claim_token, t.attempts) == (TaskStatus.IN_PROGRESS, "w1", "tok", 2)
    assert t.claimed_at == t.updated_at == STAMP and t.completed_at is None
    assert t.lease_expires_at == iso(NOW + timedelta(seconds=1800))
    assert not t.lease_expired(NOW) and t.lease_expired(NOW + timedelta(seconds=1800))


def test_renew_moves_only_the_lease():
    t = held()
    before = t.to_dict()
    t.renew(LATER, 600)
    assert t.lease_expires_at == iso(LATER + timedelta(seconds=600))
    assert {k: v for k, v in t.to_dict().items() if k != "lease_expires_at"} == \
        {k: v for k, v in before.items() if k != "lease_expires_at"}


def test_complete_keeps_the_holder_and_drops_the_lease():
    t = held()
    t.complete("done", NOW)
    assert (t.status, t.result, t.completed_at, t.updated_at) == (TaskStatus.COMPLETED, "done", STAMP, STAMP)
    assert t.lease_expires_at is None
    assert t.claimed_by == "w1" and t.claim_token == "tok"  # so a retried completion is recognised
    assert rules.already_completed(t, "w1", "tok") and rules.already_completed(t, "w1", None)
    assert not rules.already_completed(t, "w2", None) and not rules.already_completed(t, "w1", "other")


def test_fail_with_attempts_left_goes_back_to_pending():
    t = held(attempts=1)
    assert t.fail("boom", NOW) is False
    assert (t.status, t.error, t.updated_at, t.attempts) == (TaskStatus.PENDING, "boom", STAMP, 1)
    assert t.claimed_by is t.claimed_at is t.claim_token is t.lease_expires_at is t.completed_at is None


def test_fail_on_the_last_attempt_is_final():
    t = held(attempts=3)
    assert t.fail(None, NOW) is True
    assert (t.status, t.error, t.completed_at) == (TaskStatus.FAILED, "failed without a reason", STAMP)
    assert t.lease_expires_at is None and t.claimed_by == "w1"


def test_release_gives_the_attempt_back():
    t = held(attempts=2)
    t.release(NOW)
    assert (t.status, t.attempts, t.updated_at) == (TaskStatus.PENDING, 1, STAMP)
    assert t.claimed_by is t.claim_token is t.lease_expires_at is None
    zero = held(attempts=0)  # hand-edited: never below zero
    zero.release(NOW)
    assert zero.attempts == 0


def test_cancel_a_held_task_then_refused_once_finished():
    t = held()
    t.cancel(NOW)
    assert (t.status, t.completed_at, t.updated_at) == (TaskStatus.CANCELLED, STAMP, STAMP)
    assert t.lease_expires_at is None and t.claimed_by == "w1"  # whose later result is refused
    for status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED):
        with pytest.raises(Refused, match="already"):
            finished(2, status).cancel(NOW)
    with pytest.raises(Fenced):
        rules.check_holder(t, "w1", "tok")


@pytest.mark.parametrize("status", [TaskStatus.FAILED, TaskStatus.CANCELLED])
def test_requeue_starts_afresh(status):
    t = held(attempts=3)
    t.status, t.completed_at = status, "2029-01-01T00:00:00Z"
    t.requeue(NOW)
    assert (t.status, t.attempts, t.completed_at, t.updated_at) == (TaskStatus.PENDING, 0, None, STAMP)
    assert t.claimed_by is t.claim_token is t.lease_expires_at is None


@pytest.mark.parametrize("status", [TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED])
def test_requeue_refused_unless_failed_or_cancelled(status):
    t = Task(id=1, status=status)
    with pytest.raises(Refused, match="only failed or cancelled"):
        t.requeue(NOW)
    assert t.status is status


def test_expire_returns_to_pending_or_dead_letters():
    back = held(attempts=1, lease="2029-01-01T00:00:00Z")
    assert back.expire(NOW) is False
    assert (back.status, back.attempts, back.updated_at) == (TaskStatus.PENDING, 1, STAMP)
    assert back.claimed_by is back.lease_expires_at is None
    dead = held(attempts=3)
    assert dead.expire(NOW) is True
    assert (dead.status, dead.completed_at) == (TaskStatus.FAILED, STAMP)
    assert dead.error == "lease expired while held by w1 (attempt 3 of 3)" and dead.lease_expires_at is None


def test_check_holder_fences_everyone_but_the_holder():
    t = held()
    rules.check_holder(t, "w1", "tok")
    rules.check_holder(t, "w1", None)
    with pytest.raises(Fenced, match="now held by w1"):
        rules.check_holder(t, "w2", None)
    with pytest.raises(Fenced):
        rules.check_holder(t, "w1", "another claim")
    with pytest.raises(Fenced, match="pending"):
        rules.check_holder(pending(2), "w1", None)


def test_lease_expired_counts_a_missing_lease_as_run_out():
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    held = Task(id=1, status=TaskStatus.IN_PROGRESS)
    for lease, expired in [(None, True), ("nonsense", True), ("2029-12-31T23:59:59Z", True),
                           ("2030-01-01T00:00:00Z", True), ("2030-01-01T00:00:01Z", False)]:
        held.lease_expires_at = lease
        assert held.lease_expired(now) is expired, lease
    assert Task(id=2, status=TaskStatus.PENDING).lease_expired(now) is False


# ----- workers ----------------------------------------------------------------------------------
def test_worker_status_changes():
    w = Worker(id="w1", status=WorkerStatus.OFFLINE, idle_since="2029-01-01T00:00:00Z")
    assert w.beat(NOW) is True and w.status is WorkerStatus.ACTIVE and w.idle_since is None
    assert w.beat(NOW) is False
    t = held()
    w.claimed(t, NOW)
    assert (w.current_task, w.last_task_claimed, w.last_heartbeat) == (1, STAMP, STAMP)
    t.complete(None, NOW)
    w.finished(t, LATER)
    assert w.current_task is None and w.last_task_completed == iso(LATER)
    assert w.set_status(WorkerStatus.OFFLINE, LATER) is True and w.idle_since == iso(LATER)
    assert w.set_status("offline", NOW) is False and w.idle_since == iso(LATER)
    assert w.to_dict()["status"] == "offline"


@pytest.mark.parametrize("status", ["idle", "removed", 3])
def test_a_worker_status_never_set_is_reported(status):
    with pytest.raises(CorruptState, match="unknown status"):
        Worker.from_dict("w1", {"status": status})


# ----- reaping ----------------------------------------------------------------------------------
@pytest.mark.parametrize("lease", [None, "", "garbage", "2029-12-31T23:59:59Z", STAMP])
def test_reap_returns_every_run_out_or_unreadable_lease(lease):
    tasks = [held(1, lease=lease), held(2, worker="w2"), pending(3), finished(4)]
    expired = rules.reap(tasks, NOW)
    assert [(e.task.id, e.holder) for e in expired] == [(1, "w1")]
    assert tasks[0].status is TaskStatus.PENDING and tasks[0].updated_at == STAMP
    assert tasks[1].status is TaskStatus.IN_PROGRESS and tasks[1].updated_at is None


def test_reap_spares_the_given_ids_and_dead_letters_the_last_attempt():
    tasks = [held(1, lease=None), held(2, lease=None, attempts=3)]
    assert [e.task.id for e in rules.reap(tasks, NOW, spare=[1])] == [2]
    assert tasks[0].status is TaskStatus.IN_PROGRESS and tasks[1].status is TaskStatus.FAILED


def test_as_reaped_changes_copies_only():
    tasks = [held(1, lease="garbage"), held(2, lease="garbage", attempts=3), held(3)]
    seen = rules.as_reaped(tasks, NOW)
    assert [t.status for t in seen] == [TaskStatus.PENDING, TaskStatus.FAILED, TaskStatus.IN_PROGRESS]
    assert [t.status for t in tasks] == [TaskStatus.IN_PROGRESS] * 3 and seen[2] is tasks[2]


# ----- claims and dependencies ---------------------------------------------------------------------
def test_claimable_orders_by_priority_then_id_and_respects_capabilities():
    tasks = [pending(1), pending(2, priority=5), pending(3, requires=("gpu",)), pending(4, priority=5), held(5)]
    assert [t.id for t in rules.claimable(tasks, None)] == [2, 4, 1, 3]
    assert [t.id for t in rules.claimable(tasks, set())] == [2, 4, 1]
    assert [t.id for t in rules.claimable(tasks, {"gpu"})] == [2, 4, 1, 3]


def test_claimable_counts_only_completed_dependencies_including_archived_ones():
    live = [pending(5, deps=(1,)), pending(6, deps=(2,)), pending(7, deps=(3,)), pending(8, deps=(4,)),
            finished(4, TaskStatus.COMPLETED)]
    archived = [finished(1), finished(2, TaskStatus.CANCELLED), Task(id=4, status=TaskStatus.CANCELLED)]
    assert rules.missing_dependencies(live) == {1, 2, 3}
    index = rules.dependency_index(live, archived)
    assert index[4].status is TaskStatus.COMPLETED  # the queue wins over the archive
    assert [t.id for t in rules.claimable(live, None, index)] == [5, 8]
    assert [t.id for t in rules.claimable(live, None)] == [8]  # without the archive: #1 reads as missing


def test_blocked_reason_names_what_a_person_must_do():
    tasks = [pending(1, deps=(9,)), pending(2, deps=(3,)), finished(3, TaskStatus.FAILED), pending(4, deps=(2,)),
             pending(5, requires=("gpu",)), held(6), pending(7, deps=(6,)), pending(8, deps=(8,))]
    index = {t.id: t for t in tasks}
    why = {t.id: rules.blocked_reason(t, index, {"cpu"}) for t in tasks}
    assert why[1] == "blocked: depends on #9, which does not exist: edit the dependencies"
    assert why[2] == "blocked: depends on #3, which failed for good: requeue #3 or edit the dependencies"
    assert why[4] == "blocked: depends on #3 (through #2), which failed for good: requeue #3 or edit the dependencies"
    assert why[5].startswith("needs capability 'gpu'") and rules.blocked_reason(tasks[4], index, None) is None
    assert why[6] is None and why[7] == "waits for #6"
    assert why[8].startswith("blocked: dependencies in a circle (#8 -> #8)")
    assert [rules.is_stuck(why[i]) for i in (1, 5, 6, 7)] == [True, True, False, False]


def test_blocked_reason_pure():
    blocked_reason, is_stuck = rules.blocked_reason, rules.is_stuck
    tasks = {t.id: t for t in [
        Task(id=1, status=TaskStatus.COMPLETED), Task(id=2, status=TaskStatus.IN_PROGRESS),
        Task(id=3, status=TaskStatus.CANCELLED), Task(id=4, depends_on=[1]), Task(id=5, depends_on=[1, 2]),
        Task(id=6, depends_on=[4, 3]), Task(id=7, requires=["gpu"]), Task(id=8, depends_on=[42]),
        Task(id=9, depends_on=[10]), Task(id=10, depends_on=[9]), Task(id=11, depends_on=[7]),
    ]}
    why = {tid: blocked_reason(t, tasks, {"backend"}) for tid, t in tasks.items()}
    assert why[1] is None and why[2] is None and why[3] is None and why[4] is None
    assert why[5] == "waits for #2"
    assert why[6].startswith("blocked: depends on #3, which was cancelled: requeue #3")
    assert why[7].startswith("needs capability 'gpu' that no registered worker has")
    assert why[8].startswith("blocked: depends on #42, which does not exist")
    assert why[9] == "blocked: dependencies in a circle (#9 -> #10 -> #9): edit the dependencies"
    assert why[11] == "waits for #7"
    assert blocked_reason(tasks[7], tasks, None) is None  # capabilities unknown: not judged
    assert blocked_reason(Task(id=12, requires=["\x1b[2J"]), tasks, set()).count("\x1b") == 0
    assert [tid for tid, w in why.items() if is_stuck(w)] == [6, 7, 8, 9, 10]


def test_dependency_cycles_found():
    dependency_cycle = rules.dependency_cycle
    assert dependency_cycle([Task(1), Task(2, depends_on=[1]), Task(3, depends_on=[1, 2])]) is None
    assert dependency_cycle([Task(1, depends_on=[3]), Task(2, depends_on=[1]), Task(3, depends_on=[2])]) == [1, 3, 2, 1]
    assert dependency_cycle([Task(5, depends_on=[5])]) == [5, 5]
    assert dependency_cycle([Task(1, depends_on=[99])]) is None


def test_dependency_cycle_and_the_dependencies_a_new_task_may_have():
    chain = [pending(1, deps=(2,)), pending(2, deps=(3,)), pending(3, deps=(1,)), pending(4, deps=(1,))]
    assert rules.dependency_cycle(chain) == [1, 2, 3, 1]
    assert rules.dependency_cycle([pending(1), pending(2, deps=(1, 99))]) is None
    live, archived = {1: pending(1)}, {2: finished(2), 3: finished(3, TaskStatus.CANCELLED)}
    assert rules.dependency_problem([1, 2], live, archived) is None
    assert rules.dependency_problem([3], live, archived) == "depends_on: task 3 was cancelled; it will never complete"
    assert rules.dependency_problem([4], live, archived) == "depends_on: no task 4"


def test_path_problem_and_filters():
    assert rules.path_problem([Task(id=1, instruction_file="tasks/a.md", context_files=["src/x.py"])]) is None
    assert "task 2:" in rules.path_problem([Task(id=2, context_files=["../etc/passwd"])])
    assert "absolute" in rules.path_problem([Task(id=3, instruction_file="/etc/passwd")])
    tasks = [pending(1), held(2), held(3, worker="w2")]
    assert [t.id for t in rules.filter_tasks(tasks, "in_progress", "w2")] == [3]
    with pytest.raises(InvalidInput, match="unknown status"):
        rules.filter_tasks(tasks, "done", None)
    with pytest.raises(NotFound):
        rules.find(tasks, 9)
    unstamped = held(1)
    unstamped.claimed_at = None  # hand-edited: sorts first
    assert [t.id for t in rules.held_by([held(2), unstamped, held(3, worker="w2")], "w1")] == [1, 2]


# ----- the archive ----------------------------------------------------------------------------------
def test_to_archive_waits_for_a_batch_then_moves_the_oldest():
    done = [finished(i, at=f"2030-01-01T00:{i // 60:02d}:{i % 60:02d}Z") for i in range(1, 11)]
    assert rules.to_archive(done, keep=4, batch=6) == []
    moving = rules.to_archive(done + [finished(11, at="2030-01-01T00:00:00Z")], keep=4, batch=6)
    assert [t.id for t in moving] == [11, 1, 2, 3, 4, 5, 6]  # oldest first, 4 newest stay


def test_to_archive_keeps_failed_tasks_and_what_live_tasks_depend_on():
    tasks = [finished(i) for i in range(1, 9)] + [finished(9, TaskStatus.FAILED), pending(10, deps=(1,)),
                                                   held(11, depends_on=[2])]
    moving = {t.id for t in rules.to_archive(tasks, keep=2, batch=1)}
    assert moving == {3, 4, 5, 6, 7, 8}
    assert defaults.KEEP_FINISHED == 200 and rules.to_archive([finished(i) for i in range(1, 301)]) == []


# ----- the state files --------------------------------------------------------------------------------
def test_state_round_trip_keeps_unknown_fields():
    raw = [{"id": 1, "status": "in_progress", "claimed_by": "w1", "future_field": {"x": 1}}]
    tasks = state.read_tasks(state.dumps(raw))
    assert tasks[0].status is TaskStatus.IN_PROGRESS and state.dump_tasks(tasks)[0]["future_field"] == {"x": 1}
    workers = state.read_workers(state.dumps({"w1": {"status": "active", "colour": "blue"}}))
    assert state.dump_workers(workers) == {"w1": {**Worker(id="w1").to_dict(), "colour": "blue"}}
    assert state.read_tasks(None) == [] and state.read_workers(None) == {}


@pytest.mark.parametrize("data, problem", [
    (b"", "the file is empty"), (b"\xff", "not UTF-8 text (byte 0)"),
    (b'[{"id": 1},\n ]', "invalid JSON at line 2 column 2"),
    (b'[{"id": 1}, {"id": 1}]', "task 1: the id appears twice"), (b'{"a": 1}', "must be a JSON array"),
])
def test_a_bad_queue_file_is_reported_with_its_place(data, problem):
    with pytest.raises(CorruptState, match=re.escape(problem)):
        state.read_tasks(data)


def test_archive_parser_skips_torn_lines_and_the_last_copy_wins():
    lines = state.archive_lines([finished(1), finished(2), finished(1, TaskStatus.CANCELLED)])
    data = b"".join(lines) + b'{"id": 3, "stat'
    got = {t.id: t.status for t in state.parse_archive(data)}
    assert got == {1: TaskStatus.CANCELLED, 2: TaskStatus.COMPLETED}


def test_load_meta():
    assert state.load_meta(None) == {"format": 1}
    for bad in ([], {"next_task_id": "7"}, {"next_task_id": True}):
        with pytest.raises(CorruptState):
            state.load_meta(bad)


# ----- defaults written once --------------------------------------------------------------------------
def _readme_defaults() -> dict[str, str]:
    """README's "## Configuration" table: key -> the default as written."""
    text = README.read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`(\w+)`", cells[0])
        split = len(keys) > 1 and "," in cells[1]  # "10 s, 30 s": one default per key
        values = [v.strip() for v in cells[1].split(",")] if split else [cells[1]] * len(keys)
        assert len(values) == len(keys), line
        out.update(zip(keys, values))
    return out


#: Settings whose default is worked out when used: what README says of them.
DERIVED = {"identity_file": "ssh's", "known_hosts": "ssh's", "ssh_config": "ssh's",
           "agent": "the worker id, else `coordinator`"}


def _as_written(value: object) -> str:
    if value is None or value == ():
        return ""
    if isinstance(value, float):
        return f"{value:g} s"
    if isinstance(value, str):
        return f"`{value}`"
    return str(value)


def test_readme_states_the_defaults_of_the_code():
    written = _readme_defaults()
    cfg = Config()
    keys = [f.name for f in fields(Config) if f.name != "sources"]
    assert sorted(written) == sorted(keys)  # every setting documented, nothing else
    for key in keys:
        expected = DERIVED.get(key, _as_written(getattr(cfg, key)))
        assert written[key] == expected, key


def test_config_defaults_are_the_named_constants():
    cfg = Config()
    for key in ("lock_ttl", "lock_timeout", "lease_ttl", "max_attempts", "idle_timeout", "hook_wait",
                "connect_timeout", "reply_timeout", "worker_timeout", "ssh"):
        assert getattr(cfg, key) == getattr(defaults, key.upper()), key
    assert Task(id=1).max_attempts == defaults.MAX_ATTEMPTS
    assert all(hasattr(cfg, k) for k in defaults.RANGES)


def test_the_config_template_states_the_defaults_of_the_code():
    """templates/mavps.yaml sets each timing to its default: a copy that must not drift either."""
    import yaml

    template = yaml.safe_load((README.parent / "templates" / "mavps.yaml").read_text())
    cfg = Config()
    timings = {k: v for k, v in template.items() if k != "workspace"}
    assert set(timings) == set(defaults.RANGES)
    for key, value in timings.items():
        assert value == getattr(cfg, key), key
