"""The worker registry: register, heartbeat (via the queue), list, remove."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from . import validate
from .defaults import WORKER_TIMEOUT
from .errors import InvalidInput, NotFound, Refused
from .models import QUEUE_FILE, WORKERS_FILE, Task, Worker, WorkerStatus
from .rules import held_by
from .state import dump_tasks, dump_workers, load_tasks, load_workers, read_tasks, read_workers, task_event
from .store import Store, Txn
from .timeutil import parse, utcnow


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


def event(txn: Txn, agent: str, name: str, message: str, task: Task | None, **fields: Any) -> dict[str, Any]:
    """A log record about a task, stamped with the transaction's time."""
    return task_event(txn.stamp, agent, name, message, task, **fields)


def ensure_worker(txn: Txn, workers: dict[str, Worker], wid: str, caps: list[str] | None) -> Worker:
    """The worker's record, registered on first sight; `caps` (when given) replace its capabilities."""
    w = workers.get(wid)
    if w is None:
        w = workers[wid] = Worker(id=wid, capabilities=caps or [], registered_at=txn.stamp, last_heartbeat=txn.stamp)
        txn.log.append({"timestamp": txn.stamp, "agent": wid, "message": f"Registered worker {wid}",
                        "event": "worker_registered", "worker": wid, "capabilities": w.capabilities})
    elif caps is not None and caps != w.capabilities:
        w.capabilities = caps
    return w


def held_ids(tasks: list[Task], worker: str) -> list[int]:
    """Ids of the tasks this worker holds, oldest claimed first."""
    return [t.id for t in held_by(tasks, worker)]


def is_online(w: Worker, now: datetime, timeout: float = WORKER_TIMEOUT) -> bool:
    """Not marked offline, and heard from within `timeout` seconds."""
    beat = parse(w.last_heartbeat)
    return w.status is not WorkerStatus.OFFLINE and beat is not None and (now - beat).total_seconds() <= timeout


class Workers:
    def __init__(self, store: Store, agent: str, timeout: float = WORKER_TIMEOUT) -> None:
        self.store = store
        self.agent = agent
        self.timeout = timeout

    def list(self) -> list[WorkerView]:
        """Workers with the tasks each holds (the queue is read in the same two round trips)."""
        raw = self.store.look([WORKERS_FILE, QUEUE_FILE])
        workers = read_workers(raw[WORKERS_FILE])
        tasks = read_tasks(raw[QUEUE_FILE])
        now = utcnow()
        return [WorkerView(w, is_online(w, now, self.timeout), held_ids(tasks, w.id)) for w in workers.values()]

    def view(self, worker: Worker, now: datetime, held: list[Task]) -> WorkerView:
        """A worker as listed, from a record a transaction just committed (`held`: oldest claimed first)."""
        return WorkerView(worker, is_online(worker, now, self.timeout), [t.id for t in held])

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
            w.beat(txn.now)
            txn.log.append({"timestamp": txn.stamp, "agent": worker, "event": "worker_registered",
                            "message": f"{'Registered' if fresh else 'Re-registered'} worker {worker}"
                                       + (f" ({', '.join(caps)})" if caps else ""),
                            "worker": worker, "capabilities": caps})
            txn.write(WORKERS_FILE, dump_workers(workers))
            return w

        return self.store.transact([WORKERS_FILE], change)

    def set_status(self, worker: str, status: WorkerStatus | str, message: str) -> Worker:
        """Mark a worker active or offline (the Stop hook marks it offline when it lets it stop)."""
        worker = validate.worker_id(worker)
        try:
            status = WorkerStatus(status)
        except ValueError:
            raise InvalidInput(f"unknown worker status {status!r}: one of "
                               f"{', '.join(s.value for s in WorkerStatus)}") from None

        def change(txn: Txn) -> Worker:
            workers = load_workers(txn.json(WORKERS_FILE, {}))
            w = workers.get(worker)
            if w is None:
                raise NotFound(f"no worker {worker}")
            if w.set_status(status, txn.now):
                txn.log.append({"timestamp": txn.stamp, "agent": worker, "event": f"worker_{status.value}",
                                "message": message, "worker": worker})
                txn.write(WORKERS_FILE, dump_workers(workers))
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
            held = held_by(tasks, worker)
            if held and not force:
                raise Refused(f"worker {worker} holds task(s) {', '.join(str(t.id) for t in held)}: "
                              "let it finish, or remove it with --force to put them back in the queue")
            for t in held:
                t.release(txn.now)  # given back untried, as the holder's own release does
                txn.log.append(event(txn, self.agent, "task_released",
                                     f"Released task #{t.id}: its worker was removed", t))
            w = workers.pop(worker)
            txn.log.append({"timestamp": txn.stamp, "agent": self.agent, "event": "worker_removed",
                            "message": f"Removed worker {worker}", "worker": worker})
            txn.write(WORKERS_FILE, dump_workers(workers))
            if held:
                txn.write(QUEUE_FILE, dump_tasks(tasks))
            return w

        return self.store.transact([WORKERS_FILE, QUEUE_FILE], change)
