"""What a hash list is made of, independent of the file format it came in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ListRecord:
    """One known media item as a list describes it: one or more hashes plus metadata.

    ``hashes`` maps a kind from :data:`vakta.signals.kinds.HEX_LENGTHS` to its
    normalised (lower-case hex) value.  ``line`` is where the record starts in
    the source file, for error reports.
    """

    hashes: dict[str, str]
    entry_id: str | None = None
    category: str | None = None
    line: int = 0
    pdq_quality: int | None = None


@dataclass(frozen=True, slots=True)
class ParseIssue:
    """A line (or record) of a list file that could not be used, and why."""

    line: int
    message: str
