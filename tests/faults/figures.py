"""Sum the per-run figures of the fault suite into the table of knowledge/reliability.md.

    rm -f /tmp/mavps-fault-figures.jsonl
    MAVPS_REQUIRE_SSHD=1 python -m pytest tests/faults -q
    python tests/faults/figures.py [/tmp/mavps-fault-figures.jsonl]
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict

COMMANDS = {
    "sigkill storm": "tests/faults/test_storm.py",
    "killed at each point": "tests/faults/test_crash_points.py",
    "dropped connections": "tests/faults/test_drops.py",
    "stale lock": "tests/faults/test_stale.py -k stale_lock",
    "slow holder": "tests/faults/test_stale.py -k slow_holder",
    "disk full": "tests/faults/test_disk.py -k disk_full",
    "permission denied": "tests/faults/test_disk.py -k permission",
}


def main(path: str = "/tmp/mavps-fault-figures.jsonl") -> None:
    rows: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for line in open(path):
        r = json.loads(line)
        row = rows[(r["scenario"], r["transport"])]
        row[0] += 1
        row[1] += r["operations"]
        row[2] += r["faults"]
        row[3] += r["violations"]
    print("| scenario | transport | runs | operations | faults injected | invariant violations | reproduce |")
    print("|---|---|---:|---:|---:|---:|---|")
    for (scenario, transport), (runs, ops, faults, bad) in rows.items():
        cmd = next((c for k, c in COMMANDS.items() if scenario.startswith(k)), "tests/faults")
        print(f"| {scenario} | {transport} | {runs} | {ops} | {faults} | {bad} | `python -m pytest {cmd}` |")


if __name__ == "__main__":
    main(*sys.argv[1:])
