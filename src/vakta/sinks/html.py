"""A triage report a person reads: one self-contained HTML file, never any picture.

Summary, matches grouped by list and category with the location chain of
each, errors, and the scan's settings and tool version for the record.  Every
value from the evidence (paths, member names, error texts) is escaped: a file
named ``<script>`` is shown as text.  No script, no external resource, no
thumbnail: the file opens offline and shows hashes and locations only.
"""

from __future__ import annotations

import html
import platform
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

from vakta import __version__
from vakta.findings import Finding
from vakta.matching.matcher import Match
from vakta.stats import ScanStats

#: Errors listed one by one; beyond this only counted (a damaged disk can yield millions).
MAX_ERRORS_LISTED = 5_000

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1b1b1b;max-width:80em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
code,.hash{font-family:ui-monospace,monospace;font-size:.9em;word-break:break-all}
.loc{word-break:break-all}.deleted{color:#8a4b00;font-weight:bold}.note{color:#555}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


@dataclass(slots=True)
class _Row:
    location: str
    size: int | None
    md5: str | None
    sha1: str | None
    deleted: bool
    match: Match


@dataclass(slots=True)
class HtmlWriter:
    out: IO[str]
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    groups: dict[tuple[str, str], list[_Row]] = field(default_factory=lambda: defaultdict(list))
    errors: list[tuple[str, str]] = field(default_factory=list)
    error_count: int = 0

    def write(self, finding: Finding) -> None:
        s = finding.signals
        for match in finding.matches:
            key = (match.meta.list_name, match.meta.category or "(none)")
            self.groups[key].append(_Row(s.location, s.size, s.md5, s.sha1, s.deleted, match))
        for error in s.errors:
            self.error_count += 1
            if len(self.errors) < MAX_ERRORS_LISTED:
                self.errors.append((s.location, error))

    def close(self, stats: ScanStats) -> None:
        parts = [
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>",
            "<meta name='viewport' content='width=device-width'>",
            f"<title>Vakta triage report {_e(self.started)}</title><style>{_STYLE}</style></head><body>",
            "<h1>Vakta triage report</h1>",
            "<p class='note'>Matches against hash lists. This report holds hashes, sizes and "
            "locations only: no matched content, no pictures.</p>",
            self._summary(stats),
            self._matches(),
            self._errors(),
            self._record(stats),
            "</body></html>\n",
        ]
        self.out.write("\n".join(parts))
        self.out.flush()

    def _summary(self, stats: ScanStats) -> str:
        s = stats.to_dict()
        rows = [
            ("Files (members of containers included)", f"{s['files']:,}"),
            ("Bytes read", f"{s['bytes']:,}"),
            ("Files that matched", f"{s['matched_files']:,}"),
            ("Matches", f"{s['matches']:,}"),
            ("Files with errors", f"{s['errors']:,}"),
            ("Known-good (skipped)", f"{s['known_good']:,}"),
            ("Skipped (links, devices, ...)", f"{s['skipped']:,}"),
            ("Elapsed", f"{s['elapsed_s']:,} s ({s['mb_per_s']} MB/s)"),
        ]
        body = "".join(f"<tr><th>{_e(k)}</th><td class='num'>{_e(v)}</td></tr>" for k, v in rows)
        return f"<h2>Summary</h2><table>{body}</table>"

    def _matches(self) -> str:
        if not self.groups:
            return "<h2>Matches</h2><p>No file matched.</p>"
        out = ["<h2>Matches</h2>"]
        head = (
            "<tr><th>location</th><th>size</th><th>MD5 / SHA-1</th><th>entry</th>"
            "<th>matched by</th><th>list source</th></tr>"
        )
        for (list_name, category), rows in sorted(self.groups.items()):
            out.append(f"<h3>List {_e(list_name)}, category {_e(category)}: {len(rows):,}</h3>")
            out.append(f"<table>{head}")
            out += [self._match_row(r) for r in sorted(rows, key=lambda r: r.location)]
            out.append("</table>")
        return "\n".join(out)

    @staticmethod
    def _match_row(row: _Row) -> str:
        m = row.match
        how = f"{m.signal}, distance {m.distance}"
        if m.transform and m.transform != "original":
            how += f", {m.transform}"
        if m.variant and m.variant != "full":
            how += f", {m.variant}"
        if m.video is not None:
            ranges = ", ".join(f"{a:.0f}-{b:.0f} s" for a, b in m.video.query_ranges)
            how += f"; {m.video.known_share:.0f}% of the known video, {m.video.query_share:.0f}% of this file at {ranges}"
        deleted = " <span class='deleted'>(deleted)</span>" if row.deleted else ""
        return (
            f"<tr><td class='loc'>{_e(row.location)}{deleted}</td><td class='num'>{_e(row.size)}</td>"
            f"<td class='hash'>{_e(row.md5)}<br>{_e(row.sha1)}</td><td>{_e(m.meta.entry_id)}</td>"
            f"<td>{_e(how)}</td><td>{_e(m.meta.source_format)}, {_e(m.meta.imported_at)}</td></tr>"
        )

    def _errors(self) -> str:
        if not self.error_count:
            return "<h2>Errors</h2><p>None.</p>"
        shown = "" if self.error_count <= len(self.errors) else f" (first {len(self.errors):,} listed)"
        rows = "".join(
            f"<tr><td class='loc'>{_e(loc)}</td><td>{_e(msg)}</td></tr>" for loc, msg in self.errors
        )
        return (
            f"<h2>Errors: {self.error_count:,}{shown}</h2>"
            f"<table><tr><th>location</th><th>error</th></tr>{rows}</table>"
        )

    def _record(self, stats: ScanStats) -> str:
        rows = [
            ("Tool", f"Vakta {__version__}"),
            ("Started (UTC)", self.started),
            ("Host", platform.node()),
            ("Python", platform.python_version()),
            *((k, v) for k, v in sorted(stats.settings.items())),
        ]
        body = "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>" for k, v in rows)
        return f"<h2>For the record</h2><table>{body}</table>"


@dataclass(frozen=True, slots=True)
class HtmlSink:
    name: str = "html"
    wants_all: bool = False

    def open(self, out: IO[str]) -> HtmlWriter:
        return HtmlWriter(out)


SINK = HtmlSink()
