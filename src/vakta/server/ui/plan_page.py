"""The action plan page: every person sees the company's plan; admins add, edit, reorder, retire and restore steps.

As the other pages, it calls the API's own functions with the caller, so the
checks and the audit entries are the API's.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, Response
from pydantic import ValidationError

from vakta.server.api import actionplan as plan_api
from vakta.server.auth import Permission, Principal
from vakta.server.ui.routes import PREFIX, Csrf, Refused, Text, _caller, _page, _problem, _see

router = APIRouter(prefix=PREFIX, include_in_schema=False)

#: Fixed messages shown after a change (the query names one; nothing from the request is echoed).
NOTICES = {
    "added": "The step was added to the action plan.",
    "saved": "The step was saved.",
    "retired": "The step was retired: incidents that did it keep it, new work no longer shows it.",
    "restored": "The step is back in the action plan.",
}
Flag = Annotated[str, Form()]


@router.get("/action-plan")
def plan_page(request: Request, done: str = "") -> Response:
    caller = _caller(request, Permission.READ)
    return _plan(request, caller, notice=NOTICES.get(done))


def _plan(
    request: Request,
    caller: Principal,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    steps = plan_api.list_steps(request, caller, retired=True)
    return _page(
        request,
        caller,
        "action_plan.html",
        status_code,
        active=[s for s in steps if s.retired_at is None],
        retired=[s for s in steps if s.retired_at is not None],
        notice=notice,
        error=error,
    )


@router.post("/action-plan")
def add_step(
    request: Request,
    csrf_token: Csrf = "",
    title: Text = "",
    description: Text = "",
    required: Flag = "",
    position: Text = "",
) -> Response:
    caller = _caller(request, Permission.MANAGE, csrf_token)
    return _apply(request, caller, None, _step_fields(title, description, required, position), "added")


@router.post("/action-plan/{step_id}")
def edit_step(
    request: Request,
    step_id: int,
    csrf_token: Csrf = "",
    title: Text = "",
    description: Text = "",
    required: Flag = "",
    position: Text = "",
) -> Response:
    caller = _caller(request, Permission.MANAGE, csrf_token)
    return _apply(request, caller, step_id, _step_fields(title, description, required, position), "saved")


def _step_fields(title: str, description: str, required: str, position: str) -> dict[str, Any]:
    """A step's form fields as the API takes them (an empty position: leave it where it is or at the end)."""
    return {
        "title": title,
        "description": description.strip(),
        "required": bool(required),
        "position": position.strip() or None,
    }


@router.post("/action-plan/{step_id}/retire")
def retire_step(request: Request, step_id: int, csrf_token: Csrf = "") -> Response:
    caller = _caller(request, Permission.MANAGE, csrf_token)
    return _apply(request, caller, step_id, {"retired": True}, "retired")


@router.post("/action-plan/{step_id}/restore")
def restore_step(request: Request, step_id: int, csrf_token: Csrf = "") -> Response:
    caller = _caller(request, Permission.MANAGE, csrf_token)
    return _apply(request, caller, step_id, {"retired": False}, "restored")


def _apply(
    request: Request, caller: Principal, step_id: int | None, fields: dict[str, Any], done: str
) -> Response:
    """Add (``step_id`` None) or change a step through the API's functions; the page again with any error."""
    try:
        if step_id is None:
            plan_api.add_step(plan_api.StepIn.model_validate(fields), request, caller)
        else:
            plan_api.change_step(step_id, plan_api.StepChange.model_validate(fields), request, caller)
    except ValidationError as exc:
        return _plan(request, caller, error=_problem(exc), status_code=422)
    except HTTPException as exc:
        if exc.status_code == 404:
            raise Refused(exc.status_code, str(exc.detail)) from None
        return _plan(request, caller, error=str(exc.detail), status_code=exc.status_code)
    return _see(f"/action-plan?done={done}")
