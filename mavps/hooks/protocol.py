"""The Claude Code hook protocol: JSON on stdin in; on stdout, a JSON answer or nothing; always exit 0.

Exit 0 and print nothing lets the agent stop; `{"decision": "block", "reason":
...}` on a Stop hook makes it go on with `reason` as its next instruction;
`hookSpecificOutput.additionalContext` on SessionStart adds context
(knowledge/03-stop-hooks-worker-persistence.md). Every failure path exits 0,
so a broken workspace never traps or crashes an agent, and is made visible:
the reason goes on stderr, into `{"systemMessage": ...}` on stdout (Claude Code
shows it to the user; a Stop hook that answers nothing else still lets the
agent stop), and into the local hook log (`session.hook_log_file()`, printed
by `mavps doctor`); the Stop hook also records it in the workspace log when
the workspace can be reached.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
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
    notice: str | None = None  # a failure shown to the user (systemMessage) and written to the hook log

    @property
    def block(self) -> bool:
        return self.reason is not None

    def stdout(self) -> str:
        """The exact stdout of the hook process ('' = print nothing)."""
        out: dict[str, Any] = {}
        if self.reason is not None:
            out.update(decision="block", reason=self.reason)
        elif self.context is not None:
            out["hookSpecificOutput"] = {"hookEventName": self.event, "additionalContext": self.context}
        if self.notice:
            out["systemMessage"] = self.notice
        return json.dumps(out, ensure_ascii=False) if out else ""


def failed(line: str, event: str = "Stop") -> HookAnswer:
    """The answer of a hook that could not do its work: let the agent go on, and say why to the user."""
    return HookAnswer(event=event, message=line, outcome="error", notice=line)


def note_failure(name: str, line: str, state_path: str | None = None) -> None:
    """Append a failure to the local hook log (best effort: the hook must still answer)."""
    from .session import append_hook_log

    append_hook_log(name, line, state_path)


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
        cfg = cfgmod.load(cwd=os.environ.get("CLAUDE_PROJECT_DIR") or None)
    except (ConfigError, MavpsError, OSError) as exc:
        return texts.config_error(name, exc)
    return hook_transport(cfg)


def hook_transport(cfg: Config) -> Config:
    """The config with the hooks' own default for `ssh` when the user chose none (flag, MAVPS_SSH, config file):
    openssh where available, else paramiko (mavps.transport.connect.open_preferring_openssh). A hook is called
    again and again, so the shared master's set-up is paid once; the CLI's default stays paramiko."""
    if cfg.source("ssh") != "default":
        return cfg
    from ..defaults import SSH_HOOK_DEFAULT

    return replace(cfg, ssh=SSH_HOOK_DEFAULT)


def run(name: str, event: str, fn: Callable[[dict[str, Any], Config], HookAnswer],
        echo: Callable[..., None], stdin: IO[str] | None = None) -> None:
    """Read stdin, call one hook function inside its hard deadline, print its answer; never raise.

    `echo(text, err=False)` prints (click.echo: the CLI layer's choice)."""
    import logging

    from . import options

    # paramiko logs its network thread's tracebacks through logging's last-resort
    # handler (stderr); a hook states the reason in one line instead.
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    state_path = options.HookOptions.from_env().state_path
    answer = _answer(name, event, fn, (stdin or sys.stdin).read(), echo)
    if answer.notice:
        note_failure(name, answer.notice, state_path)
    if answer.message:
        echo(answer.message, err=True)
    out = answer.stdout()
    if out:
        echo(out)


def _answer(name: str, event: str, fn: Callable[[dict[str, Any], Config], HookAnswer], raw: str,
            echo: Callable[..., None]) -> HookAnswer:
    """The hook's answer, a failure included (never raises; out of time, it answers and exits at once)."""
    from . import options

    data = read_input(name, raw)
    if isinstance(data, str):
        return failed(data, event)
    cfg = load_config(name)
    if isinstance(cfg, str):
        return failed(cfg, event)
    try:
        with deadline(options.hard_limit(cfg, event)):
            return fn(data, cfg)
    except HookDeadline as exc:
        answer = failed(texts.out_of_time(name, exc), event)
        note_failure(name, answer.message, options.HookOptions.from_env().state_path)
        echo(answer.message, err=True)
        echo(answer.stdout())
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # a network thread may still be stuck: do not wait for it
    except Exception as exc:  # noqa: BLE001 - a hook must never show a traceback
        return failed(texts.unexpected(name, exc), event)
