"""The naive reference claim: plain paramiko calls, one after another.

This is what a straightforward implementation of "claim a task under a lock"
looks like with paramiko's blocking API: mkdir the lock, write the owner file,
read the queue with sftp.open().read(), write a temp file, posix_rename it over
the queue, remove the owner file, rmdir the lock. Same data format as mavps
(task-queue.json, the `.mavps.lock` directory), same choice of task (the
library's pure `claimable`).

It does LESS work than `Queue.claim` (no worker record in worker-status.json,
no log line, no reaping of expired leases, no stale-lock handling), so the
ratio reported against it is conservative. Benchmark use only.
"""
from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

import paramiko

from mavps.models import QUEUE_FILE, TaskStatus, load_tasks
from mavps.queue import claimable
from mavps.store import dumps


def connect(host: str, port: int, user: str, key_file: str,
            known_hosts: str) -> tuple[paramiko.SSHClient, paramiko.SFTPClient]:
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host, port=port, username=user, key_filename=key_file, allow_agent=False, look_for_keys=False,
                   timeout=10)
    return client, client.open_sftp()


class RoundTripCounter:
    """Counts the waits for a reply on a paramiko SFTPClient (each blocking call waits once)."""

    def __init__(self, sftp: paramiko.SFTPClient) -> None:
        self.sftp = sftp
        self.count = 0
        original = sftp._read_response

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        sftp._read_response = counting  # type: ignore[method-assign]


def naive_claim(sftp: paramiko.SFTPClient, root: str, worker: str) -> dict[str, Any] | None:
    lock = f"{root}/.mavps.lock"
    queue = f"{root}/{QUEUE_FILE}"
    waited = 0.0
    while True:
        try:
            sftp.mkdir(lock)
            break
        except IOError:
            time.sleep(0.05)
            waited += 0.05
            if waited > 30:
                raise TimeoutError("naive lock: gave up")
    try:
        with sftp.open(f"{lock}/owner.json", "w") as fh:
            fh.write(json.dumps({"owner": worker, "host": socket.gethostname(), "pid": os.getpid()}))
        with sftp.open(queue, "r") as fh:
            data = fh.read()
        tasks = load_tasks(json.loads(data))
        choice = next(iter(claimable(tasks, None)), None)
        if choice is None:
            return None
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        choice.status = TaskStatus.IN_PROGRESS
        choice.claimed_by = worker
        choice.claimed_at = stamp
        choice.attempts += 1
        choice.updated_at = stamp
        tmp = f"{queue}.naive.tmp"
        with sftp.open(tmp, "w") as fh:
            fh.write(dumps([t.to_dict() for t in tasks]))
        sftp.posix_rename(tmp, queue)
        return choice.to_dict()
    finally:
        sftp.remove(f"{lock}/owner.json")
        sftp.rmdir(lock)
