"""CSV lists with a header row: one known item per row, possibly with several hashes.

Exports from case-management tools and hotlines name their columns in many
ways, so headers are matched case-insensitively and ignoring ``_``, ``-`` and
spaces, with common aliases; unknown columns are ignored.  Comma, tab and
semicolon (the spreadsheet default in much of Europe) are all recognised.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from vakta.lists.formats._common import (
    bare_hash,
    cell,
    csv_rows,
    first_content_line,
    head_text,
    kind_issue,
    split_preamble,
    squash,
    text_lines,
)
from vakta.lists.model import ListRecord, ParseIssue

DELIMITERS = (",", "\t", ";")

#: Squashed header name -> the field it fills.  ``hash`` holds a value of
#: unstated kind (``--kind`` or inferred from its length).
COLUMN_ALIASES: dict[str, str] = {
    **{name: "md5" for name in ("md5", "md5hash", "md5sum", "hashmd5")},
    **{name: "sha1" for name in ("sha1", "sha1hash", "hashsha1")},
    **{name: "sha256" for name in ("sha256", "sha256hash", "hashsha256")},
    **{name: "pdq" for name in ("pdq", "pdqhash", "hashpdq")},
    "hash": "hash",
    **{name: "id" for name in ("id", "entryid", "mediaid", "itemid", "hashid")},
    **{name: "category" for name in ("category", "cat")},
    **{name: "quality" for name in ("quality", "pdqquality")},
}
HASH_FIELDS = ("md5", "sha1", "sha256", "pdq", "hash")
EXPORT_HEADER = ("id", "category", "md5", "sha1", "sha256", "pdq")


@dataclass(frozen=True, slots=True)
class Columns:
    """Where each known field sits in a row; None where the file has no such column."""

    hashes: dict[str, int]
    entry_id: int | None
    category: int | None
    quality: int | None


def map_header(header: list[str]) -> Columns:
    """Column positions from a header row; the first of duplicate columns wins."""
    found: dict[str, int] = {}
    for index, name in enumerate(header):
        field = COLUMN_ALIASES.get(squash(name))
        if field is not None:
            found.setdefault(field, index)
    return Columns(
        hashes={f: found[f] for f in HASH_FIELDS if f in found},
        entry_id=found.get("id"),
        category=found.get("category"),
        quality=found.get("quality"),
    )


def pick_delimiter(header_line: str, single_column: bool = False) -> str | None:
    """The delimiter under which the header names a hash column, if any.

    A lone column (``md5`` and nothing else) has no delimiter to see; it counts
    only when asked for, since for sniffing it is no evidence of CSV.
    """
    for delimiter in DELIMITERS:
        if delimiter in header_line or (single_column and delimiter == DELIMITERS[0]):
            header = next(csv.reader([header_line], delimiter=delimiter), [])
            if map_header(header).hashes:
                return delimiter
    return None


def parse_quality(text: str) -> int | str:
    """A PDQ quality 0-100, or why the cell is not one."""
    try:
        quality = int(text)
    except ValueError:
        return f"PDQ quality {text!r} is not a whole number"
    if not 0 <= quality <= 100:
        return f"PDQ quality {quality} is outside 0-100"
    return quality


def row_record(
    line: int, row: list[str], columns: Columns, kind: str | None
) -> Iterator[ListRecord | ParseIssue]:
    """One row as a record plus an issue per unusable cell; a hash-less row is one issue."""
    hashes: dict[str, str] = {}
    bad = 0
    for field, index in columns.hashes.items():
        text = cell(row, index)
        if not text:
            continue
        found = bare_hash(text, kind if field == "hash" else field)
        if isinstance(found, str):
            bad += 1
            yield ParseIssue(line, f"{field} column: {found}")
        else:
            hashes.setdefault(found[0], found[1])
    if not hashes:
        if not bad:
            yield ParseIssue(line, "row has no hash")
        return
    quality: int | None = None
    quality_text = cell(row, columns.quality)
    if quality_text:
        checked = parse_quality(quality_text)
        if isinstance(checked, str):
            yield ParseIssue(line, checked)
        else:
            quality = checked
    yield ListRecord(
        hashes=hashes,
        entry_id=cell(row, columns.entry_id) or None,
        category=cell(row, columns.category) or None,
        line=line,
        pdq_quality=quality,
    )


class CsvFormat:
    """CSV with a header naming md5/sha1/sha256/pdq (and optional id, category, quality) columns."""

    name: str = "csv"

    def sniff(self, head: bytes, filename: str) -> bool:
        """True when the first content line is a delimited header naming a hash column."""
        return pick_delimiter(first_content_line(head_text(head))) is not None

    def parse(self, stream: IO[bytes], kind: str | None) -> Iterator[ListRecord | ParseIssue]:
        """Yield one record per row; the header decides the delimiter and the columns."""
        issue = kind_issue(kind)
        if issue is not None:
            yield issue
            return
        preamble, lines = split_preamble(text_lines(stream))
        header_line = preamble[-1] if preamble else ""
        delimiter = pick_delimiter(header_line.strip(), single_column=True)
        if delimiter is None:
            if header_line.strip():
                yield ParseIssue(len(preamble), "header names no hash column (md5, sha1, sha256, pdq)")
            return
        rows = csv_rows(lines, delimiter)
        columns: Columns | None = None
        for item in rows:
            if isinstance(item, ParseIssue):
                yield item
            elif columns is None:
                columns = map_header(item[1])
            else:
                yield from row_record(item[0], item[1], columns, kind)

    def export(self, records: Iterable[ListRecord], out: IO[str], list_name: str) -> None:
        """Write ``id,category,md5,sha1,sha256,pdq``, one row per record, empty cells for absent values."""
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EXPORT_HEADER)
        for record in records:
            writer.writerow(
                [record.entry_id or "", record.category or ""]
                + [record.hashes.get(kind, "") for kind in EXPORT_HEADER[2:]]
            )


FORMAT = CsvFormat()
