"""`pull`, `push`: a task's files to a local directory and back, for workers off the VPS."""
from __future__ import annotations

import click

from ..render import plain
from .app import cli
from .options import EXIT_ERROR, acting_worker, common, emit, state, task_id_argument, worker_option


@cli.command("pull", epilog="Example: mavps pull 7 --to ./work   (then edit, then `mavps push 7 --from ./work`)")
@task_id_argument
@click.option("--to", "dest", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Local directory to copy into (a record goes to DIR/.mavps/pull-ID.json).")
@worker_option("The worker holding the task [MAVPS_WORKER_ID] (its claim is recorded, to fence the push).")
@common
def pull(task_id: str, dest: str, worker: str | None) -> None:
    """Copy the task's files (those matching its touches, and its context files) here, recording each one's
    sha256 so that `push` can tell what changed in the workspace meanwhile. Lock-free; links are refused."""
    from ..exchange import pull as do_pull

    st = state()
    wid = worker or st.config().worker_id
    ws = st.workspace(agent=wid) if wid else st.workspace()
    emit(do_pull(ws.store, task_id, dest, wid), plain.pulled)


@cli.command("push", epilog="Example: mavps push 7 --from ./work --dry-run")
@task_id_argument
@click.option("--from", "source", default=".", show_default=True, type=click.Path(file_okay=False, exists=True),
              help="Local directory holding a pull of the task.")
@click.option("--dry-run", is_flag=True, help="Show what would be written or deleted, and the conflicts (exit 1 "
              "if any).")
@click.option("--delete", is_flag=True, help="Also delete in the workspace the pulled files removed here.")
@worker_option("The worker holding the task [MAVPS_WORKER_ID].")
@common
def push(task_id: str, source: str, dry_run: bool, delete: bool, worker: str | None) -> None:
    """Upload the files changed or added here since the pull, in one locked, fenced transaction: if any of
    them changed in the workspace since the pull, nothing is written and the conflicts are listed (exit 1)."""
    from ..exchange import push as do_push

    from ..errors import NotFound

    wid, ws = acting_worker(worker, "push")
    try:
        result = do_push(ws.store, task_id, source, wid, dry_run=dry_run, delete=delete)
    except NotFound:
        ws.require()  # no workspace there (a typo in the URL) is likelier, and says so; one round trip, on failure
        raise
    emit(result, plain.pushed)
    if result["conflicts"]:  # a dry run that found conflicts: the push would be refused (exit 1, as the push)
        raise click.exceptions.Exit(EXIT_ERROR)
