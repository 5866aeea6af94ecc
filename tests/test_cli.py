"""The `mavps` command through click's CliRunner: start-up, help, errors, config (helpers for test_cli_*.py)."""
from __future__ import annotations

import json
import subprocess
import sys
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
    code = ("import sys, json, mavps.cli; print(json.dumps([m for m in "
            "('rich', 'paramiko', 'mavps.workspace', 'mavps.hookcli') if m in sys.modules]))")
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

def test_hook_commands_belong_to_the_root_group_only() -> None:
    for group in ("task", "worker"):
        assert "\n  hook " not in run_plain(group, "--help").stdout
        assert "\n  install-hooks " not in run_plain(group, "--help").stdout
        assert run_plain(group, "hook", "--help").exit_code == 2


# ----- the command surface ------------------------------------------------------------
def test_init_is_idempotent(target) -> None:
    m = Mavps(target)
    first = m.json("init")
    assert set(first["created"]) == {"tasks/", "agent-comms.jsonl", "task-queue.json", "worker-status.json",
                                    "workspace.json"}  # everything it made, not only the state files
    assert first["workspace"]
    again = m.json("init")
    assert again["created"] == []

def test_json_option_after_the_subcommand(mavps: Mavps) -> None:
    mavps.json("task", "add", "x")
    result = CliRunner().invoke(cli, ["task", "list", "--json", *conn_args(mavps.target)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["description"] == "x"

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
