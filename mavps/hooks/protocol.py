"""The Claude Code hook protocol: JSON on stdin in; on stdout, a JSON answer or nothing; always exit 0.

Exit 0 and print nothing lets the agent stop; `{"decision": "block", "reason":
...}` on a Stop hook makes it go on with `reason` as its next instruction;
`hookSpecificOutput.additionalContext` on SessionStart adds context
(knowledge/03-stop-hooks-worker-persistence.md). Every failure path exits 0
with the reason on stderr and nothing on stdout, so a broken workspace never
traps or crashes an agent.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import IO, Any, Callable

from ..config import Config
from . import texts
from .deadline import HookDeadline, deadline


@dataclass
class HookAnswer:
    """What a hook answers: a Stop block, SessionStart context, or nothing (let it stop)."""

    event: str = "Stop"
    reason: str | None = None  # set: block the Stop with this reason
    context: str | None = None  # SessionStart additionalContext
    message: str = ""  # one line for stderr (why it let the agent stop, what failed)
    outcome: str = "allow"  # allow | block | context | error: for tests and logs
    task_id: int | None = None

    @property
    def block(self) -> bool:
        return self.reason is not None

    def stdout(self) -> str:
        """The exact stdout of the hook process ('' = print nothing)."""
        if self.reason is not None:
            return json.dumps({"decision": "block", "reason": self.reason}, ensure_ascii=False)
        if self.context is not None:
            return json.dumps({"hookSpecificOutput": {"hookEventName": self.event,
                                                      "additionalContext": self.context}}, ensure_ascii=False)
        return ""


def read_input(name: str, raw: str) -> dict[str, Any] | str:
    """The hook's stdin as a dict, or the stderr line saying why it is ignored."""
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        return texts.bad_stdin_json(name, exc)
    if not isinstance(data, dict):
        return texts.bad_stdin_type(name, data)
    return data


def load_config(name: str) -> Config | str:
    """The config as the hook sees it (CLAUDE_PROJECT_DIR is the project), or the stderr line."""
    from .. import config as cfgmod
    from ..errors import ConfigError, MavpsError

    try:
        return cfgmod.load(cwd=os.environ.get("CLAUDE_PROJECT_DIR") or None)
    except (ConfigError, MavpsError, OSError) as exc:
        return texts.config_error(name, exc)


def run(name: str, event: str, fn: Callable[[dict[str, Any], Config], HookAnswer],
        echo: Callable[..., None], stdin: IO[str] | None = None) -> None:
    """Read stdin, call one hook function inside its hard deadline, print its answer; never raise.

    `echo(text, err=False)` prints (click.echo: the CLI layer's choice)."""
    import logging

    from . import options

    # paramiko logs its network thread's tracebacks through logging's last-resort
    # handler (stderr); a hook states the reason in one line instead.
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    data = read_input(name, (stdin or sys.stdin).read())
    if isinstance(data, str):
        echo(data, err=True)
        return
    cfg = load_config(name)
    if isinstance(cfg, str):
        echo(cfg, err=True)
        return
    try:
        with deadline(options.hard_limit(cfg, event)):
            answer = fn(data, cfg)
    except HookDeadline as exc:
        echo(texts.out_of_time(name, exc), err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # a network thread may still be stuck: do not wait for it
    except Exception as exc:  # noqa: BLE001 - a hook must never show a traceback
        echo(texts.unexpected(name, exc), err=True)
        return
    if answer.message:
        echo(answer.message, err=True)
    out = answer.stdout()
    if out:
        echo(out)
