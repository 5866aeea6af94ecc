"""A pusher killed right after each single request of its push, in turn, over every transport: whatever the
point, once the next lock holder has come by, every file of the push is old or new, all of them together
(one commit point, rolled forward), and the log agrees (a `pushed` record stands only if the files are new).

The push changes one file, creates one in a new nested directory and deletes one (`--delete`), so puts,
directories made under the lock and deletes are all crossed by the crash points.
"""
from __future__ import annotations

import json
import os

import pytest
from conftest import Target
from support import killed
from test_exchange import held_task

from mavps.exchange import pull, push

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("clean_env"), pytest.mark.timeout(600)]

TTL = 0.5  #: the crashed pusher's lock lease: the next holder breaks its lock after this
OLD = {"src/a.py": b"old a\n", "src/d.py": b"doomed\n", "src/new/deep/c.py": None}
NEW = {"src/a.py": b"new a\n", "src/d.py": None, "src/new/deep/c.py": b"new c\n"}


def prepare(kind: str, path, server, loc) -> Target:
    target = Target(kind, path, server)
    ws = target.open("w1")
    try:
        ws.init()
        for p, data in OLD.items():
            if data is not None:
                ws.write_file(p, data)
        tid = held_task(ws)
        pull(ws.store, tid, str(loc), "w1")
    finally:
        ws.close()
    (loc / "src/a.py").write_bytes(NEW["src/a.py"])
    os.remove(loc / "src/d.py")
    (loc / "src/new/deep").mkdir(parents=True)
    (loc / "src/new/deep/c.py").write_bytes(NEW["src/new/deep/c.py"])
    return target


def run_push(target: Target, loc, crash_at: int | None) -> int:
    """Push in a forked child that dies right after the server carried out request `crash_at`; the number of
    requests the push sent when it was not killed (-1 when it was)."""
    def action() -> None:
        ws = target.open("w1", lock_ttl=TTL)
        push(ws.store, 1, str(loc), "w1", delete=True)

    return killed.run_killed(action, crash_at, loc.parent / f"{loc.name}.count", "push")


def files(root) -> dict[str, bytes | None]:
    return {p: (root / p).read_bytes() if (root / p).exists() else None for p in OLD}


def records(root) -> list[dict]:
    return [json.loads(line) for line in (root / "agent-comms.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("kind", ["local", pytest.param("sftp", marks=pytest.mark.sftp)])
def test_a_crash_anywhere_in_a_push_leaves_every_file_old_or_new(kind, tmp_path, request):
    server = request.getfixturevalue("sshd") if kind == "sftp" else None
    total = run_push(prepare(kind, tmp_path / "count", server, tmp_path / "count-loc"), tmp_path / "count-loc", None)
    assert files(tmp_path / "count") == NEW and total > 20
    outcomes = set()
    for k in range(total):
        root, loc = tmp_path / f"ws{k}", tmp_path / f"loc{k}"
        target = prepare(kind, root, server, loc)
        run_push(target, loc, k)
        ws = target.open("next", lock_ttl=TTL, lock_timeout=10)
        try:
            ws.queue.reap()  # any transaction: breaks the dead lock, rolls a committed push forward
        finally:
            ws.close()
        now = files(root)
        assert now in (OLD, NEW), f"crash after request {k}: half a push: {now}"
        log = records(root)
        rolled = {r.get("txn") for r in log if r.get("event") == "rolled_back"}
        standing = [r for r in log if r.get("event") == "pushed" and r.get("txn") not in rolled]
        assert bool(standing) == (now == NEW), f"crash after request {k}: the log disagrees with the files"
        outcomes.add("new" if now == NEW else "old")
    assert outcomes == {"old", "new"}
