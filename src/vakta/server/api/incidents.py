"""Incidents: the list, one incident with its alerts, notes and checklist, the workflow, notes, evidence.

States move forward only: new -> triage -> escalated -> closed (new or
triage may also close at once, e.g. a test signature or a false positive).
Closing needs a resolution (``confirmed`` only once every required step of the
action plan is done); a closed incident stays closed, and later alerts of the
same host and user open a new one. The first human response (a state change,
assignment, note or checklist tick) sets ``acknowledged_at``: time to respond.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, StringConstraints
from sqlalchemy import func, select

from vakta.server import actionplan, audit, evidence, evidence_pdf
from vakta.server.api.alerts import AlertOut, alert_out
from vakta.server.api.common import STRICT, NoNul, NoteText, Page, Username, database, page
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
    #: The first human response (state change, assignment, note or checklist tick).
    acknowledged_at: datetime | None
    closed_at: datetime | None


class NoteOut(BaseModel):
    id: int
    author: str
    created_at: datetime
    text: str


class ChecklistStep(BaseModel):
    """A step of the action plan for this incident: done (when, by whom, with what note) or not yet."""

    step_id: int
    position: int
    title: str
    description: str
    required: bool
    #: Retired from the plan since (shown only when it was done for this incident).
    retired: bool
    done: bool
    done_at: datetime | None
    done_by: str | None
    note: str | None


class IncidentDetail(IncidentOut):
    alert_list: list[AlertOut]
    notes: list[NoteOut]
    checklist: list[ChecklistStep]


class IncidentChange(BaseModel):
    """Fields to change; ``assignee: null`` unassigns, a missing field is left alone."""

    model_config = STRICT
    state: IncidentState | None = None
    resolution: Resolution | None = None
    assignee: Username | None = None


class NoteIn(BaseModel):
    model_config = STRICT
    text: NoteText


class StepDone(BaseModel):
    model_config = STRICT
    #: What was done (e.g. the police case reference); may be empty.
    note: Annotated[str, StringConstraints(max_length=10_000), NoNul] = ""


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
        steps = [ChecklistStep(**item.as_dict()) for item in actionplan.checklist(session, incident_id)]
    base = incident_out(incident, len(alert_list))
    return IncidentDetail(**base.model_dump(), alert_list=alert_list, notes=notes, checklist=steps)


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
            _touch(incident, now)
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
        _touch(incident, now)
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


@router.put("/{incident_id}/steps/{step_id}", response_model=ChecklistStep)
def tick_step(
    incident_id: int, step_id: int, body: StepDone, request: Request, worker: Worker
) -> ChecklistStep:
    """Mark a step of the action plan done for this incident (again: replace its note)."""
    return _step_change(request, incident_id, step_id, worker, body.note)


@router.delete("/{incident_id}/steps/{step_id}", response_model=ChecklistStep)
def untick_step(incident_id: int, step_id: int, request: Request, worker: Worker) -> ChecklistStep:
    """Mark a step of the action plan not done (the audit log keeps that it was)."""
    return _step_change(request, incident_id, step_id, worker, None)


def _step_change(
    request: Request, incident_id: int, step_id: int, worker: Principal, note: str | None
) -> ChecklistStep:
    """Tick (``note`` given) or untick a step; the checklist entry as it is afterwards."""
    now = utcnow()
    try:
        with database(request).write() as session:
            incident = _get(session, incident_id, lock=True)
            if note is None:
                changed = actionplan.untick(session, incident, step_id, worker.actor)
            else:
                changed = actionplan.tick(session, incident, step_id, note, worker.actor)
            if changed:
                _touch(incident, now)
            item = actionplan.checklist_item(session, incident_id, step_id)
    except actionplan.StepNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except actionplan.PlanError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return ChecklistStep(**item.as_dict())


@router.get(
    "/{incident_id}/evidence.pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "The evidence record as PDF."}},
)
def get_evidence_pdf(incident_id: int, request: Request, reader: Reader) -> Response:
    """The evidence record as PDF for a police report, tied to the JSON record by its SHA-256; audited."""
    with database(request).read() as session:
        record = evidence.build(session, _get(session, incident_id), reader.actor)
    pdf = evidence_pdf.render(record)
    with database(request).write() as session:
        details = {"sha256": record["sha256"], "format": "pdf", "pdf_sha256": evidence.bytes_digest(pdf)}
        audit.append(session, reader.actor, "incident.evidence", f"incident:{incident_id}", details)
    name = f"vakta-incident-{incident_id}-evidence.pdf"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
    return Response(pdf, media_type="application/pdf", headers=headers)


def _touch(incident: Incident, now: datetime) -> None:
    """A person worked the incident: it changed now, and the first such change is the response."""
    incident.updated_at = now
    if incident.acknowledged_at is None:
        incident.acknowledged_at = now


def _apply(session: Any, incident: Incident, change: IncidentChange, now: datetime) -> dict[str, Any]:
    """Apply a change; the audit details of what changed (empty: nothing did)."""
    fields = change.model_fields_set
    details: dict[str, Any] = {}
    if "assignee" in fields:
        details.update(_assign(session, incident, change.assignee))
    if change.state is not None and change.state != incident.state:
        if change.state == IncidentState.CLOSED and change.resolution == Resolution.CONFIRMED:
            _check_plan_done(session, incident)
        details.update(_transition(incident, change.state, change.resolution, now))
    elif change.resolution is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, "a resolution is given when closing an incident")
    return details


def _check_plan_done(session: Any, incident: Incident) -> None:
    """Refuse to close as confirmed while required steps of the action plan are not done."""
    missing = actionplan.missing_required(session, incident.id)
    if missing:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "closing as confirmed needs every required action plan step done; not done yet: "
            + "; ".join(missing),
        )


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
        acknowledged_at=incident.acknowledged_at,
        closed_at=incident.closed_at,
    )


def _note_out(note: Note) -> NoteOut:
    return NoteOut(id=note.id, author=note.author, created_at=note.created_at, text=note.text)
