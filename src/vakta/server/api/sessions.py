"""Browser sessions: log in with a password for a session cookie and a CSRF token; log out.

The cookie is HttpOnly and SameSite=Strict (Secure when the request came over
HTTPS, also through a reverse proxy's X-Forwarded-Proto). Requests that change
something with only the cookie must echo the CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, StringConstraints
from sqlalchemy import select, update

from vakta.server import audit
from vakta.server.api.common import STRICT, Username, database, settings
from vakta.server.auth import (
    SESSION_COOKIE,
    Permission,
    Principal,
    check_password,
    digest,
    new_secret,
    user_principal,
)
from vakta.server.auth import require as require_
from vakta.server.models import LoginSession, User, utcnow

log = logging.getLogger(__name__)
router = APIRouter(prefix="/session", tags=["session"])


class Login(BaseModel):
    model_config = STRICT
    username: Username
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class SessionOut(BaseModel):
    username: str
    role: str
    #: Send back as ``X-CSRF-Token`` on every POST, PATCH and DELETE made with the cookie.
    csrf_token: str
    expires_at: datetime


class Me(BaseModel):
    kind: str
    name: str
    role: str


@router.post("", response_model=SessionOut)
def login(body: Login, request: Request, response: Response) -> SessionOut:
    """Log in: sets the session cookie."""
    db = database(request)
    with db.read() as session:
        user = session.execute(select(User).where(User.username == body.username)).scalar_one_or_none()
    valid = check_password(user.password_hash if user else None, body.password)
    if user is None or not valid or user.disabled_at is not None:
        log.warning(
            "failed login for %r from %s", body.username, request.client.host if request.client else "?"
        )
        with db.write() as session:
            audit.append(
                session, f"user:{body.username}", "session.login-failed", f"user:{body.username}", {}
            )
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password")
    cookie, csrf = new_secret(""), secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + settings(request).session_lifetime
    with db.write() as session:
        session.add(
            LoginSession(
                token_hash=digest(cookie),
                user_id=user.id,
                csrf_token=csrf,
                created_at=now,
                expires_at=expires,
            )
        )
        principal = user_principal(user)
        audit.append(session, principal.actor, "session.login", f"user:{user.username}", {})
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(settings(request).session_lifetime.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return SessionOut(username=user.username, role=user.role, csrf_token=csrf, expires_at=expires)


@router.get("", response_model=Me)
def whoami(caller: Annotated[Principal, Depends(require_(Permission.READ))]) -> Me:
    """Who the credentials belong to."""
    return Me(kind=caller.kind, name=caller.name, role=caller.role)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, caller: Annotated[Principal, Depends(require_(Permission.READ))]) -> Response:
    """End this browser session (the cookie stops working at once)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with database(request).write() as session:
            session.execute(
                update(LoginSession)
                .where(LoginSession.token_hash == digest(cookie), LoginSession.ended_at.is_(None))
                .values(ended_at=utcnow())
            )
            audit.append(session, caller.actor, "session.logout", f"user:{caller.name}", {})
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
