"""Run one queue operation and die (os._exit) right after op K of its commit batch.

    python crash_child.py WS_PATH OP K
"""
import os
import sys

from mavps import Workspace
from mavps.transport.local import LocalTransport

path, op, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
original = LocalTransport._execute


def execute(self, batch):
    if not any(o == "replace" and a[0].startswith(".mavps.lock/") for o, a, _r in batch.ops):
        return original(self, batch)
    for i, (o, a, reply) in enumerate(batch.ops):
        try:
            reply.set(getattr(self, "_op_" + o)(*a))
        except OSError as exc:
            reply.set(error=exc)
        if i == k:
            os._exit(137)


LocalTransport._execute = execute
ws = Workspace.open(path, agent="victim", lock_ttl=0.5, lease_ttl=1)
if op == "claim":
    ws.queue.claim("victim")
elif op == "complete":
    ws.queue.complete(1, "victim")
elif op == "add":
    ws.queue.add("added by the victim", "x")
sys.exit(0)  # K was past the end of the batch
