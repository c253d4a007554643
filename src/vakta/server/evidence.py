"""The evidence record of an incident: what was found where, on which list, and who did what since.

A self-contained JSON document for law enforcement and legal: the incident,
its alerts (hashes, sizes, paths, host, user, storage, list provenance,
times), the action plan checklist (who did which step when), the notes and
the incident's audit entries with their chain hashes.
``sha256`` is taken over the canonical JSON of everything else, and the
export itself is audited with that hash, so a later copy can be checked
against the record and against the log. It never holds file content.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vakta import __version__
from vakta.server import actionplan, audit
from vakta.server.models import Agent, Alert, AuditEntry, Incident, Note, utcnow

FORMAT = "vakta-evidence/1"


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bytes_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seal(record: dict[str, Any]) -> dict[str, Any]:
    """The record with ``sha256`` set over the canonical JSON of the rest."""
    body = {k: v for k, v in record.items() if k != "sha256"}
    return {**body, "sha256": hashlib.sha256(audit.canonical_json(body).encode()).hexdigest()}


def is_sealed(record: dict[str, Any]) -> bool:
    """True when the record is exactly as exported (its hash matches its contents)."""
    return seal(record).get("sha256") == record.get("sha256")


def build(session: Session, incident: Incident, exported_by: str) -> dict[str, Any]:
    alerts = session.execute(
        select(Alert).where(Alert.incident_id == incident.id).order_by(Alert.id)
    ).scalars()
    alert_rows = list(alerts)
    agent_ids = sorted({a.agent_id for a in alert_rows})
    agents: list[Agent] = list(session.execute(select(Agent).where(Agent.id.in_(agent_ids))).scalars())
    notes = session.execute(select(Note).where(Note.incident_id == incident.id).order_by(Note.id)).scalars()
    entries = session.execute(
        select(AuditEntry).where(AuditEntry.target == f"incident:{incident.id}").order_by(AuditEntry.seq)
    ).scalars()
    record = {
        "format": FORMAT,
        "generated_at": utcnow().isoformat(),
        "generated_by": exported_by,
        "vakta_version": __version__,
        "incident": _incident(incident),
        "alerts": [_alert(a) for a in alert_rows],
        "agents": [_agent(a) for a in agents],
        "checklist": [item.as_dict() for item in actionplan.checklist(session, incident.id)],
        "notes": [
            {"id": n.id, "author": n.author, "created_at": n.created_at.isoformat(), "text": n.text}
            for n in notes
        ],
        "audit": [audit.entry_dict(e) for e in entries],
    }
    return seal(record)


def _incident(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "host": incident.host,
        "user": incident.user,
        "test": incident.is_test,
        "state": incident.state,
        "resolution": incident.resolution,
        "assignee": incident.assignee.username if incident.assignee else None,
        "created_at": incident.created_at.isoformat(),
        "last_alert_at": incident.last_alert_at.isoformat(),
        "acknowledged_at": incident.acknowledged_at.isoformat() if incident.acknowledged_at else None,
        "closed_at": incident.closed_at.isoformat() if incident.closed_at else None,
    }


def _alert(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "agent_id": alert.agent_id,
        "idempotency_key": alert.idempotency_key,
        "detected_at": alert.detected_at.isoformat(),
        "received_at": alert.received_at.isoformat(),
        "host": alert.host,
        "user": alert.user,
        "storage": alert.storage,
        "path": alert.path,
        "inside": list(alert.inside),
        "deleted": alert.deleted,
        "parent_md5": alert.parent_md5,
        "size": alert.size,
        "type": alert.type,
        "md5": alert.md5,
        "sha1": alert.sha1,
        "sha256": alert.sha256,
        "pdq": alert.pdq,
        "pdq_quality": alert.pdq_quality,
        "test": alert.is_test,
        "matches": list(alert.matches),
    }


def _agent(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "hostname": agent.hostname,
        "os": agent.os,
        "version": agent.version,
        "enrolled_at": agent.enrolled_at.isoformat(),
        "revoked_at": agent.revoked_at.isoformat() if agent.revoked_at else None,
    }
