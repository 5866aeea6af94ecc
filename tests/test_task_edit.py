"""A coordinator shapes its tasks: `task add --hold` (a draft nobody claims), `task edit`, `task release`."""
from __future__ import annotations

import json

import pytest

from mavps.errors import InvalidInput, Refused

from test_cli import Mavps

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def mavps(target) -> Mavps:
    m = Mavps(target)
    m("init")
    return m


def test_a_held_task_is_not_claimable_until_released(ws, target):
    t = ws.queue.add("draft", "(to be filled in)", hold=True)
    assert t.held and ws.queue.claim("w1") is None
    assert ws.queue.ready() == []
    assert "held" in ws.queue.blocked_reason(t)
    plain = ws.queue.add("plain", "x")
    raw = json.loads((target.path / "task-queue.json").read_text())
    assert raw[0]["held"] is True  # a flag, written only when true: a queue without drafts reads as before
    assert not {"held", "touches", "plan_name", "plan_digest"} & set(raw[1])
    ws.queue.release_hold(t.id)
    assert ws.queue.claim("w1").id == t.id and ws.queue.claim("w2").id == plain.id
    with pytest.raises(Refused):
        ws.queue.release_hold(t.id)  # not held any more


def test_edit_changes_fields_and_instructions_in_one_transaction(ws, target):
    dep = ws.queue.add("first", "x")
    t = ws.queue.add("draft", "(to be filled in)", hold=True)
    before = ws.transport.round_trips
    edited = ws.queue.edit(t.id, description="the real thing", instructions="do it well", context_files=["docs/a.md"],
                           requires=["backend"], priority=5, depends_on=[dep.id], max_attempts=2)
    assert ws.transport.round_trips - before == 3  # one transaction
    got = ws.queue.get(t.id)
    assert (got.description, got.context_files, got.requires, got.priority, got.depends_on, got.max_attempts) == \
        ("the real thing", ["docs/a.md"], ["backend"], 5, [dep.id], 2)
    assert edited.held and ws.queue.instructions(got) == "do it well"
    events = [json.loads(line) for line in (target.path / "agent-comms.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "task_edited" and "instructions" in events[-1]["fields"]


@pytest.mark.parametrize("bad", [{"context_files": ["/etc/passwd"]}, {"context_files": ["../x"]},
                                 {"depends_on": [99]}, {"requires": ["no spaces"]}, {"max_attempts": 0},
                                 {"description": ""}])
def test_edit_refuses_bad_fields(ws, bad):
    t = ws.queue.add("t", "x")
    with pytest.raises(InvalidInput):
        ws.queue.edit(t.id, **bad)
    assert ws.queue.get(t.id).description == "t"


def test_edit_refuses_a_dependency_circle_and_itself(ws):
    a = ws.queue.add("a", "x")
    b = ws.queue.add("b", "x", depends_on=[a.id])
    with pytest.raises(InvalidInput, match="circle"):
        ws.queue.edit(a.id, depends_on=[b.id])
    with pytest.raises(InvalidInput, match="itself"):
        ws.queue.edit(a.id, depends_on=[a.id])
    assert ws.queue.get(a.id).depends_on == []


def test_edit_refuses_a_running_task(ws):
    t = ws.queue.add("t", "x")
    ws.queue.claim("w1")
    with pytest.raises(Refused, match="running"):
        ws.queue.edit(t.id, priority=3)


def test_cli_hold_edit_release(mavps, tmp_path):
    added = mavps.json("task", "add", "draft", "--template", "task-instructions", "--hold")
    tid = str(added["id"])
    assert added["held"] is True
    mavps("claim", "--worker", "w1", code=3)  # nothing claimable: the draft is held
    spec = tmp_path / "spec.md"
    spec.write_text("# Do the thing\nprecisely\n")
    out = mavps("task", "edit", tid, "--instructions-file", str(spec), "--priority", "4", "--requires", "backend")
    assert f"Edited task #{tid}" in out.stdout and "held" in out.stdout
    shown = mavps.json("task", "show", tid)
    assert shown["instructions"] == spec.read_text() and shown["priority"] == 4 and shown["requires"] == ["backend"]
    assert mavps.json("task", "edit", tid, "--no-requires")["requires"] == []
    mavps("task", "release", tid)
    assert mavps.json("claim", "--worker", "w1")["id"] == int(tid)


def test_cli_edit_opens_the_editor_on_the_instructions(mavps):
    tid = str(mavps.json("task", "add", "draft", "--template", "task-instructions", "--hold")["id"])
    editor = "sed -i 's/(to be filled in: [a-z_]*)/FILLED/g'"
    mavps("task", "edit", tid, env={"EDITOR": editor, "VISUAL": editor})
    text = mavps.json("task", "show", tid)["instructions"]
    assert "FILLED" in text and "(to be filled in" not in text


def test_cli_list_and_show_say_a_task_is_held(mavps):
    mavps("task", "add", "draft", "--hold")
    assert "pending (held)" in mavps("task", "list").stdout
    assert "held: True" in mavps("task", "show", "1").stdout
    assert "held: a draft" in mavps("ready", "--blocked").stdout
