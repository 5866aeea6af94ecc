"""Run the real ``claude -p`` CLI offline, against ``fake_model.FakeModel``.

Why: mavps's hooks only matter inside a real Claude Code session; these
helpers give each test a throw-away HOME and project so the CLI runs with no
network, no prompts, and nothing leaking in from the developer's own session.

Install (what CI runs): ``npm install -g @anthropic-ai/claude-code``.
Checked with Claude Code 2.1.197 on Linux as root (npm 11 warns that the
package's postinstall script was not run; the binary works anyway).

What was found out, with 2.1.197:

- Speed: one ``claude -p`` run with 1-2 Bash calls takes about 0.6-0.9 s
  wall-clock against the stand-in; 120 s is a generous timeout.
- Requests: a ``HEAD /`` probe first (answer 200), then one
  ``POST /v1/messages?beta=true`` (``"stream": true``) per model turn. No
  count_tokens, title or summary calls were seen in ``-p`` mode, with or
  without ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` (other traffic goes to
  anthropic.com directly and fails silently offline). The main request offers
  ~24 tools (``Bash`` among them), asks for model ``claude-opus-4-8``, and
  carries ``role: "system"`` entries inside ``messages``.
- Counting: main requests = Bash calls + one per ending turn (e.g. prompt
  with one RUN line -> 2; a Stop hook that blocks once with one RUN line
  after an idle prompt -> 3).
- Permissions: ``-p`` needs no ``--allowedTools`` with this HOME.
  ``allowedTools`` in ``~/.claude.json``'s project entry is NOT enough:
  commands that write files (``touch x``, ``echo > x``) are refused
  with a misleading "may only write to files in the allowed working
  directories" tool_result even inside the project. What works: a user
  settings file ``~/.claude/settings.json`` with
  ``{"permissions": {"allow": ["Bash"]}}`` (honoured even without trust;
  ``make_claude_home`` writes it), or ``--allowedTools Bash`` on the command
  line, or the same ``permissions`` in the project's ``.claude/settings.json``
  (honoured only with ``hasTrustDialogAccepted``). Read-only commands
  (``echo hi``) run with no permission at all.
- Hooks: project ``.claude/settings.json`` hooks run in ``-p`` mode even
  without trust. A hook runs with the project dir as cwd, gets
  ``CLAUDE_PROJECT_DIR``, inherits the CLI's environment (so variables passed
  in ``env`` here reach it) plus the settings' ``env`` block, and also sees
  ``CLAUDECODE=1``, ``CLAUDE_CODE_SESSION_ID``, ``CLAUDE_CODE_ENTRYPOINT=sdk-cli``.
  The second Stop call has ``stop_hook_active: true``.
- A Stop block's reason comes back as a separate user message
  ``"Stop hook feedback:\\n<reason>"`` (a text block with cache_control the
  first time, a plain string on later requests); consecutive user messages
  (tool_result, then the feedback) are not merged.
- Claude Code writes per-project scratch to ``$TMPDIR/claude-<uid>/`` (so we
  point ``TMPDIR`` into the test's temp dir) and sessions/transcripts under
  ``$HOME/.claude/``; it rewrites ``~/.claude.json``.
- Each Bash tool command runs under ``/bin/bash -c`` in a NEW session, not
  in the CLI's process group: killing the group leaves it running, so
  ``run_claude`` also kills every descendant found in /proc on timeout.
- Inherited ``CLAUDE*``/``ANTHROPIC*``/``MAVPS_*`` variables are dropped:
  tests are often run from inside a Claude Code session.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

__all__ = [
    "CLAUDE_BIN_ENV",
    "DEFAULT_TIMEOUT",
    "NPM_INSTALL",
    "REQUIRE_ENV",
    "claude_available",
    "claude_bin",
    "claude_version",
    "make_claude_home",
    "require_claude",
    "run_claude",
]

NPM_INSTALL = "npm install -g @anthropic-ai/claude-code"
REQUIRE_ENV = "MAVPS_REQUIRE_CLAUDE"
CLAUDE_BIN_ENV = "MAVPS_CLAUDE_BIN"
DEFAULT_TIMEOUT = 120.0
_DROPPED_PREFIXES = ("CLAUDE", "ANTHROPIC", "MAVPS_")


def claude_bin() -> str | None:
    """Path of the ``claude`` executable (``$MAVPS_CLAUDE_BIN`` wins), or None."""
    override = os.environ.get(CLAUDE_BIN_ENV)
    if override:
        return override if os.access(override, os.X_OK) else None
    return shutil.which("claude")


@functools.lru_cache(maxsize=1)
def claude_version() -> str | None:
    """``claude --version`` output, or None when it is missing or broken."""
    binary = claude_bin()
    if binary is None:
        return None
    try:
        done = subprocess.run(
            [binary, "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def claude_available() -> bool:
    """True when a working ``claude`` CLI is on PATH."""
    return claude_version() is not None


def require_claude() -> str:
    """Skip (loudly) without ``claude``; fail instead when ``MAVPS_REQUIRE_CLAUDE=1``.

    Why: on a laptop a missing CLI should not break the suite, but in CI a
    silently skipped end-to-end suite would prove nothing.
    """
    binary = claude_bin()
    if binary is not None and claude_available():
        return binary
    message = (
        "Claude Code CLI `claude` not found or not working: end-to-end test NOT run. "
        f"Install it with `{NPM_INSTALL}`"
    )
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_ENV}=1 requires it)", pytrace=False)
    pytest.skip(message)


def make_claude_home(
    tmp: Path | str,
    project_dir: Path | str,
    base_url: str,
    extra_env: Mapping[str, str] | None = None,
    allow: Sequence[str] = ("Bash",),
) -> dict[str, str]:
    """Create a throw-away HOME under ``tmp`` and return the env for ``run_claude``.

    The HOME holds ``.claude.json`` (onboarding done, ``project_dir`` trusted)
    and ``.claude/settings.json`` allowing the ``allow`` tools, so ``-p`` runs
    without prompts. ``base_url`` is the stand-in model's URL.
    """
    tmp = Path(tmp)
    home = tmp / "home"
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    scratch = tmp / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    project_entry = {"hasTrustDialogAccepted": True, "allowedTools": list(allow)}
    keys = {str(Path(project_dir).absolute()), str(Path(project_dir).resolve())}
    state = {
        "hasCompletedOnboarding": True,
        "projects": {key: dict(project_entry) for key in sorted(keys)},
    }
    (home / ".claude.json").write_text(json.dumps(state, indent=2))
    settings = {"permissions": {"allow": list(allow)}}
    (home / ".claude" / "settings.json").write_text(json.dumps(settings, indent=2))

    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES)}
    env.update(
        HOME=str(home),
        TMPDIR=str(scratch),
        ANTHROPIC_BASE_URL=base_url,
        ANTHROPIC_API_KEY="test",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        MAVPS_SSH_CONTROL_DIR=_control_dir(),  # the hooks' ssh masters (their default transport), ended at exit
    )
    env.update(extra_env or {})
    return env


_CONTROL_DIRS: list[str] = []


def _control_dir() -> str:
    """A short private directory for the ssh master sockets of the hooks a test's agents run; the masters are
    ended when the test session exits (they would otherwise live on for ControlPersist)."""
    if not _CONTROL_DIRS:
        atexit.register(_end_masters)
    path = tempfile.mkdtemp(prefix="mve2e")
    _CONTROL_DIRS.append(path)
    return path


def _end_masters() -> None:
    for path in _CONTROL_DIRS:
        for sock in Path(path).glob("mavps-*"):
            subprocess.run(["ssh", "-F", os.devnull, "-o", f"ControlPath={sock}", "-O", "exit", "x"],
                           capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        shutil.rmtree(path, ignore_errors=True)


def run_claude(
    prompt: str,
    project_dir: Path | str,
    env: Mapping[str, str],
    timeout: float = DEFAULT_TIMEOUT,
    extra_args: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``claude -p PROMPT --output-format text`` in ``project_dir``.

    The CLI runs in its own process group; on timeout that group and every
    descendant (hooks, Bash tool commands, which Claude Code puts in their own
    sessions) are killed and ``subprocess.TimeoutExpired`` is raised with
    whatever output was captured.
    """
    binary = claude_bin()
    if binary is None:
        raise FileNotFoundError(f"claude not found; install with `{NPM_INSTALL}`")
    args = [binary, "-p", prompt, "--output-format", "text", *extra_args]
    proc = subprocess.Popen(
        args,
        cwd=str(project_dir),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        stdout, stderr = _drain(proc)
        raise subprocess.TimeoutExpired(args, timeout, output=stdout, stderr=stderr) from None
    except BaseException:
        _kill_group(proc.pid)
        _drain(proc)
        raise
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def _drain(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Collect what is left after a kill, bounded: an escaped grandchild may hold the pipes."""
    try:
        stdout, stderr = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait(timeout=10)
        return "", ""
    return stdout or "", stderr or ""


def _kill_group(pid: int) -> None:
    """Kill the CLI's process group and every descendant.

    Why both: Claude Code starts each Bash tool command in a new session, so
    a group kill alone leaves those (and their children) running.
    """
    victims = _descendants(pid)
    for target in (pid, *victims):
        try:
            if os.getpgid(target) == target:
                os.killpg(target, signal.SIGKILL)
            os.kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _descendants(pid: int) -> list[int]:
    """Pids below ``pid`` in the process tree, from /proc (empty where there is none)."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the ")" closing the command name: state, ppid, ...
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
