"""The `mavps` group: global options, the lazily loaded hook commands, and the error boundary.

Exit codes: 0 ok, 3 when `claim` finds nothing claimable, 1 for any error (one line
on stderr saying what went wrong and what to do; `--debug` adds the traceback),
2 for usage errors (click's convention), 130 on Ctrl-C. With --json every error,
usage errors too, is instead one object {"error", "hint", "exit_code"} on stdout.
"""
from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click

from .. import __version__
from ..errors import MavpsError
from . import hooks
from .options import EXIT_INTERRUPTED, State, global_options, report, set_flag, state, wants_json


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
    """The root group: its hook commands load on first use, and its errors become exit 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *hooks.LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in hooks.LAZY_COMMANDS:
            return cmd
        return hooks.load(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, but lazy commands are listed without importing them."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            if name in hooks.LAZY_COMMANDS and name not in self.commands:
                rows.append((name, hooks.LAZY_COMMANDS[name][1]))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
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
