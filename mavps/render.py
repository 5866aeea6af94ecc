"""Human output: rich tables and colour. Imported only by commands that print them."""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"pending": "yellow", "in_progress": "cyan", "completed": "green", "failed": "bold red",
                "cancelled": "dim"}


def console() -> Console:
    """A console on the current stdout (tests swap it), wide enough for tables in pipes."""
    c = Console(highlight=False)
    if not c.is_terminal:
        c = Console(highlight=False, width=max(c.width, 120))
    return c


def _status(s: str) -> Text:
    return Text(s, style=STATUS_STYLE.get(s, ""))


def tasks_table(rows: Iterable[dict[str, Any]], title: str | None = None) -> Table:
    t = Table(title=title, show_lines=False, header_style="bold")
    for col in ("id", "status", "description", "requires", "deps", "prio", "worker", "tries"):
        t.add_column(col, justify="right" if col in ("id", "prio", "tries") else "left",
                     overflow="fold" if col == "description" else "ellipsis")
    for r in rows:
        t.add_row(str(r["id"]), _status(r["status"]), r["description"], ",".join(r.get("requires") or []),
                  ",".join(str(d) for d in r.get("depends_on") or []), str(r.get("priority", 0)),
                  r.get("claimed_by") or "", f"{r.get('attempts', 0)}/{r.get('max_attempts', '?')}")
    return t


def tasks(rows: list[dict[str, Any]], empty: str = "no tasks") -> None:
    if not rows:
        console().print(empty)
        return
    console().print(tasks_table(rows))


def task_detail(d: dict[str, Any]) -> None:
    c = console()
    c.print(Text(f"Task #{d['id']}: {d['description']}", style="bold"))
    for key in ("status", "claimed_by", "claimed_at", "lease_expires_at", "attempts", "max_attempts", "priority",
                "requires", "depends_on", "context_files", "created_by", "created_at", "completed_at", "result",
                "error", "instruction_file"):
        v = d.get(key)
        if v in (None, [], ""):
            continue
        shown = ", ".join(map(str, v)) if isinstance(v, list) else str(v)
        c.print(Text.assemble((f"{key:>17}: ", "dim"), (shown, STATUS_STYLE.get(shown, "") if key == "status" else "")))
    c.print(Text("\n--- instructions ---", style="dim"))
    c.print(d.get("instructions") or "(none)", markup=False)


def workers_table(rows: Iterable[dict[str, Any]]) -> Table:
    t = Table(header_style="bold")
    for col in ("worker", "online", "status", "capabilities", "task", "last heartbeat"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["id"], Text("online", style="green") if r.get("online") else Text("offline", style="dim"),
                  r.get("status") or "", ",".join(r.get("capabilities") or []),
                  "" if r.get("current_task") is None else f"#{r['current_task']}", r.get("last_heartbeat") or "")
    return t


def workers(rows: list[dict[str, Any]]) -> None:
    console().print(workers_table(rows) if rows else "no workers registered")


def board_renderable(b: dict[str, Any]) -> Group:
    counts = b["counts"]
    head = Text.assemble((f"{b['workspace']}  ", "bold"), (b["time"], "dim"), "\n",
                         *[part for s in counts for part in ((f"{s} {counts[s]}", STATUS_STYLE.get(s, "")), "  ")])
    parts: list[Any] = [head]
    if b["in_progress"]:
        t = Table(title="in progress", title_justify="left", header_style="bold")
        for col in ("id", "description", "worker", "attempt", "lease left"):
            t.add_column(col)
        for r in b["in_progress"]:
            left = r.get("lease_left")
            t.add_row(str(r["id"]), r["description"], r.get("claimed_by") or "", str(r.get("attempts", "")),
                      "?" if left is None else Text(f"{left}s", style="red" if left < 60 else ""))
        parts.append(t)
    if b["ready"]:
        parts.append(Text("ready: " + ", ".join(f"#{i}" for i in b["ready"]), style="yellow"))
    for f in b.get("failed", []):
        parts.append(Text(f"failed #{f['id']}: {f['description']} ({f.get('error') or 'no reason'})", style="red"))
    if b["workers"]:
        parts.append(workers_table(b["workers"]))
    if b.get("recent"):
        log = Table(title="recent log", title_justify="left", show_header=False, box=None)
        log.add_column("time", style="dim")
        log.add_column("agent", style="bold")
        log.add_column("message")
        for r in b["recent"]:
            log.add_row(str(r.get("timestamp", ""))[11:19], str(r.get("agent", "")), str(r.get("message", "")))
        parts.append(log)
    return Group(*parts)


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
    c = console()
    for r in rows:
        mark = Text("ok  ", style="green") if r["ok"] else Text("FAIL", style="bold red")
        c.print(Text.assemble(mark, " ", (f"{r['check']}: ", "bold"), r["detail"]), soft_wrap=True)
        if not r["ok"] and r.get("fix"):
            c.print(Text.assemble("      fix: ", (r["fix"], "yellow")), soft_wrap=True)


def demo_summary(s: dict[str, Any]) -> None:
    c = console()
    t = Table(title=f"mavps demo: {s['tasks']} tasks, {s['workers']} workers, {s['seconds']:.1f}s", header_style="bold")
    for col in ("task", "description", "needs", "after", "done by", "attempts", "status"):
        t.add_column(col)
    for r in s["rows"]:
        t.add_row(str(r["id"]), r["description"], ",".join(r["requires"]), ",".join(map(str, r["depends_on"])),
                  r["worker"] or "", str(r["attempts"]), _status(r["status"]))
    c.print(t)
    per = Table(title="per worker", header_style="bold")
    per.add_column("worker")
    per.add_column("capabilities")
    per.add_column("completed", justify="right")
    for w, info in s["per_worker"].items():
        per.add_row(w, ",".join(info["capabilities"]), str(info["completed"]))
    c.print(per)
    check = s["check"]
    if check["ok"]:
        c.print(Text(f"check passed: every task completed exactly once ({check['completed_events']} completions "
                     f"in the log, {check['retries']} retried after a failure)", style="bold green"))
    else:
        c.print(Text("check FAILED: " + "; ".join(check["problems"]), style="bold red"))
    c.print(Text(f"workspace: {s['workspace']}", style="dim"))
