"""The built-in test signatures: a harmless picture and video on a built-in list, like the EICAR file.

They let a user prove a deployment works end to end (hashing, matching,
reporting, alerting), for pictures and for videos, without any real material.
The video is on the list by its digests and by its vPDQ, so a re-encoded or
cut copy of it is found as a known video too.
"""

from __future__ import annotations

import csv
import io
from importlib.resources import files

from vakta.lists.formats.vpdq import FORMAT as VPDQ_FORMAT
from vakta.lists.model import ListRecord, video_fingerprint
from vakta.lists.store import VIDEO_KIND, EntryRow
from vakta.signals.model import VideoFrame

LIST_NAME = "vakta-test"
LIST_FORMAT = "builtin"
LIST_DATE = "2026-11-30T00:00:00+00:00"
_DATA = files("vakta") / "data"


def image_bytes() -> bytes:
    """The test-signature JPEG, byte for byte as on the built-in list."""
    return (_DATA / "vakta-test.jpg").read_bytes()


def video_bytes() -> bytes:
    """The test-signature video (MP4, 8 s), byte for byte as on the built-in list."""
    return (_DATA / "vakta-test-video.mp4").read_bytes()


def video_records() -> list[ListRecord]:
    """The test video as a known video: its vPDQ frames."""
    with (_DATA / "vakta-test-video.vpdq").open("rb") as stream:
        return [r for r in VPDQ_FORMAT.parse(stream, None) if isinstance(r, ListRecord)]


def records() -> list[ListRecord]:
    """The whole built-in list: digests and PDQ records, then the known test video."""
    return _hash_records() + video_records()


def _hash_records() -> list[ListRecord]:
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
        for rec in _hash_records()
        for kind, value in rec.hashes.items()
    ]


def video_entries() -> list[tuple[EntryRow, tuple[VideoFrame, ...]]]:
    """The built-in known video as the matcher takes an in-memory video: its row and frames."""
    return [
        (
            EntryRow(
                LIST_NAME,
                VIDEO_KIND,
                video_fingerprint(rec.frames),
                rec.entry_id,
                "test",
                None,
                LIST_FORMAT,
                LIST_DATE,
            ),
            rec.frames,
        )
        for rec in video_records()
    ]
