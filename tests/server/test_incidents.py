"""Incidents in process: grouping by host and user, test signatures apart, the workflow, notes, evidence, statistics."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vakta.server import evidence
from vakta.server.models import Role

from .conftest import Console, alert


def _incidents(console: Console, **params: Any) -> list[dict[str, Any]]:
    response = console.client.get("/api/v1/incidents", params=params, headers=console.as_(Role.AUDITOR))
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


def _patch(console: Console, incident_id: int, **change: Any) -> Any:
    return console.client.patch(
        f"/api/v1/incidents/{incident_id}", json=change, headers=console.as_(Role.ANALYST)
    )


def test_alerts_group_by_host_and_user_with_test_signatures_apart(console: Console) -> None:
    _, laptop = console.enrol("laptop")
    _, desktop = console.enrol("desktop")
    console.submit(
        laptop, alert(user="bob"), alert(user="bob"), alert(user="eve"), alert(user="bob", test=True)
    )
    console.submit(laptop, alert(user="bob"))
    console.submit(desktop, alert(user="bob"))

    groups = {(i["host"], i["user"], i["test"]): i for i in _incidents(console)}
    assert {k: v["alerts"] for k, v in groups.items()} == {
        ("laptop", "bob", False): 3,
        ("laptop", "eve", False): 1,
        ("laptop", "bob", True): 1,
        ("desktop", "bob", False): 1,
    }
    assert all(i["state"] == "new" for i in groups.values())
    assert [i["user"] for i in _incidents(console, test="true")] == ["bob"]
    test_id = groups[("laptop", "bob", True)]["id"]
    detail = console.client.get(f"/api/v1/incidents/{test_id}", headers=console.as_(Role.AUDITOR)).json()
    assert detail["test"] is True and [a["test"] for a in detail["alert_list"]] == [True]
    stats = console.client.get("/api/v1/stats", headers=console.as_(Role.AUDITOR)).json()
    assert stats["open_incidents"] == {"new": 3, "triage": 0, "escalated": 0}
    assert stats["open_test_incidents"] == 1


def test_workflow_new_triage_escalated_closed_with_assignment_notes_and_audit(console: Console) -> None:
    console.user("alice", Role.ANALYST)
    console.user("otto", Role.AUDITOR)
    _, secret = console.enrol("laptop")
    incident_id = console.submit(secret, alert(user="bob"))["results"][0]["incident_id"]

    assert _patch(console, incident_id, state="escalated").status_code == 409  # triage first
    assert _patch(console, incident_id, assignee="otto").status_code == 422  # auditors do not work incidents
    assert _patch(console, incident_id, assignee="nobody").status_code == 422
    assigned = _patch(console, incident_id, state="triage", assignee="alice")
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["state"] == "triage" and assigned.json()["assignee"] == "alice"
    note = console.client.post(
        f"/api/v1/incidents/{incident_id}/notes",
        json={"text": "Preserved the laptop; HR informed."},
        headers=console.as_(Role.ANALYST),
    )
    assert note.status_code == 201, note.text
    assert _patch(console, incident_id, state="escalated").json()["state"] == "escalated"
    assert _patch(console, incident_id, state="closed").status_code == 409  # needs a resolution
    assert _patch(console, incident_id, resolution="confirmed").status_code == 409  # only when closing
    steps = _tick_every_step(console, incident_id)  # confirmed needs the action plan done
    closed = _patch(console, incident_id, state="closed", resolution="confirmed")
    assert closed.json()["state"] == "closed" and closed.json()["resolution"] == "confirmed"
    assert closed.json()["closed_at"] is not None
    assert _patch(console, incident_id, state="triage").status_code == 409  # closed stays closed

    detail = console.client.get(f"/api/v1/incidents/{incident_id}", headers=console.as_(Role.AUDITOR)).json()
    assert [n["text"] for n in detail["notes"]] == ["Preserved the laptop; HR informed."]
    assert detail["notes"][0]["author"].startswith("token:")
    entries = console.client.get(
        "/api/v1/audit", params={"target": f"incident:{incident_id}"}, headers=console.as_(Role.AUDITOR)
    ).json()
    assert [e["action"] for e in entries] == [
        "incident.create",
        "incident.alerts",
        "incident.update",
        "incident.note",
        "incident.update",
        *["incident.step-done"] * steps,
        "incident.update",
    ]
    assert entries[2]["details"] == {
        "assignee": {"from": None, "to": "alice"},
        "state": {"from": "new", "to": "triage"},
    }
    assert entries[-1]["details"]["resolution"] == "confirmed"

    reopened = console.submit(secret, alert(user="bob"))["results"][0]["incident_id"]
    assert reopened != incident_id  # a closed incident stays closed: a new one opens
    assert [i["id"] for i in _incidents(console, open="true")] == [reopened]


def _tick_every_step(console: Console, incident_id: int) -> int:
    """Mark every step of the incident's checklist done; how many there were."""
    detail = console.client.get(f"/api/v1/incidents/{incident_id}", headers=console.as_(Role.AUDITOR)).json()
    for step in detail["checklist"]:
        url = f"/api/v1/incidents/{incident_id}/steps/{step['step_id']}"
        done = console.client.put(url, json={"note": ""}, headers=console.as_(Role.ANALYST))
        assert done.status_code == 200, done.text
    return len(detail["checklist"])


def test_a_test_signature_incident_closes_straight_from_new(console: Console) -> None:
    _, secret = console.enrol()
    incident_id = console.submit(secret, alert(test=True))["results"][0]["incident_id"]
    closed = _patch(console, incident_id, state="closed", resolution="test-signature")
    assert closed.status_code == 200 and closed.json()["resolution"] == "test-signature"
    assert _patch(console, 999, state="triage").status_code == 404


def test_evidence_record_is_sealed_complete_and_its_export_audited(console: Console) -> None:
    _, secret = console.enrol("laptop")
    sent = alert(user="bob", storage="removable", path="/media/usb/x.jpg")
    incident_id = console.submit(secret, sent, alert(user="bob"))["results"][0]["incident_id"]
    _patch(console, incident_id, state="triage")

    response = console.client.get(
        f"/api/v1/incidents/{incident_id}/evidence", headers=console.as_(Role.AUDITOR)
    )
    assert response.status_code == 200, response.text
    record = response.json()
    assert record["format"] == "vakta-evidence/1"
    assert evidence.is_sealed(record)
    assert record["incident"]["host"] == "laptop" and record["incident"]["state"] == "triage"
    first = record["alerts"][0]
    assert (first["path"], first["storage"], first["md5"], first["user"]) == (
        sent["path"],
        "removable",
        sent["md5"],
        "bob",
    )
    assert first["matches"][0]["list"] == "projectvic"
    assert [a["hostname"] for a in record["agents"]] == ["laptop"]
    assert [e["action"] for e in record["audit"]] == ["incident.create", "incident.alerts", "incident.update"]
    for field, value in (("alerts", []), ("incident", {**record["incident"], "user": "mallory"})):
        tampered = copy.deepcopy(record)
        tampered[field] = value
        assert not evidence.is_sealed(tampered), field

    exports = console.client.get(
        "/api/v1/audit", params={"target": f"incident:{incident_id}"}, headers=console.as_(Role.AUDITOR)
    ).json()
    assert exports[-1]["action"] == "incident.evidence"
    assert exports[-1]["details"] == {"sha256": record["sha256"]}


def test_statistics_count_alerts_per_week_and_by_storage(console: Console) -> None:
    _, secret = console.enrol()
    now = datetime.now(UTC)
    console.submit(
        secret,
        alert(storage="internal"),
        alert(storage="removable"),
        alert(storage="removable"),
        alert(storage="cloud-sync"),
        alert(storage="network", detected_at=now - timedelta(weeks=1)),
        alert(test=True),
        alert(storage="internal", detected_at=now - timedelta(weeks=30)),  # before the window
    )
    stats = console.client.get("/api/v1/stats", params={"weeks": 4}, headers=console.as_(Role.AUDITOR)).json()

    weeks = stats["alerts_per_week"]
    assert len(weeks) == 4
    assert [w["alerts"] for w in weeks[-2:]] == [1, 5]
    assert weeks[-1]["test_alerts"] == 1 and sum(w["test_alerts"] for w in weeks) == 1
    assert datetime.fromisoformat(weeks[-1]["week"]).weekday() == 0
    assert stats["detections_by_storage"] == {"internal": 1, "removable": 2, "network": 1, "cloud-sync": 1}


@pytest.mark.parametrize("weeks", [0, 105])
def test_statistics_window_is_bounded(console: Console, weeks: int) -> None:
    response = console.client.get("/api/v1/stats", params={"weeks": weeks}, headers=console.as_(Role.AUDITOR))
    assert response.status_code == 422
