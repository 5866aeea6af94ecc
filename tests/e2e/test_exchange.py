"""The project's files between workers off the VPS, with the real Claude Code CLI offline (issue 14).

Two workers reach the workspace over SFTP only. Three tasks: #1 and #2 touch
the same file (`src/app.py`), #3 touches `docs/**`. Checked:

- #1 and #2 run one after the other (their touches overlap), never at once;
- a worker's Stop hook pulls the task's files into its project directory; the
  worker replaces `src/app.py` with the `Write` tool and completes: the
  workspace holds the change;
- for #2, an edit made in the workspace after the pull makes the worker's
  `mavps complete` stop with the conflict, and nothing is overwritten;
- a `Write` outside #3's touches is denied by the PreToolUse guard, with a
  reason naming the task and its touches; the write inside them lands.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from mavps.timeutil import parse

from .claude_env import require_claude
from .fake_model import FakeModel, ScriptedWorker
from .stand import Stand, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.sftp]


@pytest.fixture
def claude() -> str:
    return require_claude()


def _tool_errors(model: FakeModel) -> list[str]:
    """The text of every tool result marked as an error, in every request."""
    seen: dict[str, str] = {}
    for r in model.main_requests():
        for m in r.body.get("messages", []):
            content = m.get("content") if isinstance(m.get("content"), list) else []
            for b in content:
                if isinstance(b, dict) and b.get("type") == "tool_result" and b.get("is_error"):
                    seen[str(b.get("tool_use_id"))] = json.dumps(b.get("content"))
    return list(seen.values())


@pytest.mark.timeout(400)
def test_two_workers_exchange_files_through_the_workspace(claude: str, sshd: Any, tmp_path: Path) -> None:
    hook_wait, idle_timeout = 5.0, 20.0
    model = FakeModel(ScriptedWorker()).start()
    stand = Stand(tmp_path / "stand", sshd, model.url, {"hook_wait": hook_wait, "idle_timeout": idle_timeout})
    try:
        app = stand.ws_path / "src" / "app.py"
        app.parent.mkdir(parents=True)
        app.write_text("v0\n")
        (stand.ws_path / "docs").mkdir()
        (stand.ws_path / "docs" / "notes.md").write_text("notes v0\n")
        started, go = stand.shared / "t2-started", stand.shared / "go-2"
        go1 = stand.shared / "go-1"
        wait_go = f"touch {started}; for i in $(seq 1 900); do [ -f {go} ] && break; sleep 0.1; done"
        wait_go1 = f"for i in $(seq 1 900); do [ -f {go1} ] && break; sleep 0.1; done"
        with stand.open("coordinator") as ws:
            ws.queue.add("First edit of app.py", f"RUN: {wait_go1}\nWRITE: src/app.py v1 by task 1\n",
                         requires=["a"], touches=["src/app.py"])
        w_a = stand.worker("w-a", capabilities=["a"], allow_edits=True)
        w_b = stand.worker("w-b", capabilities=["b"], allow_edits=True)
        w_a.start()
        w_b.start()
        wait_for("task 1 running", lambda: stand.tasks()[1].status.value == "in_progress", 120)
        with stand.open("coordinator") as ws:
            ws.queue.add("Second edit of app.py", f"RUN: {wait_go}\nWRITE: src/app.py v2 by task 2\n",
                         requires=["b"], touches=["src/app.py"])
            ws.queue.add("Notes", "WRITE: outside.txt not allowed\nWRITE: docs/notes.md notes v3\n",
                         requires=["a"], touches=["docs/**"])
        time.sleep(hook_wait + 1)  # w-b's Stop hook has looked at least once meanwhile
        with stand.open("coordinator") as ws:
            assert ws.queue.get(2).status.value == "pending"
            assert "src/app.py held by #1" in str(ws.queue.blocked_reason(ws.queue.get(2)))
        go1.touch()

        wait_for("task 1 completed", lambda: stand.tasks()[1].status.value == "completed", 120)
        assert app.read_text() == "v1 by task 1\n"  # pulled, written with the Write tool, pushed by complete
        wait_for("task 2 pulled and running", started.exists, 120)
        app.write_text("hand edit after the pull\n")  # someone edits the workspace meanwhile
        go.touch()
        wait_for("task 3 completed", lambda: stand.tasks()[3].status.value == "completed", 120)
        wait_for("task 2's completion refused", lambda: [e for e in _tool_errors(model) if "push of task 2 refused"
                                                         in e and "src/app.py: changed in the workspace" in e], 120)
        assert app.read_text() == "hand edit after the pull\n"  # nothing overwritten
        assert stand.tasks()[2].status.value == "in_progress"
    except AssertionError:
        for r in model.main_requests()[-8:]:
            print("last request:", json.dumps(r.body["messages"][-2:])[:1200])
        for a in stand.agents:
            a.kill()
            print("agent", a.name, a.stdout[-500:], a.stderr[-1500:])
        raise
    finally:
        stand.close()
        model.stop()

    assert model.errors == []
    tasks = stand.tasks()
    assert parse(tasks[2].claimed_at) >= parse(tasks[1].completed_at)  # overlapping touches: one after the other
    assert (stand.ws_path / "docs" / "notes.md").read_text() == "notes v3\n"
    assert not (stand.ws_path / "outside.txt").exists()
    denied = [e for e in _tool_errors(model) if "outside.txt" in e or "#3" in e]
    assert any("#3" in e and "docs/**" in e for e in denied), _tool_errors(model)
    print(f"\n[e2e figures] exchange: {len(model.main_requests())} model requests, "
          f"errors shown to the model: {len(_tool_errors(model))}")
