"""`mavps plan apply`: a whole plan in one transaction, checked first, idempotent; knowledge/05's example applied."""
from __future__ import annotations

import json
import re

import pytest
import yaml
from test_cli import REPO, Mavps

from mavps import plan
from mavps.errors import InvalidInput

pytestmark = pytest.mark.usefixtures("clean_env")


def doc_example() -> str:
    """The yaml block of knowledge/05's plan section, exactly as written there."""
    text = (REPO / "knowledge" / "05-task-queue-coordination.md").read_text()
    section = text.split("## Plans", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "knowledge/05's plan section has one yaml example"
    return blocks[0]


@pytest.fixture
def mavps(target) -> Mavps:
    m = Mavps(target)
    m("init")
    return m


def test_the_documented_example_applies_in_one_transaction_and_twice_adds_nothing(ws, tmp_path, target):
    path = tmp_path / "plan.yaml"
    path.write_text(doc_example())
    items = plan.load(str(path))
    before = ws.transport.round_trips
    out = plan.apply(ws.queue, items)
    assert ws.transport.round_trips - before == 3  # the whole plan: one transaction
    assert out["added"] == 4 and [r["action"] for r in out["tasks"]] == ["add"] * 4
    ids = {r["name"]: r["id"] for r in out["tasks"]}
    tasks = {t.plan_name: t for t in ws.queue.list()}
    assert tasks["models"].depends_on == [ids["schema"]] and tasks["login-form"].depends_on == [ids["login-api"]]
    assert tasks["models"].touches == ["src/models/**"] and tasks["schema"].priority == 5
    assert "docs/schema.md" in ws.queue.instructions(tasks["schema"])
    assert [t.id for t in ws.queue.ready()] == [ids["schema"]]
    again = plan.apply(ws.queue, plan.load(str(path)))
    assert again["added"] == 0 and again["unchanged"] == 4 and len(ws.queue.list()) == 4


def test_a_changed_plan_adds_the_new_tasks_and_reports_the_rest(ws, tmp_path):
    raw = yaml.safe_load(doc_example())
    plan.apply(ws.queue, plan.parse(raw))
    raw["tasks"][0]["priority"] = 9
    raw["tasks"].append({"name": "docs", "description": "Document the login", "depends_on": ["login-form", 1]})
    out = plan.apply(ws.queue, plan.parse(raw))
    actions = {r["name"]: r["action"] for r in out["tasks"]}
    assert actions == {"schema": "changed", "models": "unchanged", "login-api": "unchanged",
                       "login-form": "unchanged", "docs": "add"}
    assert ws.queue.get(1).priority == 5  # a change is reported, not applied
    docs = next(t for t in ws.queue.list() if t.plan_name == "docs")
    assert docs.id == 5 and docs.depends_on == [1, 4]


@pytest.mark.parametrize("tasks, why", [
    ([{"name": "a", "description": "x", "depends_on": ["b"]}], "does not name"),
    ([{"name": "a", "description": "x"}, {"name": "a", "description": "y"}], "twice"),
    ([{"name": "a", "description": "x", "depends_on": ["b"]}, {"name": "b", "description": "y", "depends_on": ["a"]}],
     "circle"),
    ([{"name": "a", "description": "x", "requires": ["bad cap"]}], "capability"),
    ([{"name": "a", "description": "x", "context": ["../out"]}], "leaves the workspace"),
    ([{"name": "a", "description": "x", "colour": "red"}], "unknown key"),
    ([{"name": "a"}], "description"),
])
def test_a_bad_plan_is_refused_whole(tasks, why):
    ok = {"name": "fine", "description": "would be fine"}
    with pytest.raises(InvalidInput, match=why):
        plan.parse({"tasks": [ok, *tasks]})


def test_a_plan_depending_on_a_missing_id_writes_nothing(ws):
    with pytest.raises(InvalidInput, match="no task 42"):
        plan.apply(ws.queue, plan.parse({"tasks": [{"name": "a", "description": "x", "depends_on": [42]}]}))
    assert ws.queue.list() == []


def test_cli_dry_run_then_apply_with_an_instructions_file(mavps, tmp_path):
    (tmp_path / "spec.md").write_text("# Schema\nall of it\n")
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"tasks": [
        {"name": "schema", "description": "Design the schema", "instructions_file": "spec.md"},
        {"name": "models", "description": "Models", "depends_on": ["schema"]}]}))
    dry = mavps.json("plan", "apply", str(path), "--dry-run")
    assert dry["dry_run"] and dry["added"] == 2 and mavps.json("task", "list") == []
    assert "would add" in mavps("plan", "apply", str(path), "--dry-run").stdout
    out = mavps("plan", "apply", str(path)).stdout
    assert "2 added" in out
    assert mavps.json("task", "show", "1")["instructions"] == "# Schema\nall of it\n"
    assert json.loads(mavps("--json", "plan", "apply", str(path)).stdout)["unchanged"] == 2

