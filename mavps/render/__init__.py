"""Human output, all in one place: what a person sees from the `mavps` command.

    safe.py    `literal` and `cell`: agent text made safe to show (every renderer uses them)
    tables.py  rich tables: tasks, workers, the board, the doctor's checks, the demo summary
    plain.py   the CLI's one-line answers and a claimed task's instructions (click)

Importing this package loads neither rich nor click: the hooks use `literal` from here.
"""
from __future__ import annotations

from .safe import STATUS_STYLE, cell, console, joined, literal, status_cell
from .tables import board, board_renderable, checks, demo_summary, task_detail, tasks, tasks_table, watch, workers, \
    workers_table

__all__ = [
    "STATUS_STYLE", "board", "board_renderable", "cell", "checks", "console", "demo_summary", "joined", "literal",
    "status_cell", "task_detail", "tasks", "tasks_table", "watch", "workers", "workers_table",
]
