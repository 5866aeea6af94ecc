"""A worker's commands: `claim`, `complete`, `fail`, `release`; and `reap` for anyone."""
from __future__ import annotations

import click

from ..render import plain
from .app import cli
from .options import (EXIT_NOTHING, acting_worker, common, emit, emit_task, state, task_id_argument, task_out,
                      worker_option)

_HOLDER = "The worker holding the task [MAVPS_WORKER_ID]."


@cli.command(epilog="Example: mavps claim --worker worker-1 --capability backend   "
                    "(exit 3 when nothing is claimable)")
@worker_option("The worker claiming [MAVPS_WORKER_ID].")
@click.option("--capability", "capabilities", multiple=True, metavar="CAP",
              help="This worker's capabilities (repeatable; default: as registered, or MAVPS_CAPABILITIES).")
@common
def claim(worker: str | None, capabilities: tuple[str, ...]) -> None:
    """Claim the best claimable task, and print it with its instructions.

    Exits 3 when nothing is claimable (with --json it prints `null`), so scripts can loop on it.
    """
    wid, ws = acting_worker(worker, "claim")
    # a task it already holds comes back first: a lost answer strands nothing; its instructions come with it
    _hand_out(ws.queue.get_work(wid, _capabilities(capabilities), read=True), wid, ws)


def _capabilities(given: tuple[str, ...]) -> list[str] | None:
    cfg = state().config()
    return list(given) if given else (list(cfg.capabilities) if cfg.capabilities else None)


def _hand_out(got, wid: str, ws, completed: dict | None = None) -> None:
    """Print a claim's answer: the task with its instructions, or exit 3 when nothing was claimable."""
    st = state()
    t = got.task
    if t is None:
        if st.json and completed is not None:
            emit({"completed": completed, "next": None})
        elif st.json:
            click.echo("null")
        else:
            click.echo(f"nothing claimable for {wid} right now (see `mavps ready`)", err=True)
        raise click.exceptions.Exit(EXIT_NOTHING)
    text, problem = ws.queue.claimed_instructions(got)  # the claim is made: it is reported even if this fails
    _note_held(t, wid, ws)
    data = {**task_out(t, text), "already_held": got.already_held, "instructions_error": problem}
    if completed is not None and st.json:
        data = {"completed": completed, "next": data}
    emit(data, lambda d: plain.claimed(d, wid, st.given_flags()))


@cli.command(epilog="Example: mavps complete 7 --worker worker-1 --result 'parser done, tests pass'")
@task_id_argument
@worker_option(_HOLDER)
@click.option("--result", metavar="TEXT", help="What was done (kept with the task).")
@click.option("--from", "source", default=".", show_default=True, type=click.Path(file_okay=False),
              help="A directory holding a pull of the task (`mavps pull`): its edits are pushed first.")
@click.option("--next", "go_on", is_flag=True,
              help="Claim your next task in the same transaction, and print it as `claim` does.")
@click.option("--capability", "capabilities", multiple=True, metavar="CAP",
              help="With --next: this worker's capabilities (repeatable; default: as registered).")
@common
def complete(task_id: str, worker: str | None, result: str | None, source: str, go_on: bool,
             capabilities: tuple[str, ...]) -> None:
    """Mark a task you hold as completed. Where a pull of it is (the current directory, or --from), its edits
    are pushed first: a conflict stops the completion (exit 1) with the list.

    With --next, claim your next task in the same transaction and print it as `claim` does (exit 3 when
    nothing is claimable; with --json: {"completed": ..., "next": ...})."""
    from ..exchange import has_record, push
    from ..validate import task_id as checked_id

    wid, ws = acting_worker(worker, "complete")
    if has_record(source, checked_id(task_id)):
        push(ws.store, task_id, source, wid)
    if not go_on:
        t = ws.queue.complete(task_id, wid, result)
        _forget_held(t.id)
        emit_task(t, "Completed")
        return
    t, got = ws.queue.complete_and_claim(task_id, wid, result, _capabilities(capabilities), read=True)
    _forget_held(t.id)
    if not state().json:
        emit_task(t, "Completed")
    _hand_out(got, wid, ws, completed=task_out(t))


@cli.command(epilog="Example: mavps fail 7 --worker worker-1 --error 'tests fail on CI, see log'")
@task_id_argument
@worker_option(_HOLDER)
@click.option("--error", metavar="TEXT", help="What went wrong.")
@common
def fail(task_id: str, worker: str | None, error: str | None) -> None:
    """Report a task you hold as failed (it is retried while attempts remain)."""
    wid, ws = acting_worker(worker, "fail")
    t = ws.queue.fail(task_id, wid, error)
    _forget_held(t.id)
    emit_task(t, "Failed")


@cli.command(epilog="Example: mavps release 7 --worker worker-1")
@task_id_argument
@worker_option(_HOLDER)
@common
def release(task_id: str, worker: str | None) -> None:
    """Give a task you hold back to the queue, untried."""
    wid, ws = acting_worker(worker, "release")
    t = ws.queue.release(task_id, wid)
    _forget_held(t.id)
    emit_task(t, "Released")


@cli.command(epilog="Example: mavps reap")
@common
def reap() -> None:
    """Return tasks whose lease expired to the queue now (any claim does it too)."""
    emit([task_out(t) for t in state().workspace().queue.reap()], plain.reaped)


def _note_held(task, wid: str, ws) -> None:
    """The local record the path guard reads (hooks/pre_tool_use.py): best effort, the claim stands anyway."""
    import contextlib

    from ..hooks.pre_tool_use import local_root, project_dir, write_held

    with contextlib.suppress(OSError):
        write_held(project_dir(), task.id, list(task.touches), wid, ws.location, local_root(ws))


def _forget_held(task_id: int) -> None:
    from ..hooks.pre_tool_use import clear_held, project_dir

    clear_held(project_dir(), task_id)
