"""Retrying after a dropped connection, without doing anything twice.

When an SFTP connection drops mid-operation the caller gets a TransportError
and cannot know whether the operation took effect. The queue's idempotent
operations make a blind retry safe: a claim repeated with the *same token*
returns the task that claim already took, and `complete` repeated by the
holder returns the completed task. `Retrying` reconnects and repeats such an
operation, so its caller always ends up with a definite answer:

    r = Retrying(lambda: Workspace.open(url, agent="w1"))
    task = r.claim("w1")            # one token for every attempt
    r.complete(task.id, "w1", token=task.claim_token)

Only TransportError is retried (never HostKeyError, which needs a person).
Use `run` only for operations that are safe to repeat; `add`, `fail`,
`release` and `log.append` are not (a repeat may act twice or be fenced).

The Stop hook runs its transactions through one of these (`hooks.stop`): a
worker waiting minutes for work must not be let go because its connection
dropped once. It passes the workspace it already opened (`ws=`): a server
that cannot be reached at all is reported at once, not retried.
"""
from __future__ import annotations

import contextlib
import random
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from .errors import HostKeyError, TransportError
from .lockpaths import new_token

if TYPE_CHECKING:
    from .models import Task
    from .workspace import Workspace

T = TypeVar("T")


class Retrying:
    """Runs idempotent workspace operations, reconnecting after a dropped connection."""

    def __init__(self, opener: Callable[[], "Workspace"], attempts: int = 5, delay: float = 0.5, *,
                 ws: "Workspace | None" = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.opener = opener
        self.attempts = max(1, attempts)
        self.delay = delay
        self.sleep = sleep
        self._ws: "Workspace | None" = ws
        #: dropped connections survived so far (for status and tests)
        self.reconnects = 0

    @property
    def ws(self) -> "Workspace":
        if self._ws is None:
            self._ws = self.opener()
        return self._ws

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def _drop(self) -> None:
        """Forget a connection that failed; closing it may fail too, and must not stop the retry."""
        with contextlib.suppress(Exception):
            self.close()
        self._ws = None

    def __enter__(self) -> "Retrying":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, op: Callable[["Workspace"], T]) -> T:
        """op(ws), repeated on a fresh connection after a TransportError (op must be idempotent)."""
        for attempt in range(self.attempts):
            try:
                return op(self.ws)
            except HostKeyError:
                raise
            except TransportError:
                self._drop()
                if attempt == self.attempts - 1:
                    raise
                self.reconnects += 1
                self.sleep(self.delay * random.uniform(0.5, 1.5) * (attempt + 1))
        raise AssertionError("unreachable")

    def claim(self, worker: str, capabilities: Sequence[str] | None = None, token: str | None = None) -> "Task | None":
        token = token or new_token()  # the same token on every attempt: at most one claim
        return self.run(lambda ws: ws.queue.claim(worker, capabilities, token=token))

    def complete(self, task_id: int | str, worker: str, result: str | None = None, token: str | None = None) -> "Task":
        return self.run(lambda ws: ws.queue.complete(task_id, worker, result, token=token))

    def heartbeat(self, worker: str) -> "list[Task]":
        return self.run(lambda ws: ws.queue.heartbeat(worker))

    def look(self, fn: Callable[["Workspace"], Any]) -> Any:
        """A read-only look (list, get, board): always safe to repeat."""
        return self.run(fn)
