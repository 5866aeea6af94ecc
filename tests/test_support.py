"""Tests for the test-support code: a real sshd and a fault-injecting proxy.

Why: every mavps integration test builds on these; if they are wrong, the
real tests prove nothing.
"""
from __future__ import annotations

import base64
import os
import pwd
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

# tests/ has no __init__.py, so pytest puts tests/ on sys.path (as does
# conftest.py): import as ``support.*`` so classes such as Unsupported are
# the same objects conftest uses.
from support.proxy import LatencyProxy
from support.sshd import SSHServer, Unsupported, find_sshd

REQUIRE_SSHD = os.environ.get("MAVPS_REQUIRE_SSHD") == "1"


def _need_sshd() -> None:
    """Skip loudly without sshd, or fail if CI demands it."""
    if find_sshd() is None:
        msg = ("OpenSSH sshd NOT FOUND: real-server tests are SKIPPED "
               "(install openssh-server; set MAVPS_REQUIRE_SSHD=1 to make this fatal)")
        if REQUIRE_SSHD:
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    _need_sshd()
    with SSHServer(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def connect(server: SSHServer, port: int | None = None, *, user: str | None = None,
            key: str | None = None, timeout: float = 10.0) -> paramiko.SSHClient:
    """Strict client: unknown host keys are rejected, only our key is used.
    The known_hosts entry is for the sshd port; through a proxy the same key
    is registered for the proxy port too."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.load_host_keys(server.known_hosts)
    if port is not None and port != server.port:
        ktype, b64 = server.host_pub.split()[:2]
        client.get_host_keys().add(
            f"[{server.host}]:{port}", ktype, paramiko.PKey.from_type_string(ktype, base64.b64decode(b64)))
    client.connect(
        server.host, port=port or server.port, username=user or server.user,
        key_filename=key or server.client_key, look_for_keys=False,
        allow_agent=False, timeout=timeout, banner_timeout=timeout,
        auth_timeout=timeout, channel_timeout=timeout,
    )
    return client


# ------------------------------------------------------------------ sshd
@pytest.mark.timeout(60)
def test_sshd_sftp_roundtrip(sshd: SSHServer, tmp_path: Path) -> None:
    assert sshd.running and sshd.port > 0
    assert sshd.url("/x") == f"sftp://{sshd.user}@127.0.0.1:{sshd.port}/x"
    assert Path(sshd.known_hosts).read_text().startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    client = connect(sshd)
    try:
        sftp = client.open_sftp()
        target = str(tmp_path / "hello.txt")
        with sftp.open(target, "wb") as fh:
            fh.write(b"hello mavps\n")
        with sftp.open(target, "rb") as fh:
            assert fh.read() == b"hello mavps\n"
        assert Path(target).read_bytes() == b"hello mavps\n"
        sftp.close()
    finally:
        client.close()


@pytest.mark.timeout(60)
def test_sshd_rejects_wrong_host_key(sshd: SSHServer, tmp_path: Path) -> None:
    """RejectPolicy + a known_hosts without our key must refuse to connect."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        with pytest.raises(paramiko.SSHException):
            client.connect(sshd.host, port=sshd.port, username=sshd.user,
                           key_filename=sshd.client_key, look_for_keys=False,
                           allow_agent=False, timeout=10)
    finally:
        client.close()


@pytest.mark.timeout(60)
def test_sshd_34_concurrent_clients(sshd: SSHServer) -> None:
    n = 34
    errors: list[BaseException] = []
    clients: list[paramiko.SSHClient] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def work() -> None:
        try:
            barrier.wait(timeout=20)
            c = connect(sshd, timeout=30)
            with lock:
                clients.append(c)
            c.open_sftp().stat("/")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(50)
    for c in clients:
        c.close()
    assert not errors, f"{len(errors)} failures, first: {errors[0]!r}\n{sshd.log_text()}"
    assert len(clients) == n


@pytest.mark.timeout(60)
def test_sshd_stop_is_idempotent(tmp_path: Path) -> None:
    _need_sshd()
    server = SSHServer(tmp_path).start()
    pid = server.pid
    assert pid is not None
    client = connect(server)
    server.stop()
    server.stop()
    client.close()
    assert not server.running
    assert not os.path.exists(f"/proc/{pid}")  # reaped, not a zombie
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


@pytest.mark.timeout(60)
def test_sshd_reports_config_errors(tmp_path: Path) -> None:
    _need_sshd()
    with pytest.raises(RuntimeError, match="NoSuchOption"):
        SSHServer(tmp_path, extra_config="NoSuchOption yes").start()


# ------------------------------------------------------------ sftp-only user
@pytest.mark.timeout(60)
def test_sftp_only_user_is_chrooted_and_cannot_exec(tmp_path: Path) -> None:
    _need_sshd()
    try:
        server = SSHServer(tmp_path, sftp_only_user="mavpsagent").start()
    except Unsupported as exc:
        pytest.skip(f"least-privilege user unsupported here: {exc}")
    try:
        assert server.sftp_only_key and server.sftp_only_ws
        client = connect(server, user="mavpsagent", key=server.sftp_only_key)
        try:
            sftp = client.open_sftp()
            assert sftp.listdir("/") == ["ws"]
            assert sftp.normalize(".") == "/ws"  # home dir inside the jail
            with sftp.open("/ws/note.txt", "wb") as fh:
                fh.write(b"inside")
            assert Path(server.sftp_only_ws, "note.txt").read_bytes() == b"inside"
            with pytest.raises(PermissionError):
                sftp.open("/escape.txt", "wb")
            with pytest.raises(FileNotFoundError):
                sftp.stat("/etc/passwd")
            sftp.close()

            stdin, stdout, _stderr = client.exec_command("echo hi", timeout=10)
            # With ForceCommand internal-sftp, sshd refuses a non-subsystem
            # session itself ("This service allows sftp connections only.").
            stdin.channel.shutdown_write()
            out = stdout.read()
            assert b"hi" not in out.split(), out
            assert stdout.channel.recv_exit_status() != 0
        finally:
            client.close()
        # The main user's key must not work for the agent account.
        with pytest.raises(paramiko.AuthenticationException):
            connect(server, user="mavpsagent").close()
    finally:
        server.stop()
    with pytest.raises(KeyError):
        pwd.getpwnam("mavpsagent")  # user removed again


# ------------------------------------------------------------------ proxy
def _stat_time(sftp: paramiko.SFTPClient, n: int = 5) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        sftp.stat("/")
        best = min(best, time.perf_counter() - t0)
    return best


@pytest.mark.timeout(60)
def test_proxy_adds_latency(sshd: SSHServer) -> None:
    direct = connect(sshd)
    with LatencyProxy(sshd.host, sshd.port, delay_s=0.02) as proxy:
        proxied = connect(sshd, proxy.port)
        try:
            t_direct = _stat_time(direct.open_sftp())
            t_proxied = _stat_time(proxied.open_sftp())
        finally:
            proxied.close()
            direct.close()
        # A delay can only add time, so this lower bound cannot flake.
        assert t_proxied >= 0.03, (t_proxied, t_direct)
        assert proxy.connections_total == 1
        assert proxy.bytes_up > 0 and proxy.bytes_down > 0


@pytest.mark.timeout(60)
def test_proxy_cut_all_fails_next_operation(sshd: SSHServer) -> None:
    with LatencyProxy(sshd.host, sshd.port) as proxy:
        client = connect(sshd, proxy.port)
        try:
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(5)
            sftp.stat("/")
            assert proxy.cut_all() == 1
            t0 = time.monotonic()
            with pytest.raises((OSError, EOFError, paramiko.SSHException)):
                sftp.stat("/")
            assert time.monotonic() - t0 < 15
        finally:
            client.close()
        deadline = time.monotonic() + 5
        while proxy.connections_active and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxy.connections_active == 0
        assert proxy.cuts == 1


@pytest.mark.timeout(60)
def test_proxy_cut_after_bytes_during_upload(sshd: SSHServer, tmp_path: Path) -> None:
    with LatencyProxy(sshd.host, sshd.port) as proxy:
        client = connect(sshd, proxy.port)
        try:
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(5)
            before = proxy.bytes_up
            proxy.cut_after(100_000)
            with pytest.raises((OSError, EOFError, paramiko.SSHException)):
                with sftp.open(str(tmp_path / "big.bin"), "wb") as fh:
                    fh.write(os.urandom(1_000_000))
            # Exactly the budget got through, then the link died.
            assert proxy.bytes_up - before == 100_000
        finally:
            client.close()


@pytest.mark.timeout(60)
def test_proxy_cut_after_bytes_kills_handshake(sshd: SSHServer) -> None:
    with LatencyProxy(sshd.host, sshd.port, cut_after_bytes=50) as proxy:
        with pytest.raises((OSError, EOFError, paramiko.SSHException)):
            connect(sshd, proxy.port, timeout=10).close()
        assert proxy.bytes_up <= 50


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)

    def run() -> None:
        conn, _ = ls.accept()
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except ConnectionResetError:
                pass  # the proxy cut us: expected in fault tests

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return ls, t


@pytest.mark.timeout(60)
def test_proxy_delay_does_not_throttle_throughput() -> None:
    """200 chunks with 0.1 s delay: one-chunk-per-delay would take >= 20 s;
    a pipelined delay takes ~0.2 s. The bound (10 s) is deliberately loose."""
    ls, t = _echo_server()
    with ls, LatencyProxy("127.0.0.1", ls.getsockname()[1], delay_s=0.1) as proxy:
        c = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        payload = b""
        t0 = time.monotonic()
        for i in range(200):
            chunk = f"{i:06d}".encode() * 100
            payload += chunk
            c.sendall(chunk)
            time.sleep(0.001)  # keep chunks separate
        c.shutdown(socket.SHUT_WR)
        got = b""
        while data := c.recv(65536):
            got += data
        elapsed = time.monotonic() - t0
        c.close()
        assert got == payload  # order preserved, nothing lost
        assert 0.2 <= elapsed < 10, elapsed  # lower bound: 2 * delay
        t.join(5)
    assert proxy.bytes_up == proxy.bytes_down == len(payload)


@pytest.mark.timeout(60)
def test_proxy_stop_ends_threads_and_refuses_non_loopback() -> None:
    with pytest.raises(ValueError):
        LatencyProxy("192.0.2.1", 22)
    ls, _t = _echo_server()
    before = threading.active_count()
    proxy = LatencyProxy("127.0.0.1", ls.getsockname()[1], delay_s=0.05).start()
    c = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    c.sendall(b"x")
    assert c.recv(1) == b"x"
    t0 = time.monotonic()
    proxy.stop()
    proxy.stop()
    assert time.monotonic() - t0 < 6
    c.settimeout(5)
    with pytest.raises(ConnectionResetError):  # RST, not a graceful FIN
        c.recv(1)
    c.close()
    ls.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before
