"""`board`: the board as one self-contained HTML page, written once or kept fresh with --watch."""
from __future__ import annotations

import os
import time
from typing import Callable

import click

from ..defaults import BOARD_INTERVAL
from .app import cli
from .options import common, emit, state


@cli.command(epilog="Examples: mavps board --html board.html        mavps board --html board.html --watch        "
                    "mavps board --html - > board.html")
@click.option("--html", "path", metavar="PATH", required=True,
              help="Write the board to this HTML file ('-': to stdout). It needs no network to open.")
@click.option("--watch", is_flag=True, help="Rewrite the file every interval until Ctrl-C; the page reloads itself.")
@click.option("--interval", type=click.FloatRange(1, 3600), default=BOARD_INTERVAL, show_default=True,
              help="Seconds between rewrites with --watch.")
@click.option("--max-seconds", type=click.FloatRange(0), metavar="S", help="Stop watching after S seconds.")
@common
def board(path: str, watch: bool, interval: float, max_seconds: float | None) -> None:
    """The board as one HTML page: task graph, timeline, workers, newest log records.

    One file with everything inline and no script: open it from disk in any browser. Agent text in it
    is shown as text, never run.
    """
    if watch and path == "-":
        raise click.BadParameter("--watch rewrites a file: give a path, not '-'", param_hint="--html")
    from ..render.html import page

    st = state()
    ws = st.workspace()
    if path == "-":
        text = page(ws.board_snapshot())
        emit({"html": text}, lambda _: click.echo(text, nl=False))
        return
    written = write_every(lambda: page(ws.board_snapshot(), interval if watch else None), path,
                          interval, max_seconds if watch else 0)
    emit({"path": os.path.abspath(path), "written": written},
         lambda d: click.echo(f"wrote {d['path']}" + (f" {written} times" if watch else "")))


def write_every(render: Callable[[], str], path: str, interval: float, max_seconds: float | None,
                sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> int:
    """Write `render()` to `path` atomically (a reader sees the old page or the new one), again every
    `interval` until `max_seconds` (None: until Ctrl-C, which ends it cleanly); the times written."""
    from ..localfile import atomic_write

    end = None if max_seconds is None else clock() + max_seconds
    written = 0
    try:
        while True:
            atomic_write(path, render())
            written += 1
            if end is not None and clock() >= end:
                return written
            sleep(interval if end is None else max(0.0, min(interval, end - clock())))
    except KeyboardInterrupt:
        return written
