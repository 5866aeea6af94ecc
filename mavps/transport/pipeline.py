"""The one place that uses paramiko's private SFTP API: requests sent without waiting for replies.

paramiko's public `SFTPClient` methods each send one request and wait for its
reply: one network round trip per operation. A batch of N operations sent that
way costs N round trips; sent here, it costs one. paramiko has no public API
for this, so `Pipeline` borrows three private names, and nothing else in mavps
may use them:

- `SFTPClient._async_request(fileobj, command, *args)` sends a request and
  returns its number; paramiko later calls `fileobj._async_response(type, msg,
  number)` with the reply;
- `SFTPClient._read_response()` reads one reply and hands it to that callback;
- `SFTPAttributes._from_msg(msg)` decodes an ATTRS reply.

Checked against paramiko 3.4.0, 3.4.1, 3.5.0, 3.5.1, 4.0.0 and 5.1.0: these
functions (and `_read_packet`/`_send_packet` under them) are the same in all of
them. setup.cfg pins that range; `require_private_api` runs at import so that
another paramiko is refused with a clear message rather than failing mid-batch.
"""
from __future__ import annotations

from typing import Any

import paramiko
from paramiko.message import Message
from paramiko.sftp_attr import SFTPAttributes

from ..errors import TransportError

#: The paramiko releases whose private SFTP API was read and tested (setup.cfg pins the same range).
CHECKED = "paramiko>=3.4,<5.2"

_PRIVATE = (
    (paramiko.SFTPClient, "_async_request"),
    (paramiko.SFTPClient, "_read_response"),
    (SFTPAttributes, "_from_msg"),
)


def require_private_api() -> None:
    """Refuse a paramiko without the private methods the pipeline calls (a release outside the pin)."""
    missing = [f"{cls.__name__}.{name}" for cls, name in _PRIVATE if not callable(getattr(cls, name, None))]
    if missing:
        version = getattr(paramiko, "__version__", "unknown")
        raise TransportError(
            f"paramiko {version} has no {', '.join(missing)}, which mavps needs to send SFTP requests in one "
            f"round trip (checked against {CHECKED}): install a supported release with pip install '{CHECKED}'"
        )


require_private_api()


class Pipeline:
    """Sends SFTP requests without waiting; collects their replies, matched by request number.

    Counts what it does so that tests and benchmarks can check the round trips
    really made on the wire: `round_trips` is the number of `collect` calls that
    had to read from the server.
    """

    def __init__(self, sftp: paramiko.SFTPClient) -> None:
        self.sftp = sftp
        self.sent = 0
        self.received = 0
        self.round_trips = 0
        self._pending: set[int] = set()
        self._replies: dict[int, tuple[int, Message]] = {}

    def send(self, command: int, *args: Any) -> int:
        """Send one request (an SFTP CMD_* and its fields); its number, for `collect`."""
        num: int = self.sftp._async_request(self, command, *args)
        self._pending.add(num)
        self.sent += 1
        return num

    def collect(self, nums: list[int]) -> list[tuple[int, Message]]:
        """The (reply type, message) of each request number, in the order asked; reads until all arrived."""
        unknown = [n for n in nums if n not in self._pending and n not in self._replies]
        if unknown:
            raise ValueError(f"no request {unknown[0]} was sent through this pipeline")
        if not self._replies.keys() >= set(nums):
            self.round_trips += 1
        while not self._replies.keys() >= set(nums):
            self.sftp._read_response()
        return [self._replies.pop(n) for n in nums]

    def _async_response(self, t: int, msg: Message, num: int) -> None:
        """paramiko's callback for each reply `_read_response` reads."""
        self._pending.discard(num)
        self._replies[num] = (t, msg)
        self.received += 1


def attributes(msg: Message) -> SFTPAttributes:
    """Decode the body of an ATTRS reply."""
    return SFTPAttributes._from_msg(msg)
