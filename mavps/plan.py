"""`mavps plan apply FILE.yaml`: many tasks added in one transaction, idempotently.

The plan is checked as a whole (fields, unique names, names it depends on, circles) before
anything is written. Each task added keeps its name in the plan (`plan_name`) and a digest of
its item (`plan_digest`), and workspace.json maps names to ids, so applying the same plan again
adds nothing and a changed plan adds only its new tasks (the others are reported: unchanged, or
changed but not applied: `mavps task edit` changes a task). Names are the workspace's, not one
plan's: a second plan naming `setup` means the same task.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field, replace
from graphlib import CycleError, TopologicalSorter
from typing import Any

from . import globs, validate
from .defaults import MAX_ATTEMPTS
from .errors import InvalidInput
from .models import META_FILE, QUEUE_FILE, TASKS_DIR, Task, instruction_path
from .queue import Queue
from .rules import dependency_problem
from .state import load_meta, load_tasks, parse_json
from .store import Txn
from .workers import event

NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
KEYS = {"name", "description", "instructions", "instructions_file", "context", "requires", "touches", "priority",
        "max_attempts", "depends_on"}
#: workspace.json's map of plan names to task ids (kept when a task is archived).
NAMES_KEY = "plan_names"


@dataclass
class Item:
    """One task of a plan, checked; its dependencies as plan names and existing ids."""

    name: str
    fields: dict[str, Any]
    instructions: str | None
    after: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    digest: str = ""


def load(path: str, max_attempts: int | None = None) -> list[Item]:
    """A plan file read and checked as a whole; instructions_file paths are local, relative to the plan."""
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except OSError as exc:
        raise InvalidInput(f"cannot read the plan {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {exc}") from None
    return parse(raw, os.path.dirname(os.path.abspath(path)), path, max_attempts)


def parse(raw: Any, base: str = ".", where: str = "the plan", max_attempts: int | None = None) -> list[Item]:
    """Check a parsed plan: its items, unique names, known names, no circle. Nothing is read remotely."""
    if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), list) or not raw["tasks"]:
        raise InvalidInput(f"{where}: a plan is a mapping with a non-empty `tasks:` list (see knowledge/05)")
    unknown = sorted(set(raw) - {"tasks"})
    if unknown:
        raise InvalidInput(f"{where}: unknown top-level key(s) {', '.join(unknown)}: only `tasks:`")
    items = [_item(x, i, base, where, max_attempts) for i, x in enumerate(raw["tasks"], 1)]
    names = [it.name for it in items]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidInput(f"{where}: name(s) used twice: {', '.join(twice)}")
    for it in items:
        missing = [n for n in it.after if n not in names]
        if missing:
            raise InvalidInput(f"{where}: task {it.name!r} depends on {', '.join(map(repr, missing))}, which the "
                               "plan does not name (give an existing task's id as a number)")
    try:
        list(TopologicalSorter({it.name: it.after for it in items}).static_order())
    except CycleError as exc:
        raise InvalidInput(f"{where}: dependencies in a circle: {' -> '.join(exc.args[1])}") from None
    return items


def _item(raw: Any, number: int, base: str, where: str, max_attempts: int | None) -> Item:
    here = f"{where}: task {number}"
    if not isinstance(raw, dict):
        raise InvalidInput(f"{here}: each task is a mapping with at least `name` and `description`")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise InvalidInput(f"{here}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidInput(f"{here}: `name` must be 1-64 letters, digits, '.', '_' or '-', not {name!r}")
    here = f"{where}: task {name!r}"
    if "instructions" in raw and "instructions_file" in raw:
        raise InvalidInput(f"{here}: give `instructions` or `instructions_file`, not both")
    deps = _list(raw, "depends_on", here)
    try:
        checked = validate.task_fields(raw.get("description"), None, _list(raw, "context", here),
                                       _list(raw, "requires", here), raw.get("priority", 0), [],
                                       raw.get("max_attempts", max_attempts or MAX_ATTEMPTS))
        checked["touches"] = globs.check_all(_list(raw, "touches", here))
        ids = [validate.task_id(d) for d in deps if not isinstance(d, str)]
        text = _instructions(raw, base, here)
    except InvalidInput as exc:
        raise InvalidInput(f"{here}: {exc}") from None
    del checked["instruction_file"], checked["depends_on"]
    after = [d for d in deps if isinstance(d, str)]
    digest = hashlib.sha256(json.dumps([checked, text, sorted(after), sorted(ids)], sort_keys=True)
                            .encode("utf-8")).hexdigest()[:16]
    return Item(name, checked, text, after, ids, digest)


def _list(raw: dict, key: str, here: str) -> list:
    value = raw.get(key, [])
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, list):
        raise InvalidInput(f"{here}: `{key}` must be a list")
    return value


def _instructions(raw: dict, base: str, here: str) -> str | None:
    if "instructions_file" not in raw:
        text = raw.get("instructions")
        return None if text is None else validate.text(text, "instructions")
    path = raw["instructions_file"]
    if not isinstance(path, str) or not path:
        raise InvalidInput("`instructions_file` must be a local file's path")
    full = os.path.join(base, os.path.expanduser(path))
    try:
        with open(full, encoding="utf-8") as fh:
            return validate.text(fh.read(), "instructions")
    except OSError as exc:
        raise InvalidInput(f"cannot read instructions_file {path}: {exc.strerror}") from None


# ----- applying ---------------------------------------------------------------------
def apply(queue: Queue, items: list[Item], dry_run: bool = False, agent: str | None = None) -> dict[str, Any]:
    """Add the plan's new tasks in one transaction (three round trips), or say what that would do (two).

    The answer: each item with its action (`add`, `unchanged`, `changed`: not applied) and task id.
    """
    agent = validate.agent_name(agent or queue.agent)
    if dry_run:
        raw = queue.store.look([QUEUE_FILE, META_FILE])
        meta = load_meta(None if raw[META_FILE] is None else parse_json(META_FILE, raw[META_FILE]))
        tasks = load_tasks(None if raw[QUEUE_FILE] is None else parse_json(QUEUE_FILE, raw[QUEUE_FILE]))
        return _report(_decide(queue, items, tasks, meta)[0], True)

    def change(txn: Txn, full: int) -> dict[str, Any]:
        tasks = queue._view(txn, full)
        meta = load_meta(txn.json(META_FILE, None))
        rows, new = _decide(queue, items, tasks, meta)
        for task, text in new:
            txn.put(task.instruction_file or instruction_path(task.id),  # set above: the default path
                    (text if text is not None else f"# Task {task.id}: {task.description}\n").encode("utf-8"))
            task = replace(task, created_at=txn.stamp, created_by=agent, updated_at=txn.stamp)
            tasks.append(task)
            txn.log.append(event(txn, agent, "task_added", f"Added task #{task.id} ({task.plan_name}) from a plan: "
                                 f"{task.description[:200]}", task))
        if new:
            meta["next_task_id"] = max(t.id for t, _ in new) + 1
            names = meta.setdefault(NAMES_KEY, {})
            names.update({t.plan_name: t.id for t, _ in new})
            queue._save_window(txn, tasks, meta, full, archiving=False)  # beyond the window: to the backlog
        return _report(rows, False)

    return queue._full([QUEUE_FILE, META_FILE], change, new_files=len(items), new_dirs=[TASKS_DIR])


def _decide(queue: Queue, items: list[Item], tasks: list[Task], meta: dict[str, Any]
            ) -> tuple[list[dict[str, Any]], list[tuple[Task, str | None]]]:
    """Which items are new (with their tasks, ids given in dependency order) and what the others are."""
    by_name = {t.plan_name: t for t in tasks if t.plan_name}
    known = meta.get(NAMES_KEY) if isinstance(meta.get(NAMES_KEY), dict) else {}
    if any(it.name in known and it.name not in by_name for it in items):  # in the backlog or the archive
        by_name.update({t.plan_name: t for t in queue._elsewhere() if t.plan_name and t.plan_name not in by_name})
    next_id = max([meta.get("next_task_id", 1)] + [t.id + 1 for t in tasks])
    order = list(TopologicalSorter({it.name: it.after for it in items}).static_order())
    rank = {n: i for i, n in enumerate(order)}
    ids: dict[str, int] = {}
    rows: dict[str, dict[str, Any]] = {}
    fresh = []
    for it in sorted(items, key=lambda it: rank[it.name]):
        old = by_name.get(it.name)
        if old is not None or it.name in known:
            ids[it.name] = old.id if old is not None else int(known[it.name])
            same = old is None or old.plan_digest == it.digest
            rows[it.name] = {"name": it.name, "id": ids[it.name], "action": "unchanged" if same else "changed"}
            continue
        ids[it.name] = next_id
        next_id += 1
        fresh.append(it)
        rows[it.name] = {"name": it.name, "id": ids[it.name], "action": "add"}
    _check_ids(queue, [d for it in fresh for d in it.ids], tasks)
    new = [(Task(id=ids[it.name], **it.fields, depends_on=sorted({*it.ids, *(ids[n] for n in it.after)}),
                 instruction_file=instruction_path(ids[it.name]), plan_name=it.name, plan_digest=it.digest),
            it.instructions) for it in fresh]
    return [rows[it.name] for it in items], new


def _check_ids(queue: Queue, deps: list[int], tasks: list[Task]) -> None:
    """Existing tasks the plan depends on by id must exist and may still complete."""
    live = {t.id: t for t in tasks}
    archived: dict[int, Task] = {}
    if any(d not in live for d in deps):
        archived, backlog = queue._outside()
        live.update({i: t for i, t in backlog.items() if i not in live})
    problem = dependency_problem(deps, live, archived)
    if problem:
        raise InvalidInput(f"the plan: {problem}")


def _report(rows: list[dict[str, Any]], dry_run: bool) -> dict[str, Any]:
    count = {a: sum(1 for r in rows if r["action"] == a) for a in ("add", "unchanged", "changed")}
    return {"dry_run": dry_run, "tasks": rows, "added": count["add"], "unchanged": count["unchanged"],
            "changed": count["changed"]}
