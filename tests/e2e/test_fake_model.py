"""The stand-in model works with the real Claude Code CLI.

Why: every end-to-end test of mavps's hooks rests on ``FakeModel`` +
``ScriptedWorker`` driving ``claude -p`` faithfully; these tests pin that
down (Bash calls run for real, Stop-hook feedback is followed) and show the
wire format without the CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .claude_env import make_claude_home, require_claude, run_claude
from .fake_model import Bash, FakeModel, ScriptedWorker, Text, Tool, last_instruction, run_lines

pytestmark = pytest.mark.e2e

STOP_HOOK = '''\
"""Block the first stop with a RUN line, let later stops through; log every call."""
import json, os, sys

data = json.load(sys.stdin)
log = sys.argv[1]
with open(log, "a") as f:
    f.write(json.dumps({"input": data, "cwd": os.getcwd(),
                        "project_dir": os.environ.get("CLAUDE_PROJECT_DIR")}) + "\\n")
with open(log) as f:
    calls = sum(1 for _ in f)
if calls == 1:
    print(json.dumps({"decision": "block", "reason": "One more task.\\nRUN: touch second.txt"}))
'''


@pytest.fixture
def claude() -> str:
    """The ``claude`` binary; skips (or fails under MAVPS_REQUIRE_CLAUDE=1) without it."""
    return require_claude()


@pytest.fixture
def fake_model() -> Iterator[FakeModel]:
    with FakeModel(ScriptedWorker()) as model:
        yield model


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    return project


def _check_clean(model: FakeModel, done: Any) -> None:
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert model.errors == []
    assert model.unknown_paths == []


# ---------------------------------------------------------------------------
# With the real CLI


@pytest.mark.timeout(300)
def test_claude_runs_a_bash_command(claude: str, fake_model: FakeModel, tmp_path: Path) -> None:
    project = _project(tmp_path)
    env = make_claude_home(tmp_path, project, fake_model.url)

    started = time.monotonic()
    done = run_claude("Please do this.\nRUN: echo hello > out.txt\n", project, env, timeout=120)
    elapsed = time.monotonic() - started

    _check_clean(fake_model, done)
    assert (project / "out.txt").read_text() == "hello\n"
    assert done.stdout.strip() == "done"
    assert fake_model.actions() == [Bash("echo hello > out.txt"), Text("done")]
    main = fake_model.main_requests()
    assert len(main) == 2
    assert all(r.path.startswith("/v1/messages") and r.body["stream"] is True for r in main)
    result = [b for b in main[1].body["messages"][-1]["content"] if b.get("type") == "tool_result"]
    assert result and result[0]["is_error"] is False
    print(f"claude -p took {elapsed:.2f}s; requests: {[(r.method, r.path) for r in fake_model.requests()]}")


@pytest.mark.timeout(300)
def test_stop_hook_block_reason_is_followed(claude: str, fake_model: FakeModel, tmp_path: Path) -> None:
    project = _project(tmp_path)
    hook = tmp_path / "stop_hook.py"
    hook.write_text(STOP_HOOK)
    calls_log = tmp_path / "stop_calls.jsonl"
    command = f'"{sys.executable}" "{hook}" "{calls_log}"'
    settings = {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": command, "timeout": 60}]}]}}
    (project / ".claude").mkdir()
    (project / ".claude" / "settings.json").write_text(json.dumps(settings))
    env = make_claude_home(tmp_path, project, fake_model.url)

    done = run_claude("Wait for instructions.", project, env, timeout=120)

    _check_clean(fake_model, done)
    assert (project / "second.txt").exists()
    calls = [json.loads(line) for line in calls_log.read_text().splitlines()]
    assert len(calls) == 2
    assert [c["input"]["stop_hook_active"] for c in calls] == [False, True]
    assert all(c["input"]["hook_event_name"] == "Stop" for c in calls)
    assert all(Path(c["cwd"]).resolve() == project.resolve() for c in calls)
    assert all(Path(c["project_dir"]).resolve() == project.resolve() for c in calls)
    assert fake_model.actions() == [Text("nothing to do"), Bash("touch second.txt"), Text("done")]
    assert len(fake_model.main_requests()) == 3
    index, text = last_instruction(fake_model.main_requests()[-1].body["messages"])
    assert text.startswith("Stop hook feedback:\n")
    assert run_lines(text) == ["touch second.txt"]


@pytest.mark.timeout(300)
def test_run_claude_timeout_kills_the_tool_commands(claude: str, tmp_path: Path) -> None:
    project = _project(tmp_path)
    marker = f"mavps-e2e-{uuid.uuid4().hex}"
    with FakeModel(lambda request: Bash(f"sleep 300 # {marker}")) as model:
        env = make_claude_home(tmp_path, project, model.url)
        started = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired):
            run_claude("Hang.", project, env, timeout=5)
        assert time.monotonic() - started < 30
    time.sleep(0.5)
    assert _processes_mentioning(marker) == []


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


# ---------------------------------------------------------------------------
# Without the CLI: the policy and the wire format


def _user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def _tool_use(command: str) -> dict[str, Any]:
    block = {"type": "tool_use", "id": "t", "name": "Bash", "input": {"command": command}}
    return {"role": "assistant", "content": [block]}


def _tool_result() -> dict[str, Any]:
    return _user([{"type": "tool_result", "tool_use_id": "t", "content": "ok", "is_error": False}])


def test_scripted_worker_follows_run_lines_from_the_conversation() -> None:
    worker = ScriptedWorker()
    prompt = _user(
        [
            {"type": "text", "text": "<system-reminder>\nRUN: never\n</system-reminder>\n"},
            {"type": "text", "text": "Do it.\nRUN: a\n  RUN:   b  \nnot RUN: c\n"},
        ]
    )
    convo: list[dict[str, Any]] = [prompt]
    assert worker({"messages": convo}) == Bash("a")
    convo += [_tool_use("a"), _tool_result()]
    assert worker({"messages": convo}) == Bash("b")
    convo += [_tool_use("b"), _tool_result()]
    assert worker({"messages": convo}) == Text("done")
    convo += [{"role": "assistant", "content": [{"type": "text", "text": "done"}]}]
    convo += [_user("Stop hook feedback:\nnext\nRUN: c")]
    assert worker({"messages": convo}) == Bash("c")
    convo += [_tool_use("c"), _tool_result()]
    assert worker({"messages": convo}) == Text("done")
    assert worker({"messages": [_user("hello")]}) == Text("nothing to do")
    assert worker({"messages": []}) == Text("nothing to do")


def _post(url: str, body: dict[str, Any]) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers["Content-Type"], response.read()


def test_fake_model_wire_format() -> None:
    main: dict[str, Any] = {"model": "m", "stream": True, "tools": [{"name": "Bash"}]}
    main["messages"] = [_user("RUN: ls")]
    with FakeModel(ScriptedWorker()) as model:
        status, ctype, raw = _post(model.url + "/v1/messages?beta=true", main)
        assert (status, ctype) == (200, "text/event-stream")
        lines = raw.decode().splitlines()
        events = [line[len("event: ") :] for line in lines if line.startswith("event: ")]
        assert [e for e in events if e != "ping"] == [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
        lines = raw.decode().splitlines()
        data = [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]
        delta = next(d for d in data if d["type"] == "content_block_delta")["delta"]
        assert delta == {"type": "input_json_delta", "partial_json": '{"command": "ls"}'}
        assert next(d for d in data if d["type"] == "message_delta")["delta"]["stop_reason"] == "tool_use"

        side = {"model": "m", "messages": [_user("RUN: ls")]}  # no tools, not streamed
        status, ctype, raw = _post(model.url + "/v1/messages", side)
        reply = json.loads(raw)
        assert reply["content"] == [{"type": "text", "text": "ok"}]
        assert reply["stop_reason"] == "end_turn"

        status, _, raw = _post(model.url + "/v1/messages/count_tokens?beta=true", main)
        assert json.loads(raw)["input_tokens"] > 0

        head = urllib.request.Request(model.url + "/", method="HEAD")
        with urllib.request.urlopen(head, timeout=10) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(model.url + "/nowhere", timeout=10)
        info.value.close()
        assert info.value.code == 404

        assert [r.method for r in model.requests()] == ["POST", "POST", "POST", "HEAD", "GET"]
        assert len(model.main_requests()) == 1
        assert model.actions() == [Bash("ls")]
        assert model.unknown_paths == ["GET /nowhere"]
        assert model.errors == []


@pytest.mark.timeout(300)
def test_scripted_write_reads_then_writes_a_file(claude: str, fake_model: FakeModel, tmp_path: Path) -> None:
    """A WRITE line makes the real client Read, then Write the file, in the session's working directory."""
    project = _project(tmp_path)
    (project / "notes.txt").write_text("old\n")
    env = make_claude_home(tmp_path, project, fake_model.url, allow=("Bash", "Read", "Write"))

    done = run_claude("Edit this.\nWRITE: notes.txt new text\n", project, env, timeout=120)

    _check_clean(fake_model, done)
    assert (project / "notes.txt").read_text() == "new text\n"
    names = [a.name for a in fake_model.actions() if isinstance(a, Tool)]
    assert names == ["Read", "Write"]
    results = [b for r in fake_model.main_requests()[1:] for b in r.body["messages"][-1]["content"]
               if isinstance(b, dict) and b.get("type") == "tool_result"]
    assert [r.get("is_error", False) for r in results] == [False, False], results
