"""`mavps hook ...` and `mavps install-hooks`: defined in mavps.hookcli, loaded on first use.

The group lists them in --help without importing them, so `mavps --help` stays quick;
an install where they fail to load gets a command that says so instead of a traceback.
"""
from __future__ import annotations

import importlib

import click

from .options import die

#: Commands defined in other modules, loaded on first use: name -> (module:attr, short help).
LAZY_COMMANDS = {
    "hook": ("mavps.hookcli:hook", "Claude Code hook entry points (stop, session-start, pre-tool-use, post-tool-use)."),
    "install-hooks": ("mavps.hookcli:install_hooks", "Install the mavps hooks into a Claude Code project."),
}


def load(name: str) -> click.Command:
    """The lazy command `name`, or a stand-in that explains why it is not available."""
    target, short = LAZY_COMMANDS[name]
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        reason = f"{type(exc).__name__}: {exc}"

    @click.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                   help=short, add_help_option=False)
    def unavailable() -> None:
        die(f"`mavps {name}` is not available in this install ({target} failed to load: {reason}); "
            "reinstall mavps or update it")
    return unavailable
