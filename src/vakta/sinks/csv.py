"""CSV: one row per match (or per file without a match), for spreadsheets and forensic tools."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from typing import IO, Any

from vakta.findings import Finding
from vakta.stats import ScanStats

COLUMNS = (
    "path", "size", "type", "md5", "sha1", "sha256", "pdq", "pdq_quality",
    "list", "entry_id", "category", "signal", "distance", "transform",
    "video_known_share", "video_query_share", "video_query_ranges", "errors", "path_b64",
    "location", "deleted", "parent_md5",
)  # fmt: skip


def _flat(match: dict[str, Any]) -> dict[str, Any]:
    """A match as CSV cells: a whole-video match's shares and time ranges in their own columns."""
    video = match.pop("video", None)
    if video:
        match["video_known_share"] = video["known_share"]
        match["video_query_share"] = video["query_share"]
        match["video_query_ranges"] = " ".join(f"{a}-{b}" for a, b in video["query_ranges"])
    return match


@dataclass(slots=True)
class CsvWriter:
    out: IO[str]
    writer: Any = field(init=False)

    def __post_init__(self) -> None:
        self.writer = csv.DictWriter(self.out, COLUMNS, extrasaction="ignore", lineterminator="\n")
        self.writer.writeheader()

    def write(self, finding: Finding) -> None:
        base = finding.signals.hash_fields()
        base["errors"] = "; ".join(finding.signals.errors)
        rows = [{**base, **_flat(m.to_dict())} for m in finding.matches] or [base]
        self.writer.writerows(rows)

    def close(self, stats: ScanStats) -> None:
        self.out.flush()


@dataclass(frozen=True, slots=True)
class CsvSink:
    name: str = "csv"
    wants_all: bool = False

    def open(self, out: IO[str]) -> CsvWriter:
        return CsvWriter(out)


SINK = CsvSink()
