"""Every default and limit, written once.

`config.Config` takes its defaults from here, the code reads its limits from
here, and a test checks that README's configuration table says the same.
Seconds unless said otherwise.
"""
from __future__ import annotations

# ----- settings (config keys) ----------------------------------------------------------
#: A lock older than this (by the server's clock) may be broken.
LOCK_TTL = 10.0
#: Give up waiting for the lock after this.
LOCK_TIMEOUT = 30.0
#: A claimed task goes back to the queue after this without a heartbeat.
LEASE_TTL = 1800.0
#: Attempts before a task is dead-lettered (failed for good); a count.
MAX_ATTEMPTS = 3
#: The Stop hook lets an idle worker stop after this.
IDLE_TIMEOUT = 600.0
#: How long the Stop hook waits inside for work to appear.
HOOK_WAIT = 240.0
#: The Stop hook pulls a task it hands to a worker off the VPS into its project directory (`auto_pull`).
AUTO_PULL = True
#: Bounded network waits: opening the connection, then each reply.
CONNECT_TIMEOUT = 10.0
REPLY_TIMEOUT = 30.0
#: A worker with no heartbeat this long is shown offline.
WORKER_TIMEOUT = 900.0
#: How SFTP is reached: paramiko in process, or the `ssh` command sharing a ControlMaster.
SSH = "paramiko"
#: The PostToolUse hook looks at the agent's inbox at most once per this many seconds (0: on every tool call).
MESSAGE_CHECK = 15.0
SSH_CHOICES = ("paramiko", "openssh")
#: The hooks' SFTP when `ssh` is not set (not a setting): openssh where an `ssh` client is on PATH, whose shared
#: master makes every later hook call cheaper, else paramiko, also within the same call when ssh cannot be used.
SSH_HOOK_DEFAULT = "openssh-else-paramiko"
#: What the workers' PreToolUse hook does with an edit outside the held task's touches.
PATH_GUARD = "deny"
PATH_GUARD_CHOICES = ("deny", "warn", "off")

#: The range each numeric setting must lie in (inclusive).
RANGES: dict[str, tuple[float, float]] = {
    "lock_ttl": (0.5, 3600), "lock_timeout": (0, 86400), "lease_ttl": (1, 7 * 86400),
    "idle_timeout": (0, 86400), "hook_wait": (0, 3000), "connect_timeout": (0.1, 600),
    "reply_timeout": (0.5, 3600), "worker_timeout": (1, 7 * 86400), "max_attempts": (1, 100),
    "message_check": (0, 86400),
}

# ----- the queue -----------------------------------------------------------------------
#: How long `mavps reserve` holds its globs when no --ttl is given, and the longest it may.
RESERVATION_TTL = 3600.0
MAX_RESERVATION_TTL = 30 * 86400.0
#: Finished tasks kept in task-queue.json; older ones move to the archive.
KEEP_FINISHED = 200
#: Archive in batches, so the archive's extra round trip is rare.
ARCHIVE_BATCH = 100
#: Pending tasks kept in task-queue.json (the active window); the others wait in task-backlog.jsonl, so a claim
#: costs the same with 100 or 100 000 pending (knowledge/04): a full window is ~1.6x the bytes of 100 pending.
WINDOW = 160
#: A task's priority lies within plus or minus this.
MAX_PRIORITY = 10**6

# ----- sizes (bytes) -------------------------------------------------------------------
#: A task's one-line description.
MAX_DESCRIPTION = 4096
#: Any other text handed in (instructions, a log message).
MAX_TEXT = 1024 * 1024
#: A task's result or error text.
MAX_RESULT = 64 * 1024
#: One log record: larger appends could interleave with other writers.
MAX_LOG_LINE = 32 * 1024
#: One message's text (its inbox line, JSON-escaped, must stay within MAX_LOG_LINE).
MAX_MESSAGE = 16 * 1024
#: Messages handed to a model at once (the rest come with the next delivery).
MAX_DELIVER = 20
#: Largest file `put` writes, and `read_file` returns (`cat` streams any size).
MAX_FILE = 64 * 1024 * 1024

# ----- the HTML board (`mavps board --html`) ---------------------------------------------
#: Seconds between rewrites with --watch (the page reloads itself as often).
BOARD_INTERVAL = 5.0
#: The newest log records its timeline is drawn from.
BOARD_LOG_RECORDS = 2000
#: The newest log records listed as text.
BOARD_RECENT = 30

# ----- reads pipelined behind their open (transport/handles.py, transaction.py) ---------
#: Wrong handle guesses in a row after which an SFTP session stops predicting handles; a count.
PREDICT_MISSES = 16
#: What a transaction reads behind an open: the file's last size seen times 1.25 plus 16 KiB; 64 KiB for a
#: file never seen; at most this much in one batch (a lost lock race still sends the reads).
READ_GUESS_FIRST = 64 * 1024
READ_GUESS_EXTRA = 16 * 1024
READ_GUESS_BATCH = 1024 * 1024
