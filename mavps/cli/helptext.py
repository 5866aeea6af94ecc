"""`mavps --help` as click prints it on a terminal 80 columns wide or more, for mavps.cli.main to print without
importing click. Generated: `python -m mavps.cli.helptext` rewrites this file from the click group; a test
(tests/test_startup.py) fails as soon as the two differ."""
from __future__ import annotations

HELP = """\
Usage: mavps [OPTIONS] COMMAND [ARGS]...

  mavps: one coordinator and many worker agents sharing a workspace of files.

  The workspace is a directory, local or on a VPS over SFTP; every change is
  an atomic, locked edit of its JSON files. No server process.

Options:
  -w, --workspace URL        Workspace: a local path,
                             sftp://[user@]host[:port]/abs/path or
                             host:/abs/path [MAVPS_WORKSPACE].
  -i, --identity-file PATH   SSH private key [MAVPS_IDENTITY_FILE].
  --known-hosts PATH         known_hosts file (default ~/.ssh/known_hosts)
                             [MAVPS_KNOWN_HOSTS].
  --ssh-config PATH          ssh config file (default ~/.ssh/config)
                             [MAVPS_SSH_CONFIG].
  --ssh [paramiko|openssh]   SSH implementation: paramiko, or openssh sharing
                             one connection [MAVPS_SSH].
  --connect-timeout SECONDS  Seconds to wait for the server
                             [MAVPS_CONNECT_TIMEOUT].
  --json                     Print one JSON document on stdout, nothing else.
  --debug                    Show tracebacks.
  --worker ID                Act for this worker [MAVPS_WORKER_ID].
  --agent NAME               Your name in the log (default: the worker id or
                             'coordinator') [MAVPS_AGENT].
  --version                  Show the version and exit.
  -h, --help                 Show this message and exit.

Commands:
  answer         Answer the question a task's holder is waiting on...
  ask            Ask the coordinator a question about a task you hold...
  board          The board as one HTML page: task graph, timeline,...
  cat            Print a file of the workspace (a task's context file,...
  claim          Claim the best claimable task, and print it with its...
  cleanup        Remove what crashed or interrupted commands left: temp...
  complete       Mark a task you hold as completed.
  demo           Run the whole flow for real: a coordinator, N worker...
  doctor         Check config, connection, host key, layout, files, lock...
  edit           Edit a state file in $EDITOR under the workspace lock;...
  fail           Report a task you hold as failed (it is retried while...
  get            Copy workspace files and directories (recursively) here;...
  hook           Claude Code hook entry points (stop, session-start, pre-tool-
                 use, post-tool-use).
  inbox          Show your unread messages, oldest first, and mark them...
  init           Create the workspace layout (idempotent: existing files...
  install-hooks  Install the mavps hooks into a Claude Code project.
  log            Append a message to the shared log, or read it.
  ls             List a workspace directory (a link is shown as a link,...
  plan           Load a whole plan of tasks (see...
  pull           Copy the task's files (those matching its touches, and...
  push           Upload the files changed or added here since the pull,...
  put            Write a file into the workspace atomically (parents are...
  ready          What is claimable now, then why the other pending tasks...
  reap           Return tasks whose lease expired to the queue now (any...
  release        Give a task you hold back to the queue, untried.
  reservations   What holds paths now: reservations and running tasks'...
  reserve        Hold paths (globs relative to the workspace root): tasks...
  send           Send a message to another agent; it reaches a Claude...
  status         The board: counts by status, tasks in progress, workers,...
  task           Add, edit, release, list, show, cancel and requeue tasks.
  trust          Fetch a server's host key, show its fingerprint, and add...
  unlock         Show who holds the workspace lock; --force breaks it.
  unreserve      End your reservations of these globs (or --all of yours).
  wait           Wait until tasks end (completed, failed for good,...
  worker         Register, heartbeat, list and remove workers.

  Example: mavps --workspace sftp://myvps/ws status
"""


def render() -> str:
    """What click prints for `mavps --help` 80 columns wide (every width from 80 up gives the same text), as a
    fresh process prints it."""
    import os
    import subprocess
    import sys

    code = "from mavps.cli.app import main\nmain(['--help'])"
    tree = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this very mavps
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": os.pathsep.join(filter(None, [tree, os.environ.get(
        "PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                          cwd=tree).stdout


def _write() -> None:
    text = render()
    assert '"""' not in text and "\\" not in text, "write it with repr() instead"
    with open(__file__, encoding="utf-8") as fh:
        source = fh.read()
    start = source.index("\nHELP = ") + 1
    end = source.index("\n\n\ndef render")
    with open(__file__, "w", encoding="utf-8") as fh:
        fh.write(source[:start] + f'HELP = """\\\n{text}"""' + source[end:])


if __name__ == "__main__":
    _write()
