"""Agents: enrolment with a one-time token, heartbeats, the list (online, offline, revoked), revocation."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import AwareDatetime, BaseModel, Field, ValidationError
from sqlalchemy import select, update

from vakta.server import audit
from vakta.server.api.common import STRICT, Label, Name, Page, database, page, settings
from vakta.server.auth import (
    AGENT_PREFIX,
    ENROLMENT_PREFIX,
    Permission,
    Principal,
    bearer,
    digest,
    new_secret,
)
from vakta.server.auth import require as require_
from vakta.server.fleet import AgentStatus, status_of
from vakta.server.models import Agent, ApiToken, Role, utcnow

router = APIRouter(prefix="/agents", tags=["agents"])


class Enrolment(BaseModel):
    model_config = STRICT
    hostname: Name
    os: Label = ""
    version: Label = ""


class Enrolled(BaseModel):
    agent_id: str
    #: The agent's own secret: sent as ``Authorization: Bearer <secret>`` from now on. Shown once.
    secret: str
    #: Heartbeats should come more often than this, or the agent is shown offline.
    offline_after_seconds: int


Count = Annotated[int, Field(ge=0, le=2**62)]


class ScanProgress(BaseModel):
    """The agent's scheduled full scan: running or idle, with the counters of the current or last one."""

    model_config = STRICT
    state: Literal["running", "idle"]
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    files: Count = 0
    bytes: Count = 0
    errors: Count = 0
    #: Files that matched.
    matches: Count = 0
    #: Files whose signals came from the scan cache (unchanged since the last scan: not read).
    cache_hits: Count = 0
    outcome: Literal["completed", "stopped", "failed"] | None = None


class Heartbeat(BaseModel):
    model_config = STRICT
    version: Label = ""
    list_version: Label = ""
    last_scan_at: AwareDatetime | None = None
    queue_length: int = Field(0, ge=0, le=2**31 - 1)
    scan_progress: ScanProgress | None = None


class HeartbeatReply(BaseModel):
    server_time: datetime
    offline_after_seconds: int


class AgentOut(BaseModel):
    id: str
    hostname: str
    os: str
    version: str
    list_version: str
    enrolled_at: datetime
    last_seen_at: datetime | None
    last_scan_at: datetime | None
    queue_length: int
    status: AgentStatus
    revoked_at: datetime | None
    scan_progress: ScanProgress | None = None


@router.post("/enrol", status_code=status.HTTP_201_CREATED, response_model=Enrolled)
def enrol(body: Enrolment, request: Request) -> Enrolled:
    """Trade a one-time enrolment token (``Authorization: Bearer vke_...``) for the agent's own secret."""
    token = bearer(request)
    if token is None or not token.startswith(ENROLMENT_PREFIX):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "an enrolment token is required")
    now = utcnow()
    secret = new_secret(AGENT_PREFIX)
    with database(request).write() as session:
        spent = session.execute(
            update(ApiToken)
            .where(
                ApiToken.token_hash == digest(token),
                ApiToken.role == Role.AGENT_ENROLMENT.value,
                ApiToken.used_at.is_(None),
                ApiToken.revoked_at.is_(None),
            )
            .values(used_at=now)
            .returning(ApiToken.id, ApiToken.expires_at)
        ).first()
        if spent is None or (spent.expires_at is not None and spent.expires_at <= now):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "enrolment token unknown, expired or already used"
            )
        agent = Agent(
            id=str(uuid.uuid4()),
            hostname=body.hostname,
            os=body.os,
            version=body.version,
            secret_hash=digest(secret),
            enrolled_at=now,
            enrolment_token_id=spent.id,
            last_seen_at=now,
        )
        session.add(agent)
        session.flush()
        audit.append(
            session,
            f"agent:{agent.id} ({agent.hostname})",
            "agent.enrol",
            f"agent:{agent.id}",
            {"hostname": agent.hostname, "os": agent.os, "version": agent.version, "token": spent.id},
        )
    offline = int(settings(request).offline_after.total_seconds())
    return Enrolled(agent_id=agent.id, secret=secret, offline_after_seconds=offline)


@router.post("/heartbeat", response_model=HeartbeatReply)
def heartbeat(
    body: Heartbeat,
    request: Request,
    agent: Annotated[Principal, Depends(require_(Permission.REPORT))],
) -> HeartbeatReply:
    """The agent's health: version, list version, last full scan and its progress, alerts waiting."""
    now = utcnow()
    with database(request).write() as session:
        session.execute(
            update(Agent)
            .where(Agent.id == agent.id)
            .values(
                last_seen_at=now,
                version=body.version,
                list_version=body.list_version,
                last_scan_at=body.last_scan_at,
                queue_length=body.queue_length,
                scan_progress=body.scan_progress.model_dump(mode="json") if body.scan_progress else None,
            )
        )
    offline = int(settings(request).offline_after.total_seconds())
    return HeartbeatReply(server_time=now, offline_after_seconds=offline)


@router.get("", response_model=list[AgentOut])
def list_agents(
    request: Request,
    _: Annotated[Principal, Depends(require_(Permission.READ))],
    paging: Annotated[Page, Depends(page)],
    state: AgentStatus | None = None,
) -> list[AgentOut]:
    """Every enrolled agent; ``offline`` ones have been silent longer than the server's limit."""
    cutoff = utcnow() - settings(request).offline_after
    query = select(Agent).order_by(Agent.hostname, Agent.id)
    if state == "revoked":
        query = query.where(Agent.revoked_at.is_not(None))
    elif state == "online":
        query = query.where(Agent.revoked_at.is_(None), Agent.last_seen_at >= cutoff)
    elif state == "offline":
        query = query.where(
            Agent.revoked_at.is_(None), (Agent.last_seen_at < cutoff) | Agent.last_seen_at.is_(None)
        )
    with database(request).read() as session:
        agents = session.execute(query.limit(paging.limit).offset(paging.offset)).scalars().all()
    return [agent_out(a, cutoff) for a in agents]


@router.post("/{agent_id}/revoke", response_model=AgentOut)
def revoke(
    agent_id: str,
    request: Request,
    admin: Annotated[Principal, Depends(require_(Permission.MANAGE))],
) -> AgentOut:
    """Refuse this agent's requests from now on (its alerts stay on record)."""
    now = utcnow()
    with database(request).write() as session:
        agent = session.get(Agent, agent_id, with_for_update=True)
        if agent is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such agent")
        if agent.revoked_at is None:
            agent.revoked_at = now
            audit.append(
                session, admin.actor, "agent.revoke", f"agent:{agent.id}", {"hostname": agent.hostname}
            )
    return agent_out(agent, now - settings(request).offline_after)


def agent_out(agent: Agent, cutoff: datetime) -> AgentOut:
    return AgentOut(
        id=agent.id,
        hostname=agent.hostname,
        os=agent.os,
        version=agent.version,
        list_version=agent.list_version,
        enrolled_at=agent.enrolled_at,
        last_seen_at=agent.last_seen_at,
        last_scan_at=agent.last_scan_at,
        queue_length=agent.queue_length,
        status=status_of(agent, cutoff),
        revoked_at=agent.revoked_at,
        scan_progress=stored_progress(agent.scan_progress),
    )


def stored_progress(data: object) -> ScanProgress | None:
    """The stored ``scan_progress`` (validated when it arrived); None if absent or unreadable."""
    if not isinstance(data, dict):
        return None
    try:
        return ScanProgress.model_validate(data)
    except ValidationError:
        return None
