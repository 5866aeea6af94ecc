"""The state files' encoding: one task (or worker) per line, compact, read by jq and by mavps alike."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from mavps.codec import dumps


def test_a_list_is_one_item_per_line_and_an_object_one_key_per_line():
    tasks = [{"id": 1, "description": "two\nlines \u2028 and \"quotes\" \u00e9"}, {"id": 2, "requires": []}]
    data = dumps(tasks)
    lines = data.decode().rstrip("\n").split("\n")  # U+2028 stays inside its line
    assert lines[0] == "[" and lines[-1] == "]" and len(lines) == 4
    assert json.loads(lines[1].rstrip(",")) == tasks[0]
    assert json.loads(data) == tasks
    workers = {"w1": {"status": "active"}, "w2": {"capabilities": ["a"]}}
    assert dumps(workers).decode().splitlines()[1:-1] == ['"w1":{"status":"active"},', '"w2":{"capabilities":["a"]}']
    for value in ([], {}, {"format": 1}, [1]):
        assert json.loads(dumps(value)) == value and dumps(value).endswith(b"\n")


def test_the_queue_file_is_compact(ws, target):
    for i in range(20):
        ws.queue.add(f"task {i} with a description of a usual length", "# do it\n", requires=["backend"])
    ws.queue.claim("w1", ["backend"])
    data = (target.path / "task-queue.json").read_bytes()
    tasks = json.loads(data)
    assert len(tasks) == 20 and data.count(b"\n") == 22  # "[", a line per task, "]"
    indented = (json.dumps(tasks, indent=2, ensure_ascii=False) + "\n").encode()
    assert len(data) < 0.8 * len(indented)


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_jq_reads_the_state_files(ws, target):
    ws.queue.add("for jq", "# x\n")
    ws.queue.claim("w1")
    out = subprocess.run(["jq", "-r", ".[0].claimed_by", str(target.path / "task-queue.json")], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "w1"
    out = subprocess.run(["jq", "-r", "keys[0]", str(target.path / "worker-status.json")], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "w1"


def test_null_and_empty_own_fields_are_left_out_unknown_ones_kept(ws, target):
    ws.queue.add("plain", "# x\n", extra={"custom": None, "tags": []})
    before = ws.queue.list()
    ws.queue.add("second", "# y\n")  # rewrites the queue file
    raw = json.loads((target.path / "task-queue.json").read_bytes())[0]
    assert "claimed_by" not in raw and "requires" not in raw and "result" not in raw
    assert raw["custom"] is None and raw["tags"] == [] and raw["status"] == "pending"
    assert ws.queue.list()[0] == before[0]
