"""The Stop hook pulls a task it hands to a worker off the VPS into the project directory (`auto_pull`), and
says so in the block reason; a worker on the VPS gets no pull; a failed pull does not fail the hand-over."""
from __future__ import annotations

import os

import pytest
from test_exchange import set_touches
from test_hook import block_reason, hook_env, run_hook, stop_input

pytestmark = pytest.mark.usefixtures("clean_env")


def task_with_files(ws):
    ws.write_file("src/a.py", b"a = 1\n")
    ws.write_file("docs/spec.md", b"spec\n")
    task = ws.queue.add("edit a", "# edit src/a.py\n", context_files=["docs/spec.md"])
    set_touches(ws, task.id, ["src/**"])
    return task.id


def hand_over(target, tmp_path, **settings) -> tuple[str, object]:
    project = tmp_path / "project"
    project.mkdir()
    env = hook_env(target, tmp_path, **settings)
    env["CLAUDE_PROJECT_DIR"] = str(project)
    return block_reason(run_hook(env, stop_input(), "stop")), project


def test_the_stop_hook_pulls_the_task_for_a_worker_off_the_vps(ws, target, tmp_path):
    tid = task_with_files(ws)
    reason, project = hand_over(target, tmp_path)
    assert f"task #{tid}" in reason
    if target.kind == "local":  # on the VPS: the project directory is the workspace, nothing to pull
        assert "pulled" not in reason and not (project / "src").exists()
        return
    assert (project / "src/a.py").read_bytes() == b"a = 1\n" and (project / "docs/spec.md").exists()
    assert (project / f".mavps/pull-{tid}.json").exists()
    assert "- src/a.py" in reason and f"mavps complete {tid}" in reason and str(project) in reason


OFF_THE_VPS = pytest.mark.parametrize("target", ["sftp", "openssh"], indirect=True)  # a local worker never pulls


@OFF_THE_VPS
def test_auto_pull_off_pulls_nothing(ws, target, tmp_path):
    task_with_files(ws)
    reason, project = hand_over(target, tmp_path, auto_pull="false")
    assert "pulled" not in reason and not (project / "src").exists()


@OFF_THE_VPS
def test_a_failed_pull_does_not_fail_the_hand_over(ws, target, tmp_path):
    tid = task_with_files(ws)
    os.symlink("/etc", target.path / "src" / "etc")  # planted: the pull refuses it
    reason, project = hand_over(target, tmp_path)
    assert f"task #{tid}" in reason and "could not pull" in reason
    assert f"mavps pull {tid} --to {project}" in reason
    assert ws.queue.get(tid).claimed_by == "w1"
