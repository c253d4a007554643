"""Every endpoint is authorised: unauthenticated requests are refused, and each role can do only its part."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from vakta.server.auth import CSRF_HEADER, SESSION_COOKIE
from vakta.server.models import Role

from .conftest import PASSWORD, Console, alert

#: Reachable without credentials, on purpose: liveness, the API description, logging in, and
#: enrolment (which checks its own one-time token).
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("POST", "/api/v1/session"),
    ("POST", "/api/v1/agents/enrol"),
}


def _routes(console: Console) -> list[tuple[str, str]]:
    """Every operation the app serves, from its OpenAPI description (routers included)."""
    paths = console.client.get("/openapi.json").json()["paths"]
    return [(method.upper(), path) for path, operations in paths.items() for method in operations]


def _call(console: Console, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
    url = path.replace("{incident_id}", "1").replace("{agent_id}", "x").replace("{token_id}", "1")
    return console.client.request(method, url, json={}, headers=headers or {})


def test_every_endpoint_refuses_unauthenticated_requests(console: Console) -> None:
    routes = _routes(console)
    assert len(routes) >= 20  # the walk found the API
    checked = 0
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        for headers in ({}, {"Authorization": "Bearer vkt_forged"}, {"Authorization": "Basic YTpi"}):
            response = _call(console, method, path, headers)
            assert response.status_code == 401, (method, path, headers, response.text)
        checked += 1
    assert checked == len(routes) - len(PUBLIC & set(routes))
    assert ("GET", "/metrics") in routes and ("PATCH", "/api/v1/incidents/{incident_id}") in routes
    assert console.client.get("/healthz").status_code == 200


def test_an_enrolment_token_is_no_bearer_token(console: Console) -> None:
    enrolment = console.headers(console.token(Role.AGENT_ENROLMENT))
    for method, path in _routes(console):
        if (method, path) not in PUBLIC:
            assert _call(console, method, path, enrolment).status_code == 401, (method, path)


@pytest.fixture
def incident(console: Console) -> int:
    _, secret = console.enrol()
    incident_id: int = console.submit(secret, alert())["results"][0]["incident_id"]
    return incident_id


READS = [
    ("GET", "/api/v1/incidents"),
    ("GET", "/api/v1/incidents/{incident_id}"),
    ("GET", "/api/v1/incidents/{incident_id}/evidence"),
    ("GET", "/api/v1/alerts"),
    ("GET", "/api/v1/agents"),
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/audit"),
    ("GET", "/api/v1/audit/verify"),
    ("GET", "/api/v1/session"),
    ("GET", "/metrics"),
]
WORK = [
    ("PATCH", "/api/v1/incidents/{incident_id}", {"state": "triage"}),
    ("POST", "/api/v1/incidents/{incident_id}/notes", {"text": "looked at it"}),
]
MANAGE = [
    ("POST", "/api/v1/agents/{agent_id}/revoke", None),
    ("POST", "/api/v1/tokens", {"role": "auditor"}),
    ("GET", "/api/v1/tokens", None),
    ("POST", "/api/v1/users", {"username": "newbie", "password": PASSWORD, "role": "auditor"}),
    ("GET", "/api/v1/users", None),
]


def _request(
    console: Console, role: str, method: str, path: str, body: Any, incident: int, agent: str
) -> int:
    url = path.replace("{incident_id}", str(incident)).replace("{agent_id}", agent)
    response = console.client.request(method, url, json=body, headers=console.as_(role))
    return response.status_code


@pytest.mark.parametrize("role", ["agent", "auditor", "analyst", "admin"])
def test_roles_matrix(console: Console, incident: int, role: str) -> None:
    agent_id, _ = console.enrol("victim")
    allowed = {
        "agent": set(),
        "auditor": {"read"},
        "analyst": {"read", "work"},
        "admin": {"read", "work", "manage"},
    }[role]
    for method, path in READS:
        code = _request(console, role, method, path, None, incident, agent_id)
        assert (code == 200) == ("read" in allowed), (role, method, path, code)
        assert code in (200, 403), (role, method, path, code)
    for kind, calls in (("work", WORK), ("manage", MANAGE)):
        for method, path, body in calls:
            code = _request(console, role, method, path, body, incident, agent_id)
            assert (code in (200, 201)) == (kind in allowed), (role, method, path, code)
            assert code in (200, 201, 403), (role, method, path, code)


@pytest.mark.parametrize("role", ["auditor", "analyst", "admin"])
def test_people_cannot_report_as_agents(console: Console, role: str) -> None:
    headers = console.as_(role)
    assert (
        console.client.post("/api/v1/alerts", json={"alerts": [alert()]}, headers=headers).status_code == 403
    )
    assert console.client.post("/api/v1/agents/heartbeat", json={}, headers=headers).status_code == 403


def test_an_auditor_cannot_change_an_incident(console: Console, incident: int) -> None:
    auditor = console.as_(Role.AUDITOR)
    for change in (
        {"state": "triage"},
        {"assignee": None},
        {"state": "closed", "resolution": "false-positive"},
    ):
        response = console.client.patch(f"/api/v1/incidents/{incident}", json=change, headers=auditor)
        assert response.status_code == 403
    detail = console.client.get(f"/api/v1/incidents/{incident}", headers=auditor).json()
    assert detail["state"] == "new" and detail["notes"] == []


def test_browser_session_needs_csrf_for_changes_and_ends_at_logout(console: Console, incident: int) -> None:
    console.user("alice", Role.ANALYST)
    wrong = console.client.post("/api/v1/session", json={"username": "alice", "password": "wrong password!"})
    assert wrong.status_code == 401
    assert (
        console.client.post("/api/v1/session", json={"username": "nobody", "password": PASSWORD}).status_code
        == 401
    )
    login = console.client.post("/api/v1/session", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200, login.text
    csrf = login.json()["csrf_token"]
    cookie = login.cookies.get(SESSION_COOKIE)
    assert cookie and "httponly" in login.headers["set-cookie"].lower()
    assert "samesite=strict" in login.headers["set-cookie"].lower()

    assert console.client.get("/api/v1/session").json() == {
        "kind": "user",
        "name": "alice",
        "role": "analyst",
    }
    url = f"/api/v1/incidents/{incident}"
    assert console.client.patch(url, json={"state": "triage"}).status_code == 403  # no CSRF header
    assert (
        console.client.patch(url, json={"state": "triage"}, headers={CSRF_HEADER: "forged"}).status_code
        == 403
    )
    changed = console.client.patch(url, json={"state": "triage"}, headers={CSRF_HEADER: csrf})
    assert changed.status_code == 200, changed.text
    assert console.client.delete("/api/v1/session", headers={CSRF_HEADER: csrf}).status_code == 204

    console.client.cookies.set(SESSION_COOKIE, cookie)  # an old cookie replayed after logout
    assert console.client.get("/api/v1/incidents").status_code == 401
    actions = [
        e["action"] for e in console.client.get("/api/v1/audit", headers=console.as_(Role.AUDITOR)).json()
    ]
    assert actions.count("session.login-failed") == 2
    assert "session.login" in actions and "session.logout" in actions


def test_metrics_count_alerts_and_requests_by_route(console: Console) -> None:
    _, secret = console.enrol()
    batch = [alert("m1"), alert("m2")]
    console.submit(secret, *batch)
    console.submit(secret, *batch)
    text = console.client.get("/metrics", headers=console.as_(Role.AUDITOR)).text
    assert 'vakta_alerts_received_total{result="new"} 2.0' in text
    assert 'vakta_alerts_received_total{result="duplicate"} 2.0' in text
    assert 'vakta_incidents_open{state="new",test="false"} 1.0' in text
    assert 'vakta_agents{status="online"} 1.0' in text
    assert 'route="/api/v1/alerts"' in text and "vakta_database_up 1.0" in text


def test_the_session_cookie_is_secure_over_https(console: Console) -> None:
    console.user("alice", Role.ANALYST)
    with TestClient(console.app, base_url="https://console.example") as client:
        login = client.post("/api/v1/session", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200
    assert "; secure" in login.headers["set-cookie"].lower()
    plain = console.client.post("/api/v1/session", json={"username": "alice", "password": PASSWORD})
    assert "; secure" not in plain.headers["set-cookie"].lower()
