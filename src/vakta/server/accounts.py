"""Users and tokens, created the same way from the command line and from the API (and audited)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from vakta.server import audit, totp
from vakta.server.auth import (
    ENROLMENT_PREFIX,
    TOKEN_PREFIX,
    digest,
    hash_password,
    new_secret,
    password_problem,
)
from vakta.server.models import USER_ROLES, ApiToken, LoginSession, Role, User, utcnow


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


# --------------------------------------------------------------------------- second factor, lockout, disabling
# Each change locks the user's row and writes one audit entry (never a TOTP secret or code).


def _locked_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id, with_for_update=True, populate_existing=True)
    if user is None:
        raise AccountError("no such user")
    return user


def user_id_of(session: Session, username: str) -> int | None:
    found = session.execute(select(User.id).where(User.username == username)).scalar_one_or_none()
    return found


def enrol_totp(session: Session, user_id: int, actor: str) -> tuple[str, str]:
    """Start enrolling a second factor: a new secret (not in force until confirmed) and its otpauth URI.

    Refused once a factor is enabled: replacing it takes an admin's reset, so a
    stolen session cannot swap the owner's factor for its own.
    """
    user = _locked_user(session, user_id)
    if user.totp_enabled_at is not None:
        raise AccountError("a second factor is enabled already (an admin can reset it)")
    secret = totp.new_secret()
    user.totp_secret = secret
    audit.append(session, actor, "user.totp-enrol", f"user:{user.username}", {})
    return secret, totp.uri(secret, user.username)


def confirm_totp(session: Session, user_id: int, code: str, actor: str) -> bool:
    """Enable the enrolled factor if ``code`` is its current code (False: wrong or used before)."""
    user = _locked_user(session, user_id)
    if user.totp_enabled_at is not None:
        raise AccountError("a second factor is enabled already")
    if user.totp_secret is None:
        raise AccountError("no second factor is being enrolled: POST /api/v1/session/totp first")
    step = totp.accept(session, user.totp_secret, user.username, code, utcnow())
    if step is None:
        return False
    user.totp_enabled_at = utcnow()
    audit.append(session, actor, "user.totp-enable", f"user:{user.username}", {totp.STEP_KEY: step})
    return True


def reset_totp(session: Session, user_id: int, actor: str) -> User:
    """Remove a user's second factor (a lost phone): they log in with the password and may enrol again."""
    user = _locked_user(session, user_id)
    was_enabled = user.totp_enabled_at is not None
    user.totp_secret, user.totp_enabled_at = None, None
    audit.append(session, actor, "user.totp-reset", f"user:{user.username}", {"was_enabled": was_enabled})
    return user


def unlock_user(session: Session, user_id: int, actor: str) -> User:
    """End a lockout and forget the failed logins before the lock would expire by itself."""
    user = _locked_user(session, user_id)
    user.failed_logins, user.locked_until = 0, None
    audit.append(session, actor, "user.unlock", f"user:{user.username}", {})
    return user


def disable_user(session: Session, user_id: int, actor: str, revoke_tokens: bool) -> tuple[User, int, int]:
    """Stop a user: their sessions end now and, with ``revoke_tokens``, the tokens they made are revoked.

    Returns the user, the sessions ended and the tokens revoked. Tokens a
    departing person made could otherwise keep their access alive; scripts'
    tokens meant to outlive a person are best made with the command line.
    """
    user = _locked_user(session, user_id)
    if actor == f"user:{user.username}":
        raise AccountError("you cannot disable yourself")
    now = utcnow()
    if user.disabled_at is None:
        user.disabled_at = now
    ended = _changed(
        session.execute(
            update(LoginSession)
            .where(LoginSession.user_id == user.id, LoginSession.ended_at.is_(None))
            .values(ended_at=now)
        )
    )
    revoked = 0
    if revoke_tokens:
        revoked = _changed(
            session.execute(
                update(ApiToken)
                .where(ApiToken.created_by == f"user:{user.username}", ApiToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        )
    details = {"sessions_ended": ended, "tokens_revoked": revoked}
    audit.append(session, actor, "user.disable", f"user:{user.username}", details)
    return user, ended, revoked


def _changed(result: object) -> int:
    """Rows an UPDATE changed."""
    return result.rowcount if isinstance(result, CursorResult) else 0


def enable_user(session: Session, user_id: int, actor: str) -> User:
    """Let a disabled user log in again (their old sessions and revoked tokens stay ended)."""
    user = _locked_user(session, user_id)
    user.disabled_at = None
    audit.append(session, actor, "user.enable", f"user:{user.username}", {})
    return user
