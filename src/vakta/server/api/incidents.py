"""Incidents: the list, one incident with its alerts and notes, the workflow, notes, the evidence record.

States move forward only: new -> triage -> escalated -> closed (new or
triage may also close at once, e.g. a test signature or a false positive).
Closing needs a resolution; a closed incident stays closed, and later alerts
of the same host and user open a new one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel
from sqlalchemy import func, select

from vakta.server import audit, evidence
from vakta.server.api.alerts import AlertOut, alert_out
from vakta.server.api.common import STRICT, NoteText, Page, Username, database, page
from vakta.server.auth import Permission, Principal
from vakta.server.auth import require as require_
from vakta.server.models import Alert, Incident, IncidentState, Note, Resolution, Role, User, utcnow

router = APIRouter(prefix="/incidents", tags=["incidents"])

NEXT_STATES: dict[str, frozenset[str]] = {
    IncidentState.NEW: frozenset({IncidentState.TRIAGE, IncidentState.CLOSED}),
    IncidentState.TRIAGE: frozenset({IncidentState.ESCALATED, IncidentState.CLOSED}),
    IncidentState.ESCALATED: frozenset({IncidentState.CLOSED}),
    IncidentState.CLOSED: frozenset(),
}
#: Roles an incident can be assigned to (people who may work it).
ASSIGNABLE = (Role.ADMIN.value, Role.ANALYST.value)


class IncidentOut(BaseModel):
    id: int
    host: str
    user: str
    #: Every alert in it is of the built-in test signature.
    test: bool
    state: str
    resolution: str | None
    assignee: str | None
    alerts: int
    created_at: datetime
    updated_at: datetime
    last_alert_at: datetime
    closed_at: datetime | None


class NoteOut(BaseModel):
    id: int
    author: str
    created_at: datetime
    text: str


class IncidentDetail(IncidentOut):
    alert_list: list[AlertOut]
    notes: list[NoteOut]


class IncidentChange(BaseModel):
    """Fields to change; ``assignee: null`` unassigns, a missing field is left alone."""

    model_config = STRICT
    state: IncidentState | None = None
    resolution: Resolution | None = None
    assignee: Username | None = None


class NoteIn(BaseModel):
    model_config = STRICT
    text: NoteText


Reader = Annotated[Principal, Depends(require_(Permission.READ))]
Worker = Annotated[Principal, Depends(require_(Permission.WORK))]


@router.get("", response_model=list[IncidentOut])
def list_incidents(
    request: Request,
    _: Reader,
    paging: Annotated[Page, Depends(page)],
    state: Annotated[list[IncidentState] | None, Query(description="Only these states.")] = None,
    open: Annotated[bool | None, Query(description="Only open (or only closed) incidents.")] = None,
    test: Annotated[bool | None, Query(description="Only test (or only real) incidents.")] = None,
    host: Annotated[str | None, Query(max_length=255)] = None,
    assignee: Annotated[str | None, Query(max_length=64)] = None,
) -> list[IncidentOut]:
    """Incidents, the latest alert first."""
    query = select(Incident).order_by(Incident.last_alert_at.desc(), Incident.id.desc())
    if state:
        query = query.where(Incident.state.in_([s.value for s in state]))
    if open is not None:
        query = query.where((Incident.state != IncidentState.CLOSED.value) == open)
    if test is not None:
        query = query.where(Incident.is_test.is_(test))
    if host is not None:
        query = query.where(Incident.host == host)
    if assignee is not None:
        query = query.join(User, Incident.assignee_id == User.id).where(User.username == assignee)
    with database(request).read() as session:
        incidents = session.execute(query.limit(paging.limit).offset(paging.offset)).scalars().unique().all()
        counts = _alert_counts(session, [i.id for i in incidents])
    return [incident_out(i, counts.get(i.id, 0)) for i in incidents]


@router.get("/{incident_id}", response_model=IncidentDetail)
def get_incident(incident_id: int, request: Request, _: Reader) -> IncidentDetail:
    """One incident with every alert and note."""
    with database(request).read() as session:
        incident = _get(session, incident_id)
        alerts = session.execute(select(Alert).where(Alert.incident_id == incident_id).order_by(Alert.id))
        alert_list = [alert_out(a) for a in alerts.scalars()]
        notes = [_note_out(n) for n in _notes(session, incident_id)]
    base = incident_out(incident, len(alert_list))
    return IncidentDetail(**base.model_dump(), alert_list=alert_list, notes=notes)


@router.patch("/{incident_id}", response_model=IncidentOut)
def change_incident(
    incident_id: int, change: IncidentChange, request: Request, worker: Worker
) -> IncidentOut:
    """Move the incident on, resolve it, or (un)assign it."""
    now = utcnow()
    with database(request).write() as session:
        incident = _get(session, incident_id, lock=True)
        details = _apply(session, incident, change, now)
        if details:
            incident.updated_at = now
            audit.append(session, worker.actor, "incident.update", f"incident:{incident.id}", details)
        count = _alert_counts(session, [incident.id]).get(incident.id, 0)
    return incident_out(incident, count)


@router.post("/{incident_id}/notes", response_model=NoteOut, status_code=status.HTTP_201_CREATED)
def add_note(incident_id: int, body: NoteIn, request: Request, worker: Worker) -> NoteOut:
    """Add a note (the analyst's own words) to the incident's record."""
    now = utcnow()
    with database(request).write() as session:
        incident = _get(session, incident_id, lock=True)
        note = Note(incident_id=incident.id, author=worker.actor, created_at=now, text=body.text)
        session.add(note)
        incident.updated_at = now
        session.flush()
        audit.append(
            session,
            worker.actor,
            "incident.note",
            f"incident:{incident.id}",
            {"note": note.id, "sha256": evidence.text_digest(body.text)},
        )
    return _note_out(note)


@router.get("/{incident_id}/evidence")
def get_evidence(incident_id: int, request: Request, reader: Reader) -> dict[str, Any]:
    """The tamper-evident evidence record (JSON with a SHA-256 over its canonical form); the export is audited."""
    with database(request).write() as session:
        incident = _get(session, incident_id)
        record = evidence.build(session, incident, reader.actor)
        audit.append(
            session,
            reader.actor,
            "incident.evidence",
            f"incident:{incident.id}",
            {"sha256": record["sha256"]},
        )
    return record


def _apply(session: Any, incident: Incident, change: IncidentChange, now: datetime) -> dict[str, Any]:
    """Apply a change; the audit details of what changed (empty: nothing did)."""
    fields = change.model_fields_set
    details: dict[str, Any] = {}
    if "assignee" in fields:
        details.update(_assign(session, incident, change.assignee))
    if change.state is not None and change.state != incident.state:
        details.update(_transition(incident, change.state, change.resolution, now))
    elif change.resolution is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, "a resolution is given when closing an incident")
    return details


def _assign(session: Any, incident: Incident, username: str | None) -> dict[str, Any]:
    user = None
    if username is not None:
        user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
        if user is None or user.disabled_at is not None or user.role not in ASSIGNABLE:
            raise HTTPException(422, f"{username!r} cannot work incidents")
    before = incident.assignee.username if incident.assignee else None
    if before == username:
        return {}
    incident.assignee_id = user.id if user else None
    incident.assignee = user
    return {"assignee": {"from": before, "to": username}}


def _transition(
    incident: Incident, target: IncidentState, resolution: Resolution | None, now: datetime
) -> dict[str, Any]:
    if target not in NEXT_STATES[incident.state]:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"an incident cannot go from {incident.state} to {target}"
        )
    if (target == IncidentState.CLOSED) != (resolution is not None):
        raise HTTPException(
            status.HTTP_409_CONFLICT, "closing an incident needs a resolution (and only closing)"
        )
    details: dict[str, Any] = {"state": {"from": incident.state, "to": target.value}}
    incident.state = target.value
    if resolution is not None:
        incident.resolution = resolution.value
        incident.closed_at = now
        incident.open_key = None  # later alerts of this host and user open a new incident
        details["resolution"] = resolution.value
    return details


def _get(session: Any, incident_id: int, lock: bool = False) -> Incident:
    incident: Incident | None = session.get(Incident, incident_id, with_for_update=lock or None)
    if incident is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such incident")
    return incident


def _notes(session: Any, incident_id: int) -> list[Note]:
    query = select(Note).where(Note.incident_id == incident_id).order_by(Note.id)
    return list(session.execute(query).scalars())


def _alert_counts(session: Any, ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    query = (
        select(Alert.incident_id, func.count()).where(Alert.incident_id.in_(ids)).group_by(Alert.incident_id)
    )
    return {incident_id: count for incident_id, count in session.execute(query)}


def incident_out(incident: Incident, alerts: int) -> IncidentOut:
    return IncidentOut(
        id=incident.id,
        host=incident.host,
        user=incident.user,
        test=incident.is_test,
        state=incident.state,
        resolution=incident.resolution,
        assignee=incident.assignee.username if incident.assignee else None,
        alerts=alerts,
        created_at=incident.created_at,
        updated_at=incident.updated_at,
        last_alert_at=incident.last_alert_at,
        closed_at=incident.closed_at,
    )


def _note_out(note: Note) -> NoteOut:
    return NoteOut(id=note.id, author=note.author, created_at=note.created_at, text=note.text)
