"""Dropped connections: workers reach sshd through a proxy that cuts connections
at random byte counts. Every operation either happened or not: the workers retry
with the same claim token (mavps.retry) and the invariants hold afterwards."""
from __future__ import annotations

import os
import random
import time

import pytest

from mavps import Workspace
from support.proxy import LatencyProxy

from .helpers import check_queue, figures, proxy_known_hosts, spawn, wait_all

pytestmark = [pytest.mark.faults, pytest.mark.sftp, pytest.mark.timeout(240)]
RUNS = int(os.environ.get("MAVPS_DROP_RUNS", "3"))
WORKERS, TASKS, CUT_SECONDS = 4, 50, 10.0


@pytest.mark.parametrize("run", range(RUNS))
def test_dropped_connections(sshd, tmp_path, run):
    rnd = random.Random(f"drops{run}")
    path = tmp_path / "ws"
    with Workspace.open(sshd.url(str(path)), identity_file=sshd.client_key, known_hosts=sshd.known_hosts,
                        ssh_config=os.devnull) as ws:
        ws.init()
        for i in range(TASKS):
            ws.queue.add(f"task {i}", "x", max_attempts=100)
    with LatencyProxy("127.0.0.1", sshd.port, delay_s=0.002) as proxy:
        settings = {"identity_file": sshd.client_key, "ssh_config": os.devnull,
                    "known_hosts": proxy_known_hosts(sshd, proxy.port, tmp_path / "known_hosts"),
                    "lock_ttl": 1.5, "lease_ttl": 3, "lock_timeout": 30, "reply_timeout": 5, "connect_timeout": 5}
        url = f"sftp://{sshd.user}@127.0.0.1:{proxy.port}{path}"
        outs = [tmp_path / f"w{i}.out" for i in range(WORKERS)]
        procs = [spawn({"mode": "drain", "url": url, "worker": f"w{i}", "out": str(outs[i]), "settings": settings,
                        "work": 0.1, "attempts": 12, "max_seconds": 150}) for i in range(WORKERS)]
        cuts = 0
        stop_at = time.monotonic() + CUT_SECONDS
        while time.monotonic() < stop_at and any(p.poll() is None for p in procs):
            time.sleep(rnd.uniform(0.05, 0.3))
            conns = proxy.connections()
            if conns:  # cut one connection a random number of bytes into what it sends next
                rnd.choice(conns).set_cut_after(rnd.choice([0, rnd.randrange(1, 200), rnd.randrange(200, 4000)]))
                cuts += 1
        wait_all(procs, 150)
        cuts = proxy.cuts
    report = check_queue(path, TASKS, outs)
    with Workspace.open(str(path), lock_ttl=1.5) as ws:
        started = time.monotonic()
        ws.queue.reap()
        if time.monotonic() - started > 5:
            report.bad("a lock left by a dropped connection outlived its lease")
    st = report.stats
    figures("dropped connections", "sftp", st["claims"] + st["completions"], cuts, len(report.violations), **st)
    assert cuts > 0
    assert not report.violations, report.violations
