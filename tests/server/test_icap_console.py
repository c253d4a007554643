"""ICAP alerts reach a real console as a network detection, through the agent's offline-first delivery."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from vakta import testsignature
from vakta.icap.alerts import AlertSink
from vakta.icap.console import QUEUE_FILE, ConsoleReporter
from vakta.icap.filter import Examiner, web_limits
from vakta.icap.urls import UrlIndex, stored_value
from vakta.lists.store import EntryRow
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Matcher
from vakta.reporting import identity
from vakta.signals.model import HashOptions

from .conftest import Served, vakta_command


def _enrolled_home(served: Served, tmp_path: Path) -> Path:
    home = tmp_path / "proxy-home"
    token = served.token("agent-enrolment")
    command = [*vakta_command(), "--home", str(home), "agent", "enroll", "--server", served.base_url]
    done = subprocess.run(
        [*command, "--token", token], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return home


def _alerts(served: Served, token: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    with served.client(token) as client:
        while time.monotonic() < deadline:
            alerts: list[dict[str, Any]] = client.get("/api/v1/alerts").json()
            if len(alerts) >= count:
                return alerts
            time.sleep(0.1)
    raise AssertionError(f"fewer than {count} alerts at the console")


def test_blocked_body_and_listed_url_become_network_alerts_at_the_console(
    served: Served, tmp_path: Path
) -> None:
    home = _enrolled_home(served, tmp_path)
    enrolled = identity.load(home)
    sink = AlertSink(tmp_path / "unused.jsonl", None, ConsoleReporter(home, enrolled))
    matcher = Matcher(ListIndex.build(testsignature.entry_rows()))
    findings = Examiner(matcher, HashOptions(), None, web_limits(10.0))(
        testsignature.image_bytes(), "http://pics.example/sig.jpg"
    )
    sink.matched(findings, "10.0.0.5", None)
    url = "bad.example/dir/"
    index = UrlIndex([EntryRow("urls", "url", stored_value("url", url), url, "1", None, "url", "t")])
    sink.url_listed(
        "http://bad.example/dir/page.html",
        index.lookup("http://bad.example/dir/page.html"),
        "10.0.0.6",
        "bob",
    )
    alerts = _alerts(served, served.token("auditor"), 2)
    sink.close()
    by_path = {a["path"]: a for a in alerts}
    picture = by_path["http://pics.example/sig.jpg"]
    assert picture["storage"] == "network" and picture["user"] == "10.0.0.5"
    assert picture["host"] == enrolled.hostname and picture["test"] is True
    assert picture["md5"] == findings[0].signals.md5
    assert {m["list"] for m in picture["matches"]} == {testsignature.LIST_NAME}
    listed = by_path["http://bad.example/dir/page.html"]
    assert (
        listed["user"] == "bob"
        and listed["type"] == "text/uri-list"
        and listed["matches"][0]["list"] == "urls"
    )
    assert not (tmp_path / "unused.jsonl").exists()  # the console took them: no local log


def test_alerts_wait_on_disk_while_the_console_is_down(served: Served, tmp_path: Path) -> None:
    home = _enrolled_home(served, tmp_path)
    served.stop()
    reporter = ConsoleReporter(home, identity.load(home))
    matcher = Matcher(ListIndex.build(testsignature.entry_rows()))
    findings = Examiner(matcher, HashOptions(), None, web_limits(10.0))(
        testsignature.image_bytes(), "http://x.example/a.jpg"
    )
    AlertSink(None, None, reporter).matched(findings, "10.0.0.7", None)
    reporter.close()  # a restart of the ICAP service: the alert stays queued
    assert (identity.agent_folder(home) / QUEUE_FILE).exists()
    served.start()
    again = ConsoleReporter(home, identity.load(home))
    try:
        (alert,) = _alerts(served, served.token("auditor"), 1)
        assert alert["path"] == "http://x.example/a.jpg" and alert["user"] == "10.0.0.7"
    finally:
        again.close()


def test_icap_console_needs_an_enrolled_home(tmp_path: Path) -> None:
    command = [*vakta_command(), "--home", str(tmp_path), "icap", "--console", "--listen", "127.0.0.1:1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "vakta agent enroll" in done.stderr
