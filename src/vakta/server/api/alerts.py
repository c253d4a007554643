"""Alerts: agents submit batches (idempotent per key); people list them.

An alert holds hashes, size, path, user, storage kind, list provenance and
times. Every field is typed and bounded and unknown fields are refused, so
no request can carry a file's content into the console.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import AwareDatetime, BaseModel, Field, StringConstraints, model_validator
from sqlalchemy import select

from vakta.server.api.common import STRICT, FilePath, Label, Name, Page, database, page
from vakta.server.auth import Permission, Principal
from vakta.server.auth import require as require_
from vakta.server.ingest import ingest
from vakta.server.metrics import record_alerts
from vakta.server.models import Agent, Alert, Storage, utcnow

router = APIRouter(prefix="/alerts", tags=["alerts"])

#: Alerts in one submission; an agent with more sends several batches.
MAX_BATCH = 500

Md5 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Sha1 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{40}$")]
Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
IdempotencyKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
MediaType = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9.+-]{1,60}/[A-Za-z0-9.+-]{1,60}$")]
Signal = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,16}$")]
Word = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._+-]{1,32}$")]


class VideoDetail(BaseModel):
    """How much of a known video matched (``vakta scan``'s ``video`` object)."""

    model_config = STRICT
    known_share: float = Field(ge=0, le=100)
    query_share: float = Field(ge=0, le=100)
    known_frames: int = Field(ge=0)
    matched_known_frames: int = Field(ge=0)
    query_ranges: list[tuple[float, float]] = Field(default_factory=list, max_length=256)


class ListMatch(BaseModel):
    """One list entry the file matched, with its provenance."""

    model_config = STRICT
    list: Name
    entry_id: Name
    category: Label | None = None
    signal: Signal
    distance: int = Field(0, ge=0, le=256)
    transform: Word | None = None
    variant: Word | None = None
    list_format: Word | None = None
    imported_at: Label | None = None
    video: VideoDetail | None = None


class AlertIn(BaseModel):
    """One matched file as the agent saw it."""

    model_config = STRICT
    #: Chosen by the agent, unique per alert: a retried submission is recognised by it.
    idempotency_key: IdempotencyKey
    detected_at: AwareDatetime
    #: The file's owner on the host ("" when unknown).
    user: Annotated[str, StringConstraints(max_length=255)] = ""
    path: FilePath
    #: Where inside containers the file sat, one step per level (``vakta scan``'s ``inside``).
    inside: list[Name] = Field(default_factory=list, max_length=32)
    storage: Storage
    size: int | None = Field(None, ge=0)
    type: MediaType | None = None
    md5: Md5 | None = None
    sha1: Sha1 | None = None
    sha256: Hex64 | None = None
    pdq: Hex64 | None = None
    pdq_quality: int | None = Field(None, ge=0, le=100)
    deleted: bool = False
    parent_md5: Md5 | None = None
    matches: list[ListMatch] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _has_a_hash(self) -> AlertIn:
        if not (self.md5 or self.sha1 or self.sha256 or self.pdq):
            raise ValueError("an alert needs at least one of md5, sha1, sha256, pdq")
        if "\x00" in self.user:
            raise ValueError("NUL characters are not allowed")
        return self


class AlertBatch(BaseModel):
    model_config = STRICT
    alerts: list[AlertIn] = Field(min_length=1, max_length=MAX_BATCH)


class AlertResult(BaseModel):
    idempotency_key: str
    alert_id: int
    incident_id: int
    #: False when the key was already stored (a retry): nothing was added.
    new: bool


class BatchResult(BaseModel):
    new: int
    duplicates: int
    results: list[AlertResult]


class AlertOut(BaseModel):
    id: int
    incident_id: int
    agent_id: str
    idempotency_key: str
    received_at: datetime
    detected_at: datetime
    host: str
    user: str
    path: str
    inside: list[str]
    storage: str
    size: int | None
    type: str | None
    md5: str | None
    sha1: str | None
    sha256: str | None
    pdq: str | None
    pdq_quality: int | None
    deleted: bool
    parent_md5: str | None
    #: Every match is on the built-in test list (``vakta testfile``): not real material.
    test: bool
    matches: list[dict[str, Any]]


@router.post("", response_model=BatchResult)
def submit(
    batch: AlertBatch,
    request: Request,
    caller: Annotated[Principal, Depends(require_(Permission.REPORT))],
) -> BatchResult:
    """Store a batch of alerts. 200 means every alert in it is stored (new or from an earlier try)."""
    alerts = [a.model_dump(exclude_none=False) for a in batch.alerts]
    with database(request).write() as session:
        agent = session.get(Agent, caller.id)
        if agent is None or agent.revoked_at is not None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this agent was revoked")
        outcomes = ingest(session, agent, alerts, utcnow())
    new = sum(o.new for o in outcomes)
    record_alerts(request.app.state.metrics, new, len(outcomes) - new)
    results = [AlertResult(**o.__dict__) for o in outcomes]
    return BatchResult(new=new, duplicates=len(outcomes) - new, results=results)


@router.get("", response_model=list[AlertOut])
def list_alerts(
    request: Request,
    _: Annotated[Principal, Depends(require_(Permission.READ))],
    paging: Annotated[Page, Depends(page)],
    incident: Annotated[int | None, Query(description="Only this incident's alerts.")] = None,
    agent: Annotated[str | None, Query(description="Only this agent's alerts.")] = None,
    test: Annotated[bool | None, Query(description="Only test (or only real) alerts.")] = None,
) -> list[AlertOut]:
    """Alerts, newest first."""
    query = select(Alert).order_by(Alert.id.desc())
    if incident is not None:
        query = query.where(Alert.incident_id == incident)
    if agent is not None:
        query = query.where(Alert.agent_id == agent)
    if test is not None:
        query = query.where(Alert.is_test.is_(test))
    with database(request).read() as session:
        rows = session.execute(query.limit(paging.limit).offset(paging.offset)).scalars().all()
    return [alert_out(a) for a in rows]


def alert_out(alert: Alert) -> AlertOut:
    return AlertOut(
        id=alert.id,
        incident_id=alert.incident_id,
        agent_id=alert.agent_id,
        idempotency_key=alert.idempotency_key,
        received_at=alert.received_at,
        detected_at=alert.detected_at,
        host=alert.host,
        user=alert.user,
        path=alert.path,
        inside=list(alert.inside),
        storage=alert.storage,
        size=alert.size,
        type=alert.type,
        md5=alert.md5,
        sha1=alert.sha1,
        sha256=alert.sha256,
        pdq=alert.pdq,
        pdq_quality=alert.pdq_quality,
        deleted=alert.deleted,
        parent_md5=alert.parent_md5,
        test=alert.is_test,
        matches=list(alert.matches),
    )
