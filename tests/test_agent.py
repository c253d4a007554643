"""The endpoint agent against a real ``vakta server run`` on loopback: detection, offline queue, crashes.

The agent runs as ``vakta agent run`` in its own process where a test needs
to stop or kill it; in process where it counts what it scanned.  Matches are
made with the harmless built-in test signature only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server.conftest import Served, vakta_command
from watchdog.events import FileSystemEvent
from watchdog.observers import Observer

from vakta import testsignature
from vakta.agent import core
from vakta.agent.core import Agent, Settings
from vakta.agent.watch import (
    WATCHED_EVENTS,
    ChangeHandler,
    Debouncer,
    default_paths,
    make_observer,
    new_mounts,
    read_mount_points,
)
from vakta.reporting import client as agent_client
from vakta.reporting import identity
from vakta.reporting.delivery import backoff
from vakta.reporting.identity import AGENT_FOLDER, IDENTITY_FILE, QUEUE_FILE
from vakta.reporting.queue import AlertQueue
from vakta.server.accounts import create_token
from vakta.server.db import Database
from vakta.server.models import Role

pytest.importorskip("watchdog")

FAST = ["--quiet-seconds", "0.3", "--heartbeat-seconds", "1", "--max-retry-seconds", "0.5", "--nice", "0"]
#: Full scans have their own tests (tests/test_agent_schedule.py); here they would race the drops.
FAST += ["--full-scan-interval", "0"]


# --------------------------------------------------------------------------- helpers


def wait_for(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def drop_signature(folder: Path, name: str) -> Path:
    """Write the test signature picture the way a download lands: a temporary name, then renamed."""
    path = folder / name
    partial = folder / f".{name}.part"
    partial.write_bytes(testsignature.image_bytes())
    partial.rename(path)
    return path


def queued(home: Path) -> int:
    with sqlite3.connect(home / AGENT_FOLDER / QUEUE_FILE) as db:
        return int(db.execute("SELECT count(*) FROM alerts WHERE refused IS NULL").fetchone()[0])


class Console:
    """A real console with an enrolled agent home and an analyst's view of the alerts."""

    def __init__(self, tmp: Path) -> None:
        (tmp / "server").mkdir()
        self.server = Served(f"sqlite:///{tmp / 'server' / 'console.db'}", tmp / "server")
        self.server.start()
        self.db = Database(self.server.database_url)
        self.analyst = self.server.client(self.token(Role.ANALYST))
        self.home = tmp / "agent-home"
        self.watched = tmp / "watched"
        self.watched.mkdir()
        self.agent: subprocess.Popen[bytes] | None = None

    def vakta(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*vakta_command(), "--home", str(self.home), *args], capture_output=True, text=True, timeout=60
        )

    def token(self, role: Role) -> str:
        """A new token, made straight in the console's database (quicker than the CLI)."""
        with self.db.write() as session:
            _, secret = create_token(session, role, f"test {role.value}", "test", None)
        return secret

    def enroll(self) -> None:
        token = self.token(Role.AGENT_ENROLMENT)
        done = self.vakta("agent", "enroll", "--server", self.server.base_url, "--token", token)
        assert done.returncode == 0, done.stderr

    def start_agent(self) -> None:
        command = [*vakta_command(), "--home", str(self.home), "-v", "agent", "run", "--only-watch"]
        with (self.home / "agent.log").open("ab") as log:
            self.agent = subprocess.Popen(
                [*command, "--watch", str(self.watched), *FAST], stdout=log, stderr=subprocess.STDOUT
            )
        # Watching has begun once the agent reports in.
        wait_for("the agent's first heartbeat", lambda: self.agents() and self.agents()[0]["last_seen_at"])
        wait_for("the agent to watch", lambda: "watching" in self.agent_log())

    def agent_log(self) -> str:
        return (self.home / "agent.log").read_text(errors="replace")

    def alerts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.analyst.get("/api/v1/alerts", params={"limit": 1000}).json()
        return result

    def agents(self) -> list[dict[str, Any]]:
        try:
            result: list[dict[str, Any]] = self.analyst.get("/api/v1/agents").json()
        except httpx.TransportError:
            return []
        return result

    def close(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.kill()
            self.agent.wait()
        self.analyst.close()
        self.server.stop()
        self.db.dispose()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    c = Console(tmp_path)
    c.enroll()
    yield c
    c.close()


# --------------------------------------------------------------------------- end to end


def test_run_without_enrolment_says_what_to_do(tmp_path: Path) -> None:
    done = subprocess.run(
        [*vakta_command(), "--home", str(tmp_path), "agent", "run", "--only-watch", "--watch", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "vakta agent enroll" in done.stderr


def test_dropped_signature_reaches_the_console_within_5_s(console: Console) -> None:
    folder = console.home / AGENT_FOLDER
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / IDENTITY_FILE).stat().st_mode) == 0o600
    ident = identity.load(console.home)
    assert ident.server == console.server.base_url and ident.secret.startswith("vka_")
    console.start_agent()
    (console.watched / "notes").mkdir()
    (console.watched / "notes" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a picture")
    started = time.monotonic()
    path = drop_signature(console.watched / "notes", "holiday.jpg")
    alerts = wait_for("the alert at the console", console.alerts, timeout=5)
    assert time.monotonic() - started < 5
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["path"] == str(path) and alert["test"] is True and alert["storage"] == "internal"
    assert alert["md5"] == testsignature.records()[0].hashes["md5"]
    assert {m["list"] for m in alert["matches"]} == {testsignature.LIST_NAME}
    assert alert["user"] and alert["size"] == len(testsignature.image_bytes())
    agent = wait_for(
        "a heartbeat after the scan", lambda: [a for a in console.agents() if a["list_version"]]
    )[0]
    assert agent["version"] and agent["list_version"].startswith("store-") and agent["status"] == "online"
    # The damaged picture cost nothing but itself: SIGTERM stops the agent cleanly.
    assert console.agent is not None
    console.agent.send_signal(signal.SIGTERM)
    assert console.agent.wait(20) == 0
    assert "agent stopped" in console.agent_log()


def test_server_down_then_back_every_alert_once(console: Console) -> None:
    console.start_agent()
    console.server.stop()
    for n in range(3):
        drop_signature(console.watched, f"copy-{n}.jpg")
    wait_for("three alerts queued on disk", lambda: queued(console.home) == 3)
    time.sleep(1.0)  # a few failed deliveries and heartbeats
    console.server.start()
    alerts = wait_for("three alerts", lambda: len(console.alerts()) >= 3 and console.alerts())
    time.sleep(1.0)  # anything sent twice would show by now
    alerts = console.alerts()
    assert sorted(Path(a["path"]).name for a in alerts) == ["copy-0.jpg", "copy-1.jpg", "copy-2.jpg"]
    wait_for("the queue emptied", lambda: queued(console.home) == 0)
    assert console.agent is not None
    console.agent.send_signal(signal.SIGTERM)
    assert console.agent.wait(20) == 0
    # An alert the console refuses as invalid is set aside; the others of its batch go through.
    agent = Agent(console.home, identity.load(console.home), Settings([], nice=0))
    good = console.watched / "scanned-by-hand.jpg"
    good.write_bytes(testsignature.image_bytes())
    assert agent.scan(str(good)) == 1
    agent.queue.put("bad", dict(agent.queue.batch(1)[0][1], idempotency_key="bad", storage="floppy"))
    agent.deliver(agent.queue.batch(10))
    assert agent.queue.pending() == 0 and agent.queue.refused() == 1
    assert len(console.alerts()) == 4 and console.alerts()[0]["path"] == str(good)
    agent.close()


def test_kill_9_between_detection_and_delivery_loses_nothing(console: Console) -> None:
    console.start_agent()
    console.server.stop()
    drop_signature(console.watched, "arrived.jpg")
    wait_for("the alert queued on disk", lambda: queued(console.home) == 1)
    with sqlite3.connect(console.home / AGENT_FOLDER / QUEUE_FILE) as db:
        key, body = db.execute("SELECT key, body FROM alerts").fetchone()
    assert console.agent is not None
    console.agent.send_signal(signal.SIGKILL)
    console.agent.wait()
    console.server.start()
    assert console.alerts() == []
    console.start_agent()
    alerts = wait_for("the alert after the restart", console.alerts)
    assert [a["idempotency_key"] for a in alerts] == [key]
    # Sent again (as after a crash between delivery and deletion): the console keeps it once.
    secret = identity.load(console.home).secret
    with console.server.client(secret) as agent:
        answer = agent.post("/api/v1/alerts", json={"alerts": [json.loads(body)]}).json()
    assert answer["new"] == 0 and answer["duplicates"] == 1
    assert len(console.alerts()) == 1


def test_lists_come_from_the_console_as_signed_bundles(console: Console, tmp_path: Path) -> None:
    known = tmp_path / "known.bin"
    known.write_bytes(os.urandom(4096))
    md5 = hashlib.md5(known.read_bytes()).hexdigest()
    (tmp_path / "partner.csv").write_text(f"id,category,md5\nP-1,A1,{md5}\n")
    server_cli = [*vakta_command(), "--home", str(console.server.home), "server"]
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=60)
    imported = run([*server_cli, "lists", "import", str(tmp_path / "partner.csv"), "--name", "partner"])
    assert imported.returncode == 0, imported.stderr
    key = run([*server_cli, "key", "show"]).stdout.strip()
    home = tmp_path / "pinned"
    token = console.token(Role.AGENT_ENROLMENT)
    enrol = ["--server", console.server.base_url, "--token", token, "--bundle-key", key]
    done = run([*vakta_command(), "--home", str(home), "agent", "enroll", *enrol])
    assert done.returncode == 0, done.stderr

    agent = Agent(home, identity.load(home), Settings([], nice=0))
    # A bundle changed on the way (or signed by another key) is refused; the lists in use stay.
    genuine = agent_client.get_bundle

    def tampered(*args: Any) -> tuple[bytes, str] | None:
        got = genuine(*args)
        assert got is not None
        return got[0][:-1] + bytes([got[0][-1] ^ 1]), got[1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(agent_client, "get_bundle", tampered)
        assert agent.pull_lists() is None and agent.health.bundle_refused
    assert agent.scan(str(known)) == 0
    assert "bundle refused" in agent.heartbeat_body()["list_version"]

    version = agent.pull_lists()
    assert version and not agent.health.bundle_refused
    assert agent.pull_lists() is None  # unchanged: 304
    agent._drop_lists()
    assert agent.scan(str(known)) == 1
    ((_, body),) = agent.queue.batch(10)
    assert [(m["list"], m["entry_id"], m["signal"]) for m in body["matches"]] == [("partner", "P-1", "md5")]
    assert agent.heartbeat_body()["list_version"] == f"bundle-{version}"
    agent.close()


# --------------------------------------------------------------------------- in process


@pytest.fixture
def idle_agent(tmp_path: Path) -> Agent:
    """An agent whose console is unreachable (alerts stay queued), not started."""
    home = tmp_path / "home"
    identity.save(home, identity.Identity("http://127.0.0.1:9", "agent-x", "vka_x", "laptop-1"))
    (tmp_path / "watched").mkdir()
    settings = Settings([tmp_path / "watched"], quiet=0.6, heartbeat_every=60, mount_poll=60, nice=0)
    settings.full_scan_every = 0  # tested in tests/test_agent_schedule.py
    return Agent(home, identity.load(home), settings)


@pytest.fixture
def offline_agent(idle_agent: Agent) -> Iterator[Agent]:
    """The same agent running in a thread."""
    agent = idle_agent
    runner = threading.Thread(target=agent.run)
    runner.start()
    wait_for("the observer", lambda: getattr(agent, "_observer", None))
    yield agent
    agent.stop()
    runner.join(20)
    assert not runner.is_alive()


def test_a_file_written_in_pieces_is_scanned_once(offline_agent: Agent, tmp_path: Path) -> None:
    data = testsignature.image_bytes()
    with (tmp_path / "watched" / "download.jpg").open("wb") as out:
        for start in range(0, len(data), len(data) // 5 + 1):
            out.write(data[start : start + len(data) // 5 + 1])
            out.flush()
            time.sleep(0.2)  # shorter than the quiet period: no scan in between
    wait_for("the alert queued", lambda: offline_agent.queue.pending() == 1, timeout=5)
    time.sleep(1.0)
    assert offline_agent.health.scanned == 1
    assert offline_agent.queue.pending() == 1


def test_a_new_volume_is_watched_and_scanned(offline_agent: Agent, tmp_path: Path) -> None:
    volume = tmp_path / "usb"
    (volume / "DCIM").mkdir(parents=True)
    (volume / "DCIM" / "a.jpg").write_bytes(testsignature.image_bytes())
    offline_agent.mounted(volume)
    wait_for("the existing file's alert", lambda: offline_agent.queue.pending() == 1, timeout=5)
    drop_signature(volume, "later.jpg")  # and the volume is watched from now on
    wait_for("the new file's alert", lambda: offline_agent.queue.pending() == 2, timeout=5)
    paths = sorted(body["path"] for _, body in offline_agent.queue.batch(10))
    assert paths == [str(volume / "DCIM" / "a.jpg"), str(volume / "later.jpg")]


def test_reads_in_watched_folders_cost_no_events(
    idle_agent: Agent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only changes reach the agent: its own reads while scanning (opens, read-only closes) do not."""
    seen: list[str] = []

    class Recording(ChangeHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            seen.append(event.event_type)
            super().on_any_event(event)

    monkeypatch.setattr(core, "ChangeHandler", Recording)
    observer = Observer()
    assert idle_agent.watch(observer, tmp_path / "watched")
    observer.start()
    try:
        path = tmp_path / "watched" / "a.txt"
        path.write_bytes(b"benign")
        wait_for("the write's events", lambda: "closed" in seen)
        seen.clear()
        for _ in range(5):
            path.read_bytes()
        time.sleep(0.5)
        assert seen == []
        assert len(idle_agent.debouncer) == 1
    finally:
        observer.stop()
        observer.join(10)
        idle_agent.close()


def test_the_same_file_version_is_one_alert(idle_agent: Agent, tmp_path: Path) -> None:
    path = tmp_path / "same.jpg"
    path.write_bytes(testsignature.image_bytes())
    assert idle_agent.scan(str(path)) + idle_agent.scan(str(path)) == 1
    assert idle_agent.queue.pending() == 1
    path.write_bytes(testsignature.image_bytes() + b"\0")  # a new version (found by PDQ): a new alert
    assert idle_agent.scan(str(path)) == 1
    assert idle_agent.queue.pending() == 2
    idle_agent.close()


# --------------------------------------------------------------------------- parts


def test_queue_survives_reopening_and_keys_are_unique(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    queue = AlertQueue(path)
    assert queue.put("k1", {"a": 1}) and not queue.put("k1", {"a": 2})
    queue.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    queue = AlertQueue(path)
    assert queue.batch(10) == [("k1", {"a": 1})]
    assert queue._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert queue._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    queue.delivered(["k1"])
    assert queue.pending() == 0
    queue.close()


def test_debouncer_waits_for_quiet() -> None:
    now = [0.0]
    debouncer = Debouncer(2.0, clock=lambda: now[0])
    debouncer.touch("/a")
    now[0] = 1.5
    debouncer.touch("/a")  # still being written: the wait starts again
    now[0] = 3.0
    assert debouncer.due() == []
    now[0] = 3.6
    assert debouncer.due() == ["/a"] and debouncer.due() == []


def test_debouncer_events_do_not_wake_the_scanning_loop() -> None:
    """A copy makes thousands of events; waking the scanner on each one cost the user's copy time."""
    debouncer = Debouncer(2.0)
    started = time.monotonic()
    for n in range(100):
        debouncer.touch(f"/f{n}")
    debouncer.wait(0.3)
    assert time.monotonic() - started >= 0.25
    debouncer.wake()
    started = time.monotonic()
    debouncer.wait(5.0)
    assert time.monotonic() - started < 1.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify batching is Linux's")
def test_observer_reads_a_burst_of_events_in_batches(tmp_path: Path) -> None:
    """Every file of a burst reaches the debouncer, in far fewer reads than events."""
    debouncer = Debouncer(0.0)
    observer = make_observer()
    observer.schedule(ChangeHandler(debouncer), str(tmp_path), recursive=True, event_filter=WATCHED_EVENTS)
    observer.start()
    try:
        for n in range(300):
            (tmp_path / f"f{n}.bin").write_bytes(b"x" * 100)
        seen: set[str] = set()
        deadline = time.monotonic() + 10
        while len(seen) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
            seen.update(debouncer.due())
        reads = observer._inotify_fd.reads  # type: ignore[attr-defined]
    finally:
        observer.stop()
        observer.join(5)
    assert seen == {str(tmp_path / f"f{n}.bin") for n in range(300)}
    assert 1 <= reads < 100  # 900 events (create, modify, close each), read one by one before


def test_new_mounts_under_watched_roots_only(tmp_path: Path) -> None:
    before = {"/", "/home"}
    after = before | {"/media/bob/USB", "/run/media/x/CARD", "/var/lib/docker/overlay"}
    roots = [Path("/media"), Path("/run/media")]
    assert new_mounts(before, after, roots) == ["/media/bob/USB", "/run/media/x/CARD"]
    table = tmp_path / "mountinfo"
    table.write_text("36 35 98:0 / /media/usb\\040stick rw - vfat /dev/sdb1 rw\n")
    assert read_mount_points(table) == {"/media/usb stick"}
    assert read_mount_points(tmp_path / "missing") == set()


def test_default_paths_per_os() -> None:
    linux = default_paths("linux")
    assert {Path("/home"), Path("/media"), Path("/run/media"), Path("/mnt")} <= set(linux)
    assert Path("/Volumes") in default_paths("darwin")


def test_backoff_doubles_and_is_capped() -> None:
    assert 0.8 <= backoff(1, 1.0, 300) <= 1.2
    assert 6.4 <= backoff(4, 1.0, 300) <= 9.6
    assert backoff(30, 1.0, 300) <= 360


def test_agent_help_is_fast_to_load() -> None:
    done = subprocess.run(
        [*vakta_command(), "agent", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert done.returncode == 0 and "enroll" in done.stdout and "run" in done.stdout
