"""The versioned HTTP API (``/api/v1``): one router per resource."""

from __future__ import annotations

from fastapi import APIRouter

from vakta.server.api import (
    actionplan,
    admin,
    agents,
    alerts,
    forwarding,
    incidents,
    lists,
    matching,
    sessions,
    stats,
)

PREFIX = "/api/v1"


def router() -> APIRouter:
    api = APIRouter(prefix=PREFIX)
    for module in (agents, alerts, incidents, stats, sessions, admin, lists, matching):
        api.include_router(module.router)
    api.include_router(actionplan.router)
    api.include_router(forwarding.router)
    return api
