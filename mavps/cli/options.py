"""What every command shares: the connection options, the workspace opened on first use, emit and die.

rq's cli/helpers.py in spirit: one decorator (`common`) gives each command the same
connection options (so `mavps task list --json` works as well as `mavps --json task list`),
one `State` builds the config and the workspace lazily and closes it at exit, and
`emit` is the one place that chooses between `--json` and the human renderer.
"""
from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING, Any, Callable, NoReturn

import click

# render, session and json are imported where used: `mavps --help` needs none of them (start-up time)
if TYPE_CHECKING:  # pragma: no cover
    from ..config import Config
    from ..models import Task
    from ..workspace import Workspace

#: Exit codes (README "The commands"): 0 ok, 1 any error, 2 a usage error (click's convention, kept so a
#: script can tell a wrong command line from a failure), 3 `claim` found nothing, 130 Ctrl-C.
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOTHING = 3
EXIT_INTERRUPTED = 130

#: The connection flags repeated in the commands `claim` suggests: state key -> option.
_REPEATED_FLAGS = {"workspace": "--workspace", "identity_file": "--identity-file", "known_hosts": "--known-hosts"}


class State:
    """Global options, and the workspace opened on first use (closed at exit)."""

    def __init__(self) -> None:
        self.flags: dict[str, Any] = {}
        self.json = False
        self.debug = bool(os.environ.get("MAVPS_DEBUG"))
        self._config: Config | None = None
        self._ws: Workspace | None = None

    def config(self) -> Config:
        if self._config is None:
            from ..session import load_config

            self._config = load_config(self.flags)
        return self._config

    def workspace(self, agent: str | None = None) -> Workspace:
        if self._ws is None:
            from ..session import open_workspace

            self._ws = open_workspace(self.config(), agent=agent)
            click.get_current_context().find_root().call_on_close(self.close)
        return self._ws

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def given_flags(self) -> str:
        """The connection flags given on this command line, to repeat in suggested commands."""
        return "".join(f" {opt} {shlex.quote(str(self.flags[k]))}" for k, opt in _REPEATED_FLAGS.items()
                       if self.flags.get(k))


def state() -> State:
    """The State of this invocation (kept on the root context)."""
    root = click.get_current_context().find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


# ----- options ---------------------------------------------------------------------
def set_flag(key: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """An option callback that records a given value in State.flags (they override env and config file)."""
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and value != ():
            state().flags[key] = value
        return value
    return callback


def _set_attr(name: str) -> Callable[[click.Context, click.Parameter, bool], bool]:
    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        if value:
            setattr(state(), name, True)
        return value
    return callback


def connection_options(hidden: bool) -> list[Callable]:
    """Options accepted both before and after the subcommand (`mavps task list --json`)."""
    def opt(*decls: str, key: str, hide: bool = hidden, **kw: Any) -> Callable:
        return click.option(*decls, expose_value=False, is_eager=True, hidden=hide, callback=set_flag(key), **kw)

    return [
        opt("--workspace", "-w", key="workspace", metavar="URL",
            help="Workspace: a local path, sftp://[user@]host[:port]/abs/path or host:/abs/path "
                 "[MAVPS_WORKSPACE]."),
        opt("--identity-file", "-i", key="identity_file", metavar="PATH",
            help="SSH private key [MAVPS_IDENTITY_FILE]."),
        opt("--known-hosts", key="known_hosts", metavar="PATH",
            help="known_hosts file (default ~/.ssh/known_hosts) [MAVPS_KNOWN_HOSTS]."),
        opt("--ssh-config", key="ssh_config", metavar="PATH",
            help="ssh config file (default ~/.ssh/config) [MAVPS_SSH_CONFIG]."),
        opt("--ssh", key="ssh", type=click.Choice(["paramiko", "openssh"]),
            help="SSH implementation: paramiko, or openssh sharing one connection [MAVPS_SSH]."),
        opt("--connect-timeout", key="connect_timeout", type=float, metavar="SECONDS",
            help="Seconds to wait for the server [MAVPS_CONNECT_TIMEOUT]."),
        click.option("--json", "json_", is_flag=True, expose_value=False, is_eager=True, callback=_set_attr("json"),
                     help="Print one JSON document on stdout, nothing else."),
        click.option("--debug", is_flag=True, expose_value=False, is_eager=True, hidden=hidden,
                     callback=_set_attr("debug"), help="Show tracebacks."),
    ]


def apply(f: Callable, options: list[Callable]) -> Callable:
    """Decorate f with options, the first one listed first in --help."""
    for option in reversed(options):
        f = option(f)
    return f


def global_options(f: Callable) -> Callable:
    """The connection options, --json and --debug, on the `mavps` group (shown in its --help)."""
    return apply(f, connection_options(hidden=False))


def common(f: Callable) -> Callable:
    """The connection options, --json and --debug, on a subcommand (hidden from its --help)."""
    return apply(f, connection_options(hidden=True))


def worker_option(help: str) -> Callable:
    """`--worker ID` of the commands a worker runs; resolve it with `acting_worker`."""
    return click.option("--worker", "worker", metavar="ID", help=help)


task_id_argument = click.argument("task_id", metavar="ID")


def acting_worker(given: str | None, what: str) -> tuple[str, Workspace]:
    """The worker a command acts for (its --worker, else MAVPS_WORKER_ID) and the workspace opened as it."""
    from ..session import worker_id

    st = state()
    wid = worker_id(st.config(), given, what)
    return wid, st.workspace(agent=wid)


# ----- output ----------------------------------------------------------------------
def emit(data: Any, human: Callable[[Any], None] | None = None) -> None:
    """Print data: as one JSON document with --json, else through its human renderer (if any: none when the
    command showed a person its answer as it went)."""
    if state().json:
        import json

        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    elif human is not None:
        human(data)


def task_out(task: Task, instructions: str | None = None) -> dict[str, Any]:
    """A task as the commands print it (with its instructions when read)."""
    out = task.to_dict()
    if instructions is not None:
        out["instructions"] = instructions
    return out


def emit_task(task: Task, verb: str) -> None:
    """The answer of a command that changed one task: `Added task #3 (pending): ...`."""
    from ..render import plain

    emit(task_out(task), plain.one_task(verb))


def wants_json(argv: list[str] | None = None) -> bool:
    """Whether this invocation asked for --json: its flag, or the word on the command line `argv` (a usage
    error stops click before any option callback has run)."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    if root is not None and isinstance(root.obj, State) and root.obj.json:
        return True
    if argv is None and root is not None:
        argv = getattr(root.command, "argv", None)
    args = list(argv or [])
    return "--json" in (args[:args.index("--")] if "--" in args else args)


def report(message: str, hint: str | None = None, code: int = EXIT_ERROR) -> int:
    """Print an error: one line on stderr (literally: it may quote workspace text), or with --json one
    object `{"error": ..., "hint": ...}` on stdout and nothing else; the exit code to use."""
    if wants_json():
        import json

        click.echo(json.dumps({"error": message, "hint": hint, "exit_code": code}, ensure_ascii=False))
    else:
        from ..render.safe import literal

        click.echo(f"mavps: {literal(message)}", err=True)
    return code


def die(message: str) -> NoReturn:
    """Stop the command with an error message (exit 1)."""
    raise click.exceptions.Exit(report(message))
