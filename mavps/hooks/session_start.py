"""The SessionStart hook: register a worker (or read the board for a coordinator), give the role's context.

A new session starts its idle time afresh: the session record written here is
what the Stop hook counts idle time from, not a registration long ago.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Mapping

from ..config import Config
from ..errors import MavpsError
from . import texts
from .options import HookOptions, bounded
from .protocol import HookAnswer
from .session import SessionRecord, SessionState


def session_start_hook(input: Mapping[str, Any], config: Config, role: str | None = None,
                       options: HookOptions | None = None,
                       open_workspace: Callable[..., Any] | None = None) -> HookAnswer:
    """Register a worker (capabilities from config) and give the role's instructions as context."""
    opts = options or HookOptions()
    role = role or ("worker" if config.worker_id else "coordinator")
    if open_workspace is None:
        from ..workspace import Workspace

        open_workspace = Workspace.open
    session_id = str(input.get("session_id") or "no-session")
    msgs: list[Any] = []
    location, board, problem, message = _visit(role, config, opts, open_workspace, session_id, msgs)
    if role == "worker":
        text = texts.worker_context(config.worker_id, location, list(config.capabilities))
        if problem and config.worker_id:
            text += texts.unreachable_note(problem)
    else:
        text = texts.coordinator_context(location, board, problem)
    if msgs:
        text += "\n\n" + texts.messages_block(msgs)
    return HookAnswer(event="SessionStart", context=text, outcome="context", message=message,
                      notice=message if problem and message else None)


def _visit(role: str, config: Config, opts: HookOptions, open_workspace: Callable[..., Any],
           session_id: str, msgs: list[Any]) -> tuple[str | None, dict[str, Any] | None, str | None, str]:
    """One short visit to the workspace: (location, board, problem, stderr line); unread messages taken
    into `msgs`."""
    if role == "worker" and not config.worker_id:
        return config.workspace, None, texts.no_worker_id(), ""
    ws = None
    try:
        ws = open_workspace(config=bounded(config), agent=config.worker_id or config.agent or "coordinator")
        if role != "worker":
            board = ws.board()
            with contextlib.suppress(MavpsError, OSError):  # where the coordinator's Stop hook reads news from
                from .coordinator import mark_start

                mark_start(ws, SessionState(opts.state_path), session_id, time.time())
            _take_messages(ws, "coordinator", [], msgs)
            return ws.location, board, None, ""
        assert config.worker_id
        w = ws.workers.register(config.worker_id, list(config.capabilities))
        with contextlib.suppress(OSError):
            SessionState(opts.state_path).put(session_id, SessionRecord(
                worker=w.id, started=w.last_heartbeat, blocks=0).to_dict())
        _take_messages(ws, w.id, list(config.capabilities), msgs)
        return ws.location, None, None, texts.registered(w.id)
    except (MavpsError, OSError) as exc:
        problem = texts.failure(exc)
        return (ws.location if ws is not None else config.workspace), None, problem, texts.hook_says(problem)
    finally:
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()


def _take_messages(ws: Any, agent: str, caps: list[str], into: list[Any]) -> None:
    """The agent's unread messages, marked read, for the starting context (best effort)."""
    from ..defaults import MAX_DELIVER

    with contextlib.suppress(MavpsError, OSError):
        into.extend(ws.inbox.take(agent, caps, limit=MAX_DELIVER))
