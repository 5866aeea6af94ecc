"""Run an action in a forked child that dies right after the server carried out one given request (crash tests).

Every request the child sends through a transport is counted across batches; when the count passes `crash_at`,
the batch is sent only up to and including that request, and the child exits at once (137, as if killed): what
the server did is exactly the requests before and at the crash point, as after a real kill.
"""
from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Callable

KILLED = 137


def describe(batch) -> list[list[str]]:
    """The requests of a batch as [op, path args...]: enough to find the commit point in a count run."""
    return [[op, *(a for a in args if isinstance(a, str))] for op, args, _reply in batch.ops]


def arm(crash_at: int | None, seen: list[list[list[str]]]) -> dict[str, bool]:
    """Patch the transports' `_execute` in this process: once the returned switch is on, describe every batch into
    `seen` and die right after request `crash_at` (counted over all batches)."""
    from mavps.transport.base import Batch
    from mavps.transport.local import LocalTransport
    from mavps.transport.sftp import SFTPTransport

    armed = {"on": False}
    for cls in (LocalTransport, SFTPTransport):
        original = cls._execute

        def execute(self, batch: Batch, original=original) -> None:
            if not armed["on"]:
                return original(self, batch)
            start = sum(len(b) for b in seen)
            seen.append(describe(batch))
            if crash_at is not None and start + len(batch.ops) > crash_at:
                cut = Batch()
                cut.ops = batch.ops[: crash_at - start + 1]
                original(self, cut)
                os._exit(KILLED)
            return original(self, batch)

        cls._execute = execute  # type: ignore[method-assign]
    return armed


def run_killed(action: Callable[[], None], crash_at: int | None, count_file: Path, what: str) -> int:
    """`action()` in a forked child killed right after request `crash_at` (None: never). The number of requests it
    sent when it finished, or -1 when it was killed; a failure of the action itself fails the caller's test."""
    count_file.unlink(missing_ok=True)
    error = count_file.with_suffix(".error")
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            seen: list[list[list[str]]] = []
            arm(crash_at, seen)["on"] = True
            action()
            count_file.write_text(str(sum(len(b) for b in seen)))
        except BaseException:
            error.write_text(traceback.format_exc())
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code in (0, KILLED), f"the {what} failed at crash point {crash_at}: {error.read_text()}"
    return int(count_file.read_text()) if code == 0 else -1
