"""Alert ingestion: a batch from one agent, stored once whatever the retries, grouped into incidents.

An alert is new when its (agent, idempotency key) was never stored: the
insert is ``ON CONFLICT DO NOTHING`` on that unique pair, and what the
insert returns is what was new, so a retried or doubled batch racing the
first never duplicates an alert. Incidents group the alerts of one host and
user (test-signature alerts apart): one open incident per group, kept unique
by ``Incident.open_key``.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vakta.server import audit
from vakta.server.db import insert_missing
from vakta.server.models import Agent, Alert, Incident
from vakta.testsignature import LIST_NAME as TEST_LIST

#: Attempts to find or open a group's incident while others close it at the same time.
_OPEN_TRIES = 5


@dataclass(frozen=True)
class Outcome:
    """What became of one submitted alert."""

    idempotency_key: str
    alert_id: int
    incident_id: int
    new: bool


def is_test(matches: Sequence[dict[str, Any]]) -> bool:
    """An alert is a test when every list it matched is the built-in test list."""
    return bool(matches) and all(m.get("list") == TEST_LIST for m in matches)


def open_key(host: str, user: str, test: bool) -> str:
    return hashlib.sha256(audit.canonical_json([host, user, test]).encode()).hexdigest()


def ingest(session: Session, agent: Agent, alerts: Sequence[dict[str, Any]], now: datetime) -> list[Outcome]:
    """Store a batch (``alerts``: validated alert fields) in the caller's transaction."""
    first: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        first.setdefault(alert["idempotency_key"], alert)
    known = _stored(session, agent.id, list(first))
    fresh = [a for key, a in first.items() if key not in known]
    inserted: dict[str, tuple[int, int]] = {}
    touched: dict[int, list[int]] = defaultdict(list)
    created: list[Incident] = []
    for (user, test), group in sorted(_groups(fresh).items()):
        incident, new_incident = _open_incident(session, agent.hostname, user, test, now)
        if new_incident:
            created.append(incident)
        rows = [_row(agent, a, incident.id, test, now) for a in group]
        for alert_id, key in _insert(session, rows):
            inserted[key] = (alert_id, incident.id)
            touched[incident.id].append(alert_id)
        if touched[incident.id]:
            session.execute(update(Incident).where(Incident.id == incident.id).values(last_alert_at=now))
    known.update(_stored(session, agent.id, [k for k in first if k not in known and k not in inserted]))
    agent.last_seen_at = now
    _audit(session, agent, created, touched)
    return [_outcome(a["idempotency_key"], inserted, known) for a in alerts]


def _outcome(key: str, inserted: dict[str, tuple[int, int]], known: dict[str, tuple[int, int]]) -> Outcome:
    if key in inserted:
        alert_id, incident_id = inserted.pop(key)  # a key repeated in the batch is new only once
        known[key] = (alert_id, incident_id)
        return Outcome(key, alert_id, incident_id, True)
    alert_id, incident_id = known[key]
    return Outcome(key, alert_id, incident_id, False)


def _stored(session: Session, agent_id: str, keys: list[str]) -> dict[str, tuple[int, int]]:
    if not keys:
        return {}
    rows = session.execute(
        select(Alert.idempotency_key, Alert.id, Alert.incident_id).where(
            Alert.agent_id == agent_id, Alert.idempotency_key.in_(keys)
        )
    )
    return {key: (alert_id, incident_id) for key, alert_id, incident_id in rows}


def _groups(alerts: list[dict[str, Any]]) -> dict[tuple[str, bool], list[dict[str, Any]]]:
    groups: dict[tuple[str, bool], list[dict[str, Any]]] = defaultdict(list)
    for alert in alerts:
        groups[(alert["user"], is_test(alert["matches"]))].append(alert)
    return groups


def _open_incident(
    session: Session, host: str, user: str, test: bool, now: datetime
) -> tuple[Incident, bool]:
    """The group's open incident, created if there is none (concurrent creators agree on one)."""
    key = open_key(host, user, test)
    values = {
        "host": host,
        "user": user,
        "is_test": test,
        "state": "new",
        "open_key": key,
        "created_at": now,
        "updated_at": now,
        "last_alert_at": now,
    }
    stmt = insert_missing(session, Incident, values, ["open_key"]).returning(Incident.id)
    for _ in range(_OPEN_TRIES):
        created = session.execute(stmt).scalar_one_or_none() is not None
        # Locked, and still open once locked: an incident closed meanwhile gets no new alerts.
        query = select(Incident).where(Incident.open_key == key).with_for_update()
        incident = session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()
        if incident is not None:
            return incident, created
    raise RuntimeError(f"no open incident for {host}/{user} after {_OPEN_TRIES} tries")


def _insert(session: Session, rows: list[dict[str, Any]]) -> list[tuple[int, str]]:
    stmt = insert_missing(session, Alert, rows, ["agent_id", "idempotency_key"])
    result = session.execute(stmt.returning(Alert.id, Alert.idempotency_key))
    return [(alert_id, key) for alert_id, key in result]


def _row(agent: Agent, alert: dict[str, Any], incident_id: int, test: bool, now: datetime) -> dict[str, Any]:
    return {
        **alert,
        "agent_id": agent.id,
        "host": agent.hostname,
        "incident_id": incident_id,
        "is_test": test,
        "received_at": now,
    }


def _audit(session: Session, agent: Agent, created: list[Incident], touched: dict[int, list[int]]) -> None:
    actor = f"agent:{agent.id} ({agent.hostname})"
    for incident in created:
        audit.append(
            session,
            actor,
            "incident.create",
            f"incident:{incident.id}",
            {"host": incident.host, "user": incident.user, "test": incident.is_test},
        )
    for incident_id, alert_ids in sorted(touched.items()):
        if alert_ids:
            audit.append(session, actor, "incident.alerts", f"incident:{incident_id}", {"alerts": alert_ids})
