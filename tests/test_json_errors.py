"""With --json every command's failure is one JSON object {"error", "hint"} on stdout, with the documented
exit code (README "The commands": 1 an error, 2 a usage error); without it, one line on stderr."""
from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from mavps.cli import cli

pytestmark = pytest.mark.usefixtures("clean_env")

#: `hook ...` speaks Claude Code's protocol on stdout and takes no --json (README); its usage errors still do.
NO_RUNTIME_FAILURE = {"hook stop", "hook session-start", "hook pre-tool-use", "hook post-tool-use", "doctor",
                      "demo"}

#: A command line for each command that fails at run time on a directory that is not a workspace.
FAILING = {
    "ask": ["ask", "1", "which?", "--worker", "w1"], "answer": ["answer", "1", "this"],
    "cat": ["cat", "x.txt"], "claim": ["claim", "--worker", "w1"], "cleanup": ["cleanup"],
    "complete": ["complete", "1", "--worker", "w1"], "edit": ["edit", "queue"],
    "fail": ["fail", "1", "--worker", "w1"], "init": None, "log": ["log", "hello"], "put": ["put", "x.txt"],
    "ready": ["ready"], "reap": ["reap"], "release": ["release", "1", "--worker", "w1"], "status": ["status"],
    "task add": ["task", "add", "x", "--instructions", "y"], "task cancel": ["task", "cancel", "1"],
    "task list": ["task", "list"], "task requeue": ["task", "requeue", "1"], "task show": ["task", "show", "1"],
    "unlock": ["unlock"], "worker heartbeat": ["worker", "heartbeat", "w1"], "worker list": ["worker", "list"],
    "worker register": ["worker", "register", "w1"], "worker remove": ["worker", "remove", "w1"],
    "get": ["get", "x.txt"], "ls": ["ls"], "plan apply": ["plan", "apply", "PLAN"],
    "task edit": ["task", "edit", "1", "--priority", "3"], "task release": ["task", "release", "1"],
    "wait": ["wait", "1", "--timeout", "1"], "board": ["board", "--html", "-"],
    "reserve": ["reserve", "docs/**"], "reservations": ["reservations"], "unreserve": ["unreserve", "docs/**"],
    "send": ["send", "--to", "all", "hello"], "inbox": ["inbox"],
    "pull": ["pull", "1", "--to", "pulled"], "push": ["push", "1", "--worker", "w1"],
}


def leaf_commands() -> list[str]:
    ctx = click.Context(cli)
    out = []

    def walk(group: click.Group, prefix: list[str]) -> None:
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            if isinstance(cmd, click.Group):
                walk(cmd, [*prefix, name])
            else:
                out.append(" ".join([*prefix, name]))
    walk(cli, [])
    return out


def one_error(result, code: int) -> dict:
    assert result.exit_code == code, (result.stdout, result.stderr)
    doc = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert isinstance(doc, dict) and set(doc) >= {"error", "hint"}, doc
    assert isinstance(doc["error"], str) and doc["error"]
    return doc


@pytest.mark.parametrize("command", leaf_commands())
def test_usage_error_of_every_command_is_one_json_object_exit_2(command: str) -> None:
    for args in (["--json", *command.split(), "--no-such-option"], [*command.split(), "--no-such-option", "--json"]):
        doc = one_error(CliRunner().invoke(cli, args), 2)
        assert "--no-such-option" in doc["error"] and "--help" in doc["hint"]


def test_usage_error_without_json_is_exit_2_on_stderr() -> None:
    result = CliRunner().invoke(cli, ["task", "list", "--no-such-option"])
    assert result.exit_code == 2 and result.stdout == "" and "--no-such-option" in result.stderr


def test_every_command_is_covered() -> None:
    assert set(leaf_commands()) - NO_RUNTIME_FAILURE - {"install-hooks", "trust"} <= set(FAILING)


@pytest.mark.parametrize("command", sorted(FAILING))
def test_runtime_failure_is_one_json_object_exit_1(tmp_path, command: str) -> None:
    args = FAILING[command] or ["init"]
    plan = tmp_path / "plan.yaml"
    plan.write_text("tasks:\n  - name: a\n    description: do a\n")
    args = [str(plan) if a == "PLAN" else a for a in args]
    where = tmp_path / ("no-parent/ws" if command == "init" else "typo")
    result = CliRunner().invoke(cli, ["--workspace", str(where), *args, "--json"], input="data")
    doc = one_error(result, 1)
    assert "workspace" in doc["error"] or "no-parent" in doc["error"]
    assert result.stderr == ""


def test_missing_workspace_error_has_a_hint(tmp_path) -> None:
    doc = one_error(CliRunner().invoke(cli, ["--json", "--workspace", str(tmp_path / "typo"), "status"]), 1)
    assert doc["error"].startswith("no mavps workspace at") and "mavps init" in doc["hint"]


def test_no_workspace_configured_is_json(tmp_path) -> None:
    one_error(CliRunner().invoke(cli, ["status", "--json"]), 1)


def test_declined_confirmation_is_json(tmp_path) -> None:
    ws = str(tmp_path / "ws")
    assert CliRunner().invoke(cli, ["-w", ws, "init"]).exit_code == 0
    lock = tmp_path / "ws" / ".mavps.lock"
    lock.mkdir()
    (lock / "owner.json").write_text('{"owner": "x", "host": "h", "pid": 1, "ttl": 10, "token": "t"}')
    result = CliRunner().invoke(cli, ["-w", ws, "--json", "unlock", "--force"], input="n\n")
    assert result.exit_code == 1
    assert json.loads(result.stdout.strip().splitlines()[-1])["error"].startswith("aborted")


def test_install_hooks_takes_json(tmp_path) -> None:
    ok = CliRunner().invoke(cli, ["install-hooks", "--role", "coordinator", "--project", str(tmp_path), "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["changed"] is True
    bad = tmp_path / "file"
    bad.write_text("")
    one_error(CliRunner().invoke(cli, ["--json", "install-hooks", "--role", "worker", "--worker", "bad id!",
                                       "--project", str(tmp_path)]), 1)


def test_trust_failure_is_json() -> None:
    result = CliRunner().invoke(cli, ["--json", "--connect-timeout", "2", "trust", "127.0.0.1:1", "--yes"])
    one_error(result, 1)
