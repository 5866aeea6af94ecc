"""Settings and an opened workspace for a command, without click.

The CLI and the Claude Code hooks both start here:

    cfg = load_config({"workspace": "sftp://myvps/ws"})   # flags; None values ignored
    with open_workspace(cfg, agent="worker-1") as ws:
        ...

Precedence is flag > MAVPS_* environment > config file > default
(`mavps.config.load`). Only `mavps demo` invents a workspace when none is
configured; everything else refuses, so an agent never silently builds its
state in whatever directory its shell happens to be in.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from .config import Config, load
from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .workspace import Workspace

NO_WORKSPACE = ("no workspace configured: pass --workspace PATH|sftp://host/path, "
                "set MAVPS_WORKSPACE, or put `workspace: ...` in ./mavps.yaml")


def load_config(overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                path: str | None = None) -> Config:
    """The effective settings; `overrides` are command-line values (None means not given)."""
    flags = {k: v for k, v in (overrides or {}).items() if v is not None and v != ()}
    return load(flags=flags, env=env, path=path)


def open_workspace(config: Config, agent: str | None = None) -> "Workspace":
    """Open the configured workspace (local or SFTP). Raises ConfigError when none is set."""
    if not config.workspace:
        raise ConfigError(NO_WORKSPACE)
    from .workspace import Workspace  # paramiko only loads for sftp:// URLs

    return Workspace.open(config=config, agent=agent)


def worker_id(config: Config, given: str | None, what: str) -> str:
    """The worker a command acts for: its option, else MAVPS_WORKER_ID / worker_id."""
    wid = given or config.worker_id
    if not wid:
        raise ConfigError(f"{what} needs a worker id: pass --worker ID or set MAVPS_WORKER_ID")
    return wid
