"""The file exchange for workers off the VPS: `pull` a task's files, `push` the edits back without losing work.

`pull` copies, without the lock, every workspace file matching the task's
`touches` globs (and its context files) into a local directory, and records
each file's sha256 in DIR/.mavps/pull-<ID>.json: that is the push's base.
The walk starts at each glob's base directory and goes level by level, every
level's directories listed in one round trip (opendir and readdir pipelined),
every file opened in one and read in one, never following a link.

`push` is ONE transaction (Store.transact): the queue and every target file
are read under the lock in the transaction's own read round trips; the pusher
must hold the task (worker and claim token, as `complete`), every target must
still be its base (a file new in the push must still be absent), and every
path must lie in the task's touches. Any mismatch: nothing is written and a
Conflict lists each path. Otherwise the files are put and removed in the
commit, so a crash anywhere leaves every file old or new (roll-forward).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from . import globs as gl
from . import validate
from .defaults import MAX_FILE
from .localfile import write_through_temp
from .errors import Conflict, InvalidInput, MavpsError, NotFound, Refused, UnsafePath
from .files import STATE
from .files import TEMP_RE as PUT_TEMP_RE
from .files import _changed, _check_file, _is_lock, prefixes, read_file
from .lockpaths import TEMP_RE as TXN_TEMP_RE
from .models import QUEUE_FILE, Task
from .rules import check_holder, find
from .state import load_tasks, task_event
from .store import Store, Txn, parse_json
from .timeutil import iso, utcnow
from .transport.base import Batch, Reply, Stat, Transport, joined, same_file

#: Where a pull's record goes, inside the local directory (never pushed).
RECORD_DIR = ".mavps"
#: Directories a pull walks at most, and files it opens per round trip.
MAX_WALK_DIRS = 2000
PIPELINE = 256
#: readdir requests sent per directory at once (OpenSSH answers up to 100 names each).
READDIRS = 4
#: A push's files together, at most (they are written in one transaction).
MAX_PUSH = MAX_FILE


def record_path(folder: str, task_id: int) -> str:
    return os.path.join(folder, RECORD_DIR, f"pull-{task_id}.json")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----- the task ---------------------------------------------------------------------
def _task(store: Store, tid: int) -> Task:
    raw = store.look([QUEUE_FILE])[QUEUE_FILE]
    return find(load_tasks(parse_json(QUEUE_FILE, raw) if raw is not None else None), tid)


# ----- pull -------------------------------------------------------------------------
def pull(store: Store, task_id: int | str, dest: str, worker: str | None = None) -> dict[str, Any]:
    """Copy the task's touched files and context files into `dest`; write and return the pull record."""
    tid = validate.task_id(task_id)
    task = _task(store, tid)
    tr = store.transport
    found = walk(tr, task.touches)
    context = [c for c in task.context_files if not gl.matching(task.touches, c)]
    got = fetch_many(tr, sorted(found) + context)
    missing_context = [c for c in context if c not in got]
    dest_real = os.path.realpath(dest)
    os.makedirs(dest_real, exist_ok=True)
    targets = {p: local_target(dest_real, p) for p in got}  # every local path checked before anything is written
    kept = keep_local_edits(dest_real, tid, {p: (targets[p], d) for p, d in got.items()})
    for p, data in got.items():
        write_local(targets[p], data)
    files = {p: {"size": len(d), "sha256": sha256(d)} for p, d in got.items() if p in found}
    record = {"task": tid, "touches": list(task.touches), "claim_token": None, "worker": worker,
              "pulled_at": iso(utcnow()), "files": files,
              "context": {p: {"size": len(got[p]), "sha256": sha256(got[p])} for p in context if p in got}}
    if worker and task.held_by(worker):
        record["claim_token"] = task.claim_token
    save_record(dest_real, tid, record)
    return {"task": tid, "to": dest_real, "files": sorted(files), "context": sorted(record["context"]),
            "missing_context": missing_context, "record": record_path(dest_real, tid), "kept_edits": kept}


def keep_local_edits(root: str, tid: int, incoming: dict[str, tuple[str, bytes]]) -> list[str]:
    """Local files a pull would overwrite that hold edits of their own (not their last pulled base, not what
    comes in): copied to .mavps/mine/PATH first, so pulling again after a conflict loses nothing."""
    try:
        base = load_record(root, tid)["files"]
    except (NotFound, InvalidInput):
        base = {}
    kept = []
    for path, (local, data) in incoming.items():
        if not os.path.isfile(local):
            continue
        with open(local, "rb") as fh:
            mine = sha256(fh.read())
        if mine != sha256(data) and mine != (base.get(path) or {}).get("sha256"):
            with open(local, "rb") as fh:
                write_local(os.path.join(root, RECORD_DIR, "mine", *path.split("/")), fh.read())
            kept.append(path)
    return kept


def _skipped(folder: str, name: str) -> bool:
    """Lock directories, temp files of put and of transactions: never part of a pull."""
    if name in (".", ".."):
        return True
    if not folder and (_is_lock(name) or name == RECORD_DIR or name in STATE or name[:-4] in STATE):
        return True
    return bool(PUT_TEMP_RE.fullmatch(name) or TXN_TEMP_RE.fullmatch(name) or name.startswith(".mavps-probe."))


def _may_hold(touches: list[str], folder: str) -> bool:
    """Whether some glob could cover a path under `folder` (exact when the name has no glob characters)."""
    if any(c in folder for c in "*?[]\\"):
        return any(folder == gl.base_dir(g) or folder.startswith(gl.base_dir(g) + "/") or not gl.base_dir(g)
                   for g in touches)
    return any(gl.overlap(g, folder + "/**") for g in touches)


def walk(tr: Transport, touches: list[str]) -> dict[str, Stat]:
    """Every regular file of the workspace covered by the globs, with its lstat: a level per round trip pair.

    A link or special file the globs cover is refused (InvalidInput, like `cat`): mavps never follows one."""
    bases = sorted({gl.base_dir(g) for g in touches})
    level = [b for b in bases if not any(b != o and (not o or b.startswith(o + "/")) for o in bases)]
    found: dict[str, Stat] = {}
    walked = 0
    while level:
        walked += len(level)
        if walked > MAX_WALK_DIRS:
            raise InvalidInput(f"the task's touches cover more than {MAX_WALK_DIRS} directories: narrow them")
        nxt: list[str] = []
        for folder, entries in _list_level(tr, level).items():
            for name, st in entries:
                if _skipped(folder, name) or "/" in name:
                    continue
                path = f"{folder}/{name}" if folder else name
                covered = gl.matching(touches, path)
                if st.is_link or not (st.is_dir or st.is_file):
                    if covered:
                        raise InvalidInput(f"{path} is a {st.kind()} in the workspace; mavps does not follow links "
                                           "or copy special files (they can lead out of the workspace): remove it")
                elif st.is_dir:
                    if covered or _may_hold(touches, path):
                        nxt.append(path)
                elif covered:
                    found[path] = st
        level = nxt
    return found


def _list_level(tr: Transport, folders: list[str]) -> dict[str, list[tuple[str, Stat]]]:
    """The entries of several directories: opendir between lstats of every level of each (one round trip),
    then the readdirs and the close (one more). A directory that is missing is empty; a link is refused."""
    from .files import _check_dirs, _look

    b = Batch()
    staged = []
    for folder in folders:
        dirs = prefixes(folder) if folder else []
        before = _look(b, dirs, None, 1)
        handle = b.opendir(folder)
        after = _look(b, dirs, None, 1)
        staged.append((folder, dirs, before, handle, after))
    tr.run(b)
    out: dict[str, list[tuple[str, Stat]]] = {}
    reads: dict[str, list[Reply]] = {}
    b = Batch()
    for folder, dirs, before, handle, after in staged:
        if _check_dirs(folder, dirs, before + after) < len(dirs):
            if handle.ok:
                b.close(handle.value)
            out[folder] = []
            continue
        if dirs and not same_file(before[0][0][-1][1].value, after[0][0][-1][1].value):
            raise _changed(folder)
        if not handle.ok:
            if isinstance(handle.error, FileNotFoundError):
                out[folder] = []
                continue
            raise MavpsError(f"cannot list {folder or 'the workspace'}: {handle.error}")
        reads[folder] = [b.readdir(handle.value) for _ in range(READDIRS)]
    handles = {s[0]: s[3].value for s in staged if s[0] in reads}
    for h in handles.values():
        b.close(h)
    tr.run(b)
    for folder, replies in reads.items():
        out[folder] = _entries(tr, folder, handles[folder], replies)
    return out


def _entries(tr: Transport, folder: str, handle: Any, replies: list[Reply]) -> list[tuple[str, Stat]]:
    """The names the readdirs gave; a directory longer than they covered is opened again and read to its end."""
    entries = _entries_of(folder, replies)
    if not replies[-1].value:
        return entries
    b = Batch()  # rare (hundreds of names): list it whole on a fresh handle
    fresh = b.opendir(folder)
    tr.run(b)
    if not fresh.ok:
        raise _changed(folder)
    out: list[tuple[str, Stat]] = []
    try:
        while True:
            b = Batch()
            more = [b.readdir(fresh.value) for _ in range(READDIRS)]
            tr.run(b)
            out += _entries_of(folder, more)
            if not more[-1].value:
                return out
    finally:
        b = Batch()
        b.close(fresh.value)
        tr.run(b)


def _entries_of(folder: str, replies: list[Reply]) -> list[tuple[str, Stat]]:
    out: list[tuple[str, Stat]] = []
    for r in replies:
        if not r.ok:
            raise MavpsError(f"cannot list {folder or 'the workspace'}: {r.error}")
        out += r.value
    return out


def fetch_many(tr: Transport, paths: list[str]) -> dict[str, bytes]:
    """Whole files, PIPELINE per two round trips, each checked to be the regular file its path names inside the
    workspace; missing ones are left out. A file that changed while it was read is read again on its own."""
    out: dict[str, bytes] = {}
    for i in range(0, len(paths), PIPELINE):
        out.update(_fetch_group(tr, paths[i:i + PIPELINE]))
    return out


def _fetch_group(tr: Transport, paths: list[str]) -> dict[str, bytes]:
    folders = sorted({d for p in paths for d in prefixes(p)[:-1]})
    b = Batch()
    before = {d: (b.lstat(d), b.lstat(d + "/.")) for d in folders}
    opened = {p: (b.lstat(p), b.open(p, "r"), b.lstat(p)) for p in paths}
    after = {d: (b.lstat(d), b.lstat(d + "/.")) for d in folders}
    tr.run(b)
    gone = _check_folders(before, after)
    b = Batch()
    reads: dict[str, tuple[Reply, list[Reply]]] = {}
    for p, (first, handle, _second) in opened.items():
        if handle.ok:
            size = first.value.size if first.ok else 0
            if size > MAX_FILE:
                b.close(handle.value)
                continue
            reads[p] = (b.fstat(handle.value), b.read_span(handle.value, size))
            b.close(handle.value)
    tr.run(b)
    out: dict[str, bytes] = {}
    for p, (first, handle, second) in opened.items():
        if any(p.startswith(d + "/") for d in gone):
            continue
        try:
            seen = _check_file(p, [first, second])
        except NotFound:
            continue
        if seen[0].size > MAX_FILE:
            raise InvalidInput(f"{p} is {seen[0].size} bytes, over the {MAX_FILE} byte limit of a pull: "
                               f"fetch it with `mavps get {p}`")
        got = reads.get(p)
        data, whole = joined(got[1]) if got else (b"", False)
        if got and whole and got[0].ok and all(same_file(got[0].value, s) for s in seen) \
                and len(data) == got[0].value.size:
            out[p] = data
            continue
        try:  # changed meanwhile: the checked reader tries again on its own
            out[p] = read_file(tr, p)
        except NotFound:
            continue
    return out


def _check_folders(before: dict[str, tuple[Reply, Reply]], after: dict[str, tuple[Reply, Reply]]) -> set[str]:
    """Every directory a real one, the same before and after the opens; the missing ones."""
    gone = set()
    for d, (plain, dot) in before.items():
        plain2, dot2 = after[d]
        if not plain.ok or not plain2.ok:
            if isinstance(plain.error or plain2.error, FileNotFoundError):
                gone.add(d)
                continue
            raise MavpsError(f"cannot look at {d} in the workspace: {plain.error or plain2.error}")
        for st in (plain.value, plain2.value):
            if st.is_link:
                raise InvalidInput(f"{d} is a symlink in the workspace; mavps does not follow links (they can lead "
                                   "out of the workspace): remove or replace it")
            if not st.is_dir:
                raise InvalidInput(f"{d} is a {st.kind()} in the workspace, not a directory")
        if not (dot.ok and dot2.ok and same_file(plain.value, plain2.value) and same_file(plain.value, dot.value)
                and same_file(plain2.value, dot2.value)):
            raise _changed(d)
    return gone


# ----- the local side ---------------------------------------------------------------
def local_target(root: str, path: str) -> str:
    """The local file for a workspace path under `root` (a real path): no component may be a link or lead out."""
    path = validate.relative_path(path)
    parts = path.split("/")
    if parts[0] == RECORD_DIR:
        raise InvalidInput(f"{path}: {RECORD_DIR}/ holds the pull records; mavps does not write there")
    current = root
    for i, part in enumerate(parts):
        current = os.path.join(current, part)
        if os.path.islink(current):
            raise InvalidInput(f"{current} is a symlink (it may lead out of {root}); mavps does not follow local "
                               "links either: remove it, then pull again")
        if i < len(parts) - 1 and os.path.lexists(current) and not os.path.isdir(current):
            raise InvalidInput(f"{current} is not a directory: move it away, then pull again")
    if os.path.isdir(current):
        raise InvalidInput(f"{current} is a directory where the workspace has the file {path}: move it away")
    if os.path.commonpath([root, os.path.realpath(current)]) != root:
        raise InvalidInput(f"{path} would be written outside {root}: refused")
    return current


def write_local(local: str, data: bytes) -> None:
    """Write a file whole or not at all: a temp file next to it, then os.replace."""
    write_through_temp(local, lambda fh: fh.write(data))


def save_record(root: str, tid: int, record: dict[str, Any]) -> None:
    write_local(record_path(root, tid), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def load_record(root: str, tid: int) -> dict[str, Any]:
    path = record_path(root, tid)
    try:
        with open(path, "rb") as fh:
            record = json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        raise NotFound(f"no pull of task {tid} in {root}: run `mavps pull {tid} --to {root}` first") from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{path} is not a pull record ({exc}): pull the task again") from None
    if not isinstance(record, dict) or record.get("task") != tid or not isinstance(record.get("files"), dict):
        raise InvalidInput(f"{path} is not a pull record of task {tid}: pull the task again")
    return record


def has_record(root: str, tid: int) -> bool:
    return os.path.isfile(record_path(root, tid))


def local_files(root: str, touches: list[str]) -> dict[str, str]:
    """Local files under root covered by the globs (path -> local path); .mavps/ left out; links refused."""
    out: dict[str, str] = {}
    for folder, dirs, names in os.walk(root):
        rel = os.path.relpath(folder, root).replace(os.sep, "/")
        rel = "" if rel == "." else rel
        if not rel:
            dirs[:] = [d for d in dirs if d != RECORD_DIR]
        for name in sorted(names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]):
            path = f"{rel}/{name}" if rel else name
            full = os.path.join(folder, name)
            if not gl.matching(touches, path):
                continue
            if os.path.islink(full):
                raise InvalidInput(f"{full} is a symlink: mavps pushes regular files only (a link may lead out of "
                                   f"{root}); replace it with the file itself")
            if os.path.isfile(full) and not PUT_TEMP_RE.fullmatch(name):
                out[path] = full
    return out


# ----- push -------------------------------------------------------------------------
@dataclass
class Plan:
    """What a push would do: files to write (with their bytes), files to remove, and local edits it refuses."""

    writes: dict[str, bytes] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # removed locally, left in the workspace (no --delete)
    outside: list[str] = field(default_factory=list)  # changed locally, outside the touches

    @property
    def targets(self) -> list[str]:
        return sorted([*self.writes, *self.deletes])


def plan_push(root: str, record: dict[str, Any], delete: bool) -> Plan:
    """Compare the local directory with the pull record: the changed, new and removed files."""
    touches = [t for t in record.get("touches", []) if isinstance(t, str)]
    base: dict[str, Any] = record["files"]
    plan = Plan()
    total = 0
    for path, local in local_files(root, touches).items():
        if path in STATE or path[:-4] in STATE or _is_lock(path.split("/")[0]):
            continue  # mavps state is never pushed (change it through mavps commands)
        with open(local, "rb") as fh:
            data = fh.read(MAX_PUSH + 1)
        if path in base and base[path].get("sha256") == sha256(data):
            continue
        total += len(data)
        if total > MAX_PUSH:
            raise InvalidInput(f"the files to push pass {MAX_PUSH} bytes together: push them with `mavps put`")
        plan.writes[path] = data
    for path in sorted(base):
        if path not in plan.writes and not os.path.lexists(os.path.join(root, *path.split("/"))):
            (plan.deletes if delete else plan.kept).append(path)
    for path, entry in sorted((record.get("context") or {}).items()):
        local = os.path.join(root, *path.split("/"))
        if os.path.isfile(local) and not os.path.islink(local) and not gl.matching(touches, path):
            with open(local, "rb") as fh:
                if sha256(fh.read(MAX_PUSH + 1)) != entry.get("sha256"):
                    plan.outside.append(path)
    return plan


def conflicts(plan: Plan, base: dict[str, Any], current: dict[str, bytes | None]) -> list[dict[str, str]]:
    """Each target whose workspace bytes are not its base any more (a file new in the push must be absent)."""
    out = []
    for path in plan.targets:
        now, was = current.get(path), base.get(path)
        if path in plan.writes and now is not None and sha256(now) == sha256(plan.writes[path]):
            continue  # the workspace already holds exactly this
        if was is None and now is not None:
            out.append({"path": path, "change": "created in the workspace since the pull"})
        elif was is not None and now is None:
            if path in plan.writes:
                out.append({"path": path, "change": "removed from the workspace since the pull"})
        elif was is not None and now is not None and sha256(now) != was.get("sha256"):
            out.append({"path": path, "change": "changed in the workspace since the pull"})
    return out


def _check_paths(task: Task, plan: Plan, txn: Txn) -> None:
    """Under the lock: every path in the task's touches, every directory on the way a real one."""
    outside = [p for p in plan.targets if not gl.matching(task.touches, p)]
    if outside:
        raise Refused(f"task {task.id} does not touch {', '.join(outside)} (its touches: "
                      f"{', '.join(task.touches) or 'none'}); nothing was pushed")
    for d, st in txn.dirs.items():
        if st is not None and (st.is_link or not st.is_dir):
            raise UnsafePath(d, st.kind(), "a directory")


def push(store: Store, task_id: int | str, root: str, worker: str, dry_run: bool = False,
         delete: bool = False) -> dict[str, Any]:
    """Upload the local edits of a pulled task in one fenced transaction; Conflict (nothing written) when any
    target changed in the workspace since the pull."""
    tid = validate.task_id(task_id)
    worker = validate.worker_id(worker)
    root = os.path.realpath(root)
    record = load_record(root, tid)
    plan = plan_push(root, record, delete)
    if plan.outside:
        raise Refused(f"task {tid} does not touch {', '.join(plan.outside)} (its touches: "
                      f"{', '.join(record.get('touches') or []) or 'none'}); nothing was pushed. Undo those edits "
                      "(or ask the coordinator to widen the task's touches), then push again")
    result = {"task": tid, "from": root, "written": sorted(plan.writes), "deleted": sorted(plan.deletes),
              "kept": plan.kept, "conflicts": [], "dry_run": dry_run}
    if dry_run:
        current = store.look(plan.targets, missing_ok=True) if plan.targets else {}
        result["conflicts"] = conflicts(plan, record["files"], current)
        return result
    if not plan.targets:
        return result
    folders = sorted({d for p in plan.targets for d in prefixes(p)[:-1]})

    def change(txn: Txn) -> None:
        task = find(load_tasks(txn.json(QUEUE_FILE, [])), tid)
        check_holder(task, worker, record.get("claim_token"))
        _check_paths(task, plan, txn)
        found = conflicts(plan, record["files"], {p: txn.raw.get(p) for p in plan.targets})
        if found:
            raise Conflict(tid, root, found)
        for p, data in plan.writes.items():
            txn.put(p, data)
        for p in plan.deletes:
            txn.delete(p)
        txn.log.append(task_event(txn.stamp, worker, "pushed", f"Pushed {len(plan.targets)} file(s) of task "
                                  f"#{tid}", task, paths=plan.targets[:200]))

    store.transact([QUEUE_FILE], change, new_files=len(plan.targets), new_dirs=folders, reads=plan.targets)
    _rebase(root, tid, record, plan)
    return result


def _rebase(root: str, tid: int, record: dict[str, Any], plan: Plan) -> None:
    """After a push, the pushed bytes are the new bases (so a second push works)."""
    files = record["files"]
    for p, data in plan.writes.items():
        files[p] = {"size": len(data), "sha256": sha256(data)}
    for p in plan.deletes:
        files.pop(p, None)
    record["pushed_at"] = iso(utcnow())
    save_record(root, tid, record)
