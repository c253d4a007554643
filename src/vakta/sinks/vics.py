"""VICS 2.0 case file of the matched files, for Griffeye and other Project VIC tools.

Written as a stream, so a scan of millions of files never holds the report in memory.
"""

from __future__ import annotations

import json
import ntpath
import posixpath
from dataclasses import dataclass
from typing import IO, Any

from vakta import __version__
from vakta.findings import Finding
from vakta.matching.matcher import Match
from vakta.signals.model import Signals
from vakta.stats import ScanStats

# "Default" is the region IPED and other readers recognise (see lists/formats/vics.py).
CONTEXT = "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/Default/$metadata#Cases"


def media_record(finding: Finding, media_id: int) -> dict[str, Any]:
    """One VICS Media record for a matched file; hashes and provenance only."""
    s = finding.signals
    best = min(finding.matches, key=lambda m: m.distance)
    record: dict[str, Any] = {
        "MediaID": media_id,
        "Category": _category(best.meta.category),
        "MD5": (s.md5 or "").upper(),
        "SHA1": (s.sha1 or "").upper(),
        "MediaSize": s.size,
        "IsPrecategorized": True,
        "AlternativeHashes": [
            {"HashName": name, "HashValue": value}
            for name, value in (("SHA256", s.sha256), ("PDQ", s.pdq))
            if value
        ],
        "MediaFiles": [media_file(s)],
        "Comments": "; ".join(_comment(m) for m in finding.matches),
    }
    return record


def media_file(s: Signals) -> dict[str, Any]:
    """Where the file was found; a member of a container names the container as its parent.

    ``FilePath`` is the whole location chain, so a reader that knows nothing of
    ``ParentFilePath`` still shows where the file sits.
    """
    name = s.inside[-1].rsplit(" > ", 1)[-1] if s.inside else s.path
    record: dict[str, Any] = {"FileName": _basename(name), "FilePath": s.location}
    if s.inside:
        record["ParentMD5"] = (s.parent_md5 or "").upper()
        record["ParentFilePath"] = " > ".join([s.path, *s.inside[:-1]])
    if s.deleted:
        record["Deleted"] = True
    return record


def _comment(match: Match) -> str:
    """How one match was made, for the examiner reading the case file."""
    text = f"Vakta: list {match.meta.list_name} entry {match.meta.entry_id or '-'} by {match.signal}"
    if match.video is None:
        return f"{text} (distance {match.distance})"
    v = match.video
    where = ", ".join(f"{a:.0f}-{b:.0f} s" for a, b in v.query_ranges)
    return f"{text} ({v.known_share:.0f}% of the known video, {v.query_share:.0f}% of this file, at {where})"


def _category(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def _basename(path: str) -> str:
    return ntpath.basename(path) if "\\" in path and "/" not in path else posixpath.basename(path)


@dataclass(slots=True)
class VicsWriter:
    out: IO[str]
    count: int = 0

    def __post_init__(self) -> None:
        head = {"@odata.context": CONTEXT}
        self.out.write(json.dumps(head)[:-1])
        case = {"CaseNumber": "", "SourceApplicationName": "Vakta", "SourceApplicationVersion": __version__}
        self.out.write(', "value": [' + json.dumps(case)[:-1] + ', "Media": [\n')

    def write(self, finding: Finding) -> None:
        if not finding.matches:
            return
        self.count += 1
        prefix = ",\n" if self.count > 1 else ""
        self.out.write(prefix + json.dumps(media_record(finding, self.count), ensure_ascii=False))

    def close(self, stats: ScanStats) -> None:
        self.out.write("\n]}]}\n")
        self.out.flush()


@dataclass(frozen=True, slots=True)
class VicsSink:
    name: str = "vics"
    wants_all: bool = False

    def open(self, out: IO[str]) -> VicsWriter:
        return VicsWriter(out)


SINK = VicsSink()
