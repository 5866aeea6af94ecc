"""The comms log, `agent-comms.jsonl`: appended without the lock, read from the end."""
from __future__ import annotations

import json
from typing import Any

from . import validate
from .errors import InvalidInput
from .store import LOG_FILE, MAX_LOG_LINE, Store, log_line
from .timeutil import iso, utcnow

#: How much of the end of the log one look reads.
TAIL_WINDOW = 256 * 1024


def parse_lines(data: bytes, partial_first: bool) -> list[dict[str, Any]]:
    """Records from a slice of the log; a torn or foreign line is skipped."""
    lines = data.split(b"\n")
    if partial_first and lines:
        lines = lines[1:]
    out = []
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return without_rolled_back(out)


def without_rolled_back(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the records of transactions that did not take effect (their `rolled_back` note stays)."""
    undone = {r.get("txn") for r in records if r.get("event") == "rolled_back" and r.get("txn")}
    if not undone:
        return records
    return [r for r in records if r.get("event") == "rolled_back" or r.get("txn") not in undone]


def matches(rec: dict[str, Any], agent: str | None, event: str | None, task: int | None) -> bool:
    return ((agent is None or rec.get("agent") == agent)
            and (event is None or rec.get("event") == event)
            and (task is None or rec.get("task_id") == task))


class Log:
    def __init__(self, store: Store, agent: str) -> None:
        self.store = store
        self.agent = agent

    def append(self, message: str, agent: str | None = None, **fields: Any) -> dict[str, Any]:
        """Append one record; refused (not split) above 32 KiB, so lines never interleave."""
        agent = validate.agent_name(agent or self.agent)
        message = validate.text(message, "message", MAX_LOG_LINE, allow_empty=False)
        record = {"timestamp": iso(utcnow()), "agent": agent, "message": message,
                  "event": fields.pop("event", "message")}
        record.update(fields)
        line = log_line(record)
        if len(line) > MAX_LOG_LINE:
            raise InvalidInput(f"log record is {len(line)} bytes, over the {MAX_LOG_LINE} byte limit: "
                               "write long text to a file in the workspace and log its path")
        self.store.append(LOG_FILE, line)
        return record

    def tail(self, n: int = 20, agent: str | None = None, event: str | None = None,
             task: int | None = None) -> list[dict[str, Any]]:
        """The last n matching records (two round trips per window read)."""
        records, _size = self.read_from_end(n, agent, event, task)
        return records

    def read_from_end(self, n: int, agent: str | None = None, event: str | None = None,
                      task: int | None = None) -> tuple[list[dict[str, Any]], int]:
        window = TAIL_WINDOW
        while True:
            part = self.store.look_parts({LOG_FILE: lambda size: max(0, size - window)})[LOG_FILE]
            if part is None:
                return [], 0
            data, start, size = part
            recs = [r for r in parse_lines(data, start > 0) if matches(r, agent, event, task)]
            if len(recs) >= n or start == 0:
                return recs[-n:] if n else [], size
            window *= 4

    def since(self, offset: int) -> tuple[list[dict[str, Any]], int]:
        """Records appended after byte `offset` (for `log --follow`)."""
        part = self.store.look_parts({LOG_FILE: lambda size: offset if size >= offset else 0})[LOG_FILE]
        if part is None:
            return [], offset
        data, offset, _size = part  # a log shorter than offset was truncated or replaced: read from the start
        end = data.rfind(b"\n") + 1  # leave a line still being written for next time
        return parse_lines(data[:end], False), offset + end
