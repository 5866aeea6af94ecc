"""`cat`, `put`, `ls`, `get`: workspace files for agents that are not on the VPS, streamed."""
from __future__ import annotations

import sys
from typing import IO

import click

from ..render import plain
from .app import cli
from .options import common, emit, state


@cli.command("cat", epilog="Example: mavps cat docs/schema.md")
@click.argument("path")
@common
def cat(path: str) -> None:
    """Print a file of the workspace (a task's context file, say), for agents not on the VPS.

    Streamed in chunks, so any size works (--json holds it in memory: 64 MiB at most)."""
    st = state()
    if st.json:
        data = st.workspace().read_file(path)
        emit({"path": path, "size": len(data), "content": data.decode("utf-8", "replace")})
        return
    out = sys.stdout.buffer
    st.workspace().stream_file(path, out.write)
    out.flush()


@cli.command("put", epilog="Examples: mavps put src/models/user.py --from user.py\n\n"
                           "echo 'notes' | mavps put docs/notes.md")
@click.argument("path")
@click.option("--from", "source", type=click.File("rb"), default="-", show_default=True,
              help="Local file to upload ('-': standard input).")
@common
def put(path: str, source: IO[bytes]) -> None:
    """Write a file into the workspace atomically (parents are created; state files refused).

    Streamed in chunks; 64 MiB at most. An interrupted or failed put leaves the old file as it was."""
    size = state().workspace().write_file(path, source)
    emit({"path": path, "size": size}, plain.wrote)


@cli.command("ls", epilog="Examples: mavps ls        mavps ls src --long --recursive")
@click.argument("directory", default="", metavar="[DIR]")
@click.option("--long", "-l", "long_", is_flag=True, help="Kind, size and modification time too.")
@click.option("--recursive", "-R", is_flag=True, help="Real subdirectories too (links are never followed).")
@common
def ls(directory: str, long_: bool, recursive: bool) -> None:
    """List a workspace directory (a link is shown as a link, never followed)."""
    from ..files import list_dir

    entries, complete = list_dir(state().workspace().transport, directory, recursive=recursive)
    emit({"path": directory, "entries": entries, "complete": complete},
         lambda d: plain.listing(d, long_, recursive))


@cli.command("get", epilog="Examples: mavps get docs/schema.md        mavps get src results.txt --to ./from-workers")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--to", "dest", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Local directory to copy into.")
@common
def get(paths: tuple[str, ...], dest: str) -> None:
    """Copy workspace files and directories (recursively) here; each file is written whole or not at all."""
    from ..files import fetch

    rows = fetch(state().workspace().transport, list(paths), dest)
    emit(rows, plain.fetched)
