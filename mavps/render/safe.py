"""Agent text made safe to show: `literal`, `cell`, and the console every human renderer prints on.

Text in the workspace was written by other agents, maybe strangers: a description
of `[/etc/hosts]` must not be read as rich markup, an ESC or OSC 52 in a log message
must not reach the terminal. So agent text goes into rich `Text` objects (never
parsed as markup) after `literal` made its control characters visible.
rich is imported inside the functions: `literal` is used where rich is not wanted
(the hooks, error messages).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

STATUS_STYLE = {"pending": "yellow", "in_progress": "cyan", "completed": "green", "failed": "bold red",
                "cancelled": "dim"}

#: What a terminal could act on: C0 controls but tab, DEL, C1 controls; bidi overrides and line separators
#: (they reorder or break what is shown); lone surrogates (they cannot be printed at all).
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
                     "\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def _visible(char: str) -> str:
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def literal(value: object, multiline: bool = False) -> str:
    """Agent text made safe to print: control characters shown as escapes (ESC as `\\x1b`).

    Newlines are kept with `multiline` (instructions), else shown as `\\n` so that one
    text cannot fake lines or table rows; tabs are kept. Markup is left alone: print the
    result as a rich `Text` (see `cell`) or with markup off.
    """
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if multiline:
        text = text.replace("\r\n", "\n")
    if not _UNSAFE.search(text):
        return text
    if multiline:
        return _UNSAFE.sub(lambda m: m.group() if m.group() == "\n" else _visible(m.group()), text)
    return _UNSAFE.sub(lambda m: _visible(m.group()), text)


def joined(values: Iterable[object] | None, sep: str = ",") -> str:
    """A list of agent values (capabilities, dependencies) as one literal string."""
    return sep.join(literal(v) for v in values or [])


def cell(value: object, style: str = "", multiline: bool = False) -> Text:
    """Agent text as a rich Text: shown literally, never parsed as markup."""
    from rich.text import Text

    return Text(literal(value, multiline), style=style)


def status_cell(s: object) -> Text:
    """A task status, coloured when it is one mavps knows."""
    shown = literal(s)
    return cell(shown, STATUS_STYLE.get(shown, ""))


def console() -> Console:
    """A console on the current stdout (tests swap it), wide enough for tables in pipes."""
    from rich.console import Console

    c = Console(highlight=False)
    if not c.is_terminal:
        c = Console(highlight=False, width=max(c.width, 120))
    return c
