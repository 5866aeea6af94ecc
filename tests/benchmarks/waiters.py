#!/usr/bin/env python3
"""Lock waiters, old and new side by side: bench.py's contention run for two trees in one run (issue 16).

    python tests/benchmarks/waiters.py --old DIR [--workers 1,4,16,32] [--tasks 1000] [--rtt 20] [--handover]
        [--out FILE] [--marker NAME]

DIR is a checkout of the code to compare with (`git archive main | tar -x -C DIR`). For each number of
workers the old tree's run and this tree's run follow each other on the same sshd and latency proxy, so they
share the machine's load. Workers import mavps from their tree (bench.worker_main's `tree`). With --handover,
this tree also runs with workers that complete and claim the next in one transaction (`complete --next`), the
row "new, hand-over": there a pair is one transaction.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(HERE)]

import bench  # noqa: E402

def row(tree: str, r: dict[str, Any]) -> list[Any]:
    return [tree, r["workers"], r["tasks"], f"{r['claims_per_s']:.1f}", bench.ms(r["txn_wait_p50"]),
            bench.ms(r["txn_wait_p99"]), bench.ms(r["txn_wait_max"]), f"{r['rt_mean']:.1f}", r["rt_max"],
            r["lock_timeouts"], r["double_claims"], r["completed"], len(r["errors"])]


def report(rows: list[tuple[str, dict[str, Any]]], rtt: float, cmd: str, started: float) -> str:
    head = ["code", "workers", "tasks", "claim+complete pairs/s", "lock wait p50 ms", "lock wait p99 ms",
            "lock wait max ms", "round trips per transaction (mean)", "(max)", "LockTimeouts", "double claims",
            "completed", "worker errors"]
    errs = sorted({e for _, r in rows for e in r["errors"]})
    load = os.getloadavg()[0]
    return (f"Command: `{cmd}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
            f"{time.time() - started:.0f} s, load average {load:.1f} at the end ({os.cpu_count()} CPUs shared with "
            f"other engineers' tests: wall figures are noisy, round-trip counts are not). Worker processes over SFTP "
            f"through {rtt:g} ms of added RTT each loop claim -> complete until the queue is empty; lock wait and "
            "round trips are per transaction (claims and completions).\n\n"
            + bench.table(head, [row(t, r) for t, r in rows])
            + (("\n\nWorker errors: " + "; ".join(errs)) if errs else "") + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", help="a checkout of the code to compare with")
    ap.add_argument("--workers", default="1,4,16,32")
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--rtt", type=float, default=20.0)
    ap.add_argument("--out", help="write the table into this markdown file (between its markers)")
    ap.add_argument("--only", choices=["old", "new"], help="run one tree only")
    ap.add_argument("--handover", action="store_true", help="also run this tree with one transaction per pair")
    ap.add_argument("--marker", default="bench-waiters", help="the markers --out writes between")
    args = ap.parse_args()
    trees = ([("old", str(Path(args.old).resolve()))] if args.old else []) + [("new", str(ROOT))]
    trees = [(name, tree, False) for name, tree in trees if args.only in (None, name)]
    if args.handover:
        trees.append(("new, hand-over", str(ROOT), True))
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="mavps-waiters-"))
    env = bench.Env(tmp)
    rows = []
    try:
        for n in [int(x) for x in args.workers.split(",")]:
            for name, tree, handover in trees:
                print(f"{name}: {n} workers ...", file=sys.stderr)
                rows.append((name, bench.measure_contention(env, n, args.tasks, args.rtt, tree, handover)))
                print(row(name, rows[-1][1]), file=sys.stderr)
    finally:
        env.close()
        shutil.rmtree(tmp, ignore_errors=True)
    cmd = "python tests/benchmarks/waiters.py " + " ".join(sys.argv[1:])
    text = report(rows, args.rtt, cmd, started)
    print(text)
    if args.out:
        write_between_markers(Path(args.out), text, args.marker)
    return 0


def write_between_markers(path: Path, text: str, marker: str = "bench-waiters") -> None:
    """Replace the text between the markers, or add them at the end of the file."""
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    old = path.read_text() if path.exists() else ""
    block = f"{start}\n{text}{end}"
    if start in old and end in old:
        path.write_text(old[: old.index(start)] + block + old[old.index(end) + len(end):])
    else:
        path.write_text(old + "\n" + block + "\n")


if __name__ == "__main__":
    sys.exit(main())
