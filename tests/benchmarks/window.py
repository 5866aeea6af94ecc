#!/usr/bin/env python3
"""The active window's figures: claims with 100, 10 000 and 100 000 pending tasks over SFTP through a latency proxy.

    PYTHONPATH=. python tests/benchmarks/window.py [--claims 500] [--rtt 20] [--sizes 100,10000,100000]

For each size: a workspace laid out as the code's commits leave it (bench.write_state: the window in
task-queue.json, the rest in task-backlog.jsonl), then `--claims` claims in a row by one worker, each followed by
its completion (not measured). Per claim: round-trip waits, bytes on the wire both ways (counted by the proxy),
client CPU and wall. Reported: the typical claim (median), the refill claims (those that read the backlog: more
waits than the median), and the mean over all claims.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]


def measure(srv: Any, tmp: Path, n: int, claims: int, rtt: float) -> dict[str, Any]:
    from bench import write_state
    from mavps import Workspace

    path = tmp / f"queue-{n}"
    write_state(path, finished=0, pending=n)
    ws = Workspace.open(srv.url(path, rtt), agent="bench", **srv.settings())
    proxy = srv.proxies[rtt]
    rows = []
    try:
        for _ in range(min(claims, n)):
            up, down, rt = proxy.bytes_up, proxy.bytes_down, ws.transport.round_trips
            c0, t0 = time.process_time(), time.perf_counter()
            task = ws.queue.claim("w1")
            assert task is not None
            rows.append({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                         "rt": ws.transport.round_trips - rt, "wire": proxy.bytes_up - up + proxy.bytes_down - down})
            ws.queue.complete(task.id, "w1")  # a worker's loop: finished tasks stay in the window up to KEEP_FINISHED
    finally:
        ws.close()
    typical_rt = statistics.median(r["rt"] for r in rows)
    refills = [r for r in rows if r["rt"] > typical_rt]
    typical = [r for r in rows if r["rt"] <= typical_rt]

    def summary(rs: list[dict[str, Any]], how: Any) -> dict[str, float] | None:
        return {k: how(r[k] for r in rs) for k in ("rt", "wire", "cpu", "wall")} if rs else None

    return {"n": n, "claims": len(rows), "first": rows[0], "typical": summary(typical, statistics.median),
            "refill": summary(refills, statistics.median), "refills": len(refills),
            "mean": summary(rows, lambda xs: statistics.fmean(list(xs)))}


def row(label: str, n: int, s: dict[str, float] | None, count: str) -> str:
    if s is None:
        return f"| {n:,} | {label} | {count} | - | - | - | - |"
    return (f"| {n:,} | {label} | {count} | {s['rt']:.1f} | {s['wire'] / 2**20:.3f} | {s['cpu'] * 1000:.0f} | "
            f"{s['wall'] * 1000:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--claims", type=int, default=500)
    ap.add_argument("--rtt", type=float, default=20)
    ap.add_argument("--sizes", default="100,10000,100000")
    args = ap.parse_args()
    from sidebyside import Server

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        srv = Server(tmp)
        try:
            results = [measure(srv, tmp, int(n), args.claims, args.rtt) for n in args.sizes.split(",")]
        finally:
            srv.close()
    print(f"One worker claiming and completing {args.claims} tasks in a row over SFTP at {args.rtt:g} ms RTT; the "
          "claims measured (first: the first claim; typical and refill: medians; mean: over every claim).\n")
    print("| pending | claim | claims | waits | wire MiB | client CPU ms | wall ms |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(row("first", r["n"], r["first"], "1"))
        print(row("typical", r["n"], r["typical"], str(r["claims"] - r["refills"])))
        print(row("refill", r["n"], r["refill"], str(r["refills"])))
        print(row("mean", r["n"], r["mean"], str(r["claims"])))


if __name__ == "__main__":
    main()
