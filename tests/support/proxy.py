"""Loopback TCP proxy adding latency and injecting faults.

Why: mavps must behave on a slow or flaky link to a VPS. This proxy sits
between a client and the local test sshd, delays traffic without throttling
it, and can sever connections abruptly (RST) on demand or after N bytes.
Only 127.0.0.1 is ever bound or connected to.
"""
from __future__ import annotations

import collections
import ipaddress
import socket
import struct
import threading
import time
from types import TracebackType

__all__ = ["LatencyProxy", "ProxyConnection"]

_CHUNK = 65536
_IO_TIMEOUT = 0.2  # how often blocked I/O re-checks the cut flag
_EOF = object()  # sentinel: peer half-closed, forward a FIN
_CUT = object()  # sentinel: byte budget exhausted, cut after preceding data


def _loopback(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"LatencyProxy only talks to loopback, got {host!r}")
    return host


class _DelayQueue:
    """FIFO of (release_time, item). Each chunk is released at
    arrival + delay, so latency is added without throughput dropping to one
    chunk per delay; order is preserved because arrivals are monotonic."""

    def __init__(self) -> None:
        self._items: collections.deque[tuple[float, object]] = collections.deque()
        self._cv = threading.Condition()
        self._aborted = False

    def put(self, release_at: float, item: object) -> None:
        with self._cv:
            self._items.append((release_at, item))
            self._cv.notify()

    def abort(self) -> None:
        with self._cv:
            self._aborted = True
            self._cv.notify_all()

    def get(self) -> object | None:
        """Next item once its release time has come; None if aborted."""
        with self._cv:
            while True:
                if self._aborted:
                    return None
                if self._items:
                    wait = self._items[0][0] - time.monotonic()
                    if wait <= 0:
                        return self._items.popleft()[1]
                    self._cv.wait(wait)
                else:
                    self._cv.wait()


class ProxyConnection:
    """One proxied client connection: client socket <-> upstream socket,
    with a reader and a writer thread per direction."""

    def __init__(
        self,
        proxy: LatencyProxy,
        client: socket.socket,
        upstream: socket.socket,
        cut_after_bytes: int | None,
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.bytes_up = 0  # client -> server, delivered
        self.bytes_down = 0  # server -> client, delivered
        self._lock = threading.Lock()
        self._cut = threading.Event()
        self._budget: int | None = cut_after_bytes  # remaining c->s bytes
        self._up_q = _DelayQueue()
        self._down_q = _DelayQueue()
        self._live_threads = 4
        self.threads = [
            threading.Thread(target=self._reader, args=(client, self._up_q, True), daemon=True),
            threading.Thread(target=self._writer, args=(upstream, self._up_q, True), daemon=True),
            threading.Thread(target=self._reader, args=(upstream, self._down_q, False), daemon=True),
            threading.Thread(target=self._writer, args=(client, self._down_q, False), daemon=True),
        ]
        for s in (client, upstream):
            s.settimeout(_IO_TIMEOUT)
            try:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def set_cut_after(self, n_bytes: int | None) -> None:
        """Cut this connection after *n_bytes* more client->server bytes
        (0: at the next byte); None disarms."""
        with self._lock:
            self._budget = n_bytes

    def cut(self) -> None:
        """Abort both sides abruptly: SO_LINGER 0 makes close() send RST.
        Threads notice within ~_IO_TIMEOUT; the last one closes sockets."""
        with self._lock:
            if self._cut.is_set():
                return
            self._cut.set()
        self.proxy._count_cut()
        for s in (self.client, self.upstream):
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            try:
                # Wakes a thread blocked in recv() on Linux; sends nothing.
                s.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        self._up_q.abort()
        self._down_q.abort()

    # ------------------------------------------------------------ threads
    def _reader(self, src: socket.socket, q: _DelayQueue, upward: bool) -> None:
        try:
            while not self._cut.is_set():
                try:
                    data = src.recv(_CHUNK)
                except socket.timeout:
                    continue
                except OSError:
                    self.cut()  # a reset on one side propagates
                    break
                if self._cut.is_set():
                    break
                if not data:
                    q.put(time.monotonic() + self.proxy.delay_s, _EOF)
                    break
                release = time.monotonic() + self.proxy.delay_s
                cut_now = False
                if upward:
                    with self._lock:
                        if self._budget is not None:
                            if len(data) >= self._budget:
                                data = data[: self._budget]
                                cut_now = True
                            self._budget -= len(data)
                if data:
                    q.put(release, data)
                if cut_now:
                    q.put(release, _CUT)
                    break
        finally:
            self._thread_done()

    def _writer(self, dst: socket.socket, q: _DelayQueue, upward: bool) -> None:
        try:
            while True:
                item = q.get()
                if item is None or self._cut.is_set():
                    break
                if item is _CUT:
                    self.cut()
                    break
                if item is _EOF:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    break
                assert isinstance(item, bytes)
                if not self._send(dst, item):
                    self.cut()
                    break
                with self._lock:
                    if upward:
                        self.bytes_up += len(item)
                    else:
                        self.bytes_down += len(item)
                self.proxy._count(upward, len(item))
        finally:
            self._thread_done()

    def _send(self, dst: socket.socket, data: bytes) -> bool:
        view = memoryview(data)
        while view:
            if self._cut.is_set():
                return False
            try:
                n = dst.send(view)
            except socket.timeout:
                continue
            except OSError:
                return False
            view = view[n:]
        return True

    def _thread_done(self) -> None:
        with self._lock:
            self._live_threads -= 1
            last = self._live_threads == 0
        if last:
            for s in (self.client, self.upstream):
                try:
                    s.close()
                except OSError:
                    pass
            self.proxy._forget(self)


class LatencyProxy:
    """TCP proxy 127.0.0.1:<port> -> target, adding ``delay_s`` each way
    (so RTT grows by ``2 * delay_s``) without limiting throughput.

    Fault injection:

    * :meth:`cut_all` resets every live connection now (RST to both ends).
    * ``cut_after_bytes=N``: every new connection is reset once N bytes have
      been delivered client->server (the first N bytes still get through).
    * :meth:`cut_after` re-arms at runtime: live connections are reset after
      N *more* client->server bytes, new ones after N bytes from their start
      (``None`` disarms), e.g. let an SFTP session establish, then
      ``cut_after(0)`` to kill it at the client's next request.

    Counters: ``connections_total``, ``connections_active``, ``bytes_up``
    (client->server), ``bytes_down`` (server->client), ``cuts``.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        target_host: str,
        target_port: int,
        delay_s: float = 0.0,
        *,
        cut_after_bytes: int | None = None,
    ) -> None:
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        self.target_host = _loopback(target_host)
        self.target_port = int(target_port)
        self.delay_s = float(delay_s)  # may be changed at runtime
        self.cut_after_bytes = cut_after_bytes
        self.port = 0
        self.connections_total = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.cuts = 0
        self._lock = threading.Lock()
        self._conns: set[ProxyConnection] = set()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def connections_active(self) -> int:
        with self._lock:
            return len(self._conns)

    def connections(self) -> list[ProxyConnection]:
        with self._lock:
            return list(self._conns)

    def start(self) -> LatencyProxy:
        if self._listener is not None:
            return self
        self._stopping.clear()
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.host, 0))
        ls.listen(128)
        ls.settimeout(_IO_TIMEOUT)
        self.port = int(ls.getsockname()[1])
        self._listener = ls
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"LatencyProxy:{self.port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, reset all connections, join threads (bounded)."""
        self._stopping.set()
        t, self._accept_thread = self._accept_thread, None
        if t is not None:
            t.join(timeout)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        conns = self.connections()
        for c in conns:
            c.cut()
        deadline = time.monotonic() + timeout
        for c in conns:
            for th in c.threads:
                th.join(max(0.0, deadline - time.monotonic()))

    def cut_all(self) -> int:
        """Reset every current connection; returns how many were cut."""
        conns = [c for c in self.connections() if not c.is_cut]
        for c in conns:
            c.cut()
        return len(conns)

    def cut_after(self, n_bytes: int | None) -> None:
        """Arm (or with None disarm) a cut after n more client->server bytes
        on every live connection and after n bytes on future ones."""
        self.cut_after_bytes = n_bytes
        for c in self.connections():
            c.set_cut_after(n_bytes)

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ internals
    def _accept_loop(self) -> None:
        ls = self._listener
        assert ls is not None
        while not self._stopping.is_set():
            try:
                client, _addr = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            try:
                upstream = socket.create_connection(
                    (self.target_host, self.target_port), timeout=5
                )
            except OSError:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            conn = ProxyConnection(self, client, upstream, self.cut_after_bytes)
            with self._lock:
                self._conns.add(conn)
                self.connections_total += 1
            conn.start()

    def _count(self, upward: bool, n: int) -> None:
        with self._lock:
            if upward:
                self.bytes_up += n
            else:
                self.bytes_down += n

    def _count_cut(self) -> None:
        with self._lock:
            self.cuts += 1

    def _forget(self, conn: ProxyConnection) -> None:
        with self._lock:
            self._conns.discard(conn)
