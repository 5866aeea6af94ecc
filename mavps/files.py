"""Project files in the workspace (not the state files): read, and write atomically.

Workers that do not run on the VPS use these to read a task's context files
and to deliver their work. Paths stay inside the workspace: relative, no
'..', and no symlink anywhere along the way (the server would follow it out).
"""
from __future__ import annotations

import secrets

from . import validate
from .errors import InvalidInput, MavpsError, NotFound
from .lock import LOCK
from .models import ARCHIVE_FILE, META_FILE, QUEUE_FILE, WORKERS_FILE
from .store import LOG_FILE
from .transport.base import Batch, Transport, joined

#: Written only through the queue, the registry, the log or `mavps edit`.
STATE = {QUEUE_FILE, WORKERS_FILE, META_FILE, ARCHIVE_FILE, LOG_FILE}
MAX_FILE = 64 * 1024 * 1024


def prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _check_links(path: str, lstats: list) -> None:
    for prefix, reply in zip(prefixes(path), lstats):
        if reply.ok and reply.value.is_link:
            raise InvalidInput(f"{path}: {prefix} is a symlink; mavps does not follow links (they can lead "
                               "out of the workspace)")


def read_file(transport: Transport, path: str) -> bytes:
    """A workspace file's bytes, in two round trips."""
    path = validate.relative_path(path)
    b = Batch()
    lstats = [b.lstat(p) for p in prefixes(path)]
    st = b.stat(path)
    handle = b.open(path, "r")
    transport.run(b)
    try:
        _check_links(path, lstats)
        if not handle.ok:
            if isinstance(handle.error, FileNotFoundError):
                raise NotFound(f"no file {path} in the workspace")
            raise MavpsError(f"cannot read {path}: {handle.error}")
        if st.ok and st.value.is_dir:
            raise InvalidInput(f"{path} is a directory")
    except MavpsError:
        if handle.ok:
            transport.run(_closing(handle.value))
        raise
    b = Batch()
    reads = b.read_span(handle.value, st.value.size)
    b.close(handle.value)
    transport.run(b)
    data, complete = joined(reads)
    if not complete:
        raise MavpsError(f"{path} changed while it was read: try again")
    return data


def write_file(transport: Transport, path: str, data: bytes) -> int:
    """Replace (or create) a workspace file atomically: temp file, checked writes, rename."""
    path = validate.relative_path(path)
    if path in STATE or path.endswith(".bak") or path.split("/")[0].startswith(LOCK):
        raise InvalidInput(f"{path} is mavps state: change it through mavps commands or `mavps edit`")
    if len(data) > MAX_FILE:
        raise InvalidInput(f"{path}: {len(data)} bytes is over the {MAX_FILE} byte limit")
    folder, _, name = path.rpartition("/")
    tmp = f"{folder + '/' if folder else ''}.{name}.{secrets.token_hex(6)}.tmp"
    b = Batch()
    lstats = [b.lstat(p) for p in prefixes(path)]
    for p in prefixes(folder) if folder else []:
        b.mkdir(p)  # parents as needed; an existing one simply fails
    handle = b.open(tmp, "x")
    transport.run(b)
    try:
        _check_links(path, lstats)
    except InvalidInput:
        if handle.ok:
            b = _closing(handle.value)
            b.remove(tmp)
            transport.run(b)
        raise
    if not handle.ok:
        raise MavpsError(f"cannot write {path}: {handle.error}")
    b = Batch()
    checks = b.write_all(handle.value, data) + [b.close(handle.value)]
    transport.run(b)
    b = Batch()
    failed = next((c.error for c in checks if not c.ok), None)
    if failed is not None:
        b.remove(tmp)
        transport.run(b)
        raise MavpsError(f"could not write {path} ({failed}); the old file is unchanged")
    moved = b.replace(tmp, path)
    transport.run(b)
    if not moved.ok:
        raise MavpsError(f"could not put {path} in place: {moved.error}")
    return len(data)


def _closing(handle: object) -> Batch:
    b = Batch()
    b.close(handle)
    return b
