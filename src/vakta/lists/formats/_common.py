"""Helpers shared by the list formats: decoding, kind checks and CSV row iteration.

Lists arrive from many tools and operating systems, so every format decodes
the same tolerant way: UTF-8 with or without a BOM, UTF-16 when it starts with
a BOM, and any other undecodable line as latin-1 so that one stray byte in a
file name column never loses the hash next to it.
"""

from __future__ import annotations

import codecs
import csv
import itertools
from collections.abc import Iterable, Iterator
from typing import IO

from vakta.lists.model import ParseIssue
from vakta.signals import kinds

UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

AMBIGUOUS_64 = "64 hex characters can be SHA-256 or PDQ: give --kind"

#: The kind each hex length implies, None where it is ambiguous.  Built from
#: :func:`kinds.infer_kind` once so the per-line path is a dict look-up.
KIND_BY_LENGTH: dict[int, str | None] = {
    n: kinds.infer_kind("0" * n) for n in set(kinds.HEX_LENGTHS.values())
}


def decode_line(raw: bytes) -> str:
    """UTF-8 where it decodes, latin-1 otherwise (latin-1 maps every byte, so this never fails)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def decode_all(data: bytes) -> str:
    """A whole file as text, for formats (JSON) that cannot be read line by line."""
    if data.startswith(UTF16_BOMS):
        return data.decode("utf-16", errors="replace")
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    return decode_line(data)


def _latin1_bytes(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: undecodable bytes become their latin-1 characters."""
    assert isinstance(error, UnicodeDecodeError)
    return error.object[error.start : error.end].decode("latin-1"), error.end


LATIN1_FALLBACK = "vakta-latin1-fallback"
codecs.register_error(LATIN1_FALLBACK, _latin1_bytes)


def text_chunks(stream: IO[bytes], size: int = 1 << 16) -> Iterator[str]:
    """``stream`` decoded in pieces of about ``size`` bytes, for formats that need no lines (XML).

    Decoded as :func:`text_lines` does (UTF-8, UTF-16 after its BOM, stray
    bytes as latin-1), but never holding more than a piece: a document on
    one line may be gigabytes long.  A UTF-8 BOM is kept; XML parsers skip it.
    """
    first = stream.read(size)
    encoding = "utf-16" if first.startswith(UTF16_BOMS) else "utf-8"
    decoder = codecs.getincrementaldecoder(encoding)(
        errors="replace" if encoding == "utf-16" else LATIN1_FALLBACK
    )
    chunk = first
    while chunk:
        yield decoder.decode(chunk)
        chunk = stream.read(size)
    yield decoder.decode(b"", final=True)


def head_text(head: bytes) -> str:
    """The sniffing window as text; never fails, whatever the bytes (the window may cut a character)."""
    if head.startswith(UTF16_BOMS):
        return head.decode("utf-16", errors="ignore")
    if head.startswith(UTF8_BOM):
        head = head[len(UTF8_BOM) :]
    return head.decode("utf-8", errors="replace")


def first_content_line(text: str) -> str:
    """The first line that is neither blank nor a ``#`` comment, stripped ('' if none)."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped
    return ""


def text_lines(stream: IO[bytes]) -> Iterator[str]:
    """The decoded lines of ``stream``, line endings kept, BOM removed.

    Lines are decoded one by one so that a single badly encoded line costs only
    that line.  A UTF-16 file (BOM first) is decoded as a whole instead, since
    its newlines are not single bytes.
    """
    lines = iter(stream)
    first = next(lines, b"")
    if first.startswith(UTF16_BOMS):
        yield from (first + stream.read()).decode("utf-16", errors="replace").splitlines(keepends=True)
        return
    if first.startswith(UTF8_BOM):
        first = first[len(UTF8_BOM) :]
    if first:
        yield decode_line(first)
    for raw in lines:
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            yield raw.decode("latin-1")


def split_preamble(lines: Iterator[str]) -> tuple[list[str], Iterator[str]]:
    """The lines up to and including the first content line, and an iterator over all lines.

    Formats that decide how to read a file from its first content line (a CSV
    header) look at ``preamble[-1]`` and still read every line from the start,
    so line numbers stay true.
    """
    preamble: list[str] = []
    for line in lines:
        preamble.append(line)
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
    return preamble, itertools.chain(preamble, lines)


def kind_issue(kind: str | None) -> ParseIssue | None:
    """A single issue for an unknown ``--kind``, so a typo is reported once and not on every line."""
    if kind is None or kind in kinds.HEX_LENGTHS:
        return None
    return ParseIssue(0, f"unknown hash kind {kind!r} (known: {', '.join(kinds.HEX_LENGTHS)})")


def unknown_length(value: str) -> str:
    """Why a value of unstated kind cannot be used: its length names no kind, or two."""
    if KIND_BY_LENGTH.get(len(value), "") is None:
        return (
            AMBIGUOUS_64
            if len(value) == 64
            else f"{len(value)} hex characters fit several kinds: give --kind"
        )
    return f"not a hash: {len(value)} characters (MD5 has 32, SHA-1 40, SHA-256 and PDQ 64)"


def bare_hash(value: str, kind: str | None) -> tuple[str, str] | str:
    """``(kind, normalised value)`` for a hash of unstated kind, or the reason it is unusable."""
    if kind is None:
        kind = KIND_BY_LENGTH.get(len(value))
        if kind is None:
            return unknown_length(value)
    try:
        return kind, kinds.normalize(kind, value)
    except kinds.InvalidHashError as exc:
        return str(exc)


def squash(name: str) -> str:
    """A column or hash name reduced for lenient matching: ``"PDQ_Hash"``, ``"pdq-hash"`` -> ``"pdqhash"``."""
    return name.strip().lower().replace("_", "").replace("-", "").replace(" ", "")


def csv_rows(lines: Iterable[str], delimiter: str) -> Iterator[tuple[int, list[str]] | ParseIssue]:
    """``(line where the row starts, cells)`` for each CSV row with content; malformed rows as issues.

    Blank rows, rows of empty cells and rows whose first cell starts with ``#``
    are skipped.  The csv module raises on e.g. an over-long field; the reader
    recovers at the next line, so the error becomes an issue and reading goes on.
    """
    reader = csv.reader(lines, delimiter=delimiter)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield ParseIssue(reader.line_num, f"unreadable CSV: {exc}")
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not row or row[0].lstrip().startswith("#") or not any(cell.strip() for cell in row):
            continue
        yield line, row


def cell(row: list[str], index: int | None) -> str:
    """The stripped cell at ``index``; '' where the column is absent or the row is short."""
    if index is None or index >= len(row):
        return ""
    return row[index].strip()
