"""Messages between agents: append-only channels in `inbox/`, a read cursor per agent.

A send is one lock-free O_APPEND of one line to its channel (`inbox/<agent>.jsonl`,
`inbox/cap.<NAME>.jsonl` or `inbox/all.jsonl`), with a `message_sent` record in
the comms log in the same round trips. A reader reads its own channel, one per
capability and `all` from its cursor (`inbox/<agent>.cursor.json`: channel file ->
byte offset read up to), lock-free; `take` then moves the cursor with a
compare-and-swap under the workspace lock, so two readers of one agent never both
deliver a message, and a reader that dies before the commit leaves it unread.
Only whole lines count: a line still being appended is left for the next read.
"""
from __future__ import annotations

import heapq
import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from . import validate
from .codec import LOG_FILE, MAX_LOG_LINE, dumps, log_line, parse_json
from .defaults import MAX_MESSAGE
from .errors import CorruptState, InvalidInput, NotFound, UnsafePath
from .models import WORKERS_FILE
from .state import read_workers
from .lockpaths import new_token
from .store import Store, Txn, no_workspace
from .timeutil import iso, utcnow

INBOX_DIR = "inbox"
COORDINATOR = "coordinator"
ALL = "all"
CAP_PREFIX = "cap:"
KIND_RE = re.compile(r"[a-z_]{1,32}")
#: Tries of a take whose cursor another reader of the same agent moved meanwhile.
TAKE_TRIES = 5


@dataclass(frozen=True)
class Message:
    """One message as stored (one JSON line of a channel)."""

    id: str
    at: str
    sender: str
    to: str
    text: str
    task: int | None = None
    kind: str = "message"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "Message":
        """A message read from a channel; anything malformed is InvalidInput (the reader skips it)."""
        if not isinstance(data, dict):
            raise InvalidInput("a message must be a JSON object")
        fields = {k: data.get(k) for k in ("id", "at", "sender", "to", "text")}
        if not all(isinstance(v, str) for v in fields.values()):
            raise InvalidInput("a message needs id, at, sender, to and text as strings")
        task = data.get("task")
        if task is not None:
            task = validate.task_id(task)
        kind = data.get("kind", "message")
        if not isinstance(kind, str) or not KIND_RE.fullmatch(kind):
            raise InvalidInput(f"invalid message kind {kind!r}")
        return cls(**fields, task=task, kind=kind)  # type: ignore[arg-type]


def channel_of(to: str) -> str:
    """The channel file (in inbox/) of a target: a worker id, `coordinator`, `cap:NAME` or `all`."""
    if not isinstance(to, str):
        raise InvalidInput(f"invalid target {to!r}: a worker id, coordinator, cap:NAME or all")
    if to == ALL:
        return "all.jsonl"
    if to.startswith(CAP_PREFIX):
        caps = validate.capabilities([to[len(CAP_PREFIX):]])
        if not caps:
            raise InvalidInput(f"invalid target {to!r}: name a capability after cap:, e.g. cap:backend")
        return f"cap.{caps[0]}.jsonl"
    try:
        validate.worker_id(to)
    except InvalidInput:
        raise InvalidInput(f"invalid target {to!r}: a worker id, coordinator, cap:NAME or all") from None
    if to.startswith("cap.") or to.endswith(".cursor"):
        raise InvalidInput(f"invalid target {to!r}: that name is reserved for inbox files; use cap:NAME for a "
                           "capability")
    return f"{to}.jsonl"


def channels_for(agent: str, capabilities: Sequence[str] = ()) -> list[str]:
    """The channel files a reader reads: its own, one per capability, and all (no duplicates)."""
    out = [channel_of(validate.agent_name(agent))]
    for cap in validate.capabilities(list(capabilities)):
        out.append(f"cap.{cap}.jsonl")
    out.append("all.jsonl")
    return list(dict.fromkeys(out))


def path_of(channel: str) -> str:
    return f"{INBOX_DIR}/{channel}"


def cursor_path(agent: str) -> str:
    return f"{INBOX_DIR}/{validate.agent_name(agent)}.cursor.json"


@dataclass
class _Scan:
    """What one lock-free read found: the messages (oldest first), the cursor's bytes, the new offsets."""

    messages: list[tuple[Message, str, int]]  # (message, channel, end offset of its line)
    cursor_raw: bytes | None
    cursor: dict[str, int]
    ends: dict[str, int]  # channel -> offset after the last whole line read


class _Moved(Exception):
    """The cursor changed between the lock-free read and the commit: another reader took messages."""


class Inbox:
    """Send messages and read an agent's unread ones."""

    def __init__(self, store: Store, agent: str) -> None:
        self.store = store
        self.agent = agent

    # ----- sending ---------------------------------------------------------------------
    def send(self, sender: str, to: str, text: str, task: int | None = None, kind: str = "message") -> Message:
        """Append one message to its target's channel, and a `message_sent` record to the log.

        A worker target must be registered; `cap:NAME` and `all` reach workers registered later too."""
        sender = validate.agent_name(sender)
        channel = channel_of(to)
        text = validate.text(text, "message", MAX_MESSAGE, allow_empty=False)
        task = None if task is None else validate.task_id(task)
        if not isinstance(kind, str) or not KIND_RE.fullmatch(kind):
            raise InvalidInput(f"invalid message kind {kind!r}: 1-32 lowercase letters or '_'")
        msg = Message(id=new_token(), at=iso(utcnow()), sender=sender, to=to, text=text, task=task,
                      kind=kind)
        line = log_line(msg.to_dict())
        record = {"timestamp": msg.at, "agent": sender, "event": "message_sent", "message": text, "to": to,
                  "message_id": msg.id, "kind": kind}
        if task is not None:
            record["task_id"] = task
        entry = log_line(record)
        if max(len(line), len(entry)) > MAX_LOG_LINE:
            raise InvalidInput(f"message is too large once encoded (over {MAX_LOG_LINE} bytes): put long content "
                               "in a file in the workspace (`mavps put`) and send its path")
        personal = not (to == ALL or to == COORDINATOR or to.startswith(CAP_PREFIX))
        self.store.append_all({path_of(channel): line, LOG_FILE: entry}, folder=INBOX_DIR,
                              reads=[WORKERS_FILE] if personal else (),
                              check=(lambda raw: _registered(to, raw.get(WORKERS_FILE))) if personal else None)
        return msg

    # ----- reading ---------------------------------------------------------------------
    def unread(self, agent: str, capabilities: Sequence[str] = ()) -> list[Message]:
        """The agent's unread messages, oldest first, read without the lock; nothing is marked read."""
        return [m for m, _c, _e in self._scan(agent, capabilities).messages]

    def take(self, agent: str, capabilities: Sequence[str] = (), limit: int | None = None) -> list[Message]:
        """The unread messages (at most `limit`), oldest first, marked read: returned only once the cursor
        moved past them under the lock, so each is handed out once even with two readers of one agent."""
        for _ in range(TAKE_TRIES):
            scan = self._scan(agent, capabilities)
            taken = scan.messages[:limit] if limit is not None else scan.messages
            if not taken:
                return []
            new = dict(scan.cursor)
            if len(taken) == len(scan.messages):
                new.update(scan.ends)  # past the skipped lines too (the reader's own broadcasts, junk)
            else:  # a prefix of each channel (see _parse): up to the end of its last taken line
                upto: dict[str, int] = {}
                for _msg, channel, end in taken:
                    upto[channel] = max(upto.get(channel, 0), end)
                new.update(upto)
            try:
                self._commit(agent, scan.cursor_raw, new)
            except _Moved:
                continue
            return [m for m, _c, _e in taken]
        return []  # another reader of this agent kept taking them first: they are being delivered there

    def sizes(self, agent: str, capabilities: Sequence[str] = ()) -> dict[str, int | None]:
        """The size of each of the reader's channels (None: not there): one round trip, for a cheap
        "anything new?" against sizes remembered locally."""
        paths = [INBOX_DIR] + [path_of(c) for c in channels_for(agent, capabilities)]
        found = self.store.kinds(paths)
        _check_dir(found[INBOX_DIR])
        return {p.split("/", 1)[1]: (st.size if st is not None else None) for p, st in found.items() if p != INBOX_DIR}

    def _scan(self, agent: str, capabilities: Sequence[str]) -> _Scan:
        channels = channels_for(agent, capabilities)
        cpath = cursor_path(agent)
        found = self.store.kinds([INBOX_DIR, LOG_FILE, cpath] + [path_of(c) for c in channels])
        if found[LOG_FILE] is None:  # (the same round trip) not a workspace: say so rather than "no messages"
            raise no_workspace(self.store.transport.location)
        if found[INBOX_DIR] is None:
            return _Scan([], None, {}, {})
        _check_dir(found[INBOX_DIR])
        cursor_raw = None
        if found[cpath] is not None:
            cursor_raw = (self.store.look([cpath], missing_ok=True))[cpath]
        cursor = _parse_cursor(cpath, cursor_raw)
        starts = {}
        for c in channels:
            st = found[path_of(c)]
            if st is None:
                continue
            if not st.is_file:
                raise UnsafePath(path_of(c), st.kind(), "a regular file (a message channel)")
            off = cursor.get(c, 0)
            if st.size > off or st.size < off:  # shorter: truncated or replaced, read it from the start
                starts[path_of(c)] = off
        if not starts:
            return _Scan([], cursor_raw, cursor, {})
        parts = self.store.look_parts({p: (lambda size, o=o: o if size >= o else 0) for p, o in starts.items()})
        return self._parse(agent, channels, cursor_raw, cursor, parts)

    def _parse(self, agent: str, channels: list[str], cursor_raw: bytes | None, cursor: dict[str, int],
               parts: dict[str, tuple[bytes, int, int] | None]) -> _Scan:
        own = channel_of(agent)
        lists: list[list[tuple[str, int, Message, str, int]]] = []
        ends: dict[str, int] = {}
        for order, c in enumerate(channels):
            part = parts.get(path_of(c))
            if part is None:
                continue
            data, start, _size = part
            whole = data[: data.rfind(b"\n") + 1]
            ends[c] = start + len(whole)
            pos = start
            found: list[tuple[str, int, Message, str, int]] = []
            lists.append(found)
            for line in whole.splitlines(keepends=True):
                pos += len(line)
                msg = _message(line)
                if msg is None or (c != own and msg.sender == agent):
                    continue
                found.append((msg.at, order, msg, c, pos))
        # oldest first, but each channel in its own order (senders' clocks differ): any first N are a prefix of
        # every channel, so a cursor moved past them skips nothing unread
        merged = heapq.merge(*lists, key=lambda f: (f[0], f[1]))
        return _Scan([(m, c, end) for _at, _o, m, c, end in merged], cursor_raw, cursor, ends)

    def _commit(self, agent: str, expected: bytes | None, new: dict[str, int]) -> None:
        """Move the cursor to `new` under the lock, unless it moved since it was read (_Moved)."""
        cpath = cursor_path(agent)

        def change(txn: Txn) -> None:
            if txn.raw.get(cpath) != expected:
                raise _Moved()
            txn.put(cpath, dumps(dict(sorted(new.items()))))

        self.store.transact([cpath], change, new_files=1, new_dirs=[INBOX_DIR])


def _registered(to: str, workers: bytes | None) -> None:
    if to not in read_workers(workers):
        raise NotFound(f"no worker {to!r} is registered: check `mavps worker list`; to reach every worker with a "
                       "capability, now and later, send to cap:NAME, or to everyone with all")


def _check_dir(st: Any) -> None:
    if st is not None and (st.is_link or not st.is_dir):
        raise UnsafePath(INBOX_DIR, st.kind(), "a directory (the message channels)")


def _message(line: bytes) -> Message | None:
    """A channel line as a message; a torn or foreign line is skipped."""
    try:
        return Message.from_dict(json.loads(line.decode("utf-8")))
    except (UnicodeDecodeError, ValueError):
        return None


def _parse_cursor(path: str, raw: bytes | None) -> dict[str, int]:
    if raw is None:
        return {}
    value = parse_json(path, raw)
    if not isinstance(value, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                              for v in value.values()):
        raise CorruptState(path, "must be a JSON object of channel file -> byte offset; remove it to see every "
                                 "message again")
    return {str(k): v for k, v in value.items()}
