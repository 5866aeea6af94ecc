"""Checks on what callers hand in: ids, paths, sizes. Pure functions."""
from __future__ import annotations

import posixpath
import re
from typing import Any, Sequence

from .defaults import MAX_DESCRIPTION, MAX_PRIORITY, MAX_TEXT, RANGES
from .errors import InvalidInput

WORKER_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
CAPABILITY_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def worker_id(value: object) -> str:
    """Worker ids: letters, digits, '.', '_', '-', at most 64 characters."""
    if not isinstance(value, str) or not WORKER_ID_RE.fullmatch(value) or value in (".", ".."):
        raise InvalidInput(
            f"invalid worker id {value!r}: use 1-64 letters, digits, '.', '_' or '-'"
        )
    return value


def agent_name(value: object) -> str:
    """Agents in the log are named like workers (the coordinator too)."""
    try:
        return worker_id(value)
    except InvalidInput:
        raise InvalidInput(
            f"invalid agent name {value!r}: use 1-64 letters, digits, '.', '_' or '-'"
        ) from None


def capabilities(values: object) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [v for v in values.split(",")]
    if not isinstance(values, (list, tuple, set, frozenset)):
        raise InvalidInput(f"invalid capabilities {values!r}: a list of names")
    out: list[str] = []
    for value in values:  # type: ignore[union-attr]
        value = value.strip() if isinstance(value, str) else value
        if not value:
            continue
        if not isinstance(value, str) or not CAPABILITY_RE.fullmatch(value):
            raise InvalidInput(
                f"invalid capability {value!r}: use 1-64 letters, digits, '.', '_', ':' or '-'"
            )
        if value not in out:
            out.append(value)
    return out


def task_id(value: object) -> int:
    """Task ids are positive integers; strings of digits are accepted."""
    if isinstance(value, bool):
        raise InvalidInput(f"invalid task id {value!r}: a positive integer")
    digits = value.strip() if isinstance(value, str) else ""
    if digits.isascii() and digits.isdigit() and len(digits) <= 18:  # not '²' or '٣': isdigit() says yes
        value = int(digits)
    if not isinstance(value, int) or value <= 0 or value >= 2**53:
        raise InvalidInput(f"invalid task id {value!r}: a positive integer")
    return value


def relative_path(value: object, what: str = "path") -> str:
    """A path inside the workspace: relative, no '..', no NUL, normalised."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"invalid {what} {value!r}: a non-empty relative path")
    if "\x00" in value or "\n" in value or "\r" in value or len(value) > 1024:
        raise InvalidInput(f"invalid {what} {value!r}: control characters or too long")
    if value.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", value):
        raise InvalidInput(
            f"{what} {value!r} is absolute: give it relative to the workspace root"
        )
    parts = value.replace("\\", "/").split("/")
    if ".." in parts:
        raise InvalidInput(f"{what} {value!r} leaves the workspace ('..' is not allowed)")
    clean = posixpath.normpath("/".join(parts))
    if clean in (".", ""):
        raise InvalidInput(f"invalid {what} {value!r}: names the workspace itself")
    return clean


def text(value: object, what: str, limit: int = MAX_TEXT, allow_empty: bool = True) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text, not {type(value).__name__}")
    if "\x00" in value:
        raise InvalidInput(f"{what} contains a NUL character")
    if not allow_empty and not value.strip():
        raise InvalidInput(f"{what} must not be empty")
    if len(value.encode("utf-8", "surrogatepass")) > limit:
        raise InvalidInput(f"{what} is larger than {limit} bytes: put long content in a file")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} is not valid UTF-8 text") from None
    return value


def integer(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise InvalidInput(f"{what} must be between {low} and {high}, not {value}")
    return value


def task_fields(description: object, instruction_file: object, context_files: Sequence[object],
                requires: Sequence[object], priority: object, depends_on: Sequence[object],
                max_attempts: object) -> dict[str, Any]:
    """The fields of a new task, each checked (its id and stamps are given when it is added)."""
    low, high = RANGES["max_attempts"]
    return {
        "description": text(description, "description", MAX_DESCRIPTION, allow_empty=False),
        "instruction_file": None if instruction_file is None else relative_path(instruction_file, "instruction_file"),
        "context_files": [relative_path(c, "context file") for c in context_files],
        "requires": capabilities(list(requires)),
        "priority": integer(priority, "priority", -MAX_PRIORITY, MAX_PRIORITY),
        "depends_on": sorted({task_id(d) for d in depends_on}),
        "max_attempts": integer(max_attempts, "max_attempts", int(low), int(high)),
    }
