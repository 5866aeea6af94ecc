"""Messages between agents (mavps.inbox): targets, cursors, delivery once, concurrency, crashes, planted paths.

Every test runs over each transport (`target`): local, paramiko SFTP and OpenSSH SFTP against the real sshd.
"""
from __future__ import annotations

import json
import os
import threading

import pytest

from mavps.errors import InvalidInput, NotFound, UnsafePath
from mavps.inbox import Inbox, Message

pytestmark = [pytest.mark.timeout(120)]


@pytest.fixture
def team(ws):
    ws.workers.register("worker-1", ["backend"])
    ws.workers.register("worker-2", ["frontend"])
    return ws


def texts(msgs: list[Message]) -> list[str]:
    return [m.text for m in msgs]


def log_records(target, event: str) -> list[dict]:
    lines = (target.path / "agent-comms.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == event]


def test_each_target_reaches_exactly_its_readers(team, target):
    box = team.inbox
    box.send("coordinator", "worker-1", "to w1", task=3)
    box.send("coordinator", "cap:frontend", "to frontend")
    box.send("worker-2", "coordinator", "to the coordinator")
    box.send("coordinator", "all", "to everyone")
    assert texts(box.unread("worker-1", ["backend"])) == ["to w1", "to everyone"]
    assert texts(box.unread("worker-2", ["frontend"])) == ["to frontend", "to everyone"]
    assert texts(box.unread("coordinator")) == ["to the coordinator"]  # its own broadcast is not sent back
    first = box.unread("worker-1", ["backend"])[0]
    assert (first.sender, first.to, first.task, first.kind) == ("coordinator", "worker-1", 3, "message")
    sent = log_records(target, "message_sent")
    assert [(r["agent"], r["to"], r["message"]) for r in sent] == [
        ("coordinator", "worker-1", "to w1"), ("coordinator", "cap:frontend", "to frontend"),
        ("worker-2", "coordinator", "to the coordinator"), ("coordinator", "all", "to everyone")]
    assert sent[0]["task_id"] == 3 and sent[0]["message_id"] == first.id


@pytest.mark.parametrize("to, error, says", [
    ("worker-9", NotFound, "no worker 'worker-9' is registered"),
    ("cap:", InvalidInput, "name a capability after cap:"),
    ("two words", InvalidInput, "a worker id, coordinator, cap:NAME or all"),
    ("cap.backend", InvalidInput, "reserved"),
])
def test_an_unknown_target_is_refused_and_nothing_is_written(team, target, to, error, says):
    log_before = (target.path / "agent-comms.jsonl").read_bytes()
    with pytest.raises(error, match=says):
        team.inbox.send("coordinator", to, "hello")
    assert (target.path / "agent-comms.jsonl").read_bytes() == log_before
    assert not (target.path / "inbox").exists() or os.listdir(target.path / "inbox") == []


def test_take_marks_read_once_and_peek_marks_nothing(team, target):
    box = team.inbox
    box.send("coordinator", "worker-1", "one")
    box.send("coordinator", "worker-1", "two")
    assert texts(box.unread("worker-1")) == ["one", "two"]
    assert texts(box.unread("worker-1")) == ["one", "two"]  # a peek again: still unread
    assert texts(box.take("worker-1")) == ["one", "two"]
    assert box.take("worker-1") == [] and box.unread("worker-1") == []
    box.send("coordinator", "worker-1", "three")
    assert texts(box.take("worker-1")) == ["three"]
    cursor = json.loads((target.path / "inbox" / "worker-1.cursor.json").read_text())
    assert cursor["worker-1.jsonl"] == (target.path / "inbox" / "worker-1.jsonl").stat().st_size


def test_take_with_a_limit_leaves_the_rest_unread(team):
    box = team.inbox
    for i in range(5):
        box.send("coordinator", "worker-1", f"m{i}")
    assert texts(box.take("worker-1", limit=2)) == ["m0", "m1"]
    assert texts(box.take("worker-1", limit=2)) == ["m2", "m3"]
    assert texts(box.take("worker-1")) == ["m4"]


def test_a_limit_never_skips_a_message_whose_sender_clock_was_behind(team, target):
    box = team.inbox
    box.send("coordinator", "worker-1", "sent first, stamped later")
    line = Message("x2", "2000-01-01T00:00:00Z", "worker-2", "worker-1", "sent second, stamped earlier").to_dict()
    with open(target.path / "inbox" / "worker-1.jsonl", "a") as fh:
        fh.write(json.dumps(line) + "\n")
    box.send("coordinator", "all", "a broadcast")
    got = [texts(box.take("worker-1", limit=1)) for _ in range(4)]
    assert sorted(sum(got, [])) == sorted(["sent first, stamped later", "sent second, stamped earlier",
                                           "a broadcast"])
    assert got[0] == ["sent first, stamped later"]  # its channel's order first


def test_a_worker_registered_later_gets_earlier_broadcasts(team):
    box = team.inbox
    box.send("coordinator", "cap:gpu", "for gpu workers")
    box.send("coordinator", "all", "for all")
    team.workers.register("worker-3", ["gpu"])
    assert texts(box.take("worker-3", ["gpu"])) == ["for gpu workers", "for all"]
    assert texts(box.take("worker-1", ["backend"])) == ["for all"]


def test_a_line_still_being_written_waits_for_its_end(team, target):
    box = team.inbox
    box.send("coordinator", "worker-1", "whole")
    channel = target.path / "inbox" / "worker-1.jsonl"
    line = json.dumps(Message("x1", "2099-01-01T00:00:00Z", "coordinator", "worker-1", "late").to_dict())
    with open(channel, "a") as fh:
        fh.write(line[:20])
    assert texts(box.take("worker-1")) == ["whole"]
    with open(channel, "a") as fh:
        fh.write(line[20:] + "\n")
    assert texts(box.take("worker-1")) == ["late"]


def test_junk_lines_are_skipped(team, target):
    box = team.inbox
    box.send("coordinator", "worker-1", "first")
    with open(target.path / "inbox" / "worker-1.jsonl", "a") as fh:
        fh.write('not json\n{"id": 1}\n[1, 2]\n')
    box.send("coordinator", "worker-1", "second")
    assert texts(box.take("worker-1")) == ["first", "second"]


def test_a_reader_killed_between_read_and_commit_loses_nothing(team, monkeypatch):
    box = team.inbox
    box.send("coordinator", "worker-1", "keep me")

    def killed(*a, **kw):
        raise SystemExit("killed before the commit")

    monkeypatch.setattr(Inbox, "_commit", killed)
    with pytest.raises(SystemExit):
        box.take("worker-1")
    monkeypatch.undo()
    assert texts(box.take("worker-1")) == ["keep me"]


def test_concurrent_senders_lose_and_tear_no_line(team, target):
    n_threads, per = 4, 12

    def send(i: int) -> None:
        with target.open(f"s{i}") as ws:
            for j in range(per):
                ws.inbox.send(f"s{i}", "cap:backend", f"{i}-{j} " + "x" * 3000)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (target.path / "inbox" / "cap.backend.jsonl").read_text().splitlines()
    assert len(lines) == n_threads * per and all(json.loads(line)["text"] for line in lines)
    got = texts(team.inbox.take("worker-1", ["backend"]))
    assert sorted(t.split()[0] for t in got) == sorted(f"{i}-{j}" for i in range(n_threads) for j in range(per))


def test_concurrent_readers_of_one_agent_deliver_each_message_exactly_once(team, target):
    total = 24
    delivered: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def read(i: int) -> None:
        with target.open("worker-1") as ws:
            while True:
                finished = done.is_set()
                got = ws.inbox.take("worker-1")
                with lock:
                    delivered.extend(texts(got))
                if finished and not got:
                    return

    readers = [threading.Thread(target=read, args=(i,)) for i in range(3)]
    for t in readers:
        t.start()
    for j in range(total):
        team.inbox.send("coordinator", "worker-1", f"m{j}")
    done.set()
    for t in readers:
        t.join()
    assert sorted(delivered) == sorted(f"m{j}" for j in range(total))


def test_a_planted_link_at_the_inbox_is_refused(team, target, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "worker-1.jsonl").write_text("")
    (outside / "all.jsonl").write_text("")
    (target.path / "inbox").symlink_to(outside)
    with pytest.raises(UnsafePath, match="inbox"):
        team.inbox.send("coordinator", "worker-1", "hello")
    with pytest.raises(UnsafePath, match="inbox"):
        team.inbox.take("worker-1")
    assert (outside / "worker-1.jsonl").read_text() == "" and sorted(os.listdir(outside)) == \
        ["all.jsonl", "worker-1.jsonl"]


def test_a_planted_link_at_a_channel_or_cursor_is_refused(team, target, tmp_path):
    team.inbox.send("coordinator", "all", "hi")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not append here\n")
    (target.path / "inbox" / "worker-1.jsonl").symlink_to(secret)
    with pytest.raises(UnsafePath, match="worker-1.jsonl"):
        team.inbox.send("coordinator", "worker-1", "hello")
    with pytest.raises(UnsafePath, match="worker-1.jsonl"):
        team.inbox.take("worker-1")
    assert secret.read_text() == "do not append here\n"
    (target.path / "inbox" / "worker-1.jsonl").unlink()
    (target.path / "inbox" / "worker-2.cursor.json").symlink_to(secret)
    with pytest.raises(UnsafePath, match="worker-2.cursor.json"):
        team.inbox.take("worker-2")
    assert secret.read_text() == "do not append here\n"


def test_round_trips(team, target):
    box, tr = team.inbox, team.transport
    box.send("coordinator", "all", "first send makes the channel")

    def trips(fn) -> int:
        before = tr.round_trips
        fn()
        return tr.round_trips - before

    assert trips(lambda: box.send("coordinator", "cap:backend", "x")) <= 6  # a new channel: made once
    assert trips(lambda: box.send("coordinator", "cap:backend", "y")) <= 3
    assert trips(lambda: box.send("coordinator", "worker-1", "z")) <= 6  # new channel, registration read
    assert trips(lambda: box.send("coordinator", "worker-1", "w")) <= 3
    assert trips(lambda: box.take("worker-1", ["backend"])) <= 9
    assert trips(lambda: box.unread("worker-1", ["backend"])) <= 3  # nothing new
    assert trips(lambda: box.sizes("worker-1", ["backend"])) == 1
