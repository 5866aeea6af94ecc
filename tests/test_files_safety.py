"""`mavps cat` / `mavps put` against a hostile workspace: links swapped in while they run, links at
every component, big files, interrupted writes and the temp files they could leave behind."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Iterator

import pytest

import mavps
from mavps.errors import InvalidInput, MavpsError
from mavps.files import MAX_FILE, WINDOW, write_file
from mavps.transport.base import CHUNK

PACKAGE_ROOT = Path(mavps.__file__).resolve().parents[1]  # the subprocess runs the code under test
RUNS = int(os.environ.get("RACE_RUNS", "250"))
SECRET = b"SECRET outside the workspace\n"
INSIDE = b"inside\n"


SWAPPER = r"""
import ctypes, os, sys
real, link, stop = (a.encode() for a in sys.argv[1:4])
libc = ctypes.CDLL(None, use_errno=True)
def exchange():  # renameat2(RENAME_EXCHANGE): the two names trade places atomically, never missing
    if libc.renameat2(-100, real, -100, link, 2) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")
exchange(); exchange()
print("ready", flush=True)
swaps = 0
while not os.path.exists(stop):
    exchange()
    swaps += 1
print(swaps)
"""


class Swapper:
    """Another account (another process): swaps a workspace entry with a symlink leading outside, nonstop."""

    def __init__(self, real: Path, outside: Path) -> None:
        link = real.with_name(real.name + ".link")
        link.symlink_to(outside)
        self.stop = real.parent.parent / "stop-swapping"
        self.proc = subprocess.Popen([sys.executable, "-c", SWAPPER, str(real), str(link), str(self.stop)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.swaps = 0

    def __enter__(self) -> "Swapper":
        assert self.proc.stdout is not None
        if self.proc.stdout.readline() != "ready\n":
            self.proc.communicate(timeout=30)
            pytest.skip("no renameat2(RENAME_EXCHANGE) here to swap entries atomically")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.touch()
        out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        self.swaps = int(out.strip())


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "f.txt").write_bytes(SECRET)
    return d


@pytest.fixture
def outside_other_fs(tmp_path: Path) -> Iterator[Path]:
    """An outside directory on another filesystem than the workspace (tmpfs /dev/shm).

    rename(2) resolves its two paths one after the other, so a directory
    swapped for a link in the middle of that one call can move the file into
    the link's directory: the documented limit (knowledge/06-vps-setup.md).
    Across filesystems that move fails (EXDEV), which lets this test check
    everything else mavps does, deterministically.
    """
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no writable /dev/shm on another filesystem")
    d = Path(tempfile.mkdtemp(dir=shm, prefix="mavps-outside-"))
    (d / "f.txt").write_bytes(SECRET)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _leftover_tmp(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp") if ".mavps.lock" not in str(p)]


# ----- races -------------------------------------------------------------------------
def test_cat_never_reads_outside_while_the_last_component_is_swapped(ws, target, outside) -> None:
    root = target.path
    (root / "f.txt").write_bytes(INSIDE)
    got = []
    with Swapper(root / "f.txt", outside / "f.txt") as sw:
        for _ in range(RUNS):
            try:
                got.append(ws.read_file("f.txt"))
            except MavpsError:
                got.append(None)
    assert sw.swaps > 10
    assert SECRET not in got
    assert None in got  # the reads did meet the swaps (refused, or read inside: both fine)


def test_cat_never_reads_outside_while_a_directory_is_swapped(ws, target, outside) -> None:
    root = target.path
    (root / "d").mkdir()
    (root / "d" / "f.txt").write_bytes(INSIDE)
    got = []
    with Swapper(root / "d", outside) as sw:
        for _ in range(RUNS):
            try:
                got.append(ws.read_file("d/f.txt"))
            except MavpsError:
                got.append(None)
    assert sw.swaps > 10
    assert SECRET not in got


def test_put_never_writes_outside_while_a_directory_is_swapped(ws, target, outside_other_fs) -> None:
    root, outside = target.path, outside_other_fs
    (root / "d").mkdir()
    (root / "d" / "f.txt").write_bytes(INSIDE)
    with Swapper(root / "d", outside) as sw:
        for i in range(RUNS):
            try:
                ws.write_file("d/f.txt", b"new %d\n" % i)
            except MavpsError:
                pass
    assert sw.swaps > 10
    assert (outside / "f.txt").read_bytes() == SECRET
    strays = {p.name: p.read_bytes() for p in outside.iterdir() if p.name != "f.txt"}
    assert all(data == b"" for data in strays.values()), strays  # never any data outside


def test_put_never_writes_outside_while_the_target_is_swapped(ws, target, outside) -> None:
    root = target.path
    (root / "f.txt").write_bytes(INSIDE)
    with Swapper(root / "f.txt", outside / "f.txt") as sw:
        for i in range(RUNS):
            try:
                ws.write_file("f.txt", b"new %d\n" % i)
            except MavpsError:
                pass
    assert sw.swaps > 10
    assert (outside / "f.txt").read_bytes() == SECRET


# ----- links ------------------------------------------------------------------------
def test_links_at_every_component_are_refused_naming_them(ws, target, outside) -> None:
    root = target.path
    (root / "a").mkdir()
    (root / "dirlink").symlink_to(outside)
    (root / "a" / "dirlink").symlink_to(outside)
    (root / "a" / "link.txt").symlink_to(outside / "f.txt")
    cases = {"dirlink/f.txt": "dirlink", "a/dirlink/f.txt": "a/dirlink", "a/link.txt": "a/link.txt"}
    for path, link in cases.items():
        with pytest.raises(InvalidInput, match=f"{path}: {link} is a symlink"):
            ws.read_file(path)
        with pytest.raises(InvalidInput, match=f"{path}: {link} is a symlink"):
            ws.write_file(path, b"evil")
    with pytest.raises(InvalidInput, match="a/dirlink/new/f.txt: a/dirlink is a symlink"):
        ws.write_file("a/dirlink/new/f.txt", b"evil")  # no parent made through the link either
    assert sorted(p.name for p in outside.iterdir()) == ["f.txt"]
    assert (outside / "f.txt").read_bytes() == SECRET
    assert not _leftover_tmp(root)


# ----- limits and memory ----------------------------------------------------------------
def test_put_refuses_a_source_over_the_limit_before_sending_anything(ws, target, tmp_path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        fh.truncate(MAX_FILE + 1)  # sparse: costs no disk
    tr = ws.transport
    sent = tr.requests
    with open(big, "rb") as fh, pytest.raises(InvalidInput, match="over the .* byte limit; nothing was written"):
        ws.write_file("new/big.bin", fh)
    assert tr.requests == sent
    assert not (target.path / "new").exists()


class Zeros(io.RawIOBase):
    """A pipe-like input (no fileno): `size` zero bytes, or KeyboardInterrupt once `interrupt_at` were read."""

    def __init__(self, size: int, interrupt_at: int | None = None) -> None:
        super().__init__()
        self.size, self.interrupt_at, self.given = size, interrupt_at, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[override]
        if self.interrupt_at is not None and self.given >= self.interrupt_at:
            raise KeyboardInterrupt
        n = min(self.size - self.given, len(buf), 8192)
        buf[:n] = b"\0" * n
        self.given += n
        return n


def test_put_from_a_stream_stops_at_the_limit_and_leaves_nothing(ws, target) -> None:
    (target.path / "f.bin").write_bytes(b"old")
    source = Zeros(10 * 1024 * 1024)
    with pytest.raises(InvalidInput, match="over the 300000 byte limit"):
        write_file(ws.transport, "f.bin", source, limit=300_000)
    assert source.given <= 300_000 + WINDOW * CHUNK  # read no further than one window past the limit
    assert (target.path / "f.bin").read_bytes() == b"old"
    assert not _leftover_tmp(target.path)


def test_put_streams_in_windows(ws, target) -> None:
    size = 3 * WINDOW * CHUNK + 123
    tr = ws.transport
    trips = tr.round_trips
    assert ws.write_file("d/big.bin", Zeros(size)) == size
    assert (target.path / "d" / "big.bin").stat().st_size == size
    assert tr.round_trips - trips <= 4 + 4  # look, create, fstat, 4 windows, rename: not one per chunk
    assert not _leftover_tmp(target.path)


def test_cat_streams_a_big_file_in_bounded_memory(ws, target) -> None:
    size = 16 * 1024 * 1024
    with open(target.path / "big.bin", "wb") as fh:
        fh.truncate(size)
    seen = {"total": 0, "largest": 0}

    def sink(chunk: bytes) -> None:
        seen["total"] += len(chunk)
        seen["largest"] = max(seen["largest"], len(chunk))

    tracemalloc.start()
    try:
        assert ws.stream_file("big.bin", sink) == size
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen["total"] == size and seen["largest"] <= CHUNK
    assert peak < 4 * 1024 * 1024, peak  # a quarter of the file at most, whatever its size
    with pytest.raises(InvalidInput, match="over the 1000000 byte limit"):
        ws.read_file("big.bin", max_size=1_000_000)


# ----- failures leave nothing behind --------------------------------------------------
def test_put_onto_a_directory_is_refused_before_creating_anything(ws, target) -> None:
    (target.path / "docs").mkdir()
    (target.path / "docs" / "keep.md").write_text("kept")
    trips = ws.transport.round_trips
    with pytest.raises(InvalidInput, match="docs is a directory"):
        ws.write_file("docs", b"x")
    assert ws.transport.round_trips - trips == 1  # one look, nothing created
    assert not _leftover_tmp(target.path)
    assert (target.path / "docs" / "keep.md").read_text() == "kept"


def test_interrupted_put_leaves_no_temp_file(ws, target) -> None:
    (target.path / "d").mkdir()
    (target.path / "d" / "f.bin").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        ws.write_file("d/f.bin", Zeros(10 * 1024 * 1024, interrupt_at=2 * WINDOW * CHUNK))
    assert not _leftover_tmp(target.path)
    assert (target.path / "d" / "f.bin").read_bytes() == b"old"


# ----- the CLI ----------------------------------------------------------------------
@pytest.fixture
def mavps(target, clean_env):
    from test_cli import Mavps

    m = Mavps(target)
    m("init")
    return m


def test_cli_cat_and_put_stream_and_refuse_clearly(mavps, tmp_path, outside) -> None:
    root = mavps.target.path
    assert mavps("put", "notes/a.md", input="hello\n").stdout.startswith("wrote notes/a.md (6 bytes)")
    assert mavps("cat", "notes/a.md").stdout == "hello\n"
    (root / "docs").mkdir()
    src = tmp_path / "src.txt"
    src.write_text("x")
    err = mavps("put", "docs", "--from", str(src), code=1).stderr
    assert "docs is a directory" in err and "Traceback" not in err
    (root / "dirlink").symlink_to(outside)
    err = mavps("cat", "dirlink/f.txt", code=1).stderr
    assert "dirlink/f.txt: dirlink is a symlink" in err and "SECRET" not in err
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        fh.truncate(MAX_FILE + 1)
    err = mavps("put", "big.bin", "--from", str(big), code=1).stderr
    assert "over the 67108864 byte limit; nothing was written" in err
    assert not (root / "big.bin").exists() and not _leftover_tmp(root)


def test_cli_put_interrupted_leaves_no_temp_file(mavps) -> None:
    root = mavps.target.path
    (root / "f.bin").write_bytes(b"old")
    mavps("put", "f.bin", input=Zeros(10 * 1024 * 1024, interrupt_at=WINDOW * CHUNK), code=130)  # Ctrl-C
    assert (root / "f.bin").read_bytes() == b"old" and not _leftover_tmp(root)


def test_doctor_lists_old_temp_files_and_cleanup_removes_them(mavps, outside) -> None:
    root = mavps.target.path
    (root / "src").mkdir()
    old_ones = [root / "src" / ".user.py.0123456789ab.tmp", root / ".notes.md.aaaaaaaaaaaa.tmp"]
    young = root / "src" / ".other.py.bbbbbbbbbbbb.tmp"
    not_ours = root / "src" / "plain.tmp"
    link = root / ".evil.cccccccccccc.tmp"
    (outside / ".deep.dddddddddddd.tmp").write_bytes(b"outside")
    (root / "linkdir").symlink_to(outside)  # never walked into
    link.symlink_to(outside / "f.txt")
    past = time.time() - 7200
    for p in [*old_ones, young, not_ours]:
        p.write_bytes(b"partial")
    for p in [*old_ones, not_ours, outside / ".deep.dddddddddddd.tmp"]:
        os.utime(p, (past, past))
    os.utime(link, (past, past), follow_symlinks=False)
    checks = {c["check"]: c for c in mavps.json("doctor", code=1)}
    temp = checks["temp files"]
    assert not temp["ok"] and "mavps cleanup" in temp["fix"]
    assert "2 temp file(s)" in temp["detail"]
    assert "src/.user.py.0123456789ab.tmp" in temp["detail"] and ".notes.md.aaaaaaaaaaaa.tmp" in temp["detail"]
    removed = mavps.json("cleanup")["temp_files_removed"]
    assert sorted(removed) == [".notes.md.aaaaaaaaaaaa.tmp", "src/.user.py.0123456789ab.tmp"]
    assert not any(p.exists() for p in old_ones)
    assert young.exists() and not_ours.exists() and link.is_symlink()
    assert (outside / ".deep.dddddddddddd.tmp").exists() and (outside / "f.txt").read_bytes() == SECRET
    assert {c["check"]: c for c in mavps.json("doctor")}["temp files"]["ok"]
    assert "nothing to remove" in mavps("cleanup").stdout


@pytest.mark.slow
def test_cli_cat_of_a_200_mb_file_stays_small(target, clean_env, tmp_path) -> None:
    from test_cli import Mavps, conn_args

    Mavps(target)("init")
    size = 200 * 1024 * 1024
    with open(target.path / "big.bin", "wb") as fh:
        fh.truncate(size)  # sparse
    out, err = tmp_path / "copy.bin", tmp_path / "stderr.txt"
    with open(out, "wb") as fh, open(err, "wb") as eh:
        proc = subprocess.Popen([sys.executable, "-m", "mavps", *conn_args(target), "cat", "big.bin"], stdout=fh,
                                stderr=eh, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)})
        _pid, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
        proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, err.read_text()
    assert out.stat().st_size == size
    assert usage.ru_maxrss * 1024 < size / 2, usage.ru_maxrss  # the old code held the whole file, and more


def test_special_files_are_refused(ws, target) -> None:
    """Over SFTP too: files are opened read-write there, which never blocks on a FIFO (see transport/sftp.py)."""
    os.mkfifo(target.path / "pipe")
    with pytest.raises(InvalidInput, match="pipe is a special file, not a regular file"):
        ws.read_file("pipe")
    with pytest.raises(InvalidInput, match="pipe is a special file, not a regular file: remove it first"):
        ws.write_file("pipe", b"x")
    assert not _leftover_tmp(target.path)
