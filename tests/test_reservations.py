"""Touches and reservations: a task whose touches overlap what a running task or a live reservation holds
waits; `reserve`, `unreserve`, `reservations`; the reasons `ready`, `status` and `task show` give."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from mavps import rules
from mavps.cli import cli
from mavps.errors import InvalidInput, NotFound, Refused
from mavps.models import Reservation, Task, TaskStatus

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def running(tid: int, touches: list[str], worker: str = "w1", lease: timedelta = timedelta(minutes=5)) -> Task:
    return Task(id=tid, status=TaskStatus.IN_PROGRESS, claimed_by=worker, touches=touches,
                lease_expires_at=stamp(NOW + lease))


def reservation(globs: list[str], ends: timedelta = timedelta(minutes=30), by: str = "alice",
                reason: str | None = "hand edit") -> Reservation:
    return Reservation(id="r-1", globs=globs, by=by, reason=reason, expires_at=stamp(NOW + ends))


# ----- the rule, pure ------------------------------------------------------------------------------
def test_a_pending_task_overlapping_a_running_one_waits_and_a_disjoint_one_does_not():
    tasks = [running(1, ["src/auth/**"], "worker-2"), Task(id=2, touches=["src/auth/login.py"]),
             Task(id=3, touches=["docs/**"]), Task(id=4)]
    assert [t.id for t in rules.claimable(tasks, None, now=NOW)] == [3, 4]
    held = rules.holds(tasks, (), NOW)
    assert rules.blocked_reason(tasks[1], {t.id: t for t in tasks}, None, held) == \
        "waits for src/auth/** held by #1 (worker-2)"
    assert rules.blocked_reason(tasks[2], {t.id: t for t in tasks}, None, held) is None


def test_a_task_without_touches_never_waits_and_never_blocks():
    tasks = [running(1, []), Task(id=2, touches=["**"]), running(3, ["**"]), Task(id=4)]
    assert [t.id for t in rules.claimable(tasks[:2], None, now=NOW)] == [2]  # #1 holds nothing
    assert [t.id for t in rules.claimable(tasks[2:], None, now=NOW)] == [4]  # #4 waits for nothing


def test_an_expired_lease_or_reservation_holds_nothing():
    expired = running(1, ["src/**"], lease=timedelta(seconds=-1))
    pending = Task(id=2, touches=["src/a.py"])
    assert [t.id for t in rules.claimable([expired, pending], None, now=NOW)] == [2]
    ended = reservation(["src/**"], ends=timedelta(seconds=-1))
    assert [t.id for t in rules.claimable([pending], None, reservations=[ended], now=NOW)] == [2]
    live = reservation(["src/**"])
    assert rules.claimable([pending], None, reservations=[live], now=NOW) == []
    assert rules.blocked_reason(pending, {2: pending}, None, rules.holds([pending], [live], NOW)) == \
        "waits for src/** reserved by alice until 12:30 UTC (hand edit)"


def test_two_overlapping_pending_tasks_are_never_claimed_at_once():
    a, b = Task(id=1, touches=["src/*.py"]), Task(id=2, touches=["src/main.py"])
    first = rules.claimable([a, b], None, now=NOW)[0]
    first.claim("w1", "tok", NOW, 60)
    assert rules.claimable([a, b], None, now=NOW) == []


def test_reason_text_from_the_workspace_is_one_printable_line():
    r = reservation(["x/**"], by="al\x1b[2Jice", reason="why\nnot\x07")
    why = rules.touch_wait(Task(id=2, touches=["x/y"]), rules.holds([], [r], NOW))
    assert why is not None and why.isprintable() and "\x1b" not in why


def test_malformed_touches_neither_wait_nor_block_and_are_reported():
    tasks = [running(1, ["[oops"]), Task(id=2, touches=["[oops", "a/b"])]
    assert [t.id for t in rules.claimable(tasks, None, now=NOW)] == [2]
    assert [p.split(":")[0] for p in rules.touches_problems(tasks)] == ["task 1", "task 2"]


# ----- over both transports ---------------------------------------------------------------------------
def res_file(target):
    return target.path / "reservations.json"


def age_reservations(target) -> None:
    """Move the server's clock past every reservation (a hand edit of the file: no sleeping)."""
    data = json.loads(res_file(target).read_text())
    for r in data["reservations"]:
        r["expires_at"] = "2000-01-01T00:00:00Z"
    res_file(target).write_text(json.dumps(data))


def test_claim_skips_overlapping_tasks_and_takes_disjoint_ones(ws, open_ws):
    auth = ws.queue.add("auth", "a", touches=["src/auth/**"], priority=5)
    login = ws.queue.add("login", "b", touches=["src/auth/login.py"], priority=4)
    docs = ws.queue.add("docs", "c", touches=["docs/"])
    assert ws.queue.claim("w1").id == auth.id
    other = open_ws("w2")
    assert other.queue.claim("w2").id == docs.id  # login waits for auth, docs does not
    assert other.queue.claim("w3") is None
    assert [t.id for t in ws.queue.ready()] == []
    assert dict((t.id, why) for t, why in ws.queue.waiting()) == {login.id: "waits for src/auth/** held by #1 (w1)"}
    ws.queue.complete(auth.id, "w1")  # the lease ends with the task: nothing to clean up
    assert other.queue.claim("w3").id == login.id


def test_a_reservation_blocks_then_expires(ws, target):
    t = ws.queue.add("edit api docs", "x", touches=["docs/api.md"])
    r = ws.reservations.reserve(["docs/**"], ttl=600, reason="hand edit", agent="alice")
    assert r.by == "alice" and r.globs == ["docs/**"]
    assert ws.queue.claim("w1") is None
    assert ws.queue.blocked_reason(ws.queue.get(t.id)).startswith("waits for docs/** reserved by alice until ")
    rows = [row.to_dict() for row in ws.reservations.held()]
    assert [(x["kind"], x["globs"], x["by"], x["waiting"]) for x in rows] == \
        [("reservation", ["docs/**"], "alice", [t.id])]
    age_reservations(target)
    assert ws.reservations.held() == []
    assert ws.queue.claim("w1").id == t.id
    ws.reservations.reserve(["other/**"], agent="bob")  # the next write drops the ended one
    assert [x["by"] for x in json.loads(res_file(target).read_text())["reservations"]] == ["bob"]


def test_reserving_the_same_globs_again_renews_it(ws, target):
    first = ws.reservations.reserve(["a/**", "b"], ttl=60, agent="alice")
    again = ws.reservations.reserve(["b", "a/"], ttl=3000, agent="alice")
    assert again.id == first.id and again.expires_at > first.expires_at and again.reason is None
    assert len(json.loads(res_file(target).read_text())["reservations"]) == 1


def test_unreserve_ends_only_ones_own_unless_forced(ws):
    ws.reservations.reserve(["a/**", "b/**"], agent="alice")
    ws.reservations.reserve(["c/**"], agent="bob", force=True)
    t = ws.queue.add("in a", "x", touches=["a/x"])
    gone = ws.reservations.unreserve(["a/**"], agent="alice")
    assert [g.globs for g in gone] == [["a/**"]]
    assert ws.queue.claim("w1").id == t.id  # a/** ended, b/** still held
    assert sorted(g for row in ws.reservations.held() if row.kind == "reservation" for g in row.globs) == \
        ["b/**", "c/**"]
    with pytest.raises(NotFound, match="1 by others: add --force"):
        ws.reservations.unreserve(["c/**"], agent="alice")
    assert [g.by for g in ws.reservations.unreserve(["c/**"], agent="alice", force=True)] == ["bob"]
    assert [g.globs for g in ws.reservations.unreserve(all_=True, agent="alice")] == [["b/**"]]
    events = [r["event"] for r in ws.log.tail(20)]
    assert events.count("reserved") == 2 and events.count("unreserved") == 3


def test_reserve_is_refused_over_a_running_task_unless_forced(ws, target):
    t = ws.queue.add("auth", "x", touches=["src/auth/**"])
    ws.queue.claim("w1")
    with pytest.raises(Refused, match=r"held by #1 \(w1\).*mavps wait 1.*--force"):
        ws.reservations.reserve(["src/**"], agent="alice")
    assert not res_file(target).exists()  # nothing was written
    ws.reservations.reserve(["docs/**"], agent="alice")  # disjoint: fine
    r = ws.reservations.reserve(["src/**"], agent="alice", force=True)
    assert sorted(str(row.id) for row in ws.reservations.held()) == sorted([r.id, str(t.id)] + [
        row.id for row in ws.reservations.held() if row.globs == ["docs/**"]])
    with pytest.raises(Refused, match="reserved by alice"):
        ws.reservations.reserve(["src/x.py"], agent="bob")


def test_touches_are_checked_and_editable_while_running(ws):
    with pytest.raises(InvalidInput):
        ws.queue.add("bad", "x", touches=["../etc/**"])
    t = ws.queue.add("x", "x", touches=["src/"])
    assert t.touches == ["src/**"]
    ws.queue.claim("w1")
    assert ws.queue.edit(t.id, touches=["src/**", "tests/**"]).touches == ["src/**", "tests/**"]
    with pytest.raises(Refused, match="only its touches"):
        ws.queue.edit(t.id, priority=3)


def test_a_workspace_without_reservations_json_works(ws, target):
    ws.queue.add("x", "x", touches=["a/**"])
    assert not res_file(target).exists()
    assert ws.queue.claim("w1") is not None and ws.reservations.held()[0].kind == "task"


# ----- the commands -------------------------------------------------------------------------------------
def conn_args(target) -> list[str]:
    args = ["--workspace", target.url]
    s = target.settings
    if s.get("identity_file"):
        args += ["--identity-file", str(s["identity_file"]), "--known-hosts", str(s["known_hosts"])]
    return args


def run(target, *args: str, code: int = 0):
    result = CliRunner().invoke(cli, [*conn_args(target), *args], catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


@pytest.mark.usefixtures("clean_env")
def test_commands_say_what_a_task_waits_for(ws, target):
    run(target, "task", "add", "auth", "--touches", "src/auth/**")
    run(target, "task", "add", "login", "--touches", "src/auth/login.py", "--touches", "docs/login.md")
    run(target, "task", "add", "docs", "--touches", "docs/")
    run(target, "claim", "--worker", "w1")
    run(target, "--agent", "alice", "reserve", "docs/**", "--ttl", "600", "--reason", "rewrite")
    ready = json.loads(run(target, "--json", "ready", "--blocked").stdout)
    assert {r["id"]: r["blocked_reason"] for r in ready} == {
        2: "waits for src/auth/** held by #1 (w1)",
        3: ready[1]["blocked_reason"]}
    assert ready[1]["blocked_reason"].startswith("waits for docs/** reserved by alice until ")
    assert "waits for src/auth/** held by #1 (w1)" in run(target, "ready").stdout
    assert "why: waits for src/auth/** held by #1 (w1)" in run(target, "task", "show", "2").stdout
    board = json.loads(run(target, "--json", "status").stdout)
    assert {w["id"]: w["reason"] for w in board["waiting"]}[2] == "waits for src/auth/** held by #1 (w1)"
    assert [r["globs"] for r in board["reservations"]] == [["docs/**"]]
    status = run(target, "status").stdout
    assert "#2 waits for src/auth/** held by #1 (w1)" in status and "reserved: docs/** by alice" in status
    rows = json.loads(run(target, "--json", "reservations").stdout)
    assert [(r["kind"], r["id"], r["waiting"]) for r in rows] == \
        [("reservation", rows[0]["id"], [2, 3]), ("task", 1, [2])]  # login touches docs/login.md too
    refused = run(target, "reserve", "src/auth/x.py", code=1)
    assert "held by #1 (w1)" in refused.stderr and "--force" in refused.stderr
    assert "Unreserved docs/**" in run(target, "--agent", "alice", "unreserve", "docs/**").stdout
    assert run(target, "unreserve", code=2).exit_code == 2
    run(target, "task", "edit", "3", "--touches", "[bad", code=1)


@pytest.mark.usefixtures("clean_env")
def test_doctor_lists_ended_reservations_and_malformed_touches(ws, target):
    ws.queue.add("x", "x", touches=["a/**"])
    ws.reservations.reserve(["b/**"], agent="alice")
    age_reservations(target)
    tasks = json.loads((target.path / "task-queue.json").read_text())
    tasks[0]["touches"] = ["[oops"]
    (target.path / "task-queue.json").write_text(json.dumps(tasks))
    out = CliRunner().invoke(cli, [*conn_args(target), "--json", "doctor"], catch_exceptions=False)
    checks = {c["check"]: c for c in json.loads(out.stdout)}
    assert not checks["touches"]["ok"] and "task 1" in checks["touches"]["detail"]
    assert "1 ended" in checks["reservations"]["detail"] and "b/**" in checks["reservations"]["detail"]


def test_plan_apply_checks_touches_as_globs():
    from mavps import plan

    with pytest.raises(InvalidInput, match="without its"):
        plan.parse({"tasks": [{"name": "a", "description": "A", "touches": ["src/[x"]}]})
    assert plan.parse({"tasks": [{"name": "a", "description": "A", "touches": "docs/"}]})[0].fields["touches"] \
        == ["docs/**"]
