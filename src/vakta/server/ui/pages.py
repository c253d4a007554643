"""The console's users, lists and security pages (the second factor of the signed-in person).

As the other pages (``routes``), these call the API's own functions with the
caller: permissions, checks and audit entries are the API's. The lists page
shows names, purposes, counts and imports, never a hash. A TOTP secret is
shown only to its owner, and only while the factor is being enrolled.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from vakta.server import totp
from vakta.server.api import admin, lists, sessions
from vakta.server.api.common import Page, database
from vakta.server.auth import Permission, Principal
from vakta.server.models import USER_ROLES, User, utcnow
from vakta.server.ui.routes import PAGE_SIZE, PREFIX, Csrf, Refused, Text, _caller, _page, _problem, _see

log = logging.getLogger(__name__)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

#: Fixed messages shown after a change (the query names one; nothing from the request is echoed).
NOTICES = {
    "created": "The user was created.",
    "disabled": "The user was disabled: their sessions ended.",
    "enabled": "The user may log in again.",
    "totp-reset": "The user's second factor was removed: they log in with the password and may enrol again.",
    "unlocked": "The user's lockout ended.",
    "totp-enabled": "Your second factor is enabled: logging in now needs a code from your app.",
}


async def to_security(request: Request, exc: Exception) -> Response:
    """A person who must enrol a second factor first is sent to do it."""
    return RedirectResponse(f"{PREFIX}/security", status.HTTP_303_SEE_OTHER)


# --------------------------------------------------------------------------- users (admins)


@router.get("/users")
def user_list(request: Request, offset: Annotated[int, Query(ge=0)] = 0, done: str = "") -> Response:
    caller = _caller(request, Permission.MANAGE)
    return _users(request, caller, offset, notice=NOTICES.get(done))


def _users(
    request: Request,
    caller: Principal,
    offset: int = 0,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
    username: str = "",
) -> Response:
    rows = admin.list_users(request, caller, Page(PAGE_SIZE + 1, offset))
    return _page(
        request,
        caller,
        "users.html",
        status_code,
        users=rows[:PAGE_SIZE],
        more=len(rows) > PAGE_SIZE,
        offset=offset,
        page_size=PAGE_SIZE,
        now=utcnow(),
        roles=[r.value for r in USER_ROLES],
        username=username,
        notice=notice,
        error=error,
    )


@router.post("/users")
def create_user(
    request: Request, csrf_token: Csrf = "", username: Text = "", password: Text = "", role: Text = ""
) -> Response:
    caller = _caller(request, Permission.MANAGE, csrf_token)
    try:
        body = admin.UserIn.model_validate({"username": username, "password": password, "role": role})
        admin.add_user(body, request, caller)
    except ValidationError as exc:
        return _users(request, caller, error=_problem(exc), status_code=422, username=username)
    except HTTPException as exc:
        return _users(request, caller, error=str(exc.detail), status_code=exc.status_code, username=username)
    return _see("/users?done=created")


@router.post("/users/{user_id}/disable")
def disable_user(request: Request, user_id: int, csrf_token: Csrf = "", revoke_tokens: Text = "") -> Response:
    """Disable a user: their sessions end; with the box ticked, the tokens they made are revoked."""
    caller = _caller(request, Permission.MANAGE, csrf_token)
    body = admin.DisableIn(revoke_tokens=bool(revoke_tokens))
    return _user_change(
        request, caller, lambda: admin.disable_user(user_id, request, caller, body), "disabled"
    )


@router.post("/users/{user_id}/enable")
def enable_user(request: Request, user_id: int, csrf_token: Csrf = "") -> Response:
    caller = _caller(request, Permission.MANAGE, csrf_token)
    return _user_change(request, caller, lambda: admin.enable_user(user_id, request, caller), "enabled")


@router.post("/users/{user_id}/totp/reset")
def reset_totp(request: Request, user_id: int, csrf_token: Csrf = "") -> Response:
    caller = _caller(request, Permission.MANAGE, csrf_token)
    return _user_change(
        request, caller, lambda: admin.reset_user_totp(user_id, request, caller), "totp-reset"
    )


@router.post("/users/{user_id}/unlock")
def unlock_user(request: Request, user_id: int, csrf_token: Csrf = "") -> Response:
    caller = _caller(request, Permission.MANAGE, csrf_token)
    return _user_change(request, caller, lambda: admin.unlock_user(user_id, request, caller), "unlocked")


def _user_change(request: Request, caller: Principal, change: Callable[[], object], done: str) -> Response:
    try:
        change()
    except HTTPException as exc:
        if exc.status_code == status.HTTP_404_NOT_FOUND:
            raise Refused(exc.status_code, str(exc.detail)) from None
        return _users(request, caller, error=str(exc.detail), status_code=exc.status_code)
    return _see(f"/users?done={done}")


# --------------------------------------------------------------------------- lists (every reader)


@router.get("/lists")
def list_page(request: Request) -> Response:
    """The console's lists (names, purposes, counts, imports), the bundle version and the key's fingerprint."""
    caller = _caller(request, Permission.READ)
    held = lists.get_lists(request, caller)
    return _page(
        request,
        caller,
        "lists.html",
        lists=held.lists,
        version=held.version,
        fingerprint=_fingerprint(held.public_key),
        kinds=sorted({kind for item in held.lists for kind in item.counts}),
    )


def _fingerprint(public_key: str) -> str:
    """SHA-256 of the raw public key, as ``vakta server key show`` prints it."""
    return hashlib.sha256(base64.b64decode(public_key)).hexdigest()


# --------------------------------------------------------------------------- the signed-in person's second factor


@router.get("/security")
def security_page(request: Request, done: str = "") -> Response:
    caller = _caller(request, Permission.READ, enrolling=True)
    return _security(request, caller, notice=NOTICES.get(done))


def _security(
    request: Request,
    caller: Principal,
    *,
    notice: str | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    user = _own_account(request, caller)
    pending = user is not None and user.totp_enabled_at is None and user.totp_secret is not None
    secret = user.totp_secret if pending and user is not None else None
    return _page(
        request,
        caller,
        "security.html",
        status_code,
        person=user is not None,
        enabled_at=user.totp_enabled_at if user is not None else None,
        secret=secret,
        uri=totp.uri(secret, caller.name) if secret else None,
        needs_totp=caller.needs_totp,
        notice=notice,
        error=error,
    )


def _own_account(request: Request, caller: Principal) -> User | None:
    if caller.kind != "user":
        return None
    with database(request).read() as session:
        return session.get(User, int(caller.id))


@router.post("/security/totp")
def start_totp(request: Request, csrf_token: Csrf = "") -> Response:
    """Start enrolling: the page then shows the secret and its URI, and asks for a first code."""
    caller = _caller(request, Permission.READ, csrf_token, enrolling=True)
    try:
        sessions.enrol_totp(request, caller)
    except HTTPException as exc:
        return _security(request, caller, error=str(exc.detail), status_code=exc.status_code)
    return _see("/security")


@router.post("/security/totp/confirm")
def confirm_totp(request: Request, csrf_token: Csrf = "", code: Text = "") -> Response:
    caller = _caller(request, Permission.READ, csrf_token, enrolling=True)
    try:
        sessions.confirm_totp(sessions.TotpCode(code=code or "-"), request, caller)
    except ValidationError as exc:
        return _security(request, caller, error=_problem(exc), status_code=422)
    except HTTPException as exc:
        return _security(request, caller, error=str(exc.detail), status_code=exc.status_code)
    return _see("/security?done=totp-enabled")
