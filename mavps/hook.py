"""Claude Code hook logic: keep a worker session busy without burning its quota.

Plain functions over the library; `hookcli.py` does the stdin/stdout/exit
code part. The hook protocol: exit 0 and print nothing lets the agent stop;
`{"decision": "block", "reason": ...}` on a Stop hook makes it go on with
`reason` as its next instruction (knowledge/03-stop-hooks-worker-persistence.md).

Stop, for a worker (MAVPS_WORKER_ID set):

1. heartbeat (renews its leases);
2. holds a task -> block: finish it with `mavps complete` / `mavps fail`;
3. a task is claimable -> claim it on the worker's behalf, block with the
   whole task (instructions, context files, the commands to finish it);
4. else wait in the hook (no tokens spent), polling lock-free with backoff,
   up to `hook_wait` seconds; a task that appears is claimed as in 3;
5. still nothing: idle for less than `idle_timeout` -> block with a short
   "stop again to keep waiting"; otherwise let it stop, mark it offline.

Guards: a session blocked `max_blocks` times in a row with no progress (no
claim, no completion) is let go; any failure (VPS unreachable, lock busy, bad
config) lets the agent stop, with the reason on stderr. Every wait is capped
so the hook answers well inside the timeout `install-hooks` sets.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Iterator, Mapping

from .config import Config
from .errors import MavpsError
from .models import QUEUE_FILE, WORKERS_FILE, Task, Worker, load_tasks, load_workers
from .render import literal
from .store import parse_json
from .timeutil import after, iso, parse

#: The Stop hook's timeout written by `install-hooks` (seconds); everything below fits inside it.
STOP_HOOK_TIMEOUT = 600
#: The SessionStart hook's timeout written by `install-hooks`.
SESSION_START_TIMEOUT = 60
#: The hook never waits for work longer than this, whatever hook_wait says.
MAX_HOOK_WAIT = STOP_HOOK_TIMEOUT - 120
#: Caps on the configured network waits, so that one slow step cannot eat the hook's time.
CAP_CONNECT = 10.0
CAP_REPLY = 15.0
CAP_LOCK = 20.0
#: Poll interval while waiting for work: starts small, grows by half each time.
POLL_START = 0.5
POLL_MAX = 5.0
#: Renew the heartbeat this often while waiting in the hook.
HEARTBEAT_EVERY = 60.0
#: Blocks in a row with no progress (no claim, no completion) before the guard lets a session stop.
MAX_NO_PROGRESS_BLOCKS = 12
#: Instruction text longer than this is cut in the block reason (the rest: `mavps task show ID`).
MAX_INSTRUCTIONS = 48 * 1024
#: Sessions remembered in the hook state file (oldest dropped first).
MAX_SESSIONS = 200


@dataclass
class HookAnswer:
    """What a hook answers: a Stop block, SessionStart context, or nothing (let it stop)."""

    event: str = "Stop"
    reason: str | None = None  # set: block the Stop with this reason
    context: str | None = None  # SessionStart additionalContext
    message: str = ""  # one line for stderr (why it let the agent stop, what failed)
    outcome: str = "allow"  # allow | block | context | error: for tests and logs
    task_id: int | None = None

    @property
    def block(self) -> bool:
        return self.reason is not None

    def stdout(self) -> str:
        """The exact stdout of the hook process ('' = print nothing)."""
        if self.reason is not None:
            return json.dumps({"decision": "block", "reason": self.reason}, ensure_ascii=False)
        if self.context is not None:
            return json.dumps({"hookSpecificOutput": {"hookEventName": self.event,
                                                      "additionalContext": self.context}}, ensure_ascii=False)
        return ""


@dataclass
class HookOptions:
    """Knobs that are not workspace settings (tests shrink them)."""

    state_path: str | None = None  # default: state_file()
    max_blocks: int = MAX_NO_PROGRESS_BLOCKS
    poll_start: float = POLL_START
    poll_max: float = POLL_MAX
    heartbeat_every: float = HEARTBEAT_EVERY
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "HookOptions":
        """MAVPS_HOOK_STATE, MAVPS_HOOK_MAX_BLOCKS, MAVPS_HOOK_POLL_MAX (bad values are ignored)."""
        env = os.environ if env is None else env
        opts = cls(state_path=env.get("MAVPS_HOOK_STATE") or None)
        with contextlib.suppress(ValueError, TypeError):
            opts.max_blocks = max(1, int(env.get("MAVPS_HOOK_MAX_BLOCKS", "")))
        with contextlib.suppress(ValueError, TypeError):
            opts.poll_max = min(30.0, max(0.05, float(env.get("MAVPS_HOOK_POLL_MAX", ""))))
            opts.poll_start = min(opts.poll_start, opts.poll_max)
        return opts


# ----- bounded time ------------------------------------------------------------
def bounded(config: Config) -> Config:
    """The config with every network wait capped for use inside a hook."""
    return replace(config,
                   connect_timeout=min(config.connect_timeout, CAP_CONNECT),
                   reply_timeout=min(config.reply_timeout, CAP_REPLY),
                   lock_timeout=min(config.lock_timeout, CAP_LOCK),
                   hook_wait=min(config.hook_wait, MAX_HOOK_WAIT))


def hard_limit(config: Config, event: str = "Stop") -> float:
    """Seconds after which the hook gives up whatever it is doing."""
    c = bounded(config)
    steps = 2 * c.connect_timeout + 2 * (c.lock_timeout + 4 * c.reply_timeout)
    if event != "Stop":
        return min(SESSION_START_TIMEOUT - 10, c.connect_timeout + c.lock_timeout + 10)
    return min(STOP_HOOK_TIMEOUT - 30, c.hook_wait + steps)


class HookDeadline(Exception):
    """The hook's hard deadline passed (raised from SIGALRM)."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise HookDeadline in the main thread after `seconds` (a backstop; no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise HookDeadline(f"the hook ran out of time after {seconds:.0f}s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ----- per-session state (the runaway guard) --------------------------------------
def state_file() -> str:
    """~/.cache/mavps/hook-state.json (XDG_CACHE_HOME honoured), else the temp dir."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "mavps")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        if os.access(path, os.W_OK):
            return os.path.join(path, "hook-state.json")
    except OSError:
        pass
    return os.path.join(tempfile.gettempdir(), f"mavps-hook-state-{os.getuid()}.json")


class SessionState:
    """A small JSON file: session_id -> record; locked with flock, replaced atomically."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or state_file()

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        import fcntl

        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                sessions = self._read()
                yield sessions
                self._write(sessions)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def get(self, session_id: str) -> dict[str, Any]:
        return dict(self._read().get(session_id) or {})

    def put(self, session_id: str, record: dict[str, Any] | None) -> None:
        with self.edit() as sessions:
            if record is None:
                sessions.pop(session_id, None)
            else:
                sessions[session_id] = {**record, "updated": time.time()}

    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, sessions: dict[str, Any]) -> None:
        if len(sessions) > MAX_SESSIONS:
            keep = sorted(sessions, key=lambda k: (sessions[k] or {}).get("updated", 0))[-MAX_SESSIONS:]
            for k in list(sessions):
                if k not in keep:
                    del sessions[k]
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(self.path)), prefix=".hook-state.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(sessions, fh, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


# ----- the reasons (read by a model that knows nothing else) ------------------------
def _q(text: str) -> str:
    """Quote for a POSIX shell."""
    import shlex

    return shlex.quote(text)


def finish_commands(task_id: int, worker: str) -> str:
    w = _q(worker)
    return (f"When the work is done and checked, record it (put a one-line summary of what you did "
            f"in place of \"done\"):\n"
            f"RUN: mavps complete {task_id} --worker {w} --result \"done\"\n"
            f"If it cannot be done, record why instead (the task goes back to the queue for another try):\n"
            f"    mavps fail {task_id} --worker {w} --error \"what went wrong\"\n"
            f"Then end your turn: the Stop hook hands you the next task, or lets you stop when there is none.")


def file_hint(location: str, paths: list[str]) -> list[str]:
    """Where the task's files are, for the agent: absolute local paths, or sftp URLs."""
    if location.startswith("sftp://"):  # the agent is not on the VPS: mavps fetches them
        return [f"- {literal(p)}  (read it with: mavps cat {literal(p)})" for p in paths]
    return [f"- {literal(p)}  ({literal(os.path.join(location, p))})" for p in paths]


def task_reason(task: Task, worker: str, instructions: str, location: str, claimed_now: bool) -> str:
    """The whole task for the model. Its texts come from other agents: their control characters are made
    visible (a human reads the transcript in a terminal); the instructions keep their lines."""
    lines = [
        f"mavps: you are worker {worker} of a shared mavps workspace ({location}). "
        + (f"The Stop hook has just claimed task #{task.id} for you"
           if claimed_now else f"You hold task #{task.id}")
        + f" (attempt {task.attempts} of {task.max_attempts}). You have no other context: "
          "everything you need is below, and other agents work on other tasks at the same time.",
        "",
        f"Task #{task.id}: {literal(task.description)}",
    ]
    if task.context_files:
        lines += ["", "Read these context files first (paths inside the workspace):"]
        lines += file_hint(location, task.context_files)
    text = instructions.strip()
    cut = len(text) > MAX_INSTRUCTIONS
    if cut:
        text = text[:MAX_INSTRUCTIONS]
    text = literal(text, multiline=True)
    lines += ["", f"Instructions ({literal(task.instruction_file or 'none given')}):", "-----",
              text or "(no instruction text)", "-----"]
    if cut:
        lines.append(f"(cut here: the full text is shown by `mavps task show {task.id}`)")
    lines += ["", finish_commands(task.id, worker)]
    return "\n".join(lines)


def held_reason(task: Task, worker: str) -> str:
    return "\n".join([
        f"mavps: you (worker {worker}) still hold task #{task.id}: {literal(task.description)}",
        f"It was claimed at {literal(task.claimed_at)}; its lease was just renewed. Finish it before anything else.",
        f"To see its instructions again: mavps task show {task.id}",
        "",
        finish_commands(task.id, worker),
    ])


def waiting_reason(worker: str, waited: float, idle: float, idle_timeout: float) -> str:
    return (f"mavps: no task for worker {worker} yet (waited {waited:.0f}s in the Stop hook; idle for "
            f"{idle:.0f}s of the {idle_timeout:.0f}s allowed). There is nothing to do now: just end your turn "
            "again, and the Stop hook will keep waiting for work without spending tokens. "
            "Do not start anything on your own.")


# ----- the Stop hook ------------------------------------------------------------------
class _Session:
    """What one Stop call knows about the worker and the server's clock."""

    def __init__(self, ws: Any, worker: str, caps: list[str] | None, opts: HookOptions) -> None:
        self.ws = ws
        self.worker = worker
        self.caps = caps
        self.opts = opts
        self.server_now: datetime | None = None
        self.mono_at = time.monotonic()
        self.record: Worker | None = None
        self.tasks: list[Task] = []

    def begin(self, claim: bool = True) -> Any:
        """Heartbeat and, if the worker holds nothing, claim: one transaction, which also
        brings back the queue, the worker's record and the server's time."""
        found = self.ws.queue.next_task(self.worker, self.caps, claim=claim)
        self.tasks, self.record = found.tasks, found.worker
        self.server_now, self.mono_at = found.now, time.monotonic()
        return found

    def heartbeat(self) -> list[Task]:
        return self.begin(claim=False).held

    def look(self) -> None:
        """Lock-free read of the queue and the worker's record (two round trips)."""
        raw = self.ws.store.look([QUEUE_FILE, WORKERS_FILE])
        self.tasks = load_tasks(None if raw[QUEUE_FILE] is None else parse_json(QUEUE_FILE, raw[QUEUE_FILE]))
        workers = load_workers(None if raw[WORKERS_FILE] is None else parse_json(WORKERS_FILE, raw[WORKERS_FILE]))
        rec = workers.get(self.worker)
        if rec is not None:
            beat = parse(rec.last_heartbeat)
            if beat is not None and (self.server_now is None or beat > self.now()):
                self.server_now, self.mono_at = beat, time.monotonic()
            self.record = rec

    def now(self) -> datetime:
        """The server's time: its last heartbeat stamp plus what passed here since."""
        assert self.server_now is not None
        return after(self.server_now, time.monotonic() - self.mono_at)

    def ready(self) -> bool:
        """Something is claimable, counting tasks whose lease ran out (the claim reaps them).

        Why: a task held by a worker that died comes back only when some
        change reaps it; a worker waiting in this hook must see it, or the
        task waits for the next heartbeat or the next Stop (maybe never, if
        the waiting worker reaches its idle timeout first).
        """
        from .queue import as_reaped, claimable

        caps = set(self.caps) if self.caps else set(self.record.capabilities if self.record else [])
        tasks = self.tasks if self.server_now is None else as_reaped(self.tasks, self.now())
        return bool(claimable(tasks, caps, self.ws.queue.dependency_index(tasks)))

    def claim(self) -> Task | None:
        return self.ws.queue.claim(self.worker, self.caps or None)


def _marker(rec: Worker | None) -> list[Any]:
    return [rec.last_task_claimed, rec.last_task_completed] if rec else [None, None]


def stop_hook(input: Mapping[str, Any], config: Config, options: HookOptions | None = None,
              open_workspace: Callable[..., Any] | None = None) -> HookAnswer:
    """Answer one Stop event. Never raises for workspace trouble: it lets the agent stop."""
    opts = options or HookOptions()
    worker = config.worker_id
    if not worker:
        return HookAnswer(message="")  # not a worker session: never blocked
    cfg = bounded(config)
    session_id = str(input.get("session_id") or "no-session")
    state = SessionState(opts.state_path)
    try:
        rec = state.get(session_id)
    except OSError:
        rec = {}
    if open_workspace is None:
        from .workspace import Workspace

        open_workspace = Workspace.open
    try:
        ws = open_workspace(config=cfg, agent=worker)
    except (MavpsError, OSError) as exc:
        return HookAnswer(outcome="error",
                          message=f"mavps hook: cannot open the workspace ({literal(exc)}); letting {worker} stop")
    try:
        return _stop(ws, worker, cfg, opts, state, session_id, rec)
    except (MavpsError, OSError) as exc:
        return HookAnswer(outcome="error",
                          message=f"mavps hook: {type(exc).__name__}: {literal(exc)}; letting {worker} stop")
    finally:
        with contextlib.suppress(Exception):
            ws.close()


def _stop(ws: Any, worker: str, cfg: Config, opts: HookOptions, state: SessionState, session_id: str,
          rec: dict[str, Any]) -> HookAnswer:
    s = _Session(ws, worker, list(cfg.capabilities) or None, opts)
    found = s.begin()
    held = found.held
    if s.server_now is None:  # cannot happen after a heartbeat, unless someone edits by hand
        s.server_now, s.mono_at = parse(iso(datetime.now().astimezone())), time.monotonic()
    rec = dict(rec)
    rec.setdefault("worker", worker)
    rec.setdefault("session_started", iso(s.now()))
    marker = _marker(s.record)
    blocks = int(rec.get("blocks", 0)) if rec.get("marker") == marker else 0

    def save(new_blocks: int, new_marker: list[Any]) -> None:
        rec.update(blocks=new_blocks, marker=new_marker)
        with contextlib.suppress(OSError):
            state.put(session_id, rec)

    def let_go(why: str, event: str) -> HookAnswer:
        with contextlib.suppress(MavpsError, OSError):
            ws.workers.set_status(worker, "offline", why)
        if event != "worker_offline":
            with contextlib.suppress(MavpsError, OSError):
                ws.log.append(why, agent=worker, event=event, worker=worker)
        with contextlib.suppress(OSError):
            state.put(session_id, None)
        return HookAnswer(message=f"mavps hook: {why}", outcome="allow")

    def hand_over(task: Task) -> HookAnswer:
        try:
            text = ws.queue.instructions(task)
        except (MavpsError, OSError) as exc:
            text = f"(could not read the instructions: {exc}; run `mavps task show {task.id}`)"
        save(0, [task.claimed_at, s.record.last_task_completed if s.record else None])
        return HookAnswer(reason=task_reason(task, worker, text, ws.location, True), outcome="block",
                          task_id=task.id, message=f"mavps hook: handed task #{task.id} to {worker}")

    if found.claimed is not None:
        return hand_over(found.claimed)

    if held:
        task = held[0]
        if blocks >= opts.max_blocks:
            return let_go(f"{worker} was reminded {blocks} times in a row to finish task #{task.id} without "
                          f"completing or failing it; the Stop hook lets it stop (runaway guard). The task "
                          "stays claimed until its lease expires", "hook_runaway")
        save(blocks + 1, marker)
        return HookAnswer(reason=held_reason(task, worker), outcome="block", task_id=task.id,
                          message=f"mavps hook: {worker} still holds task #{task.id}")

    idle_ref = max(t for t in (parse(rec["session_started"]), parse(s.record and s.record.registered_at),
                               parse(s.record and s.record.last_task_claimed),
                               parse(s.record and s.record.last_task_completed)) if t is not None)

    def idle() -> float:
        # the stamps are whole seconds: compare whole seconds, or idle_timeout fires up to 1 s early
        return (s.now().replace(microsecond=0) - idle_ref).total_seconds()

    budget = max(0.0, min(cfg.hook_wait, cfg.idle_timeout - idle()))
    started = time.monotonic()
    pause = opts.poll_start
    last_beat = started
    while True:
        if s.ready():
            task = s.claim()
            if task is not None:
                return hand_over(task)
        left = budget - (time.monotonic() - started)
        if left <= 0:
            break
        opts.sleep(min(pause, left))
        pause = min(pause * 1.5, opts.poll_max)
        if time.monotonic() - last_beat >= opts.heartbeat_every:
            held = s.heartbeat()
            last_beat = time.monotonic()
            if held:  # given a task by someone else meanwhile
                save(0, _marker(s.record))
                return HookAnswer(reason=held_reason(held[0], worker), outcome="block", task_id=held[0].id)
        else:
            s.look()
    waited = time.monotonic() - started
    if idle() >= cfg.idle_timeout:
        return let_go(f"{worker} stopped: no work for {idle():.0f}s (idle_timeout {cfg.idle_timeout:.0f}s)",
                      "worker_offline")
    # A block after a real wait costs the agent one turn per hook_wait, and idle_timeout ends
    # those; the guard is for a hook that could not wait, where every block is a wasted turn.
    spun = waited < 1.0
    if spun and blocks >= opts.max_blocks:
        return let_go(f"{worker} was told {blocks} times in a row that there is no work yet and made no progress; "
                      "the Stop hook lets it stop (runaway guard)", "hook_runaway")
    save(blocks + 1 if spun else blocks, marker)
    return HookAnswer(reason=waiting_reason(worker, waited, idle(), cfg.idle_timeout), outcome="block",
                      message=f"mavps hook: no work yet for {worker}")


# ----- SessionStart ------------------------------------------------------------------
def worker_context(worker: str | None, location: str | None, capabilities: list[str]) -> str:
    w = worker or "W"
    caps = f" Your capabilities: {', '.join(capabilities)}." if capabilities else ""
    lines = [
        f"# mavps: you are worker {w}",
        f"You are one of several Claude Code agents working on one project through a shared mavps workspace"
        f" ({location or 'not configured'}). You share no memory with the other agents: everything you need "
        f"arrives as task text.{caps}",
        "",
        "How your work reaches you: when you end your turn, the Stop hook gives you your next task in full "
        "(description, instructions, context files, and the exact commands to finish it), or tells you to "
        "wait. Do exactly one task at a time, do only what it asks, and record the outcome:",
        f"    mavps complete ID --worker {w} --result \"what you did\"",
        f"    mavps fail ID --worker {w} --error \"why it cannot be done\"",
        "Useful: `mavps task show ID` (a task and its instructions), "
        f"`mavps log \"message\" --agent {w}` (a note for the coordinator), `mavps status` (the board).",
        "If there is no task yet, simply end your turn: the hook waits for work without spending tokens and "
        "lets you stop after a while with nothing to do. Never edit the workspace's JSON files by hand.",
    ]
    if not worker:
        lines += ["", "WARNING: MAVPS_WORKER_ID is not set for this session, so it is not a worker and the Stop "
                      "hook will not hand it tasks. Run `mavps install-hooks --role worker --worker ID`."]
    return "\n".join(lines)


def coordinator_context(location: str | None, board: dict[str, Any] | None, problem: str | None) -> str:
    lines = [
        "# mavps: you are the coordinator",
        f"You coordinate several Claude Code worker agents through a shared mavps workspace "
        f"({location or 'not configured'}). The workers share no memory with you or each other: each task you "
        "add must be self-contained (objective, requirements, context files, steps, acceptance criteria).",
        "",
        "Commands:",
        "    mavps task add \"DESCRIPTION\" --instructions-file FILE --context PATH --requires CAP "
        "--depends-on ID --priority N",
        "    mavps task add \"DESCRIPTION\" --template task-instructions   (fill in the template's sections)",
        "    mavps status                      (the board)",
        "    mavps task list --status failed   (then `mavps task show ID`, `mavps task requeue ID`)",
        "    mavps log --tail 20               (what the workers reported)",
        "See CLAUDE.md for how to split work into tasks.",
    ]
    if problem:
        lines += ["", f"The workspace could not be read just now: {literal(problem)}"]
    elif board:
        lines += ["", "The board now:", board_text(board)]
    return "\n".join(lines)


def board_text(board: dict[str, Any]) -> str:
    """The board for the coordinator's context; every text in it is another agent's, shown literally."""
    counts = board.get("counts", {})
    out = ["tasks: " + ", ".join(f"{k} {v}" for k, v in counts.items())]
    if board.get("ready"):
        out.append("ready to claim: " + ", ".join(f"#{i}" for i in board["ready"]))
    for t in board.get("in_progress", []):
        out.append(f"in progress: #{t['id']} {literal(t['description'][:80])} (held by {literal(t['claimed_by'])}, "
                   f"lease left {t['lease_left']}s)")
    for t in board.get("failed", []):
        out.append(f"failed: #{t['id']} {literal(t['description'][:80])}: {literal((t.get('error') or '')[:160])}")
    workers = board.get("workers", [])
    if workers:
        out.append("workers: " + ", ".join(
            f"{literal(w['id'])} ({'online' if w['online'] else 'offline'}, {literal(w['status'])})" for w in workers))
    else:
        out.append("workers: none registered yet")
    for r in board.get("recent", [])[-5:]:
        out.append(f"log: {literal(r.get('timestamp'))} {literal(r.get('agent'))}: "
                   f"{literal(str(r.get('message'))[:160])}")
    return "\n".join(out)


def session_start_hook(input: Mapping[str, Any], config: Config, role: str | None = None,
                       options: HookOptions | None = None,
                       open_workspace: Callable[..., Any] | None = None) -> HookAnswer:
    """Register a worker (capabilities from config) and give the role's instructions as context."""
    opts = options or HookOptions()
    role = role or ("worker" if config.worker_id else "coordinator")
    cfg = bounded(config)
    if open_workspace is None:
        from .workspace import Workspace

        open_workspace = Workspace.open
    problem = None
    board = None
    message = ""
    ws = None
    try:
        if role == "worker" and not config.worker_id:
            problem = "MAVPS_WORKER_ID is not set"
        else:
            ws = open_workspace(config=cfg, agent=config.worker_id or config.agent or "coordinator")
            if role == "worker":
                assert config.worker_id
                w = ws.workers.register(config.worker_id, list(config.capabilities))
                with contextlib.suppress(OSError):
                    SessionState(opts.state_path).put(str(input.get("session_id") or "no-session"), {
                        "worker": w.id, "session_started": w.last_heartbeat, "blocks": 0})
                message = f"mavps hook: registered worker {w.id}"
            else:
                board = ws.board()
    except (MavpsError, OSError) as exc:
        problem = f"{type(exc).__name__}: {literal(exc)}"
        message = f"mavps hook: {problem}"
    finally:
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
    location = ws.location if ws is not None else config.workspace
    if role == "worker":
        text = worker_context(config.worker_id, location, list(config.capabilities))
        if problem and config.worker_id:
            text += f"\n\nThe workspace could not be reached just now ({problem}); the Stop hook will retry."
    else:
        text = coordinator_context(location, board, problem)
    return HookAnswer(event="SessionStart", context=text, outcome="context", message=message)
