"""What a hash list is made of, independent of the file format it came in."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from vakta.signals.model import VideoFrame


@dataclass(frozen=True, slots=True)
class ListRecord:
    """One known media item as a list describes it: one or more hashes plus metadata.

    ``hashes`` maps a kind from :data:`vakta.signals.kinds.HEX_LENGTHS` to its
    normalised (lower-case hex) value.  ``line`` is where the record starts in
    the source file, for error reports.  A known video carries its vPDQ
    ``frames`` (the reference's per-frame PDQ hashes), kept together because a
    video matches as a whole: by the share of its frames a query reaches.

    A ``removed`` record withdraws what it names from the list instead of
    adding it: its hashes, its known video, and every entry carrying its
    ``entry_id``, since a list's own deletions (NCMEC's deleted entries) often
    name the entry alone.
    """

    hashes: dict[str, str]
    entry_id: str | None = None
    category: str | None = None
    line: int = 0
    pdq_quality: int | None = None
    frames: tuple[VideoFrame, ...] = ()
    removed: bool = False


@dataclass(frozen=True, slots=True)
class ParseIssue:
    """A line (or record) of a list file that could not be used, and why."""

    line: int
    message: str


def video_fingerprint(frames: Iterable[VideoFrame]) -> bytes:
    """A known video's identity: SHA-256 of its vPDQ lines, so a re-imported video merges."""
    return hashlib.sha256("".join(frame.vpdq_line() + "\n" for frame in frames).encode()).digest()
