"""`mavps board --html`: one self-contained page, agent text shown as text, a readable layered graph.

Pure tests check the layout (no overlap, layers follow dependencies), the timeline's attempts and the
escaping. The `browser` tests open the page in the real headless Chromium of the distribution (through
selenium and the distribution's chromedriver, never a downloaded one) and check through its DOM that every
task and dependency is drawn, that hostile text is text and ran nothing, and that no request left the page.
CI sets MAVPS_REQUIRE_BROWSER=1: there a missing Chromium is a failure, not a skip.
"""
from __future__ import annotations

import html.parser
import os
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mavps import Workspace
from mavps.cli import cli
from mavps.cli.board import write_every
from mavps.models import WorkerStatus
from mavps.render import html as board_html
from mavps.render.graph_layout import crossings, layers, layout, order
from mavps.render.safe import literal
from mavps.render.timeline import timeline

pytestmark = pytest.mark.usefixtures("clean_env")

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
REQUIRE_BROWSER = os.environ.get("MAVPS_REQUIRE_BROWSER") == "1"
#: Where the screenshot is kept (read before `clean_env` clears MAVPS_*); else the test's tmp_path.
ARTEFACTS = os.environ.get("MAVPS_ARTEFACTS")

#: Descriptions that would run, load or restyle something if they reached the page as markup.
HOSTILE = [
    "</script><script>window.pwned = 1</script>",
    "</style><script>window.pwned = 2</script><style>",
    '"><img src=x onerror="window.pwned = 3">',
    "<img src=http://127.0.0.1:9/beacon.png>",
    "</title></svg><script>window.pwned = 4</script>",
]


# ----- a workspace with a task in every status ------------------------------------------------------------
def build_workspace(path: Path) -> Workspace:
    """40 tasks: completed, failed for good, retried, released, cancelled (one while running), in progress,
    held, blocked by a cancelled dependency, needing a capability nobody has, waiting, plain pending; hostile
    descriptions among them; 4 workers (one offline); a hostile log message."""
    ws = Workspace.open(str(path))
    ws.init()
    workers = {"w-a": ["python"], "w-b": ["python", "docs"], "w-c": ["python"], "w-d": ["go"]}
    for wid, caps in workers.items():
        ws.workers.register(wid, caps)
    q = ws.queue
    done = []
    for i in range(12):
        deps = [done[-1]] if i % 3 == 2 else []
        done.append(q.add(f"Build part {i}", "x", depends_on=deps, requires=["docs"] if i == 4 else []).id)
    while True:
        got = [q.claim(w, workers[w]) for w in ("w-a", "w-b", "w-c")]
        for w, t in zip(("w-a", "w-b", "w-c"), got):
            if t is not None:
                q.complete(t.id, w, "ok")
        if not any(got):
            break
    for i in range(2):
        dead = q.add(f"Doomed {i}", "x", max_attempts=1)
        assert q.claim("w-a", ["python"]).id == dead.id
        q.fail(dead.id, "w-a", "no luck")
    retry = q.add("Flaky", "x")
    assert q.claim("w-b", ["python"]).id == retry.id
    q.fail(retry.id, "w-b", "flaky test")
    assert q.claim("w-c", ["python"]).id == retry.id
    q.release(retry.id, "w-c")
    cancelled = [q.add(f"Dropped {i}", "x", priority=50).id for i in range(3)]
    assert q.claim("w-a", ["python"]).id == cancelled[0]
    for tid in cancelled:
        q.cancel(tid)
    running = [q.add("Port to go", "x", requires=["go"], priority=100).id]
    running += [q.add(f"Running {i}", "x", priority=100).id for i in range(3)]
    for wid in ("w-d", "w-a", "w-b", "w-c"):
        assert q.claim(wid, workers[wid]).id in running
    for i in range(3):
        q.add(f"Draft {i}", "x", hold=True)
    for i in range(2):
        q.add(f"After a dropped one {i}", "x", depends_on=[cancelled[1]])
        q.add(f"Needs a GPU {i}", "x", requires=["gpu"])
    for i in range(3):
        q.add(f"After running {i}", "x", depends_on=[running[i], done[-1]])
    hostile = [q.add(h, "x", depends_on=[done[0]]).id for h in HOSTILE]
    while len(q.list()) < 40:
        q.add("More work", "x", depends_on=[running[-1]])
    ws.log.append("</script><script>window.pwned = 5</script>", agent="w-b")
    ws.workers.set_status("w-d", WorkerStatus.OFFLINE, "w-d stops")
    assert hostile and len(q.list()) == 40
    return ws


@pytest.fixture(scope="module")
def board_ws(tmp_path_factory: pytest.TempPathFactory) -> Any:
    ws = build_workspace(tmp_path_factory.mktemp("board") / "ws")
    yield ws
    ws.close()


# ----- the layout -------------------------------------------------------------------------------------
def random_dag(n: int, seed: int) -> dict[int, list[int]]:
    rng = random.Random(seed)
    return {i: sorted(rng.sample(range(1, i), k=min(i - 1, rng.choice([0, 1, 1, 2, 3])))) for i in range(1, n + 1)}


def overlapping(boxes: dict[int, Any]) -> list[tuple[int, int]]:
    items = sorted(boxes.items(), key=lambda kv: (kv[1].x, kv[1].y))
    out = []
    for i, (a, ba) in enumerate(items):
        for b, bb in items[i + 1:]:
            if bb.x >= ba.x + ba.w:
                break
            if ba.y < bb.y + bb.h and bb.y < ba.y + ba.h:
                out.append((a, b))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_layout_of_300_tasks_has_no_overlap_and_layers_follow_dependencies(seed):
    deps = random_dag(300, seed)
    lay = layout(deps, deps)
    assert set(lay.boxes) == set(deps)
    assert overlapping(lay.boxes) == []
    for tid, ds in deps.items():
        for d in ds:
            assert lay.boxes[d].layer < lay.boxes[tid].layer
            assert lay.boxes[d].x + lay.boxes[d].w < lay.boxes[tid].x  # every edge runs left to right
    assert all(b.x + b.w <= lay.width and b.y + b.h <= lay.height for b in lay.boxes.values())


def test_a_task_sits_one_layer_after_its_deepest_dependency():
    assert layers([1, 2, 3, 4], {2: [1], 3: [2], 4: [1, 3]}) == {1: 0, 2: 1, 3: 2, 4: 3}


def test_a_tall_layer_wraps_into_columns():
    lay = layout(range(1, 301), {}, max_rows=24)
    columns = {b.x for b in lay.boxes.values()}
    assert len(columns) == 13  # 300 / 24, not one column 300 tasks tall
    assert overlapping(lay.boxes) == []


def test_a_circle_of_dependencies_still_gets_a_layout():
    deps = {1: [3], 2: [1], 3: [2], 4: [3]}  # a hand edit can make one
    lay = layout(deps, deps)
    assert set(lay.boxes) == {1, 2, 3, 4} and overlapping(lay.boxes) == []
    assert lay.boxes[3].layer < lay.boxes[4].layer


def test_ordering_removes_a_crossing_the_id_order_has():
    deps = {3: [2], 4: [1]}  # in id order the edges 2->3 and 1->4 cross
    assert crossings([[1, 2], [3, 4]], deps) == 1
    assert crossings(order(layers([1, 2, 3, 4], deps), deps), deps) == 0


# ----- the timeline -----------------------------------------------------------------------------------
def rec(second: int, event: str, agent: str, task: int | None = None, **kw: Any) -> dict[str, Any]:
    stamp = (datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"timestamp": stamp, "event": event, "agent": agent, "task_id": task, **kw}


def test_timeline_has_a_bar_per_attempt_closed_by_whoever_ended_it():
    records = [
        rec(5, "task_completed", "w1", 9),          # claimed before the window: cut at its start
        rec(10, "task_claimed", "w1", 1), rec(20, "task_completed", "w1", 1),
        rec(11, "task_claimed", "w2", 2), rec(30, "lease_expired", "mavps", 2, previous_holder="w2"),
        rec(31, "task_claimed", "w1", 2), rec(35, "task_cancelled", "coordinator", 2),
        rec(40, "task_claimed", "w3", 3),
        rec(41, "lock_broken", "w2"), rec(42, "message", "coordinator", message="hi"),
    ]
    now = datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc)
    tl = timeline(records, now, ["w1", "w2", "w3", "w4"])
    bars = [(a.lane, a.task, a.outcome, a.cut) for a in tl.attempts]
    assert bars == [("w1", 9, "completed", True), ("w1", 1, "completed", False), ("w2", 2, "expired", False),
                    ("w1", 2, "cancelled", False), ("w3", 3, "running", False)]
    assert tl.lanes == ["w1", "w2", "w3", "w4", "coordinator"]
    assert [(m.lane, m.kind) for m in tl.marks] == [("w2", "lock"), ("coordinator", "message")]
    assert tl.end == now and tl.attempts[0].start == tl.start


# ----- escaping ---------------------------------------------------------------------------------------
class Elements(html.parser.HTMLParser):
    """Every element the page really has, and the text inside each <td class="... desc">."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[str] = []
        self.descs: list[str] = []
        self._in_desc = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(name for name, _ in attrs)
        self._in_desc = tag == "td" and "desc" in (dict(attrs).get("class") or "")
        if self._in_desc:
            self.descs.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_desc = False

    def handle_data(self, data: str) -> None:
        if self._in_desc:
            self.descs[-1] += data


def hostile_snapshot() -> dict[str, Any]:
    tasks = [{"id": i + 1, "status": "pending", "description": h, "requires": [h], "touches": [h],
              "depends_on": [i] if i else [], "claimed_by": h} for i, h in enumerate(HOSTILE)]
    log = [rec(1, "task_claimed", HOSTILE[0], 1), rec(2, "message", HOSTILE[1], message=HOSTILE[2])]
    return {"workspace": HOSTILE[3], "time": "2026-01-01T00:01:00Z", "counts": {}, "ready": [],
            "blocked": [{"id": 2, "reason": HOSTILE[4]}], "waiting": [],
            "workers": [{"id": h, "status": h, "online": True, "capabilities": [h], "current_task": 1,
                         "last_heartbeat": h} for h in HOSTILE],
            "recent": [{"timestamp": h, "agent": h, "event": h, "task_id": h, "message": h} for h in HOSTILE],
            "tasks": tasks, "log": log,
            "questions": [{"id": 3, "asked_by": h, "text": h} for h in HOSTILE[:1]],
            "reservations": [{"globs": [h], "by": h, "until": h, "reason": h} for h in HOSTILE]}


def test_hostile_text_everywhere_makes_no_element():
    page = board_html.page(hostile_snapshot())
    parsed = Elements()
    parsed.feed(page)
    assert "script" not in parsed.tags and "img" not in parsed.tags
    assert not [a for a in parsed.attrs if a in ("src", "href", "srcdoc") or a.startswith("on")]
    assert parsed.tags.count("style") == 1 and parsed.tags.count("title") == 1 + len(HOSTILE) + 2
    assert parsed.descs == HOSTILE  # shown whole, as text


def test_control_characters_are_shown_not_sent():
    page = board_html.page({**hostile_snapshot(), "tasks": [{"id": 1, "description": "a\x1b[2J\u202eb"}]})
    assert "\x1b" not in page and "\u202e" not in page and html.escape(literal("a\x1b[2J\u202eb")) in page


def test_the_policy_allows_the_one_style_and_nothing_else():
    page = board_html.page(hostile_snapshot())
    assert page.count("Content-Security-Policy") == 1 and "default-src 'none'" in page
    assert f"<style>{board_html.STYLE}</style>" in page and "script-src 'none'" in page


# ----- the command ------------------------------------------------------------------------------------
def test_board_html_to_stdout_and_to_a_file(board_ws, tmp_path):
    runner = CliRunner()
    out = runner.invoke(cli, ["-w", board_ws.location, "board", "--html", "-"], catch_exceptions=False)
    assert out.exit_code == 0 and out.output.startswith("<!DOCTYPE html>") and out.output.count('data-task-id=') > 40
    target = tmp_path / "b.html"
    done = runner.invoke(cli, ["-w", board_ws.location, "board", "--html", str(target)], catch_exceptions=False)
    assert done.exit_code == 0 and target.read_text().startswith("<!DOCTYPE html>")
    assert 'http-equiv="refresh"' not in target.read_text()


def test_watch_needs_a_file_not_stdout(board_ws):
    out = CliRunner().invoke(cli, ["-w", board_ws.location, "board", "--html", "-", "--watch"])
    assert out.exit_code == 2 and "give a path" in out.output


def test_watch_rewrites_the_page_which_reloads_itself(board_ws, tmp_path):
    target = tmp_path / "w.html"
    out = CliRunner().invoke(cli, ["-w", board_ws.location, "board", "--html", str(target), "--watch",
                                   "--interval", "1", "--max-seconds", "0"], catch_exceptions=False)
    assert out.exit_code == 0
    assert '<meta http-equiv="refresh" content="1">' in target.read_text()


def test_write_every_replaces_atomically_until_its_time_is_up_or_ctrl_c(tmp_path):
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "p.html"
    now = [0.0]
    pages = iter(f"page {i}" for i in range(100))
    seen = []

    def sleep(s: float) -> None:
        now[0] += s
        seen.append(target.read_text())
        assert [p.name for p in target.parent.iterdir()] == ["p.html"]  # no temp file left between writes

    assert write_every(pages.__next__, str(target), 1, 2, sleep=sleep, clock=lambda: now[0]) == 3
    assert seen == ["page 0", "page 1"] and target.read_text() == "page 2"

    def interrupt(s: float) -> None:
        raise KeyboardInterrupt

    assert write_every(lambda: "again", str(target), 5, None, sleep=interrupt) == 1


# ----- in a real browser ------------------------------------------------------------------------------
def artefacts(tmp_path: Path) -> Path:
    folder = Path(ARTEFACTS or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Any:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        if REQUIRE_BROWSER:
            pytest.fail(f"MAVPS_REQUIRE_BROWSER=1 but missing: {', '.join(missing)}")
        pytest.skip(f"BROWSER TESTS SKIPPED: missing {', '.join(missing)} (apt-get install chromium "
                    "chromium-driver; CI sets MAVPS_REQUIRE_BROWSER=1)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1200", "--no-first-run", "--disable-background-networking"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def requests_made(driver: Any) -> list[str]:
    import json

    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


@pytest.mark.browser
def test_the_page_in_chromium_shows_every_task_and_dependency_and_runs_nothing(board_ws, browser, tmp_path):
    page = tmp_path / "board.html"
    CliRunner().invoke(cli, ["-w", board_ws.location, "board", "--html", str(page)], catch_exceptions=False)
    browser.get_log("performance")  # what came before this page is not its doing
    browser.get(page.as_uri())
    shot = artefacts(tmp_path) / "board.png"
    browser.set_window_size(1400, max(1200, browser.execute_script("return document.body.scrollHeight")))
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    tasks = board_ws.queue.list()
    js = browser.execute_script
    shown = js("return [...document.querySelectorAll('#graph g.node[data-task-id]')].map(n => +n.dataset.taskId)")
    assert sorted(shown) == [t.id for t in tasks]
    edges = js("return [...document.querySelectorAll('#graph path.edge')].map(e => [+e.dataset.from, +e.dataset.to])")
    assert sorted(map(tuple, edges)) == sorted((d, t.id) for t in tasks for d in t.depends_on)
    for t in tasks:
        if t.description in HOSTILE:
            cell = js(f"return document.querySelector('#tasks tr[data-task-id=\"{t.id}\"] td.desc').textContent")
            assert cell == t.description
    assert js("return typeof window.pwned") == "undefined"
    assert js("return document.querySelectorAll('script, img, iframe, object, embed').length") == 0
    completed = js("return getComputedStyle(document.querySelector('g.st-completed rect')).fill")
    assert completed == "rgb(181, 230, 198)"  # the one inline style passed the policy by its hash
    statuses = set(js("return [...document.querySelectorAll('#graph g.node')].map(n => n.dataset.status)"))
    assert {"pending", "held", "blocked", "in_progress", "completed", "failed", "cancelled"} <= statuses
    assert js("return document.querySelectorAll('#timeline g.attempt').length") == 21  # every claim, one bar
    assert js("return document.querySelectorAll('#timeline g.mark[data-kind=message]').length") == 1
    assert js("return document.querySelectorAll('#workers tr[data-worker]').length") == 4

    assert js("return performance.getEntriesByType('resource').length") == 0
    assert set(requests_made(browser)) == {page.as_uri()}  # the file itself, nothing else



@pytest.mark.timeout(90)
def test_demo_ends_by_writing_the_board_and_printing_its_path(tmp_path):
    out = CliRunner().invoke(cli, ["demo", "--workers", "2", "--tasks", "4"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    path = out.output.split("board: ")[-1].split(" (open it")[0]
    try:
        text = Path(path).read_text()
        assert text.count('<g class="node st-completed" data-task-id=') == 4
        assert "(temporary, removed)" in out.output  # the page outlives the temporary workspace
    finally:
        os.unlink(path)


def test_json_says_where_the_page_went(board_ws, tmp_path):
    import json

    target = tmp_path / "j.html"
    out = CliRunner().invoke(cli, ["-w", board_ws.location, "board", "--html", str(target), "--json"])
    assert out.exit_code == 0 and json.loads(out.stdout) == {"path": str(target), "written": 1}
    piped = CliRunner().invoke(cli, ["-w", board_ws.location, "board", "--html", "-", "--json"])
    assert json.loads(piped.stdout)["html"].startswith("<!DOCTYPE html>")


def test_ctrl_c_ends_watch_cleanly_leaving_the_last_whole_page(board_ws, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "live"
    out.mkdir()
    target = out / "board.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAVPS_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen([sys.executable, "-m", "mavps", "-w", board_ws.location, "board", "--html", str(target),
                             "--watch", "--interval", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        for _ in range(300):  # until the first page is there
            if target.exists():
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "wrote" in stdout and "times" in stdout and "Traceback" not in stderr
    assert [p.name for p in out.iterdir()] == ["board.html"]  # no temp file left behind
    assert target.read_text().rstrip().endswith("</html>")


def test_a_silent_active_worker_is_shown_overdue_and_an_offline_one_is_not():
    now = datetime(2026, 1, 1, 1, tzinfo=timezone.utc)
    rows = [{"id": "w1", "status": "active", "online": False, "last_heartbeat": "2026-01-01T00:00:00Z"},
            {"id": "w2", "status": "offline", "online": False, "last_heartbeat": "2026-01-01T00:59:58Z"},
            {"id": "w3", "status": "active", "online": True, "last_heartbeat": None}]
    table = board_html.workers_table(rows, [{"id": 1, "status": "completed", "claimed_by": "w2"}], now)
    assert "<td>active (heartbeat overdue)</td><td></td><td>60 min ago</td>" in table
    assert "<td>offline</td><td></td><td>2 s ago</td><td></td><td>1</td>" in table
    assert "<td>active</td><td></td><td>never</td>" in table


def test_a_node_says_what_its_task_needs_touches_and_waits_for():
    snap = {"time": "2026-01-01T00:00:00Z", "waiting": [{"id": 2, "reason": "waits for #1"}],
            "tasks": [{"id": 1, "status": "in_progress", "claimed_by": "w1", "attempts": 2, "max_attempts": 3},
                      {"id": 2, "status": "pending", "depends_on": [1], "requires": ["docs"],
                       "touches": ["src/*.py"]}]}
    page = board_html.page(snap)
    node = page.split('data-task-id="2"', 1)[1].split("</g>", 1)[0]
    assert "needs docs · touches src/*.py" in node and "waits for #1" in node
    assert "attempt 2 of 3" in page.split('data-task-id="1"', 1)[1].split("</g>", 1)[0]


def test_a_question_and_a_reservation_show_on_the_page():
    snap = {"time": "2026-01-01T00:00:00Z", "waiting": [{"id": 2, "reason": "waits for src/** reserved by ann"}],
            "questions": [{"id": 1, "asked_by": "w1", "text": "Which port?"}],
            "reservations": [{"globs": ["src/**"], "by": "ann", "until": "2026-01-01T01:00:00Z", "reason": "hotfix"}],
            "tasks": [{"id": 1, "status": "in_progress", "claimed_by": "w1"},
                      {"id": 2, "status": "pending", "touches": ["src/a.py"]}]}
    page = board_html.page(snap)
    assert "waits for an answer: Which port?" in page.split('data-task-id="1"', 1)[1].split("</g>", 1)[0]
    assert "reserved by ann" in page.split('data-task-id="2"', 1)[1].split("</g>", 1)[0]
    table = page.split('<table id="reservations">', 1)[1].split("</table>", 1)[0]
    assert "src/**" in table and "ann" in table and "hotfix" in table
    assert 'id="reservations"' not in board_html.page({**snap, "reservations": []})
