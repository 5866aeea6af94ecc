"""A fork server for the crash-point tests: each job runs one workspace operation in a forked child that dies
(os._exit(137)) right after the server processed request N of the operation, counted over all its batches.

    python crash_child.py      # one JSON job per stdin line, one JSON reply ({"rc": ...}) per stdout line

A job: {"url", "settings", "agent", "call": "queue.complete", "args", "kwargs", "patch": {"queue.X": v},
"crash_at": N or null, "mutant": null or a name in MUTANTS, "result": null or a path}; the result file
gets {"batches": [[[op, path...], ...], ...], "error": a traceback or null} when the child was not killed.

Why a fork server: mavps and paramiko are imported once, so a crash point costs a fork, not a Python start.
Why a truncated batch: a local transport could stop between two requests by itself, but an SFTP client has
sent the whole pipeline before the first reply; sending only requests 0..N and dying once their replies are
in is exactly "the server processed request N, then the client died" (the connection closes with it).
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

from mavps import Workspace  # noqa: E402
from mavps.transport.base import Batch  # noqa: E402
from support.killed import arm  # noqa: E402  (the crash harness, shared with tests/test_*_crash.py)


def apply_patches(patch: dict[str, Any]) -> None:
    for name, value in patch.items():
        module, _, attr = name.rpartition(".")
        setattr(importlib.import_module(f"mavps.{module}"), attr, value)


def two_renames() -> None:
    """A mutant store for checking the checks: no single commit point (the defect of issue 10). Each changed file
    is renamed into place straight out of the lock, one request each, before the usual commit: a crash between
    two of those renames leaves half a change in place while the next breaker marks it rolled back."""
    from mavps import lockpaths as lp
    from mavps.transaction import Transaction

    original = Transaction._commit

    def commit(self: Any, txn: Any, result: Any, changed: list[str]) -> Any:
        txd = f"{lp.LOCK}/{lp.txn_dir(txn.token)}"
        b = Batch()
        for path in txn.puts:
            b.replace(f"{txd}/{lp.temp_name(path, txn.token)}", path)
        for path in changed:
            b.replace(f"{txd}/{self.temps[path]}", path)
        self.tr.run(b)
        return original(self, txn, result, changed)

    Transaction._commit = commit  # type: ignore[method-assign]


MUTANTS = {"two-renames": two_renames}


def child(job: dict[str, Any]) -> None:
    """Runs in the forked child; never returns."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # stdout is the server's reply channel
    seen: list[list[list[str]]] = []
    out: dict[str, Any] = {"batches": seen, "error": None}
    rc = 0
    try:
        apply_patches(job.get("patch", {}))
        if job.get("mutant"):
            MUTANTS[job["mutant"]]()
        armed = arm(job.get("crash_at"), seen)
        ws = Workspace.open(job["url"], agent=job["agent"], **job.get("settings", {}))
        armed["on"] = True
        target: Any = ws
        for part in job["call"].split("."):
            target = getattr(target, part)
        target(*job.get("args", []), **job.get("kwargs", {}))
        armed["on"] = False
        ws.close()
    except BaseException:
        out["error"] = traceback.format_exc()
        rc = 1
    if job.get("result"):
        with open(job["result"], "w") as fh:
            json.dump(out, fh)
    os._exit(rc)  # past the last request: the operation finished


def wait(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return -1000
        time.sleep(0.002)


def serve() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(job)
        rc = wait(pid, job.get("timeout", 60))
        sys.stdout.write(json.dumps({"rc": rc}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
