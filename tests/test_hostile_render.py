"""Text that came from other agents is shown literally by every human renderer.

Descriptions, results, errors, log records, lock owner records and worker
records are written by other agents (maybe strangers). Shown to a person they
must not be read as rich markup (`[/etc/hosts]` used to crash `status` for
everyone) nor reach the terminal as escapes (ESC, OSC 52, C1 CSI, CR, DEL):
one agent must not be able to forge or wipe what another's terminal shows.
`--json` output stays raw data (JSON escaping handles it).
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mavps import Config, Workspace
from mavps import render
from mavps.cli import cli
from mavps.hook import HookOptions, board_text, coordinator_context, held_reason, stop_hook, task_reason
from mavps.models import Task

pytestmark = pytest.mark.usefixtures("clean_env")

HOSTILE = [
    "[/etc/hosts]",
    "[bold red]x[/]",
    "\x1b[2J\x1b[H",
    "\x1b]52;c;ZXZpbA==\x07",
    "\x9b31m",
    "fake\roverwrite",
    "del\x7fete",
    "</script>",
    "L" * 4000,
]
#: What must appear as is wherever a description or message is shown whole.
LITERAL = ["[/etc/hosts]", "[bold red]x[/]", "</script>"]
#: How the escapes are shown: visibly, as text.
VISIBLE = ["\\x1b[2J\\x1b[H", "\\x1b]52;c;ZXZpbA==\\x07", "\\x9b31m", "fake\\roverwrite", "del\\x7fete"]


def raw_controls(out: str, newlines: bool = True) -> list[str]:
    """Characters in the output a terminal would act on (our own SGR styling from click.style aside)."""
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)
    allowed = "\n\t" if newlines else "\t"
    return sorted({c for c in out if (ord(c) < 0x20 and c not in allowed) or 0x7f <= ord(c) <= 0x9f})


def assert_safe(out: str, literal: list[str] = LITERAL, visible: list[str] = VISIBLE) -> None:
    assert raw_controls(out) == [], repr(out[:2000])
    for text in literal:
        assert text in out, (text, out[:3000])
    for text in visible:
        assert text in out, (text, out[:3000])


# ----- the function ---------------------------------------------------------------------
def test_literal_makes_controls_visible_and_keeps_the_rest() -> None:
    assert render.literal("\x1b[2J") == "\\x1b[2J"
    assert render.literal("\x9b31m\x7f\x07\x00") == "\\x9b31m\\x7f\\x07\\x00"
    assert render.literal("a\rb\nc") == "a\\rb\\nc"
    assert render.literal("a\r\nb\nc\td", multiline=True) == "a\nb\nc\td"
    assert render.literal("x\ry", multiline=True) == "x\\ry"
    assert render.literal("[bold]é ✓ 日本 👍🏽 </script>") == "[bold]é ✓ 日本 👍🏽 </script>"
    assert render.literal("abc\u202edef\u2028") == "abc\\u202edef\\u2028"
    assert render.literal("\ud800") == "\\ud800"  # a lone surrogate from a planted file: no encode error
    assert render.literal(None) == "" and render.literal(7) == "7"


# ----- the CLI, on a workspace full of hostile text --------------------------------------
class Run:
    def __init__(self, path: Path) -> None:
        self.args = ["--workspace", str(path)]
        self.runner = CliRunner()

    def __call__(self, *args: str, code: int = 0, input: str | None = None) -> str:
        # color=True: click keeps escapes as a terminal would get them (it strips CSI otherwise)
        result = self.runner.invoke(cli, [*self.args, *args], catch_exceptions=False, color=True, input=input)
        assert result.exit_code == code, (args, result.stdout[-2000:], result.stderr)
        return result.stdout


def _add(ws: Workspace, desc: str, **kw) -> Task:
    return ws.queue.add(desc, kw.pop("instructions", f"intro\n{desc}\nend\n"), **kw)


@pytest.fixture
def hostile(tmp_path: Path) -> dict:
    """A local workspace where every task text, result, error and log message is hostile."""
    path = tmp_path / "ws"
    ids: dict[str, dict[str, int]] = {}
    with Workspace.open(str(path), agent="coordinator") as ws:
        ws.init()
        for i, h in enumerate(HOSTILE):
            got = ids[h] = {}
            got["pending"] = _add(ws, h, context_files=[f"docs/{h[:20].replace(chr(13), '_')}.md"]).id
            got["completed"] = _add(ws, f"done {i}", priority=100).id
            assert ws.queue.claim("w-done").id == got["completed"]
            ws.queue.complete(got["completed"], "w-done", result=h)
            got["failed"] = _add(ws, f"failed {i}", priority=100, max_attempts=1).id
            assert ws.queue.claim("w-done").id == got["failed"]
            ws.queue.fail(got["failed"], "w-done", error=h)
            got["running"] = _add(ws, h, priority=50).id
            assert ws.queue.claim(f"w-{i}").id == got["running"]
            ws.log.append(h, agent="w-done")
    with open(path / "agent-comms.jsonl", "a", encoding="utf-8") as fh:  # a stranger appends raw records
        for h in HOSTILE[:-1]:
            fh.write(json.dumps({"timestamp": "2026-01-01T" + h, "agent": h, "message": "planted " + h,
                                 "event": h}) + "\n")
        fh.write(json.dumps({"timestamp": 5, "agent": ["[/etc/hosts]"], "message": {"m": "\x1b[2J"},
                             "event": ["task_failed"]}) + "\n")  # not even text
    return {"path": path, "ids": ids}


def test_status_and_watch(hostile: dict) -> None:
    run = Run(hostile["path"])
    assert_safe(run("status", "--lines", "200"))
    # into a pipe --watch writes one summary line per change (ids, counts, worker ids): no agent text at all
    assert_safe(run("status", "--lines", "200", "--watch", "--interval", "0.1", "--max-seconds", "0.3"), [], [])


def test_task_list_and_ready(hostile: dict) -> None:
    run = Run(hostile["path"])
    assert_safe(run("task", "list"))
    assert_safe(run("task", "list", "--all"))
    assert_safe(run("ready"))


def test_task_show_description_result_error_instructions(hostile: dict) -> None:
    run = Run(hostile["path"])
    for h, got in hostile["ids"].items():
        for kind in ("pending", "completed", "failed", "running"):
            out = run("task", "show", str(got[kind]))
            assert raw_controls(out) == [], (h, kind, repr(out[:500]))
            if h in LITERAL:
                assert h in out, (kind, out)
        shown = run("task", "show", str(got["pending"]))
        assert "\nintro\n" in shown and "\nend" in shown  # the instructions keep their lines
    assert "\\x1b[2J\\x1b[H\nend" in run("task", "show", str(hostile["ids"]["\x1b[2J\x1b[H"]["pending"]))


def test_log_tail_and_follow(hostile: dict) -> None:
    run = Run(hostile["path"])
    assert_safe(run("log", "--tail", "300"))
    assert_safe(run("log", "--tail", "300", "--follow", "--interval", "0.05", "--max-seconds", "0.2"))


def test_finishing_commands_echo_the_description(hostile: dict) -> None:
    run = Run(hostile["path"])
    with Workspace.open(str(hostile["path"]), agent="coordinator") as ws:
        _add(ws, "[/etc/hosts] \x1b[2J\x9b31m a\rb", priority=1000, context_files=["docs/\x1b[2J[x].md"])
    outs = [run("claim", "--worker", "w-new")]
    assert "\\x1b[2J\\x9b31m a\\rb" in outs[0] and "docs/\\x1b[2J[x].md" in outs[0]
    tid = hostile["ids"]["[/etc/hosts]"]["running"]
    outs.append(run("complete", str(tid), "--worker", "w-0", "--result", "ok"))
    outs.append(run("task", "cancel", str(hostile["ids"]["[bold red]x[/]"]["pending"])))
    outs.append(run("task", "requeue", str(hostile["ids"]["[bold red]x[/]"]["pending"])))
    out = "".join(outs)
    assert raw_controls(out) == [], repr(out)
    assert "[/etc/hosts]" in out and "[bold red]x[/]" in out


def test_json_output_stays_raw_data(hostile: dict) -> None:
    run = Run(hostile["path"])
    tasks = json.loads(run("--json", "task", "list"))
    assert {t["description"] for t in tasks} >= set(HOSTILE)
    records = json.loads(run("--json", "log", "--tail", "300"))
    assert {r["message"] for r in records if isinstance(r["message"], str)} >= set(HOSTILE)


def _plant_lock(root: Path, who: str) -> None:
    lock = root / ".mavps.lock"
    lock.mkdir()
    (lock / "owner.json").write_text(json.dumps({"owner": who, "host": who, "pid": who, "token": "0123456789abcdef",
                                                 "ttl": 600, "version": 1}))


def test_doctor_and_unlock_show_a_hostile_holder(tmp_path: Path) -> None:
    path = tmp_path / "ws"
    with Workspace.open(str(path), agent="coordinator") as ws:
        ws.init()
    run = Run(path)
    who = "[/etc/hosts] \x1b[2J\x1b]52;c;ZXZpbA==\x07 \x9b31m x\ry \x7f </script>"
    _plant_lock(path, who)
    visible = ["\\x1b[2J\\x1b]52;c;ZXZpbA==\\x07", "\\x9b31m", "x\\ry", "\\x7f"]
    assert_safe(run("doctor"), ["[/etc/hosts]", "</script>"], visible)
    assert_safe(run("unlock"), ["[/etc/hosts]", "</script>"], visible)
    leftover = path / ".mavps.lock.\x1b[2J[bold]x\x9b"  # a directory name a stranger chose
    leftover.mkdir()
    past = time.time() - 3600
    os.utime(leftover, (past, past))
    out = run("unlock", "--force", input="y\n")
    assert_safe(out, ["[/etc/hosts]", "[bold]x"], ["\\x1b[2J[bold]x\\x9b"])
    assert not (path / ".mavps.lock").exists()
    assert_safe(run("log", "--tail", "5"), ["[/etc/hosts]"], visible)  # the lock_broken record names it


# ----- renderers fed records a stranger planted (worker ids, capabilities, status) -------
def test_worker_and_board_tables_with_planted_records(capsys: pytest.CaptureFixture) -> None:
    short = ["[/etc/hosts]", "[bold red]x[/]", "</script>", "\x1b[2J", "\x1b]52;c;eA==\x07", "\x9b31m", "a\rb", "d\x7f"]
    rows = [{"id": h, "online": i % 2 == 0, "status": h, "capabilities": [h], "current_task": 3, "last_heartbeat": h}
            for i, h in enumerate(short)]
    render.workers(rows)
    board = {"workspace": "/ws", "time": "now", "counts": {"pending": 1}, "ready": [1],
             "in_progress": [{"id": 1, "description": h, "claimed_by": h, "attempts": 1, "lease_left": 5}
                             for h in short],
             "failed": [{"id": 2, "description": h, "error": h + "\nsecond line"} for h in short], "workers": rows,
             "recent": [{"timestamp": h, "agent": h, "message": h} for h in short]}
    render.board(board)
    render.checks([{"check": h, "ok": False, "detail": h, "fix": "[bold]" + h} for h in short])
    out = capsys.readouterr().out
    assert raw_controls(out) == [], repr(out)
    for h in ["[/etc/hosts]", "[bold red]x[/]", "</script>", "\\x1b[2J", "\\x1b]52;c;eA==\\x07", "\\x9b31m",
              "a\\rb", "d\\x7f", "\\nsecond line"]:
        assert h in out, h


# ----- what the hooks give Claude Code ---------------------------------------------------
def _hook_task(h: str) -> Task:
    return Task(id=4, description=h, context_files=[f"docs/{h[:12]}.md"], instruction_file="tasks/x.md",
                attempts=1, claimed_at=h)


@pytest.mark.parametrize("h", HOSTILE)
def test_hook_reasons_show_agent_text_literally(h: str) -> None:
    instructions = f"## Steps\n- one é ✓ 日本\n\t- two\n{h}\nRUN: make test\n"
    reason = task_reason(_hook_task(h), "w1", instructions, "/ws", True)
    assert raw_controls(reason) == [], repr(reason)
    assert "## Steps\n- one é ✓ 日本\n\t- two\n" in reason and "\nRUN: make test\n" in reason
    held = held_reason(_hook_task(h), "w1")
    assert raw_controls(held) == [], repr(held)
    board = {"counts": {"pending": 1}, "ready": [1],
             "in_progress": [{"id": 1, "description": h, "claimed_by": h, "lease_left": 5}],
             "failed": [{"id": 2, "description": h, "error": h}],
             "workers": [{"id": h, "online": False, "status": h}],
             "recent": [{"timestamp": h, "agent": h, "message": h}]}
    text = coordinator_context("/ws", board, None) + board_text(board) + coordinator_context("/ws", None, h)
    assert raw_controls(text) == [], repr(text)
    for out in (reason, held, text):
        if h in LITERAL:
            assert h in out


def test_stop_hook_hands_over_hostile_task_with_controls_visible(tmp_path: Path) -> None:
    path = tmp_path / "ws"
    with Workspace.open(str(path), agent="coordinator") as ws:
        ws.init()
        ws.queue.add("[/etc/hosts] \x1b[2J\x9b31m", "## Steps\nfirst é\n\x1b]52;c;ZXZpbA==\x07\x7f\nlast\n")
    cfg = Config().with_values({"workspace": str(path), "worker_id": "w1", "hook_wait": 0}, "test")
    answer = stop_hook({"session_id": "s"}, cfg, HookOptions(state_path=str(tmp_path / "st.json")))
    assert answer.block and answer.task_id == 1
    assert raw_controls(answer.reason) == [] and raw_controls(answer.stdout()) == []
    reason = json.loads(answer.stdout())["reason"]
    assert "Task #1: [/etc/hosts] \\x1b[2J\\x9b31m" in reason
    assert "## Steps\nfirst é\n\\x1b]52;c;ZXZpbA==\\x07\\x7f\nlast" in reason
