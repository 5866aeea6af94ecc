"""Bytes of the workspace's files: pretty JSON that people read with cat and jq, log lines, and parsing that
reports a bad file with its position (it is never rewritten). Below the store: no models here."""
from __future__ import annotations

import json
from typing import Any

from .errors import CorruptState

from .defaults import MAX_LOG_LINE  # noqa: F401  (one log record: larger appends could interleave)

LOG_FILE = "agent-comms.jsonl"


def dumps(value: Any) -> bytes:
    """Pretty JSON for files people read with cat and jq."""
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def log_line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(", ", ": ")) + "\n").encode("utf-8")


def parse_json(path: str, data: bytes) -> Any:
    """Parse a state file; a bad one is reported with its position, never rewritten."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptState(path, f"not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise CorruptState(path, "the file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptState(path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
