"""`mavps pull` / `mavps push`: a task's files to a worker's directory and back, never losing an edit.

Over every transport: a round trip; every interleaving of two pulls, a hand edit in the workspace and two
pushes (each push lands only on an unchanged base, else is refused with nothing written); links and `..`
refused on both sides; a holder that lost its claim cannot push; `complete` pushes first and stops on a
conflict; a pushed file is replaced atomically (a reader sees the old or the new bytes only).
"""
from __future__ import annotations

import itertools
import json
import os
import threading

import pytest
from test_cli import Mavps

from mavps.errors import Conflict, Fenced, InvalidInput, Refused, UnsafePath
from mavps.exchange import load_record, local_target, pull, push, record_path
from mavps.models import QUEUE_FILE
from mavps.state import dump_tasks, load_tasks

pytestmark = pytest.mark.usefixtures("clean_env")


def set_touches(ws, tid: int, touches: list[str]) -> None:
    """Give a task its touches (the way `task add --touches` records them)."""
    def change(txn):
        tasks = load_tasks(txn.json(QUEUE_FILE, []))
        next(t for t in tasks if t.id == tid).touches = touches
        txn.write(QUEUE_FILE, dump_tasks(tasks))
    ws.store.transact([QUEUE_FILE], change)


def held_task(ws, touches=("src/**",), worker="w1", context=()):
    task = ws.queue.add("edit the sources", "# do it\n", context_files=list(context))
    set_touches(ws, task.id, list(touches))
    assert ws.queue.claim(worker).id == task.id
    return task.id


def test_pull_then_push_round_trip(ws, target, tmp_path):
    ws.write_file("src/a.py", b"a = 1\n")
    ws.write_file("src/pkg/b.py", b"b = 1\n")
    ws.write_file("docs/spec.md", b"the spec\n")
    ws.write_file("other.txt", b"not touched\n")
    tid = held_task(ws, context=["docs/spec.md"])
    loc = tmp_path / "loc"
    got = pull(ws.store, tid, str(loc), "w1")
    assert got["files"] == ["src/a.py", "src/pkg/b.py"] and got["context"] == ["docs/spec.md"]
    assert (loc / "src/pkg/b.py").read_bytes() == b"b = 1\n" and (loc / "docs/spec.md").exists()
    assert not (loc / "other.txt").exists()
    with open(record_path(str(loc), tid)) as fh:
        record = json.load(fh)
    assert record["claim_token"] and set(record["files"]) == {"src/a.py", "src/pkg/b.py"}
    assert record["files"]["src/a.py"]["size"] == 6

    (loc / "src/a.py").write_bytes(b"a = 2\n")
    (loc / "src/new/deep").mkdir(parents=True)
    (loc / "src/new/deep/c.py").write_bytes(b"c = 3\n")
    dry = push(ws.store, tid, str(loc), "w1", dry_run=True)
    assert dry["written"] == ["src/a.py", "src/new/deep/c.py"] and dry["conflicts"] == []
    assert (target.path / "src/a.py").read_bytes() == b"a = 1\n"  # a dry run writes nothing
    done = push(ws.store, tid, str(loc), "w1")
    assert done["written"] == ["src/a.py", "src/new/deep/c.py"]
    assert (target.path / "src/a.py").read_bytes() == b"a = 2\n"
    assert (target.path / "src/new/deep/c.py").read_bytes() == b"c = 3\n"
    pushed = ws.log.tail(5, event="pushed")
    assert pushed and pushed[-1]["paths"] == ["src/a.py", "src/new/deep/c.py"]

    (loc / "src/a.py").write_bytes(b"a = 3\n")  # the bases moved with the push: a second push works
    assert push(ws.store, tid, str(loc), "w1")["written"] == ["src/a.py"]
    assert (target.path / "src/a.py").read_bytes() == b"a = 3\n"
    assert push(ws.store, tid, str(loc), "w1")["written"] == []

    os.remove(loc / "src/pkg/b.py")
    assert push(ws.store, tid, str(loc), "w1")["kept"] == ["src/pkg/b.py"]
    assert (target.path / "src/pkg/b.py").exists()  # removed here only: kept without --delete
    assert push(ws.store, tid, str(loc), "w1", delete=True)["deleted"] == ["src/pkg/b.py"]
    assert not (target.path / "src/pkg/b.py").exists()


EVENTS = ["pull A", "pull B", "edit", "push A", "push B"]


def orders():
    """Every order of the five events in which each worker pulls before it pushes (30 orders)."""
    for order in itertools.permutations(EVENTS):
        if order.index("pull A") < order.index("push A") and order.index("pull B") < order.index("push B"):
            yield order


def test_push_conflicts_for_every_interleaving(ws, target, tmp_path):
    """Two pulls of one file (A, B), a hand edit in the workspace, two pushes, in every order. A model says
    what each step must do: a push lands only if the workspace still holds its pull's base, else it is
    refused with nothing written; so no edit is ever overwritten unseen."""
    all_orders = list(orders())
    assert len(all_orders) == 30
    for n, order in enumerate(all_orders):
        path = f"src/f{n}.py"
        ws.write_file(path, b"base\n")
        tid = held_task(ws, touches=[path])
        dirs = {w: tmp_path / f"{n}-{w}" for w in "AB"}
        model, bases = b"base\n", {}
        for step in order:
            verb, _, who = step.partition(" ")
            if verb == "pull":
                pull(ws.store, tid, str(dirs[who]), "w1")
                bases[who] = model
                (dirs[who] / path).write_bytes(f"edit by {who}\n".encode())
            elif verb == "edit":
                (target.path / path).write_bytes(b"edit by hand\n")
                model = b"edit by hand\n"
            elif bases[who] == model:
                push(ws.store, tid, str(dirs[who]), "w1")
                model = f"edit by {who}\n".encode()
            else:
                with pytest.raises(Conflict) as caught:
                    push(ws.store, tid, str(dirs[who]), "w1")
                assert caught.value.conflicts == [{"path": path, "change": "changed in the workspace since the pull"}]
                assert f"mavps pull {tid}" in str(caught.value)
            assert (target.path / path).read_bytes() == model, (order, step)
        ws.queue.complete(tid, "w1")


def test_two_pulls_creating_one_new_file_the_second_push_conflicts(ws, target, tmp_path):
    tid = held_task(ws)
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        pull(ws.store, tid, str(d), "w1")
        (d / "src").mkdir()
        (d / "src/new.py").write_bytes(f"by {d.name}\n".encode())
    push(ws.store, tid, str(a), "w1")
    with pytest.raises(Conflict) as caught:
        push(ws.store, tid, str(b), "w1")
    assert caught.value.conflicts == [{"path": "src/new.py", "change": "created in the workspace since the pull"}]
    assert (target.path / "src/new.py").read_bytes() == b"by a\n"
    assert push(ws.store, tid, str(b), "w1", dry_run=True)["conflicts"] == caught.value.conflicts


def test_a_conflict_writes_nothing_at_all(ws, target, tmp_path):
    """One conflicting file among several: none of them is written."""
    for name in "abc":
        ws.write_file(f"src/{name}.py", b"old\n")
    tid = held_task(ws)
    loc = tmp_path / "loc"
    pull(ws.store, tid, str(loc), "w1")
    for name in "abc":
        (loc / f"src/{name}.py").write_bytes(b"mine\n")
    (loc / "src/d.py").write_bytes(b"new\n")
    (target.path / "src/b.py").write_bytes(b"theirs\n")
    with pytest.raises(Conflict):
        push(ws.store, tid, str(loc), "w1")
    assert [(target.path / f"src/{n}.py").read_bytes() for n in "abc"] == [b"old\n", b"theirs\n", b"old\n"]
    assert not (target.path / "src/d.py").exists()
    again = pull(ws.store, tid, str(loc), "w1")  # pulling again keeps the edits aside
    assert sorted(again["kept_edits"]) == ["src/a.py", "src/b.py", "src/c.py"]
    assert (loc / ".mavps/mine/src/b.py").read_bytes() == b"mine\n"
    assert (loc / "src/b.py").read_bytes() == b"theirs\n"


def test_a_holder_that_lost_its_claim_cannot_push(ws, target, tmp_path):
    ws.write_file("src/a.py", b"old\n")
    tid = held_task(ws)
    loc = tmp_path / "loc"
    pull(ws.store, tid, str(loc), "w1")
    (loc / "src/a.py").write_bytes(b"late\n")
    ws.queue.release(tid, "w1")
    assert ws.queue.claim("w1").id == tid  # claimed again: a new claim, the old pull's is gone
    with pytest.raises(Fenced):
        push(ws.store, tid, str(loc), "w1")
    ws.queue.release(tid, "w1")
    assert ws.queue.claim("w2").id == tid
    with pytest.raises(Fenced):
        push(ws.store, tid, str(loc), "w1")
    assert (target.path / "src/a.py").read_bytes() == b"old\n"


def test_paths_outside_the_touches_are_refused(ws, target, tmp_path):
    ws.write_file("src/a.py", b"a\n")
    ws.write_file("docs/spec.md", b"spec\n")
    tid = held_task(ws, context=["docs/spec.md"])
    loc = tmp_path / "loc"
    pull(ws.store, tid, str(loc), "w1")
    (loc / "src/a.py").write_bytes(b"mine\n")
    (loc / "docs/spec.md").write_bytes(b"edited context\n")
    with pytest.raises(Refused, match="does not touch docs/spec.md"):
        push(ws.store, tid, str(loc), "w1")
    assert (target.path / "src/a.py").read_bytes() == b"a\n"
    set_touches(ws, tid, ["lib/**"])  # narrowed after the pull: checked again under the lock
    (loc / "docs/spec.md").write_bytes(b"spec\n")
    with pytest.raises(Refused, match="does not touch src/a.py"):
        push(ws.store, tid, str(loc), "w1")
    assert (target.path / "src/a.py").read_bytes() == b"a\n"


def test_pull_refuses_links_planted_in_the_workspace(ws, target, tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("private")
    ws.write_file("src/a.py", b"a\n")
    tid = held_task(ws)
    os.symlink(secret, target.path / "src" / "out")
    with pytest.raises(InvalidInput, match="symlink"):
        pull(ws.store, tid, str(tmp_path / "l1"), "w1")
    os.remove(target.path / "src" / "out")
    os.symlink(secret / "key", target.path / "src" / "key.py")
    with pytest.raises(InvalidInput, match="symlink"):
        pull(ws.store, tid, str(tmp_path / "l2"), "w1")
    os.remove(target.path / "src" / "key.py")
    os.rename(target.path / "src", target.path / "real")
    os.symlink(target.path / "real", target.path / "src")  # the base directory itself a link
    with pytest.raises(InvalidInput, match="symlink"):
        pull(ws.store, tid, str(tmp_path / "l3"), "w1")
    assert not (tmp_path / "l1" / "src" / "out").exists() and not (tmp_path / "l2" / "src" / "key.py").exists()


def test_push_refuses_links_planted_in_the_workspace_after_the_pull(ws, target, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.py").write_bytes(b"a\n")
    ws.write_file("src/pkg/a.py", b"a\n")
    ws.write_file("src/b.py", b"b\n")
    tid = held_task(ws)
    loc = tmp_path / "loc"
    pull(ws.store, tid, str(loc), "w1")
    (loc / "src/pkg/a.py").write_bytes(b"mine\n")
    os.rename(target.path / "src/pkg", tmp_path / "moved")
    os.symlink(outside, target.path / "src/pkg")  # a directory swapped for a link to outside
    with pytest.raises(UnsafePath):
        push(ws.store, tid, str(loc), "w1")
    assert (outside / "a.py").read_bytes() == b"a\n"
    os.remove(target.path / "src/pkg")
    os.rename(tmp_path / "moved", target.path / "src/pkg")
    (loc / "src/pkg/a.py").write_bytes(b"a\n")
    (loc / "src/b.py").write_bytes(b"mine\n")
    os.remove(target.path / "src/b.py")
    os.symlink(outside / "a.py", target.path / "src/b.py")  # a file swapped for a link
    with pytest.raises(UnsafePath):
        push(ws.store, tid, str(loc), "w1")
    assert (outside / "a.py").read_bytes() == b"a\n" and os.path.islink(target.path / "src/b.py")


def test_local_links_and_dotdot_are_refused(ws, target, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    ws.write_file("src/pkg/a.py", b"a\n")
    tid = held_task(ws)
    loc = tmp_path / "loc"
    (loc / "src").mkdir(parents=True)
    os.symlink(outside, loc / "src" / "pkg")  # the local directory leads out
    with pytest.raises(InvalidInput, match="symlink"):
        pull(ws.store, tid, str(loc), "w1")
    assert not (outside / "a.py").exists()
    os.remove(loc / "src" / "pkg")
    pull(ws.store, tid, str(loc), "w1")
    os.symlink("/etc/hostname", loc / "src" / "stolen.py")  # a local link pushed would read outside
    with pytest.raises(InvalidInput, match="symlink"):
        push(ws.store, tid, str(loc), "w1")
    assert not (target.path / "src/stolen.py").exists()
    for bad in ("../x.py", "src/../../x.py", "/etc/passwd", ".mavps/pull-1.json"):
        with pytest.raises(InvalidInput):
            local_target(str(loc), bad)


def test_pushed_file_is_replaced_atomically(ws, target, tmp_path):
    old, new = b"o" * 200_000, b"n" * 150_000
    ws.write_file("src/big.bin", old)
    tid = held_task(ws)
    loc = tmp_path / "loc"
    pull(ws.store, tid, str(loc), "w1")
    seen: set[bytes] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.add((target.path / "src/big.bin").read_bytes())
            except FileNotFoundError:
                seen.add(b"missing")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(6):
            (loc / "src/big.bin").write_bytes(new if i % 2 == 0 else old)
            push(ws.store, tid, str(loc), "w1")
    finally:
        stop.set()
        thread.join()
    assert seen <= {old, new} and len(seen) >= 1


def test_complete_pushes_first_and_stops_on_a_conflict(target, tmp_path, monkeypatch):
    m = Mavps(target)
    m("init")
    ws = target.open("w1")
    try:
        ws.write_file("src/a.py", b"old\n")
        tid = held_task(ws)
    finally:
        ws.close()
    loc = tmp_path / "loc"
    m("pull", str(tid), "--to", str(loc), "--worker", "w1")
    (loc / "src/a.py").write_bytes(b"mine\n")
    (target.path / "src/a.py").write_bytes(b"theirs\n")
    monkeypatch.chdir(loc)
    out = m("complete", str(tid), "--worker", "w1", code=1)
    assert "src/a.py: changed in the workspace since the pull" in out.stderr
    assert m.json("task", "show", str(tid))["status"] == "in_progress"
    assert (target.path / "src/a.py").read_bytes() == b"theirs\n"
    m("pull", str(tid), "--worker", "w1")  # merge: take theirs, add mine
    (loc / "src/a.py").write_bytes(b"theirs\nmine\n")
    m("complete", str(tid), "--worker", "w1")
    assert (target.path / "src/a.py").read_bytes() == b"theirs\nmine\n"
    assert m.json("task", "show", str(tid))["status"] == "completed"
    assert load_record(str(loc), tid)["files"]["src/a.py"]["size"] == len(b"theirs\nmine\n")


def test_the_demo_shows_a_conflict_being_caught():
    from mavps.demo import exchange_scene

    lines: list[str] = []
    scene = exchange_scene(lines.append)
    assert scene["ok"] and scene["conflicts"] == [{"path": "src/greeting.py",
                                                   "change": "changed in the workspace since the pull"}]
    assert any("refused, nothing written" in line for line in lines)


def test_a_directory_replaced_by_a_file_in_the_workspace_stops_the_push_cleanly(ws, target, tmp_path):
    from mavps.errors import MavpsError

    ws.write_file("src/pkg/a.py", b"a\n")
    tid = held_task(ws)
    loc = tmp_path / "loc"
    pull(ws.store, tid, str(loc), "w1")
    (loc / "src/pkg/a.py").write_bytes(b"mine\n")
    os.remove(target.path / "src/pkg/a.py")
    os.rmdir(target.path / "src/pkg")
    (target.path / "src/pkg").write_bytes(b"a file now\n")
    with pytest.raises(MavpsError) as caught:
        push(ws.store, tid, str(loc), "w1")
    assert type(caught.value) is not MavpsError or "nothing was changed" in str(caught.value)
    assert (target.path / "src/pkg").read_bytes() == b"a file now\n"


def test_the_commands_pull_push_and_a_dry_run_with_conflicts(target, tmp_path):
    m = Mavps(target)
    m("init")
    ws = target.open("w1")
    try:
        ws.write_file("src/a.py", b"old\n")
        tid = held_task(ws)
    finally:
        ws.close()
    loc = tmp_path / "loc"
    got = m.json("pull", str(tid), "--to", str(loc), "--worker", "w1")
    assert got["files"] == ["src/a.py"]
    (loc / "src/a.py").write_bytes(b"mine\n")
    (target.path / "src/a.py").write_bytes(b"theirs\n")
    dry = m.json("push", str(tid), "--from", str(loc), "--worker", "w1", "--dry-run", code=1)
    assert dry["conflicts"] == [{"path": "src/a.py", "change": "changed in the workspace since the pull"}]
    refused = m.json("push", str(tid), "--from", str(loc), "--worker", "w1", code=1)
    assert "nothing was written" in refused["error"] and f"mavps pull {tid}" in refused["hint"]
    assert (target.path / "src/a.py").read_bytes() == b"theirs\n"


def test_state_files_are_never_pulled_or_pushed(ws, target, tmp_path):
    ws.write_file("notes.md", b"notes\n")
    tid = held_task(ws, touches=["**"])
    loc = tmp_path / "loc"
    got = pull(ws.store, tid, str(loc), "w1")
    assert "notes.md" in got["files"]
    assert not any(p.startswith(("task-queue.json", "worker-status.json", "workspace.json", "agent-comms",
                                 ".mavps")) for p in got["files"])
    queue_before = (target.path / "task-queue.json").read_bytes()
    (loc / "task-queue.json").write_text("[]\n")
    (loc / "notes.md").write_bytes(b"more notes\n")
    assert push(ws.store, tid, str(loc), "w1")["written"] == ["notes.md"]
    assert (target.path / "task-queue.json").read_bytes() == queue_before
