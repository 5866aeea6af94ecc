"""What `mavps edit`, `unlock` and `doctor` do, as plain functions (no click here).

Editing a state file under the lock, reading and breaking the lock by hand,
removing what crashed processes left behind, and the doctor's checks.
"""
from __future__ import annotations

import json
import os
import shlex
from typing import Any, Callable

from .errors import ConfigError, MavpsError
from .session import load_config, open_workspace

from .recovery import cleanup_leftovers, leftovers, lock_info  # noqa: F401  (the CLI's `unlock` uses them)

#: Lock candidate and stale directories older than this are leftovers of crashed processes.
LEFTOVER_AGE = 60.0


def edit_state(ws: Any, name: str, ttl: float) -> dict[str, Any]:
    """Run $VISUAL/$EDITOR on a local copy of a state file while holding the lock; validate; commit."""
    import subprocess
    import tempfile

    from .errors import InvalidInput

    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    calls: list[str] = []

    def change(txn: Any) -> bool:
        if calls:  # transact retries after LockLost: never reopen the editor on changed state
            raise MavpsError(f"the edit took longer than half of --ttl ({ttl:g}s), so the lock lease ran out; nothing "
                             f"was saved. Your edited copy is at {calls[0]}: run `mavps edit {name} --ttl ...` again")
        original = txn.raw.get(name)
        fd, tmp = tempfile.mkstemp(prefix="mavps-edit-", suffix=f"-{name}")
        calls.append(tmp)
        with os.fdopen(fd, "wb") as fh:
            fh.write(original if original is not None else b"{}\n" if name != "task-queue.json" else b"[]\n")
        try:
            rc = subprocess.call([*shlex.split(editor), tmp])
        except OSError as exc:
            raise ConfigError(
                f"cannot run the editor {editor!r} ({exc.strerror}): set EDITOR to one that works") from None
        if rc != 0:
            raise MavpsError(f"the editor {editor!r} exited with status {rc}; {name} was not changed "
                             f"(your copy is at {tmp})")
        with open(tmp, "rb") as fh:
            new = fh.read()
        if new == original:
            os.unlink(tmp)
            return False
        try:
            value = validate_state(name, new)
        except ValueError as exc:
            raise InvalidInput(f"{name} was not saved: {exc}. The original is unchanged; your edited copy "
                               f"is saved at {tmp}") from None
        txn.write(name, value)
        txn.log.append({"timestamp": txn.stamp, "agent": ws.agent, "event": "state_edited",
                        "message": f"{name} edited by hand with `mavps edit`", "file": name})
        os.unlink(tmp)
        return True

    changed = ws.store.transact([name], change, ttl=ttl)
    return {"file": name, "changed": changed, "workspace": ws.location}


def validate_state(name: str, data: bytes) -> Any:
    """Parse and check a state file's new contents; ValueError says what is wrong."""
    from .errors import CorruptState
    from .state import load_tasks, load_workers

    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    try:
        if name == "task-queue.json":
            if not isinstance(value, list):
                raise ValueError("must be a JSON array of tasks")
            from .rules import dependency_cycle, path_problem

            tasks = load_tasks(value)
            cycle = dependency_cycle(tasks)
            if cycle:
                raise ValueError(f"tasks depend on each other in a circle: {' -> '.join(map(str, cycle))}")
            bad_path = path_problem(tasks)
            if bad_path:
                raise ValueError(bad_path)
        elif name == "worker-status.json":
            load_workers(value)
        else:
            if not isinstance(value, dict):
                raise ValueError("must be a JSON object")
            if not isinstance(value.get("next_task_id", 1), int) or isinstance(value.get("next_task_id"), bool):
                raise ValueError("'next_task_id' must be an integer")
    except CorruptState as exc:
        raise ValueError(exc.problem) from None
    return value


def temp_leftovers(tr: Any, older_than: float | None = None) -> tuple[list[str], bool]:
    """Temp files (`.NAME.<hex>.tmp`) of puts that died, anywhere in the tree, older than this by the server's
    clock; and whether the whole tree was searched (see files.MAX_WALK)."""
    from .files import TEMP_AGE, temp_files

    from .recovery import server_now

    now = server_now(tr)
    if now is None:
        return [], True
    return temp_files(tr, now, TEMP_AGE if older_than is None else older_than)


def cleanup_temp_files(tr: Any, older_than: float | None = None) -> list[str]:
    """Remove what `temp_leftovers` finds (each checked again: still an old regular file, no link on the way)."""
    from .files import TEMP_AGE, remove_temp_files

    age = TEMP_AGE if older_than is None else older_than
    found, _complete = temp_leftovers(tr, age)
    from .recovery import server_now

    now = server_now(tr) if found else None
    return remove_temp_files(tr, found, now, age) if now is not None else []


def break_held(ws: Any, info: dict[str, Any]) -> str:
    """Break the lock described by `lock_info` (not a newer one); log it. 'broken', 'gone' or 'changed'.

    A planted link or file at the lock's name is removed as itself, never followed.
    """
    holder = info.get("holder") or {}
    result, unfinished, away = ws.store.break_by_hand(info)
    if info.get("planted"):
        ws.store.sweep(away)
        return result
    if result == "broken":
        note_rollbacks(ws, unfinished)  # first: a failure here keeps the broken lock's evidence
        ws.store.sweep(away)
        ws.log.append(f"workspace lock held by {holder.get('owner', 'an unknown holder')} broken by hand "
                      "with `mavps unlock --force`", event="lock_broken", holder=holder or None,
                      held_for=info.get("held_for"), by_hand=True)
    return result


def note_rollbacks(ws: Any, tokens: list[str]) -> bool:
    """Record transactions a broken lock held before their commit point as rolled back (raises on failure)."""
    for txn in tokens:  # the holder's log records for a commit it never finished
        ws.log.append("the broken lock held this transaction's unfinished commit: records with this "
                      "txn did not take effect", event="rolled_back", txn=txn)
    return True


def cleanup_lock_leftovers(ws: Any, older_than: float) -> list[str]:
    """Old candidates and broken locks; any uncommitted transaction in them is first recorded rolled back."""
    from .errors import MavpsError
    from .recovery import cleanup_leftovers as clean

    def note(tokens: list[str]) -> bool:
        try:
            return note_rollbacks(ws, tokens)
        except MavpsError:
            return False

    return clean(ws.transport, older_than, note)


def _hook_log_detail() -> str:
    """Where the Claude Code hooks on this machine log their failures, and the last one."""
    from .hooks.options import HookOptions
    from .hooks.session import hook_log_file

    path = hook_log_file(HookOptions.from_env().state_path)
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - 4096))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return f"{path} (no hook failure recorded)"
    return f"{path}; last failure: {lines[-1]}" if lines else f"{path} (no hook failure recorded)"


def run_checks(flags: dict[str, Any]) -> list[dict[str, Any]]:
    """`mavps doctor`: each check is {check, ok, detail, fix}; stops where later checks cannot run."""
    from .config import config_file
    from .errors import HostKeyError, TransportError
    from .session import NO_WORKSPACE

    out: list[dict[str, Any]] = []

    def add(check: str, ok: bool, detail: str, fix: str | None = None) -> None:
        out.append({"check": check, "ok": ok, "detail": detail, "fix": None if ok else fix})

    try:
        cfg = load_config(flags)
    except ConfigError as exc:
        add("config", False, str(exc), "correct the value named above (flag, MAVPS_* variable or config file)")
        return out
    add("config", True, f"config file: {config_file() or 'none'}; workspace from {cfg.source('workspace')}")
    add("hook log", True, _hook_log_detail())
    check_stop_hook_cap(cfg, add)
    if not cfg.workspace:
        add("workspace", False, "no workspace configured", NO_WORKSPACE.replace("no workspace configured: ", ""))
        return out
    from .transport import parse_url

    try:
        kind, parts = parse_url(cfg.workspace)
    except ConfigError as exc:
        add("workspace", False, str(exc), "give a local path or sftp://[user@]host[:port]/abs/path")
        return out
    try:
        ws = open_workspace(cfg)
    except HostKeyError as exc:
        add("connection", True, f"reached {parts.get('host')}")
        add("host key", False, str(exc), f"check the fingerprint, then `mavps trust {parts.get('host')}`")
        return out
    except TransportError as exc:
        add("connection", False, str(exc), "check the host, port and user, that sshd runs, and --identity-file")
        return out
    with ws:
        if kind == "sftp":
            add("connection", True, f"connected to {ws.location}")
            add("host key", True, f"matches {cfg.known_hosts or '~/.ssh/known_hosts'}")
        else:
            add("connection", True, f"local directory {ws.location}")
        _check_workspace(ws, add)
    return out


#: What each path mavps uses must be: a planted link or another type is reported by doctor and refused by every
#: command (it is never followed or replaced).
EXPECTED = {"task-queue.json": "file", "worker-status.json": "file", "workspace.json": "file",
            "agent-comms.jsonl": "file", "task-archive.jsonl": "file", "task-queue.json.bak": "file",
            "worker-status.json.bak": "file", "workspace.json.bak": "file", "tasks": "directory",
            ".mavps.lock": "directory", ".mavps.commit": "directory"}


#: Claude Code lets a session stop after this many consecutive Stop-hook blocks in which it ran no tool.
STOP_HOOK_BLOCK_CAP = 8
CAP_VARIABLE = "CLAUDE_CODE_STOP_HOOK_BLOCK_CAP"


def _project_settings(project: str) -> list[tuple[str, dict]]:
    """The project's Claude Code settings files that exist and parse, lowest precedence first."""
    found = []
    for name in ("settings.json", "settings.local.json"):
        path = os.path.join(project, ".claude", name)
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            found.append((path, data))
    return found


def stop_hook_block_cap(project: str, environ: dict[str, str] | None = None) -> tuple[int, str]:
    """Claude Code's cap and where it comes from: settings.local.json's `env`, then settings.json's, then the
    environment, else the default."""
    cap, where = STOP_HOOK_BLOCK_CAP, "Claude Code's default"
    env = os.environ if environ is None else environ
    if str(env.get(CAP_VARIABLE, "")).strip().isdigit():
        cap, where = int(env[CAP_VARIABLE]), f"${CAP_VARIABLE}"
    for path, data in _project_settings(project):
        value = str((data.get("env") or {}).get(CAP_VARIABLE, "") if isinstance(data.get("env"), dict) else "")
        if value.strip().isdigit():
            cap, where = int(value), f"{CAP_VARIABLE} in {path}"
    return cap, where


def check_stop_hook_cap(cfg: Any, add: Callable[..., None], project: str | None = None) -> None:
    """A worker idle for idle_timeout gets a "no work yet" block every hook_wait (the last wait ends in letting
    it stop, not in a block); more consecutive blocks than Claude Code's cap and Claude Code ends the session
    itself, early. Checked only where a worker runs (a worker id, or a Stop hook in the project)."""
    from math import ceil

    from .hooks.options import MAX_HOOK_WAIT

    project = project or os.getcwd()
    has_stop = any("Stop" in (data.get("hooks") or {}) for _p, data in _project_settings(project)
                   if isinstance(data.get("hooks"), dict))
    if not (cfg.worker_id or has_stop):
        return
    wait = max(1.0, min(cfg.hook_wait, MAX_HOOK_WAIT))
    needed = max(0, ceil(cfg.idle_timeout / wait) - 1)
    cap, where = stop_hook_block_cap(project)
    detail = (f"an idle worker needs up to {needed} \"no work yet\" blocks (idle_timeout {cfg.idle_timeout:g}s / "
              f"hook_wait {wait:g}s); the cap is {cap} ({where})")
    enough = ceil(cfg.idle_timeout / (cap + 1))
    raise_wait = f"raise hook_wait to at least {enough:d}s, " if enough <= MAX_HOOK_WAIT else ""
    add("stop hook cap", needed <= cap, detail,
        f"{raise_wait}lower idle_timeout to {wait * (cap + 1):g}s or less, or set "
        f"{CAP_VARIABLE} to {needed} or more in .claude/settings.json `env`")


def _state_files_line(add: Callable[..., None], read: list[str], missing: list[str], bad: list[str]) -> None:
    """What was really checked: a missing state file is not 'valid JSON'."""
    from .workspace import STATE_FILES

    absent = [p for p in STATE_FILES if p in missing]
    if bad:
        add("state files", False, "; ".join(bad), "fix it with `mavps edit FILE`, or restore FILE.bak")
    elif not read:
        add("state files", False, f"none to check: {', '.join(absent)} missing", "run `mavps init`")
    else:
        gone = f"; missing: {', '.join(absent)}" if absent else ""
        add("state files", not absent, f"valid JSON, valid records ({', '.join(read)}){gone}",
            "run `mavps init` (it keeps existing files)")


def _check_planted(ws: Any, add: Callable[..., None]) -> None:
    """Every path mavps uses is of the type it expects; leftover names `.mavps.lock.*` are not links."""
    names = [n for n in ws.transport.listdir("") if n.startswith(".mavps.lock.")]
    kinds = ws.store.kinds([*EXPECTED, *names])
    wrong = []
    for path, st in kinds.items():
        want = EXPECTED.get(path, "directory")
        if st is not None and (st.is_link or (want == "file") != st.is_file or (want == "directory") != st.is_dir):
            wrong.append(f"{path} is a {st.kind()}, not a {want}")
    add("planted paths", not wrong, "none" if not wrong else "; ".join(wrong),
        "another account may have put these there: look at them (`ls -la`), then move them away by hand "
        "(`mavps unlock --force` removes a planted .mavps.lock; `mavps unlock` old .mavps.lock.* links)")


def _check_workspace(ws: Any, add: Callable[..., None]) -> None:
    from .models import QUEUE_FILE, TASKS_DIR, WORKERS_FILE
    from .state import load_tasks, load_workers
    from .store import LOG_FILE
    from .timeutil import utcnow
    from .workers import is_online
    from .workspace import STATE_FILES

    tr = ws.transport
    present = ws.store.kinds(["", *STATE_FILES, LOG_FILE, TASKS_DIR])
    if present.pop("") is None:
        add("layout", False, f"{ws.location} does not exist", "run `mavps init`")
        return
    missing = [p for p, st in present.items() if st is None]
    add("layout", not missing, "all files present" if not missing else f"missing: {', '.join(missing)}",
        "run `mavps init` (it keeps existing files)")
    raw = ws.store.look([p for p in STATE_FILES if p not in missing])
    tasks = []
    workers = None
    bad = []
    for name, data in raw.items():
        if data is None:
            continue
        try:
            value = validate_state(name, data)
            if name == QUEUE_FILE:
                tasks = load_tasks(value)
            elif name == "worker-status.json":
                workers = load_workers(value)
        except ValueError as exc:
            bad.append(f"{name}: {exc}")
    _state_files_line(add, [n for n, data in raw.items() if data is not None], missing, bad)
    _check_planted(ws, add)
    info = lock_info(tr, ws.config.lock_ttl)
    if not info["held"]:
        add("lock", True, "free")
    elif info.get("planted"):
        add("lock", False, f".mavps.lock is a {info['planted']}, not a lock mavps made",
            "look at it (`ls -la`); `mavps unlock --force` removes it as itself, never following it")
    else:
        who = (info["holder"] or {}).get("owner", "an unknown holder")
        held = f" for {info['held_for']:.0f}s" if info["held_for"] is not None else ""
        stale = ": stale" if info["stale"] else ""
        add("lock", not info["stale"], f"held by {who}{held} (lease {info['ttl']:g}s){stale}",
            "if that holder is dead, `mavps unlock --force` (waiters also break it by themselves)")
    old = leftovers(tr, max(LEFTOVER_AGE, ws.config.lock_timeout))
    add("lock leftovers", not old, "none" if not old else f"{len(old)} old lock director(ies): {', '.join(old)}",
        "run `mavps unlock` to remove them")
    temps, complete = temp_leftovers(tr)
    shown = ", ".join(p if p.isprintable() else repr(p) for p in temps[:10]) + (", ..." if len(temps) > 10 else "")
    add("temp files", not temps, ("none" if not temps else f"{len(temps)} temp file(s) of interrupted puts, "
                                  f"over an hour old: {shown}") + ("" if complete else " (only part of the tree "
                                                                   "was searched: it is large)"),
        "run `mavps cleanup` to remove them")
    tasks = tasks + _check_backlog(ws, tasks, add)
    now = utcnow()
    expired = [t.id for t in tasks if t.lease_expired(now)]
    add("leases", not expired, "no expired leases" if not expired else
        f"expired leases on task(s) {', '.join(f'#{i}' for i in expired)}",
        "run `mavps reap` (any claim or heartbeat also returns them to the queue)")
    _check_blocked(ws, tasks, workers, add)
    _check_paths(ws, tasks, add)
    _check_questions(tasks, add)
    if workers is None and WORKERS_FILE not in missing:
        add("workers", False, "worker-status.json cannot be read", "fix worker-status.json first (see above)")
        return
    online = sum(1 for w in (workers or {}).values() if is_online(w, now, ws.config.worker_timeout))
    add("workers", True, f"{online} online, {len(workers or {}) - online} offline")


def _check_backlog(ws: Any, tasks: list, add: Callable[..., None]) -> list:
    """task-backlog.jsonl (window.py): as long as workspace.json says (past it: a failed commit's leftovers, cut
    by the next change), as many tasks, none also in task-queue.json; its tasks, for the checks below."""
    from .models import BACKLOG_FILE, META_FILE
    from .state import load_meta, parse_json, read_backlog
    from .window import backlog_info

    raw = ws.store.look([META_FILE, BACKLOG_FILE], missing_ok=True)
    try:
        info = backlog_info(load_meta(None if raw[META_FILE] is None else parse_json(META_FILE, raw[META_FILE])))
        backlog = read_backlog(raw)
    except MavpsError as exc:
        add("backlog", False, str(exc), "fix workspace.json with `mavps edit workspace.json`")
        return []
    size, live = len(raw[BACKLOG_FILE] or b""), {t.id for t in tasks}
    twice = sorted(t.id for t in backlog if t.id in live)
    problems = ([f"{BACKLOG_FILE} is {size} bytes, shorter than the {info['bytes']} workspace.json records"]
                if size < info["bytes"] else []) + \
        ([f"{len(backlog)} readable tasks where workspace.json records {info['count']}"]
         if len(backlog) != info["count"] else []) + \
        ([f"task(s) {', '.join(f'#{i}' for i in twice[:10])} also in task-queue.json"] if twice else [])
    add("backlog", not problems, "; ".join(problems) or f"{len(backlog)} pending task(s) beyond the active window",
        "restore task-backlog.jsonl from a backup, or remove the duplicates from task-queue.json (`mavps edit`)")
    return [t for t in backlog if t.id not in live]


def _check_paths(ws: Any, tasks: list, add: Callable[..., None]) -> None:
    """Touches and reservations: malformed touches (ignored by the claim rule) and ended reservations left in
    reservations.json (they never count; the next reserve or unreserve drops them)."""
    from .models import RES_FILE
    from .queue import read_reservations
    from .rules import touches_problems
    from .timeutil import utcnow

    bad = touches_problems(tasks)
    add("touches", not bad, "all well-formed" if not bad else "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""),
        "fix them with `mavps task edit ID --touches GLOB ...` (a malformed glob neither waits nor blocks)")
    try:
        found = read_reservations(ws.store.look([RES_FILE], missing_ok=True)[RES_FILE])
    except (MavpsError, ValueError) as exc:
        add("reservations", False, f"{RES_FILE} cannot be read: {exc}", f"fix or remove {RES_FILE} "
            "(every claim reads it)")
        return
    now = utcnow()
    ended = [r for r in found if not r.live(now)]
    detail = f"{len(found) - len(ended)} live" + (f"; {len(ended)} ended, left in {RES_FILE}: "
                                                  + ", ".join(f"{r.id} ({', '.join(r.globs)}, by {r.by})"
                                                              for r in ended[:5]) if ended else "")
    add("reservations", True, detail, "ended ones never count; the next `mavps reserve` or `unreserve` drops them")


def _check_blocked(ws: Any, tasks: list, workers: dict | None, add: Callable[..., None]) -> None:
    """Pending tasks that will not run until someone acts: a warning (listed, not a failure)."""
    from .rules import blocked_reason, is_stuck, known_capabilities

    try:
        index = ws.queue.dependency_index(tasks)
    except MavpsError as exc:
        add("blocked tasks", False, f"cannot read the archive: {exc}", "check task-archive.jsonl")
        return
    caps = None if workers is None else known_capabilities(workers)
    stuck = [(t.id, why) for t in tasks if is_stuck(why := blocked_reason(t, index, caps))]
    add("blocked tasks", True, "none" if not stuck else
        f"warning: {len(stuck)} pending task(s) will not run until someone acts: "
        + "; ".join(f"#{tid} {why}" for tid, why in stuck))


def _check_questions(tasks: list, add: Callable[..., None]) -> None:
    """Questions a worker waits on (it holds its task meanwhile): a warning, listed with how to answer."""
    waiting = [(t, q) for t in tasks if (q := t.pending_question()) is not None]
    add("questions", True, "none unanswered" if not waiting else
        f"warning: {len(waiting)} unanswered question(s), each holding a worker: "
        + "; ".join(f"#{t.id} from {q.get('asked_by')}: {str(q.get('text'))[:120]} "
                    f"(answer with `mavps answer {t.id} \"...\"`)" for t, q in waiting))
