"""Bytes of the workspace's files: JSON that people read with cat and jq (a line per task), log lines, and
parsing that reports a bad file with its position (it is never rewritten). Below the store: no models here."""
from __future__ import annotations

import json
from typing import Any

from .errors import CorruptState

from .defaults import MAX_LOG_LINE  # noqa: F401  (one log record: larger appends could interleave)

LOG_FILE = "agent-comms.jsonl"


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> bytes:
    """JSON for files people read with cat, grep and jq: a list one item per line, an object one key per line,
    each compact. Why not indented: with 10 000 tasks the queue would be ~2.5x the bytes on the wire, and
    `indent` makes json use its pure-Python encoder (~5x slower); a line per task stays readable."""
    enc = _COMPACT.encode
    if isinstance(value, list) and value:
        body = ",\n".join(enc(item) for item in value)
        return f"[\n{body}\n]\n".encode("utf-8")
    if isinstance(value, dict) and value:
        body = ",\n".join(f"{enc(str(k))}:{enc(v)}" for k, v in value.items())
        return f"{{\n{body}\n}}\n".encode("utf-8")
    return (enc(value) + "\n").encode("utf-8")


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
