"""Project files in the workspace (not the state files): read, and write atomically, in bounded memory.

Workers that do not run on the VPS use these to read a task's context files
and to deliver their work (`mavps cat`, `mavps put`). Paths stay inside the
workspace: relative, no '..', and no symlink anywhere along the way.

Other accounts may write in the workspace and swap a directory or a file for
a symlink at any moment, and SFTP has no "open without following links". So
every open is checked after the fact, in the same round trip: each component
is lstat'ed before and after it (a component that is a link, or a directory
that is not one, is refused), and the open handle's fstat must be the very
file those lstats saw. A read drops whatever it read before the check passed;
a write creates its temp file with O_EXCL (never through a final link),
writes nothing before the check passed, and renames it over the target path
itself (rename replaces a link found there, it never follows it). The limit,
and why the chrooted account is the real boundary: knowledge/06-vps-setup.md.
"""
from __future__ import annotations

import errno
import io
import os
import re
import stat as statmod
from typing import Any, BinaryIO, Callable

from . import validate
from .defaults import MAX_FILE
from .localfile import write_through_temp
from .errors import InvalidInput, MavpsError, NotFound
from .lock import LOCK
from .models import ARCHIVE_FILE, BACKLOG_FILE, META_FILE, QUEUE_FILE, WORKERS_FILE
from .store import LOG_FILE
from .transport.base import CHUNK, Batch, Reply, Stat, Transport, same_file

#: Written only through the queue, the registry, the log or `mavps edit`.
STATE = {QUEUE_FILE, WORKERS_FILE, META_FILE, ARCHIVE_FILE, LOG_FILE, BACKLOG_FILE}
#: Chunks sent per round trip: memory stays below WINDOW * CHUNK (512 KiB) whatever the file's size.
WINDOW = 16
#: How many times each component is lstat'ed on each side of an open: a directory swapped for a link and
#: back between two requests of the batch must be swapped exactly in every gap to go unseen.
ROUNDS = 3
#: An open that saw another file than its lstats (a file replaced meanwhile) is tried again this often.
OPEN_TRIES = 3
#: put's temp file, next to its target: `.NAME.<12 hex>.tmp`.
TEMP_RE = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")
#: A temp file older than this (server clock) belongs to a put that died: doctor shows it, cleanup removes it.
TEMP_AGE = 3600.0
#: Directories `doctor` and `cleanup` look into at most when they search the tree for old temp files.
MAX_WALK = 300


def prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


# ----- checks -----------------------------------------------------------------------
#: One look at a path: (D, lstat of D, lstat of D/.) for each directory D along it, and lstats of its last part.
Look = tuple[list[tuple[str, Reply, Reply]], list[Reply]]


def _look(b: Batch, dirs: list[str], last: str | None, rounds: int = ROUNDS) -> list[Look]:
    """Look at every directory D along a path, and at its last part L, `rounds` times over.

    `D` (not followed) and `D/.` (followed) must be one real directory, and L
    is looked at in between: D, D/., L, D, L, L, D/. A link swapped in for D
    (and back) while L is looked up goes unseen only if D is swapped an odd
    number of times in some gaps and an even number in others, in a pattern
    that no steady rhythm of swapping (one per request, two, none...) follows.
    """
    looks: list[Look] = []
    for _ in range(rounds):
        pairs, lasts = [], []
        for d in dirs:
            pairs.append((d, b.lstat(d), b.lstat(d + "/.")))
            if last is not None:
                lasts.append(b.lstat(last))
                plain = b.lstat(d)
                lasts += [b.lstat(last), b.lstat(last)]
                pairs.append((d, plain, b.lstat(d + "/.")))
        if last is not None and not dirs:
            lasts.append(b.lstat(last))
        looks.append((pairs, lasts))
    return looks


def _lasts(looks: list[Look]) -> list[Reply]:
    return [r for _pairs, lasts in looks for r in lasts]


def _check_dirs(path: str, dirs: list[str], looks: list[Look]) -> int:
    """Every directory seen is a real one; the index of the first missing one (len(dirs) if none)."""
    first_missing = len(dirs)
    for pairs, _lasts in looks:
        for prefix, reply, dot in pairs:
            if not reply.ok:
                if isinstance(reply.error, FileNotFoundError):
                    first_missing = min(first_missing, dirs.index(prefix))
                    break
                raise MavpsError(f"cannot look at {prefix} in the workspace: {reply.error}")
            st: Stat = reply.value
            if st.is_link:
                raise InvalidInput(f"{path}: {prefix} is a symlink; mavps does not follow links (they can lead out "
                                   "of the workspace): remove or replace it")
            if not st.is_dir:
                raise InvalidInput(f"{path}: {prefix} is a {st.kind()}, not a directory")
            if not dot.ok or not same_file(dot.value, st):
                raise _changed(path)
    return first_missing


def _check_file(path: str, replies: list[Reply]) -> list[Stat]:
    """The path's lstats: each a regular file (NotFound if missing, refused if a link or anything else)."""
    out = []
    for reply in replies:
        if not reply.ok:
            if isinstance(reply.error, FileNotFoundError):
                raise NotFound(f"no file {path} in the workspace")
            raise MavpsError(f"cannot read {path}: {reply.error}")
        st: Stat = reply.value
        if st.is_link:
            raise InvalidInput(f"{path}: {path} is a symlink; mavps does not follow links (they can lead out of "
                               "the workspace): remove or replace it")
        if st.is_dir:
            raise InvalidInput(f"{path} is a directory, not a file")
        if not st.is_file:
            raise InvalidInput(f"{path} is a {st.kind()}, not a regular file")
        out.append(st)
    return out


def _check_path(path: str, dirs: list[str], looks: list[Look]) -> list[Stat]:
    """Directories all real ones, the last component a regular file: the last component's lstats."""
    if _check_dirs(path, dirs, looks) < len(dirs):
        raise NotFound(f"no file {path} in the workspace")
    return _check_file(path, _lasts(looks))


def _changed(path: str) -> MavpsError:
    return MavpsError(f"{path} kept changing while it was opened (replaced by another file, or by a symlink, by "
                      "someone else?): refused so as not to read or write outside the workspace; try again")


# ----- reading ----------------------------------------------------------------------
def stream_file(transport: Transport, path: str, write: Callable[[bytes], Any], limit: int | None = None) -> int:
    """Send a workspace file to `write` chunk by chunk, WINDOW chunks per round trip; its size.

    Nothing reaches `write` before the open handle is checked to be the
    regular file the path names inside the workspace. Over `limit` bytes:
    InvalidInput (checked on the size first, then on what is read).
    """
    path = validate.relative_path(path)
    handle, size, first = _open_checked(transport, path, limit)
    try:
        return _pump(transport, path, handle, size, first, write, limit)
    finally:
        if handle is not None:
            _quietly(transport, _closing(handle))


def read_file(transport: Transport, path: str, max_size: int = MAX_FILE) -> bytes:
    """A workspace file's bytes (context and instruction files): two round trips for a small file."""
    out = bytearray()
    stream_file(transport, path, out.extend, max_size)
    return bytes(out)


def _window(b: Batch, handle: Any, offset: int, size_hint: int) -> list[Reply]:
    """Reads from offset, as many as the size hint needs (plus one to see the end), at most WINDOW."""
    count = max(1, min(WINDOW, (max(size_hint - offset, 0)) // CHUNK + 1))
    return [b.read(handle, offset + i * CHUNK, CHUNK) for i in range(count)]


def _open_checked(transport: Transport, path: str, limit: int | None) -> tuple[Any, int, list[Reply]]:
    """Open the path for reading; the handle, the file's size and the first reads, once checked.

    A small file is read whole and closed in the check's own round trip (two
    in all): the handle returned is then None.
    """
    dirs = prefixes(path)[:-1]
    for _attempt in range(OPEN_TRIES):
        b = Batch()
        before = _look(b, dirs, path)
        opened = b.open(path, "r")
        after = _look(b, dirs, path)
        transport.run(b)
        if not opened.ok:
            _check_path(path, dirs, before + after)
            if isinstance(opened.error, FileNotFoundError):
                raise NotFound(f"no file {path} in the workspace")
            if getattr(opened.error, "errno", None) == errno.ELOOP:  # O_NOFOLLOW met a link swapped in
                continue
            raise MavpsError(f"cannot read {path}: {opened.error}")
        handle = opened.value
        try:
            b = Batch()
            fst = b.fstat(handle)
            first_look = before[0][1][0]
            hint = first_look.value.size if first_look.ok and not first_look.value.is_link else 0
            first = _window(b, handle, 0, hint)
            if len(first) < WINDOW:  # small: the reads go one past its end, so close it right away
                b.close(handle)
                handle = None
            transport.run(b)
            seen = _check_path(path, dirs, before + after)
            if fst.ok and all(same_file(fst.value, st) for st in seen):
                if limit is not None and fst.value.size > limit:
                    raise InvalidInput(f"{path} is {fst.value.size} bytes, over the {limit} byte limit: "
                                       "stream it with `mavps cat PATH > FILE`")
                if handle is not None or _reached_end(first):
                    return handle, fst.value.size, first
                continue  # grew past the reads sent with the close: read it again, with the new size
        except BaseException:
            if handle is not None:
                _quietly(transport, _closing(handle))
            raise
        if handle is not None:
            _quietly(transport, _closing(handle))  # the reads of a file not checked are dropped
    raise _changed(path)


def _reached_end(replies: list[Reply]) -> bool:
    return any(r.ok and len(r.value) < CHUNK for r in replies)


def _pump(transport: Transport, path: str, handle: Any, size: int, replies: list[Reply],
          write: Callable[[bytes], Any], limit: int | None) -> int:
    offset = 0
    while True:
        for reply in replies:
            if not reply.ok:
                raise MavpsError(f"could not read {path} ({reply.error}): try again")
            chunk: bytes = reply.value
            offset += len(chunk)
            if limit is not None and offset > limit:
                raise InvalidInput(f"{path} grew over the {limit} byte limit while it was read")
            if chunk:
                write(chunk)
            if len(chunk) < CHUNK:
                return offset
        if handle is None:  # closed after the first reads, which did reach its end
            raise _changed(path)
        b = Batch()
        replies = _window(b, handle, offset, size)
        transport.run(b)


# ----- listing and fetching (ls, get) ------------------------------------------------
#: Directories `ls --recursive` and `get` walk at most.
MAX_LIST_DIRS = 2000
#: Files whose opens and first reads share one round trip in `get`.
PIPELINE = 16


def _entry(path: str, st: Stat) -> dict[str, Any]:
    kind = "link" if st.is_link else "dir" if st.is_dir else "file" if st.is_file else st.kind()
    return {"path": path, "kind": kind, "size": st.size if st.is_file else None, "mtime": st.mtime,
            "mode": statmod.filemode(st.mode) if getattr(st, "mode", None) is not None else None}


def _root_or_path(path: str) -> str:
    return "" if path in ("", ".", "./") else validate.relative_path(path)


def _is_lock(name: str) -> bool:
    return name.startswith((LOCK, ".mavps.commit"))


def list_dir(transport: Transport, path: str = "", recursive: bool = False) -> tuple[list[dict[str, Any]], bool]:
    """Entries of a workspace directory (or the one entry of a file or link), never following a link:
    a link is listed as a link. With `recursive`, real subdirectories too (at most MAX_LIST_DIRS).
    Returns (entries, complete)."""
    path = _root_or_path(path)
    if path:
        b = Batch()
        look = _look(b, prefixes(path)[:-1], path, 1)
        transport.run(b)
        parents = prefixes(path)[:-1]
        if _check_dirs(path, parents, look) < len(parents):
            raise NotFound(f"no {path} in the workspace")
        reply = _lasts(look)[0]
        if not reply.ok:
            if isinstance(reply.error, FileNotFoundError):
                raise NotFound(f"no {path} in the workspace")
            raise MavpsError(f"cannot look at {path}: {reply.error}")
        if not reply.value.is_dir or reply.value.is_link:
            return [_entry(path, reply.value)], True
    out: list[dict[str, Any]] = []
    todo, walked = [path], 0
    while todo:
        if walked >= MAX_LIST_DIRS:
            return out, False
        folder = todo.pop(0)
        walked += 1
        entries = _list_one(transport, folder)
        out += entries
        if recursive:
            todo += [e["path"] for e in entries if e["kind"] == "dir"]
    return out, True


def _list_one(transport: Transport, folder: str) -> list[dict[str, Any]]:
    """One real directory's entries, lstat'ed; the directory checked before and after its listing."""
    dirs = prefixes(folder) if folder else []
    b = Batch()
    before = _look(b, dirs, None, 1)
    transport.run(b)
    if _check_dirs(folder, dirs, before) < len(dirs):
        raise NotFound(f"no directory {folder} in the workspace")
    try:
        names = transport.listdir(folder)
    except FileNotFoundError:
        raise NotFound(f"no directory {folder} in the workspace") from None
    except OSError as exc:
        raise MavpsError(f"cannot list {folder or 'the workspace'}: {exc}") from None
    names = [n for n in names if n not in (".", "..") and "/" not in n and not (not folder and _is_lock(n))]
    joined = [f"{folder}/{n}" if folder else n for n in names]
    b = Batch()
    stats = [b.lstat(p) for p in joined]
    after = _look(b, dirs, None, 1)
    transport.run(b)
    if _check_dirs(folder, dirs, after) < len(dirs):
        raise _changed(folder)
    if dirs and not same_file(before[0][0][-1][1].value, after[0][0][-1][1].value):
        raise _changed(folder)
    return [_entry(p, r.value) for p, r in zip(joined, stats) if r.ok]


def fetch(transport: Transport, paths: list[str], dest: str) -> list[dict[str, Any]]:
    """Copy workspace files, and directories recursively, into the local directory `dest`: a file to
    dest/NAME, a directory to dest/NAME/... Links met inside a directory are skipped (reported), never
    followed. Files are read through the checked reader, PIPELINE of them per round trip, each written
    to a local temp file and renamed into place. One row per file: path, local, size (or skipped)."""
    plan: list[tuple[str, str]] = []
    rows: list[dict[str, Any]] = []
    for given in paths:
        entries, complete = list_dir(transport, given, recursive=True)
        if not complete:
            raise InvalidInput(f"{given} has more than {MAX_LIST_DIRS} directories: get a part of it")
        top = _root_or_path(given)
        base = top.rpartition("/")[0]
        single = len(entries) == 1 and entries[0]["path"] == top
        if single and entries[0]["kind"] != "file":
            raise InvalidInput(f"{top} is a {entries[0]['kind']}, not a file or directory: mavps does not follow "
                               "links (they can lead out of the workspace)")
        if top and not single:  # a directory: made even when empty
            os.makedirs(os.path.join(dest, top.rpartition("/")[2]), exist_ok=True)
        for e in entries:
            rel = e["path"][len(base) + 1:] if base else e["path"]
            local = os.path.join(dest, *rel.split("/"))
            if e["kind"] == "file":
                plan.append((e["path"], local))
            elif e["kind"] == "dir":
                os.makedirs(local, exist_ok=True)
            else:
                rows.append({"path": e["path"], "local": None, "size": None,
                             "skipped": f"a {e['kind']}: mavps does not follow links or copy special files"})
    for i in range(0, len(plan), PIPELINE):
        rows += _fetch_group(transport, plan[i:i + PIPELINE])
    return rows


def _fetch_group(transport: Transport, group: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Open and check a group of small files in two shared round trips; any file that needs more (a large one,
    one that changed meanwhile) goes through `stream_file` on its own."""
    b = Batch()
    staged = []
    for path, _local in group:
        dirs = prefixes(path)[:-1]
        before = _look(b, dirs, path, 1)
        opened = b.open(path, "r")
        after = _look(b, dirs, path, 1)
        staged.append((dirs, before, opened, after))
    transport.run(b)
    b = Batch()
    reads: list[tuple[Reply, list[Reply]] | None] = []
    for _dirs, before, opened, _after in staged:
        if not opened.ok:
            reads.append(None)
            continue
        first = _window(b, opened.value, 0, 0)  # one chunk: enough for a small file
        reads.append((b.fstat(opened.value), first))
        b.close(opened.value)
    transport.run(b)
    rows = []
    for (path, local), (dirs, before, opened, after), got in zip(group, staged, reads):
        data = None
        if got is None and isinstance(opened.error, FileNotFoundError):
            rows.append({"path": path, "local": None, "size": None, "skipped": "removed while it was fetched"})
            continue
        if got is not None:
            fst, first = got
            seen = _check_path(path, dirs, before + after)
            if fst.ok and all(same_file(fst.value, st) for st in seen) and first[0].ok \
                    and len(first[0].value) < CHUNK and len(first[0].value) == fst.value.size:
                data = first[0].value
        rows.append(_save_local(transport, path, local, data))
    return rows


def _save_local(transport: Transport, path: str, local: str, data: bytes | None) -> dict[str, Any]:
    """Write one fetched file atomically (temp file, then os.replace); streamed when not read yet."""
    size = write_through_temp(local, lambda fh: fh.write(data) if data is not None
                              else stream_file(transport, path, fh.write))
    return {"path": path, "local": local, "size": size}


# ----- writing ----------------------------------------------------------------------
def write_file(transport: Transport, path: str, data: bytes | BinaryIO, limit: int = MAX_FILE) -> int:
    """Replace (or create) a workspace file atomically from bytes or a binary stream; the bytes written.

    A stream is read WINDOW chunks at a time, so memory stays bounded; a regular
    file over the limit is refused before anything is written, a stream that
    passes it is aborted. The temp file is removed on every failure, Ctrl-C too.
    """
    path = _writable(path)
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    _check_source_size(path, source, limit)
    folder, _, name = path.rpartition("/")
    dirs = prefixes(folder) if folder else []
    b = Batch()
    look = _look(b, dirs, path, 1)
    transport.run(b)
    missing = _check_dirs(path, dirs, look)
    if missing == len(dirs):
        _check_target(path, look[0][1][0])
    tmp = f"{folder + '/' if folder else ''}.{name}.{os.urandom(6).hex()}.tmp"
    state: dict[str, Any] = {"handle": None, "created": False, "moved": False}
    try:
        _create_checked(transport, path, dirs, missing, tmp, state)
        written, fst = _copy(transport, path, source, state, limit)
        _put_in_place(transport, path, dirs, tmp, fst, state)
        return written
    finally:
        if not state["moved"]:
            _remove_temp(transport, tmp, state)


def _writable(path: str) -> str:
    path = validate.relative_path(path)
    if path in STATE or path.endswith(".bak") or path.split("/")[0].startswith(LOCK):
        raise InvalidInput(f"{path} is mavps state: change it through mavps commands or `mavps edit`")
    return path


def _check_source_size(path: str, source: BinaryIO, limit: int) -> None:
    """A regular local file over the limit is refused before anything is sent."""
    if isinstance(source, io.BytesIO):
        size = source.getbuffer().nbytes - source.tell()
    else:
        try:
            st = os.fstat(source.fileno())
        except (AttributeError, OSError, ValueError):  # a pipe-like stream: counted while it is read
            return
        if not statmod.S_ISREG(st.st_mode):
            return
        size = st.st_size
    if size > limit:
        raise InvalidInput(f"{path}: the input is {size} bytes, over the {limit} byte limit; nothing was written")


def _check_target(path: str, reply: Reply) -> None:
    """The target may be missing or a regular file; a directory (or anything else) is refused up front."""
    if not reply.ok:
        if isinstance(reply.error, FileNotFoundError):
            return
        raise MavpsError(f"cannot write {path}: {reply.error}")
    st: Stat = reply.value
    if st.is_link:
        raise InvalidInput(f"{path}: {path} is a symlink; mavps does not follow or replace links: remove it first")
    if st.is_dir:
        raise InvalidInput(f"{path} is a directory: give the path of a file inside it")
    if not st.is_file:
        raise InvalidInput(f"{path} is a {st.kind()}, not a regular file: remove it first")


def _create_checked(transport: Transport, path: str, dirs: list[str], missing: int, tmp: str,
                    state: dict[str, Any]) -> None:
    """Make the missing parents, create the temp file (O_EXCL) and check it is where its path says."""
    b = Batch()
    for d in dirs[missing:]:
        b.mkdir(d)  # a parent made meanwhile by someone else simply fails
    before = _look(b, dirs, None)
    opened = b.open(tmp, "x")
    after = _look(b, dirs, tmp)
    transport.run(b)
    if opened.ok:
        state["handle"], state["created"] = opened.value, True
    _check_dirs(path, dirs, before + after)
    if not opened.ok:
        if isinstance(opened.error, FileNotFoundError):
            raise MavpsError(f"cannot write {path}: its directory was removed meanwhile; try again")
        raise MavpsError(f"cannot write {path}: {opened.error}")
    b = Batch()
    fst = b.fstat(opened.value)
    transport.run(b)
    made = _lasts(after)
    if not fst.ok or not all(r.ok and r.value.is_file and same_file(fst.value, r.value) for r in made):
        raise _changed(path)


def _copy(transport: Transport, path: str, source: BinaryIO, state: dict[str, Any], limit: int) -> tuple[int, Stat]:
    """Stream the source into the temp file, WINDOW chunks per round trip; the size and the closed file's fstat."""
    handle, offset = state["handle"], 0
    while True:
        block = _read_block(source, WINDOW * CHUNK)
        if offset + len(block) > limit:
            raise InvalidInput(f"{path}: the input is over the {limit} byte limit; nothing was written")
        b = Batch()
        writes = [b.write(handle, offset + i, block[i: i + CHUNK]) for i in range(0, len(block), CHUNK)]
        last = len(block) < WINDOW * CHUNK
        fst = b.fstat(handle) if last else None
        closed = b.close(handle) if last else None
        if last:
            state["handle"] = None  # never closed twice: a local fd number may be reused at once
        transport.run(b)
        failed = next((w.error for w in [*writes, *([closed] if closed else [])] if not w.ok), None)
        if failed is not None:
            raise MavpsError(f"could not write {path} ({failed}); the old file is unchanged")
        offset += len(block)
        if fst is not None:
            if not fst.ok:
                raise MavpsError(f"could not write {path} ({fst.error}); the old file is unchanged")
            return offset, fst.value


def _read_block(source: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes of the source (fewer only at its end)."""
    parts, got = [], 0
    while got < size:
        piece = source.read(size - got)
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


def _put_in_place(transport: Transport, path: str, dirs: list[str], tmp: str, fst: Stat,
                  state: dict[str, Any]) -> None:
    """Rename the temp file over the target path, its directories lstat'ed right before (and after).

    rename(2) replaces whatever the target path names, a symlink included, and
    never follows a link there: a link planted at the target is replaced.
    """
    b = Batch()
    before = _look(b, dirs, tmp)
    moved = b.replace(tmp, path)
    after = _look(b, dirs, path)
    transport.run(b)
    state["moved"] = moved.ok
    if not moved.ok:
        _check_dirs(path, dirs, before)
        raise MavpsError(f"could not put {path} in place: {moved.error}; the old file is unchanged")
    try:
        _check_dirs(path, dirs, before + after)
        if not all(r.ok and same_file(fst, r.value) for r in _lasts(before + after)):
            raise MavpsError("it was replaced by someone else meanwhile")
    except MavpsError as exc:
        raise MavpsError(f"{path} was put in place, but the workspace changed around it ({exc}): look at it "
                         f"(`mavps cat {path}`) and put it again if needed") from None


def _remove_temp(transport: Transport, tmp: str, state: dict[str, Any]) -> None:
    """Close and remove the temp file after a failure or an interruption; never raises."""
    b = Batch()
    if state["handle"] is not None:
        b.close(state["handle"])
    if state["created"]:
        b.remove(tmp)
    _quietly(transport, b)


# ----- leftovers --------------------------------------------------------------------
def temp_files(transport: Transport, now: float, older_than: float = TEMP_AGE) -> tuple[list[str], bool]:
    """put's temp files (`.NAME.<hex>.tmp`) anywhere in the tree, older than this by the server clock `now`.

    Walks real directories only (never a link), skips the lock's directories,
    and stops after MAX_WALK directories: (paths, whether the walk was complete).
    """
    found: list[str] = []
    todo, walked = [""], 0
    while todo:
        if walked >= MAX_WALK:
            return sorted(found), False
        folder = todo.pop()
        walked += 1
        try:
            names = transport.listdir(folder)
        except OSError:
            continue
        if not folder:
            names = [n for n in names if not n.startswith(LOCK)]
        joined = [f"{folder}/{n}" if folder else n for n in names]
        b = Batch()
        stats = [(p, b.lstat(p)) for p in joined]
        transport.run(b)
        for p, reply in stats:
            if not reply.ok or reply.value.is_link:
                continue
            if reply.value.is_dir:
                todo.append(p)
            elif reply.value.is_file and TEMP_RE.fullmatch(p.rpartition("/")[2]) \
                    and now - reply.value.mtime > older_than:
                found.append(p)
    return sorted(found), True


def remove_temp_files(transport: Transport, paths: list[str], now: float, older_than: float = TEMP_AGE) -> list[str]:
    """Remove these temp files if they are still old regular files; the ones removed."""
    removed = []
    for path in paths:
        if not TEMP_RE.fullmatch(path.rpartition("/")[2]):
            continue
        folder = path.rpartition("/")[0]
        dirs = prefixes(folder) if folder else []
        b = Batch()
        look = _look(b, dirs, path, 1)
        transport.run(b)
        st = look[0][1][0]
        try:
            _check_dirs(path, dirs, look)
        except MavpsError:
            continue
        if not st.ok or not st.value.is_file or now - st.value.mtime <= older_than:
            continue
        b = Batch()
        gone = b.remove(path)
        transport.run(b)
        if gone.ok:
            removed.append(path)
    return removed


# ----- helpers ----------------------------------------------------------------------
def _closing(handle: object) -> Batch:
    b = Batch()
    b.close(handle)
    return b


def _quietly(transport: Transport, batch: Batch) -> None:
    """Run a clean-up batch; a failure there must not hide the error being handled."""
    try:
        transport.run(batch)
    except Exception:
        pass
