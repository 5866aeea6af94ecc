"""A claim's instructions read in the claim's own round trips (mavps/riders.py), and every case where they
are not: the usual read then says the same as before (a link refused, a big file read whole)."""
from __future__ import annotations

import os

from mavps.transport.base import CHUNK


def waits(ws, fn):
    before = ws.transport.round_trips
    result = fn()
    return ws.transport.round_trips - before, result


def test_claim_reads_the_instructions_in_its_own_round_trips(ws):
    ws.queue.add("one", "# Step one\nthen two \u00e9\n")
    ws.queue.add("two", "# Other\n")
    plain, _ = waits(ws, lambda: ws.queue.get_work("w0"))  # a claim that reads nothing: the baseline
    n, got = waits(ws, lambda: ws.queue.get_work("w1", read=True))
    assert got.task.id == 2 and got.instructions == "# Other\n".encode()
    assert n == plain
    assert ws.queue.claimed_instructions(got) == ("# Other\n", None)


def test_a_held_task_comes_back_with_its_instructions(ws):
    ws.queue.add("one", "# Step one\n")
    first = ws.queue.get_work("w1", read=True)
    again = ws.queue.get_work("w1", read=True)
    assert again.already_held and again.task.id == first.task.id and again.instructions == b"# Step one\n"


def test_a_linked_instruction_file_is_refused_as_before(ws, target, tmp_path):
    task = ws.queue.add("one", "# Step one\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the worker\n")
    instr = target.path / task.instruction_file
    instr.unlink()
    os.symlink(secret, instr)
    got = ws.queue.get_work("w1", read=True)
    assert got.task.id == task.id and got.instructions is None
    text, problem = ws.queue.claimed_instructions(got)
    assert text == "" and "symlink" in problem


def test_instructions_bigger_than_one_window_are_read_whole_afterwards(ws):
    big = "x" * (17 * CHUNK) + "end\n"
    ws.queue.add("big", big)
    got = ws.queue.get_work("w1", read=True)
    assert got.instructions is None
    assert ws.queue.claimed_instructions(got) == (big, None)


def test_a_missing_instruction_file_is_reported_as_before(ws, target):
    task = ws.queue.add("one", "# Step one\n")
    (target.path / task.instruction_file).unlink()
    got = ws.queue.get_work("w1", read=True)
    assert got.instructions is None
    text, problem = ws.queue.claimed_instructions(got)
    assert text == "" and "no file" in problem


def test_the_stop_hooks_hand_over_reads_the_instructions_in_its_transaction(ws):
    ws.queue.add("one", "# One\n")
    ws.queue.add("two", "# Two\n")
    plain, _ = waits(ws, lambda: ws.queue.next_task("w0"))  # claims task 1, reads nothing
    n, found = waits(ws, lambda: ws.queue.next_task("w1", read=True))
    assert n == plain and found.claimed.id == 2 and found.instructions == {2: b"# Two\n"}
    again = ws.queue.next_task("w1", read=True)  # holding task 2: handed back, with its instructions
    assert again.claimed is None and [t.id for t in again.held] == [2] and again.instructions == {2: b"# Two\n"}
