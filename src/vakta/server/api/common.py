"""What every router shares: the database and settings of the app, bounded text types, paging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Query, Request
from pydantic import AfterValidator, ConfigDict, StringConstraints

from vakta.server.db import Database
from vakta.server.settings import Settings

#: Request bodies take no field they do not know: nothing can smuggle content in.
STRICT = ConfigDict(extra="forbid")


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


NoNul = AfterValidator(_no_nul)
#: Host and user names, list names, entry ids: short text.
Name = Annotated[str, StringConstraints(min_length=1, max_length=255), NoNul]
Label = Annotated[str, StringConstraints(max_length=128), NoNul]
#: A file path (as the scanner prints it: non-UTF-8 bytes escaped).
FilePath = Annotated[str, StringConstraints(min_length=1, max_length=4096), NoNul]
#: An analyst's note on an incident (their words, never file content).
NoteText = Annotated[str, StringConstraints(min_length=1, max_length=10_000), NoNul]
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._@-]{1,64}$")]


def database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def page(
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many rows.")] = 100,
    offset: Annotated[int, Query(ge=0, description="Rows to skip.")] = 0,
) -> Page:
    return Page(limit, offset)
