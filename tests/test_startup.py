"""Start-up stays light: what each entry point imports, counted in a fresh interpreter (not timed).

`import mavps` loads neither paramiko nor rich; the SSH transports load paramiko without `invoke` (paramiko.config
imports it only to run `Match exec`, ~80 ms), and a config that has `Match exec` still gets it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def loaded(code: str, *names: str) -> dict[str, bool]:
    """Which of `names` are in sys.modules after running `code` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{n: n in sys.modules for n in {list(names)!r}}}))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_mavps_loads_neither_paramiko_nor_rich():
    assert loaded("import mavps", "paramiko", "rich", "click") == {"paramiko": False, "rich": False, "click": False}


@pytest.mark.parametrize("module", ["mavps.transport.connect", "mavps.transport.openssh", "mavps.trust"])
def test_ssh_transports_load_paramiko_without_invoke(module):
    assert loaded(f"import {module}", "paramiko", "invoke") == {"paramiko": True, "invoke": False}


def test_cli_help_and_local_status_load_no_ssh_stack(tmp_path):
    ws = tmp_path / "ws"
    code = ("from mavps.cli import cli\n"
            f"cli.main(['--workspace', {str(ws)!r}, 'init'], standalone_mode=False)\n"
            f"cli.main(['--workspace', {str(ws)!r}, 'status'], standalone_mode=False)\n"
            "cli.main(['--help'], standalone_mode=False)")
    assert loaded(code, "paramiko", "invoke") == {"paramiko": False, "invoke": False}


def test_an_ssh_config_with_match_exec_still_works(tmp_path):
    """`Match exec` runs through invoke, as with a plain paramiko import: the command decides the match."""
    pytest.importorskip("invoke")
    cfg = tmp_path / "config"
    cfg.write_text("Match host box exec \"exit 0\"\n  Port 2201\nMatch host other exec \"exit 1\"\n  Port 2202\n"
                   "Host *\n  User someone\n")
    code = ("from mavps.transport.connect import resolve\n"
            f"a = resolve('box', None, None, '/ws', None, {str(cfg)!r})\n"
            f"b = resolve('other', None, None, '/ws', None, {str(cfg)!r})\n"
            "print(a.port, b.port, a.user)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2201", "22", "someone"]


def test_without_match_exec_invoke_stays_out(tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text("Host box\n  Port 2201\n  User someone\n")
    code = ("from mavps.transport.connect import resolve\n"
            f"e = resolve('box', None, None, '/ws', None, {str(cfg)!r})\n"
            "assert (e.port, e.user) == (2201, 'someone'), e")
    assert loaded(code, "invoke") == {"invoke": False}


COMMAND_MODULES = ["admin", "board", "exchange", "files", "logs", "messages", "plan", "questions", "reservations",
                   "tasks", "work", "workers"]


def test_help_imports_no_command_module_and_status_only_its_own(tmp_path):
    """The group loads a command's module when that command runs: `--help` lists them all from app.COMMANDS."""
    ws = tmp_path / "ws"
    names = [f"mavps.cli.{m}" for m in COMMAND_MODULES]
    helped = loaded("from mavps.cli import cli\ncli.main(['--help'], standalone_mode=False)", *names)
    assert not any(helped.values()), helped
    code = ("from mavps.cli import cli\n"
            f"cli.main(['--workspace', {str(ws)!r}, 'init'], standalone_mode=False)\n"
            f"cli.main(['--workspace', {str(ws)!r}, 'status'], standalone_mode=False)")
    assert [n for n, v in loaded(code, *names).items() if v] == ["mavps.cli.admin"]


def test_the_command_table_matches_the_commands():
    """app.COMMANDS names every command with its module, and its help gives the same short help at any width."""
    import importlib

    import click

    from mavps.cli import COMMANDS, LAZY_COMMANDS, cli

    for m in COMMAND_MODULES:
        importlib.import_module(f"mavps.cli.{m}")
    assert set(COMMANDS) == set(cli.commands) - set(LAZY_COMMANDS)
    for name, (module, first) in COMMANDS.items():
        cmd = cli.commands[name]
        assert cmd.callback.__module__ == f"mavps.cli.{module}", name
        for limit in range(20, 200, 7):
            assert click.utils.make_default_short_help(first, limit) == cmd.get_short_help_str(limit), (name, limit)


def test_status_into_a_pipe_loads_no_rich(tmp_path):
    """Not a terminal: the board is printed as plain text (render.plain.board), so rich is not imported."""
    ws = tmp_path / "ws"
    code = ("from mavps import Workspace\n"
            f"w = Workspace.open({str(ws)!r}, agent='coordinator'); w.init(); w.queue.add('a task', 'x'); w.close()\n"
            "from mavps.cli import cli\n"
            f"cli.main(['--workspace', {str(ws)!r}, 'status'], standalone_mode=False)")
    assert loaded(code, "rich") == {"rich": False}


def loaded_clean(code: str, *names: str) -> dict[str, bool]:
    """`loaded`, in an interpreter that runs no site-packages .pth file (`-S`, the packages on PYTHONPATH): what
    mavps itself imports, whatever an editable install's finder or another .pth loads before it."""
    import site

    probe = f"{code}\nimport json, sys\nprint(json.dumps({{n: n in sys.modules for n in {list(names)!r}}}))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *site.getsitepackages()])}
    out = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, env=env, timeout=60,
                         cwd="/")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


STDLIB_NOT_NEEDED = ["socket", "tempfile", "shutil", "urllib.parse", "secrets"]


def test_help_loads_neither_the_workspace_nor_what_commands_use():
    code = "from mavps.cli import cli\ncli.main(['--help'], standalone_mode=False)"
    got = loaded_clean(code, "mavps.workspace", "mavps.session", "mavps.render", "rich", *STDLIB_NOT_NEEDED)
    assert [n for n, v in got.items() if v] == ["shutil"]  # click's help formatter asks it the terminal's width


def test_local_status_loads_no_network_or_temp_file_module(tmp_path):
    from mavps import Workspace

    ws = tmp_path / "ws"
    with Workspace.open(str(ws), agent="coordinator") as w:
        w.init()
        w.queue.add("a task", "x")
    code = f"from mavps.cli import cli\ncli.main(['--workspace', {str(ws)!r}, 'status'], standalone_mode=False)"
    got = loaded_clean(code, "rich", "paramiko", *STDLIB_NOT_NEEDED)
    assert [n for n, v in got.items() if v] == []


def test_help_is_printed_without_click_and_is_what_click_prints():
    """`mavps --help` on a terminal 80 columns wide or more prints mavps.cli.helptext.HELP, importing no click; the
    text is click's own (regenerate it with `python -m mavps.cli.helptext` after changing an option or a command)."""
    from mavps.cli.helptext import HELP, render

    assert HELP == render(), "mavps --help changed: run `python -m mavps.cli.helptext` to write it again"
    code = "import os\nos.environ['COLUMNS'] = '120'\nimport mavps.cli\nmavps.cli.main(['--help'])"
    assert loaded_clean(code, "click", "mavps.cli.app", "typing") == {"click": False, "mavps.cli.app": False,
                                                                      "typing": False}
    narrow = subprocess.run([sys.executable, "-m", "mavps", "--help"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "60"}, cwd="/")
    assert narrow.returncode == 0 and narrow.stdout != HELP and "  status " in narrow.stdout  # click, 58 wide
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 58
