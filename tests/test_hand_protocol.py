"""knowledge/04's shell procedure (a person changing the queue by hand with mv and jq) is the protocol mavps
follows: run it as written against a workspace mavps made, then mavps reads the change and keeps working."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mavps import Workspace

DOC = Path(__file__).resolve().parents[1] / "knowledge" / "04-vps-api-specification.md"


def hand_procedure() -> str:
    text = DOC.read_text()
    m = re.search(r"```sh\n(cd /ws\b.*?)```", text, re.S)
    assert m, "knowledge/04 lost its shell procedure"
    return m.group(1)


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed (.ci/run installs it)")
def test_the_documented_hand_procedure_works_with_mavps(tmp_path):
    ws_path = tmp_path / "ws"
    with Workspace.open(str(ws_path), agent="coordinator") as ws:
        ws.init()
        for i in range(7):
            ws.queue.add(f"t{i + 1}", "x")
    script = hand_procedure().replace("cd /ws", f"cd {ws_path}", 1)
    run = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert [t["priority"] for t in json.loads((ws_path / "task-queue.json").read_text()) if t["id"] == 7] == [10]
    assert not any(p.name.startswith((".mavps.lock", ".mavps.commit")) for p in ws_path.iterdir())
    with Workspace.open(str(ws_path), agent="w") as ws:
        assert ws.queue.claim("w").id == 7  # the raised priority is seen
        assert any(r["message"] == "raised the priority of task 7" for r in ws.log.tail(5))


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed (.ci/run installs it)")
def test_the_hand_procedure_is_fenced_when_its_lock_is_broken(tmp_path):
    """A person too slow with the lock: its commit point fails, nothing changes, mavps goes on."""
    ws_path = tmp_path / "ws"
    with Workspace.open(str(ws_path), agent="coordinator") as ws:
        ws.init()
        for i in range(7):
            ws.queue.add(f"t{i + 1}", "x")
    before = (ws_path / "task-queue.json").read_bytes()
    script = hand_procedure().replace("cd /ws", f"cd {ws_path}", 1)
    head, _, tail = script.partition("mv -T \".mavps.lock/txn.$tok\" .mavps.commit")
    # the lock is broken (moved away) between the person's preparation and its commit point
    broken = head + "mv -T .mavps.lock .mavps.lock.stale-0000000000000000\n" \
        + "if mv -T \".mavps.lock/txn.$tok\" .mavps.commit 2>/dev/null; then exit 3; fi\n"
    run = subprocess.run(["bash", "-e", "-c", broken], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert (ws_path / "task-queue.json").read_bytes() == before
    assert not (ws_path / ".mavps.commit").exists()
