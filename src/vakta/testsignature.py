"""The built-in test signature: a harmless picture on a built-in list, like the EICAR file.

It lets a user prove a deployment works end to end (hashing, matching,
reporting, alerting) without any real material.
"""

from __future__ import annotations

import csv
import io
from importlib.resources import files

from vakta.lists.model import ListRecord
from vakta.lists.store import EntryRow

LIST_NAME = "vakta-test"
LIST_FORMAT = "builtin"
LIST_DATE = "2026-11-30T00:00:00+00:00"
_DATA = files("vakta") / "data"


def image_bytes() -> bytes:
    """The test-signature JPEG, byte for byte as on the built-in list."""
    return (_DATA / "vakta-test.jpg").read_bytes()


def records() -> list[ListRecord]:
    text = (_DATA / "vakta-test-list.csv").read_text(encoding="utf-8")
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        hashes = {k: row[k] for k in ("md5", "sha1", "sha256", "pdq") if row.get(k)}
        quality = int(row["pdq_quality"]) if row.get("pdq_quality") else None
        out.append(ListRecord(hashes, row["id"], row["category"], 0, quality))
    return out


def entry_rows() -> list[EntryRow]:
    """The built-in list as store rows, so the matcher treats it like any imported list."""
    return [
        EntryRow(
            LIST_NAME,
            kind,
            bytes.fromhex(value),
            rec.entry_id,
            rec.category,
            rec.pdq_quality if kind == "pdq" else None,
            LIST_FORMAT,
            LIST_DATE,
        )
        for rec in records()
        for kind, value in rec.hashes.items()
    ]
