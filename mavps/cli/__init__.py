"""The `mavps` command: a thin click layer over the library.

Parse, call one library function, print. Only this package (and the hooks) touches
click, stdin/stdout, the environment and exit codes; what a person sees is drawn by
mavps.render.

    app.py      the group, global options, lazy hook commands, the error boundary (exit codes)
    options.py  the shared options, the workspace opened on first use, emit/die
    tasks.py    task add/edit/release/list/show/cancel/requeue, ready, wait
    plan.py     plan apply
    work.py     claim, complete, fail, release, reap
    reservations.py  reserve, reservations, unreserve
    questions.py  ask, answer
    workers.py  worker register/heartbeat/list/remove
    logs.py     log (append, read, follow)
    messages.py send, inbox (messages between agents)
    files.py    cat, put, ls, get
    exchange.py pull, push
    admin.py    init, status, edit, unlock, cleanup, doctor, trust, demo
    board.py    board --html (the board as one self-contained HTML page)
    hooks.py    hook, install-hooks (defined in mavps.hookcli, loaded on first use)

Startup stays quick for agents: the group imports a command's module when that command runs (its name and
short help are in app.COMMANDS for `mavps --help`), and rich, paramiko and the workspace machinery are imported
inside the commands that need them, never here.
"""
from __future__ import annotations

import importlib
from typing import Any

from .app import COMMANDS, MavpsGroup, cli, main
from .hooks import LAZY_COMMANDS

#: Names re-exported from the command modules, imported on first use: name -> module.
_LAZY = {"EDIT_TTL": "admin", "STATE_ALIASES": "admin", "EXIT_NOTHING": "options", "State": "options",
         "common": "options", "die": "options", "emit": "options", "state": "options"}

__all__ = ["COMMANDS", "EDIT_TTL", "EXIT_NOTHING", "LAZY_COMMANDS", "STATE_ALIASES", "MavpsGroup", "State", "cli",
           "common", "die", "emit", "main", "state"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
