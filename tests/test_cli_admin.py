"""The workspace care commands (edit, unlock, doctor) through click's CliRunner, against both transports."""
from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_cli import Mavps, run_plain

from mavps import cli as cli_mod

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def mavps(target) -> Mavps:
    m = Mavps(target)
    m("init")
    return m


# ----- edit ---------------------------------------------------------------------------
EDITOR = textwrap.dedent("""\
    import json, os, sys
    path = sys.argv[1]
    lock = os.environ.get("CHECK_LOCK")
    if lock:
        with open(os.path.join(lock, ".mavps.lock", "owner.json")) as fh:
            owner = json.load(fh)
        with open(os.environ["LOCK_SEEN"], "w") as fh:
            json.dump(owner, fh)
    mode = os.environ["EDIT_MODE"]
    with open(path) as fh:
        text = fh.read()
    if mode == "rename":
        data = json.loads(text)
        data[0]["description"] = "renamed by hand"
        text = json.dumps(data)
    elif mode == "broken":
        text = text.replace("[", "[ oops", 1)
    elif mode == "badrecord":
        text = json.dumps([{"id": "seven"}])
    with open(path, "w") as fh:
        fh.write(text)
""")


@pytest.fixture
def editor(tmp_path: Path) -> str:
    script = tmp_path / "editor.py"
    script.write_text(EDITOR)
    return f"{sys.executable} {script}"


def test_edit_saves_valid_json_under_the_lock(mavps: Mavps, editor: str, tmp_path: Path) -> None:
    mavps.json("task", "add", "original")
    seen = tmp_path / "lock-seen.json"
    res = mavps.json("edit", "queue", env={"EDITOR": editor, "EDIT_MODE": "rename",
                                            "CHECK_LOCK": str(mavps.target.path), "LOCK_SEEN": str(seen)})
    assert res == {"file": "task-queue.json", "changed": True, "workspace": res["workspace"]}
    owner = json.loads(seen.read_text())
    assert owner["ttl"] == cli_mod.EDIT_TTL  # others wait for the editor instead of breaking the lock
    assert mavps.json("task", "show", "1")["description"] == "renamed by hand"
    assert any(r["event"] == "state_edited" for r in mavps.json("log", "--tail", "5"))
    assert not (mavps.target.path / ".mavps.lock").exists()
    unchanged = mavps.json("edit", "task-queue.json", env={"EDITOR": editor, "EDIT_MODE": "same"})
    assert unchanged["changed"] is False


@pytest.mark.parametrize("mode, expect", [("broken", "invalid JSON at line"), ("badrecord", "'id'")])
def test_edit_refuses_invalid_result_and_keeps_original(mavps: Mavps, editor: str, mode: str, expect: str) -> None:
    mavps.json("task", "add", "original")
    before = (mavps.target.path / "task-queue.json").read_bytes()
    result = mavps("edit", "queue", env={"EDITOR": editor, "EDIT_MODE": mode}, code=1)
    assert expect in result.stderr and "not saved" in result.stderr
    saved = result.stderr.split("saved at ")[1].strip()
    assert os.path.isfile(saved)
    os.unlink(saved)
    assert (mavps.target.path / "task-queue.json").read_bytes() == before
    assert not (mavps.target.path / ".mavps.lock").exists()


def test_edit_unknown_file(mavps: Mavps) -> None:
    result = mavps("edit", "passwords.txt", code=2)
    assert "task-queue.json" in result.stderr


# ----- unlock -------------------------------------------------------------------------
def _fake_lock(root: Path, age: float = 0.0) -> None:
    lock = root / ".mavps.lock"
    lock.mkdir()
    (lock / "owner.json").write_text(json.dumps({"owner": "ghost", "host": "elsewhere", "pid": 4242,
                                                 "token": "0123456789abcdef", "ttl": 10, "version": 1}))
    if age:
        old = time.time() - age
        os.utime(lock / "owner.json", (old, old))
        os.utime(lock, (old, old))


def test_unlock_shows_and_breaks(mavps: Mavps) -> None:
    root = mavps.target.path
    assert mavps.json("unlock")["held"] is False
    _fake_lock(root, age=120)
    info = mavps.json("unlock")
    assert info["held"] is True and info["holder"]["owner"] == "ghost" and info["stale"] is True
    assert 100 <= info["held_for"] <= 1000
    human = mavps("unlock").stdout
    assert "ghost" in human and "elsewhere" in human
    declined = mavps("unlock", "--force", input="n\n", code=1)
    assert "Break the lock" in declined.output
    assert (root / ".mavps.lock").exists()
    broken = mavps.json("unlock", "--force", "--yes")
    assert broken["broken"] is True
    assert not (root / ".mavps.lock").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".mavps.lock")]
    assert any(r["event"] == "lock_broken" for r in mavps.json("log", "--tail", "5"))


def test_unlock_cleans_old_leftovers_only(mavps: Mavps) -> None:
    root = mavps.target.path
    old_cand = root / ".mavps.lock.00112233aabbccdd"
    old_stale = root / ".mavps.lock.stale-99887766aabbccdd"
    young = root / ".mavps.lock.ffffeeeeddddcccc"
    for d in (old_cand, old_stale, young):
        d.mkdir()
        (d / "owner.json").write_text("{}")
    (old_cand / "now").mkdir()
    past = time.time() - 3600
    for d in (old_cand, old_stale):
        os.utime(d, (past, past))
    info = mavps.json("unlock")
    assert sorted(info["leftovers_removed"]) == sorted([old_cand.name, old_stale.name])
    assert young.exists() and not old_cand.exists() and not old_stale.exists()


# ----- doctor -------------------------------------------------------------------------
def test_doctor_healthy(mavps: Mavps) -> None:
    checks = mavps.json("doctor")
    assert all(set(c) == {"check", "ok", "detail", "fix"} for c in checks)
    assert all(c["ok"] for c in checks), checks
    names = {c["check"] for c in checks}
    assert {"config", "connection", "layout", "state files", "lock", "leases"} <= names
    if mavps.target.kind == "sftp":
        assert "host key" in names
    assert "ok" in mavps("doctor").stdout


def test_doctor_reports_problems_with_fixes(mavps: Mavps) -> None:
    root = mavps.target.path
    (root / "worker-status.json").write_text("{ not json")
    _fake_lock(root, age=600)
    result = mavps("--json", "doctor", code=1)
    checks = {c["check"]: c for c in json.loads(result.stdout)}
    assert not checks["state files"]["ok"] and "mavps edit" in checks["state files"]["fix"]
    assert not checks["lock"]["ok"] and "mavps unlock --force" in checks["lock"]["fix"]
    human = mavps("doctor", code=1).stdout
    assert "FAIL" in human and "fix:" in human


def test_doctor_expired_lease_and_reap(mavps: Mavps) -> None:
    mavps.json("task", "add", "x")
    with mavps.target.open("w1", lease_ttl=1) as ws:
        ws.queue.claim("w1")
    time.sleep(1.5)
    checks = {c["check"]: c for c in mavps.json("doctor", code=1)}
    assert not checks["leases"]["ok"] and "mavps reap" in checks["leases"]["fix"]
    reaped = mavps.json("reap")
    assert [t["id"] for t in reaped] == [1]
    assert all(c["ok"] for c in mavps.json("doctor"))


def test_doctor_without_workspace() -> None:
    result = run_plain("--json", "doctor")
    assert result.exit_code == 1
    checks = json.loads(result.stdout)
    assert checks[-1]["check"] == "workspace" and not checks[-1]["ok"] and "MAVPS_WORKSPACE" in checks[-1]["fix"]


# ----- status --watch into a pipe or a file -------------------------------------------------
def test_watch_into_a_pipe_writes_one_plain_line_per_change(mavps: Mavps) -> None:
    """Not a terminal (CliRunner's stdout): no live table, one line, and only one since nothing changed."""
    out = mavps("status", "--watch", "--interval", "0.1", "--max-seconds", "0.3").stdout
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert "pending 0" in lines[0] and "\x1b" not in out and "─" not in out


def test_watch_lines_counts_changes_not_polls(capsys: pytest.CaptureFixture) -> None:
    from mavps.render import plain

    def board(pending: int, ready: list[int]) -> dict:
        return {"time": "T", "counts": {"pending": pending, "in_progress": 0}, "ready": ready, "in_progress": [],
                "blocked": [], "workers": []}
    boards = iter([board(0, []), board(0, []), board(1, [1]), board(1, [1]), board(0, []), board(0, [])])
    clock = iter(range(100))
    written = plain.watch_lines(lambda: next(boards), 1, 10.5, sleep=lambda s: None, clock=lambda: next(clock))
    runner_out = capsys.readouterr().out.splitlines()
    assert written == 3 and len(runner_out) == 3
    assert "ready #1" in runner_out[1] and runner_out[2].startswith("T pending 0")


# ----- what --help and the docs promise ------------------------------------------------------
def test_ssh_flags_are_not_hidden() -> None:
    out = run_plain("--help").stdout
    for flag in ("--ssh ", "--ssh-config", "--connect-timeout"):
        assert flag in out, flag


def test_readme_lists_reap_and_the_exit_codes() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "`mavps reap`" in readme
    assert "2 for a usage error" in readme
    template = (Path(__file__).resolve().parents[1] / "templates" / "mavps.yaml").read_text()
    assert "\n# ssh: openssh" in template or "\nssh: " in template
