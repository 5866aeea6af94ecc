#!/usr/bin/env python3
"""mavps benchmark: round trips, wall time, contention, history, start-up.

    python tests/benchmarks/bench.py                  # full run (several minutes)
    python tests/benchmarks/bench.py --quick          # CI-sized (a minute or two)
    python tests/benchmarks/bench.py --out knowledge/performance.md

It starts a real OpenSSH sshd (tests/support/sshd.py) on loopback and puts
tests/support/proxy.py's LatencyProxy in front of it to simulate a WAN round
trip (the proxy delays each direction by RTT/2). "Round-trip waits" are
counted by the SFTP transport (`transport.round_trips`): that figure does not
depend on the machine; wall times do (and this machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
for p in (str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

#: Round-trip waits each operation may take (the CI check, tests/test_bench_quick.py).
# A lock-free log append costs 3 over SFTP: sftp-server follows a symlink on open, so the opened handle is
# checked (fstat against lstat) before anything is written to it (knowledge/04, "Never through a link").
BUDGET = {"claim": 3, "complete": 3, "add": 3, "heartbeat": 3, "log append": 3, "status (board)": 2,
          "ready": 2, "hook decision": 2, "Stop hook, whole (work ready, connected)": 4,
          "pull (100 files of 10 KB)": 6, "push (100 files of 10 KB)": 6}
# Messages (issue 13): a send is one append to the channel and the log (3, like a log append); an inbox read
# is an lstat batch, the cursor (2) and the channels from it (2), and a take commits the cursor (3); the
# PostToolUse hook, connected, when nothing is new: one lstat batch.
BUDGET.update({"send": 3, "inbox (nothing new)": 3, "inbox (one message)": 8,
               "PostToolUse hook (nothing new, connected)": 1})
#: The file exchange's figures: this many files of this size under src/, the task touching src/**.
EXCHANGE_FILES, EXCHANGE_SIZE = 100, 10 * 1024


def exchange_setup(ws: Any, root: Path, worker: str = "wx") -> int:
    """A task touching src/** with EXCHANGE_FILES files there, claimed by `worker`: its id (call on a fresh
    workspace, before any other task is added, so that the claim takes it)."""
    from mavps.models import QUEUE_FILE
    from mavps.state import dump_tasks, load_tasks

    for i in range(EXCHANGE_FILES):
        folder = root / "src"  # one level: each further level of directories costs two more waits (knowledge)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.py").write_bytes(bytes([97 + i % 26]) * EXCHANGE_SIZE)
    task = ws.queue.add("exchange bench", "# edit src\n")

    def change(txn: Any) -> None:
        tasks = load_tasks(txn.json(QUEUE_FILE, []))
        next(t for t in tasks if t.id == task.id).touches = ["src/**"]
        txn.write(QUEUE_FILE, dump_tasks(tasks))

    ws.store.transact([QUEUE_FILE], change)
    assert ws.queue.claim(worker).id == task.id
    return task.id


def exchange_ops(ws: Any, tid: int, local: Path, i: int, worker: str = "wx") -> dict[str, Callable[[], Any]]:
    """pull into `local`, then (after every file was edited there) push: the two timed operations."""
    from mavps.exchange import pull, push

    def edit_and_push() -> Any:
        return push(ws.store, tid, str(local), worker)

    def edit() -> None:
        for f in (local / "src").rglob("*.py"):
            f.write_bytes(f.read_bytes()[:-8] + f"{i:08d}".encode())

    return {"pull (100 files of 10 KB)": lambda: pull(ws.store, tid, str(local), worker),
            "edit": edit, "push (100 files of 10 KB)": edit_and_push}
#: The same for each CLI command, every connection it opens counted after the handshakes: the answer it prints
#: included (`claim` prints the instructions, `worker heartbeat` the worker's record).
CLI_BUDGET = {"claim": 3, "complete": 3, "add": 3, "heartbeat": 3, "status (board)": 2, "ready": 2,
              "Stop hook, whole (work ready, connected)": 4}


# ----- environment ----------------------------------------------------------
class Env:
    """A real sshd, latency proxies in front of it, and workspaces under one temp dir."""

    def __init__(self, tmp: Path) -> None:
        from support.sshd import SSHServer

        self.tmp = tmp
        self.server = SSHServer(tmp / "sshd").start()
        self.known_hosts = str(tmp / "known_hosts")
        self._host_line = " ".join(self.server.host_pub.split()[:2])
        self._trust(self.server.port)
        self.proxies: dict[float, Any] = {}

    def _trust(self, port: int) -> None:
        with open(self.known_hosts, "a") as fh:
            fh.write(f"[127.0.0.1]:{port} {self._host_line}\n")

    def port(self, rtt_ms: float) -> int:
        if not rtt_ms:
            return self.server.port
        if rtt_ms not in self.proxies:
            from support.proxy import LatencyProxy

            proxy = LatencyProxy(self.server.host, self.server.port, rtt_ms / 2000.0).start()
            self._trust(proxy.port)
            self.proxies[rtt_ms] = proxy
        return self.proxies[rtt_ms].port

    def url(self, path: Path, rtt_ms: float) -> str:
        return f"sftp://{self.server.user}@127.0.0.1:{self.port(rtt_ms)}{path}"

    def settings(self) -> dict[str, Any]:
        return {"identity_file": self.server.client_key, "known_hosts": self.known_hosts, "ssh_config": os.devnull}

    def open(self, path: Path, rtt_ms: float, agent: str = "bench", **kw: Any) -> Any:
        from mavps import Workspace

        return Workspace.open(self.url(path, rtt_ms), agent=agent, **{**self.settings(), **kw})

    def workspace(self, name: str) -> Path:
        path = self.tmp / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        self.server.stop()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def ms(x: float) -> str:
    return f"{x * 1000:.0f}" if x == x else "-"


def table(head: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


class _KeepOpen:
    """A workspace the Stop hook may "close" without closing it (the benchmark reuses it)."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)

    def close(self) -> None:
        pass


def hook_ops(tmp: Path) -> dict[str, Callable[[Any, int], Any]] | None:
    """The Stop hook's "is there work?" read, and its whole decision, if mavps/hook.py exists."""
    try:
        from mavps import hook
    except ImportError:
        return None

    def decision(ws: Any, i: int) -> Any:
        s = hook._Session(ws, "w1", None, hook.HookOptions())
        s.look()
        return s.ready()

    def whole(ws: Any, i: int) -> Any:
        cfg = ws.config.with_values({"worker_id": f"hook-{i}", "hook_wait": 0}, "bench")
        opts = hook.HookOptions(state_path=str(tmp / "hook-state.json"))
        return hook.stop_hook({"session_id": f"s{i}"}, cfg, opts, open_workspace=lambda **kw: _KeepOpen(ws))

    return {"hook decision": decision, "Stop hook, whole (work ready, connected)": whole}


def message_ops(ws: Any, i: int, timed: Callable[[str, Callable[[], Any]], Any]) -> None:
    """send, inbox (take) with nothing new and with one message, and the PostToolUse hook with nothing new."""
    from mavps.hooks import post_tool_use as ptu

    if i == 0:
        ws.workers.register("w-msg", ["backend"])
        ws.inbox.send("bench", "w-msg", "makes the channel")  # first sends create the channel files
        ws.inbox.take("w-msg", ["backend"])
    timed("send", lambda: ws.inbox.send("bench", "w-msg", f"the API moved to port {8000 + i}"))
    timed("inbox (one message)", lambda: ws.inbox.take("w-msg", ["backend"]))
    timed("inbox (nothing new)", lambda: ws.inbox.take("w-msg", ["backend"]))
    cfg = ws.config.with_values({"worker_id": "w-msg", "capabilities": "backend", "message_check": 0}, "bench")
    opts = ptu.HookOptions(state_path=str(Path(tempfile.gettempdir()) / f"mavps-bench-ptu-{os.getpid()}.json"))
    ptu.post_tool_use_hook({"session_id": "bench"}, cfg, opts, open_workspace=lambda **kw: _KeepOpen(ws))
    timed("PostToolUse hook (nothing new, connected)",
          lambda: ptu.post_tool_use_hook({"session_id": "bench"}, cfg, opts, open_workspace=lambda **kw: _KeepOpen(ws)))


def measure_post_tool_use(env: Env, rtt_ms: float, reps: int) -> dict[str, Any]:
    """The PostToolUse hook as Claude Code runs it, a fresh process per tool call: within message_check (no
    connection), and nothing new (connect + one lstat batch), with paramiko and with an OpenSSH ControlMaster."""
    path = env.workspace("ptu")
    with env.open(path, rtt_ms) as ws:
        ws.init()
        ws.workers.register("w-ptu")
        ws.inbox.send("bench", "w-ptu", "first")
    base = {**os.environ, "MAVPS_WORKSPACE": env.url(path, rtt_ms), "MAVPS_IDENTITY_FILE": env.server.client_key,
            "MAVPS_KNOWN_HOSTS": env.known_hosts, "MAVPS_SSH_CONFIG": os.devnull, "MAVPS_WORKER_ID": "w-ptu",
            "MAVPS_CONFIG": os.devnull, "PYTHONPATH": str(ROOT),
            "MAVPS_HOOK_STATE": str(env.tmp / f"ptu-state-{rtt_ms:g}.json")}
    stdin = json.dumps({"session_id": "bench", "hook_event_name": "PostToolUse", "tool_name": "Bash"})

    def runs(extra: dict[str, str], n: int, says: str = "") -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "mavps.hookcli", "post-tool-use"], input=stdin,
                                 capture_output=True, text=True, env={**base, **extra}, cwd=str(ROOT), timeout=60)
            out.append(time.perf_counter() - t0)
            assert res.returncode == 0 and says in res.stdout and (says or res.stdout == ""), (res.stdout, res.stderr)
        return out

    runs({"MAVPS_MESSAGE_CHECK": "0"}, 1, says="first")  # delivers it, remembers the sizes
    result = {"throttled": statistics.median(runs({"MAVPS_MESSAGE_CHECK": "3600"}, reps)),
              "nothing new (paramiko)": statistics.median(runs({"MAVPS_MESSAGE_CHECK": "0"}, reps))}
    if shutil.which("ssh"):
        cm = {"MAVPS_MESSAGE_CHECK": "0", "MAVPS_SSH": "openssh"}
        runs(cm, 1)  # starts the ControlMaster (kept 10 min)
        result["nothing new (openssh, ControlMaster up)"] = statistics.median(runs(cm, reps))
    return result


# ----- per operation --------------------------------------------------------
def measure_ops(env: Env, rtt_ms: float, reps: int) -> dict[str, dict[str, Any]]:
    from naive import RoundTripCounter, connect, naive_claim

    path = env.workspace(f"ops-{rtt_ms:g}")
    ws = env.open(path, rtt_ms, agent="bench")
    ws.init()
    q, tr = ws.queue, ws.transport
    exchange_task = exchange_setup(ws, path)
    for i in range(3 * reps + 2):  # enough pending tasks for the mavps, hook and naive claims
        q.add(f"setup task {i}", f"# task {i}\nDo thing {i}.\n")
    samples: dict[str, list[tuple[int, float]]] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        before = tr.round_trips
        t0 = time.perf_counter()
        result = fn()
        samples.setdefault(name, []).append((tr.round_trips - before, time.perf_counter() - t0))
        return result

    hooks = hook_ops(env.tmp)
    srv = env.server
    client, sftp = connect("127.0.0.1", env.port(rtt_ms), srv.user, srv.client_key, env.known_hosts)
    counter = RoundTripCounter(sftp)
    try:
        for i in range(reps):
            timed("add", lambda: q.add(f"bench task {i}", f"# bench {i}\n"))
            task = timed("claim", lambda: q.claim("w1"))
            timed("heartbeat", lambda: q.heartbeat("w1"))
            timed("complete", lambda: q.complete(task.id, "w1", result="done"))
            timed("log append", lambda: ws.log.append(f"progress note {i}"))
            timed("status (board)", ws.board)
            timed("ready", q.ready)
            for name, fn in (hooks or {}).items():
                timed(name, lambda: fn(ws, i))
            message_ops(ws, i, timed)
            ops = exchange_ops(ws, exchange_task, env.tmp / f"pulled-{rtt_ms:g}-{i}", i)
            timed("pull (100 files of 10 KB)", ops["pull (100 files of 10 KB)"])
            ops["edit"]()
            pushed = timed("push (100 files of 10 KB)", ops["push (100 files of 10 KB)"])
            assert len(pushed["written"]) == EXCHANGE_FILES
            before = counter.count
            t0 = time.perf_counter()
            got = naive_claim(sftp, str(path), "naive")
            assert got is not None
            samples.setdefault("naive claim", []).append((counter.count - before, time.perf_counter() - t0))
    finally:
        client.close()
        ws.close()
    out = {}
    for name, vals in samples.items():
        rts = [r for r, _ in vals]
        walls = [w for _, w in vals]
        out[name] = {"rt_max": max(rts), "rt_median": statistics.median(rts), "wall_median": statistics.median(walls),
                     "wall_p90": pct(walls, 90), "n": len(vals)}
    return out


def report_ops(results: dict[float, dict[str, dict[str, Any]]], hook_present: bool) -> str:
    rtts = sorted(results)
    names = ["claim", "complete", "add", "heartbeat", "log append", "status (board)", "ready"]
    names.append("hook decision")
    names += ["send", "inbox (nothing new)", "inbox (one message)", "PostToolUse hook (nothing new, connected)"]
    if hook_present:
        names.append("Stop hook, whole (work ready, connected)")
    head = ["operation", "round-trip waits (max)", "budget"] + [f"wall ms @ {r:g} ms RTT (median)" for r in rtts]
    rows = []
    for name in names + ["naive claim"]:
        first = results[rtts[0]].get(name)
        if first is None:
            rows.append([name + " (mavps/hook.py not there yet)", "-", BUDGET.get(name, "-")] + ["-" for _ in rtts])
            continue
        rt = max(results[r][name]["rt_max"] for r in rtts)
        rows.append([name, rt, BUDGET.get(name, "-")] + [ms(results[r][name]["wall_median"]) for r in rtts])
    ratio_rows = []
    for r in rtts:
        m, n = results[r]["claim"], results[r]["naive claim"]
        ratio_rows.append([f"{r:g}", m["rt_max"], n["rt_median"], f"{n['rt_median'] / m['rt_max']:.1f}x",
                           ms(m["wall_median"]), ms(n["wall_median"]),
                           f"{n['wall_median'] / m['wall_median']:.1f}x"])
    return (table(head, rows) + "\n\nNaive claim side by side (same run, same server, same queue format):\n\n"
            + table(["RTT ms", "mavps claim waits", "naive claim waits", "ratio", "mavps claim ms", "naive claim ms",
                     "wall ratio"], ratio_rows))


# ----- contention -------------------------------------------------------------
def worker_main(spec: dict[str, Any]) -> None:
    """One worker process: connect, wait for "go", drain the queue, print JSON lines.

    `spec["tree"]`, if given, is the checkout whose mavps it imports (old and new side by side)."""
    if spec.get("tree"):
        sys.path.insert(0, spec["tree"])
    from mavps import Workspace

    ws = Workspace.open(spec["url"], agent=spec["id"], **spec["settings"])
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    claims: list[list[Any]] = []
    error = None
    tr = ws.transport
    try:
        if spec.get("handover") and hasattr(ws.queue, "complete_and_claim"):
            handover_loop(ws, spec["id"], claims)
        else:
            while True:
                t0, rt0 = time.perf_counter(), tr.round_trips
                task = ws.queue.claim(spec["id"])
                claim_s, claim_rt = time.perf_counter() - t0, tr.round_trips - rt0
                wait = ws.store.last_lock_wait
                if task is None:
                    break
                rt0 = tr.round_trips
                ws.queue.complete(task.id, spec["id"], result="ok")
                claims.append([task.id, claim_s, wait, claim_rt, ws.store.last_lock_wait, tr.round_trips - rt0])
    except Exception as exc:  # reported in the table, not hidden
        error = f"{type(exc).__name__}: {exc}"[:300]
    ws.close()
    print(json.dumps({"claims": claims, "error": error}), flush=True)


def handover_loop(ws: Any, wid: str, claims: list[list[Any]]) -> None:
    """A worker going straight on: claim once, then complete-and-claim-the-next in one transaction each
    (`mavps complete --next`, the Stop hook's hand-over), until nothing is left. The transaction is recorded as a
    claim; the completion has no transaction of its own (None)."""
    tr = ws.transport
    t0, rt0 = time.perf_counter(), tr.round_trips
    task = ws.queue.claim(wid)
    while task is not None:
        claims.append([task.id, time.perf_counter() - t0, ws.store.last_lock_wait, tr.round_trips - rt0, None, None])
        t0, rt0 = time.perf_counter(), tr.round_trips
        task = ws.queue.complete_and_claim(task.id, wid, "ok")[1].task


def measure_contention(env: Env, workers: int, tasks: int, rtt_ms: float, tree: str | None = None,
                       handover: bool = False) -> dict[str, Any]:
    from mavps.models import ARCHIVE_FILE
    from mavps.queue import parse_archive

    path = env.workspace(f"contention-{workers}")
    ws = env.open(path, 0, agent="coordinator")
    ws.init()
    write_state(path, finished=0, pending=tasks, window=tree is None or Path(tree).resolve() == ROOT.resolve())
    procs = []
    for i in range(workers):
        spec = {"url": env.url(path, rtt_ms), "id": f"w{i:02d}", "settings": env.settings(), "tree": tree,
                "handover": handover}
        procs.append(subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, cwd=str(ROOT)))
    for p in procs:
        line = p.stdout.readline()
        if not line.startswith('{"ready"'):
            raise RuntimeError(f"worker failed to start: {line!r}")
    t0 = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    claims: list[list[Any]] = []
    errors: list[str] = []
    for p in procs:
        out, _ = p.communicate(timeout=1800)
        try:
            rec = json.loads(out.strip().splitlines()[-1])
        except (IndexError, ValueError):
            errors.append(f"worker exited with {p.returncode}")
            continue
        claims += rec["claims"]
        if rec["error"]:
            errors.append(rec["error"])
    elapsed = time.perf_counter() - t0
    ids = [c[0] for c in claims]
    final = ws.queue.list(include_archived=True)
    ws.close()
    archived = parse_archive((path / ARCHIVE_FILE).read_bytes() if (path / ARCHIVE_FILE).exists() else b"")
    lat = [c[1] for c in claims]
    waits = [c[2] for c in claims]
    txn_waits = waits + [c[4] for c in claims if c[4] is not None]  # claim's and complete's transactions
    txn_rts = [c[3] for c in claims] + [c[5] for c in claims if c[5] is not None]
    return {
        "txn_wait_p50": pct(txn_waits, 50), "txn_wait_p99": pct(txn_waits, 99), "txn_wait_max": max(txn_waits or [0]),
        "rt_mean": statistics.fmean(txn_rts) if txn_rts else float("nan"), "rt_max": max(txn_rts or [0]),
        "lock_timeouts": sum(e.startswith("LockTimeout") for e in errors),
        "workers": workers, "tasks": tasks, "claims": len(claims), "seconds": elapsed,
        "claims_per_s": len(claims) / elapsed, "p50": pct(lat, 50), "p99": pct(lat, 99),
        "wait_p50": pct(waits, 50), "wait_p99": pct(waits, 99), "wait_share": sum(waits) / max(sum(lat), 1e-9),
        "double_claims": len(ids) - len(set(ids)),
        "completed": sum(1 for t in final if t.status.value == "completed"),
        "archived": len(archived), "errors": errors,
    }


def report_contention(rows: list[dict[str, Any]], rtt_ms: float) -> str:
    head = ["worker processes", "tasks", "claims/s (claim+complete pairs)", "p50 claim ms", "p99 claim ms",
            "lock wait p50 ms", "lock wait p99 ms", "double claims", "completed", "worker errors", "wall s"]
    body = [[r["workers"], r["tasks"], f"{r['claims_per_s']:.1f}", ms(r["p50"]), ms(r["p99"]), ms(r["wait_p50"]),
             ms(r["wait_p99"]), r["double_claims"], r["completed"], len(r["errors"]), f"{r['seconds']:.1f}"]
            for r in rows]
    errs = sorted({e for r in rows for e in r["errors"]})
    notes = ("\n\nWorker errors: " + "; ".join(errs)) if errs else ""
    intro = (f"Workers connect through {rtt_ms:g} ms of added RTT; every worker loops claim -> complete until the "
             "queue is empty. Claim latency includes the lock wait; lock wait = `store.last_lock_wait`.\n\n")
    return intro + table(head, body) + notes


# ----- history ------------------------------------------------------------------
def _task(i: int, status: str, stamp: str) -> dict[str, Any]:
    from mavps.models import Task, TaskStatus, instruction_path

    t = Task(id=i, description=f"History task {i}: refactor module {i % 97} and add tests",
             instruction_file=instruction_path(i), status=TaskStatus(status), created_at=stamp, created_by="bench",
             updated_at=stamp)
    if status == "completed":
        t.claimed_by, t.claimed_at, t.completed_at, t.attempts = f"w{i % 16:02d}", stamp, stamp, 1
        t.result = f"Done: changed {i % 13} files, tests pass"
    return t.to_dict()


def write_state(path: Path, finished: int, pending: int, instructions: bool = False, window: bool = True) -> None:
    """A workspace as the library's archiving leaves it: finished tasks in the archive,
    the KEEP_FINISHED most recent in the queue, then `pending` live tasks (with their instruction files
    when `instructions`). Without `window`, every pending task in task-queue.json, as code before the active
    window keeps them (for an older tree measured by this process's caller)."""
    from mavps.models import ARCHIVE_FILE, META_FILE, QUEUE_FILE, WORKERS_FILE
    from mavps.queue import KEEP_FINISHED
    from mavps.store import LOG_FILE, dumps, log_line

    path.mkdir(parents=True, exist_ok=True)
    (path / "tasks").mkdir(exist_ok=True)
    stamp = "2025-01-01T00:00:00Z"
    in_queue = min(finished, KEEP_FINISHED)
    with open(path / ARCHIVE_FILE, "wb") as fh:
        fh.write(b"".join(log_line(_task(i, "completed", stamp)) for i in range(1, finished - in_queue + 1)))
    live = [_task(i, "completed", stamp) for i in range(finished - in_queue + 1, finished + 1)]
    live += [_task(i, "pending", stamp) for i in range(finished + 1, finished + pending + 1)]
    from mavps.state import dump_tasks, load_tasks

    meta = {"format": 1, "next_task_id": finished + pending + 1}
    tasks = load_tasks(live)
    try:  # code with the active window: the pending tasks beyond it in the backlog, as its commits leave them
        if not window:
            raise ImportError("the code measured has no window")
        from mavps.defaults import WINDOW
        from mavps.models import BACKLOG_FILE
        from mavps.window import lay_out

        tasks, backlog = lay_out(tasks, meta, WINDOW)
        (path / BACKLOG_FILE).write_bytes(backlog)
    except ImportError:
        pass
    (path / QUEUE_FILE).write_bytes(dumps(dump_tasks(tasks)))  # as the code measured writes it
    (path / WORKERS_FILE).write_bytes(dumps({}))
    (path / META_FILE).write_bytes(dumps(meta))
    (path / LOG_FILE).touch()
    if instructions:
        from mavps.models import instruction_path

        for i in range(finished + 1, finished + pending + 1):
            (path / instruction_path(i)).write_text(f"# Task {i}\nDo thing {i}.\n")


def measure_history(env: Env, finished: int, rtt_ms: float, reps: int) -> dict[str, Any]:
    path = env.workspace(f"history-{finished}-{rtt_ms:g}")
    write_state(path, finished, pending=reps + 20)
    ws = env.open(path, rtt_ms, agent="bench")
    lat, rts, sizes = [], [], []
    try:
        for _ in range(reps):
            before = ws.transport.round_trips
            t0 = time.perf_counter()
            task = ws.queue.claim("w1")
            lat.append(time.perf_counter() - t0)
            rts.append(ws.transport.round_trips - before)
            ws.queue.complete(task.id, "w1")
            sizes.append((path / "task-queue.json").stat().st_size)
    finally:
        ws.close()
    arch = path / "task-archive.jsonl"
    return {"finished": finished, "rtt": rtt_ms, "median": statistics.median(lat), "p90": pct(lat, 90),
            "rt": max(rts), "queue_kb": max(sizes) / 1024, "archive_mb": arch.stat().st_size / 2**20}


def verify_archiving(tmp: Path, total: int) -> dict[str, Any]:
    """Drain `total` tasks through the library itself (local transport: same code path
    above the transport) and check the queue stays bounded and nothing is lost."""
    from mavps import Workspace
    from mavps.models import ARCHIVE_FILE, QUEUE_FILE
    from mavps.queue import ARCHIVE_BATCH, KEEP_FINISHED

    path = tmp / "archiving"
    shutil.rmtree(path, ignore_errors=True)
    ws = Workspace.open(str(path), agent="bench")
    ws.init()
    for i in range(total):
        ws.queue.add(f"t{i}")
    largest = 0
    while True:
        t = ws.queue.claim("w1")
        if t is None:
            break
        ws.queue.complete(t.id, "w1")
        largest = max(largest, len(json.loads((path / QUEUE_FILE).read_bytes())))
    everything = ws.queue.list(include_archived=True)
    ids = [t.id for t in everything]
    archived = (path / ARCHIVE_FILE).read_bytes().count(b"\n")
    first = ws.queue.get(1)
    return {"total": total, "largest_queue": largest, "bound": KEEP_FINISHED + ARCHIVE_BATCH, "archived": archived,
            "listed_all": len(everything), "unique": len(set(ids)) == len(ids) == total,
            "first_from_archive": first.status.value}


def report_history(rows: list[dict[str, Any]]) -> str:
    base = {r["rtt"]: r["median"] for r in rows if r["finished"] == 0}
    head = ["finished tasks", "RTT ms", "claim waits", "claim median ms", "claim p90 ms", "vs 0 finished",
            "task-queue.json KiB", "archive MiB"]
    body = [[f"{r['finished']:,}", f"{r['rtt']:g}", r["rt"], f"{r['median'] * 1000:.1f}", f"{r['p90'] * 1000:.1f}",
             f"{r['median'] / base[r['rtt']]:.2f}x", f"{r['queue_kb']:.0f}", f"{r['archive_mb']:.1f}"] for r in rows]
    return table(head, body)


# ----- start-up -----------------------------------------------------------------
STARTUP = r"""
import json, sys, time
t0 = time.perf_counter()
import mavps
t1 = time.perf_counter()
from mavps import Workspace
ws = Workspace.open(sys.argv[1], agent="w-start", **json.loads(sys.argv[2]))
t2 = time.perf_counter()
task = ws.queue.claim("w-start")
t3 = time.perf_counter()
ws.close()
print(json.dumps({"import": t1 - t0, "connect": t2 - t1, "claim": t3 - t2, "rt": ws.transport.round_trips,
                  "paramiko_at_import": None}))
"""


def cli_available() -> bool:
    return (ROOT / "mavps" / "cli.py").exists()


def measure_startup(env: Env, rtt_ms: float, reps: int) -> dict[str, Any]:
    path = env.workspace("startup")
    write_state(path, finished=0, pending=reps * 2 + 5)
    url = env.url(path, rtt_ms)
    runs = []
    for i in range(reps):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", STARTUP, url, json.dumps(env.settings())], capture_output=True,
                             text=True, cwd=str(ROOT), check=True)
        total = time.perf_counter() - t0
        rec = json.loads(out.stdout)
        rec["total"] = total
        runs.append(rec)
    cli_runs = []
    if cli_available():
        env_vars = {**os.environ, "MAVPS_WORKSPACE": url, "MAVPS_IDENTITY_FILE": env.server.client_key,
                    "MAVPS_KNOWN_HOSTS": env.known_hosts, "MAVPS_SSH_CONFIG": os.devnull, "MAVPS_WORKER_ID": "w-cli"}
        for i in range(reps):
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "mavps.cli", "claim"], capture_output=True, text=True,
                                 cwd=str(ROOT), env=env_vars)
            cli_runs.append({"total": time.perf_counter() - t0, "rc": res.returncode, "err": res.stderr[-300:]})
    return {"runs": runs, "cli": cli_runs}


def measure_connect(env: Env, rtt_ms: float, reps: int, nodelay: bool = False) -> dict[str, float]:
    """Handshake, authentication and SFTP open, timed separately (paramiko)."""
    import socket

    import paramiko

    parts: dict[str, list[float]] = {"tcp": [], "ssh handshake (banner + key exchange)": [], "auth (publickey)": [],
                                     "sftp open (channel + subsystem + version)": []}
    key = paramiko.Ed25519Key.from_private_key_file(env.server.client_key)
    for _ in range(reps):
        t0 = time.perf_counter()
        sock = socket.create_connection(("127.0.0.1", env.port(rtt_ms)))
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t1 = time.perf_counter()
        t = paramiko.Transport(sock)
        t.start_client(timeout=10)
        t2 = time.perf_counter()
        t.auth_publickey(env.server.user, key)
        t3 = time.perf_counter()
        sftp = paramiko.SFTPClient.from_transport(t)
        t4 = time.perf_counter()
        sftp.close()
        t.close()
        for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[k].append(v)
    return {k: statistics.median(v) for k, v in parts.items()}


def measure_controlmaster(env: Env, rtt_ms: float, reps: int) -> dict[str, Any] | None:
    """What reusing one OpenSSH connection (ControlMaster) would cost per call:
    a new `ssh -S ... -s sftp` process over the existing master, up to the SFTP version reply."""
    import struct

    ssh = shutil.which("ssh")
    if not ssh:
        return None
    ctl = str(env.tmp / "cm.sock")
    base = [ssh, "-F", os.devnull, "-i", env.server.client_key, "-o", f"UserKnownHostsFile={env.known_hosts}",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-p", str(env.port(rtt_ms)), "-o", f"ControlPath={ctl}",
            "-l", env.server.user]
    t0 = time.perf_counter()
    master = subprocess.run(base + ["-o", "ControlMaster=yes", "-o", "ControlPersist=60", "-f", "-N", "127.0.0.1"],
                            capture_output=True, text=True, timeout=60)
    master_s = time.perf_counter() - t0
    if master.returncode != 0:
        return {"error": master.stderr.strip()[-300:]}
    init = struct.pack(">IBI", 5, 1, 3)  # SSH_FXP_INIT version 3
    per_call = []
    try:
        for _ in range(reps):
            t0 = time.perf_counter()
            p = subprocess.Popen(base + ["-o", "ControlMaster=no", "-s", "127.0.0.1", "sftp"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            p.stdin.write(init)
            p.stdin.flush()
            head = p.stdout.read(5)
            length, kind = struct.unpack(">IB", head)
            p.stdout.read(length - 1)
            per_call.append(time.perf_counter() - t0)
            assert kind == 2  # SSH_FXP_VERSION
            p.stdin.close()
            p.wait(timeout=10)
    finally:
        subprocess.run(base + ["-O", "exit", "127.0.0.1"], capture_output=True, timeout=30)
    return {"master": master_s, "per_call": statistics.median(per_call)}


def import_time() -> dict[str, Any]:
    res = subprocess.run([sys.executable, "-X", "importtime", "-c", "import mavps"], capture_output=True, text=True,
                         cwd=str(ROOT), check=True)
    mods, total = [], 0
    for line in res.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            mods.append(m.group(4))
            if m.group(4) == "mavps":
                total = int(m.group(2))
    heavy = sorted({m.split(".")[0] for m in mods} & {"paramiko", "rich", "cryptography", "yaml"})
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import mavps"], check=True, cwd=str(ROOT))
    wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, cwd=str(ROOT))
    bare = time.perf_counter() - t0
    out: dict[str, Any] = {"cumulative_us": total, "heavy": heavy, "modules": len(mods), "wall": wall, "bare": bare}
    if cli_available():
        res = subprocess.run([sys.executable, "-X", "importtime", "-m", "mavps.cli", "--help"], capture_output=True,
                             text=True, cwd=str(ROOT))
        names = {m.group(1).split(".")[0] for m in re.finditer(r"\|\s*(\S+)\s*$", res.stderr, re.M)}
        out["help_heavy"] = sorted(names & {"paramiko", "rich", "cryptography"})
        out["help_rc"] = res.returncode
    return out


# ----- main -----------------------------------------------------------------------
def run(args: argparse.Namespace) -> str:
    quick = args.quick
    rtts = [0, 20] if quick else [0, 20, 100]
    reps = 3 if quick else 10
    sections: list[str] = []
    started = time.time()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="mavps-bench-"))
    env = Env(tmp)
    try:
        print("per-operation ...", file=sys.stderr)
        ops = {r: measure_ops(env, r, reps if r < 100 else max(3, reps // 2)) for r in rtts}
        hook_present = "hook decision" in ops[rtts[0]]
        sections.append("### Round-trip waits and wall time per operation\n\n"
                        f"{reps} repetitions per operation (5 at 100 ms); wall = median. Budget = the CI limit "
                        "(tests/test_bench_quick.py). "
                        + ("" if hook_present else "mavps/hook.py is not there yet: `ws.queue.ready()` is the hook's "
                           "\"is there work?\" read until it is. ") + "\n\n" + report_ops(ops, hook_present))

        workers = [1, 4] if quick else [1, 4, 16, 32]
        tasks = 100 if quick else 1000
        crtt = args.contention_rtt
        rows = []
        for n in workers:
            print(f"contention {n} workers ...", file=sys.stderr)
            rows.append(measure_contention(env, n, tasks, crtt))
        sections.append("### Contention: worker processes draining one queue over SFTP\n\n"
                        + report_contention(rows, crtt))

        hist_sizes = [0, 10_000] if quick else [0, 1_000, 10_000, 100_000]
        hist = []
        for r in ([0] if quick else [0, 20]):
            for n in hist_sizes:
                print(f"history {n} @ {r} ms ...", file=sys.stderr)
                hist.append(measure_history(env, n, r, reps * 2 if r == 0 else reps))
        arch = verify_archiving(tmp, 400 if quick else 1000)
        sections.append("### History: claim cost with finished tasks behind the queue\n\n"
                        "Workspaces written directly in the format the library's archiving produces (finished tasks "
                        "in task-archive.jsonl, the most recent KEEP_FINISHED in task-queue.json).\n\n"
                        + report_history(hist)
                        + f"\n\nThe library's own archiving, checked by draining {arch['total']} tasks through "
                          f"`Queue.claim`/`complete` (local transport, same code above the transport): largest "
                          f"task-queue.json = {arch['largest_queue']} tasks (bound {arch['bound']} + live), "
                          f"{arch['archived']} archived, `list(include_archived=True)` = {arch['listed_all']}, ids "
                          f"unique and none lost: {arch['unique']}, `get(1)` from the archive: "
                          f"{arch['first_from_archive']}.")

        print("start-up ...", file=sys.stderr)
        srtt = 20
        st = measure_startup(env, srtt, 3 if quick else 5)
        conn = measure_connect(env, srtt, 3 if quick else 5)
        conn_nd = measure_connect(env, srtt, 3 if quick else 5, nodelay=True)
        cm = measure_controlmaster(env, srtt, 3 if quick else 5)
        imp = import_time()
        runs = st["runs"]
        med = {k: statistics.median(r[k] for r in runs) for k in ("import", "connect", "claim", "total")}
        lines = [
            f"Fresh process at {srtt} ms RTT: `python -c \"import mavps; Workspace.open(url).queue.claim(...)\"` "
            f"(median of {len(runs)}):\n",
            table(["phase", "ms"], [["interpreter + `import mavps`", ms(med["total"] - med["connect"] - med["claim"])],
                                    ["connect (imports paramiko, SSH, auth, SFTP)", ms(med["connect"])],
                                    [f"claim ({runs[0]['rt']} round-trip waits)", ms(med["claim"])],
                                    ["**total, end to end**", f"**{ms(med['total'])}**"]]),
        ]
        if st["cli"]:
            lines.append(f"\n`mavps claim` (python -m mavps.cli claim) as a fresh process at {srtt} ms RTT: median "
                         f"{ms(statistics.median([r['total'] for r in st['cli']]))} ms "
                         f"(exit codes {sorted({r['rc'] for r in st['cli']})}).")
        else:
            lines.append("\n`mavps/cli.py` is not committed yet: the figure above is the library path the CLI "
                         "will take.")
        lines.append(f"\nConnection set-up at {srtt} ms RTT, by phase (paramiko, median; TCP_NODELAY set before the "
                     "handshake or, as mavps/transport/connect.py does today, only afterwards):\n")
        lines.append(table(["phase", "ms (Nagle on, as today)", "ms (TCP_NODELAY from the start)"],
                           [[k, ms(v), ms(conn_nd[k])] for k, v in conn.items()]
                           + [["sum", ms(sum(conn.values())), ms(sum(conn_nd.values()))]]))
        if cm is not None:
            if "error" in cm:
                lines.append(f"\nOpenSSH ControlMaster could not be measured: {cm['error']}")
            else:
                lines.append(f"\nReusing an OpenSSH ControlMaster at {srtt} ms RTT: first `ssh -M` (master) "
                             f"{ms(cm['master'])} ms once; then each new `ssh -S ctl -s sftp` process up to the SFTP "
                             f"version reply: {ms(cm['per_call'])} ms (vs the paramiko set-up sum above).")
        lines.append(f"\n`python -X importtime -c \"import mavps\"`: {imp['cumulative_us'] / 1000:.1f} ms "
                     f"cumulative for `mavps`, {imp['modules']} modules; heavy modules imported: "
                     f"{imp['heavy'] or 'none'} "
                     f"(paramiko/rich must not be). A bare interpreter start here: {ms(imp['bare'])} ms, "
                     f"with `import mavps`: {ms(imp['wall'])} ms.")
        if "help_heavy" in imp:
            lines.append(f"\n`python -X importtime -m mavps.cli --help` imports of paramiko/rich/cryptography: "
                         f"{imp['help_heavy'] or 'none'} (exit {imp['help_rc']}).")
        sections.append("### Start-up\n\n" + "\n".join(lines))
        print("PostToolUse hook ...", file=sys.stderr)
        prtt = 50
        ptu = measure_post_tool_use(env, prtt, 3 if quick else 5)
        sections.append(f"### The PostToolUse hook per tool call, at {prtt} ms RTT\n\n"
                        "A fresh `python -m mavps.hookcli post-tool-use` process, as Claude Code runs it after each "
                        "tool call (median):\n\n" + table(["case", "ms"], [[k, ms(v)] for k, v in ptu.items()]))
    finally:
        env.close()
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    cmd = ("python tests/benchmarks/bench.py" + (" --quick" if quick else "")
           + (f" --out {args.out}" if args.out else ""))
    head = (f"Command: `{cmd}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
            f"{time.time() - started:.0f} s. Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"paramiko {__import__('paramiko').__version__}, {openssh_version()}; load average "
            f"{load_before[0]:.1f} before / {load_after[0]:.1f} after (other engineers' tests share this machine: "
            "wall times are noisy, round-trip counts are not).")
    return head + "\n\n" + "\n\n".join(sections) + "\n"


def openssh_version() -> str:
    try:
        out = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
        return out.stderr.strip().split(",")[0]
    except OSError:
        return "OpenSSH ?"


START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def write_out(path: Path, text: str, start: str = START, end: str = END) -> None:
    """Put `text` between the markers in the markdown file (a new section at its end if they are not there)."""
    block = f"{start}\n{text}{end}"
    old = path.read_text() if path.exists() else ""
    if start in old and end in old:
        new = old[: old.index(start)] + block + old[old.index(end) + len(end):]
    else:
        new = (old + "\n\n" if old else "# Performance\n\n") + "## Benchmark results\n\n" + block + "\n"
    path.write_text(new)


SBS_START, SBS_END = "<!-- bench-old-new:start -->", "<!-- bench-old-new:end -->"


def side_by_side(old: Path, quick: bool, out: str | None) -> int:
    """Old and new code in one run (tests/benchmarks/sidebyside.py, startup.py)."""
    import sidebyside
    import startup

    text = sidebyside.run(old, quick)
    text += "\n### CLI start-up, fresh processes\n\n" + startup.report(old, 5 if quick else 15)
    print(text)
    if out:
        write_out(ROOT / out if not os.path.isabs(out) else Path(out), text, SBS_START, SBS_END)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI size: fewer repetitions, 0/20 ms, 1 and 4 workers")
    ap.add_argument("--out", help="write the tables into this markdown file (between bench markers)")
    ap.add_argument("--contention-rtt", type=float, default=0.0, help="added RTT for the contention runs (ms)")
    ap.add_argument("--old", metavar="DIR", help="instead: old (a checkout in DIR) and new side by side (issue 16)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(json.loads(args.worker))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.old:
        return side_by_side(Path(args.old), args.quick, args.out)
    text = run(args)
    print(text)
    if args.out:
        write_out(ROOT / args.out if not os.path.isabs(args.out) else Path(args.out), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
