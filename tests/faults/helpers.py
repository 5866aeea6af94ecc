"""Worker processes, the invariant checker and the figures log for the fault suite."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
AGENT = Path(__file__).resolve().parent / "agent.py"
LOCK = ".mavps.lock"


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def spawn(cfg: dict[str, Any], **popen: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(AGENT), json.dumps(cfg)], env=env(),
                            stdout=subprocess.DEVNULL, stderr=popen.pop("stderr", subprocess.DEVNULL), **popen)


def proxy_known_hosts(server: Any, proxy_port: int, path: Path) -> str:
    key_type, key_b64 = server.host_pub.split()[:2]
    path.write_text(f"[127.0.0.1]:{proxy_port} {key_type} {key_b64}\n")
    return str(path)


def read_out(files: list[Path]) -> list[dict[str, Any]]:
    recs = []
    for f in files:
        if not f.exists():
            continue
        for line in f.read_text().splitlines():
            if line.strip():
                recs.append(json.loads(line))
    return recs


def holder_pid(ws_path: Path) -> int | None:
    try:
        return int(json.loads((ws_path / LOCK / "owner.json").read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def bad(self, msg: str) -> None:
        self.violations.append(msg)


def load_log(ws_path: Path, report: Report) -> list[dict[str, Any]]:
    """Log records that took effect: rolled-back transactions are left out."""
    data = (ws_path / "agent-comms.jsonl").read_bytes()
    recs = []
    for i, line in enumerate(data.split(b"\n")):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            report.bad(f"log line {i + 1} is not JSON: {line[:80]!r}")
            continue
        recs.append(rec)
    if data and not data.endswith(b"\n"):
        report.bad("the log ends with a partial line")
    rolled = {r.get("txn") for r in recs if r.get("event") == "rolled_back"}
    report.stats["rolled_back"] = len(rolled)
    return [r for r in recs if r.get("event") != "rolled_back" and (r.get("txn") is None or r.get("txn") not in rolled)]


def check_queue(ws_path: Path, n_tasks: int, out_files: list[Path], expect_done: bool = True) -> Report:
    """The invariants of a queue run, from the state files, the log and each process's own records."""
    from mavps.models import load_tasks, load_workers

    report = Report()
    state: dict[str, Any] = {}
    for name in ("task-queue.json", "worker-status.json", "workspace.json"):
        try:
            state[name] = json.loads((ws_path / name).read_text())
        except (OSError, ValueError) as exc:
            report.bad(f"{name} does not parse: {exc}")
    if report.violations:
        return report
    tasks = {t.id: t for t in load_tasks(state["task-queue.json"])}
    load_workers(state["worker-status.json"])
    stray = [p.name for p in ws_path.glob("*.tmp")]
    if stray:
        report.bad(f"temp files outside the lock: {stray}")

    # no task lost; every task in exactly one state (ids are unique: load_tasks checks)
    if set(tasks) != set(range(1, n_tasks + 1)):
        report.bad(f"tasks lost or invented: {sorted(set(range(1, n_tasks + 1)) ^ set(tasks))}")
    if expect_done:
        undone = {i: t.status.value for i, t in tasks.items() if t.status.value != "completed"}
        if undone:
            report.bad(f"tasks not completed: {undone}")

    # the log: every transition recorded, in an order that never has two holders
    events = [r for r in load_log(ws_path, report) if isinstance(r.get("task_id"), int)]
    per: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in events:
        per[r["task_id"]].append(r)
    phantom = sorted(set(per) - set(tasks))
    if phantom:
        report.bad(f"the log records tasks the queue does not have: {phantom}")
    claims_in_log: dict[int, int] = {}
    for tid, t in tasks.items():
        status, holder, completions, claims = "pending", None, 0, 0
        added = sum(1 for r in per.get(tid, []) if r.get("event") == "task_added")
        if added != 1:
            report.bad(f"task {tid} is in the queue, the log records {added} task_added")
        for r in per.get(tid, []):
            ev = r.get("event")
            if ev == "task_added":
                continue
            if ev == "task_claimed":
                if status == "in_progress":
                    report.bad(f"task {tid} claimed by {r.get('agent')} while held by {holder} (log)")
                if status not in ("pending", "in_progress"):
                    report.bad(f"task {tid} claimed by {r.get('agent')} while {status} (log)")
                status, holder, claims = "in_progress", r.get("agent"), claims + 1
            elif ev == "task_completed":
                completions += 1
                if status != "in_progress" or holder != r.get("agent"):
                    report.bad(f"task {tid} completed by {r.get('agent')} while {status} held by {holder} (log)")
                status = "completed"
            elif ev in ("lease_expired", "task_failed", "task_released"):
                if status != "in_progress" or (ev != "lease_expired" and holder != r.get("agent")):
                    report.bad(f"task {tid}: {ev} by {r.get('agent')} while {status} held by {holder} (log)")
                status, holder = r.get("status"), None
            elif ev in ("task_cancelled", "task_requeued"):
                status, holder = r.get("status"), None
        claims_in_log[tid] = claims
        if completions > 1:
            report.bad(f"task {tid} completed {completions} times (log)")
        if status != t.status.value:
            report.bad(f"task {tid} is {t.status.value} but the log ends with it {status}")
        elif status == "in_progress" and holder != t.claimed_by:
            report.bad(f"task {tid} held by {t.claimed_by} but the log says {holder}")

    # what each process itself saw
    recs = read_out(out_files)
    done_tokens: dict[int, set[str]] = defaultdict(set)
    claim_tokens: dict[int, set[str]] = defaultdict(set)
    for r in recs:
        if r.get("ev") == "completed":
            done_tokens[r["task"]].add(r["token"])
        if r.get("ev") == "claimed":
            claim_tokens[r["task"]].add(r["token"])
    for tid, toks in done_tokens.items():
        if len(toks) > 1:
            report.bad(f"task {tid} completed by {len(toks)} different claims (processes' records)")
        t = tasks.get(tid)
        if t is None or t.status.value != "completed" or t.claim_token not in toks:
            report.bad(f"task {tid}: a process completed it (token {sorted(toks)}) but the queue says "
                       f"{t and t.status.value} with token {t and t.claim_token}")
    for tid, toks in claim_tokens.items():
        if len(toks) > claims_in_log.get(tid, 0):
            report.bad(f"task {tid}: processes hold {len(toks)} claims, the log records {claims_in_log.get(tid, 0)}")
    report.stats.update(
        claims=sum(1 for r in recs if r.get("ev") == "claimed"),
        completions=sum(1 for r in recs if r.get("ev") == "completed"),
        fenced=sum(1 for r in recs if r.get("ev") == "fenced"),
        errors=sum(1 for r in recs if r.get("ev", "").endswith("_error")),
        reconnects=sum(r.get("reconnects", 0) for r in recs if r.get("ev") == "done"),
        lease_expired=sum(1 for r in events if r.get("event") == "lease_expired"),
    )
    return report


def check_counter(ws_path: Path, out_files: list[Path]) -> Report:
    """Mutual exclusion: the counter equals the increments that reported success,
    give or take those whose outcome is unknown (a process killed mid-call)."""
    report = Report()
    recs = read_out(out_files)
    ok = [r for r in recs if r.get("ev") == "counted"]
    try:
        final = json.loads((ws_path / "counter.json").read_text())["n"] if (ws_path / "counter.json").exists() else 0
    except ValueError as exc:
        report.bad(f"counter.json does not parse: {exc}")
        return report
    values = sorted(r["value"] for r in ok)
    if len(values) != len(set(values)):
        report.bad(f"two increments returned the same value: a lost update (two holders) {values}")
    if final != len(ok):
        report.bad(f"counter is {final} but {len(ok)} increments succeeded")
    logged = [r for r in load_log(ws_path, report) if r.get("event") == "counted"]
    if sorted(r["value"] for r in logged) != list(range(1, final + 1)):
        report.bad(f"the log's counted events {sorted(r['value'] for r in logged)} != 1..{final}")
    report.stats.update(increments=len(ok), errors=sum(1 for r in recs if r.get("ev") == "count_error"),
                        final=final)
    return report


FIGURES = Path(os.environ.get("MAVPS_FAULT_FIGURES", "/tmp/mavps-fault-figures.jsonl"))


def figures(scenario: str, transport: str, operations: int, faults: int, violations: int, **extra: Any) -> None:
    """One line per run, summed into knowledge/reliability.md by tests/faults/figures.py."""
    with open(FIGURES, "a") as fh:
        fh.write(json.dumps({"scenario": scenario, "transport": transport, "operations": operations,
                             "faults": faults, "violations": violations, "t": time.time(), **extra}) + "\n")


def wait_all(procs: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


# ----- crash points: a workspace as the next lock holder will find it ---------------------------------------------
import re  # noqa: E402  (appended section: the imports above are shared)
import shutil  # noqa: E402
from urllib.parse import unquote  # noqa: E402

COMMIT_DIR = ".mavps.commit"
_TEMP_FILE = re.compile(r"(.+)\.[0-9a-f]{16}\.tmp")  # <quoted target>.<token>.tmp (protocol v2)
_TXN_DIR = re.compile(r"txn\.([0-9a-f]{16})")


def log_records(ws_path: Path) -> list[dict[str, Any]]:
    """Every whole JSON record of the comms log (lines that do not parse are check_queue's business)."""
    out = []
    try:
        data = (ws_path / "agent-comms.jsonl").read_bytes()
    except OSError:
        return out
    for line in data.split(b"\n"):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def settle(ws_path: Path, dst: Path) -> list[str]:
    """Copy a workspace to `dst` as the protocol says the next lock holder must leave it, done independently of
    mavps: a committed `.mavps.commit/` applied (each temp file moved to the target its name gives), and every
    transaction still inside the lock (`.mavps.lock/txn.<t>/`, never committed) marked rolled back in the log.
    Returns what could not be applied (a committed change that cannot be put in place)."""
    shutil.copytree(ws_path, dst, symlinks=True)
    problems = []
    commit = dst / COMMIT_DIR
    if commit.is_dir() and not commit.is_symlink():
        for name in sorted(os.listdir(commit)):
            m = _TEMP_FILE.fullmatch(name)
            if m:
                try:
                    os.replace(commit / name, dst / unquote(m.group(1)))
                except OSError as exc:
                    problems.append(f"committed {unquote(m.group(1))} cannot be applied: {exc}")
        shutil.rmtree(commit)
    lock = dst / LOCK
    if lock.is_dir() and not lock.is_symlink():
        notes = [{"event": "rolled_back", "agent": "settle", "txn": m.group(1)}
                 for n in sorted(os.listdir(lock)) if (m := _TXN_DIR.fullmatch(n))]
        with open(dst / "agent-comms.jsonl", "ab") as fh:
            fh.write(b"".join(json.dumps(r).encode() + b"\n" for r in notes))
        shutil.rmtree(lock)
    return problems


def unarchive(ws_path: Path) -> None:
    """Put archived tasks back into task-queue.json (a task in both counts once: the queue wins), so check_queue
    sees every task once."""
    from mavps.queue import parse_archive

    archive = ws_path / "task-archive.jsonl"
    if not archive.exists():
        return
    queue = json.loads((ws_path / "task-queue.json").read_text())
    live = {t["id"] for t in queue}
    queue += [t.to_dict() for t in parse_archive(archive.read_bytes()) if t.id not in live]
    (ws_path / "task-queue.json").write_text(json.dumps(sorted(queue, key=lambda t: t["id"])))


def check_settled(ws_path: Path, n_tasks: int) -> Report:
    """check_queue without completion, where a `worker remove --force` may release a task held by the worker it
    removes (check_queue expects only the holder to release): those releases, and only those, are excused."""
    report = check_queue(ws_path, n_tasks, [], expect_done=False)
    rolled = {r.get("txn") for r in log_records(ws_path) if r.get("event") == "rolled_back"}
    recs = [r for r in log_records(ws_path) if r.get("event") != "rolled_back" and r.get("txn") not in rolled]
    removed = {(r.get("txn"), r.get("worker")) for r in recs if r.get("event") == "worker_removed"}
    holders: dict[int, str] = {}
    excused = set()
    for r in recs:
        tid = r.get("task_id")
        if r.get("event") == "task_claimed":
            holders[tid] = r.get("agent")
        elif r.get("event") == "task_released" and (r.get("txn"), holders.get(tid)) in removed:
            excused.add(f"task {tid}: task_released by {r.get('agent')} while in_progress held by {holders[tid]} (log)")
    report.violations = [v for v in report.violations if v not in excused]
    return report
