"""The worker registry: register, heartbeat (via the queue), list, remove."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from . import validate
from .errors import NotFound, Refused
from .models import QUEUE_FILE, WORKERS_FILE, Task, TaskStatus, Worker, load_tasks, load_workers
from .store import Store, Txn, parse_json
from .timeutil import parse, utcnow

#: A worker with no heartbeat for this long is shown offline.
WORKER_TIMEOUT = 900.0


@dataclass
class WorkerView:
    """A worker as listed: its record plus what is derived: `online` from the last heartbeat,
    `held` (every task it holds, oldest claimed first) from the queue.

    Why the queue: the record's `current_task` names only the latest claim, and
    stays behind after a lease expires; the queue says what the worker holds.
    """

    worker: Worker
    online: bool
    held: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        current = self.worker.current_task
        if current not in self.held:
            current = self.held[0] if self.held else None
        return {"id": self.worker.id, **self.worker.to_dict(), "current_task": current,
                "held_tasks": list(self.held), "online": self.online}


def held_ids(tasks: list[Task], worker: str) -> list[int]:
    """Ids of the tasks this worker holds, oldest claimed first."""
    from .queue import held_by

    return [t.id for t in held_by(tasks, worker)]


def is_online(w: Worker, now: datetime, timeout: float = WORKER_TIMEOUT) -> bool:
    beat = parse(w.last_heartbeat)
    return w.status not in ("offline", "removed") and beat is not None and (now - beat).total_seconds() <= timeout


class Workers:
    def __init__(self, store: Store, agent: str, timeout: float = WORKER_TIMEOUT) -> None:
        self.store = store
        self.agent = agent
        self.timeout = timeout

    def list(self) -> list[WorkerView]:
        """Workers with the tasks each holds (the queue is read in the same two round trips)."""
        raw = self.store.look([WORKERS_FILE, QUEUE_FILE])
        workers = load_workers(None if raw[WORKERS_FILE] is None else parse_json(WORKERS_FILE, raw[WORKERS_FILE]))
        tasks = load_tasks(None if raw[QUEUE_FILE] is None else parse_json(QUEUE_FILE, raw[QUEUE_FILE]))
        now = utcnow()
        return [WorkerView(w, is_online(w, now, self.timeout), held_ids(tasks, w.id)) for w in workers.values()]

    def get(self, worker: str) -> WorkerView:
        worker = validate.worker_id(worker)
        for view in self.list():
            if view.worker.id == worker:
                return view
        raise NotFound(f"no worker {worker}: register it with `mavps worker register {worker}`")

    def register(self, worker: str, capabilities: Sequence[str] = ()) -> Worker:
        worker = validate.worker_id(worker)
        caps = validate.capabilities(list(capabilities))

        def change(txn: Txn) -> Worker:
            workers = load_workers(txn.json(WORKERS_FILE, {}))
            w = workers.get(worker)
            fresh = w is None
            if w is None:
                w = workers[worker] = Worker(id=worker, registered_at=txn.stamp)
            w.capabilities = caps
            w.status = "active"
            w.last_heartbeat = txn.stamp
            w.idle_since = None
            txn.log.append({"timestamp": txn.stamp, "agent": worker, "event": "worker_registered",
                            "message": f"{'Registered' if fresh else 'Re-registered'} worker {worker}"
                                       + (f" ({', '.join(caps)})" if caps else ""),
                            "worker": worker, "capabilities": caps})
            txn.write(WORKERS_FILE, {k: v.to_dict() for k, v in workers.items()})
            return w

        return self.store.transact([WORKERS_FILE], change)

    def set_status(self, worker: str, status: str, message: str) -> Worker:
        """Mark a worker idle or offline (the Stop hook does when it lets one stop)."""
        worker = validate.worker_id(worker)

        def change(txn: Txn) -> Worker:
            workers = load_workers(txn.json(WORKERS_FILE, {}))
            w = workers.get(worker)
            if w is None:
                raise NotFound(f"no worker {worker}")
            if w.status != status:
                w.status = status
                if status in ("idle", "offline") and not w.idle_since:
                    w.idle_since = txn.stamp
                txn.log.append({"timestamp": txn.stamp, "agent": worker, "event": f"worker_{status}",
                                "message": message, "worker": worker})
                txn.write(WORKERS_FILE, {k: v.to_dict() for k, v in workers.items()})
            return w

        return self.store.transact([WORKERS_FILE], change)

    def remove(self, worker: str, force: bool = False) -> Worker:
        """Unregister. Refused while the worker holds tasks, unless forced (they are released)."""
        worker = validate.worker_id(worker)

        def change(txn: Txn) -> Worker:
            workers = load_workers(txn.json(WORKERS_FILE, {}))
            tasks = load_tasks(txn.json(QUEUE_FILE, []))
            if worker not in workers:
                raise NotFound(f"no worker {worker}")
            held = [t for t in tasks if t.status is TaskStatus.IN_PROGRESS and t.claimed_by == worker]
            if held and not force:
                raise Refused(f"worker {worker} holds task(s) {', '.join(str(t.id) for t in held)}: "
                              "let it finish, or remove it with --force to put them back in the queue")
            from .queue import back_to_pending, event

            for t in held:
                t.attempts = max(0, t.attempts - 1)
                back_to_pending(t)
                t.updated_at = txn.stamp
                txn.log.append(event(txn, self.agent, "task_released", f"Released task #{t.id}: its worker was removed", t))
            w = workers.pop(worker)
            txn.log.append({"timestamp": txn.stamp, "agent": self.agent, "event": "worker_removed",
                            "message": f"Removed worker {worker}", "worker": worker})
            txn.write(WORKERS_FILE, {k: v.to_dict() for k, v in workers.items()})
            if held:
                txn.write(QUEUE_FILE, [t.to_dict() for t in tasks])
            return w

        return self.store.transact([WORKERS_FILE, QUEUE_FILE], change)
