"""The CLI's one-line answers and the worker's view of a claimed task, printed with click.

Each function takes the data a command emits (what `--json` prints) and shows it to
a person; agent text goes through `literal`. click strips our colours when stdout is
not a terminal, as before.
"""
from __future__ import annotations

import shlex
from typing import Any, Callable

import click

from . import tables
from .safe import joined, literal

_EVENT_COLOURS = {"task_completed": "green", "task_failed": "red", "task_claimed": "cyan", "lease_expired": "yellow",
                  "lock_broken": "magenta", "task_added": "blue", "message": None}


def ids(values: list[Any]) -> str:
    """Task ids as `#1, #2`."""
    return ", ".join(f"#{i}" for i in values)


# ----- tasks ---------------------------------------------------------------------------
def one_task(verb: str) -> Callable[[dict], None]:
    """`Added task #3 (pending): ...`: the answer of every command that changes one task."""
    def human(t: dict) -> None:
        holder = f" by {literal(t['claimed_by'])}" if t.get("claimed_by") and t["status"] == "in_progress" else ""
        held = ", held: release it with `mavps task release " + str(t["id"]) + "`" if t.get("held") else ""
        click.echo(f"{verb} task #{t['id']} ({literal(t['status'])}{holder}{held}): {literal(t['description'])}")
    return human


def asked(t: dict) -> None:
    """`ask`: the question is recorded; what the asker does next."""
    click.echo(f"Asked on task #{t['id']}: waiting for an answer. End your turn now: the Stop hook keeps your "
               "lease and hands you the answer when it comes.")


def answered(t: dict) -> None:
    """`answer`: the answer is recorded for the asker."""
    q = (t.get("questions") or [{}])[-1]
    click.echo(f"Answered {literal(q.get('asked_by'))} on task #{t['id']}: its Stop hook hands the answer over.")


def questions(t: dict) -> None:
    """A task's questions and their answers (`task show`)."""
    for q in t.get("questions") or []:
        click.echo(f"question from {literal(q.get('asked_by'))} at {literal(q.get('asked_at'))}: "
                   f"{literal(q.get('text'))}")
        if q.get("answer") is None:
            click.echo(f"  waiting for an answer: mavps answer {t['id']} \"TEXT\"")
        else:
            click.echo(f"  answer from {literal(q.get('answered_by'))}: {literal(q.get('answer'))}")


def task_shown(d: dict) -> None:
    """`task show`: the task, its instructions, and why it cannot be read or claimed."""
    tables.task_detail(d)
    questions(d)
    for key, label in (("instructions_error", "the instructions could not be read"), ("blocked_reason", "why")):
        if d[key]:
            click.echo(f"{label}: {literal(d[key])}")


def ready(rows: list[dict], empty: str, waiting: list[dict]) -> None:
    """`ready`: the claimable tasks, then each waiting one with why (stuck ones first)."""
    from ..queue import is_stuck

    tables.tasks(rows, empty=empty)
    for r in sorted(waiting, key=lambda r: (not is_stuck(r["blocked_reason"]), r["id"])):
        click.echo(f"#{r['id']} {literal(r['blocked_reason'])}")


def claimed(d: dict, wid: str, flags: str) -> None:
    """`claim`: the task for the worker, its instructions, and the commands that finish it."""
    q = shlex.quote
    if d["already_held"]:
        click.secho(f"You already hold task #{d['id']}: here it is again (lease renewed). Finish, fail or "
                    "release it before you claim another.", bold=True)
    click.secho(f"Claimed task #{d['id']}: {literal(d['description'])}", bold=True)
    click.echo(f"attempt {d['attempts']} of {d['max_attempts']}; lease until {literal(d['lease_expires_at'])} "
               f"(renew with `mavps{flags} worker heartbeat {q(wid)}`)")
    if d.get("context_files"):
        click.echo("context files: " + ", ".join(map(literal, d["context_files"])))
    if d.get("touches"):
        click.echo("write only: " + ", ".join(map(literal, d["touches"])) + " (its touches)")
    click.echo(f"\n--- instructions ({literal(d.get('instruction_file'))}) ---")
    if d["instructions_error"]:
        click.echo(f"(the instructions could not be read: {literal(d['instructions_error'])}; the task is "
                   "still yours: ask the coordinator, or give it back with the command below)")
    else:
        click.echo(literal(d.get("instructions") or "(none)", multiline=True).rstrip("\n"))
    click.echo("--- end of instructions ---\n")
    click.echo("When done:    " + f"mavps{flags} complete {d['id']} --worker {q(wid)} --result 'what you did'")
    click.echo("If it fails:  " + f"mavps{flags} fail {d['id']} --worker {q(wid)} --error 'what went wrong'")
    click.echo("To give back: " + f"mavps{flags} release {d['id']} --worker {q(wid)}")


def waited(d: dict) -> None:
    """`wait`: each task's state, then what is still running after a timeout."""
    for r in d["tasks"]:
        why = r["error"] if r["status"] == "failed" else r["result"]
        tail = f" ({literal(why)})" if why else ""
        click.echo(f"#{r['id']} {literal(r['status'])}: {literal(r['description'])}{tail}")
    if d["timed_out"]:
        click.echo("timed out; still running: " + ids(d["still_running"]))


def listing(d: dict, long_: bool, recursive: bool) -> None:
    """`ls`: one name a line (`NAME/` a directory, `NAME@` a link, never followed); --long adds kind, size, time."""
    from ..timeutil import from_epoch, iso

    base = d["path"].strip("/")
    for e in d["entries"]:
        shown = e["path"] if recursive or not base or e["path"] == base else e["path"][len(base) + 1:]
        mark = {"dir": "/", "link": "@"}.get(e["kind"], "")
        if long_:
            size = "" if e["size"] is None else str(e["size"])
            when = iso(from_epoch(e["mtime"])) if e["mtime"] is not None else ""
            click.echo(f"{e['kind']:<5} {size:>10}  {when}  {literal(shown)}{mark}")
        else:
            click.echo(f"{literal(shown)}{mark}")
    if not d["complete"]:
        click.echo("(stopped: too many directories; list a part of the tree)")


def fetched(rows: list[dict]) -> None:
    """`get`: each file written, and each entry skipped with why."""
    for r in rows:
        if r.get("skipped"):
            click.echo(f"skipped {literal(r['path'])}: {r['skipped']}")
        else:
            click.echo(f"{literal(r['path'])} -> {literal(r['local'])} ({r['size']} bytes)")


def plan_applied(d: dict) -> None:
    """`plan apply`: one line per task of the plan, then the counts."""
    verbs = {"add": "would add" if d["dry_run"] else "added", "unchanged": "unchanged",
             "changed": "changed in the plan, not applied (use `mavps task edit`)"}
    for r in d["tasks"]:
        click.echo(f"#{r['id']} {literal(r['name'])}: {verbs[r['action']]}")
    head = "dry run: nothing written; " if d["dry_run"] else ""
    click.echo(f"{head}{d['added']} to add, {d['unchanged']} unchanged, {d['changed']} changed (not applied)"
               if d["dry_run"] else f"{d['added']} added, {d['unchanged']} unchanged, {d['changed']} changed "
               "(not applied)")


def reserved(r: dict) -> None:
    why = f" ({literal(r['reason'])})" if r.get("reason") else ""
    click.echo(f"Reserved {', '.join(map(literal, r['globs']))} for {literal(r['by'])} until "
               f"{literal(r['expires_at'])}{why} [{literal(r['id'])}]")


def unreserved(rows: list[dict]) -> None:
    for r in rows:
        click.echo(f"Unreserved {', '.join(map(literal, r['globs']))} (reserved by {literal(r['by'])})")


def reservations(rows: list[dict]) -> None:
    """`reservations`: each hold, who, until when, and the tasks it keeps waiting."""
    if not rows:
        click.echo("nothing is reserved or held now")
        return
    for r in rows:
        what = f"reservation {literal(r['id'])}" if r["kind"] == "reservation" else f"task #{r['id']}"
        why = f" ({literal(r['reason'])})" if r.get("reason") else ""
        waits = f"; waiting: {ids(r['waiting'])}" if r["waiting"] else ""
        click.echo(f"{', '.join(map(literal, r['globs']))}: {what} by {literal(r['by'])} until "
                   f"{literal(r['until'])}{why}{waits}")


def reaped(rows: list[dict]) -> None:
    click.echo(f"reaped {len(rows)} expired lease(s)" + (": " + ids([r["id"] for r in rows]) if rows else ""))


# ----- workers -------------------------------------------------------------------------
def registered(d: dict) -> None:
    click.echo(f"registered {d['id']}" + (f" ({', '.join(d['capabilities'])})" if d["capabilities"] else ""))


def heartbeat(d: dict) -> None:
    click.echo(f"{d['id']} alive; leases renewed: " + (ids(d["held_tasks"]) or "none held"))


def workers(rows: list[dict]) -> None:
    """`worker list`: the table shows one task per worker; a worker may hold more (from the queue)."""
    tables.workers(rows)
    for r in rows:
        if len(r["held_tasks"]) > 1:
            click.echo(f"{literal(r['id'])} holds {len(r['held_tasks'])} tasks: " + ids(r["held_tasks"]))


def removed(d: dict) -> None:
    click.echo(f"removed {d['id']}")


# ----- log and files -------------------------------------------------------------------
def logged(r: dict) -> None:
    click.echo(f"logged as {r['agent']}")


def log_line(r: dict) -> str:
    """One record of the comms log: written by other agents, so shown literally."""
    stamp = literal(r.get("timestamp", ""))
    stamp = stamp[11:19] if len(stamp) >= 19 else stamp
    agent = click.style(f"{literal(r.get('agent', '?')):<14}", bold=True)
    msg = literal(r.get("message", ""))
    ev = r.get("event")
    colour = _EVENT_COLOURS.get(ev, None) if isinstance(ev, str) else None
    if colour:
        msg = click.style(msg, fg=colour)
    return f"{stamp} {agent} {msg}"


def log_records(rows: list[dict]) -> None:
    for r in rows:
        click.echo(log_line(r))


def wrote(d: dict) -> None:
    click.echo(f"wrote {d['path']} ({d['size']} bytes)")


# ----- admin ---------------------------------------------------------------------------
def initialised(r: dict) -> None:
    made = ", ".join(r["created"]) if r["created"] else "nothing new (already initialised)"
    click.echo(f"workspace {r['workspace']}: created {made}")


def edited(r: dict) -> None:
    click.echo(f"{r['file']}: {'saved' if r['changed'] else 'unchanged'}")


def holder(info: dict) -> str:
    """Who holds the lock: owner.json is written by whoever took the lock, so shown literally."""
    h = info.get("holder") or {}
    return (f"{literal(h.get('owner', 'an unknown holder'))} on {literal(h.get('host', '?'))} "
            f"(pid {literal(h.get('pid', '?'))})")


def _planted(info: dict) -> str:
    if info.get("broken"):
        return (f".mavps.lock was a {info['planted']}, not a lock mavps made: removed it (as itself, "
                "never following it)")
    return (f".mavps.lock is a {info['planted']}, not a lock mavps made (another account may have "
            "planted it): `mavps unlock --force` removes it as itself, never following it")


def _held(info: dict) -> list[str]:
    age = info.get("held_for")
    held = f" for {age:.0f}s (server clock)" if age is not None else ""
    stale = " - STALE" if info.get("stale") else ""
    lines = [f"lock held by {holder(info)}{held}, lease {info['ttl']:g}s{stale}"]
    if info.get("broken"):
        lines.append("lock broken; the event is in the log")
    elif info.get("result"):
        lines.append(f"lock not broken: it was {info['result']} (someone else got there first)")
    else:
        lines.append("break it with `mavps unlock --force` only if that holder is dead")
    return lines


def unlock(info: dict) -> None:
    """`unlock`: who holds the lock (or what was planted in its place), what was broken or removed."""
    if not info["held"]:
        lines = ["the workspace lock is free"]
    elif info.get("planted"):
        lines = [_planted(info)]
    else:
        lines = _held(info)
    if info["leftovers_removed"]:
        lines.append(f"removed {len(info['leftovers_removed'])} leftover lock director(ies): "
                     + ", ".join(map(literal, info["leftovers_removed"])))
    for line in lines:
        click.echo(line)


def cleaned(r: dict) -> None:
    gone = r["temp_files_removed"] + r["lock_leftovers_removed"]
    shown = ", ".join(p if p.isprintable() else repr(p) for p in gone)
    click.echo(f"removed {len(gone)}: {shown}" if gone else "nothing to remove")


def trust_offer(info: dict) -> list[str]:
    """What `trust` shows before asking: the key offered, and whether it is already known."""
    lines = [f"{info['entry']} offers {info['key_type']} {info['fingerprint']}"]
    if info["known"] == "same":
        lines.append(f"already trusted in {info['known_hosts']}")
    return lines


# ----- the board as text (`status` into a pipe or a file: no rich, no box drawing) --------------
def _columns(head: list[str] | None, rows: list[list[str]]) -> list[str]:
    """Rows of literal cells as lines, each column as wide as its widest cell, two spaces apart."""
    table = ([head] if head else []) + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]


def _board_lines(b: dict[str, Any]) -> list[str]:
    counts = b["counts"]
    lines = [f"{literal(b['workspace'])}  {literal(b['time'])}",
             "  ".join(f"{literal(s)} {literal(counts[s])}" for s in counts)]
    if b["in_progress"]:
        rows = [[literal(r["id"]), literal(r["description"]),
                 f"{literal(r.get('claimed_by'))}{' (waiting for an answer)' if r.get('waiting_for_answer') else ''}",
                 literal(r.get("attempts", "")), "?" if r.get("lease_left") is None else f"{r['lease_left']}s"]
                for r in b["in_progress"]]
        lines += ["", "in progress", *_columns(["id", "description", "worker", "attempt", "lease left"], rows)]
    lines += [text for text, _style in tables.board_notes(b)]
    if b["workers"]:
        rows = [[literal(r["id"]), "online" if r.get("online") else "offline", literal(r.get("status")),
                 joined(r.get("capabilities")),
                 "" if r.get("current_task") is None else f"#{literal(r['current_task'])}",
                 literal(r.get("last_heartbeat"))] for r in b["workers"]]
        lines += ["", "workers", *_columns(["worker", "online", "status", "capabilities", "task", "last heartbeat"],
                                           rows)]
    if b.get("recent"):
        rows = [[literal(str(r.get("timestamp", ""))[11:19]), literal(r.get("agent", "")),
                 literal(r.get("message", ""))] for r in b["recent"]]
        lines += ["", "recent log", *_columns(None, rows)]
    return lines


def board(b: dict[str, Any]) -> None:
    """The board as plain text: what `status` prints into a pipe (rich draws it on a terminal)."""
    click.echo("\n".join(_board_lines(b)))


# ----- the board as one line (status --watch into a pipe or a file) ------------------------
def board_line(b: dict[str, Any]) -> str:
    """The board in one plain line: counts, what is ready and running, workers online (no time: two
    boards that show the same line are the same to a reader)."""
    counts = " ".join(f"{k} {v}" for k, v in b["counts"].items())
    running = ", ".join(f"#{t['id']} {literal(t['claimed_by'] or '?')}" for t in b["in_progress"]) or "-"
    online = sum(1 for w in b["workers"] if w["online"])
    blocked = ids([t["id"] for t in b["blocked"]]) or "-"
    asking = ids([q["id"] for q in b.get("questions", [])]) or "-"
    return (f"{counts} | ready {ids(b['ready']) or '-'} | running {running} | blocked {blocked}"
            f" | questions {asking} | workers {online}/{len(b['workers'])} online")


def watch_lines(fetch: Callable[[], dict[str, Any]], interval: float, max_seconds: float | None,
                sleep: Callable[[float], None] | None = None, clock: Callable[[], float] | None = None) -> int:
    """`status --watch` when stdout is not a terminal: one line per change, stamped, flushed at once
    (a live table would write nothing into a pipe, or only its last frame); the lines written."""
    import time

    sleep, clock = sleep or time.sleep, clock or time.monotonic
    end = None if max_seconds is None else clock() + max_seconds
    last, written = None, 0
    try:
        while True:
            b = fetch()
            line = board_line(b)
            if line != last:
                click.echo(f"{b['time']} {line}")
                last, written = line, written + 1
            if end is not None and clock() >= end:
                return written
            sleep(interval if end is None else max(0.0, min(interval, end - clock())))
    except KeyboardInterrupt:
        return written


# ----- the file exchange ---------------------------------------------------------------
def pulled(d: dict) -> None:
    """`pull`: the files copied and where the record is."""
    click.echo(f"pulled task #{d['task']} into {literal(d['to'])}: {len(d['files'])} file(s), "
               f"{len(d['context'])} context file(s)")
    for p in d["files"][:50]:
        click.echo(f"  {literal(p)}")
    if len(d["files"]) > 50:
        click.echo(f"  ... and {len(d['files']) - 50} more")
    for p in d.get("missing_context") or []:
        click.echo(f"context file {literal(p)} is not in the workspace", err=True)
    for p in d.get("kept_edits") or []:
        click.echo(f"your edited {literal(p)} was kept in .mavps/mine/{literal(p)}", err=True)
    click.echo(f"edit them, then `mavps push {d['task']}` (or `mavps complete {d['task']}`) from there")


def pushed(d: dict) -> None:
    """`push`: what was (or would be) written and deleted, and the conflicts of a dry run."""
    verb = "would write" if d["dry_run"] else "wrote"
    for p in d["written"]:
        click.echo(f"{verb} {literal(p)}")
    for p in d["deleted"]:
        click.echo(f"{'would delete' if d['dry_run'] else 'deleted'} {literal(p)}")
    for p in d["kept"]:
        click.echo(f"kept {literal(p)} in the workspace (removed here: push --delete to delete it)")
    for c in d["conflicts"]:
        click.echo(f"conflict: {literal(c['path'])}: {c['change']}")
    if not d["written"] and not d["deleted"]:
        click.echo(f"nothing to push for task #{d['task']}")
