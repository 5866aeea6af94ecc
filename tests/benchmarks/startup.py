#!/usr/bin/env python3
"""CLI start-up, old tree against new, side by side: `mavps --help` and a local `mavps status`.

    python tests/benchmarks/startup.py [--old DIR] [--runs N]

    python tests/benchmarks/startup.py --clean ...   # in a clean venv, as `pip install .` gives a user

DIR is a checkout of the code to compare with (e.g. `git archive 638d97f | tar -x -C DIR`). Each command
runs as a fresh process (`python -m mavps ...` with PYTHONPATH=tree), N times, median wall and CPU time:
"warm" with compiled bytecode in place, "cold" from a fresh copy of the tree with PYTHONDONTWRITEBYTECODE=1
(every module compiled on every run, as after an upgrade or on a read-only install). A bare `python -c pass`
is measured alongside: what is left above it is mavps's own start-up.

The interpreter is this one, with whatever its site-packages' .pth files run at every start (an editable install's
finder imports pathlib, re, importlib.util...; here also a certifi hook): ~28 ms of a 38 ms bare start on the
machine these figures came from. `--clean` runs everything in a throw-away venv instead, whose site-packages hold
only a path-only .pth naming the directories of mavps's dependencies (no .pth code runs): what a user gets from
`pip install .` into a venv.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


#: The interpreter the commands run with (`--clean`: a throw-away venv's).
PYTHON = sys.executable


def clean_python(where: Path) -> str:
    """A venv at `where` without this interpreter's site-packages: mavps's dependencies reach it through one
    path-only .pth (which runs no code), so a bare start is the interpreter's own."""
    import site
    import venv

    venv.EnvBuilder(with_pip=False, symlinks=True).create(where)
    python = str(where / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    deps = {os.path.dirname(os.path.dirname(m.__file__)) for m in _dependencies()}
    Path(purelib, "mavps-deps.pth").write_text("\n".join(sorted(deps | set(site.getsitepackages()))) + "\n")
    return python


def _dependencies() -> list[Any]:
    import click
    import paramiko
    import rich
    import yaml

    return [click, paramiko, rich, yaml]


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + sys) seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # cwd "/": `python -m`/`-c` put the working directory first on sys.path, before PYTHONPATH's tree
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, cwd="/")
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(tree: Path, args: list[str], runs: int, cold: bool, extra: dict[str, str]) -> dict[str, float]:
    """Median wall/CPU of `python -m mavps ARGS` from `tree` (a fresh copy without bytecode when cold)."""
    env = {**os.environ, **extra, "PYTHONPATH": str(tree)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="mavps-startup-") as tmp:
        if cold:
            shutil.copytree(tree / "mavps", Path(tmp) / "mavps",
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            env["PYTHONPATH"] = tmp
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        cmd = [PYTHON, "-m", "mavps", *args] if args else [PYTHON, "-c", "pass"]
        _run(cmd, env)  # writes bytecode when warm
        samples = [_run(cmd, env) for _ in range(runs)]
    return {"wall": statistics.median(w for w, _ in samples), "cpu": statistics.median(c for _, c in samples)}


def modules(tree: Path, args: list[str], extra: dict[str, str]) -> set[str]:
    """Top-level packages loaded by the end of a command (sys.modules: an import that was refused is not)."""
    env = {**os.environ, **extra, "PYTHONPATH": str(tree)}
    code = ("import runpy, sys\nsys.argv = ['mavps'] + sys.argv[1:]\ntry:\n    runpy.run_module('mavps', "
            "run_name='__main__')\nexcept SystemExit:\n    pass\nsys.stderr.write(' '.join(m for m in sys.modules "
            "if sys.modules[m] is not None and '.' not in m))")
    res = subprocess.run([PYTHON, "-c", code, *args], env=env, capture_output=True, text=True, check=False,
                         cwd="/")
    return set(res.stderr.split())


def report(old: Path | None, runs: int) -> str:
    """The start-up table (old and new side by side when `old` is given) and what each command imports."""
    tmp = Path(tempfile.mkdtemp(prefix="mavps-startup-"))
    ws = tmp / "ws"
    trees = ({"old": old.resolve()} if old else {}) | {"new": ROOT}
    subprocess.run([sys.executable, "-m", "mavps", "--workspace", str(ws), "init"], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, cwd="/")
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    from support.sshd import SSHServer

    server = SSHServer(tmp / "sshd").start()
    (tmp / "empty.yaml").write_text("")
    ssh_env = {"MAVPS_IDENTITY_FILE": server.client_key, "MAVPS_KNOWN_HOSTS": server.known_hosts,
               "MAVPS_SSH_CONFIG": os.devnull, "MAVPS_CONFIG": str(tmp / "empty.yaml"),
               "MAVPS_SSH_CONTROL_DIR": tempfile.mkdtemp(prefix="mvst")}
    cmds = {"bare `python -c pass`": [], "`mavps --help`": ["--help"],
            "local `mavps status`": ["--workspace", str(ws), "status"],
            "SFTP `mavps status` (paramiko, no added RTT)": ["--workspace", server.url(str(ws)), "status"],
            "SFTP `mavps status` (openssh, master up)": ["--workspace", server.url(str(ws)), "--ssh", "openssh",
                                                         "status"]}
    heavy = {"paramiko", "rich", "invoke", "cryptography"}
    try:
        text = table(trees, table_rows(trees, cmds, runs, ssh_env))
        for name, tree in trees.items():
            for label, args in list(cmds.items())[1:4]:
                got = sorted(modules(tree, args, ssh_env) & heavy)
                text += f"\n\n{name}, {label} imports: {', '.join(got) or 'none'} (of {', '.join(sorted(heavy))})"
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return text + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", help="a checkout of the code to compare with")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--clean", action="store_true", help="run the commands in a clean venv (see above)")
    a = ap.parse_args()
    global PYTHON
    with tempfile.TemporaryDirectory(prefix="mavps-venv-") as tmp:
        if a.clean:
            PYTHON = clean_python(Path(tmp))
        print(f"interpreter: {PYTHON}{' (clean venv)' if a.clean else ''}\n")
        print(report(Path(a.old) if a.old else None, a.runs))
    return 0


def table_rows(trees: dict[str, Path], cmds: dict[str, list[str]], runs: int, extra: dict[str, str]) -> list[list]:
    rows: list[list[Any]] = []
    for label, args in cmds.items():
        for cold in (False, True):
            row: list[Any] = [label, "cold (no .pyc)" if cold else "warm (.pyc)"]
            for name, tree in trees.items():
                m = measure(tree, args, runs, cold, extra)
                row += [f"{m['wall'] * 1000:.0f}", f"{m['cpu'] * 1000:.0f}"]
            rows.append(row)
    return rows


def table(trees: dict[str, Path], rows: list[list]) -> str:
    head = ["command", "bytecode"] + [f"{n} {k} ms" for n in trees for k in ("wall", "CPU")]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


if __name__ == "__main__":
    sys.exit(main())
