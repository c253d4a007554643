"""Forwarding status: how far each SIEM or notification destination has followed the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from vakta.server import forwarding
from vakta.server.api.common import database
from vakta.server.auth import Permission, Principal
from vakta.server.auth import require as require_

router = APIRouter(tags=["operations"])
Reader = Annotated[Principal, Depends(require_(Permission.READ))]


class DestinationOut(BaseModel):
    #: The destination without credentials, e.g. ``syslog+tls://siem.example.org:6514#1a2b3c4d5e6f``.
    name: str
    #: The last audit entry forwarded (or skipped as having nothing to send).
    seq: int
    #: Audit entries after the cursor: not yet looked at.
    lag: int
    #: Alerts and incident events delivered.
    sent: int
    #: Why the last batch failed; None once one gets through.
    last_error: str | None
    updated_at: str


class ForwardingOut(BaseModel):
    #: The audit log's last entry.
    head: int
    destinations: list[DestinationOut]


@router.get("/forwarding", response_model=ForwardingOut)
def forwarding_status(request: Request, _: Reader) -> ForwardingOut:
    """Every destination any server process forwards to: cursor, lag, delivered count, last error."""
    with database(request).read() as session:
        head, rows = forwarding.status(session)
    return ForwardingOut(
        head=head,
        destinations=[
            DestinationOut(
                name=r.name,
                seq=r.seq,
                lag=r.lag,
                sent=r.sent,
                last_error=r.last_error,
                updated_at=r.updated_at,
            )
            for r in rows
        ],
    )
