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
import os
import sys

TYPE_CHECKING = False  # typing itself is not imported: start-up time (type checkers know this idiom)
if TYPE_CHECKING:
    from typing import Any

#: Names of this package, imported on first use (`mavps --help` needs none of them): name -> module.
_LAZY = {"COMMANDS": "app", "MavpsGroup": "app", "cli": "app", "LAZY_COMMANDS": "hooks", "EDIT_TTL": "admin",
         "STATE_ALIASES": "admin", "EXIT_NOTHING": "options", "State": "options", "common": "options",
         "die": "options", "emit": "options", "state": "options"}

__all__ = ["COMMANDS", "EDIT_TTL", "EXIT_NOTHING", "LAZY_COMMANDS", "STATE_ALIASES", "MavpsGroup", "State", "cli",
           "common", "die", "emit", "main", "state"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`mavps = mavps.cli:main`). `mavps --help` prints helptext.HELP, the very text click
    prints on a terminal 80 columns wide or more, without importing click (most of its start-up); anything
    else, and a narrower terminal, goes to the click group (app.main)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args in (["--help"], ["-h"]) and _columns() >= 80:
        from .helptext import HELP

        try:
            sys.stdout.write(HELP)
            sys.stdout.flush()
        except BrokenPipeError:  # `mavps --help | head`: the reader left
            sys.stdout = open(os.devnull, "w")
        return
    from .app import main as click_main

    click_main(argv)


def _columns() -> int:
    """The terminal's width as click's help formatter reads it (shutil.get_terminal_size, without shutil)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80
