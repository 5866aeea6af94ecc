"""`worker register/heartbeat/list/remove`: the registry of workers and their heartbeats."""
from __future__ import annotations

import click

from ..render import plain
from .app import cli
from .options import common, emit, state

worker_argument = click.argument("worker_name", metavar="W")


@cli.group(epilog="Example: mavps worker register worker-1 --capability backend")
def worker() -> None:
    """Register, heartbeat, list and remove workers."""


@worker.command("register", epilog="Example: mavps worker register worker-1 --capability backend --capability docs")
@worker_argument
@click.option("--capability", "capabilities", multiple=True, metavar="CAP", help="A capability (repeatable).")
@common
def worker_register(worker_name: str, capabilities: tuple[str, ...]) -> None:
    """Register a worker (again: updates its capabilities)."""
    st = state()
    caps = list(capabilities) or list(st.config().capabilities)
    w = st.workspace(agent=worker_name).workers.register(worker_name, caps)
    emit({"id": w.id, **w.to_dict()}, plain.registered)


@worker.command("heartbeat", epilog="Example: mavps worker heartbeat worker-1")
@worker_argument
@common
def worker_heartbeat(worker_name: str) -> None:
    """Say the worker is alive and renew the leases of the tasks it holds."""
    ws = state().workspace(agent=worker_name)
    beat = ws.queue.next_task(worker_name, claim=False)  # the record as committed: no second read
    emit(ws.workers.view(beat.worker, beat.now, beat.held).to_dict(), plain.heartbeat)


@worker.command("list", epilog="Example: mavps worker list --json")
@common
def worker_list() -> None:
    """List workers, online or not."""
    emit([v.to_dict() for v in state().workspace().workers.list()], plain.workers)


@worker.command("remove", epilog="Example: mavps worker remove worker-1 --force")
@worker_argument
@click.option("--force", is_flag=True, help="Also when it holds tasks (they go back to the queue).")
@common
def worker_remove(worker_name: str, force: bool) -> None:
    """Unregister a worker."""
    w = state().workspace().workers.remove(worker_name, force=force)
    emit({"id": w.id, **w.to_dict()}, plain.removed)
