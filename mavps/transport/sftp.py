"""A workspace on a remote directory, reached over SFTP (paramiko).

A `Batch` is sent as a pipeline: every request goes out, then every reply is
read, so a batch costs one round trip however many requests it holds. This
relies on OpenSSH's sftp-server carrying out requests in the order they came.
Requests are sent and replies collected through `pipeline.Pipeline`, the only
code using paramiko's private API. Errors are turned into builtin ones here, at
the boundary.
"""
from __future__ import annotations

import errno
import socket
import stat as statmod
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Iterator


def _import_paramiko() -> ModuleType:
    """paramiko, without `invoke`: paramiko.config imports it (~80 ms, more than a third of paramiko's import)
    only to run `Match exec` lines, so it is kept out here and loaded by `allow_match_exec` for a config that
    has one. Whoever imported invoke already keeps it."""
    blocked = "invoke" not in sys.modules
    if blocked:
        sys.modules["invoke"] = None  # type: ignore[assignment]  # `import invoke` raises ImportError
    try:
        import paramiko
    finally:
        if blocked and sys.modules.get("invoke", 0) is None:
            del sys.modules["invoke"]
    return paramiko


paramiko = _import_paramiko()

from paramiko import sftp as proto  # noqa: E402 - after the import above
from paramiko.sftp_attr import SFTPAttributes  # noqa: E402

from ..errors import TransportError  # noqa: E402
from .base import Batch, Behind, NotPredicted, Reply, Stat, Transport  # noqa: E402
from .handles import OPENS, HandleModel  # noqa: E402
from .pipeline import Pipeline, attributes  # noqa: E402


def allow_match_exec() -> None:
    """Give paramiko.config the `invoke` it runs `Match exec` with (when installed), as a plain import would."""
    import paramiko.config as pconfig

    if pconfig.invoke is None:
        try:
            import invoke
        except ImportError as exc:
            pconfig.invoke_import_error = exc
        else:
            pconfig.invoke, pconfig.invoke_import_error = invoke, None


FILE_MODE = 0o644
DIR_MODE = 0o755

# "r" and "e" open read-write: O_RDWR never blocks on a FIFO that another account planted where a state file
# should be (O_RDONLY or O_WRONLY would hang sftp-server until someone opened the other end). A file this
# account may not write is opened again with the plain flags ("r-", "e-") once an lstat shows it is a regular file.
_OPEN_FLAGS = {
    "r": proto.SFTP_FLAG_READ | proto.SFTP_FLAG_WRITE,
    "r-": proto.SFTP_FLAG_READ,
    "e-": proto.SFTP_FLAG_WRITE | proto.SFTP_FLAG_APPEND,
    "x": proto.SFTP_FLAG_WRITE | proto.SFTP_FLAG_CREATE | proto.SFTP_FLAG_EXCL,
    "a": proto.SFTP_FLAG_WRITE | proto.SFTP_FLAG_CREATE | proto.SFTP_FLAG_APPEND,
    "e": proto.SFTP_FLAG_READ | proto.SFTP_FLAG_WRITE | proto.SFTP_FLAG_APPEND,
}


@dataclass(frozen=True)
class Endpoint:
    """Where to connect, after ~/.ssh/config has been applied."""

    host: str
    port: int
    user: str | None
    path: str
    identity_files: tuple[str, ...] = ()
    proxy_command: str | None = None
    alias: str = ""


def _status_error(msg: Any, what: str) -> BaseException | None:
    code = msg.get_int()
    text = msg.get_text()
    if code == proto.SFTP_OK:
        return None
    if code == proto.SFTP_EOF:
        return EOFError(text)
    if code == proto.SFTP_NO_SUCH_FILE:
        return FileNotFoundError(errno.ENOENT, text or "No such file", what)
    if code == proto.SFTP_PERMISSION_DENIED:
        return PermissionError(errno.EACCES, text or "Permission denied", what)
    return OSError(f"{text or 'Failure'}: {what}")


def _to_stat(a: SFTPAttributes) -> Stat:
    mode = a.st_mode or 0
    return Stat(a.st_size or 0, float(a.st_mtime or 0), statmod.S_ISDIR(mode), statmod.S_IMODE(mode),
                statmod.S_ISLNK(mode), statmod.S_ISREG(mode), a.st_uid, a.st_gid)


def _attrs(**fields: int) -> SFTPAttributes:
    attrs = SFTPAttributes()
    for name, value in fields.items():
        setattr(attrs, name, value)
    return attrs


def _open_fields(path: Callable[[str], bytes], args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A file created by this open ("x", "a") gets FILE_MODE; other opens send no attributes."""
    attrs = _attrs(st_mode=FILE_MODE) if args[1] in ("x", "a") else _attrs()
    return path(args[0]), _OPEN_FLAGS[args[1]], attrs


_Fields = Callable[[Callable[[str], bytes], tuple[Any, ...]], tuple[Any, ...]]

#: Each Batch operation: its SFTP command, and its fields from (the path encoder, the operation's arguments).
_REQUESTS: dict[str, tuple[int, _Fields]] = {
    "mkdir": (proto.CMD_MKDIR, lambda path, a: (path(a[0]), _attrs(st_mode=DIR_MODE))),
    "rmdir": (proto.CMD_RMDIR, lambda path, a: (path(a[0]),)),
    "remove": (proto.CMD_REMOVE, lambda path, a: (path(a[0]),)),
    "rename": (proto.CMD_RENAME, lambda path, a: (path(a[0]), path(a[1]))),
    "replace": (proto.CMD_EXTENDED, lambda path, a: ("posix-rename@openssh.com", path(a[0]), path(a[1]))),
    "link": (proto.CMD_EXTENDED, lambda path, a: ("hardlink@openssh.com", path(a[0]), path(a[1]))),
    "stat": (proto.CMD_STAT, lambda path, a: (path(a[0]),)),
    "lstat": (proto.CMD_LSTAT, lambda path, a: (path(a[0]),)),
    "fstat": (proto.CMD_FSTAT, lambda path, a: (a[0],)),
    "truncate": (proto.CMD_SETSTAT, lambda path, a: (path(a[0]), _attrs(st_size=a[1]))),
    "open": (proto.CMD_OPEN, _open_fields),
    "read": (proto.CMD_READ, lambda path, a: (a[0], proto.int64(a[1]), a[2])),
    "write": (proto.CMD_WRITE, lambda path, a: (a[0], proto.int64(a[1]), bytes(a[2]))),
    "close": (proto.CMD_CLOSE, lambda path, a: (a[0],)),
    "opendir": (proto.CMD_OPENDIR, lambda path, a: (path(a[0]),)),
    "readdir": (proto.CMD_READDIR, lambda path, a: (a[0],)),
}


def _deliver(op: str, args: tuple[Any, ...], reply: Reply, t: int, msg: Any) -> None:
    """Set a Reply from the server's answer: a value, or the builtin error its status means."""
    what = args[0] if isinstance(args[0], str) else op
    if t == proto.CMD_STATUS:
        err = _status_error(msg, what)
        if isinstance(err, EOFError) and op == "readdir":  # the end of a directory: no more entries
            reply.set([])
        elif isinstance(err, EOFError):  # the end of a file: no more bytes to read
            reply.set(b"" if op == "read" else None, None if op == "read" else OSError(f"EOF: {what}"))
        else:
            reply.set(None, err)
    elif t in (proto.CMD_HANDLE, proto.CMD_DATA):
        reply.set(msg.get_binary())
    elif t == proto.CMD_ATTRS:
        reply.set(_to_stat(attributes(msg)))
    elif t == proto.CMD_NAME:  # readdir: each entry's name, long name and attributes (sftp-server lstats them)
        entries = []
        for _ in range(msg.get_int()):
            name, _long = msg.get_string().decode("utf-8", "surrogateescape"), msg.get_string()
            entries.append((name, _to_stat(attributes(msg))))
        reply.set(entries)
    else:
        reply.set(None, OSError(f"unexpected SFTP reply {t} to {op}"))


def _no_delay(client: paramiko.SSHClient | None) -> None:
    """Send each request at once (TCP_NODELAY).

    A batch is several SSH packets written one after another; with Nagle's
    algorithm on, every packet after the first waits for the ACK of the first:
    one extra round trip per batch on a WAN (measured through the latency
    proxy at 20 ms RTT: a claim took 197 ms with Nagle, 93 ms without), and a
    40 ms delayed-ACK stall per multi-packet batch even on loopback.
    """
    transport = client.get_transport() if client is not None else None
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket):  # not a ProxyCommand pipe
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class SFTPTransport(Transport):
    def __init__(self, client: paramiko.SSHClient | None, sftp: paramiko.SFTPClient, endpoint: Endpoint) -> None:
        super().__init__()
        self.client = client
        self.sftp = sftp
        self.endpoint = endpoint
        self.root = endpoint.path.rstrip("/") or "/"
        user = f"{endpoint.user}@" if endpoint.user else ""
        self.location = f"sftp://{user}{endpoint.alias or endpoint.host}:{endpoint.port}{self.root}"
        self._broken: str | None = None
        self.pipeline = Pipeline(sftp)
        self.handles = HandleModel()  # the server's handle table, for reads pipelined behind their open
        _no_delay(client)

    def _path(self, rel: str) -> bytes:
        full = self.root if rel in ("", ".") else f"{self.root.rstrip('/')}/{rel}"
        return full.encode("utf-8")

    def _request(self, op: str, args: tuple[Any, ...]) -> int:
        try:
            command, fields = _REQUESTS[op]
        except KeyError:
            raise ValueError(op) from None
        return self.pipeline.send(command, *fields(self._path, args))

    def _execute(self, batch: Batch) -> None:
        if self._broken:
            raise TransportError(f"connection to {self.location} is closed ({self._broken}): reconnect")
        ops = batch.ops
        opens = {id(reply): i for i, (op, _a, reply) in enumerate(ops) if op == "open"}
        wanted = {opens.get(id(args[0].opened), -1) for _op, args, _r in ops if args and isinstance(args[0], Behind)}
        guesses = self.handles.predict(ops, wanted)
        sent: list[tuple[str, tuple[Any, ...], Reply]] = []
        try:
            with self._connection_errors():
                nums = []
                for op, args, reply in ops:
                    if args and isinstance(args[0], Behind):
                        guess = guesses.get(opens.get(id(args[0].opened), -1))
                        if guess is None:  # no safe guess: not sent at all
                            reply.set(error=NotPredicted(f"{op} behind an open: no handle predicted"))
                            continue
                        args = (guess, *args[1:])
                    nums.append(self._request(op, args))
                    sent.append((op, args, reply))
                answers = self.pipeline.collect(nums)
        except BaseException:  # requests may still be on their way (an interrupt): the table is unknown for good
            self.handles.switch_off()
            raise
        for (op, args, reply), (t, msg) in zip(sent, answers):
            _deliver(op, args, reply, t, msg)
        self._confirm(ops, opens, guesses)
        self.handles.learn(ops)
        denied = [(args, reply) for op, args, reply in ops
                  if op == "open" and args[1] in ("r", "e") and isinstance(reply.error, PermissionError)]
        if denied:
            self._reopen(denied)

    def _confirm(self, ops: list[tuple[str, tuple[Any, ...], Reply]], opens: dict[int, int],
                 guesses: dict[int, bytes]) -> None:
        """Keep the answer of a request behind an open only if that open returned the very handle it was sent
        with (handles.py says why that is enough); score each guess."""
        failed = next((i for i, (op, _a, reply) in enumerate(ops) if op in OPENS and not reply.ok), len(ops))
        for i, guess in guesses.items():
            if ops[i][2].ok and (i < failed or ops[i][2].value == guess):  # after a failed open: one off, no blame
                self.handles.score(ops[i][2].value == guess)
        for op, args, reply in ops:
            if args and isinstance(args[0], Behind) and not isinstance(reply.error, NotPredicted):
                opened, guess = args[0].opened, guesses.get(opens.get(id(args[0].opened), -1))
                if not (opened.ok and opened.value == guess):  # its answer (value or error) was another handle's
                    reply.set(error=NotPredicted(f"{op} behind an open that returned another handle"))

    @property
    def predicted(self) -> int:
        """Opens whose handle was predicted right: the requests behind them counted."""
        return self.handles.predicted

    @property
    def missed(self) -> int:
        """Opens whose handle was predicted wrong: the requests behind them were discarded."""
        return self.handles.missed

    @contextmanager
    def _connection_errors(self) -> Iterator[None]:
        """A timeout or a dropped connection: the transport is closed and the caller told what to check."""
        try:
            yield
        except (socket.timeout, TimeoutError) as exc:
            self._fail("no reply in time")
            raise TransportError(
                f"{self.location} did not answer in time: the connection was closed; "
                "whether the last operation took effect is unknown (check with `mavps status`)"
            ) from exc
        except (EOFError, OSError, paramiko.SSHException) as exc:
            self._fail("connection lost")
            raise TransportError(
                f"connection to {self.location} lost ({exc}): retry; check with `mavps status`"
            ) from exc

    def _reopen(self, denied: list[tuple[tuple[Any, ...], Reply]]) -> None:
        """Files this account may only read (or only append to): open them with the plain flags, but only once
        an lstat shows a regular file (so a FIFO still cannot block the server). Two more round trips, rarely."""
        look = Batch()
        kinds = [(args, reply, look.lstat(args[0])) for args, reply in denied]
        self.round_trips += 1
        self._execute(look)
        again = Batch()
        for args, reply, kind in kinds:
            if kind.ok and kind.value.is_file:
                again.ops.append(("open", (args[0], args[1] + "-"), reply))
        if again.ops:
            self.round_trips += 1
            self._execute(again)

    def _fail(self, why: str) -> None:
        self._broken = why
        self.close()

    def listdir(self, path: str) -> list[str]:
        self.round_trips += 3  # opendir, readdir until EOF, close
        self.requests += 3
        try:
            return sorted(self.sftp.listdir(self._path(path).decode("utf-8")))  # its opendir and close: net nothing
        except IOError as exc:
            self.handles.forget()  # paramiko may have left its directory handle open
            if getattr(exc, "errno", None) == errno.ENOENT:
                raise FileNotFoundError(errno.ENOENT, "No such file", path) from None
            raise

    def close(self) -> None:
        for thing in (self.sftp, self.client):
            try:
                if thing is not None:
                    thing.close()
            except Exception:  # closing a dead connection must not raise
                pass
