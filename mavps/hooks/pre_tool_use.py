"""The PreToolUse path guard: a worker's Edit/Write/MultiEdit/NotebookEdit outside its task's touches is denied.

Cheap by design (it runs before every edit, as a new process): no network.
What the worker holds is a small local record, `<project>/.mavps/held.json`,
written when it is handed a task (the Stop hook's hand-over, `mavps claim`)
and removed when it completes, fails or releases it from the CLI. No record,
or a task with no touches: the edit is allowed and nothing is printed.

A path is judged relative to the workspace root (local transport: the
project directory is the workspace) or to the project directory (a pulled
copy, `CLAUDE_PROJECT_DIR`). A path with a `..` segment, one through a
symbolic link, or one outside both is denied with the reason. `path_guard`:
deny (default), warn (allowed, with a note to the user and the model), off.
"""
from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import dataclass
from typing import Any, Mapping

from ..config import Config
from .protocol import HookAnswer

#: The tools whose target path is judged (the matcher `install-hooks` writes).
GUARDED_TOOLS = ("Edit", "Write", "MultiEdit", "NotebookEdit")
MATCHER = "|".join(GUARDED_TOOLS)
#: The hook's timeout in the settings, seconds: it reads one small local file.
PRE_TOOL_USE_TIMEOUT = 10
HELD_DIR = ".mavps"
HELD_FILE = "held.json"
#: A held record larger than this is not one of ours: ignored.
MAX_HELD = 256 * 1024


@dataclass
class GuardAnswer(HookAnswer):
    """A PreToolUse answer: nothing (allow), a deny with its reason, or (warn) an allow with a note."""

    decision: str | None = None  # "deny" or None
    note: str | None = None  # warn: shown to the user and added to the model's context

    def stdout(self) -> str:
        if self.decision == "deny":
            return json.dumps({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                                                      "permissionDecisionReason": self.reason}}, ensure_ascii=False)
        if self.note:
            return json.dumps({"systemMessage": self.note, "hookSpecificOutput": {
                "hookEventName": "PreToolUse", "additionalContext": self.note}}, ensure_ascii=False)
        return super().stdout()


# ----- the local record of the held task -----------------------------------------------------
def project_dir(cwd: str | None = None) -> str:
    """The agent's project: CLAUDE_PROJECT_DIR, else `cwd`, else the current directory."""
    return os.path.abspath(os.environ.get("CLAUDE_PROJECT_DIR") or cwd or os.getcwd())


def held_path(project: str) -> str:
    return os.path.join(project, HELD_DIR, HELD_FILE)


def _no_link(path: str) -> None:
    """OSError when `path` is a symbolic link or not a directory (a planted `.mavps`)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(f"{path} is not a directory (a link or a file): the held-task record was not written")


def local_root(ws: Any) -> str | None:
    """The workspace's directory when it is on this machine (the local transport), else None."""
    from ..transport.local import LocalTransport

    return ws.transport.root if isinstance(ws.transport, LocalTransport) else None


def write_held(project: str, task_id: int, touches: list[str], worker: str, workspace: str,
               root: str | None) -> None:
    """Record the task this worker now holds (only a task with touches needs one; else the record goes)."""
    from ..localfile import atomic_write

    if not touches:
        clear_held(project)
        return
    folder = os.path.join(project, HELD_DIR)
    _no_link(folder)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    record = {"task_id": task_id, "touches": list(touches), "worker": worker, "workspace": workspace,
              "root": root}
    atomic_write(held_path(project), json.dumps(record, indent=1), mode=0o600)


def clear_held(project: str, task_id: int | None = None) -> None:
    """Forget the held task (only if it is `task_id`, when given); best effort."""
    held = read_held(project)
    if held is None or (task_id is not None and held.get("task_id") != task_id):
        return
    with contextlib.suppress(OSError):
        os.unlink(held_path(project))


def read_held(project: str) -> dict[str, Any] | None:
    """The record, or None (none, unreadable, a link, not ours)."""
    path = held_path(project)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            if os.path.islink(os.path.dirname(path)):
                return None
            data = json.loads(fh.read(MAX_HELD + 1)[:MAX_HELD] or b"null")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("task_id"), int):
        return None
    touches = data.get("touches")
    if not isinstance(touches, list) or not all(isinstance(t, str) for t in touches):
        return None
    return data


# ----- judging one path ----------------------------------------------------------------------
def workspace_path(raw: str, cwd: str, roots: list[str]) -> tuple[str | None, str | None]:
    """(the path relative to the first root it lies under, None) or (None, why it is refused)."""
    path = raw if os.path.isabs(raw) else os.path.join(cwd, raw)
    if ".." in path.replace("\\", "/").split("/"):
        return None, f"{raw} goes through '..'"
    path = os.path.normpath(path)
    candidates = []
    for r in roots:
        candidates += [os.path.normpath(r), os.path.realpath(r)]
    for root in sorted(set(candidates), key=len, reverse=True):
        if path.startswith(root.rstrip("/") + "/"):
            rel = path[len(root.rstrip("/")) + 1:]
            link = _link_on_the_way(root, rel)
            if link is not None:
                return None, f"{raw} goes through a symbolic link ({link})"
            return rel, None
    return None, f"{raw} lies outside the workspace and the project directory ({', '.join(roots)})"


def _link_on_the_way(root: str, rel: str) -> str | None:
    """The first component of root/rel that is a symbolic link (None: none; a missing part ends the walk)."""
    here = root
    for part in rel.split("/"):
        here = os.path.join(here, part)
        try:
            if stat.S_ISLNK(os.lstat(here).st_mode):
                return here
        except OSError:
            return None
    return None


def _target(tool_input: Any) -> str | None:
    if not isinstance(tool_input, dict):
        return None
    for key in ("file_path", "notebook_path", "path"):
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def deny_reason(task_id: int, touches: list[str], rel: str | None, problem: str | None) -> str:
    """What the model reads: the task, its touches, why, and what to do."""
    listed = ", ".join(touches)
    why = problem if problem is not None else f"{rel} is not among the files task #{task_id} may write"
    return (f"mavps path guard: {why}. Task #{task_id} touches only: {listed}. Keep your edits within them. "
            f"If the task really needs this file, ask the coordinator to widen its touches "
            f"(`mavps send` them a message; they run `mavps task edit {task_id} --touches GLOB ...`), then run "
            f"`mavps claim` to refresh; or give the task back with `mavps fail {task_id} --error '...'`.")


def guard(input: Mapping[str, Any], config: Config) -> GuardAnswer:
    """Answer one PreToolUse event (always: the caller prints it, exit 0)."""
    from .. import globs

    mode = getattr(config, "path_guard", "deny")
    if mode == "off" or input.get("tool_name") not in GUARDED_TOOLS:
        return GuardAnswer(event="PreToolUse")
    cwd = input.get("cwd") if isinstance(input.get("cwd"), str) else None
    project = project_dir(cwd)
    held = read_held(project)
    raw = _target(input.get("tool_input"))
    if held is None or not held["touches"] or raw is None:
        return GuardAnswer(event="PreToolUse")
    roots = [r for r in (held.get("root"), project) if isinstance(r, str) and r]
    rel, problem = workspace_path(raw, cwd or project, roots)
    if rel is not None and globs.matching(_checked(held["touches"]), rel):
        return GuardAnswer(event="PreToolUse")
    reason = deny_reason(held["task_id"], held["touches"], rel, problem)
    if mode == "warn":
        return GuardAnswer(event="PreToolUse", outcome="warn", note=reason.replace("mavps path guard:",
                                                                                    "mavps path guard (warn only):"))
    return GuardAnswer(event="PreToolUse", reason=reason, outcome="deny", decision="deny",
                       task_id=held["task_id"])


def _checked(touches: list[str]) -> list[str]:
    from ..rules import valid_globs

    return valid_globs(touches)
