"""The hook commands (click): `mavps hook stop|session-start|post-tool-use`, `mavps install-hooks`.

Thin: options in, `mavps.hooks.protocol.run` does the rest (stdin JSON in, the
answer out, exit 0 with the reason on stderr on every failure path, so a
broken workspace never traps or crashes an agent). Also runnable as
`python -m mavps.hookcli stop` (no console script needed).

`mavps hook ...` takes no --json: its stdout is Claude Code's hook protocol (JSON already).
`mavps install-hooks` takes --json like the other commands.
"""
from __future__ import annotations

from typing import Any

import click

EPILOG_STOP = """\b
Example (what Claude Code does; run by hand to see the answer):
  echo '{"session_id": "s1", "hook_event_name": "Stop", "stop_hook_active": false}' \\
    | MAVPS_WORKER_ID=worker-1 MAVPS_WORKSPACE=sftp://myvps/srv/ws mavps hook stop
"""


def _run(name: str, fn: Any, event: str) -> None:
    """Run one hook under the protocol (stdin in, answer out, exit 0 whatever happens)."""
    from .hooks import protocol

    protocol.run(name, event, fn, click.echo)


@click.group("hook")
def hook() -> None:
    """Claude Code hooks (installed by `mavps install-hooks`; read JSON on stdin)."""


@hook.command("stop", epilog=EPILOG_STOP)
@click.option("--role", type=click.Choice(["worker", "coordinator"]), default="worker", show_default=True,
              help="coordinator: wait for news about the tasks it added and report them (hooks/coordinator.py).")
def stop(role: str) -> None:
    """The Stop hook: a worker gets its next task (or waits for one); a coordinator gets news of its tasks."""
    from .hooks import options

    opts = options.HookOptions.from_env()
    if role == "coordinator":
        from .hooks import coordinator

        _run("stop", lambda data, cfg: coordinator.coordinator_hook(data, cfg, opts), "Stop")
        return
    from .hooks import stop as stop_loop

    _run("stop", lambda data, cfg: stop_loop.stop_hook(data, cfg, opts), "Stop")


@hook.command("session-start")
@click.option("--role", type=click.Choice(["worker", "coordinator"]), default=None,
              help="Default: worker when MAVPS_WORKER_ID is set, else coordinator.")
def session_start(role: str | None) -> None:
    """Register the worker and print the role's instructions (and, for a coordinator, the board).

    \b
    Example:
      echo '{"session_id": "s1", "source": "startup"}' | mavps hook session-start --role coordinator
    """
    from .hooks import options, session_start as start_hook

    opts = options.HookOptions.from_env()
    _run("session-start", lambda data, cfg: start_hook.session_start_hook(data, cfg, role, opts), "SessionStart")


@hook.command("pre-tool-use")
def pre_tool_use() -> None:
    """The worker path guard: deny an Edit/Write outside the held task's touches (config `path_guard`).

    \b
    Example:
      echo '{"tool_name": "Write", "tool_input": {"file_path": "/proj/x.py"}, "cwd": "/proj"}' \\
        | mavps hook pre-tool-use
    """
    from .hooks import pre_tool_use as guard_hook

    _run("pre-tool-use", guard_hook.guard, "PreToolUse")
@hook.command("post-tool-use")
def post_tool_use() -> None:
    """Hand the agent's unread messages to the model after a tool call (at most every message_check seconds).

    \b
    Example:
      echo '{"session_id": "s1", "hook_event_name": "PostToolUse", "tool_name": "Bash"}' \\
        | MAVPS_WORKER_ID=worker-1 MAVPS_MESSAGE_CHECK=0 mavps hook post-tool-use
    """
    from .hooks import post_tool_use as hook_module

    hook_module.run(click.echo)


@click.command("install-hooks")
@click.option("--role", type=click.Choice(["worker", "coordinator"]), required=True,
              help="Which agent this project runs.")
@click.option("--project", "project", type=click.Path(file_okay=False), default=".", show_default=True,
              help="The project directory whose .claude/settings.json is written.")
@click.option("--worker", "worker", default=None, help="Write MAVPS_WORKER_ID into the settings' env.")
@click.option("--workspace", "workspace", default=None, help="Write MAVPS_WORKSPACE into the settings' env.")
@click.option("--capability", "capabilities", multiple=True, help="Write MAVPS_CAPABILITIES (repeatable).")
@click.option("--local", "local", is_flag=True,
              help="Write .claude/settings.local.json (not committed) instead of .claude/settings.json.")
@click.option("--allow-bash", is_flag=True,
              help="Also allow every Bash command (permissions.allow \"Bash\"), not only `mavps ...`.")
@click.option("--allow-edits", is_flag=True,
              help="Also allow the file-editing tools (Edit, Write, MultiEdit, NotebookEdit) without asking: a "
                   "headless worker needs them; the path guard keeps them to the held task's touches.")
@click.option("--python", "use_python", is_flag=True,
              help="Run the hooks as \"<this python>\" -m mavps.hookcli instead of `mavps` from PATH.")
@click.option("--block-cap", type=click.IntRange(1, 100000), default=None,
              help="CLAUDE_CODE_STOP_HOOK_BLOCK_CAP for workers (default 100).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as one JSON document on stdout.")
def install_hooks(role: str, project: str, worker: str | None, workspace: str | None, capabilities: tuple[str, ...],
                  local: bool, allow_bash: bool, allow_edits: bool, use_python: bool, block_cap: int | None,
                  as_json: bool) -> None:
    """Write mavps's hooks into the project's Claude Code settings (merged, idempotent).

    \b
    Examples:
      mavps install-hooks --role worker --worker worker-1 --workspace sftp://myvps/srv/ws --capability backend
      mavps install-hooks --role coordinator --project ~/code/myproject
    """
    import json

    from . import install
    from .cli.options import die, state
    from .errors import MavpsError

    if as_json:
        state().json = True
    try:
        report = install.install(project, role, worker=worker, workspace=workspace, capabilities=list(capabilities),
                                 local=local, allow_bash=allow_bash, allow_edits=allow_edits, use_python=use_python,
                                 block_cap=block_cap)
    except (MavpsError, OSError, ValueError) as exc:
        die(str(exc))
    if state().json:
        click.echo(json.dumps({"path": report.path, "changed": bool(report.changes), "changes": report.changes,
                               "notes": report.notes}, indent=2, ensure_ascii=False))
        return
    for line in report.lines():
        click.echo(line)


@click.group("mavps-hooks")
def main() -> None:
    """mavps's Claude Code hooks, runnable without the `mavps` console script."""


main.add_command(stop)
main.add_command(session_start)
main.add_command(pre_tool_use)
main.add_command(post_tool_use)
main.add_command(install_hooks)

if __name__ == "__main__":
    main()
