"""The `mavps` group: global options, the lazily loaded hook commands, and the error boundary.

Exit codes: 0 ok, 3 when `claim` finds nothing claimable, 1 for any error (one line
on stderr saying what went wrong and what to do; `--debug` adds the traceback),
2 for usage errors (click's convention), 130 on Ctrl-C. With --json every error,
usage errors too, is instead one object {"error", "hint", "exit_code"} on stdout.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any, NoReturn

import click
from click.utils import make_default_short_help

from .. import __version__
from ..errors import MavpsError
from . import hooks
from .options import EXIT_INTERRUPTED, State, global_options, report, set_flag, state, wants_json

#: Every command of the group, loaded on first use: name -> (its module in mavps.cli, the first sentence of its
#: help, which `mavps --help` shortens as click would). A test checks both against the commands themselves.
COMMANDS = {
    "answer": ("questions", "Answer the question a task's holder is waiting on (refused when none is pending)."),
    "ask": ("questions", "Ask the coordinator a question about a task you hold (its lease is kept while you wait)."),
    "board": ("board", "The board as one HTML page: task graph, timeline, workers, newest log records."),
    "cat": ("files", "Print a file of the workspace (a task's context file, say), for agents not on the VPS."),
    "claim": ("work", "Claim the best claimable task, and print it with its instructions."),
    "cleanup": ("admin", "Remove what crashed or interrupted commands left: temp files of puts (`.NAME.<hex>.tmp`, "
                         "anywhere in the workspace) and old lock directories."),
    "complete": ("work", "Mark a task you hold as completed."),
    "demo": ("admin", "Run the whole flow for real: a coordinator, N worker processes, a live board, a check."),
    "doctor": ("admin", "Check config, connection, host key, layout, files, lock and leases; a fix for each failure."),
    "edit": ("admin", "Edit a state file in $EDITOR under the workspace lock; invalid results are refused."),
    "fail": ("work", "Report a task you hold as failed (it is retried while attempts remain)."),
    "get": ("files", "Copy workspace files and directories (recursively) here; each file is written whole or not "
                     "at all."),
    "inbox": ("messages", "Show your unread messages, oldest first, and mark them read (--peek leaves them unread)."),
    "init": ("admin", "Create the workspace layout (idempotent: existing files are kept)."),
    "log": ("logs", "Append a message to the shared log, or read it."),
    "ls": ("files", "List a workspace directory (a link is shown as a link, never followed)."),
    "plan": ("plan", "Load a whole plan of tasks (see knowledge/05-task-queue-coordination.md)."),
    "pull": ("exchange", "Copy the task's files (those matching its touches, and its context files) here, recording "
                         "each one's sha256 so that `push` can tell what changed in the workspace meanwhile."),
    "push": ("exchange", "Upload the files changed or added here since the pull, in one locked, fenced transaction: "
                         "if any of them changed in the workspace since the pull, nothing is written and the "
                         "conflicts are listed (exit 1)."),
    "put": ("files", "Write a file into the workspace atomically (parents are created; state files refused)."),
    "ready": ("tasks", "What is claimable now, then why the other pending tasks wait."),
    "reap": ("work", "Return tasks whose lease expired to the queue now (any claim does it too)."),
    "release": ("work", "Give a task you hold back to the queue, untried."),
    "reservations": ("reservations", "What holds paths now: reservations and running tasks' touches, with the tasks "
                                     "waiting on each."),
    "reserve": ("reservations", "Hold paths (globs relative to the workspace root): tasks whose touches overlap them "
                                "wait until it ends."),
    "send": ("messages", "Send a message to another agent; it reaches a Claude Code agent mid-task through its hooks."),
    "status": ("admin", "The board: counts by status, tasks in progress, workers, recent log."),
    "task": ("tasks", "Add, edit, release, list, show, cancel and requeue tasks."),
    "trust": ("admin", "Fetch a server's host key, show its fingerprint, and add it to known_hosts after "
                       "confirmation."),
    "unlock": ("admin", "Show who holds the workspace lock; --force breaks it."),
    "unreserve": ("reservations", "End your reservations of these globs (or --all of yours)."),
    "wait": ("tasks", "Wait until tasks end (completed, failed for good, cancelled): exit 0 when all completed, "
                      "else 1."),
    "worker": ("workers", "Register, heartbeat, list and remove workers."),
}


def _fail(ctx: click.Context, exc: Exception) -> NoReturn:
    """Any error but a usage error: one line on stderr (the traceback with --debug), exit 1."""
    st = ctx.obj if isinstance(ctx.obj, State) else State()
    if st.debug:
        import traceback

        traceback.print_exc()
    if isinstance(exc, MavpsError):
        raise click.exceptions.Exit(report(str(exc), getattr(exc, "hint", None))) from None
    raise click.exceptions.Exit(report(
        f"unexpected {type(exc).__name__}: {exc} (re-run with --debug for the traceback, and please report it)"
    )) from None


def _click_error(exc: click.ClickException | click.Abort, argv: list[str] | None) -> NoReturn:
    """A usage error (exit 2) or a declined confirmation (exit 1): as click shows it, or as JSON with --json."""
    if not wants_json(argv):
        raise exc
    if isinstance(exc, click.Abort):
        raise click.exceptions.Exit(report("aborted: nothing was changed", "answer yes, or pass --yes"))
    ctx = getattr(exc, "ctx", None)
    hint = f"see `{ctx.command_path} --help`" if ctx is not None else "see `mavps --help`"
    raise click.exceptions.Exit(report(exc.format_message(), hint, exc.exit_code)) from None


def _reader_left() -> NoReturn:
    """`mavps log --follow | head`: the reader left; so do we, quietly."""
    try:
        sys.stdout = open(os.devnull, "w")
    except OSError:
        pass
    raise click.exceptions.Exit(0) from None


class MavpsGroup(click.Group):
    """The root group: its commands load on first use (one module each), and its errors become exit 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS, *hooks.LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is None and name in COMMANDS:
            importlib.import_module(f"{__package__}.{COMMANDS[name][0]}")  # its decorators register it on `cli`
            cmd = super().get_command(ctx, name)
        if cmd is not None or name not in hooks.LAZY_COMMANDS:
            return cmd
        return hooks.load(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, but the commands not loaded yet are listed without importing them."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            if name not in self.commands and name in COMMANDS:
                rows.append((name, make_default_short_help(COMMANDS[name][1], limit)))
            elif name not in self.commands and name in hooks.LAZY_COMMANDS:
                rows.append((name, hooks.LAZY_COMMANDS[name][1]))
            elif (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    #: The command line of this run (for `wants_json` when parsing failed before any callback ran).
    argv: list[str] | None = None

    def main(self, args: Any = None, *a: Any, **kw: Any) -> Any:
        self.argv = [str(x) for x in (sys.argv[1:] if args is None else args)]
        return super().main(args, *a, **kw)

    def make_context(self, *a: Any, **kw: Any) -> click.Context:
        try:
            return super().make_context(*a, **kw)
        except (click.ClickException, click.Abort) as exc:
            _click_error(exc, self.argv)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except (click.ClickException, click.Abort) as exc:
            _click_error(exc, self.argv)
        except KeyboardInterrupt:
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            _reader_left()
        except Exception as exc:
            _fail(ctx, exc)


@click.group(cls=MavpsGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Example: mavps --workspace sftp://myvps/ws status")
@global_options
@click.option("--worker", metavar="ID", expose_value=False, callback=set_flag("worker_id"),
              help="Act for this worker [MAVPS_WORKER_ID].")
@click.option("--agent", metavar="NAME", expose_value=False, callback=set_flag("agent"),
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
