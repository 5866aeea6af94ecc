"""`mavps demo`: the product running for real, in one command.

A coordinator (this process) adds tasks - some depending on others, some
needing a capability only one worker has, one that fails once and is retried -
and N worker *processes* (`python -m mavps.demo --worker ...`), each with its
own Workspace, register, claim, heartbeat and complete them. A board shows
progress; at the end the queue and the log are checked: every task completed
exactly once, dependencies and capabilities honoured.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .config import KEYS, Config
from .errors import Refused
from .session import open_workspace

WORK = ["Sketch the data model", "Write the parser", "Add the HTTP handler", "Write the README section",
        "Add input validation", "Write unit tests", "Wire up the CLI", "Add logging", "Profile the hot path",
        "Write the migration", "Review error messages", "Package the release"]
SPECIAL_CAP = "docs"
FAIL_ONCE = "demo_fail_once"


def plan(n_tasks: int) -> list[dict[str, Any]]:
    """The demo's tasks: index-based dependencies, every 4th needs `docs`, the 2nd fails once."""
    out = []
    for i in range(1, n_tasks + 1):
        out.append({
            "description": f"{WORK[(i - 1) % len(WORK)]} (demo {i})",
            "requires": [SPECIAL_CAP] if i % 4 == 0 else [],
            "after": [i - 1] if i % 3 == 0 else [],
            "fail_once": i == min(2, n_tasks),
        })
    return out


def worker_caps(index: int) -> list[str]:
    return ["python", SPECIAL_CAP] if index == 1 else ["python"]


def passable(config: Config) -> dict[str, Any]:
    """Settings a worker process needs to open the same workspace."""
    skip = {"worker_id", "agent", "capabilities"}
    return {k: getattr(config, k) for k in KEYS if k not in skip and config.source(k) != "default"
            and getattr(config, k) is not None}


def run_demo(config: Config, n_workers: int = 3, n_tasks: int = 12, *, keep: bool = False, timeout: float = 55.0,
             live: bool = True, out: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the demo; returns the summary (with `check.ok`). Raises MavpsError if it cannot start."""
    started = time.monotonic()
    say = out or (lambda line: print(line, flush=True))
    tmp = None
    if not config.workspace:
        tmp = tempfile.mkdtemp(prefix="mavps-demo-")
        config = config.with_values({"workspace": os.path.join(tmp, "ws")}, "mavps demo")
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[Any] = []
    try:
        with open_workspace(config, agent="coordinator") as ws:
            from .models import QUEUE_FILE

            existing = ws.store.look([QUEUE_FILE], missing_ok=True)[QUEUE_FILE]
            if existing not in (None, b"[]\n", b"[]"):
                raise Refused(f"{ws.location} (workspace from {config.source('workspace')}) already has tasks: "
                              "the demo needs a new or empty workspace; pass --workspace with a fresh directory, "
                              "or configure none for a temporary one")
            ws.init()
            ids: list[int] = []
            for p in plan(n_tasks):
                t = ws.queue.add(p["description"], f"# {p['description']}\n\nA demo task: pretend to work, then "
                                 "report.\n", requires=p["requires"], depends_on=[ids[a - 1] for a in p["after"]],
                                 extra={FAIL_ONCE: True} if p["fail_once"] else None)
                ids.append(t.id)
            ws.log.append(f"Demo: {n_tasks} tasks for {n_workers} workers", agent="coordinator")
            caps = {f"worker-{i}": worker_caps(i) for i in range(1, n_workers + 1)}
            procs, logs = spawn(config, caps)
            finished = watch(ws, procs, n_tasks, started + timeout, live, say)
            if not finished:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            codes = {wid: wait_exit(p) for wid, p in zip(caps, procs)}
            summary = verify(ws, ids, caps, codes, plan(n_tasks))
            if not finished:
                summary["check"]["ok"] = False
                summary["check"]["problems"].insert(0, f"did not finish within {timeout:g}s")
            summary["worker_output"] = {wid: tail_of(f) for wid, f in zip(caps, logs)
                                        if codes[wid] != 0 or not summary["check"]["ok"]}
            summary["board"] = write_board(ws)
            add_exchange(summary, say if live else (lambda line: None))
            summary["seconds"] = round(time.monotonic() - started, 2)
            summary["workspace"] = ws.location + (" (temporary, removed)" if tmp and not keep else "")
            return summary
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
        if tmp and not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def write_board(ws: Any) -> str:
    """The final board as one HTML page in the temp directory, beside (not inside) the workspace, so it
    outlives a temporary one; its path."""
    from .localfile import atomic_write
    from .render.html import page

    fd, path = tempfile.mkstemp(prefix="mavps-demo-board-", suffix=".html")
    os.close(fd)
    atomic_write(path, page(ws.board_snapshot()))
    return path


def spawn(config: Config, caps: dict[str, list[str]]) -> tuple[list[subprocess.Popen[bytes]], list[Any]]:
    import mavps

    root = os.path.dirname(os.path.dirname(os.path.abspath(mavps.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for k in list(env):  # the workers get their settings from --settings only
        if k.startswith("MAVPS_"):
            del env[k]
    settings = json.dumps(passable(config))
    procs, logs = [], []
    for wid, c in caps.items():
        log = tempfile.TemporaryFile()
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, "-m", "mavps.demo", "--worker", wid, "--caps", ",".join(c),
                                       "--settings", settings], env=env, stdin=subprocess.DEVNULL,
                                      stdout=log, stderr=subprocess.STDOUT))
    return procs, logs


def wait_exit(p: subprocess.Popen[bytes]) -> int:
    try:
        return p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait()


def tail_of(f: Any) -> str:
    f.seek(0)
    return f.read().decode("utf-8", "replace")[-2000:]


def watch(ws: Any, procs: list[subprocess.Popen[bytes]], n_tasks: int, deadline: float, live: bool,
          say: Callable[[str], None]) -> bool:
    """Show progress until every task is finished and every worker exited; False on timeout."""
    tty = live and sys.stdout.isatty()
    last = None
    live_view = None
    if tty:
        from rich.live import Live

        from .render import board_renderable, console

        live_view = Live(console=console(), auto_refresh=False)
        live_view.start()
    try:
        while True:
            board = ws.board(6)
            if live_view is not None:
                live_view.update(board_renderable(board), refresh=True)
            elif live:
                line = "  ".join(f"{k} {v}" for k, v in board["counts"].items())
                if line != last:
                    say(f"[{time.strftime('%H:%M:%S')}] {line}")
                    last = line
            if all(p.poll() is not None for p in procs):  # workers stop once every task is finished
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
    finally:
        if live_view is not None:
            live_view.stop()


@dataclass
class _LogFacts:
    """What the comms log says happened, by task id: completions, and where each was first claimed/completed."""

    completions: dict[int, int] = field(default_factory=dict)
    completed_at: dict[int, int] = field(default_factory=dict)
    first_claim: dict[int, int] = field(default_factory=dict)
    failures: int = 0


def _log_facts(records: list[dict[str, Any]]) -> _LogFacts:
    facts = _LogFacts()
    for pos, r in enumerate(records):
        tid = r.get("task_id")
        if r.get("event") == "task_completed":
            facts.completions[tid] = facts.completions.get(tid, 0) + 1
            facts.completed_at.setdefault(tid, pos)
        elif r.get("event") == "task_claimed":
            facts.first_claim.setdefault(tid, pos)
        elif r.get("event") == "task_failed":
            facts.failures += 1
    return facts


def _task_problems(t: Any, fail_once: bool, facts: _LogFacts, caps: dict[str, list[str]]) -> list[str]:
    """Everything wrong with one task: not completed exactly once, wrong attempts, order, or capability."""
    tid = t.id
    problems: list[str] = []
    if t.status.value != "completed":
        problems.append(f"task {tid} is {t.status.value}, not completed")
    if facts.completions.get(tid, 0) != 1:
        problems.append(f"task {tid} was completed {facts.completions.get(tid, 0)} times in the log")
    if fail_once and t.attempts != 2:
        problems.append(f"task {tid} should have needed 2 attempts, took {t.attempts}")
    claimed = facts.first_claim.get(tid)
    for dep in t.depends_on:
        if dep in facts.completed_at and claimed is not None and claimed < facts.completed_at[dep]:
            problems.append(f"task {tid} was claimed before its dependency {dep} completed")
    if t.requires and t.claimed_by and not set(t.requires) <= set(caps.get(t.claimed_by, [])):
        problems.append(f"task {tid} needs {t.requires} but {t.claimed_by} did it")
    return problems


def _run_problems(ids: list[int], facts: _LogFacts, codes: dict[str, int]) -> list[str]:
    """Completions of tasks the demo never added, and workers that did not exit cleanly."""
    problems: list[str] = []
    extra = set(facts.completions) - set(ids)
    if extra:
        problems.append(f"completions for unknown tasks {sorted(extra)}")
    problems += [f"{wid} exited with status {code}" for wid, code in codes.items() if code != 0]
    return problems


def verify(ws: Any, ids: list[int], caps: dict[str, list[str]], codes: dict[str, int],
           planned: list[dict[str, Any]]) -> dict[str, Any]:
    """Check from the queue and from the log that every task completed exactly once, in order."""
    tasks = {t.id: t for t in ws.queue.list(include_archived=True)}
    facts = _log_facts(ws.log.tail(10 ** 7))
    problems: list[str] = []
    retried = 0
    for i, tid in enumerate(ids):
        t = tasks.get(tid)
        if t is None:
            problems.append(f"task {tid} is missing from the queue")
            continue
        fail_once = planned[i]["fail_once"]
        problems += _task_problems(t, fail_once, facts, caps)
        retried += bool(fail_once and t.attempts == 2)
    problems += _run_problems(ids, facts, codes)
    per_worker = {wid: {"capabilities": c, "completed": sum(1 for t in tasks.values()
                                                             if t.claimed_by == wid and t.status.value == "completed")}
                  for wid, c in caps.items()}
    rows = [{"id": t.id, "description": t.description, "requires": t.requires, "depends_on": t.depends_on,
             "worker": t.claimed_by, "attempts": t.attempts, "status": t.status.value}
            for t in (tasks[i] for i in ids if i in tasks)]
    return {"workers": len(caps), "tasks": len(ids), "rows": rows, "per_worker": per_worker,
            "check": {"ok": not problems, "problems": problems, "completed_events": sum(facts.completions.values()),
                      "failed_events": facts.failures, "retries": retried},
            "exit_codes": codes}


# ----- the file exchange: a conflict caught --------------------------------------------
def add_exchange(summary: dict[str, Any], say: Callable[[str], None]) -> None:
    """The exchange scene's outcome in the summary; its failure fails the demo's check."""
    summary["exchange"] = exchange_scene(say)
    if not summary["exchange"]["ok"]:
        summary["check"]["ok"] = False
        summary["check"]["problems"].append("the file exchange did not catch the conflict")


def exchange_scene(say: Callable[[str], None]) -> dict[str, Any]:
    """A worker off the VPS pulls a task's file, someone edits it in the workspace meanwhile, the worker's push
    is refused with nothing written; it pulls again, merges, and the push goes through. In a temporary
    workspace of its own, so the demo's queue stays as the check expects."""
    from .errors import Conflict
    from .exchange import pull, push
    from .models import QUEUE_FILE
    from .state import dump_tasks, load_tasks

    tmp = tempfile.mkdtemp(prefix="mavps-exchange-")
    steps: list[str] = []

    def step(line: str) -> None:
        steps.append(line)
        say(f"  exchange: {line}")

    try:
        with open_workspace(Config(workspace=os.path.join(tmp, "ws")), agent="coordinator") as ws:
            ws.init()
            ws.write_file("src/greeting.py", b'GREETING = "hello"\n')
            task = ws.queue.add("Make the greeting friendlier", "# edit src/greeting.py\n")

            def touches(txn: Any) -> None:  # what `task add --touches src/**` records
                tasks = load_tasks(txn.json(QUEUE_FILE, []))
                next(t for t in tasks if t.id == task.id).touches = ["src/**"]
                txn.write(QUEUE_FILE, dump_tasks(tasks))

            ws.store.transact([QUEUE_FILE], touches)
            ws.queue.claim("remote-1")
            here = os.path.join(tmp, "remote-1")
            pull(ws.store, task.id, here, "remote-1")
            step(f"remote-1 pulled task #{task.id} (src/greeting.py) into its own directory")
            with open(os.path.join(here, "src", "greeting.py"), "ab") as fh:
                fh.write(b'FAREWELL = "goodbye"\n')
            ws.write_file("src/greeting.py", b'GREETING = "hello there"\n')
            step("meanwhile someone edited src/greeting.py in the workspace by hand")
            caught = None
            try:
                push(ws.store, task.id, here, "remote-1")
            except Conflict as exc:
                caught = exc.conflicts
                step("remote-1's push was refused, nothing written: " +
                     "; ".join(f"{c['path']}: {c['change']}" for c in exc.conflicts))
            pull(ws.store, task.id, here, "remote-1")
            with open(os.path.join(here, "src", "greeting.py"), "ab") as fh:
                fh.write(b'FAREWELL = "goodbye"\n')
            push(ws.store, task.id, here, "remote-1")
            ws.queue.complete(task.id, "remote-1", result="greeting and farewell")
            final = ws.read_file("src/greeting.py")
            step("it pulled again, merged its edit into the new version, pushed: the workspace keeps both edits")
        ok = bool(caught) and final == b'GREETING = "hello there"\nFAREWELL = "goodbye"\n'
        return {"ok": ok, "conflicts": caught or [], "steps": steps}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----- the worker process ------------------------------------------------------------
def worker_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mavps.demo", description="one mavps demo worker")
    ap.add_argument("--worker", required=True)
    ap.add_argument("--caps", default="")
    ap.add_argument("--settings", default="{}")
    ap.add_argument("--work", type=float, default=0.5, help="mean seconds of pretend work per task")
    args = ap.parse_args(argv)
    config = Config().with_values(json.loads(args.settings), "the demo")
    caps = [c for c in args.caps.split(",") if c]
    wid = args.worker
    rng = random.Random(wid)
    from .models import FINISHED, WorkerStatus

    with open_workspace(config, agent=wid) as ws:
        ws.workers.register(wid, caps)
        while True:
            task = ws.queue.claim(wid, caps)
            if task is None:
                if all(t.status in FINISHED for t in ws.queue.list()):
                    break
                time.sleep(rng.uniform(0.05, 0.15))
                continue
            time.sleep(rng.uniform(0.5, 1.0) * args.work)
            ws.queue.heartbeat(wid)
            time.sleep(rng.uniform(0.2, 0.6) * args.work)
            if task.extra.get(FAIL_ONCE) and task.attempts == 1:
                ws.queue.fail(task.id, wid, "demo: a simulated failure on the first attempt")
                continue
            ws.queue.complete(task.id, wid, result=f"done by {wid}")
        ws.workers.set_status(wid, WorkerStatus.OFFLINE, f"{wid}: all tasks finished, stopping")
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
