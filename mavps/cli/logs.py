"""`mavps log`: append a message to the comms log, read its end, or follow it."""
from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any, Callable

import click

from ..render import plain
from .app import cli
from .options import common, emit, state

if TYPE_CHECKING:  # pragma: no cover
    from ..workspace import Workspace

#: Records shown when neither --tail nor a message is given.
DEFAULT_TAIL = 20


@cli.command("log", epilog="Examples: mavps log 'API schema is in docs/api.md' --agent coordinator\n\n"
                           "mavps log --tail 50 --task 7        mavps log --follow")
@click.argument("message", required=False)
@click.option("--agent", "agent", metavar="NAME", help="Who says it / only this agent's records.")
@click.option("--tail", "tail", type=click.IntRange(0, 100000), help="Show the last N records (default 20).")
@click.option("--task", "task_id", type=int, metavar="ID", help="Only records about this task.")
@click.option("--event", metavar="NAME", help="Only records of this event (task_claimed, message, ...).")
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing new records until Ctrl-C (with --json: one JSON record per line).")
@click.option("--interval", type=click.FloatRange(0.05, 60), default=1.0, show_default=True,
              help="Seconds between polls with --follow.")
@click.option("--max-seconds", type=click.FloatRange(0), metavar="S", help="Stop following after S seconds.")
@common
def log_cmd(message: str | None, agent: str | None, tail: int | None, task_id: int | None, event: str | None,
            follow: bool, interval: float, max_seconds: float | None) -> None:
    """Append a message to the shared log, or read it."""
    if message is not None:
        if follow or tail is not None:
            raise click.UsageError("give a MESSAGE to append, or --tail/--follow to read, not both")
        ws = state().workspace(agent=agent)
        emit(ws.log.append(message, agent=agent, **({"task_id": task_id} if task_id is not None else {})),
             plain.logged)
        return
    ws = state().workspace()
    records, offset = ws.log.read_from_end(DEFAULT_TAIL if tail is None else tail, agent, event, task_id)
    if not follow:
        emit(records, plain.log_records)
        return
    from ..log import matches

    show = _follow_printer()
    for r in records:
        show(r)
    _follow(ws, offset, lambda r: matches(r, agent, event, task_id), show, interval, max_seconds)


def _follow_printer() -> Callable[[dict], None]:
    """--follow prints as records arrive: JSON Lines with --json (one document per record)."""
    if state().json:
        return lambda r: click.echo(json.dumps(r, ensure_ascii=False))
    return lambda r: click.echo(plain.log_line(r))


def _follow(ws: Workspace, offset: Any, wanted: Callable[[dict], bool], show: Callable[[dict], None],
            interval: float, max_seconds: float | None) -> None:
    """Poll the log from offset every interval seconds, until Ctrl-C or max_seconds."""
    end = None if max_seconds is None else time.monotonic() + max_seconds
    try:
        while end is None or time.monotonic() < end:
            time.sleep(interval if end is None else max(0.0, min(interval, end - time.monotonic())))
            new, offset = ws.log.since(offset)
            for r in new:
                if wanted(r):
                    show(r)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
