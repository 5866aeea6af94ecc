"""The per-session state file: what the Stop hook remembers between two calls of one session.

One small JSON file on this machine, session_id -> record, read-modified-written
under THE local lock and replaced with THE atomic write (mavps.localfile), so
two hooks running at once never lose each other's record. What a record holds
(`SessionRecord`): when the session started (idle time counts from there, not
from a registration long ago) and how many times in a row it was blocked with
no progress (the runaway guard).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from ..localfile import atomic_write, locked

#: Sessions remembered in the hook state file (oldest dropped first).
MAX_SESSIONS = 200
#: Answers remembered as handed over, per session (a worker asks one question at a time).
MAX_DELIVERED = 50


@dataclass(frozen=True)
class SessionRecord:
    """One session's state, as decide() reads it and as it is written back (unknown keys kept)."""

    worker: str | None = None
    started: str | None = None  # ISO stamp, server time: "session_started" on disk
    blocks: int = 0  # blocks in a row with no progress
    marker: list[Any] | None = None  # [last claim, last completion] when `blocks` was counted
    delivered: tuple[str, ...] = ()  # answers to the worker's questions already handed over (`answer_key`)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "SessionRecord":
        data = dict(data or {})
        try:
            blocks = int(data.pop("blocks", 0) or 0)
        except (TypeError, ValueError):
            blocks = 0
        marker = data.pop("marker", None)
        started = data.pop("session_started", None)
        worker = data.pop("worker", None)
        data.pop("updated", None)
        delivered = data.pop("answers_delivered", None)
        delivered = tuple(k for k in delivered if isinstance(k, str)) if isinstance(delivered, list) else ()
        return cls(worker=worker if isinstance(worker, str) else None,
                   started=started if isinstance(started, str) else None, blocks=max(0, blocks),
                   marker=marker if isinstance(marker, list) else None, delivered=delivered, extra=data)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update(worker=self.worker, session_started=self.started, blocks=self.blocks)
        if self.marker is not None:
            out["marker"] = list(self.marker)
        if self.delivered:
            out["answers_delivered"] = list(self.delivered)
        return out

    def delivering(self, key: str) -> "SessionRecord":
        """This record with one more answer handed over (the newest MAX_DELIVERED kept)."""
        return replace(self, delivered=(*[k for k in self.delivered if k != key], key)[-MAX_DELIVERED:])

    def counted(self, blocks: int, marker: list[Any]) -> "SessionRecord":
        return replace(self, blocks=blocks, marker=list(marker))


def state_file() -> str:
    """~/.cache/mavps/hook-state.json (XDG_CACHE_HOME honoured), else the temp dir."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "mavps")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        if os.access(path, os.W_OK):
            return os.path.join(path, "hook-state.json")
    except OSError:
        pass
    return os.path.join(tempfile.gettempdir(), f"mavps-hook-state-{os.getuid()}.json")


#: The hook log is cut to its newest half beyond this size.
MAX_HOOK_LOG = 256 * 1024


def hook_log_file(state_path: str | None = None) -> str:
    """Where the hooks append their failures: hook.log next to the session state file
    (~/.cache/mavps/hook.log by default; MAVPS_HOOK_STATE moves both)."""
    return os.path.join(os.path.dirname(os.path.abspath(state_path or state_file())), "hook.log")


def append_hook_log(name: str, line: str, state_path: str | None = None) -> None:
    """One stamped line per failure, for the person who wonders why a worker stopped; never raises."""
    path = hook_log_file(state_path)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    text = " ".join(line.split())  # one line whatever the message held
    with contextlib.suppress(OSError):
        with locked(path + ".lock"):
            with contextlib.suppress(OSError):
                if os.path.getsize(path) > MAX_HOOK_LOG:
                    with open(path, "rb") as fh:
                        fh.seek(-MAX_HOOK_LOG // 2, os.SEEK_END)
                        keep = fh.read().split(b"\n", 1)[-1]
                    atomic_write(path, keep.decode("utf-8", "replace"), mode=0o600)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(f"{stamp} [{name}, pid {os.getpid()}] {text}\n")


class SessionState:
    """A small JSON file: session_id -> record; locked, replaced atomically."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or state_file()

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        """The whole file as a dict, written back when the block ends, under the lock."""
        with locked(self.path + ".lock"):
            sessions = self._read()
            yield sessions
            self._write(sessions)

    def get(self, session_id: str) -> dict[str, Any]:
        return dict(self._read().get(session_id) or {})

    def record(self, session_id: str) -> SessionRecord:
        """The session's record; a fresh one when the file cannot be read."""
        try:
            return SessionRecord.from_dict(self.get(session_id))
        except OSError:
            return SessionRecord()

    def put(self, session_id: str, record: dict[str, Any] | None) -> None:
        with self.edit() as sessions:
            if record is None:
                sessions.pop(session_id, None)
            else:
                sessions[session_id] = {**record, "updated": time.time()}

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, sessions: dict[str, Any]) -> None:
        if len(sessions) > MAX_SESSIONS:
            keep = set(sorted(sessions, key=lambda k: _updated(sessions[k]))[-MAX_SESSIONS:])
            for k in list(sessions):
                if k not in keep:
                    del sessions[k]
        atomic_write(self.path, json.dumps(sessions, indent=1), mode=0o600)


def _updated(record: Any) -> float:
    try:
        return float(record.get("updated", 0)) if isinstance(record, dict) else 0.0
    except (TypeError, ValueError):
        return 0.0
