"""SIEM forwarding from the console: real local receivers (syslog over TCP, a signed webhook, SMTP).

Alerts are posted through the API as an agent would; the forwarder follows
the audit log from its cursor and sends each alert and each incident change.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from listeners import SECRET, SYSLOG_LINE, Hook, Mailbox, StreamSyslog, free_port, parse_cef

from vakta.notify import IncidentEvent, cef
from vakta.notify.syslog import format_message
from vakta.server.app import create_app
from vakta.server.db import Database
from vakta.server.forwarding import Destination, Forwarder, Forwarding, destination_name
from vakta.server.models import ForwardCursor
from vakta.server.settings import Settings

from .conftest import Console, alert, vakta_command

PUBLIC = "https://console.example.org"
#: One attempt per batch inside the notifier: the forwarder's own backoff does the retrying.
ONCE = "retries=0&timeout=5"
ALERT_KEYS = {
    "version", "id", "time", "test", "host", "user", "storage", "path", "location", "inside",
    "parent_md5", "deleted", "size", "type", "md5", "sha1", "sha256", "pdq", "matches", "tool",
    "incident", "url", "sent_at",
}  # fmt: skip


@pytest.fixture
def syslog() -> Iterator[StreamSyslog]:
    server = StreamSyslog()
    yield server
    server.close()


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    monkeypatch.setenv("VAKTA_HOOK_SECRET", SECRET)
    server = Hook()
    yield server
    server.server.shutdown()
    server.server.server_close()


def syslog_url(port: int) -> str:
    return f"syslog+tcp://127.0.0.1:{port}?{ONCE}"


def hook_url(hook: Hook) -> str:
    return f"http://127.0.0.1:{hook.port}/soc/vakta?team=a&secret-env=VAKTA_HOOK_SECRET&{ONCE}"


def forwarder(console: Console, url: str) -> Forwarder:
    return Forwarder(console.db, Destination.parse(url), public_url=PUBLIC)


def cef_messages(messages: queue.Queue[bytes], count: int, timeout: float = 20) -> list[dict[str, str]]:
    """``count`` syslog messages as CEF extensions (with the class id as ``_class``); no more may follow."""
    out = []
    for _ in range(count):
        parsed = SYSLOG_LINE.match(messages.get(timeout=timeout).decode())
        assert parsed is not None
        header, ext = parse_cef(parsed["msg"])
        out.append({**ext, "_class": header[4], "_msgid": parsed["msgid"], "_severity": header[6]})
    return out


def verified(hook: Hook) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Every webhook request, its HMAC checked as docs/alerts.md tells a receiver to."""
    out = []
    for path, headers, body in hook.requests:
        assert path == "/soc/vakta?team=a"  # Vakta's own options taken out
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Vakta-Signature"], expected)
        data = json.loads(body)
        assert (
            str(data["sent_at"]) == headers["X-Vakta-Timestamp"] and data["id"] == headers["X-Vakta-Alert-Id"]
        )
        out.append((headers, data))
    return out


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def cursor(db: Database, url: str) -> ForwardCursor:
    with db.read() as session:
        row = session.get(ForwardCursor, destination_name(url))
        assert row is not None
        return row


def submit(console: Console, secret: str, *alerts: dict[str, Any]) -> dict[str, int]:
    """Alerts posted as the agent: idempotency key -> the console's alert id."""
    return {r["idempotency_key"]: r["alert_id"] for r in console.submit(secret, *alerts)["results"]}


# --------------------------------------------------------------------------- destinations


def test_a_destination_is_named_without_credentials_and_keeps_its_name_across_tuning() -> None:
    hook = "https://soar.example.org/hooks/T0KEN123?secret-env=VAKTA_HOOK_SECRET&team=soc"
    name = destination_name(hook)
    assert name.startswith("https://soar.example.org:443/…#") and "T0KEN123" not in name
    assert "VAKTA_HOOK_SECRET" not in name and len(name) <= 128
    assert destination_name(hook + "&retries=5&timeout=3") == name  # tuning keeps the cursor
    assert destination_name(hook.replace("team=soc", "team=it")) != name  # the receiver's own query counts
    assert destination_name("syslog+tls://SIEM.example.org") == destination_name(
        "syslog+tls://siem.example.org:6514?ca=/etc/ca.pem"
    )
    mail = "smtp://alerts@mail.example.org?to=soc@example.org&password-env=PW"
    assert "alerts" not in destination_name(mail)
    assert destination_name(mail) != destination_name(mail.replace("soc@", "it@"))


HOSTILE = st.lists(st.sampled_from(["|", "\\", "=", "\n", "\r", " ", "\x00", "\u2028", " cs1=", "a"])).map(
    "".join
)


@settings(max_examples=200, deadline=None)
@given(host=HOSTILE, user=HOSTILE, actor=HOSTILE, state=HOSTILE)
def test_an_incident_event_cannot_forge_a_cef_field_or_a_syslog_line(
    host: str, user: str, actor: str, state: str
) -> None:
    event = IncidentEvent(
        "id-1", datetime.now(UTC), 7, host, user or None, False, state or "closed", "triage",
        "confirmed", actor or "user:x",
    )  # fmt: skip
    message = format_message(event).decode()
    assert "\n" not in message and "\r" not in message and "\u2028" not in message
    parsed = SYSLOG_LINE.match(message)
    assert parsed is not None and parsed["msgid"] == "incident"
    header, ext = parse_cef(parsed["msg"])
    assert len(header) == 7
    assert set(ext) == {k for k, _ in cef.incident_extension(event)}  # no key injected, none lost
    assert ext["cn2"] == "7" and ext["outcome"] == "confirmed"


# --------------------------------------------------------------------------- what arrives


def test_alerts_arrive_as_cef_over_syslog_and_as_signed_webhooks(
    console: Console, syslog: StreamSyslog, hook: Hook
) -> None:
    _, secret = console.enrol("laptop-7")
    keys = submit(
        console,
        secret,
        alert("real-1", path="/media/bob/USB/a.zip", inside=["x/b.jpg"], storage="removable"),
        alert("real-2"),
        alert("test-1", test=True),
    )
    forwarders = [forwarder(console, syslog_url(syslog.port)), forwarder(console, hook_url(hook))]
    for f in forwarders:
        step = f.drain()
        assert (step.sent, step.error) == (3, None)

    events = {e["externalId"]: e for e in cef_messages(syslog.messages, 3)}
    bodies = {data["id"]: (headers, data) for headers, data in verified(hook)}
    assert set(events) == set(bodies) and len(events) == 3  # the same stable id on both
    by_path = {e["filePath"]: e for e in events.values()}
    usb = by_path["/media/bob/USB/a.zip > x/b.jpg"]
    assert (usb["_class"], usb["_msgid"], usb["_severity"]) == ("match", "match", "10")
    assert (usb["dvchost"], usb["suser"], usb["cs6"], usb["cs1"], usb["cs4"]) == (
        "laptop-7", "bob", "removable media", "projectvic", hashlib.md5(b"real-1").hexdigest()
    )  # fmt: skip
    incidents = console.client.get("/api/v1/incidents", headers=console.as_("auditor")).json()
    real = next(i["id"] for i in incidents if not i["test"])
    test = next(i["id"] for i in incidents if i["test"])
    assert usb["cn2"] == str(real) and usb["request"] == f"{PUBLIC}/ui/incidents/{real}"
    (marked,) = [e for e in events.values() if e["cat"] == "test"]
    assert marked["_class"] == "test-signature" and marked["cn2"] == str(test) and "TEST" in marked["msg"]

    for headers, data in bodies.values():
        assert set(data) == ALERT_KEYS  # hashes, location, provenance: nothing else, never content
        assert headers["X-Vakta-Event"] == "alert"
    tested = [data for _, data in bodies.values() if data["test"]]
    assert (
        len(tested) == 1 and tested[0]["incident"] == test and tested[0]["matches"][0]["list"] == "vakta-test"
    )
    paths = {data["path"] for _, data in bodies.values()}
    assert paths == {
        "/media/bob/USB/a.zip",
        "/home/bob/Downloads/real-2.jpg",
        "/home/bob/Downloads/test-1.jpg",
    }
    assert len(keys) == 3


def test_incident_changes_are_forwarded_as_events_of_their_own(
    console: Console, syslog: StreamSyslog, hook: Hook
) -> None:
    _, secret = console.enrol()
    submit(console, secret, alert())
    forwarders = [forwarder(console, syslog_url(syslog.port)), forwarder(console, hook_url(hook))]
    for f in forwarders:
        f.drain()
    cef_messages(syslog.messages, 1)
    hook.requests.clear()
    incident = console.client.get("/api/v1/incidents", headers=console.as_("auditor")).json()[0]["id"]
    analyst = console.as_("analyst")
    for change in ({"state": "triage"}, {"state": "escalated"}):
        response = console.client.patch(f"/api/v1/incidents/{incident}", json=change, headers=analyst)
        assert response.status_code == 200, response.text
    note = console.client.post(
        f"/api/v1/incidents/{incident}/notes", json={"text": "called HR"}, headers=analyst
    )
    assert note.status_code == 201
    closing = {"state": "closed", "resolution": "false-positive"}
    assert (
        console.client.patch(f"/api/v1/incidents/{incident}", json=closing, headers=analyst).status_code
        == 200
    )
    for f in forwarders:
        assert f.drain().sent == 3  # three changes of state; notes and the rest are not forwarded

    triage, escalated, closed = cef_messages(syslog.messages, 3)
    assert [e["_class"] for e in (triage, escalated, closed)] == [
        "incident-triage", "incident-escalated", "incident-closed"
    ]  # fmt: skip
    assert {e["_msgid"] for e in (triage, escalated, closed)} == {"incident"}
    assert escalated["cs1"] == "triage" and escalated["_severity"] == "8"
    assert closed["outcome"] == "false-positive" and closed["cn2"] == str(incident)
    assert closed["cs2"].startswith("token:") and closed["request"] == f"{PUBLIC}/ui/incidents/{incident}"
    bodies = [data for _, data in verified(hook)]
    assert [b["event"] for b in bodies] == ["incident.triage", "incident.escalated", "incident.closed"]
    assert bodies[2]["resolution"] == "false-positive" and bodies[2]["previous_state"] == "escalated"
    assert hook.requests[2][1]["X-Vakta-Event"] == "incident.closed"
    assert "called HR" not in json.dumps(bodies)


def test_email_destination_gets_a_message_per_alert(console: Console) -> None:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        _, secret = console.enrol("desk-3")
        submit(console, secret, alert("mail-1", test=True))
        url = f"smtp://127.0.0.1:{controller.port}?to=soc@example.org&starttls=no&{ONCE}"
        assert forwarder(console, url).drain().sent == 1
    finally:
        controller.stop()
    ((envelope, message),) = box.messages
    assert envelope.rcpt_tos == ["soc@example.org"]
    assert message["Subject"].startswith("[Vakta TEST] Test signature matched on desk-3")
    text = message.get_payload(decode=True).decode()
    assert "TEST:" in text and "/home/bob/Downloads/mail-1.jpg" in text and f"{PUBLIC}/ui/incidents/" in text


# --------------------------------------------------------------------------- delivery


def test_a_destination_down_then_up_gets_every_alert_exactly_once(console: Console, hook: Hook) -> None:
    port = free_port()  # nothing listens here yet: the SIEM is down
    down = syslog_url(port)
    _, secret = console.enrol()
    auditor = console.as_("auditor")  # made now: making a token is an audit entry too
    forwarding = Forwarding(
        console.db, [Destination.parse(down), Destination.parse(hook_url(hook))], poll=0.05, backoff=0.05,
        backoff_max=0.2,
    )  # fmt: skip
    forwarding.start()
    try:
        first = submit(console, secret, *(alert() for _ in range(3)))
        # The webhook is not held up by the dead SIEM.
        wait_for(lambda: cursor(console.db, hook_url(hook)).sent == 3)  # sent, then the cursor committed
        wait_for(lambda: cursor(console.db, down).last_error is not None)
        failing = cursor(console.db, down)
        assert failing.sent == 0 and "connection refused" in (failing.last_error or "")
        status = console.client.get("/api/v1/forwarding", headers=auditor).json()
        rows = {row["name"]: row for row in status["destinations"]}
        assert rows[destination_name(down)]["lag"] > 0  # its cursor waits before the alerts
        assert (
            rows[destination_name(hook_url(hook))]["lag"] == 0
            and rows[destination_name(hook_url(hook))]["sent"] == 3
        )
        second = submit(console, secret, *(alert() for _ in range(2)))
        siem = StreamSyslog(bind_port=port)  # the SIEM comes back
        try:
            got = cef_messages(siem.messages, 5)
            wait_for(lambda: cursor(console.db, down).sent == 5)
            wait_for(lambda: cursor(console.db, hook_url(hook)).sent == 5)
            time.sleep(0.5)  # several more polls: nothing is sent twice
            assert siem.messages.empty()
        finally:
            siem.close()
    finally:
        forwarding.stop()
    assert len({e["externalId"] for e in got}) == 5
    paths = {e["filePath"] for e in got}
    assert paths == {f"/home/bob/Downloads/{key}.jpg" for key in [*first, *second]}
    recovered = cursor(console.db, down)
    assert recovered.last_error is None and recovered.seq > 0
    assert len(hook.requests) == 5 and len({data["id"] for _, data in verified(hook)}) == 5


def test_a_restarted_forwarder_resumes_from_its_cursor(
    console: Console, syslog: StreamSyslog, tmp_path: Path
) -> None:
    _, secret = console.enrol()
    submit(console, secret, alert("before-1"), alert("before-2"))
    first = forwarder(console, syslog_url(syslog.port))
    assert first.drain().sent == 2
    first.close()
    assert {e["filePath"] for e in cef_messages(syslog.messages, 2)} == {
        "/home/bob/Downloads/before-1.jpg", "/home/bob/Downloads/before-2.jpg"
    }  # fmt: skip
    submit(console, secret, alert("after-1"))
    # A new process, with a tuning option changed: same destination, same cursor.
    done = subprocess.run(
        [*vakta_command(), "--home", str(tmp_path), "server", "forward", "--once", "--database", str(console.db.url.render_as_string(False)),
         "--forward", f"syslog+tcp://127.0.0.1:{syslog.port}?retries=1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 sent, up to date" in done.stderr
    (event,) = cef_messages(syslog.messages, 1)
    assert event["filePath"] == "/home/bob/Downloads/after-1.jpg"
    time.sleep(0.2)
    assert syslog.messages.empty()
    assert cursor(console.db, syslog_url(syslog.port)).sent == 3


def test_only_one_forwarder_per_destination_at_a_time(console: Console, hook: Hook) -> None:
    _, secret = console.enrol()
    submit(console, secret, *(alert() for _ in range(3)))
    hook.delay = 0.3  # a slow receiver: the first forwarder is still sending when the second looks
    url = hook_url(hook)
    one, two = forwarder(console, url), forwarder(console, url)
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(one.step()))
    thread.start()
    wait_for(lambda: len(hook.requests) >= 1)
    assert two.step().busy  # the other process stands by
    thread.join()
    assert outcome[0].sent == 3
    one.close()  # the first goes away: the second takes over from the cursor
    hook.delay = 0
    again = two.step()
    assert not again.busy and again.sent == 0
    two.close()
    assert len(hook.requests) == 3


def test_the_server_forwards_in_the_background_and_reports_status(
    database_url: str, db: Database, syslog: StreamSyslog
) -> None:
    url = syslog_url(syslog.port)
    settings = Settings(database_url=database_url, forward=(url,), public_url=PUBLIC)
    with TestClient(create_app(settings, db)) as client:
        console = Console(client.app, db, client)
        _, secret = console.enrol()
        submit(console, secret, alert("bg-1"), alert("bg-2", test=True))
        events = cef_messages(syslog.messages, 2)
        assert {e["cat"] for e in events} == {"match", "test"}
        wait_for(lambda: cursor(db, url).sent == 2)
        status = client.get("/api/v1/forwarding", headers=console.as_("auditor"))
        assert status.status_code == 200
        (row,) = status.json()["destinations"]
        assert row["name"] == destination_name(url) and row["sent"] == 2 and row["last_error"] is None
        assert row["lag"] == status.json()["head"] - row["seq"]
        assert client.get("/api/v1/forwarding", headers=console.as_("agent")).status_code == 403
        metrics = client.get("/metrics", headers=console.as_("auditor")).text
        assert f'vakta_forward_sent_total{{destination="{destination_name(url)}"}} 2.0' in metrics


def test_a_bad_forwarding_url_is_refused_before_anything_starts(tmp_path: Path) -> None:
    done = subprocess.run(
        [*vakta_command(), "--home", str(tmp_path), "server", "forward", "--once",
         "--forward", "https://hooks.example.org/T0KEN"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "secret-env" in done.stderr and "T0KEN" not in done.stderr
