#!/usr/bin/env python3
"""How long `mavps board --html` takes on a 300-task board (knowledge/performance.md, "The HTML board").

    python tests/benchmarks/board.py              # 300 tasks, 2000 log records, 8 workers
    python tests/benchmarks/board.py --tasks 1000 --reps 3

A local workspace is written as a busy day leaves it: tasks in every status with dependencies (each task
after 0 to 3 of the 25 before it), attempts spread over two hours in the log. Timed separately: reading it
(`Workspace.board_snapshot`, local disk), the layout alone, and the page (`render.html.page`); the figure
that matters is the page, which the issue wants under a second. With `--grandalf`, the same graph is also
laid out by grandalf's SugiyamaLayout (if installed) for the comparison in knowledge/board.md.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STATUSES = ["completed"] * 5 + ["in_progress", "pending", "pending", "failed", "cancelled"]


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_workspace(path: Path, n_tasks: int, n_workers: int, n_log: int, seed: int = 7) -> dict[int, list[int]]:
    """The state files and log of a busy workspace; the dependencies by task id."""
    from mavps.models import META_FILE, QUEUE_FILE, WORKERS_FILE, Task, TaskStatus
    from mavps.store import LOG_FILE, dumps, log_line

    rng = random.Random(seed)
    start = datetime.now(timezone.utc) - timedelta(hours=2)
    path.mkdir(parents=True, exist_ok=True)
    (path / "tasks").mkdir(exist_ok=True)
    deps = {i: sorted(rng.sample(range(max(1, i - 25), i), k=min(i - 1, rng.randint(0, 3))))
            for i in range(1, n_tasks + 1)}
    workers = [f"worker-{i}" for i in range(1, n_workers + 1)]
    tasks = []
    for i in range(1, n_tasks + 1):
        t = Task(id=i, description=f"Task {i}: refactor module {i % 97} and add its tests", depends_on=deps[i],
                 status=TaskStatus(rng.choice(STATUSES)), requires=["docs"] if i % 11 == 0 else [],
                 created_at=stamp(start), created_by="bench")
        if t.status is not TaskStatus.PENDING:
            t.claimed_by, t.attempts = rng.choice(workers), 1
        tasks.append(t.to_dict())
    (path / QUEUE_FILE).write_bytes(dumps(tasks))
    (path / WORKERS_FILE).write_bytes(dumps({w: {"status": "active", "capabilities": ["python"],
                                                 "last_heartbeat": stamp(start + timedelta(hours=2))}
                                             for w in workers}))
    (path / META_FILE).write_bytes(dumps({"format": 1, "next_task_id": n_tasks + 1}))
    lines = []
    for k in range(n_log // 2):
        at = start + timedelta(seconds=7200 * k / (n_log // 2))
        tid, who = rng.randint(1, n_tasks), rng.choice(workers)
        lines.append(log_line({"timestamp": stamp(at), "agent": who, "event": "task_claimed", "task_id": tid,
                               "message": f"Claimed task #{tid}"}))
        end = rng.choice(["task_completed", "task_completed", "task_failed", "task_released"])
        lines.append(log_line({"timestamp": stamp(at + timedelta(seconds=rng.randint(5, 60))), "agent": who,
                               "event": end, "task_id": tid, "message": f"{end} #{tid}"}))
    (path / LOG_FILE).write_bytes(b"".join(lines))
    return deps


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """Median seconds over `reps` runs, and the last result."""
    times, result = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def grandalf_layout(deps: dict[int, list[int]]) -> None:
    from grandalf.graphs import Edge, Graph, Vertex
    from grandalf.layouts import SugiyamaLayout

    class View:
        w, h = 220, 64

    vs = {i: Vertex(i) for i in deps}
    for v in vs.values():
        v.view = View()
    graph = Graph(list(vs.values()), [Edge(vs[d], vs[i]) for i, ds in deps.items() for d in ds])
    for component in graph.C:
        sug = SugiyamaLayout(component)
        sug.init_all()
        sug.draw(3)


def run(args: argparse.Namespace) -> str:
    from mavps import Workspace
    from mavps.render.graph_layout import crossings, layers, layout, order
    from mavps.render.html import page

    with tempfile.TemporaryDirectory() as tmp:
        deps = write_workspace(Path(tmp) / "ws", args.tasks, args.workers, args.log)
        with Workspace.open(str(Path(tmp) / "ws")) as ws:
            read_s, snap = timed(ws.board_snapshot, args.reps)
        layout_s, _ = timed(lambda: layout(deps, deps), args.reps)
        page_s, text = timed(lambda: page(snap), args.reps)
    layered = layers(deps, deps)
    by_id = [[i for i in sorted(deps) if layered[i] == li] for li in range(max(layered.values()) + 1)]
    rows = [f"| tasks / dependencies / log records read | {args.tasks} / {sum(map(len, deps.values()))} / "
            f"{len(snap['log'])} |",
            f"| read the workspace (`board_snapshot`, local disk) | {read_s * 1000:.0f} ms |",
            f"| layout alone (layers, {layout.__module__.split('.')[-1]}) | {layout_s * 1000:.0f} ms |",
            f"| **the page (`render.html.page`, layout included)** | **{page_s * 1000:.0f} ms** |",
            f"| page size | {len(text.encode()) // 1024} KiB |",
            f"| crossings between adjacent layers, id order -> ordered | {crossings(by_id, deps)} -> "
            f"{crossings(order(layered, deps), deps)} |"]
    if args.grandalf:
        try:
            g_s, _ = timed(lambda: grandalf_layout(deps), args.reps)
            rows.append(f"| grandalf SugiyamaLayout, same graph (for comparison) | {g_s * 1000:.0f} ms |")
        except ImportError:
            rows.append("| grandalf SugiyamaLayout | not installed |")
    return "| what (median of %d) | time |\n| --- | --- |\n" % args.reps + "\n".join(rows) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--log", type=int, default=2000, help="log records written (the board reads up to 2000)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--grandalf", action="store_true", help="also time grandalf's layout of the same graph")
    print(run(ap.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
