"""hashdeep's hash set files (``hashdeep -r DIR > set.txt``), as forensic labs exchange them.

The file opens with two header lines, the second naming the columns::

    %%%% HASHDEEP-1.0
    %%%% size,md5,sha256,filename
    ## Invoked from: /cases/4711
    ## $ hashdeep -r -c md5,sha256 evidence
    ##
    3148,0cbdd121922a0cbe2224053ba630faad,1e30...18fb,/cases/4711/evidence/a.jpg

The hash columns are any of ``md5``, ``sha1``/``sha-1``, ``sha256``/``sha-256``,
``tiger`` and ``whirlpool``, in any order (``hashdeep -c``); Vakta keeps the
first three and ignores the others.  hashdeep puts the size first and the
file name last; the name may hold commas, so the last column takes the rest
of the line.  ``#`` lines are comments.  A second ``%%%%`` header (two files
concatenated) starts new columns.  The file name becomes the entry id.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from vakta.lists.formats._common import head_text, text_lines
from vakta.lists.model import ListRecord, ParseIssue
from vakta.signals import kinds

MAGIC = "%%%% HASHDEEP-1.0"
PREFIX = "%%%%"
#: Header column (lower case) -> field: a Vakta hash kind, ``size``, ``filename``, or None to ignore.
COLUMNS: dict[str, str | None] = {
    "size": "size",
    "md5": "md5",
    "sha1": "sha1",
    "sha-1": "sha1",
    "sha256": "sha256",
    "sha-256": "sha256",
    "tiger": None,
    "whirlpool": None,
    "filename": "filename",
}
EXPORT_KINDS = ("md5", "sha1", "sha256")


@dataclass(frozen=True, slots=True)
class Header:
    """The fields of a ``%%%% size,...,filename`` line, one per column (None: ignored)."""

    fields: tuple[str | None, ...]

    def split(self, text: str) -> list[str]:
        """A row's cells; a last ``filename`` column keeps the commas of the name."""
        if self.fields and self.fields[-1] == "filename":
            return text.split(",", len(self.fields) - 1)
        return text.split(",")


def read_header(line: int, body: str) -> tuple[Header, list[ParseIssue]]:
    """The columns a ``%%%%`` header line names; an unknown one is reported and its column ignored."""
    fields: list[str | None] = []
    issues: list[ParseIssue] = []
    for name in body.split(","):
        column = name.strip().lower()
        if column not in COLUMNS:
            issues.append(ParseIssue(line, f"unknown hashdeep column {name.strip()[:40]!r} (ignored)"))
        fields.append(COLUMNS.get(column))
    return Header(tuple(fields)), issues


def row_record(line: int, text: str, header: Header) -> Iterator[ListRecord | ParseIssue]:
    """One hash line as a record, with an issue per unusable cell; a hash-less line is one issue."""
    cells = header.split(text)
    if len(cells) != len(header.fields):
        yield ParseIssue(line, f"{len(cells)} fields where the header names {len(header.fields)}")
        return
    hashes: dict[str, str] = {}
    name: str | None = None
    bad = 0
    for field, cell in zip(header.fields, cells, strict=True):
        value = cell.strip()
        if field == "filename":
            name = cell or None
        elif field == "size":
            if value and not value.isdigit():
                yield ParseIssue(line, "the size is not a whole number")
        elif field is not None and value:
            try:
                hashes.setdefault(field, kinds.normalize(field, value))
            except kinds.InvalidHashError as exc:
                bad += 1
                yield ParseIssue(line, str(exc))
    if hashes:
        yield ListRecord(hashes, name, None, line)
    elif not bad:
        yield ParseIssue(line, "no md5, sha1 or sha256 on the line")


class HashdeepFormat:
    """hashdeep output: ``%%%% HASHDEEP-1.0``, a column header, then ``size,hashes...,filename`` lines."""

    name: str = "hashdeep"

    def sniff(self, head: bytes, filename: str) -> bool:
        """True when the file starts with hashdeep's magic line."""
        return head_text(head).lstrip().upper().startswith(MAGIC.upper())

    def parse(self, stream: IO[bytes], kind: str | None) -> Iterator[ListRecord | ParseIssue]:
        """Yield one record per hash line; lines before any column header are reported."""
        header: Header | None = None
        for lineno, line in enumerate(text_lines(stream), 1):
            text = line.rstrip("\r\n")
            stripped = text.strip()
            if not stripped or stripped[0] == "#":
                continue
            if stripped.startswith(PREFIX):
                body = stripped[len(PREFIX) :].strip()
                if not body.upper().startswith("HASHDEEP"):
                    header, issues = read_header(lineno, body)
                    yield from issues
            elif header is None:
                yield ParseIssue(
                    lineno, "no hashdeep column header (%%%% size,...,filename) before this line"
                )
            else:
                yield from row_record(lineno, text, header)

    def export(self, records: Iterable[ListRecord], out: IO[str], list_name: str) -> None:
        """Write ``size,md5,sha1,sha256,filename`` lines, the entry id as the file name.

        Vakta's store keeps no sizes, so the size cell is empty, and a hash a
        record lacks leaves its cell empty: Vakta reads such lines back, but
        hashdeep itself reads an empty size as 0 (a file of another size then
        counts as a size mismatch, not a match) and skips lines with a hash
        missing.  PDQ has no hashdeep column and is left out.
        """
        out.write(f"{MAGIC}\n{PREFIX} size,{','.join(EXPORT_KINDS)},filename\n")
        out.write(f"## vakta list: {' '.join(list_name.split())}\n##\n")
        for record in records:
            if not any(kind in record.hashes for kind in EXPORT_KINDS):
                continue
            cells = [record.hashes.get(kind, "") for kind in EXPORT_KINDS]
            name = " ".join((record.entry_id or "").splitlines())
            out.write(f",{','.join(cells)},{name}\n")


FORMAT = HashdeepFormat()
