"""The board as one self-contained HTML page: task graph, timeline, workers, newest log records, counts.

No request ever leaves the page: no script at all, one inline style allowed by its hash, and a
Content-Security-Policy of `default-src 'none'` that forbids everything else, so even text that escaped
its escaping could neither run nor fetch. Every text from the workspace goes through `literal` (control
characters made visible) and then `html.escape` (`<`, `>`, `&` and both quotes), clipped before escaping.
`--watch` pages reload themselves by `<meta http-equiv="refresh">`, which needs no script.

Input: `Workspace.board_snapshot()` (the board plus every live task and the log's newest records); this
module does no I/O.
"""
from __future__ import annotations

import base64
import hashlib
import html
from datetime import datetime
from typing import Any, Iterable

from ..timeutil import parse, utcnow
from .graph_layout import layout
from .safe import literal
from .timeline import Timeline, timeline

NODE_W, NODE_H = 220, 64
LANE_H, LANE_LABEL, TIMELINE_W = 26, 140, 1100
STATUSES = ("pending", "held", "blocked", "in_progress", "completed", "failed", "cancelled")

STYLE = """
body{font:13px system-ui,sans-serif;margin:16px;color:#1d2430;background:#f7f8fa}
h1{font-size:18px;margin:0 0 4px}h2{font-size:15px;margin:22px 0 6px}
.meta{color:#5b6472}.scroll{overflow:auto;max-height:80vh;border:1px solid #d5d9e0;background:#fff}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #d5d9e0;padding:3px 7px;text-align:left;
vertical-align:top}th{background:#eef0f4}td.msg{max-width:60em;overflow-wrap:anywhere}
.counts span{display:inline-block;margin:0 6px 6px 0;padding:4px 9px;border-radius:10px;background:#e4e7ec}
.counts b{margin-left:4px}
svg text{font:11px ui-monospace,monospace;fill:#1d2430}svg text.h{font-weight:bold}
.node rect{stroke:#4a5363;stroke-width:1}.node.ghost rect{fill:#fff;stroke-dasharray:4 3}
.st-pending rect,.c-pending{fill:#f6e3a1;background:#f6e3a1}.st-held rect,.c-held{fill:#dcdcdc;background:#dcdcdc}
.st-held rect{stroke-dasharray:5 3}.st-blocked rect,.c-blocked{fill:#f7c08a;background:#f7c08a}
.st-blocked rect{stroke:#c0392b;stroke-width:2}
.st-in_progress rect,.c-in_progress{fill:#a8dcf5;background:#a8dcf5}
.st-completed rect,.c-completed{fill:#b5e6c6;background:#b5e6c6}
.st-failed rect,.c-failed{fill:#f4a6a6;background:#f4a6a6}
.st-cancelled rect,.c-cancelled{fill:#c9ccd1;background:#c9ccd1}
.edge{fill:none;stroke:#8792a2;stroke-width:1.2}.edge.done{stroke:#3f9e62}.edge.dead{stroke:#c0392b}
.lane{fill:#f1f3f6}.lane.odd{fill:#e8ebf0}.bar{stroke:#4a5363;stroke-width:.6}
.o-running{fill:#a8dcf5}.o-completed{fill:#6fcf97}.o-failed{fill:#eb5757}.o-released{fill:#dcdcdc}
.o-expired{fill:#f2994a}.o-cancelled{fill:#9aa0a8}.mk-lock{fill:#c0392b}.mk-message{fill:#2f6fdf}
.axis{stroke:#8792a2}
"""
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode("utf-8")).digest()).decode("ascii")
#: Nothing may load or run but the one style above; meta refresh is a navigation, not a fetch.
CSP = (f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; img-src 'none'; script-src 'none'; "
       "base-uri 'none'; form-action 'none'")


def esc(value: object, limit: int | None = None) -> str:
    """Agent text for HTML: control characters shown as escapes, clipped to `limit` characters, escaped."""
    text = literal(value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return html.escape(text, quote=True)


def page(snap: dict[str, Any], refresh: float | None = None) -> str:
    """The whole page for a `Workspace.board_snapshot()`; with `refresh`, it reloads itself that often."""
    now = parse(snap.get("time")) or utcnow()
    tasks = snap.get("tasks", [])
    reasons = {r["id"]: r["reason"] for r in [*snap.get("blocked", []), *snap.get("waiting", [])]}
    reasons.update({q["id"]: f"waits for an answer: {literal(q.get('text'))}" for q in snap.get("questions", [])})
    stuck = {r["id"] for r in snap.get("blocked", [])}
    reload = f'<meta http-equiv="refresh" content="{max(1, round(refresh))}">' if refresh else ""
    workers = [w["id"] for w in snap.get("workers", [])]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">', reload,
        f"<title>mavps board: {esc(snap.get('workspace'), 80)}</title>", f"<style>{STYLE}</style></head><body>",
        f"<h1>mavps board</h1><div class=\"meta\">{esc(snap.get('workspace'))} · {esc(snap.get('time'))}"
        + (f" · reloads every {max(1, round(refresh))} s" if refresh else "") + "</div>",
        counts(snap, tasks, stuck),
        "<h2>Tasks and dependencies</h2>", graph(tasks, reasons, stuck),
        "<h2>Timeline</h2>", timeline_svg(timeline(snap.get("log", []), now, workers)),
        "<h2>Workers</h2>", workers_table(snap.get("workers", []), tasks, now),
        reservations_table(snap.get("reservations", [])),
        "<h2>Newest log records</h2>", log_table(snap.get("recent", [])),
        "<h2>Every task</h2>", task_table(tasks, reasons, stuck),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def shown_status(task: dict[str, Any], stuck: set[int]) -> str:
    """The status a node is coloured by: pending splits into held, blocked (someone must act) and pending."""
    status = str(task.get("status", "pending"))
    if status == "pending" and task.get("held"):
        return "held"
    if status == "pending" and task.get("id") in stuck:
        return "blocked"
    return status if status in STATUSES else "pending"


def counts(snap: dict[str, Any], tasks: list[dict[str, Any]], stuck: set[int]) -> str:
    shown: dict[str, int] = {s: 0 for s in STATUSES}
    for t in tasks:
        shown[shown_status(t, stuck)] += 1
    online = sum(1 for w in snap.get("workers", []) if w.get("online"))
    cells = [f'<span class="c-{s}" data-count="{s}">{s}<b>{n}</b></span>' for s, n in shown.items()]
    cells += [f'<span data-count="ready">ready to claim<b>{len(snap.get("ready", []))}</b></span>',
              f'<span data-count="workers">workers online<b>{online}/{len(snap.get("workers", []))}</b></span>']
    return '<div class="counts">' + "".join(cells) + "</div>"


# ----- the task graph --------------------------------------------------------------------------------
def _deps(task: dict[str, Any]) -> list[int]:
    return [d for d in task.get("depends_on") or [] if isinstance(d, int)]


def _node_lines(t: dict[str, Any], status: str, reason: str | None) -> list[str]:
    who = f" · {literal(t['claimed_by'])}" if t.get("claimed_by") and status != "pending" else ""
    lines = [f"#{t['id']} {status}{who}", literal(t.get("description"))]
    extra = []
    if t.get("requires"):
        extra.append("needs " + ",".join(literal(c) for c in t["requires"]))
    if t.get("touches"):
        extra.append("touches " + ",".join(literal(c) for c in t["touches"]))
    lines.append(" · ".join(extra))
    if reason:
        lines.append(reason)
    elif status in ("in_progress", "failed"):
        lines.append(f"attempt {t.get('attempts', 0)} of {t.get('max_attempts', '?')}")
    return lines


def graph(tasks: list[dict[str, Any]], reasons: dict[int, str], stuck: set[int]) -> str:
    """The dependency graph as SVG: a node per task (and a dashed one per dependency not in the queue)."""
    by_id = {t["id"]: t for t in tasks}
    deps = {t["id"]: _deps(t) for t in tasks}
    ghosts = sorted({d for ds in deps.values() for d in ds if d not in by_id})
    lay = layout([*by_id, *ghosts], deps, node_w=NODE_W, node_h=NODE_H)
    out = [f'<div class="scroll"><svg xmlns="http://www.w3.org/2000/svg" id="graph" width="{lay.width + 20:.0f}" '
           f'height="{lay.height + 20:.0f}"><g transform="translate(10,10)">']
    for tid, ds in deps.items():
        for d in ds:
            out.append(_edge(d, tid, lay.boxes, by_id.get(d)))
    for g in ghosts:
        b = lay.boxes[g]
        out.append(f'<g class="node ghost" data-ghost-id="{g}"><title>#{g}: not in the queue (archived, or '
                   f'missing)</title><rect x="{b.x:.0f}" y="{b.y:.0f}" width="{b.w:.0f}" height="{b.h:.0f}" rx="6"/>'
                   f'<text x="{b.x + 8:.0f}" y="{b.y + 18:.0f}">#{g} not in the queue</text></g>')
    for tid, t in by_id.items():
        out.append(_node(t, lay.boxes[tid], shown_status(t, stuck), reasons.get(tid)))
    out.append("</g></svg></div>")
    return "".join(out)


def _edge(d: int, tid: int, boxes: dict[int, Any], dep: dict[str, Any] | None) -> str:
    a, b = boxes[d], boxes[tid]
    x1, y1, x2, y2 = a.x + a.w, a.y + a.h / 2, b.x, b.y + b.h / 2
    if x2 <= x1:  # a dependency in a circle: drawn back over the top
        path = f"M{x1:.0f},{y1:.0f} C{x1 + 60:.0f},{y1 - 80:.0f} {x2 - 60:.0f},{y2 - 80:.0f} {x2:.0f},{y2:.0f}"
    else:
        mid = (x1 + x2) / 2
        path = f"M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
    status = (dep or {}).get("status")
    kind = " done" if status == "completed" else " dead" if status in ("failed", "cancelled", None) else ""
    return f'<path class="edge{kind}" data-from="{d}" data-to="{tid}" d="{path}"/>'


def _node(t: dict[str, Any], b: Any, status: str, reason: str | None) -> str:
    lines = _node_lines(t, status, reason)
    full = "\n".join(x for x in lines if x)
    texts = "".join(f'<text{HEAD if i == 0 else ""} x="{b.x + 7:.0f}" y="{b.y + 15 + 14 * i:.0f}">'
                    f"{html.escape(_clip(line, 31))}</text>" for i, line in enumerate(lines) if line)
    return (f'<g class="node st-{status}" data-task-id="{t["id"]}" data-status="{status}"><title>'
            f'{html.escape(full)}</title><rect x="{b.x:.0f}" y="{b.y:.0f}" width="{b.w:.0f}" height="{b.h:.0f}" '
            f'rx="6"/>{texts}</g>')


HEAD = ' class="h"'


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----- the timeline ----------------------------------------------------------------------------------
def _clock(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S") if moment else ""


def timeline_svg(tl: Timeline) -> str:
    """One lane per worker, a bar per attempt, a mark per lock break or message."""
    if tl.start is None or not tl.lanes:
        return '<p class="meta">No attempts in the log yet.</p>'
    span = max((tl.end - tl.start).total_seconds(), 1.0)
    plot = TIMELINE_W - LANE_LABEL - 10

    def x(m: datetime) -> float:
        return LANE_LABEL + (m - tl.start).total_seconds() / span * plot  # type: ignore[operator]

    lane_y = {name: 20 + i * LANE_H for i, name in enumerate(tl.lanes)}
    height = 20 + len(tl.lanes) * LANE_H + 22
    out = [f'<div class="scroll"><svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{TIMELINE_W}" '
           f'height="{height}">']
    for i, (name, y) in enumerate(lane_y.items()):
        out.append(f'<g class="lane-row" data-lane="{esc(name)}"><rect class="lane{" odd" if i % 2 else ""}" x="0" '
                   f'y="{y}" width="{TIMELINE_W}" height="{LANE_H}"/><text x="4" y="{y + 17}">{esc(name, 18)}'
                   "</text></g>")
    for a in tl.attempts:
        end = a.end or tl.end
        x1, x2 = x(a.start), max(x(end), x(a.start) + 3)
        y = lane_y[a.lane] + 4
        tip = f"#{a.task} {a.outcome}: {esc(a.lane)} {_clock(a.start)}–{_clock(end)}" + (" (claimed earlier)"
                                                                                         if a.cut else "")
        label = f'<text x="{x1 + 3:.1f}" y="{y + 13}">#{a.task}</text>' if x2 - x1 > 30 else ""
        out.append(f'<g class="attempt" data-task-id="{a.task}" data-outcome="{a.outcome}"><title>{tip}</title>'
                   f'<rect class="bar o-{a.outcome}" x="{x1:.1f}" y="{y}" width="{x2 - x1:.1f}" height="{LANE_H - 8}"'
                   f' rx="3"/>{label}</g>')
    for m in tl.marks:
        cx, cy = x(m.at), lane_y[m.lane] + LANE_H / 2
        out.append(f'<g class="mark" data-kind="{m.kind}"><title>{_clock(m.at)} {esc(m.kind)}: {esc(m.text, 300)}'
                   f'</title><path class="mk-{m.kind}" d="M{cx:.1f},{cy - 7:.1f} l6,7 l-6,7 l-6,-7 z"/></g>')
    base = 20 + len(tl.lanes) * LANE_H
    out.append(f'<line class="axis" x1="{LANE_LABEL}" y1="{base}" x2="{TIMELINE_W - 10}" y2="{base}"/>'
               f'<text x="{LANE_LABEL}" y="{base + 15}">{_clock(tl.start)}</text>'
               f'<text x="{TIMELINE_W - 70}" y="{base + 15}">{_clock(tl.end)}</text></svg></div>')
    return "".join(out)


# ----- tables ------------------------------------------------------------------------------------------
def _table(head: Iterable[str], rows: Iterable[str], ident: str) -> str:
    return (f'<table id="{ident}"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows)
            + "</table>")


def _age(stamp: object, now: datetime) -> str:
    moment = parse(stamp)
    if moment is None:
        return "never"
    seconds = max(0, round((now - moment).total_seconds()))
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago" if seconds < 7200 \
        else f"{seconds // 3600} h ago"


def workers_table(workers: list[dict[str, Any]], tasks: list[dict[str, Any]], now: datetime) -> str:
    done: dict[str, int] = {}
    for t in tasks:
        if t.get("status") == "completed" and t.get("claimed_by"):
            done[t["claimed_by"]] = done.get(t["claimed_by"], 0) + 1
    rows = []
    for w in workers:
        state = str(w.get("status")) + (" (heartbeat overdue)" if w.get("status") == "active" and not w.get("online")
                                        else "")
        current = w.get("current_task")
        rows.append(f'<tr data-worker="{esc(w["id"])}"><td>{esc(w["id"])}</td><td>{esc(state)}</td>'
                    f'<td>{esc(", ".join(literal(c) for c in w.get("capabilities") or []))}</td>'
                    f'<td>{esc(_age(w.get("last_heartbeat"), now))}</td>'
                    f'<td>{"" if current is None else "#" + esc(current)}</td><td>{done.get(w["id"], 0)}</td></tr>')
    return _table(["worker", "status", "capabilities", "heartbeat", "current task", "tasks done"], rows, "workers")


def reservations_table(reservations: list[dict[str, Any]]) -> str:
    """Paths held by hand (`mavps reserve`): tasks touching them wait. Nothing when there are none."""
    if not reservations:
        return ""
    rows = [f"<tr><td>{esc(', '.join(literal(g) for g in r.get('globs') or []))}</td><td>{esc(r.get('by'))}</td>"
            f"<td>{esc(r.get('until'))}</td><td class=\"msg\">{esc(r.get('reason'), 500)}</td></tr>"
            for r in reservations]
    return "<h2>Reservations</h2>" + _table(["paths", "by", "until", "reason"], rows, "reservations")


def log_table(records: list[dict[str, Any]]) -> str:
    rows = [f"<tr><td>{esc(r.get('timestamp'))}</td><td>{esc(r.get('agent'))}</td><td>{esc(r.get('event'))}</td>"
            f"<td>{'' if r.get('task_id') is None else '#' + esc(r.get('task_id'))}</td>"
            f"<td class=\"msg\">{esc(r.get('message'), 500)}</td></tr>" for r in reversed(records)]
    return _table(["time", "agent", "event", "task", "message"], rows, "log")


def task_table(tasks: list[dict[str, Any]], reasons: dict[int, str], stuck: set[int]) -> str:
    rows = []
    for t in tasks:
        status = shown_status(t, stuck)
        deps = ", ".join(f"#{d}" for d in _deps(t))
        rows.append(f'<tr data-task-id="{t["id"]}"><td>#{t["id"]}</td><td class="c-{status}">{status}</td>'
                    f'<td class="msg desc">{esc(t.get("description"))}</td><td>{deps}</td>'
                    f'<td>{esc(", ".join(literal(c) for c in t.get("requires") or []))}</td>'
                    f'<td>{esc(t.get("claimed_by"))}</td><td class="msg">{esc(reasons.get(t["id"]) or t.get("error"))}'
                    "</td></tr>")
    return '<details open><summary>' + f"{len(tasks)} tasks</summary>" + _table(
        ["id", "status", "description", "after", "needs", "worker", "why waiting / error"], rows, "tasks") + \
        "</details>"
