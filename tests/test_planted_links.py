"""Paths planted by another account: a symlink (to a directory or file of the victim's, outside the
workspace), a directory or a FIFO where mavps expects one of its own files or directories.

Every mutating operation either works without going through the planted path, or is refused with
UnsafePath naming it; nothing outside the workspace ever changes, a failed operation leaves the state as it
was, and a FIFO never makes anything hang. `unlock --force` removes a planted lock as the link it is, and
the leftover cleanup removes planted `.mavps.lock.*` links as links. Both transports.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import stat as statmod
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from click.testing import CliRunner

from mavps.cli import cli
from mavps.errors import MavpsError, UnsafePath

pytestmark = [pytest.mark.timeout(90)]

OLD = time.time() - 3 * 3600  # far older than any lease or leftover age
HEX = "0123456789abcdef"
NEXT_ID = 3  # the fixture adds tasks 1 and 2
INSTR = f"tasks/task-{NEXT_ID}-instructions.md"


def nobody() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    return pw.pw_uid, pw.pw_gid


# ----- the victim: files of someone else's, outside the workspace -----------------------------------
@pytest.fixture
def victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim"
    (v / "sub").mkdir(parents=True)
    (v / "authorized_keys").write_text("ssh-ed25519 AAAAvictim victim@host\n")
    (v / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    (v / "sub" / "notes.txt").write_text("keep me\n")
    (v / "sub" / "empty").mkdir()
    for p in [v, *v.rglob("*")]:
        os.utime(p, (OLD, OLD), follow_symlinks=False)
    return v


def snap_tree(root: Path) -> dict[str, Any]:
    """Names, types, contents, modes and mtimes of a tree, never following links."""
    out: dict[str, Any] = {}
    for p in [root, *sorted(root.rglob("*"))]:
        st = p.lstat()
        kind = "dir" if statmod.S_ISDIR(st.st_mode) else "link" if statmod.S_ISLNK(st.st_mode) else "file"
        body = p.read_bytes() if kind == "file" else os.readlink(p) if kind == "link" else None
        out[str(p.relative_to(root))] = (kind, body, st.st_mode, st.st_mtime_ns, st.st_uid)
    return out


def snap_ws(root: Path) -> dict[str, Any]:
    """The workspace's top level and tasks/ (if a real directory): what each name is, file contents."""
    out: dict[str, Any] = {}
    for base in (root, root / "tasks"):
        if base != root and (base.is_symlink() or not base.is_dir()):
            continue
        for name in sorted(os.listdir(base)):
            p = base / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if statmod.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif statmod.S_ISREG(st.st_mode):
                out[rel] = ("file", p.read_bytes())
            elif statmod.S_ISDIR(st.st_mode):
                out[rel] = ("dir", None) if rel == "tasks" else ("dir", sorted(os.listdir(p)))
            else:
                out[rel] = ("special", None)
    return out


def log_records(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def assert_nothing_changed(before: dict[str, Any], after: dict[str, Any]) -> None:
    """A refused operation: every name as it was; log records it may have written are rolled back."""
    log = "agent-comms.jsonl"
    if before.get(log, ("",))[0] == "file" and after.get(log, ("",))[0] == "file":
        old, new = before[log][1], after[log][1]
        assert new.startswith(old), "the log was rewritten"
        extra = log_records(new[len(old):])
        undone = {r.get("txn") for r in extra if r.get("event") == "rolled_back"}
        stray = [r for r in extra if r.get("event") != "rolled_back" and r.get("txn") not in undone]
        assert not stray, f"log records of a refused operation not rolled back: {stray}"
        before, after = dict(before), dict(after)
        before.pop(log)
        after.pop(log)
    assert after == before


# ----- planting -------------------------------------------------------------------------------------
FIFOS: list[Path] = []


@pytest.fixture(autouse=True)
def unblock_fifos():
    """Open each planted FIFO at both ends, so a server blocked opening one (a failed test) gets free."""
    yield
    while FIFOS:
        p = FIFOS.pop()
        for _ in range(4):
            try:
                os.close(os.open(p, os.O_RDWR | os.O_NONBLOCK))
            except OSError:
                break


def plant(ws_path: Path, rel: str, kind: str, victim: Path) -> Path:
    """Put `kind` at `rel` as user nobody (made by root, then lchown'ed), its own mtime old."""
    p = ws_path / rel
    if p.is_symlink() or p.is_file() or (p.exists() and not p.is_dir()):
        p.unlink()
    elif p.is_dir():
        shutil.rmtree(p)
    if kind == "link-dir":
        os.symlink(victim, p)
    elif kind == "link-file":
        os.symlink(victim / "authorized_keys", p)
    elif kind == "dir":
        p.mkdir()
    elif kind == "fifo":
        os.mkfifo(p)
        FIFOS.append(p)
    else:
        raise AssertionError(kind)
    uid, gid = nobody()
    os.lchown(p, uid, gid)
    os.utime(p, (OLD, OLD), follow_symlinks=False)
    return p


@pytest.fixture
def planted_ws(target, victim):
    """A workspace any account may write in (0777): task 1 claimed by w0, task 2 pending."""
    ws = target.open("coord", lock_ttl=1, lock_timeout=5, reply_timeout=5)
    ws.init()
    ws.queue.add("first", "do the first")
    ws.queue.add("second", "do the second")
    assert ws.queue.claim("w0").id == 1
    os.chmod(target.path, 0o777)
    os.chmod(target.path / "tasks", 0o777)
    yield ws
    ws.close()


OPS: dict[str, Callable[[Any], Any]] = {
    "log": lambda ws: ws.log.append("hello", agent="w5"),
    "register": lambda ws: ws.workers.register("w9", ["py"]),
    "reap": lambda ws: ws.queue.reap(),
    "claim": lambda ws: ws.queue.claim("w1"),
    "complete": lambda ws: ws.queue.complete(1, "w0", "done"),
    "add": lambda ws: ws.queue.add("third", "do the third"),
    "init": lambda ws: ws.init(),
}
TXN = {"register", "reap", "claim", "complete", "add", "init"}
FILE_KINDS = ["link-file", "link-dir", "dir", "fifo"]

#: (planted path, kinds, the operations that need it and must be refused)
CASES: list[tuple[str, list[str], set[str]]] = [
    (".mavps.lock", ["link-dir", "link-file"], TXN),
    (".mavps.commit", ["link-dir", "link-file"], TXN),
    (f".mavps.lock.{HEX}", ["link-dir"], set()),
    (f".mavps.lock.stale-{HEX}", ["link-dir"], set()),
    ("task-queue.json", FILE_KINDS, {"reap", "claim", "complete", "add", "init"}),
    ("worker-status.json", FILE_KINDS, {"register", "claim", "complete", "init"}),
    ("workspace.json", FILE_KINDS, {"add", "claim", "init"}),  # a claim reads what the backlog holds there
    ("task-backlog.jsonl", FILE_KINDS, set()),  # read only when workspace.json says it holds tasks
    ("agent-comms.jsonl", FILE_KINDS, {"log", "register", "claim", "complete", "add", "init"}),
    ("task-queue.json.bak", FILE_KINDS, {"reap", "claim", "complete", "add", "init"}),
    ("worker-status.json.bak", ["link-file"], {"register", "claim", "complete", "init"}),
    ("tasks", ["link-dir"], {"add", "init"}),
    (INSTR, FILE_KINDS, {"add"}),
]
PARAMS = [pytest.param(rel, kind, needs, id=f"{rel}-{kind}") for rel, kinds, needs in CASES for kind in kinds]


@pytest.mark.parametrize("rel, kind, needs", PARAMS)
def test_operations_never_go_through_a_planted_path(planted_ws, target, victim, rel, kind, needs):
    ws = planted_ws
    plant(target.path, rel, kind, victim)
    victim_before = snap_tree(victim)
    outcomes = {}
    for name, op in OPS.items():
        before = snap_ws(target.path)
        try:
            op(ws)
        except UnsafePath as exc:
            outcomes[name] = "refused"
            assert rel in str(exc), (name, str(exc))
            assert isinstance(exc, MavpsError) and isinstance(exc, PermissionError)
            assert_nothing_changed(before, snap_ws(target.path))
        else:
            outcomes[name] = "done"
        assert snap_tree(victim) == victim_before, f"{name} changed files outside the workspace"
        assert (target.path / rel).is_symlink() == kind.startswith("link"), f"{name} replaced the planted {rel}"
    assert {n for n, o in outcomes.items() if o == "refused"} == needs, outcomes
    assert not (target.path / ".mavps.lock").is_dir() or rel == ".mavps.lock", "the lock was left behind"


def test_a_planted_archive_is_refused_when_archiving(planted_ws, target, victim):
    """An archive link is met only when finished tasks move out of the queue: that complete is refused."""
    from mavps.queue import ARCHIVE_BATCH, KEEP_FINISHED

    ws = planted_ws
    queue = json.loads((target.path / "task-queue.json").read_text())
    template = dict(queue[1], status="completed", completed_at="2020-01-01T00:00:00Z", result="r")
    done = [dict(template, id=100 + i, instruction_file=None) for i in range(KEEP_FINISHED + ARCHIVE_BATCH)]
    (target.path / "task-queue.json").write_text(json.dumps(queue + done))
    for kind in FILE_KINDS:
        plant(target.path, "task-archive.jsonl", kind, victim)
        victim_before = snap_tree(victim)
        before = snap_ws(target.path)
        with pytest.raises(UnsafePath, match="task-archive.jsonl"):
            ws.queue.complete(1, "w0", "done")
        assert snap_tree(victim) == victim_before
        assert_nothing_changed(before, snap_ws(target.path))


# ----- the CLI: unlock, unlock --force, doctor ---------------------------------------------------------
def cli_args(target) -> list[str]:
    args = ["--workspace", target.url]
    s = target.settings
    if s.get("identity_file"):
        args += ["--identity-file", str(s["identity_file"]), "--known-hosts", str(s["known_hosts"])]
    return args


def run(target, *args: str):
    return CliRunner().invoke(cli, [*cli_args(target), *args], env={"MAVPS_REPLY_TIMEOUT": "5"},
                              catch_exceptions=False)


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("kind", ["link-dir", "link-file"])
def test_unlock_force_removes_a_planted_lock_as_a_link(planted_ws, target, victim, kind):
    plant(target.path, ".mavps.lock", kind, victim)
    victim_before = snap_tree(victim)
    r = run(target, "unlock")
    assert snap_tree(victim) == victim_before
    assert (target.path / ".mavps.lock").is_symlink(), "plain unlock must not break anything"
    r = run(target, "unlock", "--force", "--yes")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert snap_tree(victim) == victim_before, "unlock --force went through the link"
    assert not os.path.lexists(target.path / ".mavps.lock")
    assert not [n for n in os.listdir(target.path) if n.startswith(".mavps.lock")], os.listdir(target.path)
    planted_ws.queue.complete(1, "w0", "done")  # the workspace works again


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("how", ["unlock", "unlock-force"])
def test_unlock_removes_planted_leftover_links_as_links(planted_ws, target, victim, how):
    names = [f".mavps.lock.{HEX}", f".mavps.lock.stale-{HEX}", f".mavps.lock.{HEX[::-1]}"]
    plant(target.path, names[0], "link-dir", victim)
    plant(target.path, names[1], "link-dir", victim)
    plant(target.path, names[2], "link-file", victim)
    victim_before = snap_tree(victim)
    r = run(target, "unlock", *(["--force", "--yes"] if how == "unlock-force" else []))
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert snap_tree(victim) == victim_before, "the cleanup went through a link"
    left = [n for n in names if os.path.lexists(target.path / n)]
    assert not left, f"old leftover links not removed: {left}"


DOCTOR_CASES = [(".mavps.lock", "link-dir"), (".mavps.commit", "link-dir"), (f".mavps.lock.{HEX}", "link-dir"),
                ("task-queue.json", "link-file"), ("task-queue.json", "fifo"), ("worker-status.json", "link-dir"),
                ("workspace.json", "dir"), ("agent-comms.jsonl", "link-file"), ("agent-comms.jsonl", "fifo"),
                ("tasks", "link-dir")]


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("rel, kind", DOCTOR_CASES)
def test_doctor_reports_a_planted_path_and_changes_nothing(planted_ws, target, victim, rel, kind):
    plant(target.path, rel, kind, victim)
    victim_before = snap_tree(victim)
    before = snap_ws(target.path)
    r = run(target, "doctor")
    assert snap_tree(victim) == victim_before
    assert snap_ws(target.path) == before, "doctor changed the workspace"
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert rel in r.stdout + r.stderr, (r.stdout, r.stderr)


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("rel, kind", [("task-queue.json", "link-file"), ("agent-comms.jsonl", "fifo"),
                                       (".mavps.lock", "link-dir"), (INSTR, "dir")])
def test_cli_names_the_planted_path(planted_ws, target, victim, rel, kind):
    plant(target.path, rel, kind, victim)
    victim_before = snap_tree(victim)
    r = run(target, "task", "add", "third", "--instructions", "do it")
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert rel in r.stderr, r.stderr
    assert snap_tree(victim) == victim_before
