"""The coordinator's commands: `task add/list/show/cancel/requeue` and `ready`."""
from __future__ import annotations

from typing import IO

import click

from .. import render
from ..render import plain
from .app import cli
from .options import common, emit, emit_task, state, task_id_argument, task_out

STATUSES = ["pending", "in_progress", "completed", "failed", "cancelled"]


@cli.group(epilog="Example: mavps task add 'Write the parser' --requires backend")
def task() -> None:
    """Add, edit, release, list, show, cancel and requeue tasks."""


@task.command("add", epilog="Example: mavps task add 'Add login form' --instructions 'See docs/ui.md' "
                            "--requires frontend --depends-on 3")
@click.argument("description")
@click.option("--instructions", "instructions", metavar="TEXT", help="Instructions text.")
@click.option("--instructions-file", type=click.File("r", encoding="utf-8"), metavar="FILE",
              help="Read the instructions from a local file ('-' for stdin).")
@click.option("--template", metavar="NAME", help="Fill in a built-in instructions template (task-instructions) "
              "or a .md file of yours.")
@click.option("--context", "context", multiple=True, metavar="PATH", help="Context file in the workspace (repeatable).")
@click.option("--requires", multiple=True, metavar="CAP", help="Capability a worker needs (repeatable).")
@click.option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@click.option("--depends-on", type=int, multiple=True, metavar="ID", help="Task that must complete first (repeatable).")
@click.option("--max-attempts", type=int, help="Claims before the task fails for good (default: max_attempts).")
@click.option("--hold", is_flag=True,
              help="A draft nobody can claim: fill it in with `task edit`, then `task release`.")
@click.option("--touches", multiple=True, metavar="GLOB",
              help="Files it will write, relative to the workspace root (repeatable, e.g. 'src/auth/**'): it waits "
              "while a running task or a reservation holds one of them.")
@common
def task_add(description: str, instructions: str | None, instructions_file: IO[str] | None, template: str | None,
             context: tuple[str, ...], requires: tuple[str, ...], priority: int, depends_on: tuple[int, ...],
             max_attempts: int | None, hold: bool, touches: tuple[str, ...]) -> None:
    """Add a task to the queue (with --hold: a draft nobody can claim yet)."""
    given = [x for x in (instructions, instructions_file, template) if x is not None]
    if len(given) > 1:
        raise click.UsageError("give at most one of --instructions, --instructions-file, --template")
    ws = state().workspace()
    if instructions_file is not None:
        instructions = instructions_file.read()
    elif template is not None:
        instructions = _template(template, description, context, requires)
    t = ws.queue.add(description, instructions, context_files=context, requires=requires, priority=priority,
                     depends_on=depends_on, max_attempts=max_attempts, hold=hold, touches=touches)
    emit_task(t, "Added")


def _template(name: str, description: str, context: tuple[str, ...], requires: tuple[str, ...]) -> str:
    from ..templates import render_task_template

    return render_task_template(name, {"description": description, "context_files": list(context),
                                       "requirements": list(requires) or None})


@task.command("edit", epilog="Examples: mavps task edit 7 --instructions-file spec.md --priority 5\n\n"
                             "mavps task edit 7   (opens $EDITOR on the instructions)")
@task_id_argument
@click.option("--description", metavar="TEXT", help="New one-line description.")
@click.option("--instructions", metavar="TEXT", help="New instructions text.")
@click.option("--instructions-file", type=click.File("r", encoding="utf-8"), metavar="FILE",
              help="Read the new instructions from a local file ('-' for stdin).")
@click.option("--context", multiple=True, metavar="PATH", help="Context files (repeatable; replaces the list).")
@click.option("--no-context", is_flag=True, help="Remove every context file.")
@click.option("--requires", multiple=True, metavar="CAP", help="Capabilities (repeatable; replaces the list).")
@click.option("--no-requires", is_flag=True, help="Require no capability.")
@click.option("--priority", type=int, help="New priority (higher runs first).")
@click.option("--depends-on", type=int, multiple=True, metavar="ID", help="Dependencies (repeatable; replaces them).")
@click.option("--no-depends-on", is_flag=True, help="Remove every dependency.")
@click.option("--max-attempts", type=int, help="New number of claims before it fails for good.")
@click.option("--touches", multiple=True, metavar="GLOB", help="Files it will write (repeatable; replaces the list).")
@click.option("--no-touches", is_flag=True, help="Declare no touches (it then never waits for paths).")
@common
def task_edit(task_id: str, description: str | None, instructions: str | None, instructions_file: IO[str] | None,
              context: tuple[str, ...], no_context: bool, requires: tuple[str, ...], no_requires: bool,
              priority: int | None, depends_on: tuple[int, ...], no_depends_on: bool, max_attempts: int | None,
              touches: tuple[str, ...], no_touches: bool) -> None:
    """Change a task that is not running; with no option, edit its instructions in $EDITOR."""
    if instructions is not None and instructions_file is not None:
        raise click.UsageError("give --instructions or --instructions-file, not both")
    if instructions_file is not None:
        instructions = instructions_file.read()
    fields = {"description": description, "instructions": instructions, "priority": priority,
              "max_attempts": max_attempts, "context_files": _listed(context, no_context, "context"),
              "requires": _listed(requires, no_requires, "requires"),
              "depends_on": _listed(depends_on, no_depends_on, "depends-on"),
              "touches": _listed(touches, no_touches, "touches")}
    q = state().workspace().queue
    if all(v is None for v in fields.values()):
        fields["instructions"] = _edited_instructions(q, task_id)
    emit_task(q.edit(task_id, **fields), "Edited")


def _listed(values: tuple, clear: bool, name: str) -> list | None:
    """A list option that replaces the task's list: None when not given, [] with --no-NAME."""
    if values and clear:
        raise click.UsageError(f"give --{name} or --no-{name}, not both")
    return [] if clear else (list(values) if values else None)


def _edited_instructions(q, task_id: str) -> str:
    """The task's instructions as changed in $EDITOR; nothing changed stops here (exit 1, nothing written)."""
    from .options import die

    text = q.instructions(q.get(task_id))
    edited = click.edit(text, extension=".md", require_save=True)
    if edited is None or edited == text:
        die(f"task {task_id}: the instructions were not changed; nothing was written")
    return edited


@task.command("release", epilog="Example: mavps task release 7")
@task_id_argument
@common
def task_release(task_id: str) -> None:
    """Make a held task (a draft from `task add --hold`) claimable."""
    emit_task(state().workspace().queue.release_hold(task_id), "Released")


@task.command("list", epilog="Example: mavps task list --status pending --json")
@click.option("--status", type=click.Choice(STATUSES), help="Only tasks with this status.")
@click.option("--worker", "worker", metavar="ID", help="Only tasks claimed by this worker.")
@click.option("--all", "include_archived", is_flag=True, help="Include archived finished tasks.")
@common
def task_list(status: str | None, worker: str | None, include_archived: bool) -> None:
    """List tasks."""
    tasks = state().workspace().queue.list(status=status, worker=worker, include_archived=include_archived)
    emit([task_out(t) for t in tasks], render.tasks)


@task.command("show", epilog="Example: mavps task show 7")
@task_id_argument
@common
def task_show(task_id: str) -> None:
    """Show a task and its instructions."""
    q = state().workspace().queue
    t = q.get(task_id)
    text, problem = q.read_instructions(t)
    emit({**task_out(t, text), "instructions_error": problem, "blocked_reason": q.blocked_reason(t),
          "waiting_for_answer": t.pending_question() is not None}, plain.task_shown)


@task.command("cancel", epilog="Example: mavps task cancel 7")
@task_id_argument
@common
def task_cancel(task_id: str) -> None:
    """Cancel a task (a worker holding it will have its result refused)."""
    emit_task(state().workspace().queue.cancel(task_id), "Cancelled")


@task.command("requeue", epilog="Example: mavps task requeue 7")
@task_id_argument
@common
def task_requeue(task_id: str) -> None:
    """Put a failed or cancelled task back in the queue with fresh attempts."""
    emit_task(state().workspace().queue.requeue(task_id), "Requeued")


@cli.command(epilog="Examples: mavps ready --capability backend --json        mavps ready --blocked --json")
@click.option("--capability", "capabilities", multiple=True, metavar="CAP",
              help="Only what a worker with these capabilities could claim (repeatable).")
@click.option("--blocked", is_flag=True, help="Instead: the pending tasks that cannot be claimed now, each with "
              "why (blocked_reason).")
@common
def ready(capabilities: tuple[str, ...], blocked: bool) -> None:
    """What is claimable now, then why the other pending tasks wait."""
    q = state().workspace().queue

    def waiting() -> list[dict]:
        return [{**task_out(t), "blocked_reason": why} for t, why in q.waiting()]

    if blocked:
        emit(waiting(), lambda rows: plain.ready(rows, "no pending task waits", rows))
        return
    tasks = q.ready(list(capabilities) if capabilities else None)
    emit([task_out(t) for t in tasks], lambda rows: plain.ready(rows, "nothing is claimable now", waiting()))


@cli.command(epilog="Examples: mavps wait 3 4 5 --timeout 3600 --json        mavps wait 3 4 --any")
@click.argument("task_ids", metavar="ID...", nargs=-1, required=True)
@click.option("--all", "mode", flag_value="all", default=True, help="Until every task ended (the default).")
@click.option("--any", "mode", flag_value="any", help="Until the first task ended.")
@click.option("--timeout", type=click.FloatRange(min=0), metavar="SECONDS", help="Give up after this (exit 1).")
@common
def wait(task_ids: tuple[str, ...], mode: str, timeout: float | None) -> None:
    """Wait until tasks end (completed, failed for good, cancelled): exit 0 when all completed, else 1."""
    out = state().workspace().queue.wait(task_ids, any_=mode == "any", timeout=timeout)
    emit(out, plain.waited)
    if not out["ok"]:
        raise click.exceptions.Exit(1)
