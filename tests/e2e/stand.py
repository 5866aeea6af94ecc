"""A test stand: real ``claude -p`` sessions as mavps agents over the real sshd.

Why: issue 7 asks for Claude Code itself, configured only by what
``mavps install-hooks`` writes, to be a mavps worker (and coordinator). A
``Stand`` owns one SFTP workspace and gives each agent its own project
directory and throw-away HOME:

- the project's ``.claude/settings.json`` is written by ``mavps install-hooks``
  (the command, run as a user would), nothing else;
- the HOME (from ``make_claude_home``, with NO tool allowed there, so every
  permission the agent uses comes from the installer) also holds
  ``~/.config/mavps/config.yaml``: how to reach the test sshd (key,
  known_hosts) and the short timings a test wants (hook_wait, idle_timeout,
  lease_ttl). That is where a user keeps those, too.

Agents run in the background (``Agent.start``); the test drives the queue
from Python with ``Stand.open()`` and watches ``FakeModel`` for model calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from .claude_env import _drain, _kill_group, claude_bin, make_claude_home

WORKER_PROMPT = "You are a mavps worker. Stop when you have nothing to do."

#: Timings every agent of a stand gets unless a test says otherwise (seconds).
DEFAULT_TIMINGS: dict[str, float] = {
    "hook_wait": 5.0,
    "idle_timeout": 15.0,
    "lease_ttl": 60.0,
    "connect_timeout": 10.0,
    "lock_timeout": 20.0,
}


@dataclass
class Agent:
    """One Claude Code session of the stand (a worker or the coordinator)."""

    name: str
    role: str
    project: Path
    env: dict[str, str]
    install_output: str
    proc: subprocess.Popen[str] | None = None
    started: float = 0.0
    ended: float | None = None
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None
    killed: bool = False

    def start(self, prompt: str = WORKER_PROMPT) -> "Agent":
        """Start ``claude -p PROMPT`` in the project, in the background, in its own session."""
        binary = claude_bin()
        assert binary is not None, "claude not found"
        args = [binary, "-p", prompt, "--output-format", "text"]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            args,
            cwd=str(self.project),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        return self

    def run(self, prompt: str, timeout: float = 120.0) -> "Agent":
        """Start and wait for the end (raises on timeout, after killing the tree)."""
        self.start(prompt)
        self.wait(timeout)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for the CLI to exit by itself; on timeout kill its tree and fail loudly."""
        assert self.proc is not None
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name}: claude -p did not exit within {timeout:.0f}s; killed.\n"
                f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-4000:]}"
            ) from None
        self._ended(out, err)
        return self.proc.returncode

    def kill(self) -> None:
        """Kill the CLI and every descendant (hooks, Bash tool commands)."""
        if self.proc is None or self.ended is not None:
            return
        _kill_group(self.proc.pid)
        out, err = _drain(self.proc)
        self.killed = True
        self._ended(out, err)

    def _ended(self, out: str | None, err: str | None) -> None:
        assert self.proc is not None
        self.ended = time.monotonic()
        self.stdout, self.stderr = out or "", err or ""
        self.returncode = self.proc.returncode

    @property
    def wall(self) -> float:
        return (self.ended or time.monotonic()) - self.started


@dataclass
class Stand:
    """One SFTP workspace on the test sshd, and the agents working on it."""

    root: Path
    server: Any  # tests.support.sshd.SSHServer
    model_url: str
    timings: dict[str, float] = field(default_factory=dict)
    agents: list[Agent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ws_path = self.root / "workspace"
        self.url = self.server.url(str(self.ws_path))
        self.shared = self.root / "shared"  # where tasks' "work" leaves its trace
        self.shared.mkdir(parents=True, exist_ok=True)
        self.timings = {**DEFAULT_TIMINGS, **self.timings}
        with self.open() as ws:
            ws.init()

    # ---- the workspace, from the test's side --------------------------------
    def settings(self) -> dict[str, Any]:
        return {
            "identity_file": self.server.client_key,
            "known_hosts": self.server.known_hosts,
            "ssh_config": os.devnull,
        }

    def open(self, agent: str = "test") -> Any:
        from mavps import Workspace

        return Workspace.open(self.url, agent=agent, **self.settings(), **self.timings)

    def tasks(self) -> dict[int, Any]:
        with self.open() as ws:
            return {t.id: t for t in ws.queue.list(include_archived=True)}

    def workers(self) -> dict[str, Any]:
        with self.open() as ws:
            return {v.worker.id: v for v in ws.workers.list()}

    def log(self, n: int = 500) -> list[dict[str, Any]]:
        with self.open() as ws:
            return list(ws.log.tail(n))

    # ---- agents ---------------------------------------------------------------
    def agent(
        self,
        name: str,
        role: str = "worker",
        capabilities: Sequence[str] = (),
        allow_bash: bool = True,
        timings: Mapping[str, float] | None = None,
        allow_edits: bool = False,
        model_url: str | None = None,
    ) -> Agent:
        """A project dir + HOME for one Claude Code session, set up by ``mavps install-hooks``."""
        base = self.root / "agents" / name
        project = base / "project"
        project.mkdir(parents=True)
        # Nothing allowed in the HOME: permissions must come from the installer.
        env = make_claude_home(base, project, model_url or self.model_url, allow=())
        config = {**self.settings(), **self.timings, **(timings or {})}
        config_dir = base / "home" / ".config" / "mavps"
        config_dir.mkdir(parents=True)
        (config_dir / "config.yaml").write_text(yaml.safe_dump(config))
        args = ["mavps", "install-hooks", "--role", role, "--project", str(project), "--workspace", self.url]
        if role == "worker":
            args += ["--worker", name]
        for cap in capabilities:
            args += ["--capability", cap]
        if allow_bash:
            args.append("--allow-bash")
        if allow_edits:
            args.append("--allow-edits")
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (done.stdout, done.stderr)
        settings = json.loads((project / ".claude" / "settings.json").read_text())
        if role == "worker":  # a worker chains tasks through its Stop hook: the cap must be raised
            assert int(settings["env"]["CLAUDE_CODE_STOP_HOOK_BLOCK_CAP"]) >= 100, settings
        agent = Agent(name, role, project, env, done.stdout)
        self.agents.append(agent)
        return agent

    def worker(self, name: str, capabilities: Sequence[str] = (), **kw: Any) -> Agent:
        return self.agent(name, "worker", capabilities, **kw)

    def close(self) -> None:
        for agent in self.agents:
            agent.kill()


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
