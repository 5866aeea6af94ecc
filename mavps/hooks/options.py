"""The hooks' time budget and knobs: named constants, options from the environment, capped config.

Claude Code kills a hook at the timeout `install-hooks` writes; every wait
below is capped so the hook answers well inside it, whatever the workspace's
config says.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

from ..config import Config

#: The Stop hook's timeout written by `install-hooks` (seconds); everything below fits inside it.
STOP_HOOK_TIMEOUT = 600
#: The SessionStart hook's timeout written by `install-hooks`.
SESSION_START_TIMEOUT = 60
#: The hook never waits for work longer than this, whatever hook_wait says.
MAX_HOOK_WAIT = STOP_HOOK_TIMEOUT - 120
#: Caps on the configured network waits, so that one slow step cannot eat the hook's time.
CAP_CONNECT = 10.0
CAP_REPLY = 15.0
CAP_LOCK = 20.0
#: Poll interval while waiting for work: starts small, grows by half each time.
POLL_START = 0.5
POLL_MAX = 5.0
#: Renew the heartbeat this often while waiting in the hook.
HEARTBEAT_EVERY = 60.0
#: Blocks in a row with no progress (no claim, no completion) before the guard lets a session stop.
MAX_NO_PROGRESS_BLOCKS = 12
#: Tries of one safe-to-repeat operation after dropped connections (the first try included).
RECONNECT_ATTEMPTS = 3
#: Pause before reconnecting (grows with each attempt).
RECONNECT_DELAY = 0.5


@dataclass
class HookOptions:
    """Knobs that are not workspace settings (tests shrink them, and inject the clock and the sleep)."""

    state_path: str | None = None  # default: session.state_file()
    max_blocks: int = MAX_NO_PROGRESS_BLOCKS
    poll_start: float = POLL_START
    poll_max: float = POLL_MAX
    heartbeat_every: float = HEARTBEAT_EVERY
    reconnect_attempts: int = RECONNECT_ATTEMPTS
    reconnect_delay: float = RECONNECT_DELAY
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    monotonic: Callable[[], float] = field(default=time.monotonic, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "HookOptions":
        """MAVPS_HOOK_STATE, MAVPS_HOOK_MAX_BLOCKS, MAVPS_HOOK_POLL_MAX (bad values are ignored)."""
        env = os.environ if env is None else env
        opts = cls(state_path=env.get("MAVPS_HOOK_STATE") or None)
        with contextlib.suppress(ValueError, TypeError):
            opts.max_blocks = max(1, int(env.get("MAVPS_HOOK_MAX_BLOCKS", "")))
        with contextlib.suppress(ValueError, TypeError):
            opts.poll_max = min(30.0, max(0.05, float(env.get("MAVPS_HOOK_POLL_MAX", ""))))
            opts.poll_start = min(opts.poll_start, opts.poll_max)
        return opts


def bounded(config: Config) -> Config:
    """The config with every network wait capped for use inside a hook."""
    return replace(config,
                   connect_timeout=min(config.connect_timeout, CAP_CONNECT),
                   reply_timeout=min(config.reply_timeout, CAP_REPLY),
                   lock_timeout=min(config.lock_timeout, CAP_LOCK),
                   hook_wait=min(config.hook_wait, MAX_HOOK_WAIT))


def hard_limit(config: Config, event: str = "Stop") -> float:
    """Seconds after which the hook gives up whatever it is doing."""
    c = bounded(config)
    if event != "Stop":
        return min(SESSION_START_TIMEOUT - 10, c.connect_timeout + c.lock_timeout + 10)
    steps = 2 * c.connect_timeout + 2 * (c.lock_timeout + 4 * c.reply_timeout)
    return min(STOP_HOOK_TIMEOUT - 30, c.hook_wait + steps)
