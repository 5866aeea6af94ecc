"""A worker process for concurrency tests: claim and complete until the queue is empty.

    python drain.py URL WORKER_ID OUT_FILE [identity_file known_hosts]

Writes one line per completed task id to OUT_FILE (flushed at once), so the
parent can check that no task was completed by two processes.
"""
from __future__ import annotations

import os
import sys


def main() -> int:
    url, worker, out = sys.argv[1:4]
    settings = {"lock_timeout": 120.0}
    if len(sys.argv) > 5:
        settings.update(identity_file=sys.argv[4], known_hosts=sys.argv[5], ssh_config=os.devnull)
    from mavps import Workspace

    with Workspace.open(url, agent=worker, **settings) as ws, open(out, "a", buffering=1) as fh:
        while True:
            task = ws.queue.claim(worker)
            if task is None:
                if not ws.queue.list(status="pending") and not ws.queue.list(status="in_progress"):
                    return 0
                continue
            fh.write(f"claimed {task.id}\n")
            ws.queue.complete(task.id, worker, f"done by {worker}")
            fh.write(f"completed {task.id}\n")


if __name__ == "__main__":
    sys.exit(main())
