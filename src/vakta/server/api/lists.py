"""Hash lists: the signed bundle for agents, what the console holds, and imports by an admin.

A bundle goes only to an authenticated agent or admin and is never logged:
the log names its version and size, never a hash.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from vakta import bundles, testsignature
from vakta.bundles import SIGNATURE_HEADER
from vakta.lists.formats import detect, known_good, list_formats
from vakta.lists.model import ListRecord, ParseIssue
from vakta.lists.store import DETECT, IGNORE, EmptyImportError, ImportReport, StoreError
from vakta.server import audit
from vakta.server.api.common import database, settings
from vakta.server.auth import Permission, Principal
from vakta.server.auth import require as require_
from vakta.server.bundles import ServerLists, for_app

log = logging.getLogger(__name__)

router = APIRouter(prefix="/lists", tags=["lists"])
Fetcher = Annotated[Principal, Depends(require_(Permission.BUNDLE))]
Reader = Annotated[Principal, Depends(require_(Permission.READ))]
Admin = Annotated[Principal, Depends(require_(Permission.MANAGE))]
#: Problems of an import shown in the answer (all are counted).
MAX_ISSUES = 20


class Kind(StrEnum):
    md5 = "md5"
    sha1 = "sha1"
    sha256 = "sha256"
    pdq = "pdq"


class ListOut(BaseModel):
    name: str
    purpose: str
    counts: dict[str, int]
    imports: int
    last_import: str | None


class ListsOut(BaseModel):
    #: The version of the bundle these lists make (its ETag).
    version: str
    public_key: str
    lists: list[ListOut]


class ImportOut(BaseModel):
    name: str
    format: str
    records: int
    added: int
    duplicates: int
    removed: int
    invalid: int
    #: The first problems, as ``line N: reason`` (never the line's content).
    issues: list[str]
    version: str


def lists_of(request: Request) -> ServerLists:
    return for_app(request.app.state, settings(request))


@router.get(
    "/bundle",
    response_class=Response,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The bundle, signed in the header."},
        304: {"description": "Unchanged since the ETag sent in If-None-Match."},
    },
)
def get_bundle(request: Request, caller: Fetcher) -> Response:
    """Every list as one ZIP (see ``vakta.bundles``), its Ed25519 signature in ``X-Vakta-Signature``."""
    lists = lists_of(request)
    version = lists.version()
    if _etag(version) in _if_none_match(request):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=_cache_headers(version))
    bundle = lists.bundle()
    log.info("bundle %s (%d bytes) sent to %s", bundle.version, len(bundle.data), caller.actor)
    headers = {**_cache_headers(bundle.version), SIGNATURE_HEADER: bundle.signature}
    return Response(bundle.data, media_type="application/zip", headers=headers)


def _etag(version: str) -> str:
    return f'"{version}"'


def _if_none_match(request: Request) -> set[str]:
    header = request.headers.get("if-none-match", "")
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


def _cache_headers(version: str) -> dict[str, str]:
    # private and no-store: confidential lists must not sit in a proxy or a browser cache.
    return {"ETag": _etag(version), "Cache-Control": "private, no-store"}


@router.get("", response_model=ListsOut)
def get_lists(request: Request, _: Reader) -> ListsOut:
    """The lists the console holds (names, purposes, counts, imports; never a hash) and the signing key."""
    lists = lists_of(request)
    with lists.store() as store:
        infos = store.lists()
    rows = [
        ListOut(name=i.name, purpose=i.purpose, counts=i.counts, imports=i.imports, last_import=i.last_import)
        for i in infos
    ]
    return ListsOut(version=lists.version(), public_key=lists.public_key(), lists=rows)


@router.put("/{name}", response_model=ImportOut)
async def import_list(
    request: Request,
    admin: Admin,
    name: Annotated[str, Path(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f/]+$")],
    fmt: Annotated[
        str,
        Query(alias="format", max_length=64, description="A list format's name, or auto (from the content)."),
    ] = "auto",
    kind: Annotated[Kind | None, Query(description="Hash kind of bare values (plain text lists).")] = None,
    ignore: Annotated[bool, Query(description="A known-good list: agents skip what is on it.")] = False,
) -> ImportOut:
    """Add the list file in the body (as ``vakta lists import``; up to the body limit, larger ones by the CLI)."""
    if name == testsignature.LIST_NAME:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{name!r} is the built-in test list")
    if fmt != "auto" and fmt not in list_formats.names():
        raise HTTPException(422, f"unknown format {fmt!r}: auto or one of {', '.join(list_formats.names())}")
    body = await request.body()
    lists = lists_of(request)
    result = await run_in_threadpool(_import, lists, name, body, fmt, kind.value if kind else None, ignore)
    with database(request).write() as session:
        audit.append(
            session,
            admin.actor,
            "lists.import",
            f"list:{name}"[:160],
            {
                "format": result.format,
                "added": result.added,
                "removed": result.removed,
                "version": result.version,
            },
        )
    return result


def _import(
    lists: ServerLists, name: str, body: bytes, fmt_name: str, kind: str | None, ignore: bool
) -> ImportOut:
    """Parse with the list-format registry and merge into the store, then bring the index up to date."""
    fmt = detect(body[:65536], name) if fmt_name == "auto" else list_formats.get(fmt_name)
    purpose = IGNORE if ignore or known_good(fmt) else DETECT
    issues: list[ParseIssue] = []

    def records() -> Iterator[ListRecord]:
        for record in fmt.parse(io.BytesIO(body), kind):
            if isinstance(record, ParseIssue):
                issues.append(record)
            else:
                yield record

    with lists.store() as store:
        try:
            report: ImportReport = store.import_records(name, records(), f"api:{name}", fmt.name, purpose)
        except EmptyImportError as exc:
            raise HTTPException(422, f"{fmt.name}: {exc}") from None
        except StoreError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        report.invalid = len(issues)
        report.format = fmt.name
        store.finish_import(report)
        lists.refresh_index(store)
        version = bundles.store_version(store)
    return ImportOut(
        name=name,
        format=fmt.name,
        records=report.records,
        added=report.added,
        duplicates=report.duplicates,
        removed=report.removed,
        invalid=report.invalid,
        issues=[f"line {i.line}: {i.message}" for i in issues[:MAX_ISSUES]],
        version=version,
    )
