"""The hook's hard deadline: a SIGALRM backstop for a network call stuck past every timeout."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator


class HookDeadline(Exception):
    """The hook's hard deadline passed (raised from SIGALRM)."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise HookDeadline in the main thread after `seconds` (a backstop; no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise HookDeadline(f"the hook ran out of time after {seconds:.0f}s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
