"""Agents talking through the workspace, with the real Claude Code CLI offline (issue 13).

A coordinator session applies a plan of four tasks and waits in its Stop hook.
Worker w-a takes a task that runs one long command; worker w-b takes a task
whose instructions ask the coordinator a question and end the turn. The
coordinator's Stop hook hands it the question; its model answers it and sends
w-a a message while w-a's command is still running. Checked:

- the message reaches w-a in its very next model request (PostToolUse
  `additionalContext` riding on the long command's tool result): no extra
  model request;
- w-b waits in its Stop hook and gets the answer as its next instruction: the
  question costs it at most two model requests;
- the coordinator's Stop hook reports every completion, and lets it stop when
  all four tasks are done.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from mavps.defaults import MESSAGE_CHECK

from .claude_env import require_claude
from .fake_model import Action, Bash, FakeModel, ScriptedWorker, Text, last_instruction
from .stand import Stand, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.sftp]

ANSWER = "Use port 8080 (answer-7f3a)"
MESSAGE = "The API moved to port 8080 (message-91c2)"


@pytest.fixture
def claude() -> str:
    return require_claude()


class Coordinator:
    """The coordinator's stand-in model: run the prompt's RUN lines; when a Stop-hook digest names a question,
    answer it and send w-a a message (one Bash call each), then end the turn."""

    def __init__(self) -> None:
        self.script = ScriptedWorker()

    def __call__(self, request: dict[str, Any]) -> Action:
        messages = request.get("messages") or []
        index, text = last_instruction(messages)
        asked = re.search(r'mavps answer (\d+) "\.\.\."', text)
        if not asked:
            return self.script(request)
        todo = [f"mavps answer {asked.group(1)} '{ANSWER}'", f"mavps send --to w-a '{MESSAGE}'"]
        made = sum(1 for m in messages[index + 1:] if m.get("role") == "assistant"
                   for b in (m.get("content") if isinstance(m.get("content"), list) else [])
                   if isinstance(b, dict) and b.get("type") == "tool_use")
        return Bash(todo[made]) if made < len(todo) else Text("done")


def _texts(request: Any) -> str:
    return json.dumps(request.body.get("messages", []))


def _commands(message: dict[str, Any]) -> list[str]:
    """The Bash commands an assistant message calls."""
    content = message.get("content") if isinstance(message.get("content"), list) else []
    return [str(b["input"].get("command")) for b in content
            if isinstance(b, dict) and b.get("type") == "tool_use" and b.get("name") == "Bash"]


@pytest.mark.timeout(400)
def test_message_question_and_the_coordinators_loop(claude: str, sshd: Any, tmp_path: Path) -> None:
    hook_wait, idle_timeout = 5.0, 20.0
    workers_model = FakeModel(ScriptedWorker()).start()
    coord_model = FakeModel(Coordinator()).start()
    stand = Stand(tmp_path / "stand", sshd, workers_model.url, {"hook_wait": hook_wait, "idle_timeout": idle_timeout})
    try:
        shared = stand.shared
        started, go, work = shared / "started-1", shared / "go-1", shared / "work.log"
        long_command = (f"touch {started}; for i in $(seq 1 900); do [ -f {go} ] && break; sleep 0.1; done; "
                        f"echo t1:$MAVPS_WORKER_ID >> {work}")
        plan = {"tasks": [
            {"name": "long", "description": "Long task for w-a", "requires": ["a"],
             "instructions": f"RUN: {long_command}\n"},
            {"name": "ask", "description": "A task with a question", "requires": ["b"],
             "instructions": "RUN: mavps ask 2 'Which port should the client use?' --worker w-b\nEND TURN\n"},
            {"name": "three", "description": "Third task", "instructions": f"RUN: echo t3 >> {work}\n"},
            {"name": "four", "description": "Fourth task", "instructions": f"RUN: echo t4 >> {work}\n"},
        ]}
        w_a, w_b = stand.worker("w-a", capabilities=["a"]), stand.worker("w-b", capabilities=["b"])
        coordinator = stand.agent("coord", role="coordinator", allow_bash=False, model_url=coord_model.url)
        (coordinator.project / "plan.json").write_text(json.dumps(plan))
        coordinator.start("You are the mavps coordinator. Apply the plan:\nRUN: mavps plan apply plan.json\n")
        wait_for("the plan applied", lambda: len(stand.tasks()) == 4, 90)
        w_a.start()
        w_b.start()

        wait_for("w-a running its long command", started.exists, 120)
        running_since = time.monotonic()
        wait_for("the coordinator's message sent", lambda: any(
            r.get("event") == "message_sent" for r in stand.log()), 120)
        # the PostToolUse hook looks at most every `message_check` seconds (default 15): let the command run
        # past that since w-a's last look (its session start), as a real task of some length would
        time.sleep(max(0.0, MESSAGE_CHECK + 1 - (time.monotonic() - running_since)))
        go.touch()
        wait_for("all tasks completed", lambda: all(
            t.status.value == "completed" for t in stand.tasks().values()), 120)
        assert coordinator.wait(idle_timeout + 90) == 0, (coordinator.stdout, coordinator.stderr)
        for w in (w_a, w_b):
            assert w.wait(idle_timeout + 60) == 0, (w.name, w.stdout, w.stderr)
    finally:
        stand.close()
        workers_model.stop()
        coord_model.stop()

    assert workers_model.errors == [] and coord_model.errors == []
    requests = workers_model.main_requests()
    by_worker = {name: [r for r in requests if f"you are worker {name}" in _texts(r)] for name in ("w-a", "w-b")}

    # the message: in w-a's very next request, riding on the long command's tool result
    carrying = [r for r in by_worker["w-a"] if MESSAGE in _texts(r)]
    assert carrying, "the message never reached w-a's model"
    msgs = carrying[0].body["messages"]
    assert _commands(msgs[-2]) == [long_command], "the message came later than the long command's result"
    assert MESSAGE in json.dumps(msgs[-1]) and "PostToolUse:Bash hook additional context" in json.dumps(msgs[-1])

    # the question: w-b's turns for task 2; the answer came back as an instruction
    answered = [r for r in by_worker["w-b"] if ANSWER in _texts(r)]
    assert answered, "the answer never reached w-b's model"
    index, instruction = last_instruction(answered[0].body["messages"])
    assert ANSWER in instruction and "answered" in instruction
    task2 = [r for r in by_worker["w-b"] if re.search(r"task #2\b", last_instruction(r.body["messages"])[1])]
    plain_task = 3  # a one-command task: its command, `mavps complete`, the ending turn
    assert len(task2) - plain_task <= 2, len(task2)

    # the coordinator: told of every completion, then let go
    digests = [last_instruction(r.body["messages"])[1] for r in coord_model.main_requests()]
    digests = [d for d in digests if d.startswith("Stop hook feedback")]
    told = " ".join(digests)
    for tid in (1, 2, 3, 4):
        assert re.search(rf"#{tid}\b", told), (tid, told[-3000:])
    assert "completed" in told
    tasks = stand.tasks()
    assert [t.status.value for t in tasks.values()] == ["completed"] * 4
    assert tasks[2].questions and tasks[2].questions[-1]["answer"] == ANSWER
    print(f"\n[e2e figures] talk: w-a {len(by_worker['w-a'])} requests, w-b {len(by_worker['w-b'])} "
          f"(task 2: {len(task2)}), coordinator {len(coord_model.main_requests())} "
          f"({len(digests)} digests), wall {time.monotonic() - coordinator.started:.1f}s")
