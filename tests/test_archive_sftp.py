"""Archiving a long history over SFTP: more than 256 KiB of finished tasks moved to the archive at once.

OpenSSH's sftp-server drops the connection on a request over 256 KiB; an archive sent as one write
killed every SFTP claim, complete and heartbeat that tried it. The archive must be sent in pieces.
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from conftest import sftp_settings
from mavps import Workspace
from mavps.queue import ARCHIVE_BATCH, KEEP_FINISHED
from mavps.transport.base import Batch

pytestmark = [pytest.mark.sftp, pytest.mark.timeout(120)]

SFTP_MAX_REQUEST = 256 * 1024
RESULT_SIZE = 3 * 1024


def record_writes(ws: Workspace) -> list[int]:
    """Sizes of every write request the workspace's transport sends from now on."""
    sizes: list[int] = []
    tr = ws.transport
    run = tr.run

    def counting_run(batch: Batch) -> Batch:
        sizes.extend(len(args[2]) for op, args, _reply in batch.ops if op == "write")
        return run(batch)

    tr.run = counting_run  # type: ignore[method-assign]
    return sizes


def seed_history(path: Path, n: int) -> dict[int, str]:
    """A long history: `n` completed tasks with 3 KB results each, written into the queue as they would be."""
    queue = json.loads((path / "task-queue.json").read_text())
    live = queue[0]
    results = {}
    done = []
    for i in range(n):
        tid = 1000 + i
        results[tid] = (f"result of #{tid} " + secrets.token_hex(RESULT_SIZE))[:RESULT_SIZE]
        done.append(dict(live, id=tid, description=f"old task {tid}", instruction_file=None, status="completed",
                         claimed_by="w0", claim_token=secrets.token_hex(8), lease_expires_at=None,
                         completed_at=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z", result=results[tid]))
    (path / "task-queue.json").write_text(json.dumps(done + queue, indent=2))
    meta = json.loads((path / "workspace.json").read_text())
    meta["next_task_id"] = 1000 + n
    (path / "workspace.json").write_text(json.dumps(meta))
    return results


def test_an_sftp_complete_archives_a_long_history(sshd, tmp_path):
    path = tmp_path / "ws"
    settings = sftp_settings(sshd)
    n = KEEP_FINISHED + ARCHIVE_BATCH + 5
    with Workspace.open(sshd.url(str(path)), agent="coord", **settings) as ws:
        ws.init()
        ws.queue.add("the live one", "do it")
        assert ws.queue.claim("w1").id == 1
    results = seed_history(path, n)
    assert sum(len(r) for r in results.values()) > 300 * 1024

    with Workspace.open(sshd.url(str(path)), agent="w1", **settings) as ws:
        sizes = record_writes(ws)
        ws.queue.complete(1, "w1", "done")  # 306 finished tasks: the oldest 106 move to the archive
        assert max(sizes) < SFTP_MAX_REQUEST, f"a write of {max(sizes)} bytes"

        archived = [json.loads(line) for line in (path / "task-archive.jsonl").read_text().splitlines()]
        moved = n + 1 - KEEP_FINISHED
        assert len(archived) == moved
        assert {t["id"]: t["result"] for t in archived} == {tid: results[tid] for tid in sorted(results)[:moved]}
        queue = json.loads((path / "task-queue.json").read_text())
        ids = {t["id"] for t in queue}
        assert not ids & {t["id"] for t in archived}, "archived tasks still in the queue"
        assert len(queue) == KEEP_FINISHED
        log = [json.loads(line) for line in (path / "agent-comms.jsonl").read_text().splitlines()]
        noted = [r for r in log if r.get("event") == "tasks_archived"]
        assert len(noted) == 1 and noted[0]["task_ids"] == sorted(t["id"] for t in archived)
        assert not any(r.get("event") == "rolled_back" for r in log)

        # the next SFTP operations work, in this client and another one
        new = ws.queue.add("after the archive", "go")
        assert ws.queue.claim("w1").id == new.id
        assert [t.id for t in ws.queue.heartbeat("w1")] == [new.id]
        ws.queue.complete(new.id, "w1", "x" * RESULT_SIZE)
        assert ws.queue.get(archived[0]["id"]).result == archived[0]["result"]  # read back from the archive
        assert max(sizes) < SFTP_MAX_REQUEST
    with Workspace.open(sshd.url(str(path)), agent="w2", **settings) as other:
        other.workers.register("w2")
        assert other.queue.claim("w2") is None
        assert len(other.queue.list(include_archived=True)) == n + 2
    assert not (path / ".mavps.lock").exists() and not (path / ".mavps.commit").exists()
