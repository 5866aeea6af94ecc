"""The `mavps` command: a thin click layer over the library.

Parse, call one library function, print. Exit codes: 0 ok, 3 when `claim`
finds nothing claimable, 1 for any error (one line on stderr saying what went
wrong and what to do; `--debug` adds the traceback), 2 for usage errors.

Startup stays quick for agents: rich, paramiko and the workspace machinery
are imported inside the commands that need them, never here.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import time
from typing import Any, Callable, NoReturn

import click

from . import __version__
from .errors import MavpsError
from .session import load_config, open_workspace, worker_id

#: Commands defined in other modules, loaded on first use: name -> (module:attr, short help).
LAZY_COMMANDS = {
    "hook": ("mavps.hookcli:hook", "Claude Code hook entry points (stop, session-start)."),
    "install-hooks": ("mavps.hookcli:install_hooks", "Install the mavps hooks into a Claude Code project."),
}

EXIT_NOTHING = 3
STATE_ALIASES = {
    "task-queue.json": "task-queue.json", "queue": "task-queue.json", "tasks": "task-queue.json",
    "worker-status.json": "worker-status.json", "workers": "worker-status.json",
    "workspace.json": "workspace.json", "meta": "workspace.json", "workspace": "workspace.json",
}
#: How long `mavps edit` may hold the lock (declared in owner.json so others wait, not break it).
EDIT_TTL = 1800.0


# ----- state shared by the commands -----------------------------------------------
class State:
    """Global options, and the workspace opened on first use (closed at exit)."""

    def __init__(self) -> None:
        self.flags: dict[str, Any] = {}
        self.json = False
        self.debug = bool(os.environ.get("MAVPS_DEBUG"))
        self._config = None
        self._ws = None

    def config(self):
        if self._config is None:
            self._config = load_config(self.flags)
        return self._config

    def workspace(self, agent: str | None = None):
        if self._ws is None:
            self._ws = open_workspace(self.config(), agent=agent)
            click.get_current_context().find_root().call_on_close(self.close)
        return self._ws

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def given_flags(self) -> str:
        """The connection flags given on this command line, to repeat in suggested commands."""
        names = {"workspace": "--workspace", "identity_file": "--identity-file", "known_hosts": "--known-hosts"}
        return "".join(f" {opt} {shlex.quote(str(self.flags[k]))}" for k, opt in names.items() if self.flags.get(k))


def state() -> State:
    ctx = click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def _set_flag(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and value != ():
            state().flags[key] = value
        return value
    return callback


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        state().json = True
    return value


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        state().debug = True
    return value


def connection_options(hidden: bool) -> list[Callable]:
    """Options accepted both before and after the subcommand (`mavps task list --json`)."""
    return [
        click.option("--workspace", "-w", metavar="URL", expose_value=False, is_eager=True, hidden=hidden,
                     callback=_set_flag("workspace"),
                     help="Workspace: a local path or sftp://[user@]host[:port]/abs/path [MAVPS_WORKSPACE]."),
        click.option("--identity-file", "-i", metavar="PATH", expose_value=False, is_eager=True, hidden=hidden,
                     callback=_set_flag("identity_file"), help="SSH private key [MAVPS_IDENTITY_FILE]."),
        click.option("--known-hosts", metavar="PATH", expose_value=False, is_eager=True, hidden=hidden,
                     callback=_set_flag("known_hosts"),
                     help="known_hosts file (default ~/.ssh/known_hosts) [MAVPS_KNOWN_HOSTS]."),
        click.option("--ssh-config", metavar="PATH", expose_value=False, is_eager=True, hidden=True,
                     callback=_set_flag("ssh_config"), help="ssh config file (default ~/.ssh/config)."),
        click.option("--ssh", type=click.Choice(["paramiko", "openssh"]), expose_value=False, is_eager=True,
                     hidden=True, callback=_set_flag("ssh"),
                     help="SSH implementation: paramiko, or openssh sharing one connection [MAVPS_SSH]."),
        click.option("--connect-timeout", type=float, metavar="SECONDS", expose_value=False, is_eager=True,
                     hidden=True, callback=_set_flag("connect_timeout"), help="Seconds to wait for the server."),
        click.option("--json", "json_", is_flag=True, expose_value=False, is_eager=True,
                     callback=_set_json, help="Print one JSON document on stdout, nothing else."),
        click.option("--debug", is_flag=True, expose_value=False, is_eager=True, hidden=hidden,
                     callback=_set_debug, help="Show tracebacks."),
    ]


def common(f: Callable) -> Callable:
    for opt in reversed(connection_options(hidden=True)):
        f = opt(f)
    return f


def emit(data: Any, human: Callable[[Any], None]) -> None:
    if state().json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        human(data)


def die(message: str) -> NoReturn:
    raise click.exceptions.Exit(_report(message))


def _report(message: str) -> int:
    from .render import literal  # messages may quote workspace text (a holder's name)

    click.echo(f"mavps: {literal(message)}", err=True)
    return 1


# ----- the group: lazy subcommands and error mapping --------------------------------
class MavpsGroup(click.Group):
    """A group whose LAZY_COMMANDS load on first use and whose errors become exit 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in LAZY_COMMANDS:
            return cmd
        target, short = LAZY_COMMANDS[name]
        module, _, attr = target.partition(":")
        try:
            import importlib

            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            reason = f"{type(exc).__name__}: {exc}"

            @click.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                           help=short, add_help_option=False)
            def unavailable() -> None:
                die(f"`mavps {name}` is not available in this install ({target} failed to load: {reason}); "
                     "reinstall mavps or update it")
            return unavailable

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, but lazy commands are listed without importing them."""
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS and name not in self.commands:
                rows.append((name, LAZY_COMMANDS[name][1]))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(formatter.width - 6 - max(len(n) for n in self.list_commands(ctx)))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None
        except BrokenPipeError:  # `mavps log --follow | head`: the reader left; so do we, quietly
            try:
                sys.stdout = open(os.devnull, "w")
            except OSError:
                pass
            raise click.exceptions.Exit(0) from None
        except Exception as exc:
            st = ctx.obj if isinstance(ctx.obj, State) else State()
            if st.debug:
                import traceback

                traceback.print_exc()
            if isinstance(exc, MavpsError):
                raise click.exceptions.Exit(_report(str(exc))) from None
            raise click.exceptions.Exit(_report(
                f"unexpected {type(exc).__name__}: {exc} (re-run with --debug for the traceback, and please report it)"
            )) from None


def _group_options(f: Callable) -> Callable:
    for opt in reversed(connection_options(hidden=False)):
        f = opt(f)
    return f


@click.group(cls=MavpsGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Example: mavps --workspace sftp://myvps/srv/ws status")
@_group_options
@click.option("--worker", metavar="ID", expose_value=False, callback=_set_flag("worker_id"),
              help="Act for this worker [MAVPS_WORKER_ID].")
@click.option("--agent", metavar="NAME", expose_value=False, callback=_set_flag("agent"),
              help="Your name in the log (default: the worker id or 'coordinator') [MAVPS_AGENT].")
@click.version_option(__version__, prog_name="mavps")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """mavps: one coordinator and many worker agents sharing a workspace of files.

    The workspace is a directory, local or on a VPS over SFTP; every change is
    an atomic, locked edit of its JSON files. No server process.
    """
    state()


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`mavps = mavps.cli:main`)."""
    cli.main(args=argv, prog_name="mavps")


# ----- rendering helpers (rich is imported inside) ---------------------------------
def _render():
    from . import render

    return render


def task_out(task: Any, instructions: str | None = None) -> dict[str, Any]:
    out = task.to_dict()
    if instructions is not None:
        out["instructions"] = instructions
    return out


def _one_task(verb: str) -> Callable[[dict], None]:
    def human(t: dict) -> None:
        from .render import literal

        holder = f" by {literal(t['claimed_by'])}" if t.get("claimed_by") and t["status"] == "in_progress" else ""
        click.echo(f"{verb} task #{t['id']} ({literal(t['status'])}{holder}): {literal(t['description'])}")
    return human


# ----- commands ------------------------------------------------------------------
@cli.command(epilog="Example: mavps --workspace sftp://myvps/srv/ws init")
@common
def init() -> None:
    """Create the workspace layout (idempotent: existing files are kept)."""
    res = state().workspace().init()

    def human(r: dict) -> None:
        made = ", ".join(r["created"]) if r["created"] else "nothing new (already initialised)"
        click.echo(f"workspace {r['workspace']}: created {made}")
    emit(res, human)


@cli.group(cls=MavpsGroup, epilog="Example: mavps task add 'Write the parser' --requires backend")
def task() -> None:
    """Add, list, show, cancel and requeue tasks."""


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
@common
def task_add(description: str, instructions: str | None, instructions_file: Any, template: str | None,
             context: tuple[str, ...], requires: tuple[str, ...], priority: int, depends_on: tuple[int, ...],
             max_attempts: int | None) -> None:
    """Add a task to the queue."""
    given = [x for x in (instructions, instructions_file, template) if x is not None]
    if len(given) > 1:
        raise click.UsageError("give at most one of --instructions, --instructions-file, --template")
    ws = state().workspace()
    if instructions_file is not None:
        instructions = instructions_file.read()
    elif template is not None:
        instructions = _template(template, description, context, requires)
    t = ws.queue.add(description, instructions, context_files=context, requires=requires, priority=priority,
                     depends_on=depends_on, max_attempts=max_attempts)
    emit(task_out(t), _one_task("Added"))


def _template(name: str, description: str, context: tuple[str, ...], requires: tuple[str, ...]) -> str:
    from .templates import render_task_template

    return render_task_template(name, {"description": description, "context_files": list(context),
                                       "requirements": list(requires) or None})


@task.command("list", epilog="Example: mavps task list --status pending --json")
@click.option("--status", type=click.Choice(["pending", "in_progress", "completed", "failed", "cancelled"]),
              help="Only tasks with this status.")
@click.option("--worker", "worker", metavar="ID", help="Only tasks claimed by this worker.")
@click.option("--all", "include_archived", is_flag=True, help="Include archived finished tasks.")
@common
def task_list(status: str | None, worker: str | None, include_archived: bool) -> None:
    """List tasks."""
    tasks = state().workspace().queue.list(status=status, worker=worker, include_archived=include_archived)
    emit([task_out(t) for t in tasks], lambda rows: _render().tasks(rows))


@task.command("show", epilog="Example: mavps task show 7")
@click.argument("task_id", metavar="ID")
@common
def task_show(task_id: str) -> None:
    """Show a task and its instructions."""
    ws = state().workspace()
    t = ws.queue.get(task_id)
    text, problem = ws.queue.read_instructions(t)
    data = {**task_out(t, text), "instructions_error": problem, "blocked_reason": ws.queue.blocked_reason(t)}

    def human(d: dict) -> None:
        _render().task_detail(d)
        for key, label in (("instructions_error", "the instructions could not be read"), ("blocked_reason", "why")):
            if d[key]:
                click.echo(f"{label}: {_render().literal(d[key])}")
    emit(data, human)


@task.command("cancel", epilog="Example: mavps task cancel 7")
@click.argument("task_id", metavar="ID")
@common
def task_cancel(task_id: str) -> None:
    """Cancel a task (a worker holding it will have its result refused)."""
    emit(task_out(state().workspace().queue.cancel(task_id)), _one_task("Cancelled"))


@task.command("requeue", epilog="Example: mavps task requeue 7")
@click.argument("task_id", metavar="ID")
@common
def task_requeue(task_id: str) -> None:
    """Put a failed or cancelled task back in the queue with fresh attempts."""
    emit(task_out(state().workspace().queue.requeue(task_id)), _one_task("Requeued"))


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

    def human(rows: list[dict], empty: str, why: list[dict]) -> None:
        from .queue import is_stuck

        _render().tasks(rows, empty=empty)
        for r in sorted(why, key=lambda r: (not is_stuck(r["blocked_reason"]), r["id"])):
            click.echo(f"#{r['id']} {_render().literal(r['blocked_reason'])}")

    if blocked:
        emit(waiting(), lambda rows: human(rows, "no pending task waits", rows))
        return
    tasks = q.ready(list(capabilities) if capabilities else None)
    emit([task_out(t) for t in tasks], lambda rows: human(rows, "nothing is claimable now", waiting()))


@cli.command(epilog="Example: mavps claim --worker worker-1 --capability backend   "
                    "(exit 3 when nothing is claimable)")
@click.option("--worker", "worker", metavar="ID", help="The worker claiming [MAVPS_WORKER_ID].")
@click.option("--capability", "capabilities", multiple=True, metavar="CAP",
              help="This worker's capabilities (repeatable; default: as registered, or MAVPS_CAPABILITIES).")
@common
def claim(worker: str | None, capabilities: tuple[str, ...]) -> None:
    """Claim the best claimable task, and print it with its instructions.

    Exits 3 when nothing is claimable (with --json it prints `null`), so scripts can loop on it.
    """
    st = state()
    cfg = st.config()
    wid = worker_id(cfg, worker, "claim")
    caps = list(capabilities) if capabilities else (list(cfg.capabilities) if cfg.capabilities else None)
    ws = st.workspace(agent=wid)
    got = ws.queue.get_work(wid, caps)  # a task it already holds comes back first: a lost answer strands nothing
    t = got.task
    if t is None:
        if st.json:
            click.echo("null")
        else:
            click.echo(f"nothing claimable for {wid} right now (see `mavps ready`)", err=True)
        raise click.exceptions.Exit(EXIT_NOTHING)
    text, problem = ws.queue.read_instructions(t)  # the claim is made: it is reported even if this fails
    data = {**task_out(t, text), "already_held": got.already_held, "instructions_error": problem}

    def human(d: dict) -> None:
        lit = _render().literal  # the task was written by another agent
        flags = st.given_flags()
        q = shlex.quote
        if d["already_held"]:
            click.secho(f"You already hold task #{d['id']}: here it is again (lease renewed). Finish, fail or "
                        "release it before you claim another.", bold=True)
        click.secho(f"Claimed task #{d['id']}: {lit(d['description'])}", bold=True)
        click.echo(f"attempt {d['attempts']} of {d['max_attempts']}; lease until {lit(d['lease_expires_at'])} "
                   f"(renew with `mavps{flags} worker heartbeat {q(wid)}`)")
        if d.get("context_files"):
            click.echo("context files: " + ", ".join(map(lit, d["context_files"])))
        click.echo(f"\n--- instructions ({lit(d.get('instruction_file'))}) ---")
        if d["instructions_error"]:
            click.echo(f"(the instructions could not be read: {lit(d['instructions_error'])}; the task is "
                       "still yours: ask the coordinator, or give it back with the command below)")
        else:
            click.echo(lit(d.get("instructions") or "(none)", multiline=True).rstrip("\n"))
        click.echo("--- end of instructions ---\n")
        click.echo("When done:    " + f"mavps{flags} complete {d['id']} --worker {q(wid)} --result 'what you did'")
        click.echo("If it fails:  " + f"mavps{flags} fail {d['id']} --worker {q(wid)} --error 'what went wrong'")
        click.echo("To give back: " + f"mavps{flags} release {d['id']} --worker {q(wid)}")
    emit(data, human)


def _finish(name: str, task_id: str, worker: str | None, text: str | None, verb: str) -> None:
    st = state()
    wid = worker_id(st.config(), worker, name)
    q = st.workspace(agent=wid).queue
    t = q.release(task_id, wid) if name == "release" else getattr(q, name)(task_id, wid, text)
    emit(task_out(t), _one_task(verb))


_WORKER_OPT = click.option("--worker", "worker", metavar="ID", help="The worker holding the task [MAVPS_WORKER_ID].")


@cli.command(epilog="Example: mavps complete 7 --worker worker-1 --result 'parser done, tests pass'")
@click.argument("task_id", metavar="ID")
@_WORKER_OPT
@click.option("--result", metavar="TEXT", help="What was done (kept with the task).")
@common
def complete(task_id: str, worker: str | None, result: str | None) -> None:
    """Mark a task you hold as completed."""
    _finish("complete", task_id, worker, result, "Completed")


@cli.command(epilog="Example: mavps fail 7 --worker worker-1 --error 'tests fail on CI, see log'")
@click.argument("task_id", metavar="ID")
@_WORKER_OPT
@click.option("--error", metavar="TEXT", help="What went wrong.")
@common
def fail(task_id: str, worker: str | None, error: str | None) -> None:
    """Report a task you hold as failed (it is retried while attempts remain)."""
    _finish("fail", task_id, worker, error, "Failed")


@cli.command(epilog="Example: mavps release 7 --worker worker-1")
@click.argument("task_id", metavar="ID")
@_WORKER_OPT
@common
def release(task_id: str, worker: str | None) -> None:
    """Give a task you hold back to the queue, untried."""
    _finish("release", task_id, worker, None, "Released")


@cli.command(epilog="Example: mavps reap")
@common
def reap() -> None:
    """Return tasks whose lease expired to the queue now (any claim does it too)."""
    tasks = state().workspace().queue.reap()
    emit([task_out(t) for t in tasks],
         lambda rows: click.echo(f"reaped {len(rows)} expired lease(s)" + (": " + ", ".join(f"#{r['id']}" for r in rows) if rows else "")))


# ----- workers ---------------------------------------------------------------------
@cli.group(cls=MavpsGroup, epilog="Example: mavps worker register worker-1 --capability backend")
def worker() -> None:
    """Register, heartbeat, list and remove workers."""


@worker.command("register", epilog="Example: mavps worker register worker-1 --capability backend --capability docs")
@click.argument("worker_name", metavar="W")
@click.option("--capability", "capabilities", multiple=True, metavar="CAP", help="A capability (repeatable).")
@common
def worker_register(worker_name: str, capabilities: tuple[str, ...]) -> None:
    """Register a worker (again: updates its capabilities)."""
    st = state()
    caps = list(capabilities) or list(st.config().capabilities)
    w = st.workspace(agent=worker_name).workers.register(worker_name, caps)
    data = {"id": w.id, **w.to_dict()}
    emit(data, lambda d: click.echo(f"registered {d['id']}" + (f" ({', '.join(d['capabilities'])})" if d["capabilities"] else "")))


@worker.command("heartbeat", epilog="Example: mavps worker heartbeat worker-1")
@click.argument("worker_name", metavar="W")
@common
def worker_heartbeat(worker_name: str) -> None:
    """Say the worker is alive and renew the leases of the tasks it holds."""
    ws = state().workspace(agent=worker_name)
    held = ws.queue.heartbeat(worker_name)
    data = {**ws.workers.get(worker_name).to_dict(), "held_tasks": [t.id for t in held]}
    emit(data, lambda d: click.echo(f"{d['id']} alive; leases renewed: "
                                    + (", ".join(f"#{i}" for i in d["held_tasks"]) or "none held")))


@worker.command("list", epilog="Example: mavps worker list --json")
@common
def worker_list() -> None:
    """List workers, online or not."""
    views = state().workspace().workers.list()

    def human(rows: list[dict]) -> None:
        _render().workers(rows)
        for r in rows:  # the table shows one task per worker; a worker may hold more (from the queue)
            if len(r["held_tasks"]) > 1:
                click.echo(f"{_render().literal(r['id'])} holds {len(r['held_tasks'])} tasks: "
                           + ", ".join(f"#{i}" for i in r["held_tasks"]))
    emit([v.to_dict() for v in views], human)


@worker.command("remove", epilog="Example: mavps worker remove worker-1 --force")
@click.argument("worker_name", metavar="W")
@click.option("--force", is_flag=True, help="Also when it holds tasks (they go back to the queue).")
@common
def worker_remove(worker_name: str, force: bool) -> None:
    """Unregister a worker."""
    w = state().workspace().workers.remove(worker_name, force=force)
    emit({"id": w.id, **w.to_dict()}, lambda d: click.echo(f"removed {d['id']}"))


# ----- log -------------------------------------------------------------------------
@cli.command("log", epilog="Examples: mavps log 'API schema is in docs/api.md' --agent coordinator\n\n"
                           "mavps log --tail 50 --task 7        mavps log --follow")
@click.argument("message", required=False)
@click.option("--agent", "agent", metavar="NAME", help="Who says it / only this agent's records.")
@click.option("--tail", "tail", type=click.IntRange(0, 100000), help="Show the last N records (default 20).")
@click.option("--task", "task_id", type=int, metavar="ID", help="Only records about this task.")
@click.option("--event", metavar="NAME", help="Only records of this event (task_claimed, message, ...).")
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing new records until Ctrl-C (with --json: one JSON record per line).")
@click.option("--interval", type=click.FloatRange(0.05, 60), default=1.0, show_default=True,
              help="Seconds between polls with --follow.")
@click.option("--max-seconds", type=click.FloatRange(0), metavar="S", help="Stop following after S seconds.")
@common
def log_cmd(message: str | None, agent: str | None, tail: int | None, task_id: int | None, event: str | None,
            follow: bool, interval: float, max_seconds: float | None) -> None:
    """Append a message to the shared log, or read it."""
    st = state()
    if message is not None:
        if follow or tail is not None:
            raise click.UsageError("give a MESSAGE to append, or --tail/--follow to read, not both")
        ws = st.workspace(agent=agent)
        rec = ws.log.append(message, agent=agent, **({"task_id": task_id} if task_id is not None else {}))
        emit(rec, lambda r: click.echo(f"logged as {r['agent']}"))
        return
    from .log import matches

    ws = st.workspace()
    n = 20 if tail is None else tail
    records, offset = ws.log.read_from_end(n, agent, event, task_id)
    if not follow:
        emit(records, lambda rows: [click.echo(_log_line(r)) for r in rows])
        return
    # --follow: JSON Lines with --json (one document per record), as the records arrive.
    show = (lambda r: click.echo(json.dumps(r, ensure_ascii=False))) if st.json else (lambda r: click.echo(_log_line(r)))
    for r in records:
        show(r)
    end = None if max_seconds is None else time.monotonic() + max_seconds
    try:
        while end is None or time.monotonic() < end:
            time.sleep(interval if end is None else max(0.0, min(interval, end - time.monotonic())))
            new, offset = ws.log.since(offset)
            for r in new:
                if matches(r, agent, event, task_id):
                    show(r)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


@cli.command("cat", epilog="Example: mavps cat docs/schema.md")
@click.argument("path")
@common
def cat(path: str) -> None:
    """Print a file of the workspace (a task's context file, say), for agents not on the VPS.

    Streamed in chunks, so any size works (--json holds it in memory: 64 MiB at most)."""
    if state().json:
        data = state().workspace().read_file(path)
        emit({"path": path, "size": len(data), "content": data.decode("utf-8", "replace")}, lambda d: None)
        return
    out = sys.stdout.buffer
    state().workspace().stream_file(path, out.write)
    out.flush()


@cli.command("put", epilog="Examples: mavps put src/models/user.py --from user.py\n\n"
                           "echo 'notes' | mavps put docs/notes.md")
@click.argument("path")
@click.option("--from", "source", type=click.File("rb"), default="-", show_default=True,
              help="Local file to upload ('-': standard input).")
@common
def put(path: str, source: Any) -> None:
    """Write a file into the workspace atomically (parents are created; state files refused).

    Streamed in chunks; 64 MiB at most. An interrupted or failed put leaves the old file as it was."""
    size = state().workspace().write_file(path, source)
    emit({"path": path, "size": size}, lambda d: click.echo(f"wrote {d['path']} ({d['size']} bytes)"))


_EVENT_COLOURS = {"task_completed": "green", "task_failed": "red", "task_claimed": "cyan", "lease_expired": "yellow",
                  "lock_broken": "magenta", "task_added": "blue", "message": None}


def _log_line(r: dict) -> str:
    from .render import literal  # records are written by other agents: shown literally

    stamp = literal(r.get("timestamp", ""))
    stamp = stamp[11:19] if len(stamp) >= 19 else stamp
    agent = click.style(f"{literal(r.get('agent', '?')):<14}", bold=True)
    msg = literal(r.get("message", ""))
    ev = r.get("event")
    colour = _EVENT_COLOURS.get(ev, None) if isinstance(ev, str) else None
    if colour:
        msg = click.style(msg, fg=colour)
    return f"{stamp} {agent} {msg}"


# ----- status ----------------------------------------------------------------------
@cli.command(epilog="Examples: mavps status        mavps status --watch        mavps status --json")
@click.option("--watch", is_flag=True, help="Keep refreshing the board until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(0.1, 600), default=2.0, show_default=True,
              help="Seconds between refreshes with --watch.")
@click.option("--max-seconds", type=click.FloatRange(0), metavar="S", help="Stop watching after S seconds.")
@click.option("--lines", type=click.IntRange(0, 200), default=10, show_default=True, help="Recent log records shown.")
@common
def status(watch: bool, interval: float, max_seconds: float | None, lines: int) -> None:
    """The board: counts by status, tasks in progress, workers, recent log."""
    st = state()
    ws = st.workspace()
    if not watch or st.json:
        emit(ws.board(lines), lambda b: _render().board(b))
        return
    _render().watch(lambda: ws.board(lines), interval, max_seconds)


# ----- edit, unlock, doctor, trust -----------------------------------------------------
@cli.command(epilog="Example: EDITOR=nano mavps edit queue\n\nFILE: task-queue.json (queue), "
                    "worker-status.json (workers) or workspace.json (meta).")
@click.argument("file", metavar="FILE")
@click.option("--ttl", type=click.FloatRange(30, 86400), default=EDIT_TTL, show_default=True,
              help="Longest time the lock may be held while you edit.")
@common
def edit(file: str, ttl: float) -> None:
    """Edit a state file in $EDITOR under the workspace lock; invalid results are refused.

    The lock is held while the editor runs, and owner.json declares TTL seconds so
    other agents wait instead of breaking it. Their own lock_timeout still applies:
    commands that wait longer than that fail with "lock busy", so keep edits short.
    """
    name = STATE_ALIASES.get(file) or STATE_ALIASES.get(os.path.basename(file))
    if name is None:
        raise click.BadParameter(f"{file!r}: use task-queue.json, worker-status.json or workspace.json",
                                 param_hint="FILE")
    from .admin import edit_state

    res = edit_state(state().workspace(), name, ttl)
    emit(res, lambda r: click.echo(f"{r['file']}: {'saved' if r['changed'] else 'unchanged'}"))


@cli.command(epilog="Examples: mavps unlock        mavps unlock --force --yes")
@click.option("--force", is_flag=True, help="Break the lock (after confirmation).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@common
def unlock(force: bool, yes: bool) -> None:
    """Show who holds the workspace lock; --force breaks it. Also removes old leftovers."""
    st = state()
    ws = st.workspace()
    from .admin import LEFTOVER_AGE, break_held, cleanup_leftovers, lock_info

    info = lock_info(ws.transport, ws.config.lock_ttl)
    info["leftovers_removed"] = cleanup_leftovers(ws.transport, max(LEFTOVER_AGE, ws.config.lock_timeout))
    info["broken"] = False
    if force and info["held"]:
        if not yes:
            click.confirm(f"Break the lock held by {_holder(info)}? Its holder's commit will be refused", abort=True,
                          err=True)
        info["result"] = break_held(ws, info)
        info["broken"] = info["result"] == "broken"
    info.pop("identity", None)
    emit(info, _unlock_human)


def _holder(info: dict) -> str:
    from .render import literal  # owner.json is written by whoever took the lock

    h = info.get("holder") or {}
    return (f"{literal(h.get('owner', 'an unknown holder'))} on {literal(h.get('host', '?'))} "
            f"(pid {literal(h.get('pid', '?'))})")


def _unlock_human(info: dict) -> None:
    if not info["held"]:
        click.echo("the workspace lock is free")
    elif info.get("planted"):
        if info.get("broken"):
            click.echo(f".mavps.lock was a {info['planted']}, not a lock mavps made: removed it (as itself, "
                       "never following it)")
        else:
            click.echo(f".mavps.lock is a {info['planted']}, not a lock mavps made (another account may have "
                       "planted it): `mavps unlock --force` removes it as itself, never following it")
    else:
        age = info.get("held_for")
        held = f" for {age:.0f}s (server clock)" if age is not None else ""
        stale = " - STALE" if info.get("stale") else ""
        click.echo(f"lock held by {_holder(info)}{held}, lease {info['ttl']:g}s{stale}")
        if info.get("broken"):
            click.echo("lock broken; the event is in the log")
        elif info.get("result"):
            click.echo(f"lock not broken: it was {info['result']} (someone else got there first)")
        elif not info.get("broken"):
            click.echo("break it with `mavps unlock --force` only if that holder is dead")
    if info["leftovers_removed"]:
        click.echo(f"removed {len(info['leftovers_removed'])} leftover lock director(ies): "
                   + ", ".join(map(_render().literal, info["leftovers_removed"])))


@cli.command(epilog="Examples: mavps cleanup        mavps cleanup --older-than 600 --json")
@click.option("--older-than", type=click.FloatRange(60), default=3600, show_default=True, metavar="SECONDS",
              help="Remove temp files older than this (server clock).")
@common
def cleanup(older_than: float) -> None:
    """Remove what crashed or interrupted commands left: temp files of puts (`.NAME.<hex>.tmp`, anywhere in
    the workspace) and old lock directories. `mavps doctor` lists them."""
    ws = state().workspace()
    from .admin import LEFTOVER_AGE, cleanup_leftovers, cleanup_temp_files

    res = {"temp_files_removed": cleanup_temp_files(ws.transport, older_than),
           "lock_leftovers_removed": cleanup_leftovers(ws.transport, max(LEFTOVER_AGE, ws.config.lock_timeout))}

    def human(r: dict) -> None:
        gone = r["temp_files_removed"] + r["lock_leftovers_removed"]
        shown = ", ".join(p if p.isprintable() else repr(p) for p in gone)
        click.echo(f"removed {len(gone)}: {shown}" if gone else "nothing to remove")
    emit(res, human)


@cli.command(epilog="Example: mavps doctor --workspace sftp://myvps/srv/ws")
@common
def doctor() -> None:
    """Check config, connection, host key, layout, files, lock and leases; a fix for each failure."""
    st = state()
    from .admin import run_checks

    checks = run_checks(st.flags)
    emit(checks, lambda rows: _render().checks(rows))
    if not all(c["ok"] for c in checks):
        raise click.exceptions.Exit(1)


@cli.command(epilog="Examples: mavps trust myvps        mavps trust 203.0.113.5:2222 --yes")
@click.argument("host")
@click.option("--port", "-p", type=int, help="SSH port (default: from HOST, ~/.ssh/config, or 22).")
@click.option("--yes", "-y", is_flag=True, help="Add the key without asking (check the fingerprint first!).")
@click.option("--hash/--no-hash", "hashed", default=False, help="Write the host name hashed, like ssh-keyscan -H.")
@common
def trust(host: str, port: int | None, yes: bool, hashed: bool) -> None:
    """Fetch a server's host key, show its fingerprint, and add it to known_hosts after confirmation."""
    from .trust import add_key, fetch_key

    st = state()
    cfg = st.config()
    info = fetch_key(host, port, cfg)
    if not st.json or not yes:
        click.echo(f"{info['entry']} offers {info['key_type']} {info['fingerprint']}", err=st.json)
        if info["known"] == "same":
            click.echo(f"already trusted in {info['known_hosts']}", err=st.json)
    if info["known"] == "different":
        die(f"{info['known_hosts']} has a DIFFERENT key for {info['entry']}: the server was reinstalled, or this "
            f"is an attack. If you are sure, remove the old key (`ssh-keygen -R {shlex.quote(info['entry'])} -f "
            f"{info['known_hosts']}`) and run `mavps trust` again")
    if info["known"] != "same":
        if not yes:
            click.confirm(f"Add this key to {info['known_hosts']}?", abort=True, err=True)
        add_key(info, hashed)
        info["added"] = True
        if not st.json:
            click.echo(f"added {info['entry']} to {info['known_hosts']}")
    else:
        info["added"] = False
    info.pop("key", None)
    if st.json:
        emit(info, lambda d: None)


@cli.command(epilog="Examples: mavps demo        mavps demo --workers 5 --tasks 20        "
                    "mavps demo --workspace sftp://myvps/tmp/mavps-demo")
@click.option("--workers", "n_workers", type=click.IntRange(1, 32), default=3, show_default=True,
              help="Worker processes.")
@click.option("--tasks", "n_tasks", type=click.IntRange(1, 500), default=12, show_default=True, help="Tasks to run.")
@click.option("--keep", is_flag=True, help="Keep the temporary workspace afterwards.")
@click.option("--timeout", type=click.FloatRange(5, 3600), default=55.0, show_default=True,
              help="Give up (and fail) after this many seconds.")
@common
def demo(n_workers: int, n_tasks: int, keep: bool, timeout: float) -> None:
    """Run the whole flow for real: a coordinator, N worker processes, a live board, a check.

    Without a configured workspace it uses a temporary local one. A configured
    workspace must be new or empty (the demo never touches real state).
    """
    from .demo import run_demo

    st = state()
    summary = run_demo(st.config(), n_workers, n_tasks, keep=keep, timeout=timeout, live=not st.json)
    emit(summary, lambda s: _render().demo_summary(s))
    if not summary["check"]["ok"]:
        raise click.exceptions.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
