"""Hand reservations of paths: `reserve`, `reservations`, `unreserve`."""
from __future__ import annotations

import click

from ..render import plain
from .app import cli
from .options import common, emit, state


@cli.command(epilog="Examples: mavps reserve 'src/auth/**' --ttl 1800 --reason 'hand refactor'\n\n"
                    "mavps reserve docs/ README.md   (the same globs again renews the reservation)")
@click.argument("patterns", metavar="GLOB...", nargs=-1, required=True)
@click.option("--ttl", type=float, metavar="SECONDS", help="How long it holds (default 3600; it then simply ends).")
@click.option("--reason", metavar="TEXT", help="Why: shown to whoever waits for it.")
@click.option("--force", is_flag=True, help="Reserve even over a task in progress (it may still write there).")
@common
def reserve(patterns: tuple[str, ...], ttl: float | None, reason: str | None, force: bool) -> None:
    """Hold paths (globs relative to the workspace root): tasks whose touches overlap them wait until it ends."""
    r = state().workspace().reservations.reserve(list(patterns), ttl=ttl, reason=reason, force=force)
    emit(r.to_dict(), plain.reserved)


@cli.command(epilog="Example: mavps reservations --json")
@common
def reservations() -> None:
    """What holds paths now: reservations and running tasks' touches, with the tasks waiting on each."""
    emit([row.to_dict() for row in state().workspace().reservations.held()], plain.reservations)


@cli.command(epilog="Examples: mavps unreserve 'src/auth/**'        mavps unreserve --all\n\n"
                    "mavps unreserve docs/** --force   (someone else's)")
@click.argument("patterns", metavar="GLOB...", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every reservation of yours (with --force: everyone's).")
@click.option("--force", is_flag=True, help="Also end reservations made by someone else.")
@common
def unreserve(patterns: tuple[str, ...], all_: bool, force: bool) -> None:
    """End your reservations of these globs (or --all of yours)."""
    if bool(patterns) == all_:
        raise click.UsageError("give the globs to unreserve, or --all (not both)")
    gone = state().workspace().reservations.unreserve(list(patterns), all_=all_, force=force)
    emit([r.to_dict() for r in gone], plain.unreserved)
