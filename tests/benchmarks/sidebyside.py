#!/usr/bin/env python3
"""Old and new code side by side, in one run, on one sshd per tree (issue 16's figures).

    python tests/benchmarks/bench.py --old DIR [--quick] [--out knowledge/performance.md]

DIR is a checkout of the code to compare with (`git archive 638d97f | tar -x -C DIR`). Each measurement runs
in a child process whose `mavps` is imported from one tree (this file's `--child` mode), so both trees meet
the same server, latency proxy and machine load within minutes of each other:

- the CLI: round-trip waits of every command (counted on the connections it opened, after the handshakes),
  and its wall time in process at 20 ms RTT;
- queue size: one claim with 100, 10 000 and 100 000 pending tasks: waits, bytes on the wire (both ways,
  counted by the latency proxy), client CPU, wall, and whether it worked with default settings;
- transports: a fresh `mavps status` and Stop hook process over paramiko and over OpenSSH (master up) at
  0, 20 and 50 ms RTT.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
HERE = Path(__file__).resolve().parent


# ----- the child: one tree's measurements ------------------------------------------------------
class Server:
    """A real sshd, and latency proxies in front of it (one per RTT), with a known_hosts file for all."""

    def __init__(self, tmp: Path) -> None:
        from support.sshd import SSHServer

        self.tmp = tmp
        self.sshd = SSHServer(tmp / "sshd").start()
        self.known = tmp / "known_hosts"
        self.line = " ".join(self.sshd.host_pub.split()[:2])
        self.known.write_text(f"[127.0.0.1]:{self.sshd.port} {self.line}\n")
        self.proxies: dict[float, Any] = {}

    def port(self, rtt: float) -> int:
        from support.proxy import LatencyProxy

        if rtt not in self.proxies:
            self.proxies[rtt] = LatencyProxy(self.sshd.host, self.sshd.port, rtt / 2000.0).start()
            with open(self.known, "a") as fh:
                fh.write(f"[127.0.0.1]:{self.proxies[rtt].port} {self.line}\n")
        return self.proxies[rtt].port

    def url(self, path: Path, rtt: float) -> str:
        return f"sftp://{self.sshd.user}@127.0.0.1:{self.port(rtt)}{path}"

    def env(self) -> dict[str, str]:
        return {"MAVPS_IDENTITY_FILE": self.sshd.client_key, "MAVPS_KNOWN_HOSTS": str(self.known),
                "MAVPS_SSH_CONFIG": os.devnull, "MAVPS_CONFIG": os.devnull}

    def settings(self) -> dict[str, Any]:
        return {"identity_file": self.sshd.client_key, "known_hosts": str(self.known), "ssh_config": os.devnull}

    def close(self) -> None:
        for p in self.proxies.values():
            p.stop()
        self.sshd.stop()


def _set_env(values: dict[str, str]) -> None:
    for key in [k for k in os.environ if k.startswith("MAVPS_")]:
        del os.environ[key]
    os.environ.update(values)


def child_cli(srv: Server, tmp: Path, quick: bool) -> dict[str, Any]:
    """Each CLI command in process (click's runner): waits per connection opened, and wall at 20 ms RTT."""
    from click.testing import CliRunner

    import mavps.workspace
    from bench import write_state
    from mavps.cli import cli
    from mavps.hookcli import hook

    opened: list[Any] = []
    real = mavps.workspace.open_transport

    def counting(*a: Any, **kw: Any) -> Any:
        opened.append(real(*a, **kw))
        return opened[-1]

    mavps.workspace.open_transport = counting
    out: dict[str, Any] = {}
    reps = 3 if quick else 7
    for rtt in (0, 20):
        path = tmp / f"cli-{rtt}"
        write_state(path, finished=250, pending=0)
        _set_env({**srv.env(), "MAVPS_WORKSPACE": srv.url(path, rtt), "MAVPS_HOOK_WAIT": "0",
                  "MAVPS_HOOK_STATE": str(tmp / f"hook-{rtt}.json")})
        samples: dict[str, list[tuple[int, float]]] = {}

        def run(name: str, args: list[str], group: Any = cli, stdin: str | None = None, env: Any = None) -> str:
            opened.clear()
            t0 = time.perf_counter()
            res = CliRunner().invoke(group, args, input=stdin, env=env)
            wall = time.perf_counter() - t0
            samples.setdefault(name, []).append((sum(t.round_trips for t in opened), wall))
            if res.exit_code != 0:
                raise RuntimeError(f"{name}: exit {res.exit_code}: {res.output[-300:]}")
            return res.output

        stop = json.dumps({"session_id": "s1", "stop_hook_active": False, "hook_event_name": "Stop"})
        for i in range(reps):
            run("add", ["--json", "task", "add", f"cli task {i}", "--instructions", "# do it\n"])
            task = json.loads(run("claim", ["--json", "claim", "--worker", "w1"]))
            run("heartbeat", ["--json", "worker", "heartbeat", "w1"])
            run("complete", ["--json", "complete", str(task["id"]), "--worker", "w1", "--result", "ok"])
            run("status", ["--json", "status"])
            run("ready", ["--json", "ready"])
            run("add", ["--json", "task", "add", f"hook task {i}", "--instructions", "# do it\n"])
            run("Stop hook (work ready)", ["stop"], hook, stop, {"MAVPS_WORKER_ID": f"h{i}"})
        out[str(rtt)] = {k: {"rt": max(r for r, _ in v), "wall": statistics.median(w for _, w in v)}
                         for k, v in samples.items()}
    mavps.workspace.open_transport = real
    return out


def child_queue(srv: Server, tmp: Path, quick: bool) -> dict[str, Any]:
    """One claim with N pending tasks, at 20 ms RTT, default settings."""
    from bench import write_state
    from mavps import Workspace

    proxy_rtt = 20
    out: dict[str, Any] = {}
    for n in ([100, 10_000] if quick else [100, 10_000, 100_000]):
        path = tmp / f"queue-{n}"
        write_state(path, finished=0, pending=n)
        size = (path / "task-queue.json").stat().st_size
        ws = Workspace.open(srv.url(path, proxy_rtt), agent="bench", **srv.settings())
        proxy = srv.proxies[proxy_rtt]
        rows = []
        error = None
        try:
            for _ in range(1 if n >= 100_000 else 3):
                up, down, rt = proxy.bytes_up, proxy.bytes_down, ws.transport.round_trips
                c0, t0 = time.process_time(), time.perf_counter()
                try:
                    task = ws.queue.claim("w1")
                    assert task is not None
                except Exception as exc:  # reported in the table
                    error = f"{type(exc).__name__}: {str(exc)[:120]}"
                    break
                rows.append({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                             "rt": ws.transport.round_trips - rt, "up": proxy.bytes_up - up,
                             "down": proxy.bytes_down - down})
        finally:
            ws.close()
        size = (path / "task-queue.json").stat().st_size  # as the code measured writes it
        med = {k: statistics.median(r[k] for r in rows) for k in ("wall", "cpu", "rt", "up", "down")} if rows else {}
        out[str(n)] = {**med, "file": size, "error": error}
    return out


def child_transports(srv: Server, tmp: Path, quick: bool) -> dict[str, Any]:
    """Fresh processes: `mavps --json status` and the Stop hook, paramiko vs openssh, at 0/20/50 ms RTT."""
    from bench import write_state

    tree = os.environ["MAVPS_BENCH_TREE"]
    control = tempfile.mkdtemp(prefix="mvb")
    out: dict[str, Any] = {}
    reps = 3 if quick else 5
    try:
        for rtt in (0, 20, 50):
            path = tmp / f"tr-{rtt}"
            write_state(path, finished=0, pending=100)
            for ssh in ("paramiko", "openssh"):
                env = {k: v for k, v in os.environ.items() if not k.startswith("MAVPS_")}
                env.update({**srv.env(), "PYTHONPATH": tree, "MAVPS_WORKSPACE": srv.url(path, rtt), "MAVPS_SSH": ssh,
                            "MAVPS_SSH_CONTROL_DIR": control, "MAVPS_HOOK_WAIT": "0",
                            "MAVPS_HOOK_STATE": str(tmp / f"hs-{rtt}-{ssh}.json"), "MAVPS_WORKER_ID": f"h-{ssh}"})
                status = [sys.executable, "-m", "mavps", "--json", "status"]
                hook = [sys.executable, "-m", "mavps.hookcli", "stop"]
                stop = json.dumps({"session_id": "s1", "stop_hook_active": False, "hook_event_name": "Stop"})
                _fresh(status, env, None)  # warm: bytecode, and the openssh master
                out[f"{rtt}/{ssh}/status"] = statistics.median(_fresh(status, env, None) for _ in range(reps))
                out[f"{rtt}/{ssh}/hook"] = statistics.median(_fresh(hook, env, stop) for _ in range(reps))
    finally:
        for sock in Path(control).glob("mavps-*"):
            if sock.is_socket():
                subprocess.run(["ssh", "-F", os.devnull, "-o", f"ControlPath={sock}", "-O", "exit", "x"],
                               capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        shutil.rmtree(control, ignore_errors=True)
    return out


def _fresh(cmd: list[str], env: dict[str, str], stdin: str | None) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True, cwd="/", timeout=120)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{cmd[2:]}: exit {res.returncode}: {res.stderr[-300:]}")
    return wall


CHILDREN: dict[str, Callable[[Server, Path, bool], dict[str, Any]]] = {
    "cli": child_cli, "queue": child_queue, "transports": child_transports}


def child_main(section: str, quick: bool) -> None:
    tree = os.environ["MAVPS_BENCH_TREE"]
    sys.path[:0] = [str(TESTS), str(HERE)]
    import bench  # noqa: F401 - its module-level path set-up first; then the tree measured comes first
    sys.path.insert(0, tree)
    for name in [m for m in sys.modules if m == "mavps" or m.startswith("mavps.")]:
        del sys.modules[name]
    tmp = Path(tempfile.mkdtemp(prefix="mavps-sbs-"))
    srv = Server(tmp)
    try:
        result = CHILDREN[section](srv, tmp, quick)
    finally:
        srv.close()
        shutil.rmtree(tmp, ignore_errors=True)
    import mavps

    result["_tree"] = os.path.dirname(os.path.dirname(mavps.__file__))
    print(json.dumps(result))


# ----- the parent: run both trees, write the tables ---------------------------------------------
def measure(section: str, tree: Path, quick: bool) -> dict[str, Any]:
    env = {**os.environ, "MAVPS_BENCH_TREE": str(tree)}
    env.pop("PYTHONPATH", None)
    res = subprocess.run([sys.executable, __file__, "--child", section] + (["--quick"] if quick else []), env=env,
                         capture_output=True, text=True, cwd="/", timeout=3600)
    if res.returncode != 0:
        raise RuntimeError(f"{section} on {tree} failed: {res.stderr[-2000:]}")
    data = json.loads(res.stdout.strip().splitlines()[-1])
    if Path(data["_tree"]).resolve() != tree.resolve():
        raise RuntimeError(f"{section}: measured {data['_tree']}, not {tree}")
    return data


def table(head: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def ms(x: float) -> str:
    return f"{x * 1000:.0f}"


def report_cli(old: dict[str, Any], new: dict[str, Any]) -> str:
    from bench import CLI_BUDGET

    budget = {**CLI_BUDGET, "status": CLI_BUDGET["status (board)"],
              "Stop hook (work ready)": CLI_BUDGET["Stop hook, whole (work ready, connected)"]}
    rows = []
    for name in new["0"]:
        o0, n0, o20, n20 = old["0"][name], new["0"][name], old["20"][name], new["20"][name]
        rows.append([name, o0["rt"], n0["rt"], budget.get(name, "-"), ms(o20["wall"]), ms(n20["wall"])])
    return table(["CLI command", "waits, old", "waits, new", "CI budget", "ms @ 20 ms RTT, old", "ms @ 20 ms RTT, new"],
                 rows)


def report_queue(old: dict[str, Any], new: dict[str, Any]) -> str:
    rows = []
    for n in new:
        if n.startswith("_"):
            continue
        row = [f"{int(n):,}"]
        for d in (old[n], new[n]):
            if d.get("error") and "rt" not in d:
                row += [f"{d['file'] / 2**20:.1f}", "-", "-", "-", f"fails: {d['error']}"]
            else:
                row += [f"{d['file'] / 2**20:.2f}", d["rt"], f"{(d['up'] + d['down']) / 2**20:.2f}", ms(d["cpu"]),
                        ms(d["wall"]) + (f" ({d['error']})" if d.get("error") else "")]
        rows.append(row)
    head = ["pending"] + [f"{k}, {w}" for w in ("old", "new")
                          for k in ("file MiB", "waits", "wire MiB", "client CPU ms", "wall ms")]
    return table(head, rows)


def report_transports(old: dict[str, Any], new: dict[str, Any]) -> str:
    rows = []
    for rtt in (0, 20, 50):
        for what in ("status", "hook"):
            row = [f"{rtt}", "`mavps status`" if what == "status" else "Stop hook (work ready)"]
            for d in (old, new):
                row += [ms(d[f"{rtt}/paramiko/{what}"]), ms(d[f"{rtt}/openssh/{what}"])]
            rows.append(row)
    return table(["RTT ms", "fresh process", "paramiko, old", "openssh, old", "paramiko, new", "openssh, new"], rows)


def run(old: Path, quick: bool) -> str:
    started = time.time()
    out = []
    for section, title, render in (
            ("cli", "CLI commands: round-trip waits and wall time", report_cli),
            ("queue", "Queue size: one claim at 20 ms RTT, default settings", report_queue),
            ("transports", "Transports: fresh processes, paramiko vs OpenSSH (master up)", report_transports)):
        print(f"side by side: {section} ...", file=sys.stderr)
        o, n = measure(section, old, quick), measure(section, ROOT, quick)
        out.append(f"### {title}\n\n{render(o, n)}")
    load = os.getloadavg()[0]
    head = (f"Old = {old} (main at 638d97f), new = this tree. `python tests/benchmarks/bench.py --old {old}"
            f"{' --quick' if quick else ''}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
            f"{time.time() - started:.0f} s, load average {load:.1f} at the end (2 CPUs shared with other "
            "sessions: wall times are noisy, counts are not).")
    return head + "\n\n" + "\n\n".join(out) + "\n"


if __name__ == "__main__":
    if "--child" in sys.argv:
        child_main(sys.argv[sys.argv.index("--child") + 1], "--quick" in sys.argv)
    else:
        sys.path[:0] = [str(TESTS), str(HERE)]
        print(run(Path(sys.argv[1]), "--quick" in sys.argv))
