"""The console's pages: login, dashboard, incidents, agents, audit.

Every page reads and changes data through the API's own route functions,
called as plain functions with the caller's ``Principal``: the workflow,
permissions and audit entries are the API's, not a copy. A form posts the
session's CSRF token in a field, checked by ``auth.authenticate`` exactly as
the API's ``X-CSRF-Token`` header is. Templates escape every value, and each
page forbids scripts, frames and anything from another origin, so a hostile
file name is only ever text. Nothing here can show a file's content: the
console never has it.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import jinja2
from fastapi import APIRouter, FastAPI, Form, HTTPException, Query, Request, Response, status
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy import func, select

from vakta.server.api import admin, agents, incidents, sessions, stats
from vakta.server.api.common import Page, database
from vakta.server.auth import CSRF_HEADER, SESSION_COOKIE, Permission, Principal, authenticate, digest
from vakta.server.models import Agent, IncidentState, LoginSession, Resolution

log = logging.getLogger(__name__)

PREFIX = "/ui"
HERE = Path(__file__).parent
#: Before login there is no session: the login form's token is checked against this cookie (double submit).
LOGIN_CSRF_COOKIE = "vakta_login_csrf"
PAGE_SIZE = 100
#: Pages run no script, load nothing from elsewhere, cannot be framed and post forms only to the console.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: Fixed messages shown after a change (the query names one; nothing from the request is echoed).
NOTICES = {
    "state": "The incident's state was changed.",
    "assigned": "The assignment was saved.",
    "note": "The note was added.",
    "step": "The action plan step was marked done.",
    "unstep": "The action plan step was marked not done.",
    "revoked": "The agent was revoked: its requests are refused from now on.",
}
SHOW_OPEN: dict[str, bool | None] = {"open": True, "closed": False, "all": None}

Csrf = Annotated[str, Form()]
Text = Annotated[str, Form()]

router = APIRouter(prefix=PREFIX, include_in_schema=False)


class LoginNeeded(Exception):
    """No valid session: the browser is sent to the login page."""


class SecondFactorNeeded(Exception):
    """The console requires a second factor this person has not enrolled: sent to the security page."""


class Refused(Exception):
    """A request that is not allowed or cannot be done: shown as a page with its status."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


def _duration(seconds: float | None) -> str:
    """A duration for people: 45 s, 12 min, 3.5 h, 2.1 d ("-" when there is none)."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}".replace(".0 ", " ")
    return f"{seconds:.0f} s"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value, in every template, whatever its file name
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    env.filters["duration"] = _duration
    return env


templates = Jinja2Templates(env=_environment())


def install(app: FastAPI) -> None:
    """Serve the pages under ``/ui``, their stylesheet, and send ``/`` there."""
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    app.include_router(router)
    app.add_api_route("/", _home, methods=["GET"], include_in_schema=False)
    app.add_exception_handler(LoginNeeded, _to_login)
    app.add_exception_handler(Refused, _refused)
    from vakta.server.ui import pages  # users, lists, security (it imports this module)

    app.include_router(pages.router)
    from vakta.server.ui import plan_page  # the action plan (it imports this module)

    app.include_router(plan_page.router)
    app.add_exception_handler(SecondFactorNeeded, pages.to_security)


def _home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/", status.HTTP_303_SEE_OTHER)


async def _to_login(request: Request, exc: Exception) -> Response:
    return RedirectResponse(f"{PREFIX}/login", status.HTTP_303_SEE_OTHER)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    context = {"message": exc.message, "status_code": exc.status_code}
    return _render(request, "error.html", context, exc.status_code)


# --------------------------------------------------------------------------- who is asking


def _caller(
    request: Request, permission: Permission, csrf: str | None = None, *, enrolling: bool = False
) -> Principal:
    """The signed-in person, if allowed; ``csrf`` is the form's token on requests that change something.

    ``enrolling``: a page a person who must still enrol a second factor may use
    (the others send them to the security page).
    """
    checked = request if csrf is None else _with_csrf_header(request, csrf)
    try:
        with database(request).read() as session:
            principal = authenticate(session, checked)
    except HTTPException as exc:
        log.info("UI refused %s %s: %s", request.method, request.url.path, exc.detail)
        raise Refused(exc.status_code, str(exc.detail)) from None
    if principal is None:
        raise LoginNeeded
    if not principal.may(permission):
        log.info("UI refused %s %s to %s", request.method, request.url.path, principal.actor)
        raise Refused(status.HTTP_403_FORBIDDEN, f"the {principal.role} role may not do this")
    if principal.needs_totp and not enrolling:
        raise SecondFactorNeeded
    return principal


def _with_csrf_header(request: Request, token: str) -> Request:
    """The request as the API would see it with the form's token in the CSRF header (and no other)."""
    name = CSRF_HEADER.lower().encode()
    headers = [(k, v) for k, v in request.scope["headers"] if k != name]
    headers.append((name, token.encode()))
    return Request({**request.scope, "headers": headers})


def _session_csrf(request: Request) -> str:
    """The CSRF token of this browser session, for the page's forms ("" without a session)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return ""
    query = select(LoginSession.csrf_token).where(LoginSession.token_hash == digest(cookie))
    with database(request).read() as session:
        token = session.execute(query).scalar_one_or_none()
    return token or ""


# --------------------------------------------------------------------------- rendering


def _render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=SECURITY_HEADERS
    )


def _page(request: Request, caller: Principal, name: str, status_code: int = 200, **context: Any) -> Response:
    """A page of the signed-in console: who is signed in, what they may do, the token for its forms."""
    base = {
        "caller": caller,
        "csrf": _session_csrf(request),
        "may_work": caller.may(Permission.WORK),
        "may_manage": caller.may(Permission.MANAGE),
        "notice": None,
        "error": None,
    }
    return _render(request, name, {**base, **context}, status_code)


def _see(path: str) -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}{path}", status.HTTP_303_SEE_OTHER)


def _problem(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'form'}: {e['msg']}" for e in exc.errors())


# --------------------------------------------------------------------------- login and logout


@router.get("/login")
def login_form(request: Request) -> Response:
    try:
        _caller(request, Permission.READ)
    except (LoginNeeded, Refused):
        return _login_page(request)
    return _see("/")


@router.post("/login")
def login(
    request: Request, csrf_token: Csrf = "", username: Text = "", password: Text = "", totp: Text = ""
) -> Response:
    """Log in through the API's own login: the same checks, session cookie and audit entries."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected.encode(), csrf_token.encode()):
        return _login_page(request, "The login form expired: please log in again.", username, 403)
    try:
        body = sessions.Login(username=username, password=password, totp=totp.strip() or None)
    except ValidationError:
        return _login_page(request, sessions.WRONG_LOGIN, username, 401)
    issued = Response()
    try:
        sessions.login(body, request, issued)
    except HTTPException as exc:
        return _login_page(request, str(exc.detail), username, exc.status_code)
    response = _see("/")
    _copy_cookies(issued, response)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=f"{PREFIX}/login")
    return response


def _login_page(request: Request, error: str | None = None, username: str = "", code: int = 200) -> Response:
    token = secrets.token_urlsafe(32)
    context = {"csrf": token, "error": error, "username": username}
    response = _render(request, "login.html", context, code)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=f"{PREFIX}/login",
    )
    return response


@router.post("/logout")
def logout(request: Request, csrf_token: Csrf = "") -> Response:
    caller = _caller(request, Permission.READ, csrf_token, enrolling=True)
    ended = sessions.logout(request, caller)
    response = _see("/login")
    _copy_cookies(ended, response)
    return response


def _copy_cookies(source: Response, target: Response) -> None:
    target.raw_headers.extend((k, v) for k, v in source.raw_headers if k == b"set-cookie")


# --------------------------------------------------------------------------- dashboard


@router.get("/")
def dashboard(request: Request) -> Response:
    caller = _caller(request, Permission.READ)
    figures = stats.stats(request, caller, weeks=12)
    peak = max([1, *(w.alerts for w in figures.alerts_per_week)])
    versions = _list_versions(request)
    return _page(request, caller, "dashboard.html", figures=figures, peak=peak, list_versions=versions)


def _list_versions(request: Request) -> list[tuple[str, int]]:
    """The hash-list versions the agents in service last reported, with how many run each."""
    count = func.count()
    query = (
        select(Agent.list_version, count)
        .where(Agent.revoked_at.is_(None))
        .group_by(Agent.list_version)
        .order_by(count.desc(), Agent.list_version)
    )
    with database(request).read() as session:
        return [(str(version), int(n)) for version, n in session.execute(query)]


# --------------------------------------------------------------------------- incidents


@router.get("/incidents")
def incident_list(
    request: Request,
    show: Literal["open", "closed", "all"] = "open",
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    caller = _caller(request, Permission.READ)
    paging = Page(PAGE_SIZE + 1, offset)
    rows = incidents.list_incidents(
        request, caller, paging, state=None, open=SHOW_OPEN[show], test=None, host=None, assignee=None
    )
    return _page(
        request,
        caller,
        "incidents.html",
        incidents=rows[:PAGE_SIZE],
        more=len(rows) > PAGE_SIZE,
        show=show,
        offset=offset,
        page_size=PAGE_SIZE,
    )


@router.get("/incidents/{incident_id}")
def incident_page(request: Request, incident_id: int, done: str = "") -> Response:
    caller = _caller(request, Permission.READ)
    return _incident(request, caller, incident_id, notice=NOTICES.get(done))


def _incident(
    request: Request,
    caller: Principal,
    incident_id: int,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    try:
        detail = incidents.get_incident(incident_id, request, caller)
    except HTTPException as exc:
        raise Refused(exc.status_code, str(exc.detail)) from None
    allowed = incidents.NEXT_STATES[detail.state]
    moves = [s.value for s in IncidentState if s in allowed and s != IncidentState.CLOSED]
    return _page(
        request,
        caller,
        "incident.html",
        status_code,
        incident=detail,
        moves=moves,
        may_close=IncidentState.CLOSED in allowed,
        resolutions=[r.value for r in Resolution],
        notice=notice,
        error=error,
    )


@router.post("/incidents/{incident_id}/state")
def change_state(
    request: Request, incident_id: int, csrf_token: Csrf = "", state: Text = "", resolution: Text = ""
) -> Response:
    """Move the incident on (closing it takes a resolution), as ``PATCH /api/v1/incidents/{id}`` does."""
    caller = _caller(request, Permission.WORK, csrf_token)
    fields = {"state": state, "resolution": resolution or None}
    return _change(request, caller, incident_id, fields, "state")


@router.post("/incidents/{incident_id}/assign")
def assign(request: Request, incident_id: int, csrf_token: Csrf = "", assignee: Text = "") -> Response:
    """Assign the incident to a user who works incidents (empty: unassign)."""
    caller = _caller(request, Permission.WORK, csrf_token)
    return _change(request, caller, incident_id, {"assignee": assignee.strip() or None}, "assigned")


def _change(
    request: Request, caller: Principal, incident_id: int, fields: dict[str, Any], done: str
) -> Response:
    try:
        change = incidents.IncidentChange.model_validate(fields)
        incidents.change_incident(incident_id, change, request, caller)
    except ValidationError as exc:
        return _incident(request, caller, incident_id, error=_problem(exc), status_code=422)
    except HTTPException as exc:
        return _incident(request, caller, incident_id, error=str(exc.detail), status_code=exc.status_code)
    return _see(f"/incidents/{incident_id}?done={done}")


@router.post("/incidents/{incident_id}/notes")
def add_note(request: Request, incident_id: int, csrf_token: Csrf = "", text: Text = "") -> Response:
    caller = _caller(request, Permission.WORK, csrf_token)
    try:
        incidents.add_note(incident_id, incidents.NoteIn(text=text), request, caller)
    except ValidationError as exc:
        return _incident(request, caller, incident_id, error=_problem(exc), status_code=422)
    except HTTPException as exc:
        raise Refused(exc.status_code, str(exc.detail)) from None
    return _see(f"/incidents/{incident_id}?done=note")


# --------------------------------------------------------------------------- action plan checklist


@router.post("/incidents/{incident_id}/steps/{step_id}")
def tick_step(
    request: Request, incident_id: int, step_id: int, csrf_token: Csrf = "", note: Text = ""
) -> Response:
    """Mark an action plan step done, as ``PUT /api/v1/incidents/{id}/steps/{step_id}`` does."""
    caller = _caller(request, Permission.WORK, csrf_token)
    return _step(request, caller, incident_id, step_id, note.strip(), "step")


@router.post("/incidents/{incident_id}/steps/{step_id}/undo")
def untick_step(request: Request, incident_id: int, step_id: int, csrf_token: Csrf = "") -> Response:
    """Mark an action plan step not done, as ``DELETE /api/v1/incidents/{id}/steps/{step_id}`` does."""
    caller = _caller(request, Permission.WORK, csrf_token)
    return _step(request, caller, incident_id, step_id, None, "unstep")


def _step(
    request: Request, caller: Principal, incident_id: int, step_id: int, note: str | None, done: str
) -> Response:
    try:
        if note is None:
            incidents.untick_step(incident_id, step_id, request, caller)
        else:
            incidents.tick_step(incident_id, step_id, incidents.StepDone(note=note), request, caller)
    except ValidationError as exc:
        return _incident(request, caller, incident_id, error=_problem(exc), status_code=422)
    except HTTPException as exc:
        if exc.status_code == status.HTTP_404_NOT_FOUND:
            raise Refused(exc.status_code, str(exc.detail)) from None
        return _incident(request, caller, incident_id, error=str(exc.detail), status_code=exc.status_code)
    return _see(f"/incidents/{incident_id}?done={done}")


# --------------------------------------------------------------------------- agents


@router.get("/agents")
def agent_list(request: Request, offset: Annotated[int, Query(ge=0)] = 0, done: str = "") -> Response:
    caller = _caller(request, Permission.READ)
    rows = agents.list_agents(request, caller, Page(PAGE_SIZE + 1, offset), state=None)
    return _page(
        request,
        caller,
        "agents.html",
        agents=rows[:PAGE_SIZE],
        more=len(rows) > PAGE_SIZE,
        offset=offset,
        page_size=PAGE_SIZE,
        notice=NOTICES.get(done),
    )


@router.post("/agents/{agent_id}/revoke")
def revoke_agent(request: Request, agent_id: str, csrf_token: Csrf = "") -> Response:
    caller = _caller(request, Permission.MANAGE, csrf_token)
    try:
        agents.revoke(agent_id, request, caller)
    except HTTPException as exc:
        raise Refused(exc.status_code, str(exc.detail)) from None
    return _see("/agents?done=revoked")


# --------------------------------------------------------------------------- audit


@router.get("/audit")
def audit_page(request: Request, offset: Annotated[int | None, Query(ge=0)] = None) -> Response:
    """The chain's verification, then its entries (the latest page unless another is asked for)."""
    caller = _caller(request, Permission.READ)
    verdict = admin.verify_audit(request, caller)
    start = max(0, verdict.entries - PAGE_SIZE) if offset is None else offset
    entries = admin.list_audit(request, caller, Page(PAGE_SIZE, start), target=None, after=0)
    return _page(
        request,
        caller,
        "audit.html",
        verdict=verdict,
        entries=entries,
        offset=start,
        page_size=PAGE_SIZE,
    )
