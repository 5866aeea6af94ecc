"""The rich renderers: tables of tasks and workers, the board (once or live), the doctor's checks, the demo.

Every value that came from the workspace goes through `cell`/`literal` (see safe.py);
rich is imported inside the functions, so importing this module stays light.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .safe import STATUS_STYLE, cell, console, joined, literal, status_cell

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table


def tasks_table(rows: Iterable[dict[str, Any]], title: str | None = None) -> Table:
    from rich.table import Table

    t = Table(title=title, show_lines=False, header_style="bold")
    for col in ("id", "status", "description", "requires", "deps", "prio", "worker", "tries"):
        t.add_column(col, justify="right" if col in ("id", "prio", "tries") else "left",
                     overflow="fold" if col == "description" else "ellipsis")
    for r in rows:
        status = f"{r['status']} (held)" if r.get("held") else r["status"]
        t.add_row(cell(r["id"]), status_cell(status), cell(r["description"]), cell(joined(r.get("requires"))),
                  cell(joined(r.get("depends_on"))), cell(r.get("priority", 0)), cell(r.get("claimed_by")),
                  cell(f"{literal(r.get('attempts', 0))}/{literal(r.get('max_attempts', '?'))}"))
    return t


def tasks(rows: list[dict[str, Any]], empty: str = "no tasks") -> None:
    if not rows:
        console().print(empty, markup=False)
        return
    console().print(tasks_table(rows))


def task_detail(d: dict[str, Any]) -> None:
    from rich.text import Text

    c = console()
    c.print(cell(f"Task #{literal(d['id'])}: {literal(d['description'])}", "bold"))
    for key in ("status", "claimed_by", "claimed_at", "lease_expires_at", "attempts", "max_attempts", "priority",
                "requires", "depends_on", "context_files", "created_by", "created_at", "completed_at", "result",
                "error", "instruction_file", "held", "touches", "plan_name"):
        v = d.get(key)
        if v in (None, [], ""):
            continue
        shown = ", ".join(map(literal, v)) if isinstance(v, list) else literal(v)
        style = STATUS_STYLE.get(shown, "") if key == "status" else ""
        if key == "status" and d.get("waiting_for_answer"):
            shown += " (waiting for an answer)"
        c.print(Text.assemble((f"{key:>17}: ", "dim"), (shown, style)))
    c.print(Text("\n--- instructions ---", style="dim"))
    c.print(cell(d.get("instructions") or "(none)", multiline=True))


def workers_table(rows: Iterable[dict[str, Any]]) -> Table:
    from rich.table import Table
    from rich.text import Text

    t = Table(header_style="bold")
    for col in ("worker", "online", "status", "capabilities", "task", "last heartbeat"):
        t.add_column(col)
    for r in rows:
        t.add_row(cell(r["id"]), Text("online", style="green") if r.get("online") else Text("offline", style="dim"),
                  cell(r.get("status")), cell(joined(r.get("capabilities"))),
                  cell("" if r.get("current_task") is None else f"#{literal(r['current_task'])}"),
                  cell(r.get("last_heartbeat")))
    return t


def workers(rows: list[dict[str, Any]]) -> None:
    if rows:
        console().print(workers_table(rows))
    else:
        console().print("no workers registered", markup=False)


def board_renderable(b: dict[str, Any]) -> Group:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    counts = b["counts"]
    head = Text.assemble((f"{literal(b['workspace'])}  ", "bold"), (literal(b["time"]), "dim"), "\n",
                         *[part for s in counts for part in ((f"{literal(s)} {literal(counts[s])}",
                                                              STATUS_STYLE.get(s, "")), "  ")])
    parts: list[Any] = [head]
    if b["in_progress"]:
        t = Table(title="in progress", title_justify="left", header_style="bold")
        for col in ("id", "description", "worker", "attempt", "lease left"):
            t.add_column(col)
        for r in b["in_progress"]:
            left = r.get("lease_left")
            asking = " (waiting for an answer)" if r.get("waiting_for_answer") else ""
            t.add_row(cell(r["id"]), cell(r["description"]), cell(f"{literal(r.get('claimed_by'))}{asking}"),
                      cell(r.get("attempts", "")),
                      "?" if left is None else Text(f"{left}s", style="red" if left < 60 else ""))
        parts.append(t)
    parts += _board_notes(b)
    if b["workers"]:
        parts.append(workers_table(b["workers"]))
    if b.get("recent"):
        log = Table(title="recent log", title_justify="left", show_header=False, box=None)
        log.add_column("time", style="dim")
        log.add_column("agent", style="bold")
        log.add_column("message")
        for r in b["recent"]:
            log.add_row(cell(str(r.get("timestamp", ""))[11:19]), cell(r.get("agent", "")), cell(r.get("message", "")))
        parts.append(log)
    return Group(*parts)


def _board_notes(b: dict[str, Any]) -> list[Any]:
    return [cell(text, style) for text, style in board_notes(b)]


def board_notes(b: dict[str, Any]) -> list[tuple[str, str]]:
    """The board's one-line notes, literal, with their style: questions waiting, ready tasks, what waits for
    paths, reservations, failures (no rich here: the plain board prints them too)."""
    notes: list[tuple[str, str]] = []
    for q in b.get("questions", []):
        notes.append((f"question on #{literal(q['id'])} from {literal(q.get('asked_by'))}: "
                      f"{literal(q.get('text'))}  (answer: mavps answer {literal(q['id'])} \"...\")", "magenta"))
    if b["ready"]:
        notes.append(("ready: " + ", ".join(f"#{literal(i)}" for i in b["ready"]), "yellow"))
    for w in b.get("waiting", []):
        if " held by #" in str(w.get("reason")) or " reserved by " in str(w.get("reason")):
            notes.append((f"#{literal(w['id'])} {literal(w['reason'])}", "dim"))
    for r in b.get("reservations", []):
        why = f" ({literal(r['reason'])})" if r.get("reason") else ""
        notes.append((f"reserved: {', '.join(map(literal, r['globs']))} by {literal(r['by'])} until "
                      f"{literal(r['until'])}{why}", "magenta"))
    for f in b.get("failed", []):
        notes.append((f"failed #{literal(f['id'])}: {literal(f['description'])} "
                      f"({literal(f.get('error') or 'no reason')})", "red"))
    return notes


def board(b: dict[str, Any]) -> None:
    console().print(board_renderable(b))


def watch(fetch: Callable[[], dict[str, Any]], interval: float, max_seconds: float | None) -> None:
    """Refresh the board until Ctrl-C (or max_seconds)."""
    from rich.live import Live

    end = None if max_seconds is None else time.monotonic() + max_seconds
    c = console()
    try:
        with Live(board_renderable(fetch()), console=c, auto_refresh=False, transient=False) as live:
            while end is None or time.monotonic() < end:
                time.sleep(interval if end is None else max(0.0, min(interval, end - time.monotonic())))
                live.update(board_renderable(fetch()), refresh=True)
    except KeyboardInterrupt:
        pass


def checks(rows: list[dict[str, Any]]) -> None:
    """The doctor's checks: their details quote the workspace (a lock holder's name, directory names)."""
    from rich.text import Text

    c = console()
    for r in rows:
        mark = Text("ok  ", style="green") if r["ok"] else Text("FAIL", style="bold red")
        c.print(Text.assemble(mark, " ", (f"{literal(r['check'])}: ", "bold"), literal(r["detail"])), soft_wrap=True)
        if not r["ok"] and r.get("fix"):
            c.print(Text.assemble("      fix: ", (literal(r["fix"]), "yellow")), soft_wrap=True)


def demo_summary(s: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    c = console()
    t = Table(title=f"mavps demo: {s['tasks']} tasks, {s['workers']} workers, {s['seconds']:.1f}s", header_style="bold")
    for col in ("task", "description", "needs", "after", "done by", "attempts", "status"):
        t.add_column(col)
    for r in s["rows"]:
        t.add_row(cell(r["id"]), cell(r["description"]), cell(joined(r["requires"])), cell(joined(r["depends_on"])),
                  cell(r["worker"]), cell(r["attempts"]), status_cell(r["status"]))
    c.print(t)
    per = Table(title="per worker", header_style="bold")
    per.add_column("worker")
    per.add_column("capabilities")
    per.add_column("completed", justify="right")
    for w, info in s["per_worker"].items():
        per.add_row(cell(w), cell(joined(info["capabilities"])), cell(info["completed"]))
    c.print(per)
    check = s["check"]
    if check["ok"]:
        c.print(Text(f"check passed: every task completed exactly once ({check['completed_events']} completions "
                     f"in the log, {check['retries']} retried after a failure)", style="bold green"))
    else:
        c.print(cell("check FAILED: " + "; ".join(map(literal, check["problems"])), "bold red"))
    c.print(cell(f"workspace: {literal(s['workspace'])}", "dim"))
    if s.get("board"):
        c.print(cell(f"board: {literal(s['board'])} (open it in a browser)", "bold"))
