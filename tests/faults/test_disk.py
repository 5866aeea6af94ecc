"""Disk full (a real tmpfs of a few pages, mounted for the test: needs root) and
permission denied (an SFTP-only chrooted account whose workspace is made
read-only): a clear error, the previous state intact, and work resumes once
the space or the permission is back."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from mavps import MavpsError, Workspace
from support.sshd import SSHServer, Unsupported

from .helpers import LOCK, env, figures

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]
STATE = ("task-queue.json", "worker-status.json", "workspace.json", "agent-comms.jsonl")


def snapshot(path):
    return {name: (path / name).read_bytes() for name in STATE}


@pytest.fixture
def tiny_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k,mode=0755", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path, leave: int) -> None:
    """Fill the filesystem until at most `leave` bytes are free."""
    with open(path / "filler", "wb") as fh:
        try:
            while True:
                st = os.statvfs(path)
                free = st.f_bavail * st.f_frsize
                if free <= leave:
                    break
                fh.write(b"\0" * min(4096, free - leave if free - leave >= 4096 else 4096))
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


@pytest.mark.parametrize("kind", ["local", pytest.param("sftp", marks=pytest.mark.sftp)])
@pytest.mark.parametrize("leave", [0, 8192])
def test_disk_full(tiny_disk, request, kind, leave):
    ws_path = tiny_disk / "ws"
    settings = {}
    url = str(ws_path)
    if kind == "sftp":
        server = request.getfixturevalue("sshd")
        url = server.url(str(ws_path))
        settings = {"identity_file": server.client_key, "known_hosts": server.known_hosts, "ssh_config": os.devnull}
    with Workspace.open(url, agent="coord", lock_ttl=1, **settings) as ws:
        ws.init()
        ws.queue.add("before", "x")
        ws.queue.claim("w1")
        before = state_of(ws_path)
        fill(tiny_disk, leave)
        errors = []
        for attempt in (lambda: ws.queue.add("big", "y" * 60_000), lambda: ws.queue.complete(1, "w1", "z" * 60_000)):
            with pytest.raises(MavpsError) as info:
                attempt()
            errors.append(str(info.value))
        for msg in errors:
            assert "No space" in msg or "Failure" in msg or "could not write" in msg or "cannot create" in msg, msg
        # byte for byte, but for log records written before the commit point and marked rolled back after it
        assert not refused_cleanly(before, state_of(ws_path), {1}), "a failed write changed the state"
        assert not (ws_path / LOCK).exists(), "the lock was left behind"
        os.unlink(tiny_disk / "filler")
        ws.queue.complete(1, "w1", "done")
        assert ws.queue.get(1).status.value == "completed"
    figures("disk full", kind, 3, 2, 0, left_free=leave, errors=errors)


@pytest.fixture(scope="module")
def sftp_only(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("an SFTP-only chrooted account needs root")
    server = SSHServer(tmp_path_factory.mktemp("sftponly"), sftp_only_user="mavpsfault")
    try:
        server.start()
    except Unsupported as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.mark.sftp
def test_permission_denied_sftp_only_account(sftp_only):
    s = sftp_only
    url = f"sftp://{s.sftp_only_user}@127.0.0.1:{s.port}/ws/project"
    host_path = s.sftp_only_ws + "/project"
    from pathlib import Path
    path = Path(host_path)
    with Workspace.open(url, agent="coord", lock_ttl=1, identity_file=s.sftp_only_key, known_hosts=s.known_hosts,
                        ssh_config=os.devnull) as ws:
        ws.init()
        ws.queue.add("before", "x")
        before = snapshot(path)
        os.chmod(path, 0o555)  # as root: the account may read, not write
        try:
            with pytest.raises(MavpsError, match="(?i)permission denied") as info:
                ws.queue.add("refused", "x")
            assert [t.description for t in ws.queue.list()] == ["before"], "reading must still work"
            assert snapshot(path) == before
            assert not (path / LOCK).exists()
        finally:
            os.chmod(path, 0o755)
        ws.queue.add("after", "x")
        # files the account created are not world- or group-writable
        for p in [path, *path.rglob("*")]:
            assert p.stat().st_mode & 0o022 == 0, (p, oct(p.stat().st_mode))
    figures("permission denied (sftp-only chroot)", "sftp", 3, 1, 0, error=str(info.value))


def test_permission_denied_local_unprivileged(tmp_path):
    """The local transport as an unprivileged user (setuid nobody) on a root-owned workspace."""
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    import shutil
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="mavps-perm-", dir="/tmp"))  # traversable by nobody
    request_cleanup = lambda: shutil.rmtree(base, ignore_errors=True)  # noqa: E731
    os.chmod(base, 0o755)
    ws_path = base / "ws"
    with Workspace.open(str(ws_path), agent="coord") as ws:
        ws.init()
        ws.queue.add("before", "x")
    before = snapshot(ws_path)
    code = ("import os, sys\n"
            "import mavps.workspace, mavps.transport.local, mavps.queue, portalocker\n"
            "from mavps import Workspace, MavpsError\n"
            "os.setgid(65534); os.setuid(65534)\n"
            f"ws = Workspace.open({str(ws_path)!r}, agent='nobody')\n"
            "assert [t.id for t in ws.queue.list()] == [1]\n"
            "try:\n    ws.queue.add('x', 'y')\nexcept MavpsError as e:\n    print('REFUSED', e); sys.exit(0)\n"
            "sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Permission denied" in r.stdout, r.stdout
    assert snapshot(ws_path) == before
    request_cleanup()
    figures("permission denied (local, setuid nobody)", "local", 2, 1, 0, error=r.stdout.strip())


# ----- every reply of a commit checked (issue 10, item 4) ---------------------------------------------------
ARCHIVE = "task-archive.jsonl"
LOG = "agent-comms.jsonl"


@pytest.fixture
def disk(tmp_path):
    """A 1 MiB tmpfs: room for a queue long enough to archive."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def where(request, kind: str, path) -> tuple[str, dict]:
    if kind == "local":
        return str(path), {}
    server = request.getfixturevalue("sshd")
    return server.url(str(path)), {"identity_file": server.client_key, "known_hosts": server.known_hosts,
                                   "ssh_config": os.devnull}


def state_of(path) -> dict[str, bytes | None]:
    """Every state file, the archive and the instruction files, byte for byte (None: absent)."""
    out = {}
    for name in (*STATE, ARCHIVE):
        p = path / name
        out[name] = p.read_bytes() if p.exists() else None
    tasks = path / "tasks"
    for p in sorted(tasks.iterdir()) if tasks.is_dir() else []:
        out[f"tasks/{p.name}"] = p.read_bytes() if p.is_file() else b"<not a file>"
    return out


def records(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def refused_cleanly(before: dict, after: dict, queue_ids: set[int]) -> list[str]:
    """What a refused operation changed that it must not have (empty: nothing)."""
    bad = []
    for name in before:
        if name in (LOG, ARCHIVE) or before[name] == after.get(name):
            continue
        bad.append(f"{name} changed")
    bad += [f"{name} appeared" for name in after if name not in before]
    old, new = before[LOG] or b"", after[LOG] or b""
    if not new.startswith(old):
        return bad + ["the log was rewritten"]
    extra = new[len(old):]
    if extra and not extra.endswith(b"\n"):
        bad.append(f"the log ends with a partial line: {extra[-80:]!r}")
    extra_recs = records(extra[: extra.rfind(b"\n") + 1])
    for i, r in enumerate(extra_recs):
        if r.get("event") == "rolled_back":
            continue
        if not any(x.get("event") == "rolled_back" and x.get("txn") == r.get("txn") for x in extra_recs[i + 1:]):
            bad.append(f"log record {r.get('event')} (txn {r.get('txn')}) not followed by rolled_back")
    old, new = before[ARCHIVE] or b"", after[ARCHIVE] or b""
    if not new.startswith(old):
        bad.append("the archive was rewritten")
    elif new != old:  # lines appended before a commit that failed: harmless only while the queue still has them
        extra = new[len(old):]
        if not extra.endswith(b"\n"):
            bad.append(f"the archive ends with a partial line: {extra[-80:]!r}")
        else:
            stray = [r["id"] for r in records(extra) if r.get("id") not in queue_ids]
            if stray:
                bad.append(f"archive lines of tasks not in the queue: {stray}")
    return bad


def live_log(path) -> list[dict]:
    recs = records((path / LOG).read_bytes())
    undone = {r.get("txn") for r in recs if r.get("event") == "rolled_back"}
    return [r for r in recs if r.get("event") != "rolled_back" and r.get("txn") not in undone]


def build(path, op: str) -> dict:
    """A workspace ready for `op` (made locally: quicker, the same files): for 'archive', 300 finished tasks so
    the next complete archives 101."""
    from mavps.queue import ARCHIVE_BATCH, KEEP_FINISHED

    with Workspace.open(str(path), agent="coord", lock_ttl=1) as ws:
        ws.init()
        ws.queue.add("held", "do it")
        assert ws.queue.claim("w1").id == 1
    pad_log(path / LOG)
    if op == "archive":
        queue = json.loads((path / "task-queue.json").read_text())
        done = [dict(queue[0], id=100 + i, instruction_file=None, status="completed", claim_token=f"{i:016x}",
                     lease_expires_at=None, completed_at=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
                     result=f"result {100 + i} " + "r" * 200) for i in range(KEEP_FINISHED + ARCHIVE_BATCH)]
        (path / "task-queue.json").write_text(json.dumps(done + queue, indent=2))
        (path / "workspace.json").write_text(json.dumps({"format": 1, "next_task_id": 1000}))
        return {t["id"]: t["result"] for t in done[: ARCHIVE_BATCH + 1]}
    return {}


def pad_log(log) -> None:
    """End the log on a page boundary, so the next append needs a new page: some fill level then fails
    exactly the log's append (or the archive's), with the state files' temp copies written."""
    empty = len(json.dumps({"agent": "pad", "event": "message", "message": ""})) + 1
    pad = -log.stat().st_size % 4096
    pad += 4096 if pad < empty else 0
    with open(log, "a") as fh:
        fh.write(json.dumps({"agent": "pad", "event": "message", "message": "x" * (pad - empty)}) + "\n")
    assert log.stat().st_size % 4096 == 0


def attempt(ws: Workspace, op: str) -> None:
    if op == "add":
        ws.queue.add("new", "instructions " * 300)
    else:
        ws.queue.complete(1, "w1", "result " * 300)


def succeeded_fully(path, op: str, moving: dict) -> list[str]:
    """What is missing after an operation that reported success (empty: nothing)."""
    queue = {t["id"]: t for t in json.loads((path / "task-queue.json").read_text())}
    log = live_log(path)
    if op == "add":
        new = max(queue)
        bad = [] if queue[new]["description"] == "new" else ["the new task is not in the queue"]
        instr = path / f"tasks/task-{new}-instructions.md"
        if not instr.is_file() or instr.read_text() != "instructions " * 300:
            bad.append("the instructions file is missing or wrong")
        if not any(r.get("event") == "task_added" and r.get("task_id") == new for r in log):
            bad.append("no task_added record")
        return bad
    bad = [] if queue[1]["status"] == "completed" and queue[1]["result"] == "result " * 300 else ["not completed"]
    if not any(r.get("event") == "task_completed" and r.get("task_id") == 1 for r in log):
        bad.append("no task_completed record")
    if op == "archive":
        from mavps.queue import parse_archive

        archived = {t.id: t.result for t in parse_archive((path / ARCHIVE).read_bytes())}
        if archived != moving:
            bad.append(f"archive holds {sorted(archived)[:3]}...({len(archived)}), expected {len(moving)} tasks")
        if set(moving) & set(queue):
            bad.append("archived tasks still in the queue")
        if not any(r.get("event") == "tasks_archived" and r.get("task_ids") == sorted(moving) for r in log):
            bad.append("no tasks_archived record")
    return bad


LEVELS = [0, 512, 2048, *range(4096, 65537, 4096), 131072, 262144]


@pytest.mark.parametrize("kind", ["local", pytest.param("sftp", marks=pytest.mark.sftp)])
@pytest.mark.parametrize("op", ["add", "complete", "archive"])
def test_disk_full_at_each_fill_level(disk, request, kind, op):
    """At each fill level the operation either happens completely (state, instructions, archive, log) or not
    at all with a MavpsError; after space is freed it works, and nothing was lost."""
    import shutil

    path = disk / "ws"
    url, settings = where(request, kind, path)
    violations, failed, errors = [], 0, set()
    levels = list(LEVELS)
    if op == "archive":  # also where the new queue fits but the archive's lines do not
        build(path, op)
        queue_size = (path / "task-queue.json").stat().st_size
        levels += list(range(queue_size * 2 // 3 - 16384, queue_size + 16384, 8192))
    for leave in levels:
        shutil.rmtree(path, ignore_errors=True)
        moving = build(path, op)
        with Workspace.open(url, agent="w1", lock_ttl=1, **settings) as ws:
            before = state_of(path)
            fill(disk, leave)
            try:
                attempt(ws, op)
            except MavpsError as exc:
                failed += 1
                errors.add(str(exc)[:160])
                queue_ids = {t["id"] for t in json.loads((path / "task-queue.json").read_text())}
                violations += [f"leave={leave}: {v}" for v in refused_cleanly(before, state_of(path), queue_ids)]
                if (path / LOCK).exists() or (path / ".mavps.commit").exists():
                    violations.append(f"leave={leave}: the lock or a commit was left behind")
                os.unlink(disk / "filler")
                attempt(ws, op)  # space is back: it works, and nothing was lost on the way
            else:
                os.unlink(disk / "filler")
            violations += [f"leave={leave}: {v}" for v in succeeded_fully(path, op, moving)]
    figures(f"disk full at each fill level ({op})", kind, len(levels) + failed, failed, len(violations),
            errors=sorted(errors))
    assert failed, "no fill level made the operation fail: the test tests nothing"
    assert not violations, violations


# ----- permission denied for another account ---------------------------------------------------------------
AS_NOBODY = """
import json, os, sys
import mavps.workspace, mavps.transport.local, mavps.queue, mavps.files, portalocker
from mavps import Workspace, MavpsError
os.setgid(65534); os.setuid(65534)
ws = Workspace.open(sys.argv[1], agent='nobody', lock_ttl=1, lock_timeout=5)
out = {}
for op in sys.argv[2].split(','):
    try:
        if op == 'add':
            ws.queue.add('by nobody', 'instructions')
        elif op == 'claim':
            out['claimed'] = getattr(ws.queue.claim('w2'), 'id', None)
        elif op == 'complete':
            ws.queue.complete(1, 'w1', 'done')
        elif op == 'log':
            ws.log.append('hello', agent='nobody')
        out[op] = 'ok'
    except MavpsError as e:
        out[op] = 'MavpsError: ' + str(e)
    except Exception as e:
        out[op] = type(e).__name__ + ': ' + str(e)
print(json.dumps(out))
"""


def shared_workspace(base, mode_tasks: int, log_mode: int):
    """A workspace made by root, then opened to every account except `tasks/` and the log as given."""
    with Workspace.open(str(base), agent="coord") as ws:
        ws.init()
        ws.queue.add("first", "x")
        ws.queue.add("second", "y")
        assert ws.queue.claim("w1").id == 1
    os.chmod(base, 0o777)
    os.chmod(base / "tasks", mode_tasks)
    os.chmod(base / LOG, log_mode)


def run_as_nobody(path, ops: str) -> dict:
    r = subprocess.run([sys.executable, "-c", AS_NOBODY, str(path), ops], env=env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def nobody_dir():
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    import shutil
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="mavps-perm-", dir="/tmp"))  # traversable by nobody
    os.chmod(base, 0o755)
    yield base / "ws"
    shutil.rmtree(base, ignore_errors=True)


def sftp_as_account(sftp_only, ops: list[str], project: str) -> dict:
    """The chrooted SFTP-only account (not root) runs the operations on /ws/<project>."""
    s = sftp_only
    url = f"sftp://{s.sftp_only_user}@127.0.0.1:{s.port}/ws/{project}"
    out = {}
    with Workspace.open(url, agent="acct", lock_ttl=1, lock_timeout=5, identity_file=s.sftp_only_key,
                        known_hosts=s.known_hosts, ssh_config=os.devnull) as ws:
        for op in ops:
            try:
                if op == "add":
                    ws.queue.add("by the account", "instructions")
                elif op == "claim":
                    out["claimed"] = getattr(ws.queue.claim("w2"), "id", None)
                elif op == "complete":
                    ws.queue.complete(1, "w1", "done")
                elif op == "log":
                    ws.log.append("hello", agent="acct")
                out[op] = "ok"
            except MavpsError as e:
                out[op] = "MavpsError: " + str(e)
            except Exception as e:  # noqa: BLE001 - reported as a violation below
                out[op] = type(e).__name__ + ": " + str(e)
    return out


def permission_case(request, kind: str, tmp_dir, project: str, tasks_mode: int, log_mode: int, ops: list[str]):
    """(workspace host path, outcome per operation) with the operations run by an account that is not root."""
    from pathlib import Path

    if kind == "local":
        path = tmp_dir
        shared_workspace(path, tasks_mode, log_mode)
        return path, (lambda: run_as_nobody(path, ",".join(ops)))
    s = request.getfixturevalue("sftp_only")
    path = Path(s.sftp_only_ws) / project
    shared_workspace(path, tasks_mode, log_mode)
    return path, (lambda: sftp_as_account(s, ops, project))


@pytest.mark.parametrize("kind", ["local", pytest.param("sftp", marks=pytest.mark.sftp)])
def test_unwritable_tasks_dir_refuses_add(request, nobody_dir, kind):
    """tasks/ not writable for this account: `task add` fails saying so and adds nothing; claims still work."""
    path, run = permission_case(request, kind, nobody_dir, "tasksro", 0o555, 0o666, ["add", "claim"])
    before = state_of(path)
    out = run()
    violations = []
    if not out["add"].startswith("MavpsError") or "tasks" not in out["add"]:
        violations.append(f"add: {out['add']}")
    after = state_of(path)
    if [t["id"] for t in json.loads(after["task-queue.json"])] != [1, 2]:
        violations.append("the queue changed: a task was added")
    if sorted(n for n in after if n.startswith("tasks/")) != sorted(n for n in before if n.startswith("tasks/")):
        violations.append("tasks/ changed")
    if out.get("claim") != "ok" or out.get("claimed") != 2:
        violations.append(f"claim (tasks/ is not needed): {out.get('claim')}")
    if (path / LOCK).exists():
        violations.append("the lock was left behind")
    figures("permission denied: tasks/ unwritable", kind, 2, 1, len(violations), error=out["add"][:200])
    assert not violations, violations


@pytest.mark.parametrize("kind", ["local", pytest.param("sftp", marks=pytest.mark.sftp)])
@pytest.mark.parametrize("log_mode", [0o444, 0o644])
def test_unwritable_log_refuses_every_change(request, nobody_dir, kind, log_mode):
    """The log not writable for this account: add, claim, complete and a log append fail saying so (a
    MavpsError naming the log) and change nothing."""
    path, run = permission_case(request, kind, nobody_dir, f"logro{log_mode:o}", 0o777, log_mode,
                                ["add", "claim", "complete", "log"])
    before = state_of(path)
    out = run()
    violations = [f"{op}: {out[op]}" for op in ("add", "claim", "complete", "log")
                  if not out[op].startswith("MavpsError") or LOG not in out[op]]
    after = state_of(path)
    violations += [f"{name} changed" for name in before if before[name] != after.get(name)]
    violations += [f"{name} appeared" for name in after if name not in before]
    if (path / LOCK).exists():
        violations.append("the lock was left behind")
    figures("permission denied: log unwritable", kind, 4, 4, len(violations), error=out["add"][:200])
    assert not violations, violations


@pytest.mark.parametrize("kind", ["local", pytest.param("sftp", marks=pytest.mark.sftp)])
def test_a_directory_at_the_instructions_path_refuses_add(request, tmp_path, kind):
    from mavps.errors import UnsafePath

    path = tmp_path / "ws"
    url, settings = where(request, kind, path)
    with Workspace.open(url, agent="coord", lock_ttl=1, **settings) as ws:
        ws.init()
        ws.queue.add("first", "x")
        (path / "tasks" / "task-2-instructions.md").mkdir()
        before = state_of(path)
        with pytest.raises(UnsafePath, match="tasks/task-2-instructions.md") as info:
            ws.queue.add("second", "y")
        queue_ids = {t["id"] for t in json.loads((path / "task-queue.json").read_text())}
        violations = refused_cleanly(before, state_of(path), queue_ids)
        if (path / LOCK).exists():
            violations.append("the lock was left behind")
        assert [t.id for t in ws.queue.list()] == [1]
    figures("planted directory at the instructions path", kind, 1, 1, len(violations), error=str(info.value)[:200])
    assert not violations, violations
