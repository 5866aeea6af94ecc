"""The Claude Code hooks: keep a worker session busy without burning its quota.

    protocol.py       stdin JSON in; the hook's JSON (or nothing) out; always exit 0
    options.py        the time budget: timeouts, caps, knobs from MAVPS_HOOK_* variables
    deadline.py       the SIGALRM backstop
    session.py        the per-session state file on this machine
    texts.py          every text shown to a model or a person
    decide.py         decide(view, session, clock, limits) -> Decision: pure, no I/O
    stop.py           the Stop hook's thin I/O loop around decide()
    coordinator.py    the coordinator's Stop hook: news of the tasks it added, as a short digest
    session_start.py  the SessionStart hook
    post_tool_use.py  the PostToolUse hook: unread messages as additionalContext, mid-task

`mavps.hookcli` is the click layer; `hooks/*.py` at the top of the repository
are shims for settings that name a file.
"""
from __future__ import annotations

from .decide import Decision, Limits, View, decide
from .deadline import HookDeadline, deadline
from .options import HookOptions, bounded, hard_limit
from .protocol import HookAnswer
from .session import SessionRecord, SessionState
from .session_start import session_start_hook
from .stop import stop_hook

__all__ = ["Decision", "HookAnswer", "HookDeadline", "HookOptions", "Limits", "SessionRecord", "SessionState",
           "View", "bounded", "deadline", "decide", "hard_limit", "session_start_hook", "stop_hook"]
