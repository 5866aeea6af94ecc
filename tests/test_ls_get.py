"""`mavps ls` and `mavps get`: what workers produced, seen and fetched without a shell, with `cat`'s link rules."""
from __future__ import annotations

import os

import pytest
from test_cli import Mavps

from mavps.errors import InvalidInput, NotFound
from mavps.files import PIPELINE, fetch, list_dir

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def mavps(target) -> Mavps:
    m = Mavps(target)
    m("init")
    return m


def tree(ws, target, tmp_path):
    """src/a.py, src/pkg/b.py, a big file, and links planted to outside the workspace."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("private")
    ws.write_file("src/a.py", b"print('a')\n")
    ws.write_file("src/pkg/b.py", b"b = 1\n")
    ws.write_file("src/big.bin", os.urandom(300_000))
    os.symlink(secret, target.path / "src" / "out")
    os.symlink(secret / "key", target.path / "src" / "key.txt")
    return secret


def test_ls_shows_links_as_links_and_never_follows_them(ws, target, tmp_path):
    tree(ws, target, tmp_path)
    entries, complete = list_dir(ws.transport, "src")
    kinds = {e["path"]: e["kind"] for e in entries}
    assert complete and kinds == {"src/a.py": "file", "src/pkg": "dir", "src/big.bin": "file",
                                  "src/out": "link", "src/key.txt": "link"}
    everything, _ = list_dir(ws.transport, "src", recursive=True)
    paths = {e["path"] for e in everything}
    assert "src/pkg/b.py" in paths and not any(p.startswith("src/out/") for p in paths)
    root, _ = list_dir(ws.transport, "")
    assert {"task-queue.json", "src", "tasks"} <= {e["path"] for e in root}
    assert not any(e["path"].startswith(".mavps.lock") for e in root)


@pytest.mark.parametrize("path, error", [("../x", InvalidInput), ("/etc", InvalidInput), ("src/out", None),
                                         ("src/out/key", InvalidInput), ("nothing", NotFound)])
def test_ls_refuses_what_cat_refuses(ws, target, tmp_path, path, error):
    tree(ws, target, tmp_path)
    if error is None:  # the link itself, as a link
        assert [e["kind"] for e in list_dir(ws.transport, path)[0]] == ["link"]
        return
    with pytest.raises(error):
        list_dir(ws.transport, path)


def test_get_copies_a_directory_pipelined_and_skips_links(ws, target, tmp_path):
    tree(ws, target, tmp_path)
    for i in range(PIPELINE + 4):
        ws.write_file(f"out/f{i}.txt", f"file {i}\n".encode())
    dest = tmp_path / "here"
    before = ws.transport.round_trips
    ws.transport.listdir("out")
    listdir = ws.transport.round_trips - before  # paramiko: opendir, readdir, close; locally not counted
    before = ws.transport.round_trips
    rows = fetch(ws.transport, ["out"], str(dest))
    trips = ws.transport.round_trips - before
    assert sorted(os.listdir(dest / "out")) == sorted(f"f{i}.txt" for i in range(PIPELINE + 4))
    assert (dest / "out" / "f3.txt").read_text() == "file 3\n" and len(rows) == PIPELINE + 4
    # a listing (look at the path, at the directory, list it, lstat its entries), then two round trips per
    # PIPELINE files: not two per file
    assert trips == 3 + listdir + 2 * 2
    rows = fetch(ws.transport, ["src"], str(dest))
    assert (dest / "src" / "pkg" / "b.py").read_text() == "b = 1\n"
    assert (dest / "src" / "big.bin").read_bytes() == (target.path / "src" / "big.bin").read_bytes()
    skipped = {r["path"] for r in rows if r.get("skipped")}
    assert skipped == {"src/out", "src/key.txt"}
    assert not (dest / "src" / "out").exists() and not (dest / "src" / "key.txt").exists()
    assert not [n for n in os.listdir(dest / "src") if n.endswith(".tmp")]


def test_get_refuses_a_link_given_by_name(ws, target, tmp_path):
    tree(ws, target, tmp_path)
    with pytest.raises(InvalidInput, match="link"):
        fetch(ws.transport, ["src/key.txt"], str(tmp_path / "here"))
    assert not (tmp_path / "here" / "key.txt").exists()


def test_cli_ls_and_get(mavps, target, tmp_path):
    mavps("put", "results/report.md", input="all done\n")
    mavps("put", "results/data/x.csv", input="1,2\n")
    os.symlink("/etc", target.path / "results" / "etc")
    out = mavps("ls", "results").stdout.split()
    assert out == sorted(out, key=out.index) and set(out) == {"report.md", "data/", "etc@"}
    long_ = mavps("ls", "results", "--long", "--recursive").stdout
    assert "results/data/x.csv" in long_ and "link" in long_
    assert {e["kind"] for e in mavps.json("ls", "results")["entries"]} == {"file", "dir", "link"}
    dest = tmp_path / "got"
    mavps("get", "results/report.md", "results/data", "--to", str(dest))
    assert (dest / "report.md").read_text() == "all done\n" and (dest / "data" / "x.csv").read_text() == "1,2\n"
    mavps("get", "../x", code=1)


def test_a_file_removed_between_listing_and_fetching_is_skipped(ws, tmp_path):
    from mavps.files import _fetch_group

    ws.write_file("kept.txt", b"kept\n")
    rows = _fetch_group(ws.transport, [("gone.txt", str(tmp_path / "gone.txt")), ("kept.txt", str(tmp_path / "k"))])
    assert rows[0]["skipped"] and not (tmp_path / "gone.txt").exists()
    assert (tmp_path / "k").read_text() == "kept\n"
