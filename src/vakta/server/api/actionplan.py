"""The company's action plan over HTTP: everyone who reads sees it, admins shape it (steps are retired, never deleted)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, Field, StringConstraints

from vakta.server import actionplan
from vakta.server.api.common import STRICT, NoNul, database
from vakta.server.auth import Permission, Principal
from vakta.server.auth import require as require_
from vakta.server.models import ActionPlanStep

router = APIRouter(prefix="/action-plan", tags=["action plan"])
Admin = Annotated[Principal, Depends(require_(Permission.MANAGE))]
Reader = Annotated[Principal, Depends(require_(Permission.READ))]

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoNul]
Description = Annotated[str, StringConstraints(max_length=10_000), NoNul]


class StepOut(BaseModel):
    id: int
    #: 1-based place among the active steps (a retired step keeps its last one).
    position: int
    title: str
    description: str
    #: Must be done before the incident can be closed as confirmed.
    required: bool
    created_at: datetime
    retired_at: datetime | None


class StepIn(BaseModel):
    model_config = STRICT
    title: Title
    description: Description = ""
    required: bool = True
    #: Where among the active steps (1: first); none: last.
    position: int | None = Field(None, ge=1, le=10_000)


class StepChange(BaseModel):
    """Fields to change; ``retired: true`` takes the step out of the plan (``false`` brings it back)."""

    model_config = STRICT
    title: Title | None = None
    description: Description | None = None
    required: bool | None = None
    position: int | None = Field(None, ge=1, le=10_000)
    retired: bool | None = None


@router.get("", response_model=list[StepOut])
def list_steps(
    request: Request,
    _: Reader,
    retired: Annotated[bool, Query(description="Include retired steps (after the active ones).")] = False,
) -> list[StepOut]:
    """The plan's steps in order."""
    with database(request).read() as session:
        return [step_out(s) for s in actionplan.steps(session, retired=retired)]


@router.post("", response_model=StepOut, status_code=status.HTTP_201_CREATED)
def add_step(body: StepIn, request: Request, admin: Admin) -> StepOut:
    """Add a step (at ``position``, or last)."""
    spec = actionplan.StepSpec(body.title, body.description, body.required)
    try:
        with database(request).write() as session:
            step = actionplan.create_step(session, spec, body.position, admin.actor)
    except actionplan.PlanError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from None
    return step_out(step)


@router.patch("/{step_id}", response_model=StepOut)
def change_step(step_id: int, change: StepChange, request: Request, admin: Admin) -> StepOut:
    """Edit, move, retire or bring back a step."""
    changes = {k: v for k, v in change.model_dump(exclude_unset=True).items() if v is not None}
    try:
        with database(request).write() as session:
            step = actionplan.update_step(session, step_id, changes, admin.actor)
    except actionplan.StepNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except actionplan.PlanError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from None
    return step_out(step)


def step_out(step: ActionPlanStep) -> StepOut:
    return StepOut(
        id=step.id,
        position=step.position,
        title=step.title,
        description=step.description,
        required=step.required,
        created_at=step.created_at,
        retired_at=step.retired_at,
    )
