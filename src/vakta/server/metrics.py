"""Prometheus metrics: requests and alerts counted as they happen, incidents and agents read at scrape time.

Each app has its own registry (several apps in one test process do not mix).
Gauges that come from the database are computed when Prometheus scrapes, so
they are right whichever server process took the alerts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from vakta.server.db import Database
from vakta.server.fleet import agent_counts
from vakta.server.models import Incident, IncidentState, utcnow
from vakta.server.response_times import ResponseTimes, response_times

#: Time to respond and to close are taken over the real incidents opened in this window.
RESPONSE_WINDOW = timedelta(weeks=12)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    alerts: Counter
    requests: Histogram


def create(db: Database, offline_after: timedelta) -> Metrics:
    registry = CollectorRegistry()
    alerts = Counter(
        "vakta_alerts_received", "Alerts submitted by agents, new or repeated.", ["result"], registry=registry
    )
    requests = Histogram(
        "vakta_http_request_duration_seconds",
        "HTTP requests by route and status.",
        ["method", "route", "status"],
        registry=registry,
    )
    registry.register(_DatabaseGauges(db, offline_after))
    return Metrics(registry, alerts, requests)


def record_alerts(metrics: Metrics, new: int, duplicates: int) -> None:
    metrics.alerts.labels("new").inc(new)
    metrics.alerts.labels("duplicate").inc(duplicates)


class _DatabaseGauges:
    """Open incidents by state and agents by status, read from the database on each scrape."""

    def __init__(self, db: Database, offline_after: timedelta) -> None:
        self.db = db
        self.offline_after = offline_after

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("vakta_database_up", "1 when the database answered this scrape.")
        incidents = GaugeMetricFamily("vakta_incidents_open", "Open incidents.", labels=["state", "test"])
        agents = GaugeMetricFamily("vakta_agents", "Enrolled agents by status.", labels=["status"])
        try:
            with self.db.read() as session:
                query = (
                    select(Incident.state, Incident.is_test, func.count())
                    .where(Incident.state != IncidentState.CLOSED.value)
                    .group_by(Incident.state, Incident.is_test)
                )
                for state, test, count in session.execute(query):
                    incidents.add_metric([state, str(bool(test)).lower()], count)
                counts = agent_counts(session, utcnow() - self.offline_after)
                times = response_times(session, utcnow() - RESPONSE_WINDOW)
        except SQLAlchemyError as exc:
            log.warning("metrics: database unavailable: %s", exc)
            up.add_metric([], 0)
            return [up]
        for status, value in counts.model_dump().items():
            agents.add_metric([status], value)
        up.add_metric([], 1)
        return [up, incidents, agents, *_response_gauges(times)]


def _response_gauges(times: ResponseTimes) -> list[Metric]:
    """Median and p90 of time to respond and to close (real incidents of the last 12 weeks), with counts."""
    gauges: list[Metric] = []
    for name, figures in (("respond", times.respond), ("close", times.close)):
        seconds = GaugeMetricFamily(
            f"vakta_incident_time_to_{name}_seconds",
            f"Time to {name} of real incidents opened in the last 12 weeks, by quantile.",
            labels=["quantile"],
        )
        for quantile, value in (("0.5", figures.median_seconds), ("0.9", figures.p90_seconds)):
            if value is not None:
                seconds.add_metric([quantile], value)
        count = GaugeMetricFamily(
            f"vakta_incident_time_to_{name}_incidents",
            f"Real incidents of the last 12 weeks with a time to {name}.",
            value=figures.count,
        )
        gauges += [seconds, count]
    return gauges
