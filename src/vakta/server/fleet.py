"""Agent liveness: online while heartbeats come within the server's limit, offline after, or revoked."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from vakta.server.models import Agent

AgentStatus = Literal["online", "offline", "revoked"]


class AgentCounts(BaseModel):
    online: int
    offline: int
    revoked: int


def status_of(agent: Agent, cutoff: datetime) -> AgentStatus:
    """``cutoff``: now less the offline limit."""
    if agent.revoked_at is not None:
        return "revoked"
    if agent.last_seen_at is not None and agent.last_seen_at >= cutoff:
        return "online"
    return "offline"


def agent_counts(session: Session, cutoff: datetime) -> AgentCounts:
    active = Agent.revoked_at.is_(None)
    online = func.sum(case((active & (Agent.last_seen_at >= cutoff), 1), else_=0))
    revoked = func.sum(case((Agent.revoked_at.is_not(None), 1), else_=0))
    total, on, off = session.execute(select(func.count(), online, revoked)).one()
    on, off = int(on or 0), int(off or 0)
    return AgentCounts(online=on, offline=total - on - off, revoked=off)
