"""The matching API for platforms (the role of Meta's HMA): look up hashes, or match an uploaded file.

Both answer list, entry id, category and distance per input, from the same
index and matcher as ``vakta lookup`` over the console's lists (and the
built-in test signature, so an integration can be proven harmlessly). An
uploaded file is hashed in memory and dropped as soon as its signals are
computed: never stored, never logged. Each credential has its own token
bucket, shared by the console's worker processes (:mod:`vakta.server.ratelimit`); an
empty bucket answers 429 with Retry-After.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from vakta.matching.search import DEFAULT_THRESHOLD
from vakta.server.api.common import STRICT, NoNul, settings
from vakta.server.api.lists import lists_of
from vakta.server.auth import Permission, Principal
from vakta.server.auth import require as require_
from vakta.server.bundles import ServerLists
from vakta.server.ratelimit import SharedBuckets, shared_table
from vakta.signals.compute import compute_signals
from vakta.signals.model import HashOptions, Signals

log = logging.getLogger(__name__)

router = APIRouter(tags=["matching"])
Client = Annotated[Principal, Depends(require_(Permission.MATCH))]

#: Hashes in one lookup request.
MAX_LOOKUP = 10_000
#: Furthest PDQ distance a caller may ask for (a wider radius answers noise).
MAX_THRESHOLD = 64
#: Each credential's bucket refills this many tokens a second, up to ``BURST``.
RATE = 10.0
BURST = 20.0
#: A lookup costs one token per started thousand hashes; a file costs this many.
MATCH_COST = 2.0
#: An uploaded video is sampled for at most this long (bounds a hostile file's cost).
MAX_VIDEO_SECONDS = 1800.0

Threshold = Annotated[int, Query(ge=0, le=MAX_THRESHOLD, description="PDQ match distance (bits).")]


@dataclass
class TokenBucket:
    """The API's per-credential limit over a bucket table: ``take`` answers 0 when allowed, else the seconds to wait.

    The app's own uses the console's :func:`~vakta.server.ratelimit.shared_table`,
    shared by all its worker processes; one made without a table has its own.
    """

    rate: float = RATE
    burst: float = BURST
    table: SharedBuckets = field(default_factory=SharedBuckets)

    def take(self, key: str, cost: float = 1.0) -> float:
        return self.table.take(key, cost, self.rate, self.burst)


def limiter_of(request: Request) -> TokenBucket:
    """The app's limit, made on first use (tests put tighter ones in ``app.state.rate_limiter``)."""
    limiter = getattr(request.app.state, "rate_limiter", None)
    if not isinstance(limiter, TokenBucket):
        limiter = TokenBucket(table=shared_table())
        request.app.state.rate_limiter = limiter
    return limiter


def _charge(request: Request, caller: Principal, cost: float) -> None:
    wait = limiter_of(request).take(f"{caller.kind}:{caller.id}", cost)
    if wait > 0:
        log.info("rate limit: %s waits %.1f s", caller.actor, wait)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many requests for this credential",
            {"Retry-After": str(max(1, math.ceil(wait)))},
        )


HashText = Annotated[str, StringConstraints(min_length=1, max_length=200), NoNul]


class LookupIn(BaseModel):
    model_config = STRICT
    #: As ``vakta lookup`` takes them: kind from the length, or ``kind:value``.
    hashes: list[HashText] = Field(min_length=1, max_length=MAX_LOOKUP)
    threshold: int = Field(DEFAULT_THRESHOLD, ge=0, le=MAX_THRESHOLD)


class LookupOut(BaseModel):
    #: One per input, in order: ``{input, kinds, matches}`` or ``{input, error}``.
    results: list[dict[str, object]]


class MatchOut(BaseModel):
    size: int | None
    type: str | None
    md5: str | None
    sha1: str | None
    sha256: str | None
    pdq: str | None
    pdq_quality: int | None
    video_seconds: float | None
    vpdq_frames: int
    matches: list[dict[str, Any]]
    errors: list[str]


@router.post("/lookup", response_model=LookupOut)
def lookup(body: LookupIn, request: Request, caller: Client) -> LookupOut:
    """Matches of bare hashes: ``{"hashes": ["<md5>", "pdq:<hex>", ...]}`` -> one result per hash."""
    _charge(request, caller, float(math.ceil(len(body.hashes) / 1000)))
    from vakta.matching.lookup import lookup_results

    with lists_of(request).matcher(body.threshold) as matcher:
        results = lookup_results(matcher, [(None, text) for text in body.hashes])
    return LookupOut(results=results)


@router.post(
    "/match",
    response_model=MatchOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def match(request: Request, caller: Client, threshold: Threshold = DEFAULT_THRESHOLD) -> MatchOut:
    """The file is the raw body (up to the body limit): hashed in memory, dropped, never kept or logged."""
    _charge(request, caller, MATCH_COST)
    limit = settings(request).max_body_bytes
    buffer = io.BytesIO()
    try:
        async for chunk in request.stream():
            buffer.write(chunk)
            if buffer.tell() > limit:
                raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "request body too large")
        if buffer.tell() == 0:
            raise HTTPException(422, "the body must be the file to match")
        buffer.seek(0)
        signals = await run_in_threadpool(_signals, buffer)
    finally:
        buffer.close()  # the file's bytes go here, before matching
    lists = lists_of(request)
    found = await run_in_threadpool(_match, lists, signals, threshold)
    log.info("match for %s: %s bytes of %s, %d matches", caller.actor, signals.size, signals.type, len(found))
    return MatchOut(
        size=signals.size,
        type=signals.type,
        md5=signals.md5,
        sha1=signals.sha1,
        sha256=signals.sha256,
        pdq=signals.pdq,
        pdq_quality=signals.pdq_quality,
        video_seconds=signals.video_seconds,
        vpdq_frames=len(signals.video_frames),
        matches=found,
        errors=signals.errors,
    )


def _signals(stream: io.BytesIO) -> Signals:
    """Digests, PDQ (with the query variants a scan uses) and vPDQ of the upload."""
    options = HashOptions(max_video_seconds=MAX_VIDEO_SECONDS)
    return compute_signals(stream, Signals(path="upload"), options)


def _match(lists: ServerLists, signals: Signals, threshold: int) -> list[dict[str, Any]]:
    with lists.matcher(threshold) as matcher:
        return [m.to_dict() for m in matcher.match(signals)]
