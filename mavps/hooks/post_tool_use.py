"""The PostToolUse hook: hand the agent's unread messages to the model mid-task, as additionalContext.

It runs after every tool call, as a new process, so it must be cheap:
- at most once every `message_check` seconds (the time of the last check is kept
  in the per-session state file on this machine; before that, no connection at all);
- then one lstat batch of the agent's channels (one round trip), compared with the
  sizes seen at the last check: nothing new, nothing more;
- else it takes the unread messages (marked read under the lock) and prints them.
It never blocks the tool and never says anything on failure: no output, exit 0,
the reason in the local hook log, all within its own deadline.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import IO, Any, Callable, Mapping

from ..config import Config
from ..defaults import MAX_DELIVER
from . import texts
from .deadline import HookDeadline, deadline
from .options import HookOptions, bounded
from .protocol import HookAnswer, load_config, note_failure, read_input
from .session import SessionState

#: The hook's timeout written by `install-hooks` (seconds); its own deadline is well inside it.
POST_TOOL_USE_TIMEOUT = 30
#: The hook gives up (silently) after this, whatever it is doing.
POST_TOOL_USE_LIMIT = 20.0
#: Network waits inside this hook are capped at these (it runs on every tool call: never wait long).
CAP_CONNECT = 5.0
CAP_REPLY = 5.0
CAP_LOCK = 8.0
#: The key of this hook's record in the session's state.
STATE_KEY = "messages"
EVENT = "PostToolUse"


def reader_of(config: Config) -> tuple[str, list[str]]:
    """Whose inbox a session reads: its worker id (with its capabilities), else the coordinator's."""
    if config.worker_id:
        return config.worker_id, list(config.capabilities)
    return "coordinator", []


def post_tool_use_hook(input: Mapping[str, Any], config: Config, options: HookOptions | None = None,
                       open_workspace: Callable[..., Any] | None = None,
                       clock: Callable[[], float] = time.time) -> HookAnswer:
    """Unread messages as additionalContext, or nothing (not time yet, nothing new, or any failure)."""
    opts = options or HookOptions()
    state = SessionState(opts.state_path)
    session_id = str(input.get("session_id") or "no-session")
    agent, caps = reader_of(config)
    seen = _seen(state, session_id, agent, config.workspace)
    now = clock()
    if now - float(seen.get("checked", 0) or 0) < config.message_check:
        return HookAnswer(event=EVENT, outcome="allow")
    if open_workspace is None:
        from ..workspace import Workspace

        open_workspace = Workspace.open
    ws = open_workspace(config=_capped(config), agent=agent)
    try:
        msgs = take_new(ws, agent, caps, state, session_id, config.workspace, now, seen)
    finally:
        with contextlib.suppress(Exception):
            ws.close()
    if not msgs:
        return HookAnswer(event=EVENT, outcome="allow")
    return HookAnswer(event=EVENT, context=texts.messages_block(msgs), outcome="context")


def take_new(ws: Any, agent: str, caps: list[str], state: SessionState, session_id: str, workspace: str | None,
             now: float, seen: dict[str, Any] | None = None) -> list[Any]:
    """The agent's unread messages (at most MAX_DELIVER), marked read; one round trip when the channels'
    sizes are those this session saw at its last check (the Stop hook uses it too)."""
    if seen is None:
        seen = _seen(state, session_id, agent, workspace)
    sizes = ws.inbox.sizes(agent, caps)
    nothing = sizes == seen.get("sizes") or not any(sizes.values())  # unchanged, or no message ever sent
    msgs = [] if nothing else ws.inbox.take(agent, caps, limit=MAX_DELIVER)
    more = len(msgs) >= MAX_DELIVER  # maybe more waiting: look again next time
    _remember(state, session_id, {"agent": agent, "workspace": workspace, "checked": now,
                                  "sizes": None if more else sizes})
    return msgs


def _capped(config: Config) -> Config:
    from dataclasses import replace

    c = bounded(config)
    return replace(c, connect_timeout=min(c.connect_timeout, CAP_CONNECT),
                   reply_timeout=min(c.reply_timeout, CAP_REPLY), lock_timeout=min(c.lock_timeout, CAP_LOCK))


def _seen(state: SessionState, session_id: str, agent: str, workspace: str | None) -> dict[str, Any]:
    """What the last check of this session saw (nothing when it was for another agent or workspace, or
    unreadable)."""
    try:
        record = state.get(session_id).get(STATE_KEY)
    except OSError:
        return {}
    if not isinstance(record, dict) or record.get("agent") != agent or record.get("workspace") != workspace:
        return {}
    return record


def _remember(state: SessionState, session_id: str, record: dict[str, Any]) -> None:
    """Keep this check in the session's record (other keys left alone); best effort."""
    with contextlib.suppress(OSError):
        with state.edit() as sessions:
            current = sessions.get(session_id)
            current = dict(current) if isinstance(current, dict) else {}
            current[STATE_KEY] = record
            current["updated"] = time.time()
            sessions[session_id] = current


def run(echo: Callable[..., None], stdin: IO[str] | None = None,
        fn: Callable[[Mapping[str, Any], Config], HookAnswer] | None = None) -> None:
    """The hook process: stdin in, additionalContext out or nothing; every failure is silent (the hook log
    has it), and the whole run is bounded by POST_TOOL_USE_LIMIT."""
    name = "post-tool-use"
    opts = HookOptions.from_env()
    fn = fn or (lambda data, cfg: post_tool_use_hook(data, cfg, opts))
    answer: HookAnswer | None = None
    problem = None
    try:
        with deadline(POST_TOOL_USE_LIMIT):
            data = read_input(name, (stdin or sys.stdin).read())
            cfg = load_config(name)
            if isinstance(data, str) or isinstance(cfg, str):
                problem = data if isinstance(data, str) else cfg
            else:
                answer = fn(data, cfg)
    except HookDeadline as exc:  # a network thread may still be stuck: note it and leave at once, silently
        note_failure(name, texts.out_of_time(name, exc), opts.state_path)
        sys.stdout.flush()
        os._exit(0)
    except Exception as exc:  # noqa: BLE001 - a hook on every tool call must never get in the way
        problem = texts.unexpected(name, exc)
    if problem:
        note_failure(name, str(problem), opts.state_path)
        return
    out = answer.stdout() if answer is not None else ""
    if out:
        echo(out)


def stdout_of(context: str) -> str:
    """The exact JSON this hook prints for a context (for tests and docs)."""
    return json.dumps({"hookSpecificOutput": {"hookEventName": EVENT, "additionalContext": context}},
                      ensure_ascii=False)
