"""The console's tables, as typed SQLAlchemy 2 models (the Alembic migrations create them).

Alerts hold hashes, sizes, paths, host, user, storage kind, list provenance
and times: never any content. Secrets (passwords, tokens, agent secrets,
session ids) are stored only as hashes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Role(StrEnum):
    """Who may do what (see ``auth.PERMISSIONS``)."""

    ADMIN = "admin"
    ANALYST = "analyst"
    AUDITOR = "auditor"
    AGENT_ENROLMENT = "agent-enrolment"
    #: A platform's script: the lookup and match API only.
    API_CLIENT = "api-client"


#: Roles a person (a user or a bearer token of a script) can hold.
USER_ROLES = (Role.ADMIN, Role.ANALYST, Role.AUDITOR)


class IncidentState(StrEnum):
    NEW = "new"
    TRIAGE = "triage"
    ESCALATED = "escalated"
    CLOSED = "closed"


class Resolution(StrEnum):
    CONFIRMED = "confirmed"
    FALSE_POSITIVE = "false-positive"
    TEST_SIGNATURE = "test-signature"


class Storage(StrEnum):
    """Where the matched file sat on the host."""

    INTERNAL = "internal"
    REMOVABLE = "removable"
    NETWORK = "network"
    CLOUD_SYNC = "cloud-sync"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite keeps no zone: stored as naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: times must carry a zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]
    #: Base32 TOTP secret (RFC 6238) once the user started enrolling a second factor.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    #: Set when the user proved a first code: from then on logins need one.
    totp_enabled_at: Mapped[datetime | None]
    #: Failed logins since the last good one; past a threshold the account locks for a while.
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]


class ApiToken(Base):
    """A bearer token for scripts, or a one-time agent enrolment token."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(160))
    expires_at: Mapped[datetime | None]
    #: When an enrolment token was spent (it is good for one agent only).
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class LoginSession(Base):
    """A browser session: the cookie's hash, and the CSRF token its unsafe requests must echo."""

    __tablename__ = "login_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(lazy="joined")


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), index=True)
    os: Mapped[str] = mapped_column(String(64), default="")
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    enrolled_at: Mapped[datetime] = mapped_column(default=utcnow)
    enrolment_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"))
    revoked_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime | None]
    version: Mapped[str] = mapped_column(String(64), default="")
    list_version: Mapped[str] = mapped_column(String(128), default="")
    last_scan_at: Mapped[datetime | None]
    queue_length: Mapped[int] = mapped_column(default=0)
    #: The agent's scheduled full scan as its last heartbeat told it (state, files, bytes...).
    scan_progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Incident(Base):
    """Alerts of one host and user, worked as one case.

    ``open_key`` is set while the incident is open and cleared when it is
    closed: its unique constraint keeps one open incident per host, user and
    test flag even when batches arrive at the same time.
    """

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    user: Mapped[str] = mapped_column(String(255))
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default=IncidentState.NEW.value, index=True)
    resolution: Mapped[str | None] = mapped_column(String(32))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    open_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_alert_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: First human response (state change, assignment or note): time to respond starts here.
    acknowledged_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]

    assignee: Mapped[User | None] = relationship(lazy="selectin")


class Alert(Base):
    """One matched file as an agent reported it (``idempotency_key`` is unique per agent)."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("agent_id", "idempotency_key"),
        Index("ix_alerts_detected_at", "detected_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    detected_at: Mapped[datetime]
    host: Mapped[str] = mapped_column(String(255))
    user: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    inside: Mapped[list[Any]] = mapped_column(default=list)
    storage: Mapped[str] = mapped_column(String(16))
    size: Mapped[int | None] = mapped_column(BigInteger)
    type: Mapped[str | None] = mapped_column(String(128))
    md5: Mapped[str | None] = mapped_column(String(32))
    sha1: Mapped[str | None] = mapped_column(String(40))
    sha256: Mapped[str | None] = mapped_column(String(64))
    pdq: Mapped[str | None] = mapped_column(String(64))
    pdq_quality: Mapped[int | None]
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    parent_md5: Mapped[str | None] = mapped_column(String(32))
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    matches: Mapped[list[Any]] = mapped_column(default=list)


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    author: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    text: Mapped[str] = mapped_column(Text)


class AuditEntry(Base):
    """One link of the hash-chained audit log (append-only; see ``audit``)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(160))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(160), index=True)
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's last link (one row): appends lock it, so links are numbered in commit order."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))


class ActionPlanStep(Base):
    """One step of the company's action plan (triage, preserve evidence, report to police...).

    Steps are retired rather than deleted, so incidents keep the steps they were worked by.
    """

    __tablename__ = "action_plan_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(default=0)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    #: A required step must be done (or the incident be a test or false positive) to close.
    required: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]


class IncidentStep(Base):
    """A step of the action plan done for one incident: who, when, with an optional note."""

    __tablename__ = "incident_steps"
    __table_args__ = (UniqueConstraint("incident_id", "step_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("action_plan_steps.id"))
    done_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_by: Mapped[str] = mapped_column(String(160))
    note: Mapped[str] = mapped_column(Text, default="")


class ForwardCursor(Base):
    """How far one SIEM forwarder has followed the audit log (its last sent ``seq``).

    ``name`` identifies the destination without its credentials.
    """

    __tablename__ = "forward_cursors"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    sent: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)


class LoginLimit(Base):
    """Failed logins that belong to no account row, shared by every server process.

    ``key`` is ``address:<client address>`` (``level``: the tokens left in its bucket)
    or ``name:<user name that does not exist>`` (``level``: its failures in a row, and
    ``locked_until``), so ``--workers`` cannot multiply the limits or tell names apart.
    """

    __tablename__ = "login_limits"

    key: Mapped[str] = mapped_column(String(320), primary_key=True)
    level: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]
