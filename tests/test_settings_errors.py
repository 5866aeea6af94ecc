"""Wrong settings are errors, not an empty board: a missing or uninitialised workspace, a malformed URL."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mavps.cli import cli
from mavps.errors import ConfigError, NotFound
from mavps.transport import parse_url

pytestmark = pytest.mark.usefixtures("clean_env")

READS = [["status"], ["task", "list"], ["ready"], ["log"], ["worker", "list"]]


def _args(target, path: str) -> list[str]:
    url = target.url.rsplit("/", 1)[0] + "/" + path
    args = ["--workspace", url]
    s = target.settings
    if s.get("identity_file"):
        args += ["--identity-file", str(s["identity_file"]), "--known-hosts", str(s["known_hosts"])]
    if s.get("ssh"):
        args += ["--ssh", s["ssh"]]
    return args


# ----- the library -------------------------------------------------------------------------
@pytest.mark.parametrize("made", [False, True], ids=["missing-dir", "empty-dir"])
def test_library_refuses_a_directory_that_is_not_a_workspace(target, made: bool) -> None:
    if made:
        target.path.mkdir()
    with target.open() as ws:  # opening costs no round trip: the first read tells
        for read in (ws.queue.list, ws.workers.list, lambda: ws.log.tail(5), ws.board, ws.queue.waiting):
            with pytest.raises(NotFound, match="no mavps workspace at .*run `mavps init`"):
                read()
        with pytest.raises(NotFound, match="no mavps workspace"):
            ws.queue.add("x")
        with pytest.raises(NotFound, match="no mavps workspace"):
            ws.workers.register("w1")
    assert not (target.path / "task-queue.json").exists()
    assert not (target.path / "worker-status.json").exists()


def test_a_deleted_state_file_is_reported_not_recreated(ws, target) -> None:
    (target.path / "worker-status.json").unlink()
    with pytest.raises(NotFound, match="run `mavps init`"):
        ws.workers.list()
    with pytest.raises(NotFound, match="run `mavps init`"):
        ws.queue.claim("w1")
    assert not (target.path / "worker-status.json").exists()
    ws.init()  # init is the fix: it makes what is missing
    assert ws.workers.list() == []


# ----- the command line --------------------------------------------------------------------
@pytest.mark.parametrize("cmd", READS, ids=lambda c: " ".join(c))
def test_cli_reads_of_a_typo_workspace_exit_1(target, cmd: list[str]) -> None:
    result = CliRunner().invoke(cli, [*_args(target, "typo"), *cmd])
    assert result.exit_code == 1, result.output
    assert "no mavps workspace at" in result.stderr and "run `mavps init`" in result.stderr
    assert result.stdout == ""


def test_cli_init_and_doctor_still_work_on_a_new_directory(target) -> None:
    runner = CliRunner()
    doc = runner.invoke(cli, [*_args(target, "ws"), "doctor"])
    assert doc.exit_code == 1 and "mavps init" in doc.stdout
    assert runner.invoke(cli, [*_args(target, "ws"), "init"]).exit_code == 0
    board = runner.invoke(cli, [*_args(target, "ws"), "--json", "status"])
    assert board.exit_code == 0 and json.loads(board.stdout)["counts"]["pending"] == 0


# ----- URLs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("url, host, user, path", [
    ("myvps:/ws/cc", "myvps", None, "/ws/cc"),
    ("agent@myvps:/ws/cc", "myvps", "agent", "/ws/cc"),
])
def test_scp_form_is_sftp(url: str, host: str, user: str | None, path: str) -> None:
    kind, parts = parse_url(url)
    assert kind == "sftp"
    assert (parts["host"], parts["user"], parts["path"]) == (host, user, path)


@pytest.mark.parametrize("url, suggestion", [
    ("sftp:/myvps/ws/cc", "sftp://myvps/ws/cc"),
    ("sftp:myvps/ws/cc", "sftp://myvps/ws/cc"),
    ("sftp:///ws/cc", "sftp://HOST/ws/cc"),
    ("ssh://myvps/ws/cc", "sftp://myvps/ws/cc"),
    ("myvps:ws/cc", "myvps:/ABSOLUTE/PATH"),
])
def test_malformed_url_is_refused_with_what_to_type(url: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_url(url)
    assert suggestion in str(err.value)


@pytest.mark.parametrize("url", ["./ws", "ws", "/abs/ws", "dir/with:colon", "file:/tmp/ws"])
def test_local_paths_stay_local(url: str) -> None:
    assert parse_url(url)[0] == "local"


def test_cli_refuses_malformed_url_from_config(tmp_path, monkeypatch) -> None:
    (tmp_path / "mavps.yaml").write_text("workspace: sftp:/myvps/ws/cc\n")
    monkeypatch.setenv("MAVPS_CONFIG", str(tmp_path / "mavps.yaml"))
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 1
    assert "sftp://myvps/ws/cc" in result.stderr
