"""mavps: several coding agents, one shared workspace of files, no server process.

    from mavps import Workspace
    with Workspace.open("sftp://myvps/ws", worker_id="worker-1") as ws:
        task = ws.queue.claim("worker-1", ["backend"])

`import mavps` stays light: the workspace machinery (and paramiko) load on
first use.
"""
from __future__ import annotations

from .errors import (ConfigError, CorruptState, Fenced, HostKeyError, InvalidInput, LockLost, LockTimeout,
                     MavpsError, NotFound, Refused, TransportError)

TYPE_CHECKING = False  # typing itself is not imported: start-up time (type checkers know this idiom)
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

__all__ = [
    "Workspace", "Config", "Task", "TaskStatus", "Worker", "WorkerStatus",
    "MavpsError", "ConfigError", "CorruptState", "Fenced", "HostKeyError", "InvalidInput", "LockLost",
    "LockTimeout", "NotFound", "Refused", "TransportError", "__version__",
]

_LAZY = {"Workspace": "workspace", "Config": "config", "Task": "models", "TaskStatus": "models", "Worker": "models",
         "WorkerStatus": "models"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'mavps' has no attribute {name!r}")
