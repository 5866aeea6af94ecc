"""The transport operations, checked directly against each transport (local mimics OpenSSH's sftp-server)."""
from __future__ import annotations

import os

from mavps.transport.base import Batch, same_file


def _tr(ws):
    return ws.store.transport


def test_fstat_names_the_opened_file_and_lstat_sees_a_link(ws, target, tmp_path):
    (target.path / "real.txt").write_bytes(b"hello")
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"secret!")
    os.symlink(outside, target.path / "link.txt")
    tr = _tr(ws)
    b = Batch()
    real_l = b.lstat("real.txt")
    real_h = b.open("real.txt", "r")
    link_l = b.lstat("link.txt")
    tr.run(b)
    b = Batch()
    real_f = b.fstat(real_h.value)
    b.close(real_h.value)
    tr.run(b)
    assert real_l.value.is_file and not real_l.value.is_link
    assert same_file(real_f.value, real_l.value)
    assert link_l.value.is_link and link_l.value.kind() == "symlink"
    assert not link_l.value.is_file


def test_open_through_a_link_is_refused_locally_and_caught_by_fstat_over_sftp(ws, target, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"secret!")
    os.symlink(outside, target.path / "link.txt")
    tr = _tr(ws)
    b = Batch()
    link_l = b.lstat("link.txt")
    h = b.open("link.txt", "r")
    tr.run(b)
    if target.kind == "local":
        assert not h.ok  # O_NOFOLLOW
    else:  # sftp-server follows the link: the handle's fstat differs from the path's lstat
        b = Batch()
        f = b.fstat(h.value)
        b.close(h.value)
        tr.run(b)
        assert not same_file(f.value, link_l.value)


def test_truncate_sets_the_size_without_a_handle(ws, target):
    (target.path / "f.bin").write_bytes(b"")
    tr = _tr(ws)
    b = Batch()
    t = b.truncate("f.bin", 1234)
    st = b.lstat("f.bin")
    tr.run(b)
    assert t.ok and st.value.size == 1234
    assert (target.path / "f.bin").read_bytes() == b"\0" * 1234


def test_plain_rename_refuses_an_existing_target_and_replace_does_not(ws, target):
    (target.path / "a").write_bytes(b"A")
    (target.path / "b").write_bytes(b"B")
    os.mkdir(target.path / "d1")
    (target.path / "d1" / "x").write_bytes(b"x")
    os.mkdir(target.path / "d2")
    (target.path / "d2" / "y").write_bytes(b"y")
    tr = _tr(ws)
    b = Batch()
    r1 = b.rename("a", "b")
    r2 = b.rename("d1", "d2")
    tr.run(b)
    assert not r1.ok and not r2.ok
    assert (target.path / "b").read_bytes() == b"B" and (target.path / "d2" / "y").exists()
    b = Batch()
    r3 = b.replace("a", "b")
    tr.run(b)
    assert r3.ok and (target.path / "b").read_bytes() == b"A"


def test_mkdir_of_an_existing_directory_fails(ws, target):
    tr = _tr(ws)
    b = Batch()
    m1 = b.mkdir("newdir")
    m2 = b.mkdir("newdir")
    tr.run(b)
    assert m1.ok and not m2.ok
