"""A worker's question and its answer: `mavps ask ID TEXT --worker W`, `mavps answer ID TEXT`."""
from __future__ import annotations

import click

from ..render import plain
from .app import cli
from .options import acting_worker, common, emit, state, task_id_argument, task_out, worker_option


@cli.command(epilog="Example: mavps ask 7 'Should the API keep the v1 routes?' --worker worker-1\n\n"
                    "Then end your turn: the Stop hook waits for the answer and hands it to you.")
@task_id_argument
@click.argument("text")
@worker_option("The worker holding the task [MAVPS_WORKER_ID].")
@common
def ask(task_id: str, text: str, worker: str | None) -> None:
    """Ask the coordinator a question about a task you hold (its lease is kept while you wait)."""
    wid, ws = acting_worker(worker, "ask")
    emit(task_out(ws.queue.ask(task_id, wid, text)), plain.asked)


@cli.command(epilog="Example: mavps answer 7 'Keep them, marked deprecated'")
@task_id_argument
@click.argument("text")
@common
def answer(task_id: str, text: str) -> None:
    """Answer the question a task's holder is waiting on (refused when none is pending)."""
    emit(task_out(state().workspace().queue.answer(task_id, text)), plain.answered)
