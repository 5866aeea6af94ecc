"""`mavps send` and `mavps inbox`: messages between agents (mavps.inbox)."""
from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any, Callable

import click

from ..render import literal
from .app import cli
from .options import common, emit, set_flag, state

if TYPE_CHECKING:  # pragma: no cover
    from ..inbox import Message
    from ..workspace import Workspace

#: --follow polls the inbox's sizes (one round trip) from this interval up to FOLLOW_MAX, growing by half.
FOLLOW_START = 0.5
FOLLOW_MAX = 5.0

_agent_flags = [
    click.option("--agent", metavar="NAME", expose_value=False, callback=set_flag("agent"),
                 help="Act as this agent (default: the worker id, else coordinator) [MAVPS_AGENT]."),
    click.option("--worker", metavar="ID", expose_value=False, callback=set_flag("worker_id"),
                 help="Act as this worker [MAVPS_WORKER_ID]."),
]


def _with_agent_flags(f: Callable) -> Callable:
    for option in reversed(_agent_flags):
        f = option(f)
    return f


@cli.command("send", epilog="Examples: mavps send --to worker-3 'the API moved to port 8080' --task 7\n\n"
                            "mavps send --to cap:backend 'run the migrations before testing'    "
                            "mavps send --to coordinator 'done with the schema, see docs/schema.md' --worker worker-1")
@click.argument("text")
@click.option("--to", "to", required=True, metavar="TARGET",
              help="A worker id, coordinator, cap:NAME (every worker with that capability, also later ones) or all.")
@click.option("--task", "task_id", type=int, metavar="ID", help="The task it is about.")
@_with_agent_flags
@common
def send(text: str, to: str, task_id: int | None) -> None:
    """Send a message to another agent; it reaches a Claude Code agent mid-task through its hooks."""
    ws = state().workspace()
    msg = ws.inbox.send(ws.agent, to, text, task=task_id)
    emit(msg.to_dict(), lambda m: click.echo(f"sent to {literal(m['to'])} as {literal(m['sender'])} "
                                             f"(message {m['id']})"))


@cli.command("inbox", epilog="Examples: mavps inbox --worker worker-1        mavps inbox --peek --json\n\n"
                             "mavps inbox --agent coordinator --follow")
@click.option("--peek", is_flag=True, help="Show unread messages without marking them read.")
@click.option("--follow", "-f", is_flag=True,
              help="Keep showing messages as they arrive until Ctrl-C (with --json: one JSON message per line).")
@click.option("--max-seconds", type=click.FloatRange(0), metavar="S", help="Stop following after S seconds.")
@_with_agent_flags
@common
def inbox(peek: bool, follow: bool, max_seconds: float | None) -> None:
    """Show your unread messages, oldest first, and mark them read (--peek leaves them unread)."""
    st = state()
    ws = st.workspace()
    # whose inbox: --agent A, else the worker's, else the coordinator's (its channel is `coordinator` whatever
    # name it signs the log with: `send --to coordinator` writes there)
    reader = st.flags.get("agent") or ws.config.worker_id or "coordinator"
    caps = _capabilities(ws, reader)
    read = (lambda: ws.inbox.unread(reader, caps)) if peek else (lambda: ws.inbox.take(reader, caps))
    msgs = read()
    if not follow:
        emit([m.to_dict() for m in msgs], lambda rows: _show_all(rows, reader))
        return
    show = (lambda m: click.echo(json.dumps(m.to_dict(), ensure_ascii=False))) if st.json else _show
    seen = {m.id for m in msgs}
    for m in msgs:
        show(m)
    _follow(ws, reader, caps, read, show, seen if peek else None, max_seconds)


def _capabilities(ws: Workspace, agent: str) -> list[str]:
    """A worker's capabilities: from the config when it is the configured worker, else from its record."""
    from ..errors import NotFound

    cfg = ws.config
    if agent == "coordinator":
        return []
    if agent == cfg.worker_id and cfg.capabilities:
        return list(cfg.capabilities)
    try:
        return list(ws.workers.get(agent).worker.capabilities)
    except NotFound:
        return []


def _follow(ws: Workspace, reader: str, caps: list[str], read: Callable[[], list[Message]],
            show: Callable[[Message], None], seen: set[str] | None, max_seconds: float | None) -> None:
    """Poll the channels' sizes (one round trip) with backoff; read when they grow; until Ctrl-C or the bound."""
    end = None if max_seconds is None else time.monotonic() + max_seconds
    pause, sizes = FOLLOW_START, ws.inbox.sizes(reader, caps)
    try:
        while end is None or time.monotonic() < end:
            time.sleep(pause if end is None else max(0.0, min(pause, end - time.monotonic())))
            now = ws.inbox.sizes(reader, caps)
            if now == sizes:
                pause = min(pause * 1.5, FOLLOW_MAX)
                continue
            sizes, pause = now, FOLLOW_START
            for m in read():
                if seen is None or m.id not in seen:
                    show(m)
                    if seen is not None:
                        seen.add(m.id)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


def _show(m: Message) -> None:
    """One message for a person: a header line, then its text indented (so it cannot fake a header)."""
    about = f" (task #{m.task})" if m.task is not None else ""
    kind = f" [{literal(m.kind)}]" if m.kind != "message" else ""
    click.echo(click.style(f"{literal(m.at)} {literal(m.sender)} -> {literal(m.to)}{about}{kind}", bold=True))
    for line in literal(m.text, multiline=True).split("\n"):
        click.echo(f"  {line}")


def _show_all(rows: list[dict[str, Any]], reader: str) -> None:
    from ..inbox import Message

    if not rows:
        click.echo(f"no unread messages for {literal(reader)}")
    for row in rows:
        _show(Message.from_dict(row))
