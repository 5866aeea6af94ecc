"""The Claude Code hooks' names as they were before `mavps.hooks` became a package.

Kept so that code written against `mavps.hook` (the CLI wiring, the benchmark,
older tests) still imports; new code imports from `mavps.hooks` directly.
"""
from __future__ import annotations

from typing import Any

from .hooks.deadline import HookDeadline, deadline
from .hooks.decide import Decision, Limits, View, decide
from .hooks.options import (CAP_CONNECT, CAP_LOCK, CAP_REPLY, HEARTBEAT_EVERY, MAX_HOOK_WAIT, MAX_NO_PROGRESS_BLOCKS,
                            POLL_MAX, POLL_START, SESSION_START_TIMEOUT, STOP_HOOK_TIMEOUT, HookOptions, bounded,
                            hard_limit)
from .hooks.protocol import HookAnswer
from .hooks.session import MAX_SESSIONS, SessionRecord, SessionState, state_file
from .hooks.session_start import session_start_hook
from .hooks.stop import Probe, stop_hook
from .hooks.texts import (MAX_INSTRUCTIONS, board_text, coordinator_context, file_hint, finish_commands, held_reason,
                          task_reason, waiting_reason, worker_context)
from .retry import Retrying


def _Session(ws: Any, worker: str, caps: list[str] | None, opts: HookOptions) -> Probe:  # noqa: N802
    """A Probe over an open workspace (the benchmark's name for it)."""
    return Probe(Retrying(lambda: ws, attempts=1, ws=ws), worker, caps, opts)


__all__ = ["CAP_CONNECT", "CAP_LOCK", "CAP_REPLY", "HEARTBEAT_EVERY", "MAX_HOOK_WAIT", "MAX_INSTRUCTIONS",
           "MAX_NO_PROGRESS_BLOCKS", "MAX_SESSIONS", "POLL_MAX", "POLL_START", "SESSION_START_TIMEOUT",
           "STOP_HOOK_TIMEOUT", "Decision", "HookAnswer", "HookDeadline", "HookOptions", "Limits", "Probe",
           "SessionRecord", "SessionState", "View", "board_text", "bounded", "coordinator_context", "deadline",
           "decide", "file_hint", "finish_commands", "hard_limit", "held_reason", "session_start_hook",
           "state_file", "stop_hook", "task_reason", "waiting_reason", "worker_context"]
