"""Time to respond and time to close: how fast people act on real incidents (management's figures).

Time to respond runs from an incident's creation to its first human response
(``acknowledged_at``: a state change, assignment, note or checklist tick);
time to close from its creation to its closing. Test-signature incidents are
left out. Quantiles are linearly interpolated between the nearest ranks (as
numpy's default), so one incident gives its own time as median and p90.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vakta.server.models import Incident


@dataclass(frozen=True)
class Durations:
    """How many incidents, and the median and 90th percentile of their times in seconds (None: none)."""

    count: int
    median_seconds: float | None
    p90_seconds: float | None


@dataclass(frozen=True)
class ResponseTimes:
    respond: Durations
    close: Durations


def quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted values, interpolated between the two nearest ranks."""
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def durations(seconds: list[float]) -> Durations:
    if not seconds:
        return Durations(0, None, None)
    ordered = sorted(seconds)
    return Durations(len(ordered), round(quantile(ordered, 0.5), 3), round(quantile(ordered, 0.9), 3))


def response_times(session: Session, since: datetime) -> ResponseTimes:
    """Figures over the real incidents created since ``since``."""
    query = select(Incident.created_at, Incident.acknowledged_at, Incident.closed_at).where(
        Incident.created_at >= since, Incident.is_test.is_(False)
    )
    respond: list[float] = []
    close: list[float] = []
    for created, acknowledged, closed in session.execute(query):
        if acknowledged is not None:
            respond.append(max(0.0, (acknowledged - created).total_seconds()))
        if closed is not None:
            close.append(max(0.0, (closed - created).total_seconds()))
    return ResponseTimes(durations(respond), durations(close))
