"""Statistics management asks for: open incidents, alerts per week, detections by storage kind, agents,
time to respond and time to close."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from vakta.server.api.common import database, settings
from vakta.server.auth import Permission, Principal
from vakta.server.auth import require as require_
from vakta.server.fleet import AgentCounts, agent_counts
from vakta.server.models import Alert, Incident, IncidentState, Storage, utcnow
from vakta.server.response_times import Durations, response_times

router = APIRouter(prefix="/stats", tags=["statistics"])


class Week(BaseModel):
    #: Monday of the week (UTC).
    week: date
    alerts: int
    #: Of those, alerts of the built-in test signature.
    test_alerts: int


class Stats(BaseModel):
    #: Open incidents by state (test incidents not counted).
    open_incidents: dict[str, int]
    open_test_incidents: int
    alerts_per_week: list[Week]
    #: Real (not test) alerts by where the file sat, over the same weeks.
    detections_by_storage: dict[str, int]
    agents: AgentCounts
    #: Real incidents opened in the window: creation to first human response (state, assignment, note, step).
    time_to_respond: Durations
    #: Real incidents opened in the window: creation to closing.
    time_to_close: Durations


@router.get("", response_model=Stats)
def stats(
    request: Request,
    _: Annotated[Principal, Depends(require_(Permission.READ))],
    weeks: Annotated[int, Query(ge=1, le=104, description="Weeks back, this one included.")] = 12,
) -> Stats:
    now = utcnow()
    monday = datetime.combine(now.date() - timedelta(days=now.weekday()), datetime.min.time(), UTC)
    starts = [monday - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    with database(request).read() as session:
        times = response_times(session, starts[0])
        return Stats(
            open_incidents=_open_incidents(session, test=False),
            open_test_incidents=sum(_open_incidents(session, test=True).values()),
            alerts_per_week=_weeks(session, starts),
            detections_by_storage=_by_storage(session, starts[0]),
            agents=agent_counts(session, now - settings(request).offline_after),
            time_to_respond=times.respond,
            time_to_close=times.close,
        )


def _open_incidents(session: Session, test: bool) -> dict[str, int]:
    query = (
        select(Incident.state, func.count())
        .where(Incident.state != IncidentState.CLOSED.value, Incident.is_test.is_(test))
        .group_by(Incident.state)
    )
    counts = {state: count for state, count in session.execute(query)}
    return {s.value: counts.get(s.value, 0) for s in IncidentState if s != IncidentState.CLOSED}


def _weeks(session: Session, starts: list[datetime]) -> list[Week]:
    """One query: a sum per week over the alerts since the first week (portable SQL, no date functions)."""
    bounds = [*starts, starts[-1] + timedelta(weeks=1)]
    columns = []
    for lo, hi in itertools.pairwise(bounds):
        in_week = (Alert.detected_at >= lo) & (Alert.detected_at < hi)
        columns.append(func.coalesce(func.sum(case((in_week, 1), else_=0)), 0))
        columns.append(func.coalesce(func.sum(case((in_week & Alert.is_test, 1), else_=0)), 0))
    row = session.execute(select(*columns).where(Alert.detected_at >= bounds[0])).one()
    return [
        Week(week=start.date(), alerts=int(row[2 * n]), test_alerts=int(row[2 * n + 1]))
        for n, start in enumerate(starts)
    ]


def _by_storage(session: Session, since: datetime) -> dict[str, int]:
    query = (
        select(Alert.storage, func.count())
        .where(Alert.detected_at >= since, Alert.is_test.is_(False))
        .group_by(Alert.storage)
    )
    counts = {storage: count for storage, count in session.execute(query)}
    return {s.value: counts.get(s.value, 0) for s in Storage}
