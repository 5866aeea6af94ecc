"""The Stop hook's I/O loop: read the workspace, call decide(), carry the decision out.

1. open the workspace (unreachable: let the agent stop, at once);
2. one transaction: heartbeat, and claim a task if the worker holds none;
3. decide; if it says wait, poll lock-free with backoff (the sleep and the
   clock are injectable), claiming what becomes claimable, renewing the
   heartbeat now and then; decide again;
4. write the session record, mark the worker offline / log if told to,
   answer.

Every workspace operation after the open goes through `retry.Retrying`: a
dropped connection is reopened and the operation repeated, which is safe for
each one used here (a claim is repeated with the same token; a heartbeat+claim
repeated after its answer was lost finds the task already held; looks and
reads change nothing). The log append is not repeated.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Callable, Mapping

from ..config import Config
from ..errors import MavpsError
from ..models import RES_FILE, WORKERS_FILE, Reservation, Task, Worker, WorkerStatus, load_reservations
from ..state import ALL_TASKS, load_workers, read_all
from ..retry import Retrying
from ..codec import parse_json
from ..timeutil import after, iso, parse
from . import texts
from .decide import AWAIT_ANSWER, HAND_OVER, WAIT, Decision, Limits, View, decide
from .options import HookOptions, bounded
from .protocol import HookAnswer
from .session import SessionRecord, SessionState


class Probe:
    """What one Stop call knows about the worker and the server's clock; every read goes through `conn`."""

    def __init__(self, conn: Retrying, worker: str, caps: list[str] | None, opts: HookOptions) -> None:
        self.conn = conn
        self.worker = worker
        self.caps = caps
        self.opts = opts
        self.server_now: datetime | None = None
        self.mono_at = opts.monotonic()
        self.record: Worker | None = None
        self.tasks: list[Task] = []
        self.reservations: list[Reservation] = []
        self.instructions: dict[int, bytes] = {}  # read with the hand-over's transaction, by task id

    def begin(self, claim: bool = True) -> View:
        """Heartbeat and, if the worker holds nothing, claim: one transaction, which also
        brings back the queue, the worker's record and the server's time."""
        found = self.conn.run(lambda ws: ws.queue.next_task(self.worker, self.caps, claim=claim, read=True))
        self.tasks, self.record, self.reservations = found.tasks, found.worker, found.reservations
        self.instructions = found.instructions
        self.server_now, self.mono_at = found.now, self.opts.monotonic()
        if self.server_now is None:  # cannot happen after a heartbeat, unless someone edits by hand
            self.server_now = parse(iso(datetime.now().astimezone()))
        return View(self.worker, claimed=found.claimed, held=found.held, record=self.record)

    def look(self) -> None:
        """Lock-free read of the queue, the reservations and the worker's record (two round trips)."""
        raw = self.conn.run(lambda ws: ws.store.look([*ALL_TASKS, WORKERS_FILE, RES_FILE]))  # the backlog too
        self.tasks = read_all(raw)
        self.reservations = load_reservations(None if raw[RES_FILE] is None else parse_json(RES_FILE, raw[RES_FILE]))
        workers = load_workers(None if raw[WORKERS_FILE] is None else parse_json(WORKERS_FILE, raw[WORKERS_FILE]))
        rec = workers.get(self.worker)
        if rec is not None:
            beat = parse(rec.last_heartbeat)
            if beat is not None and (self.server_now is None or beat > self.now()):
                self.server_now, self.mono_at = beat, self.opts.monotonic()
            self.record = rec

    def now(self) -> datetime:
        """The server's time: its last heartbeat stamp plus what passed here since."""
        assert self.server_now is not None
        return after(self.server_now, self.opts.monotonic() - self.mono_at)

    def ready(self) -> bool:
        """Something is claimable, counting tasks whose lease ran out (the claim reaps them).

        Why: a task held by a worker that died comes back only when some
        change reaps it; a worker waiting in this hook must see it, or the
        task waits for the next heartbeat or the next Stop (maybe never, if
        the waiting worker reaches its idle timeout first).
        """
        from ..queue import as_reaped, claimable

        queue = self.conn.ws.queue
        caps = set(self.caps) if self.caps else set(self.record.capabilities if self.record else [])
        now = None if self.server_now is None else self.now()
        tasks = self.tasks if now is None else as_reaped(self.tasks, now)
        return bool(claimable(tasks, caps, queue.dependency_index(tasks), self.reservations, now))

    def claim(self) -> Task | None:
        """Claim for the worker; a retry after a dropped connection reuses the claim's token."""
        return self.conn.claim(self.worker, self.caps or None)

    def heartbeat(self) -> list[Task]:
        return list(self.begin(claim=False).held)

    def wait_for_work(self, budget: float) -> View:
        """Poll lock-free with backoff for up to `budget` seconds; claim what becomes claimable."""
        opts, mono = self.opts, self.opts.monotonic
        started = last_beat = mono()
        pause = opts.poll_start
        while True:
            if self.ready():
                task = self.claim()
                if task is not None:
                    return View(self.worker, claimed=task, record=self.record, waited=mono() - started)
            left = budget - (mono() - started)
            if left <= 0:
                return View(self.worker, record=self.record, waited=mono() - started)
            opts.sleep(min(pause, left))
            pause = min(pause * 1.5, opts.poll_max)
            if mono() - last_beat >= opts.heartbeat_every:
                held = self.heartbeat()
                last_beat = mono()
                if held:  # given a task by someone else meanwhile
                    return View(self.worker, held=held, record=self.record, waited=mono() - started)
            else:
                self.look()

    def wait_for_answer(self, task_id: int, budget: float) -> View:
        """Poll lock-free with backoff for up to `budget` seconds until the question on `task_id` is answered
        (or the task is no longer the worker's), heartbeating every `heartbeat_every` so the lease is kept."""
        opts, mono = self.opts, self.opts.monotonic
        started = last_beat = mono()
        pause = opts.poll_start
        while True:
            waited = mono() - started
            held = [t for t in self.tasks if t.held_by(self.worker)]
            task = next((t for t in held if t.id == task_id), None)
            if task is None:  # cancelled, or its lease ran out: no answer is coming for this worker
                return View(self.worker, held=held, record=self.record, waited=waited, answer_waited=waited)
            left = budget - waited
            if task.pending_question() is None or left <= 0:
                return View(self.worker, held=held, record=self.record, answer_waited=waited)
            opts.sleep(min(pause, left))
            pause = min(pause * 1.5, opts.poll_max)
            if mono() - last_beat >= opts.heartbeat_every:
                self.heartbeat()  # renews the lease; brings the queue back
                last_beat = mono()
            else:
                self.look()


@dataclass
class StopCall:
    """What every Stop hook call (worker or coordinator) starts from: the capped settings, the session's
    record on this machine, the limits, and how to open the workspace (again, after a drop)."""

    cfg: Config
    session_id: str
    state: SessionState
    session: SessionRecord
    limits: Limits
    opener: Callable[[], Any]

    @classmethod
    def start(cls, input: Mapping[str, Any], config: Config, opts: HookOptions, agent: str,
              open_workspace: Callable[..., Any] | None) -> "StopCall":
        cfg = bounded(config)
        session_id = str(input.get("session_id") or "no-session")
        state = SessionState(opts.state_path)
        limits = Limits(idle_timeout=cfg.idle_timeout, hook_wait=cfg.hook_wait, max_blocks=opts.max_blocks)
        if open_workspace is None:
            from ..workspace import Workspace

            open_workspace = Workspace.open
        return cls(cfg, session_id, state, state.record(session_id), limits,
                   partial(open_workspace, config=cfg, agent=agent))

    def connect(self, opts: HookOptions, ws: Any) -> Retrying:
        return Retrying(self.opener, attempts=opts.reconnect_attempts, delay=opts.reconnect_delay, ws=ws,
                        sleep=opts.sleep)


def stop_hook(input: Mapping[str, Any], config: Config, options: HookOptions | None = None,
              open_workspace: Callable[..., Any] | None = None) -> HookAnswer:
    """Answer one Stop event. Never raises for workspace trouble: it lets the agent stop."""
    opts = options or HookOptions()
    worker = config.worker_id
    if not worker:
        return HookAnswer(message="")  # not a worker session: never blocked
    call = StopCall.start(input, config, opts, worker, open_workspace)
    cfg, session, limits = call.cfg, call.session, call.limits
    try:
        ws = call.opener()
    except (MavpsError, OSError) as exc:
        return _answer(decide(View(worker, error=texts.cannot_open(exc)), session, _NoClock(), limits))
    conn = call.connect(opts, ws)
    try:
        probe = Probe(conn, worker, list(cfg.capabilities) or None, opts)
        decision = _decide(probe, session, limits)
        pull_to = (os.environ.get("CLAUDE_PROJECT_DIR") or str(input.get("cwd") or "")) if cfg.auto_pull else ""
        return _carry_out(decision, probe, call.state, call.session_id, ws.location, pull_to)
    except (MavpsError, OSError) as exc:
        answer = _answer(decide(View(worker, error=texts.failure(exc)), session, _NoClock(), limits))
        _record_failure(conn, worker, answer.message)
        return answer
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def _decide(probe: Probe, session: SessionRecord, limits: Limits) -> Decision:
    """decide() on the first look, and once more after waiting if it says wait."""
    decision = decide(probe.begin(), session, probe, limits)
    if decision.kind == WAIT:
        view = probe.wait_for_work(decision.wait)
        decision = decide(view, decision.session or session, probe, limits)
    elif decision.kind == AWAIT_ANSWER and decision.task is not None:
        view = probe.wait_for_answer(decision.task.id, decision.wait)
        decision = decide(view, decision.session or session, probe, limits)
    return decision


def _carry_out(d: Decision, probe: Probe, state: SessionState, session_id: str, location: str,
               pull_to: str = "") -> HookAnswer:
    """Do what the decision records (each step best effort), and build the answer."""
    worker = probe.worker
    reason = d.reason
    if d.kind == HAND_OVER and d.task is not None:
        task = d.task
        try:
            known = probe.instructions.get(task.id)
            text = known.decode("utf-8", "replace") if known is not None else \
                probe.conn.run(lambda ws: ws.queue.instructions(task))
        except (MavpsError, OSError) as exc:
            text = texts.unreadable_instructions(task, exc)
        reason = texts.task_reason(task, worker, text, location, True)
        _note_held(task, worker, probe)
        note = _auto_pull(probe, task, pull_to)
        if note:
            reason += "\n\n" + note
    if d.offline is not None:
        with contextlib.suppress(MavpsError, OSError):
            probe.conn.run(lambda ws: ws.workers.set_status(worker, WorkerStatus.OFFLINE, d.offline))
    if d.log_event is not None:
        with contextlib.suppress(MavpsError, OSError):  # not repeated: a repeat may log twice
            probe.conn.ws.log.append(d.offline, agent=worker, event=d.log_event, worker=worker)
    with contextlib.suppress(OSError):
        if d.forget:
            state.put(session_id, None)
        elif d.session is not None:
            state.put(session_id, d.session.to_dict())
    if d.block and reason is not None:
        reason = _with_messages(probe, reason, state, session_id)
    return _answer(d, reason)


def _note_held(task: Task, worker: str, probe: Probe) -> None:
    """The local record the path guard reads (pre_tool_use.py), in the project: best effort."""
    from .pre_tool_use import local_root, project_dir, write_held

    ws = probe.conn.ws
    with contextlib.suppress(OSError):
        write_held(project_dir(), task.id, list(task.touches), worker, ws.location, local_root(ws))


def _with_messages(probe: Probe, reason: str, state: SessionState, session_id: str) -> str:
    """The agent's unread messages at the top of a block reason, marked read (taken once, not repeated
    after a dropped connection: a repeat would find them read and lose them)."""
    import time

    from .post_tool_use import take_new

    ws = probe.conn.ws
    try:
        msgs = take_new(ws, probe.worker, probe.caps or [], state, session_id, ws.config.workspace, time.time())
    except (MavpsError, OSError):
        return reason
    return f"{texts.messages_block(msgs)}\n\n{reason}" if msgs else reason


def _auto_pull(probe: Probe, task: Task, folder: str) -> str:
    """Pull a task handed to a worker off the VPS into its project directory (auto_pull): the note for the
    block reason. A worker on the VPS (local transport) needs none; a failure does not fail the hand-over."""
    from ..exchange import pull
    from ..transport.local import LocalTransport

    if not folder or not os.path.isdir(folder) or isinstance(probe.conn.ws.transport, LocalTransport):
        return ""
    if not task.touches and not task.context_files:
        return ""
    try:
        got = probe.conn.run(lambda ws: pull(ws.store, task.id, folder, probe.worker))
    except (MavpsError, OSError) as exc:
        return texts.pull_failed(task.id, folder, exc)
    return texts.pulled_note(task.id, got["to"], got["files"], got["context"])


def _answer(d: Decision, reason: str | None = None) -> HookAnswer:
    reason = reason if reason is not None else d.reason
    return HookAnswer(reason=reason if d.block else None, outcome=d.outcome, message=d.message,
                      task_id=d.task.id if d.task is not None and d.block else None,
                      notice=d.message if d.outcome == "error" else None)


def _record_failure(conn: Retrying, worker: str, line: str) -> None:
    """The failure in the workspace log too, for the coordinator (best effort, once: the workspace was
    reached, but whatever failed may fail this as well)."""
    with contextlib.suppress(Exception):
        conn.ws.log.append(line, agent=worker, event="hook_failed", worker=worker)


class _NoClock:
    """The clock for an error view: decide() does not read it."""

    def now(self) -> datetime:  # pragma: no cover - never called for an error view
        return datetime.now().astimezone()

