"""Users and tokens, created the same way from the command line and from the API (and audited)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vakta.server import audit
from vakta.server.auth import (
    ENROLMENT_PREFIX,
    TOKEN_PREFIX,
    digest,
    hash_password,
    new_secret,
    password_problem,
)
from vakta.server.models import USER_ROLES, ApiToken, Role, User, utcnow


class AccountError(ValueError):
    """A user or token that cannot be created as asked (the message says why)."""


def create_user(session: Session, username: str, password: str, role: Role, actor: str) -> User:
    if role not in USER_ROLES:
        raise AccountError(f"a user's role is one of {', '.join(USER_ROLES)}")
    problem = password_problem(password)
    if problem:
        raise AccountError(problem)
    if session.execute(select(User.id).where(User.username == username)).first() is not None:
        raise AccountError(f"user {username!r} exists already")
    user = User(
        username=username, password_hash=hash_password(password), role=role.value, created_at=utcnow()
    )
    session.add(user)
    session.flush()
    audit.append(session, actor, "user.create", f"user:{username}", {"role": role.value})
    return user


def create_token(
    session: Session, role: Role, name: str, actor: str, expires_at: datetime | None
) -> tuple[ApiToken, str]:
    """A new token and its secret (shown once: only its hash is kept)."""
    secret = new_secret(ENROLMENT_PREFIX if role == Role.AGENT_ENROLMENT else TOKEN_PREFIX)
    row = ApiToken(
        token_hash=digest(secret),
        role=role.value,
        name=name,
        created_at=utcnow(),
        created_by=actor,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    details = {"role": role.value, "name": name, "expires_at": expires_at.isoformat() if expires_at else None}
    audit.append(session, actor, "token.create", f"token:{row.id}", details)
    return row, secret


def revoke_token(session: Session, token_id: int, actor: str) -> ApiToken | None:
    row = session.get(ApiToken, token_id, with_for_update=True)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.append(session, actor, "token.revoke", f"token:{row.id}", {"role": row.role})
    return row
