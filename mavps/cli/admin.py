"""Looking after the workspace: `init`, `status`, `edit`, `unlock`, `cleanup`, `doctor`, `trust`, `demo`."""
from __future__ import annotations

import os
import shlex
import sys

import click

from .. import render
from ..render import plain
from .app import cli
from .options import EXIT_ERROR, common, die, emit, state

STATE_ALIASES = {
    "task-queue.json": "task-queue.json", "queue": "task-queue.json", "tasks": "task-queue.json",
    "worker-status.json": "worker-status.json", "workers": "worker-status.json",
    "workspace.json": "workspace.json", "meta": "workspace.json", "workspace": "workspace.json",
}
#: How long `mavps edit` may hold the lock (declared in owner.json so others wait, not break it).
EDIT_TTL = 1800.0


@cli.command(epilog="Example: mavps --workspace sftp://myvps/ws init")
@common
def init() -> None:
    """Create the workspace layout (idempotent: existing files are kept)."""
    emit(state().workspace().init(), plain.initialised)


@cli.command(epilog="Examples: mavps status        mavps status --watch        mavps status --json")
@click.option("--watch", is_flag=True, help="Keep refreshing the board until Ctrl-C (into a pipe or a file: "
                                           "one line per change).")
@click.option("--interval", type=click.FloatRange(0.1, 600), default=2.0, show_default=True,
              help="Seconds between refreshes with --watch.")
@click.option("--max-seconds", type=click.FloatRange(0), metavar="S", help="Stop watching after S seconds.")
@click.option("--lines", type=click.IntRange(0, 200), default=10, show_default=True, help="Recent log records shown.")
@common
def status(watch: bool, interval: float, max_seconds: float | None, lines: int) -> None:
    """The board: counts by status, tasks in progress, workers, recent log."""
    st = state()
    ws = st.workspace()
    if not watch or st.json:  # into a pipe or a file: plain text, and rich is never loaded
        emit(ws.board(lines), render.board if sys.stdout.isatty() else plain.board)
        return
    if sys.stdout.isatty():
        render.watch(lambda: ws.board(lines), interval, max_seconds)
    else:
        plain.watch_lines(lambda: ws.board(lines), interval, max_seconds)


@cli.command(epilog="Example: EDITOR=nano mavps edit queue\n\nFILE: task-queue.json (queue), "
                    "worker-status.json (workers) or workspace.json (meta).")
@click.argument("file", metavar="FILE")
@click.option("--ttl", type=click.FloatRange(30, 86400), default=EDIT_TTL, show_default=True,
              help="Longest time the lock may be held while you edit.")
@common
def edit(file: str, ttl: float) -> None:
    """Edit a state file in $EDITOR under the workspace lock; invalid results are refused.

    The lock is held while the editor runs, and owner.json declares TTL seconds so
    other agents wait instead of breaking it. Their own lock_timeout still applies:
    commands that wait longer than that fail with "lock busy", so keep edits short.
    """
    name = STATE_ALIASES.get(file) or STATE_ALIASES.get(os.path.basename(file))
    if name is None:
        raise click.BadParameter(f"{file!r}: use task-queue.json, worker-status.json or workspace.json",
                                 param_hint="FILE")
    from ..admin import edit_state

    emit(edit_state(state().workspace(), name, ttl), plain.edited)


@cli.command(epilog="Examples: mavps unlock        mavps unlock --force --yes")
@click.option("--force", is_flag=True, help="Break the lock (after confirmation).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@common
def unlock(force: bool, yes: bool) -> None:
    """Show who holds the workspace lock; --force breaks it. Also removes old leftovers."""
    ws = state().workspace()
    ws.require()
    from ..admin import LEFTOVER_AGE, break_held, cleanup_lock_leftovers, lock_info

    info = lock_info(ws.transport, ws.config.lock_ttl)
    info["leftovers_removed"] = cleanup_lock_leftovers(ws, max(LEFTOVER_AGE, ws.config.lock_timeout))
    info["broken"] = False
    if force and info["held"]:
        if not yes:
            click.confirm(f"Break the lock held by {plain.holder(info)}? Its holder's commit will be refused",
                          abort=True, err=True)
        info["result"] = break_held(ws, info)
        info["broken"] = info["result"] == "broken"
    info.pop("identity", None)
    emit(info, plain.unlock)


@cli.command(epilog="Examples: mavps cleanup        mavps cleanup --older-than 600 --json")
@click.option("--older-than", type=click.FloatRange(60), default=3600, show_default=True, metavar="SECONDS",
              help="Remove temp files older than this (server clock).")
@common
def cleanup(older_than: float) -> None:
    """Remove what crashed or interrupted commands left: temp files of puts (`.NAME.<hex>.tmp`, anywhere in
    the workspace) and old lock directories. `mavps doctor` lists them."""
    ws = state().workspace()
    ws.require()
    from ..admin import LEFTOVER_AGE, cleanup_lock_leftovers, cleanup_temp_files

    emit({"temp_files_removed": cleanup_temp_files(ws.transport, older_than),
          "lock_leftovers_removed": cleanup_lock_leftovers(ws, max(LEFTOVER_AGE, ws.config.lock_timeout))},
         plain.cleaned)


@cli.command(epilog="Example: mavps doctor --workspace sftp://myvps/ws")
@common
def doctor() -> None:
    """Check config, connection, host key, layout, files, lock and leases; a fix for each failure."""
    from ..admin import run_checks

    checks = run_checks(state().flags)
    emit(checks, render.checks)
    if not all(c["ok"] for c in checks):
        raise click.exceptions.Exit(EXIT_ERROR)


@cli.command(epilog="Examples: mavps trust myvps        mavps trust 203.0.113.5:2222 --yes")
@click.argument("host")
@click.option("--port", "-p", type=int, help="SSH port (default: from HOST, ~/.ssh/config, or 22).")
@click.option("--yes", "-y", is_flag=True, help="Add the key without asking (check the fingerprint first!).")
@click.option("--hash/--no-hash", "hashed", default=False, help="Write the host name hashed, like ssh-keyscan -H.")
@common
def trust(host: str, port: int | None, yes: bool, hashed: bool) -> None:
    """Fetch a server's host key, show its fingerprint, and add it to known_hosts after confirmation."""
    from ..trust import add_key, fetch_key

    st = state()
    info = fetch_key(host, port, st.config())
    if not st.json or not yes:  # what the key is, before anyone is asked about it (on stderr with --json)
        for line in plain.trust_offer(info):
            click.echo(line, err=st.json)
    if info["known"] == "different":
        die(f"{info['known_hosts']} has a DIFFERENT key for {info['entry']}: the server was reinstalled, or this "
            f"is an attack. If you are sure, remove the old key (`ssh-keygen -R {shlex.quote(info['entry'])} -f "
            f"{info['known_hosts']}`) and run `mavps trust` again")
    info["added"] = info["known"] != "same"
    if info["added"]:
        if not yes:
            click.confirm(f"Add this key to {info['known_hosts']}?", abort=True, err=True)
        add_key(info, hashed)
        if not st.json:
            click.echo(f"added {info['entry']} to {info['known_hosts']}")
    info.pop("key", None)
    emit(info)


@cli.command(epilog="Examples: mavps demo        mavps demo --workers 5 --tasks 20        "
                    "mavps demo --workspace sftp://myvps/ws/demo")
@click.option("--workers", "n_workers", type=click.IntRange(1, 32), default=3, show_default=True,
              help="Worker processes.")
@click.option("--tasks", "n_tasks", type=click.IntRange(1, 500), default=12, show_default=True, help="Tasks to run.")
@click.option("--keep", is_flag=True, help="Keep the temporary workspace afterwards.")
@click.option("--timeout", type=click.FloatRange(5, 3600), default=55.0, show_default=True,
              help="Give up (and fail) after this many seconds.")
@common
def demo(n_workers: int, n_tasks: int, keep: bool, timeout: float) -> None:
    """Run the whole flow for real: a coordinator, N worker processes, a live board, a check.

    Without a configured workspace it uses a temporary local one. A configured
    workspace must be new or empty (the demo never touches real state).
    """
    from ..demo import run_demo

    st = state()
    summary = run_demo(st.config(), n_workers, n_tasks, keep=keep, timeout=timeout, live=not st.json)
    emit(summary, render.demo_summary)
    if not summary["check"]["ok"]:
        raise click.exceptions.Exit(EXIT_ERROR)
