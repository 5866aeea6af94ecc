"""The paramiko adapter (mavps/transport/pipeline.py), against the real sshd.

It is the only code using paramiko's private SFTP API; these tests pin down
what mavps relies on: N requests cost one round trip, every reply goes back
to its own request (failures included), and a paramiko without that API is
refused with a message that says what to install.
"""
from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest
from packaging.requirements import Requirement
from paramiko import sftp as proto

from conftest import sftp_settings
from mavps import Workspace
from mavps.errors import TransportError
from mavps.transport.base import Batch
from mavps.transport.pipeline import CHECKED, Pipeline, attributes, require_private_api

pytestmark = pytest.mark.sftp

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def remote(sshd, tmp_path):
    """An SFTPTransport on tmp_path/ws, and that directory seen locally."""
    path = tmp_path / "ws"
    path.mkdir()
    ws = Workspace.open(sshd.url(str(path)), **sftp_settings(sshd))
    yield ws.transport, path
    ws.close()


def spy(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record each send and collect with the number of replies read so far."""
    events: list[tuple[str, int]] = []
    send, collect = pipeline.send, pipeline.collect

    def sending(*args):
        events.append(("send", pipeline.received))
        return send(*args)

    def collecting(nums):
        events.append(("collect", pipeline.received))
        return collect(nums)

    monkeypatch.setattr(pipeline, "send", sending)
    monkeypatch.setattr(pipeline, "collect", collecting)
    return events


def test_a_batch_of_n_requests_is_one_round_trip(remote, monkeypatch):
    tr, path = remote
    for i in range(20):
        (path / f"f{i}").write_bytes(b"x" * i)
    p = tr.pipeline
    events = spy(p, monkeypatch)
    before = (tr.round_trips, p.round_trips, p.sent, p.received)
    batch = Batch()
    replies = [batch.lstat(f"f{i}") for i in range(20)]
    tr.run(batch)
    # every request went out before the first reply was read, then one collect read them all
    assert events == [("send", before[3])] * 20 + [("collect", before[3])]
    assert (tr.round_trips, p.round_trips, p.sent, p.received) == (before[0] + 1, before[1] + 1,
                                                                   before[2] + 20, before[3] + 20)
    assert [r.value.size for r in replies] == list(range(20))


def test_replies_go_to_their_requests_when_some_fail(remote):
    tr, path = remote
    (path / "a").write_bytes(b"a" * 3)
    (path / "b").write_bytes(b"b" * 7)
    (path / "d").mkdir()
    p = tr.pipeline
    enc = tr._path
    nums = [
        p.send(proto.CMD_LSTAT, enc("a")),
        p.send(proto.CMD_LSTAT, enc("missing")),
        p.send(proto.CMD_MKDIR, enc("d"), paramiko.SFTPAttributes()),  # exists: fails
        p.send(proto.CMD_OPEN, enc("missing"), proto.SFTP_FLAG_READ, paramiko.SFTPAttributes()),
        p.send(proto.CMD_LSTAT, enc("b")),
    ]
    rounds = p.round_trips
    got = dict(zip(reversed(nums), p.collect(list(reversed(nums)))))  # asked in another order on purpose
    assert p.round_trips == rounds + 1
    kinds = [got[n][0] for n in nums]
    assert kinds == [proto.CMD_ATTRS, proto.CMD_STATUS, proto.CMD_STATUS, proto.CMD_STATUS, proto.CMD_ATTRS]
    assert attributes(got[nums[0]][1]).st_size == 3
    assert attributes(got[nums[4]][1]).st_size == 7
    assert got[nums[1]][1].get_int() == proto.SFTP_NO_SUCH_FILE
    assert got[nums[2]][1].get_int() == proto.SFTP_FAILURE
    assert got[nums[3]][1].get_int() == proto.SFTP_NO_SUCH_FILE


def test_a_failure_in_the_middle_of_a_batch_stays_with_its_request(remote):
    tr, path = remote
    (path / "a").write_bytes(b"a" * 3)
    (path / "b").write_bytes(b"b" * 7)
    batch = Batch()
    a, missing, b = batch.stat("a"), batch.stat("missing"), batch.stat("b")
    tr.run(batch)
    assert a.value.size == 3 and b.value.size == 7
    assert isinstance(missing.error, FileNotFoundError)


def test_replies_read_early_wait_for_their_collect(remote):
    tr, path = remote
    for name, size in (("a", 1), ("b", 2), ("c", 3)):
        (path / name).write_bytes(b"x" * size)
    p = tr.pipeline
    nums = [p.send(proto.CMD_LSTAT, tr._path(name)) for name in "abc"]
    rounds = p.round_trips
    [(_t, last)] = p.collect([nums[2]])  # reads the replies to a and b on the way
    assert attributes(last).st_size == 3
    first = p.collect(nums[:2])
    assert p.round_trips == rounds + 1  # a and b were already there: no second wait
    assert [attributes(msg).st_size for _t, msg in first] == [1, 2]


def test_collect_refuses_a_request_never_sent(remote):
    tr, _path = remote
    num = tr.pipeline.send(proto.CMD_LSTAT, tr._path("."))
    tr.pipeline.collect([num])
    # waiting for it again would block until reply_timeout: refused at once instead
    with pytest.raises(ValueError, match=f"no request {num}"):
        tr.pipeline.collect([num])


@pytest.mark.parametrize("cls, name", [(paramiko.SFTPClient, "_async_request"),
                                       (paramiko.SFTPClient, "_read_response"),
                                       (paramiko.SFTPAttributes, "_from_msg")])
def test_a_paramiko_without_the_private_api_is_refused(monkeypatch, cls, name):
    monkeypatch.delattr(cls, name)
    with pytest.raises(TransportError, match=rf"{cls.__name__}\.{name}.*pip install 'paramiko>=3\.4,<5\.2'"):
        require_private_api()


def test_the_cli_reports_an_unsupported_paramiko_in_one_line(clean_env):
    """The check runs when the SFTP transport is imported: before any connection, as a mavps error."""
    code = ("import sys, paramiko; del paramiko.SFTPClient._read_response; from mavps.cli import main; "
            "sys.argv = ['mavps', '--workspace', 'sftp://127.0.0.1:9/nowhere', 'status']; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "SFTPClient._read_response" in done.stderr and CHECKED in done.stderr


def test_setup_cfg_pins_the_checked_paramiko_and_it_is_installed():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    requires = [line for line in cfg["options"]["install_requires"].splitlines() if line.startswith("paramiko")]
    assert requires == [CHECKED]
    assert Requirement(CHECKED).specifier.contains(paramiko.__version__), (
        f"paramiko {paramiko.__version__} is outside {CHECKED}: read its SFTPClient._async_request, "
        "_read_response and SFTPAttributes._from_msg, then widen the pin (setup.cfg, pipeline.CHECKED)")
