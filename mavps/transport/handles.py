"""A model of an SFTP server's handle table: which handle the next OPEN of a batch will get.

Why: a read pipelined right behind its open, on the handle the open is about to return, saves a round trip
(a transaction takes 3 instead of 4, transaction.py). OpenSSH's sftp-server (and internal-sftp, the same code)
keeps its handles in a table with a LIFO free list: `handle_new` takes the slot freed last (`first_unused`) and
grows the table by one slot when none is free, `handle_unused` pushes a freed slot, and the handle string is the
slot's index as 4 big-endian bytes. A failed open takes no slot; a close frees its slot. Checked against the test
sshd (tests/test_handle_prediction.py prints the handles of open/close sequences).

The model is a guess and is treated as one: the transport counts a request behind an open only when the open's
reply is exactly the predicted handle, and the model learns from every HANDLE reply and every CLOSE of a batch,
in request order; a handle it did not expect resynchronises it. Handles that are not 4-byte integers, or
`MISSES` wrong guesses in a row, switch prediction off for the session.

Soundness (why a confirmed prediction always read the file its open opened, on any server whose new handles are
free slots, in order or not): a slot is predicted only if the model believes it free and no other request of the
batch names it (so no CLOSE of it is in the batch: it cannot be freed and handed out twice within the batch).
Suppose the open O returned the predicted H and a read behind O, sent with H, returned bytes of another file X.
Then H named X when the read ran. If X was open when the batch began, H could only become free for O through a
close of H in the batch: there is none. If X was opened within the batch, H was handed out twice in the batch,
again needing a close of H in between: there is none. So H named nothing or O's file while the batch ran; a read
on a free slot fails and is discarded with the rest. Reads go behind an open, never a close or a write, so even a
wrong guess changes nothing. (A planted FIFO does not stall the server: sftp-server seeks before it reads, and
seeking a FIFO fails at once.)
"""
from __future__ import annotations

from typing import Any, Sequence

from ..defaults import PREDICT_MISSES
from .base import Behind

#: The requests whose HANDLE reply is a new slot of the table.
OPENS = ("open", "opendir")
#: The requests that name a handle in their first argument.
ON_HANDLE = ("fstat", "read", "write", "close", "readdir")


def slot(handle: Any) -> int | None:
    """The table slot a handle names, None when it is not a 4-byte handle."""
    if isinstance(handle, (bytes, bytearray)) and len(handle) == 4:
        return int.from_bytes(handle, "big")
    return None


def as_handle(index: int) -> bytes:
    return index.to_bytes(4, "big")


class HandleModel:
    """The server's handle table as seen from one SFTP session: its size, its free slots, the slots held."""

    def __init__(self) -> None:
        self.on = True
        self.size = 0  #: slots in the table (the high-water mark)
        self.free: list[int] = []  #: free slots; the last one is handed out next
        self.held: set[int] = set()  #: slots open as far as the model knows (the rest of the table: unknown)
        self.predicted = 0  #: guesses an open's reply confirmed
        self.missed = 0  #: guesses an open's reply contradicted
        self._streak = 0

    # ----- before sending -------------------------------------------------------------------------------------
    def predict(self, ops: Sequence[tuple[str, tuple[Any, ...], Any]], wanted: set[int]) -> dict[int, bytes]:
        """The handle each open of `wanted` (indexes into `ops`) will get, where a guess is safe.

        Every open and close of the batch is played through a copy of the table, as if each one worked; a slot
        named by any request of the batch, or not free when the batch starts, is never guessed."""
        if not self.on or not wanted:
            return {}
        named = {s for op, args, _r in ops if op in ON_HANDLE for s in [slot(args[0])] if s is not None}
        free, size, out = list(self.free), self.size, {}
        for i, (op, args, _r) in enumerate(ops):
            if op in OPENS:
                if free:
                    got = free.pop()
                else:
                    got, size = size, size + 1
                if i in wanted and got not in named and got not in self.held:
                    out[i] = as_handle(got)
            elif op == "close":
                s = slot(args[0])
                if s is not None:
                    free.append(s)
        return out

    # ----- after the replies ----------------------------------------------------------------------------------
    def learn(self, ops: Sequence[tuple[str, tuple[Any, ...], Any]]) -> None:
        """Follow the server through a batch's replies, in request order."""
        for op, args, reply in ops:
            if not self.on:
                return
            if op in OPENS and reply.ok:
                s = slot(reply.value)
                if s is None:
                    self.switch_off()
                    return
                self._taken(s)
            elif op == "close" and not isinstance(args[0], Behind):
                self._closed(slot(args[0]), reply.ok)

    def _taken(self, s: int) -> None:
        """A new handle: the next free slot, or the model was out of step (then it resynchronises)."""
        if self.free and self.free[-1] == s:
            self.free.pop()
        elif s in self.free:  # the slots freed after it were taken by someone the model did not see
            del self.free[self.free.index(s):]
        elif s >= self.size:  # the table grew: every slot it thought free was taken
            self.free, self.size = [], s + 1
        self.held.add(s)

    def _closed(self, s: int | None, ok: bool) -> None:
        if s is None:
            return
        self.held.discard(s)
        if not ok:  # sftp-server frees the slot of a valid handle even when close(2) fails; unknown: never guessed
            return
        if s in self.free:
            self.free.remove(s)
        self.free.append(s)
        self.size = max(self.size, s + 1)

    def score(self, hit: bool) -> None:
        """Count one guess checked against its open's reply; too many wrong in a row switch prediction off."""
        if hit:
            self.predicted += 1
            self._streak = 0
            return
        self.missed += 1
        self._streak += 1
        if self._streak >= PREDICT_MISSES:
            self.switch_off()

    def forget(self) -> None:
        """Handles were opened or closed where the model could not see (a failed listdir): no slot is known free
        any more; the next handles seen resynchronise it."""
        self.free = []

    def switch_off(self) -> None:
        self.on = False
        self.free, self.held = [], set()
