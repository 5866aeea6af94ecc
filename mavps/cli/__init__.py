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

Startup stays quick for agents: rich, paramiko and the workspace machinery are
imported inside the commands that need them, never here.
"""
from __future__ import annotations

from . import (  # noqa: F401 - each registers its commands on `cli`
    admin,
    board,
    exchange,
    files,
    logs,
    messages,
    plan,
    questions,
    reservations,
    tasks,
    work,
    workers,
)
from .admin import EDIT_TTL, STATE_ALIASES
from .app import MavpsGroup, cli, main
from .hooks import LAZY_COMMANDS
from .options import EXIT_NOTHING, State, common, die, emit, state

__all__ = ["EDIT_TTL", "EXIT_NOTHING", "LAZY_COMMANDS", "STATE_ALIASES", "MavpsGroup", "State", "cli", "common",
           "die", "emit", "main", "state"]
