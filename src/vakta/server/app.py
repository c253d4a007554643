"""The FastAPI application: the API routers, ``/healthz``, ``/metrics``, a body-size limit, request metrics.

``create_app`` migrates the database to the shipped schema before it serves,
so a new release upgrades an existing console on its first start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vakta import __version__
from vakta.server import actionplan, api, forwarding, metrics, ui
from vakta.server.auth import Permission, Principal, require
from vakta.server.db import Database
from vakta.server.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, db: Database | None = None) -> FastAPI:
    """The console app over ``settings.database_url`` (or ``db``), its schema brought up to date."""
    database = db or Database(settings.database_url)
    database.migrate()
    actionplan.ensure_default(database)  # a new console starts with the default action plan

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        forwarder = forwarding.start(database, settings.forward, settings.public_url)
        yield
        if forwarder is not None:
            forwarder.stop()
        if db is None:
            database.dispose()

    app = FastAPI(
        title="Vakta console",
        version=__version__,
        description="Alerts from Vakta agents, incidents, evidence and statistics. Never any file content.",
        lifespan=lifespan,
    )
    app.state.db = database
    app.state.settings = settings
    app.state.metrics = metrics.create(database, settings.offline_after)
    app.state.metrics.registry.register(forwarding.Gauges(database))
    app.include_router(api.router())
    ui.install(app)  # the web pages under /ui
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["operations"], response_model=None)
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], tags=["operations"], response_model=None)
    app.add_exception_handler(SQLAlchemyError, _database_error)
    app.add_middleware(RequestMetrics)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def healthz(request: Request) -> JSONResponse:
    """Liveness and database reachability, for load balancers (no authentication, no data)."""
    db: Database = request.app.state.db
    try:
        with db.read() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("healthz: database unavailable: %s", exc)
        return JSONResponse({"status": "error", "database": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok", "version": __version__})


def metrics_endpoint(
    request: Request, _: Annotated[Principal, Depends(require(Permission.READ))]
) -> Response:
    """Prometheus metrics (scrape with an auditor token as bearer)."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("database error on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "database unavailable, try again"}, status_code=503)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (413) by their length, and stop a chunked one that grows past it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _too_large(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, "request body too large")
            return message

        await self.app(scope, limited, send)


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse({"detail": "request body too large"}, status_code=413)
    await response(scope, receive, send)


class RequestMetrics:
    """Time every request by method, route template (never the raw path) and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            histogram = scope["app"].state.metrics.requests
            labels = (scope["method"], route_template(scope), str(status["code"]))
            histogram.labels(*labels).observe(time.perf_counter() - start)


def route_template(scope: Scope) -> str:
    """``/api/v1/incidents/{incident_id}`` for ``/api/v1/incidents/12``; "unmatched" for unknown paths.

    Built from the path and its parameters, as routers nested by ``include_router``
    report only their own part of the path in some FastAPI versions.
    """
    if scope.get("route") is None:
        return "unmatched"
    names = {str(value): f"{{{name}}}" for name, value in scope.get("path_params", {}).items()}
    return "/".join(names.get(part, part) for part in scope["path"].split("/"))
