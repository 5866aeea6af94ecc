"""One entry point: `Workspace.open(url)` gives `ws.queue`, `ws.workers`, `ws.log`."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator

from .config import Config
from .defaults import BOARD_LOG_RECORDS, BOARD_RECENT
from .errors import MavpsError, NotFound, TransportError
from .log import Log, parse_lines
from .models import BACKLOG_FILE, META_FILE, QUEUE_FILE, RES_FILE, TASKS_DIR, WORKERS_FILE, TaskStatus, \
    load_reservations
from .queue import Queue, QueueSettings
from .reservations import Reservations
from .rules import blocked_reason, claimable, holds, is_stuck, known_capabilities
from .state import ALL_TASKS, load_workers, parse_json, read_all
from .store import LOG_FILE, Settings, Store, Txn
from .timeutil import iso, utcnow
from .transport import Transport, open_transport
from .workers import Workers, held_ids, is_online

if TYPE_CHECKING:  # pragma: no cover
    from .inbox import Inbox

STATE_FILES = (QUEUE_FILE, WORKERS_FILE, META_FILE)


#: How much of the end of the log the board reads.
BOARD_LOG_WINDOW = 64 * 1024


def _whole(size: int) -> int:
    return 0


class Workspace:
    """A shared workspace directory, local or over SFTP. Close it (or use `with`)."""

    def __init__(self, transport: Transport, config: Config | None = None, agent: str | None = None) -> None:
        self.config = config or Config()
        self.transport = transport
        self.agent = agent or self.config.agent or self.config.worker_id or "coordinator"
        self.store = Store(transport, self.agent, Settings(self.config.lock_ttl, self.config.lock_timeout))
        self.queue = Queue(self.store, self.agent, QueueSettings(self.config.lease_ttl, self.config.max_attempts))
        self.workers = Workers(self.store, self.agent, self.config.worker_timeout)
        self.log = Log(self.store, self.agent)
        self.reservations = Reservations(self.store, self.agent)

    @classmethod
    def open(cls, url: str | None = None, *, config: Config | None = None, agent: str | None = None,
             **settings: Any) -> "Workspace":
        """Open a workspace: a local path or sftp://[user@]host[:port]/abs/path.

        Keyword settings (lock_ttl=..., identity_file=..., ...) override `config`.
        """
        cfg = (config or Config()).with_values(settings, "the caller") if settings else (config or Config())
        if url is not None:
            cfg = cfg.with_values({"workspace": url}, "the caller")
        if not cfg.workspace:
            raise MavpsError("no workspace given: pass a path or sftp:// URL (or set MAVPS_WORKSPACE)")
        transport = open_transport(cfg.workspace, identity_file=cfg.identity_file, known_hosts=cfg.known_hosts,
                                   connect_timeout=cfg.connect_timeout, reply_timeout=cfg.reply_timeout,
                                   ssh_config=cfg.ssh_config, ssh=cfg.ssh)
        return cls(transport, cfg, agent)

    @property
    def inbox(self) -> Inbox:
        """Messages between agents (mavps.inbox): send, unread, take."""
        from .inbox import Inbox

        return Inbox(self.store, self.agent)

    @property
    def location(self) -> str:
        return self.transport.location

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def init(self) -> dict[str, Any]:
        """Create the layout; idempotent, and never touches files already there."""
        local_root = getattr(self.transport, "root", None)
        before = self.store.kinds([TASKS_DIR, LOG_FILE])  # to say what init really made, not what it would
        self.store.create_layout(TASKS_DIR, LOG_FILE)
        made = [TASKS_DIR + "/" if p == TASKS_DIR else p for p, st in before.items() if st is None]
        def change(txn: Txn) -> list[str]:
            created = []
            for path, empty in ((QUEUE_FILE, []), (WORKERS_FILE, {}), (META_FILE, {"format": 1, "next_task_id": 1})):
                if txn.raw.get(path) is None:
                    txn.write(path, empty)
                    created.append(path)
                else:
                    txn.json(path, None)  # a corrupt file is reported, not replaced
            if created:
                txn.log.append({"timestamp": txn.stamp, "agent": self.agent, "event": "workspace_initialised",
                                "message": f"Initialised workspace ({', '.join(created)})"})
            return created

        created = self.store.transact(list(STATE_FILES), change, missing_ok=True)
        return {"workspace": self.location, "created": made + created, "root": local_root}

    def require(self) -> None:
        """NotFound ("no mavps workspace at ...: run `mavps init`") unless this directory is a workspace.

        Reads of the state files and the log already say so at no cost; this is one more round trip,
        for the commands that read none of them (unlock, cleanup)."""
        self.store.require_layout()

    def read_file(self, path: str, max_size: int | None = None) -> bytes:
        """A project file in the workspace (e.g. a task's context file); larger than max_size is refused."""
        from .files import MAX_FILE, read_file

        with self._explained():
            return read_file(self.transport, path, MAX_FILE if max_size is None else max_size)

    def stream_file(self, path: str, write: Any) -> int:
        """Send a project file of any size to `write(chunk)`, in bounded memory; its size."""
        from .files import stream_file

        with self._explained():
            return stream_file(self.transport, path, write)

    def write_file(self, path: str, data: Any) -> int:
        """Create or replace a project file in the workspace atomically, from bytes or a binary stream."""
        from .files import write_file

        with self._explained():
            return write_file(self.transport, path, data)

    @contextlib.contextmanager
    def _explained(self) -> Iterator[None]:
        """A file operation that failed in a directory that is not a workspace says so (a typo in the URL
        is likelier than a missing file); the check costs a round trip only after a failure."""
        try:
            yield
        except MavpsError as exc:
            if type(exc) is MavpsError or isinstance(exc, (NotFound, TransportError)):  # not a refusal
                with contextlib.suppress(TransportError):
                    self.require()
            raise

    def board(self, log_lines: int = 10) -> dict[str, Any]:
        """Everything `mavps status` shows, read without the lock in two round trips."""
        parts = self.store.look_parts({QUEUE_FILE: _whole, WORKERS_FILE: _whole, RES_FILE: _whole,
                                       META_FILE: _whole, BACKLOG_FILE: _whole,  # the backlog's tasks too
                                       LOG_FILE: lambda size: max(0, size - BOARD_LOG_WINDOW)})
        raw = {p: part[0] for p, part in parts.items() if part is not None}
        tasks = read_all({p: raw.get(p) for p in ALL_TASKS})
        workers = load_workers(parse_json(WORKERS_FILE, raw[WORKERS_FILE]) if WORKERS_FILE in raw else None)
        log_part = parts.get(LOG_FILE)
        log_start = log_part[1] if log_part else 0
        log_data = raw.get(LOG_FILE, b"")
        cut = log_data.rfind(b"\n") + 1
        recent = parse_lines(log_data[:cut], log_start > 0)[-log_lines:] if log_lines else []
        now = utcnow()
        counts = {s.value: 0 for s in TaskStatus}
        for t in tasks:
            counts[t.status.value] += 1
        running = []
        for t in tasks:
            if t.status is TaskStatus.IN_PROGRESS:
                left = t.lease_left(now)
                running.append({"id": t.id, "description": t.description, "claimed_by": t.claimed_by,
                                "claimed_at": t.claimed_at, "attempts": t.attempts,
                                "lease_left": None if left is None else round(left),
                                "waiting_for_answer": t.pending_question() is not None})
        index = self.queue.dependency_index(tasks)  # reads the archive only when a dependency is not in the queue
        caps = known_capabilities(workers)
        found = load_reservations(parse_json(RES_FILE, raw[RES_FILE]) if RES_FILE in raw else None)
        held = holds(tasks, found, now)  # running tasks' touches and live reservations: what pending ones wait for
        waiting = [(t, why) for t in tasks if (why := blocked_reason(t, index, caps, held)) is not None]
        return {
            "workspace": self.location,
            "time": iso(now),
            "counts": counts,
            "ready": [t.id for t in claimable(tasks, None, index, found, now)],
            "in_progress": running,
            "failed": [{"id": t.id, "description": t.description, "error": t.error}
                       for t in tasks if t.status is TaskStatus.FAILED],
            # pending tasks that will not run until someone acts, with why (see queue.blocked_reason)
            "blocked": [{"id": t.id, "description": t.description, "reason": why}
                        for t, why in waiting if is_stuck(why)],
            "waiting": [{"id": t.id, "reason": why} for t, why in waiting if not is_stuck(why)],
            "reservations": [{"id": r.id, "globs": r.globs, "by": r.by, "until": r.expires_at, "reason": r.reason}
                             for r in found if r.live(now)],
            "workers": [self._worker_row(w, tasks, now) for w in workers.values()],
            # questions a worker waits on (`mavps answer ID TEXT`), oldest first
            "questions": [{"id": t.id, "description": t.description, "asked_by": q.get("asked_by"),
                           "asked_at": q.get("asked_at"), "text": q.get("text")}
                          for t in tasks if (q := t.pending_question()) is not None],
            "recent": recent,
        }

    def board_snapshot(self, log_records: int = BOARD_LOG_RECORDS) -> dict[str, Any]:
        """What the HTML board draws (render/html.py): `board()` plus every live task and the log's newest
        records, for its graph and timeline (four more round trips)."""
        snap = self.board(BOARD_RECENT)
        snap["tasks"] = [t.to_dict() for t in self.queue.list()]
        snap["log"] = self.log.tail(log_records)
        return snap

    def _worker_row(self, w: Any, tasks: list[Any], now: Any) -> dict[str, Any]:
        """A worker on the board: what it holds comes from the queue (all of it), not its record."""
        held = held_ids(tasks, w.id)
        return {"id": w.id, "status": w.status, "online": is_online(w, now, self.config.worker_timeout),
                "capabilities": w.capabilities,
                "current_task": w.current_task if w.current_task in held else (held[0] if held else None),
                "held_tasks": held, "last_heartbeat": w.last_heartbeat}
