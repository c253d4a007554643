"""Scheduled full scans: at start and every interval, low priority, a CPU budget, the cache, progress.

End to end against a real ``vakta server run`` (SQLite and PostgreSQL) with the
agent as ``vakta agent run`` / ``vakta agent scan`` in its own process; in
process where a test counts what was read or how much CPU was spent.  Matches
are made with the harmless built-in test signature only; other files are
generated noise pictures and text.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest
from PIL import Image
from server.conftest import Console as AppConsole
from server.conftest import Served, console, database_url, db, vakta_command  # noqa: F401 - fixtures
from server.test_ui import _browser
from test_agent import FAST, Console, drop_signature, wait_for

from vakta import testsignature
from vakta.agent.core import Agent, Settings
from vakta.agent.schedule import (
    CACHE_FILE,
    LOCK_FILE,
    STATE_FILE,
    CpuBudget,
    FullScan,
    Job,
    _exclusive,
    load_state,
)
from vakta.items import Item
from vakta.reporting import identity
from vakta.reporting.identity import AGENT_FOLDER
from vakta.server.models import Role

pytest.importorskip("watchdog")


def noise_pictures(folder: Path, count: int, size: tuple[int, int] = (640, 480)) -> list[Path]:
    """Benign generated pictures (random noise): each costs real hashing work (digests and PDQ)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    paths = []
    for n in range(count):
        path = folder / f"noise-{n}.png"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def tree_with_signature(root: Path) -> Path:
    """A folder tree as a laptop has it: pictures, text, a damaged picture and the test signature."""
    noise_pictures(root / "Pictures", 3, (160, 120))
    (root / "Documents").mkdir(parents=True)
    (root / "Documents" / "notes.txt").write_text("benign words\n" * 100)
    (root / "Documents" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a picture")
    signature = root / "Downloads" / "holiday.jpg"
    signature.parent.mkdir()
    signature.write_bytes(testsignature.image_bytes())
    return signature


# --------------------------------------------------------------------------- end to end


class ScanConsole(Console):
    """The agent tests' console on the database under test, with full scans switched on."""

    def __init__(self, tmp: Path, url: str) -> None:
        (tmp / "server").mkdir()
        self.server = Served(url, tmp / "server")
        self.server.start()
        from vakta.server.db import Database

        self.db = Database(self.server.database_url)
        self.analyst = self.server.client(self.token(Role.ANALYST))
        self.home = tmp / "agent-home"
        self.watched = tmp / "watched"
        self.watched.mkdir()
        self.agent: subprocess.Popen[bytes] | None = None

    def start_scanning_agent(self, *extra: str) -> None:
        command = [*vakta_command(), "--home", str(self.home), "-v", "agent", "run", "--only-watch"]
        with (self.home / "agent.log").open("ab") as log:
            self.agent = subprocess.Popen(
                [*command, "--watch", str(self.watched), *FAST, *extra], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for("the agent to watch", lambda: "watching" in self.agent_log(), timeout=30)

    def stop_agent(self) -> None:
        assert self.agent is not None
        self.agent.send_signal(signal.SIGTERM)
        assert self.agent.wait(30) == 0


@pytest.fixture
def scan_console(tmp_path: Path, database_url: str) -> Iterator[ScanConsole]:  # noqa: F811
    c = ScanConsole(tmp_path, database_url)
    c.enroll()
    yield c
    c.close()


def test_full_scan_at_start_then_one_off_scan_from_the_cache(scan_console: ScanConsole) -> None:
    c = scan_console
    signature = tree_with_signature(c.watched)
    c.start_scanning_agent("--full-scan-interval", "24", "--scan-cpu-percent", "100")
    # What was already on disk before the agent started is found by the full scan at start.
    alerts = wait_for("the full scan's alert at the console", c.alerts, timeout=30)
    assert [a["path"] for a in alerts] == [str(signature)]
    alert = alerts[0]
    assert alert["test"] is True and alert["storage"] == "internal" and alert["user"]
    assert alert["md5"] == testsignature.records()[0].hashes["md5"]
    assert {m["list"] for m in alert["matches"]} == {testsignature.LIST_NAME}

    def finished() -> dict[str, Any] | None:
        agents = c.agents()
        return agents[0] if agents and agents[0]["last_scan_at"] else None

    agent = wait_for("last_scan_at in a heartbeat", finished, timeout=30)
    progress = agent["scan_progress"]
    assert progress["state"] == "idle" and progress["outcome"] == "completed"
    assert progress["files"] == 6 and progress["matches"] == 1 and progress["cache_hits"] == 0
    assert progress["errors"] == 1  # the damaged picture: an error, and the scan went on
    assert progress["bytes"] == sum(p.stat().st_size for p in c.watched.rglob("*") if p.is_file())

    # The watcher finds a new file; a full scan afterwards (one-off, as from cron) adds no second alert.
    later = drop_signature(c.watched, "later.jpg")
    wait_for("the watcher's alert", lambda: len(c.alerts()) == 2)
    c.stop_agent()
    first_scan = agent["last_scan_at"]
    done = c.vakta("agent", "scan", "--only-watch", "--watch", str(c.watched), "--scan-cpu-percent", "100")
    assert done.returncode == 0, done.stderr
    assert sorted(a["path"] for a in c.alerts()) == sorted([str(signature), str(later)])
    agent = c.agents()[0]
    progress = agent["scan_progress"]
    assert agent["last_scan_at"] > first_scan and progress["outcome"] == "completed"
    # Only the damaged picture (errors are never cached) was read: the file the watcher scanned
    # since came from the cache the watcher filled.
    assert progress["files"] == 7 and progress["cache_hits"] == 6 and progress["matches"] == 2

    # Restarted within the interval: no full scan at start (the last one is recent).
    c.start_scanning_agent("--full-scan-interval", "24")
    time.sleep(3)
    assert c.agent_log().count("full scan of") == 1
    c.stop_agent()
    state = load_state(c.home / AGENT_FOLDER / STATE_FILE)
    assert state["finished_at"].isoformat().startswith(agent["last_scan_at"][:19])


def test_console_keeps_typed_bounded_scan_progress(console: AppConsole) -> None:  # noqa: F811
    agent_id, secret = console.enrol("laptop-7")
    headers = console.headers(secret)
    running = {"state": "running", "started_at": "2026-11-30T02:00:00+00:00", "finished_at": None,
               "files": 1200, "bytes": 2**40, "errors": 3, "matches": 1, "cache_hits": 1100}  # fmt: skip
    for wrong in (
        {**running, "thumbnail": "x"},  # unknown keys are refused, as everywhere in the API
        {**running, "state": "paused"},
        {**running, "files": -1},
        {**running, "bytes": 2**63},
        {**running, "started_at": "2026-11-30T02:00:00"},  # no time zone
    ):
        beat = console.client.post("/api/v1/agents/heartbeat", json={"scan_progress": wrong}, headers=headers)
        assert beat.status_code == 422, wrong
    beat = {"last_scan_at": "2026-11-29T03:00:00+00:00", "scan_progress": running}
    assert console.client.post("/api/v1/agents/heartbeat", json=beat, headers=headers).status_code == 200
    (shown,) = console.client.get("/api/v1/agents", headers=console.as_(Role.AUDITOR)).json()
    assert shown["id"] == agent_id and shown["last_scan_at"].startswith("2026-11-29T03:00:00")
    progress = shown["scan_progress"]
    assert {k: progress[k] for k in ("state", "files", "bytes", "cache_hits")} == {
        "state": "running", "files": 1200, "bytes": 2**40, "cache_hits": 1100}  # fmt: skip
    page = _browser(console, "alice", Role.ANALYST)[0].get("/ui/agents").text
    assert "full scan running since 2026-11-30 02:00:00 UTC: 1200 files, 3 errors, 1 matched" in page
    # An agent of before full scans sends none: the field is cleared, not kept stale.
    assert console.client.post("/api/v1/agents/heartbeat", json={}, headers=headers).status_code == 200
    (shown,) = console.client.get("/api/v1/agents", headers=console.as_(Role.AUDITOR)).json()
    assert shown["scan_progress"] is None and "full scan running" not in (
        _browser(console, "bob", Role.ANALYST)[0].get("/ui/agents").text
    )


# --------------------------------------------------------------------------- in process


def job(home: Path, *paths: Path, cpu_percent: float = 100.0) -> Job:
    return Job(str(home), "agent-x", "laptop-1", [str(p) for p in paths], cpu_percent, nice=0)


def run_scan(scan_job: Job) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    messages: list[dict[str, Any]] = []
    end = FullScan(scan_job, messages.append, threading.Event()).run()
    return end, messages


def test_unchanged_files_are_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "tree"
    signature = tree_with_signature(tree)
    unreadable = tree / "Documents" / "locked.bin"
    unreadable.write_bytes(os.urandom(1000))
    opened: list[str] = []
    genuine = Item.open

    def counting_open(item: Item) -> BinaryIO:
        opened.append(os.fsdecode(item.path))
        if item.path == os.fsencode(unreadable):
            raise PermissionError(13, "Permission denied")
        return genuine(item)

    monkeypatch.setattr(Item, "open", counting_open)
    home = tmp_path / "home"
    end, messages = run_scan(job(home, tree))
    assert end["outcome"] == "completed" and end["done"]["files"] == 7
    assert end["done"]["errors"] == 2 and end["done"]["matches"] == 1  # locked.bin and broken.jpg
    alerts = [m for m in messages if "alert" in m]
    assert [m["alert"]["path"] for m in alerts] == [str(signature)]
    assert str(unreadable) in opened and len(set(opened)) == 7

    opened.clear()
    end, messages = run_scan(job(home, tree))
    # Nothing but the files that failed last time is opened; the match is found again from the cache.
    assert sorted(set(opened)) == sorted([str(unreadable), str(tree / "Documents" / "broken.jpg")])
    assert end["done"]["cache_hits"] == 5 and end["done"]["matches"] == 1
    assert [m["key"] for m in messages if "alert" in m] == [a["key"] for a in alerts]

    (tree / "Documents" / "notes.txt").write_text("changed words\n")
    opened.clear()
    end, _ = run_scan(job(home, tree))
    assert str(tree / "Documents" / "notes.txt") in opened and end["done"]["cache_hits"] == 4


def test_the_agents_own_state_is_not_scanned(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / AGENT_FOLDER).mkdir(parents=True)
    (home / AGENT_FOLDER / "copy.jpg").write_bytes(testsignature.image_bytes())
    (tmp_path / "other.txt").write_text("benign")
    end, messages = run_scan(job(home, tmp_path))
    assert end["done"]["files"] == 1 and not [m for m in messages if "alert" in m]


def test_cpu_budget_is_honoured(tmp_path: Path) -> None:
    noise_pictures(tmp_path / "tree", 16)
    budget = 25.0
    end, _ = run_scan(job(tmp_path / "home", tmp_path / "tree", cpu_percent=budget))
    assert end["done"]["files"] == 16 and end["done"]["cache_hits"] == 0
    share = end["cpu_seconds"] / end["wall_seconds"]
    assert end["slept_seconds"] > 0
    assert share < 2 * budget / 100, f"{share:.2f} of a core against a budget of {budget}%"


def test_cpu_budget_sleeps_what_the_cpu_used_owes() -> None:
    clock = {"cpu": 0.0, "wall": 0.0}
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock["wall"] += seconds

    budget = CpuBudget(25, sleep, lambda: clock["cpu"], lambda: clock["wall"], max_credit=2.0)
    clock["cpu"] = clock["wall"] = 1.0  # one second at full speed: owes three more of wall time
    assert budget.pace() == pytest.approx(3.0)
    assert budget.pace() == 0.0
    clock["wall"] += 100.0  # a long idle stretch earns only two seconds of credit
    assert budget.pace() == 0.0
    clock["cpu"] += 1.0  # 1 s of CPU needs 4 s of wall: 2 credited, 2 owed
    assert budget.pace() == pytest.approx(2.0)
    assert CpuBudget(100, sleep).pace() == 0.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="I/O priority is set on Linux only")
def test_the_scan_process_runs_at_low_cpu_and_idle_io_priority() -> None:
    psutil = pytest.importorskip("psutil")
    code = (
        "import os, psutil; from vakta.agent.schedule import lower_priority; lower_priority(19);"
        "print(os.nice(0), int(psutil.Process().ionice().ioclass))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["19", str(int(psutil.IOPRIO_CLASS_IDLE))]


def test_one_full_scan_at_a_time_and_state_files_are_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    identity.save(home, identity.Identity("http://127.0.0.1:9", "agent-x", "vka_x", "laptop-1"))
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "a.txt").write_text("benign")
    command = [
        *vakta_command(),
        "--home",
        str(home),
        "agent",
        "scan",
        "--only-watch",
        "--watch",
        str(tmp_path / "w"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "full scan completed" in done.stderr, done.stderr
    for name in (STATE_FILE, CACHE_FILE, LOCK_FILE):
        assert stat.S_IMODE((home / AGENT_FOLDER / name).stat().st_mode) == 0o600, name
    held = _exclusive(home / AGENT_FOLDER / LOCK_FILE)  # as a running agent's scan holds it
    assert held is not None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        held.close()
    assert done.returncode == 2 and "another full scan is running" in done.stderr, done.stderr


@pytest.fixture
def scanning_agent(tmp_path: Path) -> Iterator[Agent]:
    """An agent whose console is unreachable (alerts stay queued), with full scans every 2 s."""
    home = tmp_path / "home"
    identity.save(home, identity.Identity("http://127.0.0.1:9", "agent-x", "vka_x", "laptop-1"))
    (tmp_path / "watched").mkdir()
    settings = Settings([tmp_path / "watched"], quiet=0.3, heartbeat_every=60, mount_poll=60, nice=0)
    settings.full_scan_every = 2.0
    agent = Agent(home, identity.load(home), settings)
    yield agent
    agent.stop()


def run_in_thread(agent: Agent) -> threading.Thread:
    runner = threading.Thread(target=agent.run)
    runner.start()
    return runner


def test_watcher_alerts_are_not_delayed_by_a_running_full_scan(scanning_agent: Agent, tmp_path: Path) -> None:
    agent = scanning_agent
    noise_pictures(tmp_path / "watched" / "old", 40)
    agent.settings.scan_cpu_percent = 5  # a slow scan: it is still running when the file arrives
    runner = run_in_thread(agent)
    try:
        wait_for("the full scan under way", lambda: agent.health.scan_progress.get("files"), timeout=30)
        drop_signature(tmp_path / "watched", "arrived.jpg")
        started = time.monotonic()
        wait_for("the watcher's alert", lambda: agent.queue.pending() == 1, timeout=5)
        assert time.monotonic() - started < 5
        body = agent.heartbeat_body()
        assert body["scan_progress"]["state"] == "running" and body["last_scan_at"] is None
        assert 0 < body["scan_progress"]["files"] < 40
    finally:
        agent.stop()
        runner.join(40)
    assert not runner.is_alive()
    assert agent.health.scan_progress["outcome"] == "stopped" and agent.health.last_scan_at is None
    assert not (agent.home / AGENT_FOLDER / STATE_FILE).exists()


def test_files_the_watcher_scanned_come_from_the_cache_in_the_full_scan(
    scanning_agent: Agent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = tmp_path / "watched"
    arrived = drop_signature(watched, "arrived.jpg")
    (watched / "notes.txt").write_text("benign words\n")
    assert scanning_agent.scan(str(arrived)) == 1  # as the watcher does once the file is quiet
    scanning_agent.close()
    opened: list[str] = []
    genuine = Item.open

    def counting_open(item: Item) -> BinaryIO:
        opened.append(os.fsdecode(item.path))
        return genuine(item)

    monkeypatch.setattr(Item, "open", counting_open)
    end, messages = run_scan(job(scanning_agent.home, watched))
    assert end["done"]["files"] == 2 and end["done"]["cache_hits"] == 1 and end["done"]["matches"] == 1
    assert opened == [str(watched / "notes.txt")]  # the arrived file was not read again
    assert [m["alert"]["path"] for m in messages if "alert" in m] == [str(arrived)]


def test_full_scans_repeat_every_interval(scanning_agent: Agent, tmp_path: Path) -> None:
    agent = scanning_agent
    (tmp_path / "watched" / "a.txt").write_text("benign")
    runner = run_in_thread(agent)
    finished: list[str] = []

    def scans() -> int:
        last = agent.health.last_scan_at
        if last is not None and (not finished or finished[-1] != last.isoformat()):
            finished.append(last.isoformat())
        return len(finished) >= 2

    try:
        wait_for("two full scans", scans, timeout=40)
    finally:
        agent.stop()
        runner.join(40)
    state = json.loads((agent.home / AGENT_FOLDER / STATE_FILE).read_text())
    assert state["progress"]["files"] == 1 and state["progress"]["cache_hits"] in (0, 1)
    assert agent.health.scan_progress["state"] == "idle"


def test_no_full_scan_when_switched_off(scanning_agent: Agent, tmp_path: Path) -> None:
    agent = scanning_agent
    agent.settings.full_scan_every = 0
    runner = run_in_thread(agent)
    time.sleep(2)
    agent.stop()
    runner.join(20)
    assert agent.health.last_scan_at is None and agent.health.scan_progress == {"state": "idle"}
