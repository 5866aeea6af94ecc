"""A worker process for the fault-injection suite.

    python agent.py '<json config>'

Modes:
  drain    claim and complete tasks until none is left (retrying dropped
           connections with the same claim token, via mavps.retry)
  counter  increment counter.json `n` times through Store.transact, logging
           one `counted` event per increment (a lost update = two holders)
  hold     one transaction whose change function touches `marker` and then
           sleeps `hold` seconds (the parent SIGSTOPs it there), on counter.json

Every outcome is appended at once (one O_APPEND write per record) to the
process's own `out` file, so a SIGKILL loses nothing already recorded.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time


def main() -> int:
    cfg = json.loads(sys.argv[1])
    fd = os.open(cfg["out"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def rec(**fields) -> None:
        fields.setdefault("t", time.time())
        fields.setdefault("pid", os.getpid())
        os.write(fd, (json.dumps(fields) + "\n").encode())

    from mavps import Workspace
    from mavps.errors import Fenced, LockLost, LockTimeout, MavpsError, TransportError
    from mavps.retry import Retrying

    settings = dict(cfg.get("settings", {}))
    wid = cfg["worker"]
    rec(ev="start")

    def opener():
        return Workspace.open(cfg["url"], agent=wid, **settings)

    if cfg["mode"] == "drain":
        r = Retrying(opener, attempts=cfg.get("attempts", 8), delay=0.2)
        work = cfg.get("work", 0.0)
        deadline = time.monotonic() + cfg.get("max_seconds", 120)
        while time.monotonic() < deadline:
            try:
                task = r.claim(wid)
            except (LockTimeout, LockLost, TransportError) as exc:
                rec(ev="claim_error", error=type(exc).__name__)
                continue
            if task is None:
                try:
                    left = r.look(lambda ws: [t for t in ws.queue.list()
                                              if t.status.value in ("pending", "in_progress")])
                except MavpsError:
                    continue
                if not left:
                    rec(ev="done", reconnects=r.reconnects)
                    return 0
                time.sleep(0.05)
                continue
            rec(ev="claimed", task=task.id, token=task.claim_token)
            if work:
                time.sleep(random.uniform(0, work))
            try:
                r.complete(task.id, wid, f"done by {wid}", token=task.claim_token)
                rec(ev="completed", task=task.id, token=task.claim_token)
            except Fenced:
                rec(ev="fenced", task=task.id, token=task.claim_token)
            except (LockTimeout, LockLost, TransportError) as exc:
                rec(ev="complete_error", task=task.id, token=task.claim_token, error=type(exc).__name__)
        rec(ev="gave_up")
        return 1

    if cfg["mode"] in ("counter", "hold"):
        ws = opener()
        if cfg.get("no_lease_check"):  # as if the pause came right after the holder's last check
            from mavps.transaction import Transaction

            Transaction._check_lease = lambda self: None  # type: ignore[method-assign]
        hold = cfg.get("hold", 0.0)
        marker = cfg.get("marker")
        n = 1 if cfg["mode"] == "hold" else cfg.get("n", 5)
        for i in range(n):
            seen = []

            def change(txn):
                value = txn.json("counter.json", {"n": 0})["n"]
                seen.append(value)
                if marker and len(seen) == 1:
                    with open(marker, "w") as fh:
                        fh.write(str(value))
                    time.sleep(hold)
                txn.write("counter.json", {"n": value + 1})
                txn.log.append({"timestamp": txn.stamp, "agent": wid, "event": "counted",
                                "message": f"counter {value} -> {value + 1}", "value": value + 1})
                return value + 1

            try:
                new = ws.store.transact(["counter.json"], change)
                rec(ev="counted", value=new, tries=len(seen))
            except (LockTimeout, LockLost, TransportError) as exc:
                rec(ev="count_error", error=type(exc).__name__, message=str(exc)[:300], tries=len(seen))
        ws.close()
        rec(ev="done")
        return 0
    raise SystemExit(f"unknown mode {cfg['mode']}")


if __name__ == "__main__":
    sys.exit(main())
