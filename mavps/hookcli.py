"""The hook commands (click): `mavps hook stop`, `mavps hook session-start`, `mavps install-hooks`.

Thin: read the hook's JSON from stdin, call mavps.hook, print its answer.
Every failure path exits 0 with the reason on stderr and nothing on stdout,
so a broken workspace never traps or crashes an agent. Also runnable as
`python -m mavps.hookcli stop` (no console script needed).
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

EPILOG_STOP = """\b
Example (what Claude Code does; run by hand to see the answer):
  echo '{"session_id": "s1", "hook_event_name": "Stop", "stop_hook_active": false}' \\
    | MAVPS_WORKER_ID=worker-1 MAVPS_WORKSPACE=sftp://myvps/srv/ws mavps hook stop
"""


def _read_input(name: str) -> dict[str, Any] | None:
    raw = sys.stdin.read()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        click.echo(f"mavps hook {name}: stdin is not valid JSON ({exc}); letting the agent go on as usual", err=True)
        return None
    if not isinstance(data, dict):
        click.echo(f"mavps hook {name}: stdin must be a JSON object, got {type(data).__name__}; ignoring it", err=True)
        return None
    return data


def _config(name: str) -> Any:
    from . import config as cfgmod
    from .errors import ConfigError, MavpsError

    try:
        return cfgmod.load(cwd=os.environ.get("CLAUDE_PROJECT_DIR") or None)
    except (ConfigError, MavpsError, OSError) as exc:
        click.echo(f"mavps hook {name}: configuration error: {exc}; letting the agent go on as usual", err=True)
        return None


def _run(name: str, fn: Any, event: str) -> None:
    """Call one hook function inside its hard deadline; print, never raise."""
    import logging

    from . import hook as hk

    # paramiko logs its network thread's tracebacks through logging's last-resort
    # handler (stderr); a hook states the reason in one line instead.
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    data = _read_input(name)
    if data is None:
        return
    cfg = _config(name)
    if cfg is None:
        return
    try:
        with hk.deadline(hk.hard_limit(cfg, event)):
            answer = fn(data, cfg)
    except hk.HookDeadline as exc:
        click.echo(f"mavps hook {name}: {exc}; letting the agent go on as usual", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # a network thread may still be stuck: do not wait for it
    except Exception as exc:  # noqa: BLE001 - a hook must never show a traceback
        click.echo(f"mavps hook {name}: unexpected {type(exc).__name__}: {exc}; letting the agent go on as usual",
                   err=True)
        return
    if answer.message:
        click.echo(answer.message, err=True)
    out = answer.stdout()
    if out:
        click.echo(out)


@click.group("hook")
def hook() -> None:
    """Claude Code hooks (installed by `mavps install-hooks`; read JSON on stdin)."""


@hook.command("stop", epilog=EPILOG_STOP)
def stop() -> None:
    """The worker Stop hook: hand over the next task, wait for one, or let the agent stop."""
    from . import hook as hk

    opts = hk.HookOptions.from_env()
    _run("stop", lambda data, cfg: hk.stop_hook(data, cfg, opts), "Stop")


@hook.command("session-start")
@click.option("--role", type=click.Choice(["worker", "coordinator"]), default=None,
              help="Default: worker when MAVPS_WORKER_ID is set, else coordinator.")
def session_start(role: str | None) -> None:
    """Register the worker and print the role's instructions (and, for a coordinator, the board).

    \b
    Example:
      echo '{"session_id": "s1", "source": "startup"}' | mavps hook session-start --role coordinator
    """
    from . import hook as hk

    opts = hk.HookOptions.from_env()
    _run("session-start", lambda data, cfg: hk.session_start_hook(data, cfg, role, opts), "SessionStart")


@click.command("install-hooks")
@click.option("--role", type=click.Choice(["worker", "coordinator"]), required=True, help="Which agent this project runs.")
@click.option("--project", "project", type=click.Path(file_okay=False), default=".", show_default=True,
              help="The project directory whose .claude/settings.json is written.")
@click.option("--worker", "worker", default=None, help="Write MAVPS_WORKER_ID into the settings' env.")
@click.option("--workspace", "workspace", default=None, help="Write MAVPS_WORKSPACE into the settings' env.")
@click.option("--capability", "capabilities", multiple=True, help="Write MAVPS_CAPABILITIES (repeatable).")
@click.option("--local", "local", is_flag=True,
              help="Write .claude/settings.local.json (not committed) instead of .claude/settings.json.")
@click.option("--allow-bash", is_flag=True,
              help="Also allow every Bash command (permissions.allow \"Bash\"), not only `mavps ...`.")
@click.option("--python", "use_python", is_flag=True,
              help="Run the hooks as \"<this python>\" -m mavps.hookcli instead of `mavps` from PATH.")
@click.option("--block-cap", type=click.IntRange(1, 100000), default=None,
              help="CLAUDE_CODE_STOP_HOOK_BLOCK_CAP for workers (default 100).")
def install_hooks(role: str, project: str, worker: str | None, workspace: str | None, capabilities: tuple[str, ...],
                  local: bool, allow_bash: bool, use_python: bool, block_cap: int | None) -> None:
    """Write mavps's hooks into the project's Claude Code settings (merged, idempotent).

    \b
    Examples:
      mavps install-hooks --role worker --worker worker-1 --workspace sftp://myvps/srv/ws --capability backend
      mavps install-hooks --role coordinator --project ~/code/myproject
    """
    from . import install
    from .errors import MavpsError

    try:
        report = install.install(project, role, worker=worker, workspace=workspace, capabilities=list(capabilities),
                                 local=local, allow_bash=allow_bash, use_python=use_python, block_cap=block_cap)
    except (MavpsError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    for line in report.lines():
        click.echo(line)


@click.group("mavps-hooks")
def main() -> None:
    """mavps's Claude Code hooks, runnable without the `mavps` console script."""


main.add_command(stop)
main.add_command(session_start)
main.add_command(install_hooks)

if __name__ == "__main__":
    main()
