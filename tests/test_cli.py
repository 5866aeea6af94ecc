"""The `mavps` command through click's CliRunner, against both transports."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mavps import cli as cli_mod
from mavps.cli import cli

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("clean_env")


def conn_args(target) -> list[str]:
    args = ["--workspace", target.url]
    s = target.settings
    if s.get("identity_file"):
        args += ["--identity-file", str(s["identity_file"]), "--known-hosts", str(s["known_hosts"])]
    return args


class Mavps:
    def __init__(self, target) -> None:
        self.target = target
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, env: dict | None = None, code: int | None = 0):
        result = self.runner.invoke(cli, [*conn_args(self.target), *args], input=input, env=env,
                                    catch_exceptions=False)
        if code is not None:
            assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    def json(self, *args: str, code: int = 0, **kw):
        result = self("--json", *args, code=code, **kw)
        return json.loads(result.stdout)


@pytest.fixture
def mavps(target) -> Mavps:
    m = Mavps(target)
    m("init")
    return m


def run_plain(*args: str, input: str | None = None, env: dict | None = None):
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


# ----- startup, help, lazy commands --------------------------------------------------------
def test_import_is_light() -> None:
    code = ("import sys, json, mavps.cli; "
            "print(json.dumps([m for m in ('rich', 'paramiko', 'mavps.workspace', 'mavps.hookcli') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_help_does_not_load_heavy_modules() -> None:
    code = ("import sys, json\nfrom mavps.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(json.dumps([m for m in ('rich', 'paramiko', 'mavps.hookcli') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    for name in ("init", "task", "claim", "complete", "fail", "release", "worker", "log", "status", "edit", "unlock",
                 "doctor", "trust", "demo", "hook", "install-hooks", "ready"):
        assert f"\n  {name} " in out.stdout


def _all_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        if name in cli_mod.LAZY_COMMANDS:
            continue
        cmd = group.get_command(ctx, name)
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _all_commands(cmd, (*prefix, name))


def test_every_command_has_an_example_in_help() -> None:
    commands = list(_all_commands(cli))
    assert ("task", "add") in commands and ("worker", "heartbeat") in commands
    for path in commands:
        result = run_plain(*path, "--help")
        assert result.exit_code == 0, path
        assert "Example" in result.stdout, path


def test_lazy_command_missing_module_fails_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli_mod.LAZY_COMMANDS, "hook", ("mavps.no_such_module:hook", "hooks"))
    assert run_plain("--help").exit_code == 0
    result = run_plain("hook", "stop")
    assert result.exit_code == 1
    assert "mavps hook" in result.stderr and "not available" in result.stderr
    assert "Traceback" not in result.output


def test_lazy_hook_commands_resolve_when_present() -> None:
    pytest.importorskip("mavps.hookcli")
    result = run_plain("hook", "--help")
    assert result.exit_code == 0 and "stop" in result.stdout
    assert run_plain("install-hooks", "--help").exit_code == 0


def test_python_dash_m_and_version() -> None:
    out = subprocess.run([sys.executable, "-m", "mavps.cli", "--version"], capture_output=True, text=True, cwd=REPO,
                         timeout=60)
    assert out.returncode == 0 and "mavps" in out.stdout


# ----- the command surface ------------------------------------------------------------
def test_init_is_idempotent(target) -> None:
    m = Mavps(target)
    first = m.json("init")
    assert set(first["created"]) == {"task-queue.json", "worker-status.json", "workspace.json"}
    assert first["workspace"]
    again = m.json("init")
    assert again["created"] == []


def test_task_commands(mavps: Mavps) -> None:
    t1 = mavps.json("task", "add", "Write the parser", "--instructions", "Use a recursive descent parser.",
                    "--requires", "backend", "--priority", "5", "--context", "docs/grammar.md", "--max-attempts", "2")
    assert t1["id"] == 1 and t1["status"] == "pending" and t1["requires"] == ["backend"]
    assert t1["priority"] == 5 and t1["max_attempts"] == 2 and t1["context_files"] == ["docs/grammar.md"]
    src = Path("instr.md")
    src.write_text("Instructions from a local file.\n")
    t2 = mavps.json("task", "add", "Document it", "--instructions-file", str(src), "--depends-on", "1")
    assert t2["depends_on"] == [1]
    t3 = mavps.json("task", "add", "Templated", "--template", "task-instructions")
    shown = mavps.json("task", "show", "3")
    assert "Templated" in shown["instructions"] and shown["id"] == 3
    assert mavps.json("task", "show", "2")["instructions"] == "Instructions from a local file.\n"
    listed = mavps.json("task", "list")
    assert [t["id"] for t in listed] == [1, 2, 3]
    assert {"id", "description", "status", "claimed_by", "depends_on", "requires"} <= set(listed[0])
    assert mavps.json("task", "list", "--status", "completed") == []
    assert [t["id"] for t in mavps.json("ready")] == [1, 3]  # any capabilities; 2 waits for 1
    assert [t["id"] for t in mavps.json("ready", "--capability", "docs")] == [3]
    cancelled = mavps.json("task", "cancel", str(t3["id"]))
    assert cancelled["status"] == "cancelled"
    assert mavps.json("task", "requeue", "3")["status"] == "pending"
    human = mavps("task", "list").stdout
    assert "Write the parser" in human and "pending" in human


def test_claim_complete_fail_release(mavps: Mavps) -> None:
    mavps.json("task", "add", "Needs python", "--instructions", "Step one, step two.", "--requires", "python")
    # nothing claimable for a worker without the capability: exit 3, JSON null
    result = mavps("--json", "claim", "--worker", "w1", code=3)
    assert json.loads(result.stdout) is None
    result = mavps("claim", "--worker", "w1", code=3)
    assert result.stdout == "" and "nothing claimable" in result.stderr
    t = mavps.json("claim", "--worker", "w1", "--capability", "python")
    assert t["id"] == 1 and t["status"] == "in_progress" and t["claimed_by"] == "w1"
    assert t["instructions"] == "Step one, step two."
    beat = mavps.json("worker", "heartbeat", "w1")
    assert beat["id"] == "w1" and beat["held_tasks"] == [1]
    # someone else cannot finish it
    err = mavps("complete", "1", "--worker", "w2", code=1)
    assert err.stderr.startswith("mavps: ") and "Traceback" not in err.output
    failed = mavps.json("fail", "1", "--worker", "w1", "--error", "flaky test")
    assert failed["status"] == "pending" and failed["error"] == "flaky test"
    again = mavps.json("claim", "--worker", "w1", "--capability", "python")
    assert again["attempts"] == 2
    released = mavps.json("release", "1", "--worker", "w1")
    assert released["status"] == "pending" and released["attempts"] == 1
    human = mavps("claim", "--worker", "w1").stdout
    assert "Step one, step two." in human
    assert "complete 1 --worker w1 --result" in human and "fail 1 --worker w1 --error" in human
    assert "--workspace" in human  # the workspace came from the command line: repeated in the hints
    done = mavps.json("complete", "1", "--worker", "w1", "--result", "all green")
    assert done["status"] == "completed" and done["result"] == "all green"


def test_worker_from_environment(mavps: Mavps) -> None:
    mavps.json("task", "add", "anything")
    t = mavps.json("claim", env={"MAVPS_WORKER_ID": "env-worker"})
    assert t["claimed_by"] == "env-worker"
    result = mavps("complete", "1", code=1)
    assert "needs a worker id" in result.stderr and "MAVPS_WORKER_ID" in result.stderr
    assert mavps.json("--worker", "env-worker", "complete", "1")["status"] == "completed"


def test_worker_commands(mavps: Mavps) -> None:
    w = mavps.json("worker", "register", "w1", "--capability", "python", "--capability", "docs")
    assert w["id"] == "w1" and w["capabilities"] == ["python", "docs"]
    listed = mavps.json("worker", "list")
    assert listed[0]["id"] == "w1" and listed[0]["online"] is True
    assert "w1" in mavps("worker", "list").stdout
    mavps.json("task", "add", "x")
    mavps.json("claim", "--worker", "w1")
    refused = mavps("worker", "remove", "w1", code=1)
    assert "holds task" in refused.stderr
    removed = mavps.json("worker", "remove", "w1", "--force")
    assert removed["id"] == "w1"
    assert mavps.json("task", "show", "1")["status"] == "pending"


def test_log_and_status(mavps: Mavps) -> None:
    rec = mavps.json("log", "API schema is in docs/api.md", "--agent", "coordinator")
    assert rec["agent"] == "coordinator" and rec["message"] == "API schema is in docs/api.md"
    mavps.json("task", "add", "x")
    mavps.json("claim", "--worker", "w1")
    mavps.json("log", "working on it", "--agent", "w1", "--task", "1")
    tail = mavps.json("log", "--tail", "2")
    assert [r["message"] for r in tail][-1] == "working on it"
    assert all(r["agent"] == "w1" for r in mavps.json("log", "--agent", "w1"))
    assert {r["event"] for r in mavps.json("log", "--task", "1", "--tail", "50")} >= {"task_claimed", "message"}
    assert "working on it" in mavps("log").stdout
    board = mavps.json("status")
    assert {"counts", "in_progress", "workers", "recent", "ready", "failed", "workspace"} <= set(board)
    assert board["counts"]["in_progress"] == 1 and board["in_progress"][0]["claimed_by"] == "w1"
    assert board["in_progress"][0]["lease_left"] > 0
    human = mavps("status").stdout
    assert "in_progress 1" in human and "w1" in human
    watched = mavps("status", "--watch", "--interval", "0.1", "--max-seconds", "0.5")
    assert "in_progress 1" in watched.stdout


def test_json_option_after_the_subcommand(mavps: Mavps) -> None:
    mavps.json("task", "add", "x")
    result = CliRunner().invoke(cli, ["task", "list", "--json", *conn_args(mavps.target)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["description"] == "x"


def test_log_follow_streams(target) -> None:
    Mavps(target)("init")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "mavps", *conn_args(target), "--json", "log", "--follow",
                             "--tail", "0", "--interval", "0.1", "--max-seconds", "6"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(1.5)
        with target.open("coordinator") as ws:
            ws.log.append("hello followers")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert any(r["message"] == "hello followers" for r in lines)


# ----- errors -------------------------------------------------------------------------
def test_errors_are_one_line_and_exit_1(mavps: Mavps) -> None:
    result = mavps("task", "show", "99", code=1)
    assert result.stdout == ""
    assert result.stderr.startswith("mavps: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    debug = mavps("--debug", "task", "show", "99", code=1)
    assert "Traceback" in debug.stderr


def test_no_workspace_configured() -> None:
    result = run_plain("task", "list")
    assert result.exit_code == 1
    assert "no workspace configured" in result.stderr and "MAVPS_WORKSPACE" in result.stderr


def test_bad_config_value_names_key_and_source(tmp_path: Path) -> None:
    result = run_plain("--workspace", str(tmp_path / "ws"), "task", "list", env={"MAVPS_LOCK_TTL": "soon"})
    assert result.exit_code == 1
    assert "lock_ttl" in result.stderr and "MAVPS_LOCK_TTL" in result.stderr
    cfg = tmp_path / "mavps.yaml"
    cfg.write_text("workspace: ws\nconnect_timeout: -4\n")
    result = run_plain("task", "list", env={"MAVPS_CONFIG": str(cfg)})
    assert result.exit_code == 1
    assert "connect_timeout" in result.stderr and str(cfg) in result.stderr


def test_config_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    for name in ("from-file", "from-env", "from-flag"):
        run_plain("--workspace", str(tmp_path / name), "init")
        run_plain("--workspace", str(tmp_path / name), "task", "add", name)
    cfg = tmp_path / "mavps.yaml"
    cfg.write_text(f"workspace: {tmp_path / 'from-file'}\n")
    base = {"MAVPS_CONFIG": str(cfg)}
    only_file = json.loads(run_plain("--json", "task", "list", env=base).stdout)
    assert only_file[0]["description"] == "from-file"
    env = {**base, "MAVPS_WORKSPACE": str(tmp_path / "from-env")}
    assert json.loads(run_plain("--json", "task", "list", env=env).stdout)[0]["description"] == "from-env"
    flag = run_plain("--json", "--workspace", str(tmp_path / "from-flag"), "task", "list", env=env)
    assert json.loads(flag.stdout)[0]["description"] == "from-flag"


def test_usage_errors_exit_2(mavps: Mavps) -> None:
    assert mavps("task", "add", code=2).exit_code == 2
    assert mavps("task", "list", "--status", "sleeping", code=2).exit_code == 2


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
