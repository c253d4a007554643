"""Who is calling and what they may do: passwords, tokens, agent secrets, browser sessions, CSRF, roles.

Passwords are hashed with argon2id (slow on purpose: people choose them).
Tokens, agent secrets and session ids are 256 random bits: a SHA-256 of them
is stored, which is enough for secrets nobody can guess and cheap on every
request. A token's prefix says what it is (``vkt_`` bearer token, ``vke_``
enrolment token, ``vka_`` agent secret), so it is looked up in one place.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from vakta.server.models import Agent, ApiToken, LoginSession, Role, User, utcnow

log = logging.getLogger(__name__)

TOKEN_PREFIX = "vkt_"
ENROLMENT_PREFIX = "vke_"
AGENT_PREFIX = "vka_"
SESSION_COOKIE = "vakta_session"
CSRF_HEADER = "X-CSRF-Token"
#: Methods that change nothing, so a cookie alone may authorise them.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MIN_PASSWORD = 12
SECOND_FACTOR_FIRST = "this console requires a second factor: enrol one first (POST /api/v1/session/totp)"

_hasher = PasswordHasher()
#: Verified against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class Permission(StrEnum):
    REPORT = "report"  # agents: heartbeat, alerts
    READ = "read"  # incidents, alerts, agents, statistics, evidence, audit, metrics
    WORK = "work"  # change incidents: state, assignment, notes
    MANAGE = "manage"  # agents (revoke), tokens, users
    MATCH = "match"  # the lookup and match API
    BUNDLE = "bundle"  # download the signed hash-list bundle


PERMISSIONS: dict[str, frozenset[Permission]] = {
    Role.ADMIN: frozenset({Permission.READ, Permission.WORK, Permission.MANAGE, Permission.BUNDLE}),
    Role.ANALYST: frozenset({Permission.READ, Permission.WORK}),
    Role.AUDITOR: frozenset({Permission.READ}),
    Role.API_CLIENT: frozenset({Permission.MATCH}),
    "agent": frozenset({Permission.REPORT, Permission.MATCH, Permission.BUNDLE}),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user (password or session), a bearer token, or an agent."""

    kind: str
    id: str
    name: str
    role: str
    #: A person who must enrol a second factor before anything else (``vakta server run --require-totp``).
    needs_totp: bool = False

    @property
    def actor(self) -> str:
        """How the audit log names the caller."""
        return f"{self.kind}:{self.name}" if self.kind == "user" else f"{self.kind}:{self.id} ({self.name})"

    def may(self, permission: Permission) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"a password needs at least {MIN_PASSWORD} characters"
    return None


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def authenticate(session: Session, request: Request) -> Principal | None:
    """The caller of this request, or None; a revoked agent or a failed CSRF check is refused here."""
    token = bearer(request)
    if token is not None:
        return _from_bearer(session, token)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return _from_cookie(session, request, cookie)
    return None


def _from_bearer(session: Session, token: str) -> Principal | None:
    if token.startswith(AGENT_PREFIX):
        agent = session.execute(select(Agent).where(Agent.secret_hash == digest(token))).scalar_one_or_none()
        if agent is None:
            return None
        if agent.revoked_at is not None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this agent was revoked")
        return Principal("agent", agent.id, agent.hostname, "agent")
    if token.startswith(TOKEN_PREFIX):
        row = session.execute(
            select(ApiToken).where(ApiToken.token_hash == digest(token))
        ).scalar_one_or_none()
        if row is None or row.role == Role.AGENT_ENROLMENT or not token_usable(row):
            return None
        return Principal("token", str(row.id), row.name or "-", row.role)
    return None


def token_usable(row: ApiToken) -> bool:
    return row.revoked_at is None and (row.expires_at is None or row.expires_at > utcnow())


def _from_cookie(session: Session, request: Request, cookie: str) -> Principal | None:
    row = session.execute(
        select(LoginSession).where(LoginSession.token_hash == digest(cookie))
    ).scalar_one_or_none()
    if row is None or row.ended_at is not None or row.expires_at <= utcnow() or row.user.disabled_at:
        return None
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not secrets.compare_digest(sent.encode(), row.csrf_token.encode()):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"missing or wrong {CSRF_HEADER} header")
    return user_principal(row.user, _totp_required(request))


def _totp_required(request: Request) -> bool:
    settings = getattr(request.app.state, "settings", None)
    return bool(getattr(settings, "require_totp", False))


def require(permission: Permission, *, enrolling: bool = False) -> Callable[[Request], Principal]:
    """A FastAPI dependency: the caller, if authenticated (401) and allowed (403).

    ``enrolling``: also a person who still has to enrol a second factor (their
    session may only do that, see who they are, and log out).
    """

    def dependency(request: Request) -> Principal:
        with request.app.state.db.read() as session:
            principal = authenticate(session, request)
        if principal is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "authentication required", {"WWW-Authenticate": "Bearer"}
            )
        if not principal.may(permission):
            log.info("refused %s %s to %s", request.method, request.url.path, principal.actor)
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"the {principal.role} role may not do this")
        if principal.needs_totp and not enrolling:
            raise HTTPException(status.HTTP_403_FORBIDDEN, SECOND_FACTOR_FIRST)
        return principal

    dependency.__name__ = f"require_{permission.value}"
    return dependency


def user_principal(user: User, totp_required: bool = False) -> Principal:
    needs_totp = totp_required and user.totp_enabled_at is None
    return Principal("user", str(user.id), user.username, user.role, needs_totp)
