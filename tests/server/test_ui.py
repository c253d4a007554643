"""The web UI: pages, roles, CSRF, escaping (TestClient), and one run in a real headless Chromium.

The browser test drives Debian's ``chromium`` through Playwright against a real
``vakta server run`` and keeps a screenshot; it is skipped, saying why, when
either is missing (``playwright install`` is never used: no downloads).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from vakta.server.accounts import create_user
from vakta.server.db import Database
from vakta.server.models import AuditEntry, Role

from .conftest import PASSWORD, Console, Served, alert

HOSTILE = "<img src=x onerror=alert(1)>"
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def _csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def _browser(console: Console, username: str, role: Role) -> tuple[TestClient, str]:
    """A logged-in browser-like client (its own cookie jar) and the CSRF token of its session."""
    console.user(username, role)
    client = TestClient(console.app)
    form = client.get("/ui/login")
    assert form.status_code == 200
    done = client.post(
        "/ui/login", data={"csrf_token": _csrf(form.text), "username": username, "password": PASSWORD}
    )
    assert done.status_code == 200 and done.url.path == "/ui/", done.text
    return client, _csrf(done.text)


def _incident(console: Console, incident_id: int) -> dict[str, Any]:
    response = console.client.get(f"/api/v1/incidents/{incident_id}", headers=console.as_(Role.AUDITOR))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _one_incident(console: Console, **fields: Any) -> int:
    _, secret = console.enrol(fields.pop("hostname", "laptop-1"))
    incident_id: int = console.submit(secret, alert(**fields))["results"][0]["incident_id"]
    return incident_id


def test_pages_need_a_session(console: Console) -> None:
    for path in ("/ui/", "/ui/incidents", "/ui/incidents/1", "/ui/agents", "/ui/audit"):
        response = console.client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/ui/login", path
    assert console.client.get("/", follow_redirects=False).headers["location"] == "/ui/"
    refused = console.client.post("/ui/incidents/1/state", data={"state": "triage"}, follow_redirects=False)
    assert refused.headers["location"] == "/ui/login"


def test_login_checks_password_and_form_token_and_logout_ends_the_session(console: Console) -> None:
    console.user("alice", Role.ANALYST)
    client = TestClient(console.app)
    token = _csrf(client.get("/ui/login").text)
    wrong = client.post("/ui/login", data={"csrf_token": token, "username": "alice", "password": "nope"})
    assert wrong.status_code == 401 and "wrong username or password" in wrong.text
    assert "vakta_session" not in client.cookies
    token = _csrf(client.get("/ui/login").text)
    forged = TestClient(console.app).post(
        "/ui/login", data={"csrf_token": token, "username": "alice", "password": PASSWORD}
    )
    assert forged.status_code == 403 and "vakta_session" not in forged.cookies

    client, csrf = _browser(console, "bob", Role.ANALYST)
    assert "bob (analyst)" in client.get("/ui/").text
    stale = client.post("/ui/logout", data={"csrf_token": "x" + csrf}, follow_redirects=False)
    assert stale.status_code == 403
    out = client.post("/ui/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert client.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"
    actions = [
        e["action"] for e in console.client.get("/api/v1/audit", headers=console.as_(Role.AUDITOR)).json()
    ]
    assert actions.count("session.login-failed") == 1 and "session.logout" in actions


def test_analyst_works_an_incident_through_the_api_workflow(console: Console) -> None:
    incident_id = _one_incident(console, user="bob", storage="removable", path="/media/usb/a.jpg")
    sent = _incident(console, incident_id)["alert_list"][0]
    client, csrf = _browser(console, "alice", Role.ANALYST)

    listing = client.get("/ui/incidents").text
    assert f'href="/ui/incidents/{incident_id}"' in listing and "laptop-1" in listing
    page = client.get(f"/ui/incidents/{incident_id}").text
    for value in (
        sent["md5"],
        sent["sha256"],
        "/media/usb/a.jpg",
        "projectvic",
        sent["matches"][0]["entry_id"],
    ):
        assert value in page
    assert "removable" in page and "bob" in page

    url = f"/ui/incidents/{incident_id}"
    assert client.post(f"{url}/state", data={"csrf_token": csrf, "state": "triage"}).status_code == 200
    assert client.post(f"{url}/assign", data={"csrf_token": csrf, "assignee": "alice"}).status_code == 200
    noted = client.post(f"{url}/notes", data={"csrf_token": csrf, "text": "Told HR; legal informed."})
    assert "Told HR; legal informed." in noted.text and "The note was added." in noted.text
    skipped = client.post(f"{url}/state", data={"csrf_token": csrf, "state": "new"})
    assert skipped.status_code == 409 and "cannot go from triage to new" in skipped.text
    unresolved = client.post(f"{url}/state", data={"csrf_token": csrf, "state": "closed"})
    assert unresolved.status_code == 409 and "needs a resolution" in unresolved.text
    early = client.post(
        f"{url}/state", data={"csrf_token": csrf, "state": "closed", "resolution": "confirmed"}
    )
    assert early.status_code == 409 and "action plan" in early.text  # confirmed needs the plan done
    steps = _incident(console, incident_id)["checklist"]
    for step in steps:
        ticked = client.post(f"{url}/steps/{step['step_id']}", data={"csrf_token": csrf, "note": ""})
        assert ticked.status_code == 200, ticked.text
    closed = client.post(
        f"{url}/state", data={"csrf_token": csrf, "state": "closed", "resolution": "confirmed"}
    )
    assert closed.status_code == 200 and 'id="state">closed<' in closed.text

    after = _incident(console, incident_id)
    assert (after["state"], after["resolution"], after["assignee"]) == ("closed", "confirmed", "alice")
    assert [n["text"] for n in after["notes"]] == ["Told HR; legal informed."]
    trail = console.client.get(
        "/api/v1/audit", params={"target": f"incident:{incident_id}"}, headers=console.as_(Role.AUDITOR)
    ).json()
    people = [(e["actor"], e["action"]) for e in trail if e["actor"].startswith("user:")]
    assert people == [("user:alice", "incident.update")] * 2 + [
        ("user:alice", "incident.note"),
        *[("user:alice", "incident.step-done")] * len(steps),
        ("user:alice", "incident.update"),
    ]
    assert "Move to" not in closed.text and ">Close<" not in closed.text


def test_changes_without_the_session_token_are_refused(console: Console) -> None:
    incident_id = _one_incident(console)
    client, csrf = _browser(console, "alice", Role.ANALYST)
    url = f"/ui/incidents/{incident_id}"
    for data in (
        {"state": "triage"},
        {"state": "triage", "csrf_token": ""},
        {"state": "triage", "csrf_token": csrf[:-1]},
    ):
        assert client.post(f"{url}/state", data=data).status_code == 403
    assert client.post(f"{url}/notes", data={"text": "x"}).status_code == 403
    # Another session's token does not work either.
    _, other = _browser(console, "carol", Role.ANALYST)
    assert client.post(f"{url}/state", data={"csrf_token": other, "state": "triage"}).status_code == 403
    assert (
        _incident(console, incident_id)["state"] == "new" and _incident(console, incident_id)["notes"] == []
    )


def test_auditor_reads_everything_and_changes_nothing(console: Console) -> None:
    incident_id = _one_incident(console)
    agent_id, _ = console.enrol("desktop-2")
    client, csrf = _browser(console, "otto", Role.AUDITOR)
    for path in ("/ui/", "/ui/incidents?show=all", f"/ui/incidents/{incident_id}", "/ui/agents", "/ui/audit"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert re.findall(r'<form[^>]*method="post"[^>]*action="([^"]+)"', page.text) == ["/ui/logout"], path
    assert client.get("/ui/incidents/999999").status_code == 404
    url = f"/ui/incidents/{incident_id}"
    assert client.post(f"{url}/state", data={"csrf_token": csrf, "state": "triage"}).status_code == 403
    assert client.post(f"{url}/assign", data={"csrf_token": csrf, "assignee": "otto"}).status_code == 403
    assert client.post(f"{url}/notes", data={"csrf_token": csrf, "text": "hi"}).status_code == 403
    assert client.post(f"/ui/agents/{agent_id}/revoke", data={"csrf_token": csrf}).status_code == 403
    assert _incident(console, incident_id)["state"] == "new"


def test_admin_revokes_an_agent_and_an_analyst_cannot(console: Console) -> None:
    agent_id, secret = console.enrol("laptop-9")
    analyst, analyst_csrf = _browser(console, "alice", Role.ANALYST)
    assert "Revoke" not in analyst.get("/ui/agents").text
    refused = analyst.post(f"/ui/agents/{agent_id}/revoke", data={"csrf_token": analyst_csrf})
    assert refused.status_code == 403

    admin, csrf = _browser(console, "root", Role.ADMIN)
    page = admin.get("/ui/agents").text
    assert f'action="/ui/agents/{agent_id}/revoke"' in page and "online" in page
    done = admin.post(f"/ui/agents/{agent_id}/revoke", data={"csrf_token": csrf})
    assert done.status_code == 200 and "The agent was revoked" in done.text and "revoked" in done.text
    heartbeat = console.client.post("/api/v1/agents/heartbeat", json={}, headers=console.headers(secret))
    assert heartbeat.status_code == 403


def test_every_value_is_escaped_and_pages_run_no_script(console: Console) -> None:
    incident_id = _one_incident(
        console, hostname=f"host{HOSTILE}", user=f"u{HOSTILE}", path=f"/tmp/{HOSTILE}", inside=[HOSTILE]
    )
    client, csrf = _browser(console, "alice", Role.ANALYST)
    client.post(f"/ui/incidents/{incident_id}/notes", data={"csrf_token": csrf, "text": HOSTILE})
    escaped = "&lt;img src=x onerror=alert(1)&gt;"
    for path in (f"/ui/incidents/{incident_id}", "/ui/incidents", "/ui/agents", "/ui/audit", "/ui/"):
        response = client.get(path)
        assert "<img" not in response.text and "onerror=alert(1)>" not in response.text, path
        assert "<script" not in response.text, path
        assert "script-src" not in response.headers["content-security-policy"]  # default-src 'none' covers it
        assert "default-src 'none'" in response.headers["content-security-policy"]
        links = re.findall(r'(?:href|src|action)="([^"]*)"', response.text)
        assert links and all(link.startswith("/") for link in links), path  # nothing from elsewhere
    page = client.get(f"/ui/incidents/{incident_id}").text
    assert page.count(escaped) >= 5  # host, user, path, the step inside, the note


def test_test_signature_alerts_are_marked_as_tests(console: Console) -> None:
    real = _one_incident(console, user="bob")
    test = _one_incident(console, user="bob", test=True)
    client, _ = _browser(console, "alice", Role.ANALYST)
    rows = {
        int(m.group(1)): m.group(0)
        for m in re.finditer(r'<a href="/ui/incidents/(\d+)">.*?</td>', client.get("/ui/incidents").text)
    }
    assert "badge test" in rows[test] and "badge test" not in rows[real]
    assert "test signature" in client.get(f"/ui/incidents/{test}").text
    assert "test signature" not in client.get(f"/ui/incidents/{real}").text
    assert "vakta-test" in client.get(f"/ui/incidents/{test}").text


def test_dashboard_shows_incidents_storage_agents_and_list_versions(console: Console) -> None:
    _, secret = console.enrol("laptop-1")
    console.submit(
        secret, alert(storage="removable"), alert(user="eve", storage="cloud-sync"), alert(test=True)
    )
    beat = console.client.post(
        "/api/v1/agents/heartbeat", json={"list_version": "lists-2026-11-30"}, headers=console.headers(secret)
    )
    assert beat.status_code == 200
    client, _ = _browser(console, "otto", Role.AUDITOR)
    page = client.get("/ui/").text
    cell = r'<th scope="row">{}</th><td class="num">{}</td>'
    for name, count in (("new", 2), ("removable", 1), ("cloud-sync", 1), ("internal", 0), ("online", 1)):
        assert re.search(cell.format(re.escape(name), count), page), name
    assert "lists-2026-11-30" in page and '<meter min="0" max="3" value="3">' in page


def test_audit_page_shows_the_chain_verdict(console: Console) -> None:
    client, _ = _browser(console, "otto", Role.AUDITOR)
    page = client.get("/ui/audit").text
    assert 'class="verdict intact"' in page and "session.login" in page and "user.create" in page
    with console.db.write() as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 1).values(details='{"role":"admin"}'))
    broken = client.get("/ui/audit").text
    assert 'class="verdict broken"' in broken and "audit entry 1 edited" in broken


# --------------------------------------------------------------------------- a real browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def sqlite_served(tmp_path: Path) -> Any:
    """A real ``vakta server run`` on SQLite, with an analyst (one database kind is enough for the browser)."""
    home = tmp_path / "home"
    home.mkdir()
    url = f"sqlite:///{tmp_path / 'console.db'}"
    db = Database(url)
    db.migrate()
    with db.write() as session:
        create_user(session, "alice", PASSWORD, Role.ANALYST, "test")
    db.dispose()
    server = Served(url, home)
    server.start()
    yield server
    server.stop()


def test_a_real_browser_logs_in_opens_and_closes_an_incident(
    sqlite_served: Served, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    enrolment = sqlite_served.token("agent-enrolment")
    with sqlite_served.client(enrolment) as http:
        secret = http.post("/api/v1/agents/enrol", json={"hostname": "laptop-7"}).json()["secret"]
    with httpx.Client(base_url=sqlite_served.base_url, headers={"Authorization": f"Bearer {secret}"}) as http:
        sent = http.post("/api/v1/alerts", json={"alerts": [alert(user="bob", path=f"/home/bob/{HOSTILE}")]})
    incident_id = sent.json()["results"][0]["incident_id"]
    shots = tmp_path_factory.mktemp("ui-screenshots")

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(f"{sqlite_served.base_url}/ui/login")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", PASSWORD)
            page.click("button:has-text('Log in')")
            page.wait_for_url("**/ui/")
            page.click("a:has-text('Incidents')")
            page.click(f"a[href='/ui/incidents/{incident_id}']")
            assert HOSTILE in page.inner_text(".path")  # shown as text, never run
            page.select_option("select[name=resolution]", "false-positive")
            page.click("button:has-text('Close')")
            page.wait_for_selector("text=The incident's state was changed.")
            assert page.inner_text("#state") == "closed"
            assert page.inner_text("#resolution") == "false-positive"
            screenshot = shots / f"incident-{incident_id}-closed.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert dialogs == [] and screenshot.stat().st_size > 1000
    with capsys.disabled():
        print(f"\nUI screenshot: {screenshot}")
    with sqlite_served.client(sqlite_served.token("auditor")) as http:
        detail = http.get(f"/api/v1/incidents/{incident_id}").json()
    assert (detail["state"], detail["resolution"]) == ("closed", "false-positive")
