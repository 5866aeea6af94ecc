"""`plan apply`: many tasks from one YAML file, in one transaction (format: knowledge/05)."""
from __future__ import annotations

import click

from ..render import plain
from .app import cli
from .options import common, emit, state


@cli.group(epilog="Example: mavps plan apply plan.yaml --dry-run")
def plan() -> None:
    """Load a whole plan of tasks (see knowledge/05-task-queue-coordination.md)."""


@plan.command("apply", epilog="Examples: mavps plan apply plan.yaml --dry-run        mavps plan apply plan.yaml")
@click.argument("plan_file", metavar="FILE.yaml", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Only say what it would add; write nothing.")
@common
def plan_apply(plan_file: str, dry_run: bool) -> None:
    """Add a plan's tasks in one transaction; applying it again adds only what is new."""
    from .. import plan as plans

    ws = state().workspace()
    items = plans.load(plan_file, ws.config.max_attempts)
    emit({"plan": plan_file, **plans.apply(ws.queue, items, dry_run=dry_run)}, plain.plan_applied)
