"""The company's action plan: the steps every incident is worked through, and each incident's checklist.

Admins shape the plan (add, edit, reorder, retire steps); a sensible default
is seeded when the table is empty, so a new console starts with one. Steps
are retired, never deleted: an incident keeps the steps it was worked by,
and its evidence record says who did each and when. Closing an incident as
``confirmed`` needs every active required step done (``missing_required``).
Every change is an audit entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from vakta.server import audit
from vakta.server.db import Database
from vakta.server.models import ActionPlanStep, Incident, IncidentStep, utcnow

#: Serialises seeding of servers starting at the same time (PostgreSQL advisory lock).
SEED_LOCK = 0x76616B7470
SYSTEM_ACTOR = "system"
MAX_TITLE = 200
MAX_DESCRIPTION = 10_000
#: The prefix of an optional step's line in the text form of a plan.
OPTIONAL_PREFIX = "optional:"

#: (title, description, required): the plan a new console starts with, editable afterwards.
DEFAULT_PLAN: tuple[tuple[str, str, bool], ...] = (
    (
        "Triage the alert without viewing the content",
        "Check host, user, path, storage and list provenance. Never open, copy or preview the file.",
        True,
    ),
    (
        "Preserve evidence and isolate the device",
        "Take the device off the network without switching it off; keep it safe, record who holds it.",
        True,
    ),
    ("Report to the police", "Hand over the evidence record (PDF and JSON); note the case reference.", True),
    ("Inform HR", "Involve HR for the employee concerned; record whom you informed.", True),
    ("Inform legal", "Involve the legal department or counsel; record whom you informed.", True),
    ("Record the outcome", "Note the outcome (police case, HR and legal decisions) before closing.", True),
)


class PlanError(ValueError):
    """A plan change or checklist tick that cannot be done as asked (the message says why)."""


class StepNotFound(PlanError):
    """No step with that id."""


@dataclass(frozen=True)
class StepSpec:
    """A step as an operator writes it (in a plan file)."""

    title: str
    description: str = ""
    required: bool = True


@dataclass(frozen=True)
class ChecklistItem:
    """One step of an incident's checklist: the step, and whether (and by whom) it was done."""

    step_id: int
    position: int
    title: str
    description: str
    required: bool
    retired: bool
    done_at: datetime | None
    done_by: str | None
    note: str | None

    @property
    def done(self) -> bool:
        return self.done_at is not None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, as the evidence record holds it."""
        return {
            "step_id": self.step_id,
            "position": self.position,
            "title": self.title,
            "description": self.description,
            "required": self.required,
            "retired": self.retired,
            "done": self.done,
            "done_at": self.done_at.isoformat() if self.done_at else None,
            "done_by": self.done_by,
            "note": self.note,
        }


# --------------------------------------------------------------------------- the plan


def steps(session: Session, retired: bool = False) -> list[ActionPlanStep]:
    """The plan's steps in order (``retired``: those too, after the active ones)."""
    query = select(ActionPlanStep).order_by(
        ActionPlanStep.retired_at.is_not(None), ActionPlanStep.position, ActionPlanStep.id
    )
    if not retired:
        query = query.where(ActionPlanStep.retired_at.is_(None))
    return list(session.execute(query).scalars())


def ensure_default(db: Database) -> bool:
    """Seed the default plan when no step was ever made (True if it did): at a console's first start."""
    with db.write() as session:
        if db.dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEED_LOCK})
        if session.execute(select(func.count()).select_from(ActionPlanStep)).scalar_one():
            return False
        now = utcnow()
        for position, (title, description, required) in enumerate(DEFAULT_PLAN, 1):
            session.add(
                ActionPlanStep(
                    position=position, title=title, description=description, required=required, created_at=now
                )
            )
        session.flush()
        audit.append(session, SYSTEM_ACTOR, "action-plan.seed", "action-plan", {"steps": len(DEFAULT_PLAN)})
    return True


def create_step(session: Session, spec: StepSpec, position: int | None, actor: str) -> ActionPlanStep:
    """Add a step (at ``position``, 1-based, or last) and renumber the active steps."""
    _check(spec)
    step = ActionPlanStep(
        position=0,
        title=spec.title,
        description=spec.description,
        required=spec.required,
        created_at=utcnow(),
    )
    session.add(step)
    session.flush()
    _place(session, step, position)
    audit.append(session, actor, "action-plan.create", f"action-plan:{step.id}", _step_details(step))
    return step


def update_step(session: Session, step_id: int, changes: dict[str, Any], actor: str) -> ActionPlanStep:
    """Change a step's ``title``, ``description``, ``required``, ``position`` or ``retired`` (given keys only)."""
    step = session.get(ActionPlanStep, step_id, with_for_update=True)
    if step is None:
        raise StepNotFound(f"no action plan step {step_id}")
    before = _step_details(step)
    for field in ("title", "description", "required"):
        if field in changes:
            setattr(step, field, changes[field])
    _check(StepSpec(step.title, step.description, step.required))
    if "retired" in changes and changes["retired"] != (step.retired_at is not None):
        step.retired_at = utcnow() if changes["retired"] else None
        _place(session, step, None if changes["retired"] else changes.get("position"))
    elif changes.get("position") is not None and step.retired_at is None:
        _place(session, step, changes["position"])
    after = _step_details(step)
    diff = {k: {"from": before[k], "to": v} for k, v in after.items() if before[k] != v}
    if diff:
        audit.append(session, actor, "action-plan.update", f"action-plan:{step.id}", diff)
    return step


def replace_plan(session: Session, specs: list[StepSpec], actor: str) -> dict[str, int]:
    """Make the active plan exactly ``specs``, in order: same-titled steps are kept, others retired or added.

    Keeping a step by its title keeps the incidents' ticks of it.
    """
    if not specs:
        raise PlanError("a plan needs at least one step")
    titles = [s.title for s in specs]
    if len(set(titles)) != len(titles):
        raise PlanError("two steps have the same title")
    for spec in specs:
        _check(spec)
    active = {s.title: s for s in steps(session)}
    counts = {"kept": 0, "added": 0, "retired": 0}
    for step in active.values():
        if step.title not in titles:
            update_step(session, step.id, {"retired": True}, actor)
            counts["retired"] += 1
    for position, spec in enumerate(specs, 1):
        existing = active.get(spec.title)
        if existing is None:
            create_step(session, spec, position, actor)
            counts["added"] += 1
        else:
            changes = {"description": spec.description, "required": spec.required, "position": position}
            update_step(session, existing.id, changes, actor)
            counts["kept"] += 1
    return counts


def _check(spec: StepSpec) -> None:
    if not spec.title.strip() or len(spec.title) > MAX_TITLE:
        raise PlanError(f"a step's title has 1 to {MAX_TITLE} characters")
    if len(spec.description) > MAX_DESCRIPTION:
        raise PlanError(f"a step's description has at most {MAX_DESCRIPTION} characters")
    if "\x00" in spec.title + spec.description:
        raise PlanError("NUL characters are not allowed")


def _place(session: Session, step: ActionPlanStep, position: int | None) -> None:
    """Number the active steps 1..n with ``step`` at ``position`` (None: where it is, or last when new)."""
    others = [s for s in steps(session) if s.id != step.id]
    if step.retired_at is None:
        at = len(others) if position is None and step.position <= 0 else (position or step.position) - 1
        others.insert(max(0, min(at, len(others))), step)
    for number, each in enumerate(others, 1):
        each.position = number
    session.flush()


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _step_details(step: ActionPlanStep) -> dict[str, Any]:
    return {
        "title": step.title,
        "description_sha256": _digest(step.description),
        "required": step.required,
        "position": step.position,
        "retired": step.retired_at is not None,
    }


# --------------------------------------------------------------------------- plan files


def parse_plan(data: str) -> list[StepSpec]:
    """A plan file: JSON (a list of ``{"title", "description", "required"}`` or of titles), else text.

    Text: one step per line, ``title`` or ``title | description``; a line
    starting with ``optional:`` is a step that need not be done to close as
    confirmed; blank lines and lines starting with ``#`` are skipped.
    """
    if data.lstrip().startswith("["):
        return _parse_json(data)
    specs = []
    for number, raw in enumerate(data.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        required = not line.lower().startswith(OPTIONAL_PREFIX)
        if not required:
            line = line[len(OPTIONAL_PREFIX) :].strip()
        title, _, description = (part.strip() for part in line.partition("|"))
        if not title:
            raise PlanError(f"line {number}: a step needs a title")
        specs.append(StepSpec(title, description, required))
    return specs


def _parse_json(data: str) -> list[StepSpec]:
    try:
        items = json.loads(data)
    except json.JSONDecodeError as exc:
        raise PlanError(f"not JSON: {exc}") from None
    specs = []
    for number, item in enumerate(items, 1):
        if isinstance(item, str):
            item = {"title": item}
        if not isinstance(item, dict) or not isinstance(item.get("title"), str):
            raise PlanError(f"step {number}: a title (text) is needed")
        unknown = set(item) - {"title", "description", "required"}
        if unknown:
            raise PlanError(f"step {number}: unknown field(s) {', '.join(sorted(unknown))}")
        description, required = item.get("description", ""), item.get("required", True)
        if not isinstance(description, str) or not isinstance(required, bool):
            raise PlanError(f"step {number}: description is text and required is true or false")
        specs.append(StepSpec(item["title"].strip(), description.strip(), required))
    return specs


def format_plan(plan: list[ActionPlanStep]) -> str:
    """The active plan in the text form ``parse_plan`` reads back."""
    lines = ["# Vakta action plan: one step per line, 'title | description'; 'optional:' = not required"]
    for step in plan:
        prefix = "" if step.required else f"{OPTIONAL_PREFIX} "
        description = " ".join(step.description.split())
        lines.append(f"{prefix}{step.title}" + (f" | {description}" if description else ""))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- an incident's checklist


def checklist(session: Session, incident_id: int) -> list[ChecklistItem]:
    """Every active step, and the retired steps done for this incident, in plan order."""
    done = {
        row.step_id: row
        for row in session.execute(
            select(IncidentStep).where(IncidentStep.incident_id == incident_id)
        ).scalars()
    }
    return [
        _item(step, done.get(step.id))
        for step in steps(session, retired=True)
        if step.retired_at is None or step.id in done
    ]


def checklist_item(session: Session, incident_id: int, step_id: int) -> ChecklistItem:
    """One step as it stands for this incident (a retired step too, even when not done)."""
    step = session.get(ActionPlanStep, step_id)
    if step is None:
        raise StepNotFound(f"no action plan step {step_id}")
    return _item(step, _incident_step(session, incident_id, step_id))


def _item(step: ActionPlanStep, tick: IncidentStep | None) -> ChecklistItem:
    return ChecklistItem(
        step_id=step.id,
        position=step.position,
        title=step.title,
        description=step.description,
        required=step.required,
        retired=step.retired_at is not None,
        done_at=tick.done_at if tick else None,
        done_by=tick.done_by if tick else None,
        note=tick.note if tick else None,
    )


def missing_required(session: Session, incident_id: int) -> list[str]:
    """Titles of the active required steps not yet done for this incident."""
    return [i.title for i in checklist(session, incident_id) if i.required and not i.retired and not i.done]


def tick(session: Session, incident: Incident, step_id: int, note: str, actor: str) -> bool:
    """Mark a step done for the incident (again: the note is replaced); True when something changed."""
    step = _usable_step(session, incident, step_id)
    row = _incident_step(session, incident.id, step_id)
    if row is not None and row.note == note:
        return False
    details: dict[str, Any] = {"step": step.id, "title": step.title, "note_sha256": _digest(note)}
    if row is None:
        if step.retired_at is not None:
            raise PlanError(f"step {step_id} is retired from the action plan")
        session.add(
            IncidentStep(incident_id=incident.id, step_id=step.id, done_at=utcnow(), done_by=actor, note=note)
        )
    else:
        row.note = note
        details["note_changed"] = True
    session.flush()
    audit.append(session, actor, "incident.step-done", f"incident:{incident.id}", details)
    return True


def untick(session: Session, incident: Incident, step_id: int, actor: str) -> bool:
    """Mark a step not done (its tick is removed, the audit log keeps it); True when it was done."""
    step = _usable_step(session, incident, step_id)
    row = _incident_step(session, incident.id, step_id)
    if row is None:
        return False
    details = {
        "step": step.id,
        "title": step.title,
        "was_done_by": row.done_by,
        "was_done_at": row.done_at.isoformat(),
    }
    session.delete(row)
    session.flush()
    audit.append(session, actor, "incident.step-undone", f"incident:{incident.id}", details)
    return True


def _usable_step(session: Session, incident: Incident, step_id: int) -> ActionPlanStep:
    step = session.get(ActionPlanStep, step_id)
    if step is None:
        raise StepNotFound(f"no action plan step {step_id}")
    if incident.closed_at is not None:
        raise PlanError("the incident is closed: its checklist is final (add a note instead)")
    return step


def _incident_step(session: Session, incident_id: int, step_id: int) -> IncidentStep | None:
    query = select(IncidentStep).where(
        IncidentStep.incident_id == incident_id, IncidentStep.step_id == step_id
    )
    return session.execute(query).scalar_one_or_none()
