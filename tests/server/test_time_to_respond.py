"""Time to respond and time to close: when an incident is acknowledged, the statistics, metrics and dashboard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from vakta.server.models import Incident, Role
from vakta.server.response_times import Durations, durations, quantile

from .conftest import PASSWORD, Console, alert


def _incident(console: Console, user: str = "bob", test: bool = False) -> int:
    _, secret = console.enrol()
    incident_id: int = console.submit(secret, alert(user=user, test=test))["results"][0]["incident_id"]
    return incident_id


def _acknowledged(console: Console, incident_id: int) -> str | None:
    detail = console.client.get(f"/api/v1/incidents/{incident_id}", headers=console.as_(Role.AUDITOR)).json()
    value: str | None = detail["acknowledged_at"]
    return value


def _times(console: Console, incident_id: int, **times: datetime | None) -> None:
    with console.db.write() as session:
        session.execute(update(Incident).where(Incident.id == incident_id).values(**times))


def _stats(console: Console, **params: Any) -> dict[str, Any]:
    response = console.client.get("/api/v1/stats", params=params, headers=console.as_(Role.AUDITOR))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_quantiles_interpolate_between_ranks() -> None:
    assert quantile([10.0, 20.0, 30.0, 40.0], 0.5) == 25.0
    assert quantile([10.0, 20.0, 30.0, 40.0], 0.9) == pytest.approx(37.0)
    assert durations([]) == Durations(0, None, None)
    assert durations([42.0]) == Durations(1, 42.0, 42.0)
    assert durations([300.0, 60.0, 120.0]) == Durations(3, 120.0, 264.0)


@pytest.mark.parametrize(
    ("how", "call"),
    [
        (
            "state",
            lambda c, i: c.client.patch(
                f"/api/v1/incidents/{i}", json={"state": "triage"}, headers=c.as_(Role.ANALYST)
            ),
        ),
        (
            "note",
            lambda c, i: c.client.post(
                f"/api/v1/incidents/{i}/notes", json={"text": "seen"}, headers=c.as_(Role.ANALYST)
            ),
        ),
        (
            "assign",
            lambda c, i: c.client.patch(
                f"/api/v1/incidents/{i}", json={"assignee": "alice"}, headers=c.as_(Role.ANALYST)
            ),
        ),
        (
            "step",
            lambda c, i: c.client.put(f"/api/v1/incidents/{i}/steps/1", json={}, headers=c.as_(Role.ANALYST)),
        ),
    ],
)
def test_the_first_human_response_acknowledges_the_incident(console: Console, how: str, call: Any) -> None:
    console.user("alice", Role.ANALYST)
    incident_id = _incident(console)
    _, secret = console.enrol()
    console.submit(secret, alert(user="bob"))  # more alerts are no response
    console.client.get(
        f"/api/v1/incidents/{incident_id}/evidence", headers=console.as_(Role.ANALYST)
    )  # nor reading
    assert _acknowledged(console, incident_id) is None

    assert call(console, incident_id).status_code in (200, 201)
    first = _acknowledged(console, incident_id)
    assert first is not None
    later = console.client.post(
        f"/api/v1/incidents/{incident_id}/notes", json={"text": "again"}, headers=console.as_(Role.ANALYST)
    )
    assert later.status_code == 201 and _acknowledged(console, incident_id) == first  # the first one stays


def test_a_refused_change_is_no_response(console: Console) -> None:
    incident_id = _incident(console)
    refused = console.client.patch(
        f"/api/v1/incidents/{incident_id}", json={"state": "escalated"}, headers=console.as_(Role.ANALYST)
    )
    assert refused.status_code == 409 and _acknowledged(console, incident_id) is None
    same = console.client.patch(
        f"/api/v1/incidents/{incident_id}", json={"assignee": None}, headers=console.as_(Role.ANALYST)
    )
    assert same.status_code == 200 and _acknowledged(console, incident_id) is None  # nothing changed


def test_statistics_give_count_median_and_p90_for_real_incidents_in_the_window(console: Console) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    created = now - timedelta(days=3)
    respond = [60, 120, 300, 3600]  # seconds after creation
    for n, seconds in enumerate(respond):
        incident_id = _incident(console, user=f"u{n}")
        closed = created + timedelta(hours=n + 1) if n < 2 else None
        _times(
            console,
            incident_id,
            created_at=created,
            acknowledged_at=created + timedelta(seconds=seconds),
            closed_at=closed,
        )
    _incident(console, user="waiting")  # not acknowledged yet: counts nowhere
    test_id = _incident(console, user="t", test=True)
    _times(console, test_id, created_at=created, acknowledged_at=created + timedelta(days=2), closed_at=now)
    old_id = _incident(console, user="old")
    old = now - timedelta(weeks=20)
    _times(
        console,
        old_id,
        created_at=old,
        acknowledged_at=old + timedelta(days=9),
        closed_at=old + timedelta(days=9),
    )

    stats = _stats(console, weeks=12)
    assert stats["time_to_respond"] == {"count": 4, "median_seconds": 210.0, "p90_seconds": 2610.0}
    assert stats["time_to_close"] == {"count": 2, "median_seconds": 5400.0, "p90_seconds": 6840.0}
    wide = _stats(console, weeks=30)
    assert wide["time_to_respond"]["count"] == 5 and wide["time_to_close"]["count"] == 3

    metrics = console.client.get("/metrics", headers=console.as_(Role.AUDITOR)).text
    assert 'vakta_incident_time_to_respond_seconds{quantile="0.5"} 210.0' in metrics
    assert 'vakta_incident_time_to_close_seconds{quantile="0.9"} 6840.0' in metrics
    assert "vakta_incident_time_to_respond_incidents 4.0" in metrics


def test_no_incidents_give_empty_figures(console: Console) -> None:
    stats = _stats(console)
    assert stats["time_to_respond"] == {"count": 0, "median_seconds": None, "p90_seconds": None}
    assert stats["time_to_close"]["count"] == 0


def test_the_dashboard_shows_response_times(console: Console) -> None:
    incident_id = _incident(console)
    created = datetime.now(UTC) - timedelta(hours=5)
    _times(console, incident_id, created_at=created, acknowledged_at=created + timedelta(minutes=12))
    console.user("otto", Role.AUDITOR)
    browser = TestClient(console.app)
    form = browser.get("/ui/login").text
    token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    page = browser.post("/ui/login", data={"csrf_token": token, "username": "otto", "password": PASSWORD})
    assert page.status_code == 200 and "Response times" in page.text
    section = page.text.split('id="response-times"', 1)[1].split("</section>", 1)[0]
    assert "time to respond" in section and "12 min" in section
