"""The exception tree: every error mavps raises is a MavpsError.

Subclasses also derive from the builtin whose meaning matches, so callers can
catch either. Each carries a message that says what to do instead.
"""
from __future__ import annotations


class MavpsError(Exception):
    """Base of every mavps error."""


class ConfigError(MavpsError, ValueError):
    """A configuration value is missing or invalid."""


class InvalidInput(MavpsError, ValueError):
    """Input refused before anything was changed (bad id, path, value)."""


class NotFound(MavpsError, LookupError):
    """A task, worker or file that does not exist."""


class Refused(MavpsError, PermissionError):
    """An operation not allowed in the current state; nothing was changed."""


class Fenced(Refused):
    """The caller's claim on a task is gone (lease expired, task handed on)."""


class CorruptState(MavpsError, ValueError):
    """A state file is not valid; it is left untouched for a person to fix."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(
            f"{path}: {problem}. The file was not changed; fix it by hand "
            f"(`mavps edit {path}`) or restore {path}.bak"
        )


class UnsafePath(MavpsError, PermissionError):
    """A workspace path is a symlink or of the wrong type: mavps never follows or replaces it.

    The workspace may be writable by other accounts, so a link where a state
    file or the lock should be may have been planted to lead mavps outside.
    """

    def __init__(self, path: str, found: str, expected: str, fix: str | None = None) -> None:
        self.path = path
        self.found = found
        super().__init__(
            f"{path} is a {found} where mavps expects {expected}; mavps never follows links or replaces "
            f"unexpected files in the workspace (another account may have planted it). "
            + (fix or "Look at it (`ls -la`), then move it out of the way by hand")
        )


class LockTimeout(MavpsError, TimeoutError):
    """The workspace lock stayed busy for longer than lock_timeout."""

    def __init__(self, waited: float, holder: dict | None, held_for: float | None) -> None:
        self.waited = waited
        self.holder = holder
        self.held_for = held_for
        who = "an unknown holder"
        if holder:
            who = f"{holder.get('owner', '?')} on {holder.get('host', '?')} (pid {holder.get('pid', '?')})"
        held = f", held for {held_for:.0f}s" if held_for is not None else ""
        super().__init__(
            f"workspace lock still busy after {waited:.1f}s: held by {who}{held}. "
            "Retry later, raise lock_timeout, or inspect it with `mavps unlock`"
        )


class LockLost(MavpsError):
    """The lock was taken from this process before it committed; nothing was written."""


class TransportError(MavpsError, OSError):
    """The workspace could not be reached or did not answer in time."""


class HostKeyError(TransportError):
    """The server's host key is unknown or changed: never trusted silently."""


class Conflict(MavpsError):
    """A push found workspace files changed since they were pulled: nothing was written."""

    def __init__(self, task_id: int, folder: str, conflicts: list[dict[str, str]]) -> None:
        self.task_id = task_id
        self.conflicts = conflicts
        self.hint = f"mavps pull {task_id} --to {folder}, merge your edits, then push (or complete) again"
        shown = "; ".join(f"{c['path']}: {c['change']}" for c in conflicts[:20])
        more = f" (and {len(conflicts) - 20} more)" if len(conflicts) > 20 else ""
        super().__init__(
            f"push of task {task_id} refused, nothing was written: {shown}{more}. "
            f"Run `mavps pull {task_id} --to {folder}` again (your edited copies are kept in "
            f"{folder}/.mavps/mine/), merge your edits into the new versions, then push again"
        )
