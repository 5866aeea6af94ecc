"""`mavps install-hooks`: merge mavps's hooks into a project's Claude Code settings.

What it writes into `.claude/settings.json` (or `settings.local.json`):

- `hooks.SessionStart`: `mavps hook session-start --role ROLE` (timeout 60 s),
  for every session source, so the context comes back after a compaction;
- `hooks.Stop`: `mavps hook stop` for a worker, `mavps hook stop --role coordinator`
  for a coordinator (news of the tasks it added; hooks/coordinator.py) (timeout 600 s);
- `hooks.PreToolUse` (workers only, matcher `Edit|Write|MultiEdit|NotebookEdit`): `mavps hook pre-tool-use`
  (timeout 10 s), the path guard (hooks/pre_tool_use.py);
- `hooks.PostToolUse` (every role, matcher `*`): `mavps hook post-tool-use` (timeout 30 s), which hands
  the agent's unread messages to the model mid-task;
- `env`: `CLAUDE_CODE_STOP_HOOK_BLOCK_CAP` raised to 100 (never lowered), so a
  worker can chain tasks (and a coordinator digests) through its Stop hook; and
  `MAVPS_WORKER_ID`, `MAVPS_WORKSPACE`, `MAVPS_CAPABILITIES` when given;
- `permissions.allow`: `Bash(mavps:*)`, so the agent may run the `mavps`
  commands its hooks tell it to run, even in `-p` mode (in Claude Code 2.1 an
  `allowedTools` list in ~/.claude.json did not let file-writing commands
  run; `permissions.allow` in the settings does). `--allow-bash` adds the
  broad `"Bash"` rule for agents that must run anything their tasks ask, and
  `--allow-edits` the file-editing tools (`EDIT_RULES`) for a headless worker
  (the path guard keeps its edits within the held task's touches).

Everything else in the file is kept. An entry is recognised as mavps's by its
command, so running it again changes nothing, and switching a project to the
other role replaces its Stop hook. The file is replaced
atomically; an unreadable file is refused, never overwritten.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence

from .errors import InvalidInput
from .hooks.options import SESSION_START_TIMEOUT, STOP_HOOK_TIMEOUT
from .hooks.pre_tool_use import MATCHER as GUARD_MATCHER, PRE_TOOL_USE_TIMEOUT
from .hooks.post_tool_use import POST_TOOL_USE_TIMEOUT
from .localfile import atomic_write, locked

ROLES = ("worker", "coordinator")
DEFAULT_BLOCK_CAP = 100
MAVPS_RULE = "Bash(mavps:*)"
#: What `--allow-edits` allows: the tools the path guard (PreToolUse) watches.
EDIT_RULES = ("Edit", "Write", "MultiEdit", "NotebookEdit")
SESSION_SOURCES = "startup|resume|clear|compact"
_OURS = {
    "stop": re.compile(r"(mavps hook stop|mavps\.hookcli stop|hooks/stop\.py)\b"),
    "session-start": re.compile(r"(mavps hook session-start|mavps\.hookcli session-start|hooks/session_start\.py)\b"),
    "pre-tool-use": re.compile(r"(mavps hook pre-tool-use|mavps\.hookcli pre-tool-use|hooks/pre_tool_use\.py)\b"),
    "post-tool-use": re.compile(r"(mavps hook post-tool-use|mavps\.hookcli post-tool-use|hooks/post-tool-use)\b"),
}
#: PostToolUse runs after every tool call (it delivers messages mid-task): "*" matches every tool.
POST_TOOL_USE_MATCHER = "*"


def hook_command(kind: str, role: str, use_python: bool = False) -> str:
    """The command line written into the settings for one hook."""
    suffix = f" --role {role}" if kind == "session-start" or (kind == "stop" and role == "coordinator") else ""
    if use_python:
        return f"\"{sys.executable}\" -m mavps.hookcli {kind}{suffix}"
    return f"mavps hook {kind}{suffix}"


@dataclass
class InstallReport:
    path: str
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        if not self.changes:
            out = [f"{self.path}: already up to date, nothing changed"]
        else:
            out = [f"{self.path}: {len(self.changes)} change(s)"] + [f"  {c}" for c in self.changes]
        return out + [f"note: {n}" for n in self.notes]


def settings_path(project: str, local: bool = False) -> str:
    return os.path.join(os.path.abspath(project), ".claude", "settings.local.json" if local else "settings.json")


def read_settings(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{path} is not valid JSON ({exc}); fix it first, it was not changed") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} must hold a JSON object; it was not changed")
    return data


def write_settings(path: str, data: dict[str, Any]) -> None:
    """Atomic replace, keeping the old file's mode (a new one is 0644)."""
    atomic_write(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n", mode=0o644)


def _section(data: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = data.setdefault(key, {})
    if not isinstance(value, dict):
        raise InvalidInput(f"{path}: '{key}' must be a JSON object; it was not changed")
    return value


def _merge_hook(hooks: dict[str, Any], event: str, kind: str, wanted: dict[str, Any], matcher: str | None,
                changes: list[str], path: str) -> None:
    """Put `wanted` in place of mavps's entry for this event (or add it), leaving other hooks alone."""
    groups = hooks.setdefault(event, [])
    if not isinstance(groups, list):
        raise InvalidInput(f"{path}: hooks.{event} must be a list; it was not changed")
    found = False
    for group in list(groups):
        if not isinstance(group, dict) or not isinstance(group.get("hooks"), list):
            continue
        for i, h in enumerate(list(group["hooks"])):
            if not (isinstance(h, dict) and isinstance(h.get("command"), str) and _OURS[kind].search(h["command"])):
                continue
            if found:  # a duplicate of ours: drop it
                group["hooks"].remove(h)
                changes.append(f"- hooks.{event}: removed duplicate {h['command']!r}")
                continue
            found = True
            if h != wanted:
                group["hooks"][group["hooks"].index(h)] = dict(wanted)
                changes.append(f"~ hooks.{event}: {h.get('command')!r} -> {wanted['command']!r} "
                               f"(timeout {wanted['timeout']}s)")
            if matcher is not None and group.get("matcher") != matcher:
                changes.append(f"~ hooks.{event}: matcher {group.get('matcher')!r} -> {matcher!r}")
                group["matcher"] = matcher
        if not group["hooks"]:
            groups.remove(group)
    if not found:
        group = {"matcher": matcher} if matcher is not None else {}
        group["hooks"] = [dict(wanted)]
        groups.append(group)
        changes.append(f"+ hooks.{event}: {wanted['command']!r} (timeout {wanted['timeout']}s)")


def _remove_hook(hooks: dict[str, Any], event: str, kind: str, changes: list[str]) -> None:
    groups = hooks.get(event)
    if not isinstance(groups, list):
        return
    for group in list(groups):
        if not isinstance(group, dict) or not isinstance(group.get("hooks"), list):
            continue
        for h in list(group["hooks"]):
            if isinstance(h, dict) and isinstance(h.get("command"), str) and _OURS[kind].search(h["command"]):
                group["hooks"].remove(h)
                changes.append(f"- hooks.{event}: removed {h['command']!r} (not used by a {ROLES[1]})")
        if not group["hooks"]:
            groups.remove(group)
    if not groups:
        del hooks[event]


def _set_env(env: dict[str, Any], key: str, value: str, changes: list[str]) -> None:
    if env.get(key) != value:
        old = env.get(key)
        env[key] = value
        changes.append(f"{'+' if old is None else '~'} env.{key}: " + (f"{old!r} -> " if old is not None else "")
                       + repr(value))


def merge(data: dict[str, Any], role: str, *, worker: str | None = None, workspace: str | None = None,
          capabilities: Sequence[str] = (), allow_bash: bool = False, use_python: bool = False,
          block_cap: int | None = None, path: str = "settings.json", allow_edits: bool = False) -> list[str]:
    """Change `data` (a parsed settings file) in place; returns the changes, one line each."""
    from . import validate
    from .transport import parse_url

    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}: worker or coordinator")
    if worker is not None:
        validate.worker_id(worker)
    caps = validate.capabilities(list(capabilities))
    if workspace is not None:
        parse_url(workspace)
    changes: list[str] = []
    _merge_hooks(_section(data, "hooks", path), role, use_python, changes, path)
    env = _section(data, "env", path)
    _merge_env(env, role, block_cap, {"MAVPS_WORKER_ID": worker, "MAVPS_WORKSPACE": workspace,
                                      "MAVPS_CAPABILITIES": ",".join(caps) or None}, changes)
    if not env:
        del data["env"]
    perms = _section(data, "permissions", path)
    allow = perms.setdefault("allow", [])
    if not isinstance(allow, list):
        raise InvalidInput(f"{path}: permissions.allow must be a list; it was not changed")
    for rule in [MAVPS_RULE] + (["Bash"] if allow_bash else []) + (list(EDIT_RULES) if allow_edits else []):
        if rule not in allow:
            allow.append(rule)
            changes.append(f"+ permissions.allow: {rule!r}")
    return changes


def _merge_hooks(hooks: dict[str, Any], role: str, use_python: bool, changes: list[str], path: str) -> None:
    """SessionStart, Stop and PostToolUse for every role (the coordinator's Stop hook reports news of its tasks;
    PostToolUse hands over messages mid-task)."""
    _merge_hook(hooks, "SessionStart", "session-start",
                {"type": "command", "command": hook_command("session-start", role, use_python),
                 "timeout": SESSION_START_TIMEOUT}, SESSION_SOURCES, changes, path)
    _merge_hook(hooks, "Stop", "stop",
                {"type": "command", "command": hook_command("stop", role, use_python),
                 "timeout": STOP_HOOK_TIMEOUT}, None, changes, path)
    _merge_hook(hooks, "PostToolUse", "post-tool-use",
                {"type": "command", "command": hook_command("post-tool-use", role, use_python),
                 "timeout": POST_TOOL_USE_TIMEOUT}, POST_TOOL_USE_MATCHER, changes, path)
    if role == "worker":
        _merge_hook(hooks, "PreToolUse", "pre-tool-use",
                    {"type": "command", "command": hook_command("pre-tool-use", role, use_python),
                     "timeout": PRE_TOOL_USE_TIMEOUT}, GUARD_MATCHER, changes, path)
    else:
        _remove_hook(hooks, "PreToolUse", "pre-tool-use", changes)


def _merge_env(env: dict[str, Any], role: str, block_cap: int | None, values: dict[str, str | None],
               changes: list[str]) -> None:
    """The block cap for a worker (raised, never lowered unless given), and the MAVPS_* values given."""
    if role in ROLES:  # the coordinator's Stop hook blocks once per digest too
        key = "CLAUDE_CODE_STOP_HOOK_BLOCK_CAP"
        try:
            current = int(str(env.get(key, "0")))
        except ValueError:
            current = 0
        if block_cap is not None or current < DEFAULT_BLOCK_CAP:
            _set_env(env, key, str(block_cap or DEFAULT_BLOCK_CAP), changes)
    for key, value in values.items():
        if value is not None:
            _set_env(env, key, value, changes)


def install(project: str, role: str, *, worker: str | None = None, workspace: str | None = None,
            capabilities: Sequence[str] = (), local: bool = False, allow_bash: bool = False,
            use_python: bool = False, block_cap: int | None = None, allow_edits: bool = False) -> InstallReport:
    """Merge mavps's hooks into the project's settings file and write it if anything changed."""
    if not os.path.isdir(project):
        raise InvalidInput(f"project directory {project} does not exist")
    path = settings_path(project, local)
    report = InstallReport(path)
    with locked(os.path.abspath(project)):  # two installers at once: neither loses the other's change
        data = read_settings(path)
        report.changes = merge(data, role, worker=worker, workspace=workspace, capabilities=capabilities,
                               allow_bash=allow_bash, use_python=use_python, block_cap=block_cap, path=path,
                               allow_edits=allow_edits)
        if report.changes:
            write_settings(path, data)
    if not use_python and shutil.which("mavps") is None:
        report.notes.append("`mavps` is not on PATH here: the hooks and the agent both run `mavps`; "
                            "install it (pip install mavps) or rerun with --python")
    if role == "worker" and worker is None and not os.environ.get("MAVPS_WORKER_ID") \
            and "MAVPS_WORKER_ID" not in data.get("env", {}):
        report.notes.append("no worker id: give --worker ID (or set MAVPS_WORKER_ID for the session), "
                            "else the Stop hook leaves the session alone")
    return report
