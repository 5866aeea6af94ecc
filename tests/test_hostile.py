"""Hostile and bad input: property tests for every parser and validator, and
explicit cases through the library and the CLI. Each gets a clear error (a
MavpsError subclass) or is handled; none corrupts or escapes the workspace."""
from __future__ import annotations

import json
import os
import posixpath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mavps import config, validate
from mavps.errors import ConfigError, CorruptState, InvalidInput, MavpsError
from mavps.log import parse_lines
from mavps.models import Task, load_tasks, load_workers
from mavps.queue import parse_archive
from mavps.store import parse_json
from mavps.transport import parse_url

anything = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary(),
                     st.lists(st.text(max_size=5), max_size=3),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20)
task_keys = st.sampled_from(["id", "description", "instruction_file", "context_files", "status", "claimed_by",
                             "claimed_at", "completed_at", "requires", "priority", "depends_on", "max_attempts",
                             "attempts", "lease_expires_at", "claim_token", "result", "error", "extra_field"])
task_like = st.dictionaries(task_keys, json_values, max_size=10)
hostile_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=80) | st.sampled_from(
    ["..", ".", "/", "a/b", "../../etc/passwd", "x\n", "x\x00y", "a" * 65, "a" * 10000, " ", "-", "~root", "C:\\x"])
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.one_of(hostile_text, anything))
def test_worker_id_accepts_only_the_safe_alphabet(value):
    try:
        out = validate.worker_id(value)
    except InvalidInput:
        return
    assert out == value and 1 <= len(out) <= 64 and out not in (".", "..")
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in out)


@FAST
@given(st.one_of(hostile_text, anything))
def test_relative_paths_never_escape(value):
    try:
        out = validate.relative_path(value)
    except InvalidInput:
        return
    assert not out.startswith("/") and "\x00" not in out and "\n" not in out
    assert ".." not in out.split("/")
    joined = posixpath.normpath(posixpath.join("/ws", out))
    assert joined.startswith("/ws/"), (value, out)


@FAST
@given(st.one_of(hostile_text, anything, st.integers(min_value=-2**70, max_value=2**70)))
def test_task_id_is_a_safe_positive_integer(value):
    try:
        out = validate.task_id(value)
    except InvalidInput:
        return
    assert type(out) is int and 0 < out < 2**53


@FAST
@given(st.one_of(hostile_text, anything))
def test_text_and_capabilities(value):
    for fn in (lambda v: validate.text(v, "x", 1000), validate.capabilities, validate.agent_name):
        try:
            fn(value)
        except InvalidInput:
            pass


@FAST
@given(st.one_of(json_values, st.lists(task_like, max_size=4), task_like))
def test_load_tasks_parses_or_reports_corruption(raw):
    try:
        tasks = load_tasks(raw)
    except CorruptState as exc:
        assert "task-queue.json" in str(exc)
        return
    ids = [t.id for t in tasks]
    assert len(ids) == len(set(ids))
    for t in tasks:  # what loads writes back as it was read (unknown fields kept)
        assert Task.from_dict(json.loads(json.dumps(t.to_dict()))).to_dict() == t.to_dict()


@FAST
@given(st.one_of(json_values,
                 st.dictionaries(st.text(max_size=10), st.dictionaries(task_keys, json_values, max_size=5))))
def test_load_workers_parses_or_reports_corruption(raw):
    try:
        load_workers(raw)
    except CorruptState:
        pass


@FAST
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_parse_json_names_the_problem(data):
    try:
        parse_json("task-queue.json", data)
    except CorruptState as exc:
        assert str(exc).startswith("task-queue.json: ")


@FAST
@given(st.binary(max_size=400), st.booleans())
def test_log_and_archive_parsers_never_raise(data, partial):
    assert all(isinstance(r, dict) for r in parse_lines(data, partial))
    parse_archive(data)


@FAST
@given(st.one_of(hostile_text, st.text(max_size=60).map(lambda s: "sftp://" + s), anything))
def test_parse_url_is_total(url):
    try:
        kind, parts = parse_url(url)
    except ConfigError:
        return
    assert kind in ("local", "sftp")
    if kind == "sftp":
        assert parts["path"].startswith("/") and parts["host"]


@FAST
@given(st.sampled_from(config.KEYS), st.one_of(anything, hostile_text, st.sampled_from(["nan", "inf", "-1", "1e999"])))
def test_config_convert_is_total(key, value):
    try:
        out = config.convert(key, value, "test")
    except ConfigError as exc:
        assert key in str(exc)
        return
    if isinstance(out, float):
        assert out == out and out != float("inf")


# ----- explicit cases through the library -------------------------------------------
BAD_IDS = ["a/b", "..", ".", "x\ny", "x\x00y", "a" * 65, "", " ", "../../etc", "w 1", "ü"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_worker_ids_refused_everywhere(ws, bad):
    for call in (lambda: ws.queue.claim(bad), lambda: ws.workers.register(bad, []),
                 lambda: ws.queue.heartbeat(bad), lambda: ws.log.append("hi", agent=bad or "a/b")):
        with pytest.raises(InvalidInput):
            call()
    assert ws.workers.list() == []


@pytest.mark.parametrize("bad", ["0", "-1", "1.5", "1e3", "x", "", "1/2", "9" * 30, True, None, 2**60])
def test_bad_task_ids_refused(ws, bad):
    with pytest.raises(InvalidInput):
        ws.queue.get(bad)
    with pytest.raises(InvalidInput):
        ws.queue.complete(bad, "w1")


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x", "a/../../x", "~/x", "\\\\server\\x", "C:/x", "a\x00b",
                                 "x\ny", ""])
def test_paths_outside_refused(ws, target, bad):
    before = (target.path / "task-queue.json").read_bytes()
    with pytest.raises(InvalidInput):
        ws.queue.add("t", "x", context_files=[bad])
    with pytest.raises((InvalidInput, MavpsError)):
        ws.queue.add("t", instruction_file=bad)
    assert (target.path / "task-queue.json").read_bytes() == before


def test_hand_edited_instruction_file_outside_is_not_read(ws, target):
    ws.queue.add("t", "x")
    q = json.loads((target.path / "task-queue.json").read_text())
    q[0]["instruction_file"] = "../../../../etc/passwd"
    (target.path / "task-queue.json").write_text(json.dumps(q))
    with pytest.raises(InvalidInput):
        ws.queue.instructions(ws.queue.get(1))


def test_huge_inputs_refused(ws, target):
    before = (target.path / "task-queue.json").read_bytes()
    with pytest.raises(InvalidInput):
        ws.queue.add("d" * 5000, "x")
    with pytest.raises(InvalidInput):
        ws.queue.add("t", "x" * (2 * 1024 * 1024))
    with pytest.raises(InvalidInput):
        ws.log.append("m" * 40000)
    assert (target.path / "task-queue.json").read_bytes() == before
    ws.queue.add("t", "ü" * 300_000)  # large but allowed instructions: written whole
    assert (target.path / "tasks/task-1-instructions.md").read_text() == "ü" * 300_000


@pytest.mark.parametrize("content", [
    b"", b"[", b'[{"id": 1, "status": "pending"}', b"\xff\xfe", b"{}", b'"text"', b"[1, 2]",
    b'[{"id": "1"}]', b'[{"id": 1, "status": "bogus"}]', b'[{"id": 1, "depends_on": "2"}]',
    b'[{"id": 1, "context_files": [1]}]', b'[{"id": 1}, {"id": 1}]', b'[{"id": -3}]',
    b'[{"id": 1, "priority": "high"}]',
    b'[{"id": 1, "attempts": true}]', b"null" + b" " * 10, b'[{"id": 1e400}]',
])
def test_corrupt_queue_files_reported_and_untouched(ws, target, content):
    (target.path / "task-queue.json").write_bytes(content)
    for call in (lambda: ws.queue.add("t", "x"), lambda: ws.queue.claim("w1"), lambda: ws.queue.list(),
                 lambda: ws.board()):
        try:
            call()
        except CorruptState as exc:
            assert "task-queue.json" in str(exc)
        else:
            assert content.strip() in (b"{}", b"null"), f"{content!r} was accepted"
    assert (target.path / "task-queue.json").read_bytes() == content or content.strip() in (b"{}", b"null")
    assert not (target.path / ".mavps.lock").exists()


@pytest.mark.parametrize("content", [b"[]", b'{"w1": 3}', b'{"w1": {"capabilities": "all"}}',
                                     b'{"w1": {"current_task": "x"}}', b"{"])
def test_corrupt_worker_files_reported_and_untouched(ws, target, content):
    ws.queue.add("t", "x")
    (target.path / "worker-status.json").write_bytes(content)
    with pytest.raises(CorruptState, match="worker-status.json"):
        ws.queue.claim("w1")
    assert (target.path / "worker-status.json").read_bytes() == content
    assert ws.queue.get(1).status.value == "pending"


def test_torn_and_foreign_log_lines_are_skipped(ws, target):
    with open(target.path / "agent-comms.jsonl", "ab") as fh:
        fh.write(b'{"torn": \n[1,2]\n\xff\xfe\n"just text"\n')
    ws.log.append("still works")
    assert ws.log.tail(1)[0]["message"] == "still works"


# ----- explicit cases through the CLI ----------------------------------------------------
cli = pytest.importorskip("mavps.cli")


@pytest.fixture
def run_cli(tmp_path, monkeypatch):
    from click.testing import CliRunner

    monkeypatch.chdir(tmp_path)
    for k in [k for k in os.environ if k.startswith("MAVPS_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "ws"
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli.cli, ["--workspace", str(path), *args], catch_exceptions=True)

    assert run("init").exit_code == 0
    return run, path


@pytest.mark.parametrize("args", [
    ["claim", "--worker", "../evil"], ["claim", "--worker", "a\nb"], ["claim", "--worker", "x" * 100],
    ["worker", "register", "a/b"], ["complete", "../1", "--worker", "w1"], ["complete", "0", "--worker", "w1"],
    ["task", "add", "t", "--context", "/etc/passwd"], ["task", "add", "t", "--context", "../../x"],
    ["task", "add", "d" * 5000], ["task", "show", "1; rm -rf /"], ["log", "m" * 40000],
    ["task", "add", "t", "--depends-on", "99"], ["task", "list", "--status", "bogus"],
])
def test_cli_refuses_bad_input_cleanly(run_cli, args):
    run, path = run_cli
    before = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    result = run(*args)
    assert result.exit_code in (1, 2), (args, result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    after = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if k != "agent-comms.jsonl"} == \
        {k: v for k, v in before.items() if k != "agent-comms.jsonl"}


def test_cli_corrupt_queue_is_a_clear_error(run_cli):
    run, path = run_cli
    (path / "task-queue.json").write_text('[{"id": 1,')
    result = run("task", "list")
    assert result.exit_code == 1 and "task-queue.json" in result.output and "Traceback" not in result.output
    assert (path / "task-queue.json").read_text() == '[{"id": 1,'
