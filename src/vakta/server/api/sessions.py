"""Browser sessions: log in with a password (and a TOTP code once enrolled) for a cookie and a CSRF token.

Failed logins, lockout and the per-address limit are ``vakta.server.logins``;
a person enrols a second factor here (``/session/totp``) with their session.

The cookie is HttpOnly and SameSite=Strict (Secure when the request came over
HTTPS, also through a reverse proxy's X-Forwarded-Proto). Requests that change
something with only the cookie must echo the CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Annotated, NoReturn

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, StringConstraints
from sqlalchemy import update
from sqlalchemy.orm import Session

from vakta.server import accounts, audit, logins
from vakta.server.api.common import STRICT, Username, database, settings
from vakta.server.auth import (
    SESSION_COOKIE,
    Permission,
    Principal,
    digest,
    new_secret,
    user_principal,
)
from vakta.server.auth import require as require_
from vakta.server.models import LoginSession, User, utcnow

log = logging.getLogger(__name__)
router = APIRouter(prefix="/session", tags=["session"])


#: Every failed login answers this, whichever part was wrong (see ``vakta.server.logins``).
WRONG_LOGIN = "wrong username or password, or a missing or wrong code"


class Login(BaseModel):
    model_config = STRICT
    username: Username
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    #: The current code of the user's authenticator app, once they enrolled a second factor.
    totp: Annotated[str, StringConstraints(max_length=16)] | None = None


class SessionOut(BaseModel):
    username: str
    role: str
    #: Send back as ``X-CSRF-Token`` on every POST, PATCH and DELETE made with the cookie.
    csrf_token: str
    expires_at: datetime
    #: The console requires a second factor and this user has none: the session may only enrol one.
    totp_enrolment_required: bool = False


class Me(BaseModel):
    kind: str
    name: str
    role: str


class TotpEnrolment(BaseModel):
    #: Base32 secret to type into an authenticator app (shown this once; confirm with a code).
    secret: str
    #: The same as an ``otpauth://`` URI (for apps that take one, or a QR code made elsewhere).
    uri: str


class TotpCode(BaseModel):
    model_config = STRICT
    code: Annotated[str, StringConstraints(min_length=1, max_length=16)]


class TotpState(BaseModel):
    enabled: bool


Enrolling = Annotated[Principal, Depends(require_(Permission.READ, enrolling=True))]


@router.post(
    "",
    response_model=SessionOut,
    responses={401: {"description": WRONG_LOGIN}, 429: {"description": "locked or limited: see Retry-After"}},
)
def login(body: Login, request: Request, response: Response) -> SessionOut:
    """Log in (with ``totp`` once the user enrolled a second factor): sets the session cookie."""
    cookie, csrf = new_secret(""), secrets.token_urlsafe(32)
    lifetime = settings(request).session_lifetime
    expires = utcnow() + lifetime

    def start(session: Session, user: User) -> None:
        session.add(
            LoginSession(
                token_hash=digest(cookie),
                user_id=user.id,
                csrf_token=csrf,
                created_at=utcnow(),
                expires_at=expires,
            )
        )

    address = request.client.host if request.client else "?"
    guard = logins.guard_of(request.app.state, settings(request).login_lock_after)
    outcome = logins.attempt(
        database(request), guard, body.username, body.password, body.totp, address, start
    )
    if outcome.user is None:
        _refuse(outcome)
    user = outcome.user
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(lifetime.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    principal = user_principal(user, settings(request).require_totp)
    return SessionOut(
        username=user.username,
        role=user.role,
        csrf_token=csrf,
        expires_at=expires,
        totp_enrolment_required=principal.needs_totp,
    )


def _refuse(outcome: logins.Outcome) -> NoReturn:
    if outcome.refusal == logins.Refusal.WRONG:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, WRONG_LOGIN)
    reason = "this account" if outcome.refusal == logins.Refusal.LOCKED else "this address"
    raise HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"too many failed logins for {reason}: try again in {outcome.retry_after} s",
        {"Retry-After": str(outcome.retry_after)},
    )


@router.get("", response_model=Me)
def whoami(caller: Enrolling) -> Me:
    """Who the credentials belong to."""
    return Me(kind=caller.kind, name=caller.name, role=caller.role)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, caller: Enrolling) -> Response:
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


def _person(caller: Principal) -> int:
    """The user id behind a browser session (a bearer token belongs to no person)."""
    if caller.kind != "user":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a second factor belongs to a person: log in first")
    return int(caller.id)


@router.post("/totp", response_model=TotpEnrolment)
def enrol_totp(request: Request, caller: Enrolling) -> TotpEnrolment:
    """Start enrolling a TOTP second factor: type the secret into an authenticator app, then confirm."""
    try:
        with database(request).write() as session:
            secret, uri = accounts.enrol_totp(session, _person(caller), caller.actor)
    except accounts.AccountError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return TotpEnrolment(secret=secret, uri=uri)


@router.post("/totp/confirm", response_model=TotpState)
def confirm_totp(body: TotpCode, request: Request, caller: Enrolling) -> TotpState:
    """Prove the app shows the right codes: from now on logging in needs one."""
    try:
        with database(request).write() as session:
            enabled = accounts.confirm_totp(session, _person(caller), body.code.strip(), caller.actor)
    except accounts.AccountError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    if not enabled:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "wrong code (or one used before): try the next one")
    return TotpState(enabled=True)
