"""Administration: users, API and enrolment tokens (admins), and the audit log (read by every person)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session

from vakta.server import accounts, audit
from vakta.server.accounts import AccountError, create_token, create_user, revoke_token
from vakta.server.api.common import STRICT, Label, Page, Username, database, page
from vakta.server.auth import Permission, Principal
from vakta.server.auth import require as require_
from vakta.server.models import ApiToken, AuditEntry, Role, User, utcnow

router = APIRouter(tags=["administration"])
Admin = Annotated[Principal, Depends(require_(Permission.MANAGE))]
Reader = Annotated[Principal, Depends(require_(Permission.READ))]


class UserIn(BaseModel):
    model_config = STRICT
    username: Username
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    role: Role


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    created_at: datetime
    disabled_at: datetime | None
    #: A TOTP second factor is enabled (logging in needs a code).
    totp_enabled: bool = False
    #: Failed logins in a row, and until when the account is locked (see ``vakta.server.logins``).
    failed_logins: int = 0
    locked_until: datetime | None = None


class DisableIn(BaseModel):
    model_config = STRICT
    #: Also revoke the bearer and enrolment tokens this user made (their sessions end anyway).
    revoke_tokens: bool = True


class Disabled(UserOut):
    sessions_ended: int
    tokens_revoked: int


class TokenIn(BaseModel):
    model_config = STRICT
    role: Role
    name: Label = ""
    #: Hours until the token stops working (none: until revoked; an enrolment token works once anyway).
    expires_hours: float | None = Field(None, gt=0, le=24 * 3650)


class TokenOut(BaseModel):
    id: int
    role: str
    name: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    used_at: datetime | None
    revoked_at: datetime | None


class NewToken(TokenOut):
    #: The token itself: shown this once, only its hash is kept.
    token: str


class AuditVerdict(BaseModel):
    intact: bool
    entries: int
    head: str
    problem: str | None


@router.get("/users", response_model=list[UserOut])
def list_users(request: Request, _: Admin, paging: Annotated[Page, Depends(page)]) -> list[UserOut]:
    with database(request).read() as session:
        users = session.execute(select(User).order_by(User.id).limit(paging.limit).offset(paging.offset))
        return [_user_out(u) for u in users.scalars()]


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def add_user(body: UserIn, request: Request, admin: Admin) -> UserOut:
    try:
        with database(request).write() as session:
            user = create_user(session, body.username, body.password, body.role, admin.actor)
    except AccountError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return _user_out(user)


def _change_user(request: Request, change: Callable[[Session], User]) -> UserOut:
    """Run an account change in one transaction: 404 for an unknown user, 409 for a refused change."""
    try:
        with database(request).write() as session:
            return _user_out(change(session))
    except AccountError as exc:
        code = status.HTTP_404_NOT_FOUND if str(exc) == "no such user" else status.HTTP_409_CONFLICT
        raise HTTPException(code, str(exc)) from None


@router.post("/users/{user_id}/totp/reset", response_model=UserOut)
def reset_user_totp(user_id: int, request: Request, admin: Admin) -> UserOut:
    """Remove a user's second factor (a lost phone); they may enrol a new one after logging in."""
    return _change_user(request, lambda s: accounts.reset_totp(s, user_id, admin.actor))


@router.post("/users/{user_id}/unlock", response_model=UserOut)
def unlock_user(user_id: int, request: Request, admin: Admin) -> UserOut:
    """End a lockout after failed logins now (it ends by itself after its time)."""
    return _change_user(request, lambda s: accounts.unlock_user(s, user_id, admin.actor))


@router.post("/users/{user_id}/disable", response_model=Disabled)
def disable_user(user_id: int, request: Request, admin: Admin, body: DisableIn | None = None) -> Disabled:
    """Stop a user logging in: their sessions end now, and (by default) the tokens they made are revoked."""
    revoke = True if body is None else body.revoke_tokens
    try:
        with database(request).write() as session:
            user, ended, revoked = accounts.disable_user(session, user_id, admin.actor, revoke)
            out = _user_out(user)
    except AccountError as exc:
        code = status.HTTP_404_NOT_FOUND if str(exc) == "no such user" else status.HTTP_409_CONFLICT
        raise HTTPException(code, str(exc)) from None
    return Disabled(**out.model_dump(), sessions_ended=ended, tokens_revoked=revoked)


@router.post("/users/{user_id}/enable", response_model=UserOut)
def enable_user(user_id: int, request: Request, admin: Admin) -> UserOut:
    """Let a disabled user log in again."""
    return _change_user(request, lambda s: accounts.enable_user(s, user_id, admin.actor))


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(request: Request, _: Admin, paging: Annotated[Page, Depends(page)]) -> list[TokenOut]:
    with database(request).read() as session:
        rows = session.execute(
            select(ApiToken).order_by(ApiToken.id).limit(paging.limit).offset(paging.offset)
        )
        return [_token_out(t) for t in rows.scalars()]


@router.post("/tokens", response_model=NewToken, status_code=status.HTTP_201_CREATED)
def add_token(body: TokenIn, request: Request, admin: Admin) -> NewToken:
    """A bearer token for a script (admin, analyst, auditor) or a one-time agent enrolment token."""
    expires = utcnow() + timedelta(hours=body.expires_hours) if body.expires_hours else None
    with database(request).write() as session:
        row, secret = create_token(session, body.role, body.name, admin.actor, expires)
    return NewToken(**_token_out(row).model_dump(), token=secret)


@router.post("/tokens/{token_id}/revoke", response_model=TokenOut)
def remove_token(token_id: int, request: Request, admin: Admin) -> TokenOut:
    with database(request).write() as session:
        row = revoke_token(session, token_id, admin.actor)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such token")
    return _token_out(row)


@router.get("/audit")
def list_audit(
    request: Request,
    _: Reader,
    paging: Annotated[Page, Depends(page)],
    target: Annotated[str | None, Query(max_length=160, description="e.g. incident:12")] = None,
    after: Annotated[int, Query(ge=0, description="Entries after this number (a follower's cursor).")] = 0,
) -> list[dict[str, Any]]:
    """Audit entries in order, with their chain hashes."""
    query = select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq)
    if target is not None:
        query = query.where(AuditEntry.target == target)
    with database(request).read() as session:
        rows = session.execute(query.limit(paging.limit).offset(paging.offset)).scalars()
        return [audit.entry_dict(e) for e in rows]


@router.get("/audit/verify", response_model=AuditVerdict)
def verify_audit(request: Request, _: Reader) -> AuditVerdict:
    """Walk the whole chain (as ``vakta server verify-audit`` does)."""
    with database(request).read() as session:
        verdict = audit.verify(session)
    return AuditVerdict(
        intact=verdict.intact, entries=verdict.entries, head=verdict.head, problem=verdict.problem
    )


def _user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        role=user.role,
        created_at=user.created_at,
        disabled_at=user.disabled_at,
        totp_enabled=user.totp_enabled_at is not None,
        failed_logins=user.failed_logins or 0,
        locked_until=user.locked_until,
    )


def _token_out(row: ApiToken) -> TokenOut:
    return TokenOut(
        id=row.id,
        role=row.role,
        name=row.name,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        used_at=row.used_at,
        revoked_at=row.revoked_at,
    )
