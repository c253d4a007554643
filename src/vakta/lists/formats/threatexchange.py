"""Signals as python-threatexchange prints and stores them.

Covers ``threatexchange dataset -P`` output (``<signal_type> <signal>``, then
optionally the quoted collaboration name and the opinion, e.g. ``pdq <hex>
'Collab' POSITIVE_CLASS tag1,tag2``; older releases put the collaboration
first), its ``--csv`` variant (header ``signal_type,signal_str,collab,...``),
and the local-file collaboration format (``<signal_type> <signal>`` only).
With ``-s`` the signal type is left out; such lines need ``--kind``.

Signals whose opinion is ``NEGATIVE_CLASS`` are false positives or test data
by ThreatExchange's own definition; importing them would produce false
matches, so they are skipped and reported.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import IO

from vakta.lists.formats._common import (
    cell,
    csv_rows,
    first_content_line,
    head_text,
    kind_issue,
    squash,
    text_lines,
)
from vakta.lists.model import ListRecord, ParseIssue
from vakta.signals import kinds

#: ThreatExchange signal type -> vakta hash kind.  ``video_md5`` is the name
#: threatexchange gives its (file) MD5 signal; ``url_md5`` hashes a URL, not a file.
SIGNAL_KINDS: dict[str, str] = {
    "pdq": "pdq",
    "video_md5": "md5",
    "photo_md5": "md5",
    "md5": "md5",
    "video_sha256": "sha256",
    "sha256": "sha256",
    "sha1": "sha1",
}
#: Signal types threatexchange ships that hold no file hash vakta can match.
OTHER_SIGNALS = frozenset({"url", "url_md5", "raw_text", "trend_query"})
#: The name each kind is exported under: the ones threatexchange itself reads
#: (it has no SHA-1 signal; ``sha1`` lines re-import here but not there).
EXPORT_NAMES: dict[str, str] = {"pdq": "pdq", "md5": "video_md5", "sha256": "video_sha256", "sha1": "sha1"}
OPINIONS = frozenset({"NEGATIVE_CLASS", "INVESTIGATION_SEED", "POSITIVE_CLASS"})
QUOTES = "'\""
HEX = frozenset("0123456789abcdefABCDEF")


def split_fields(text: str) -> list[str] | None:
    """Whitespace-separated fields, a quoted (``repr``-ed) name kept as one field; None if unterminated."""
    if "'" not in text and '"' not in text:
        return text.split()
    fields: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        j = i + 1
        if text[i] in QUOTES:
            while j < n and text[j] != text[i]:
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                return None
            j += 1
        else:
            while j < n and not text[j].isspace():
                j += 1
        fields.append(text[i:j])
        i = j
    return fields


def signal_record(
    line: int, signal_type: str | None, value: str, opinion: str, kind: str | None
) -> ListRecord | ParseIssue:
    """One signal as a record, or why it cannot be used."""
    if signal_type is not None:
        found = SIGNAL_KINDS.get(signal_type.lower())
        if found is None:
            return ParseIssue(line, f"unsupported signal type {signal_type}")
        kind = found
    elif kind is None:
        return ParseIssue(line, "no signal type on the line: give --kind")
    if not value:
        return ParseIssue(line, f"{signal_type} signal has no value")
    if opinion == "NEGATIVE_CLASS":
        return ParseIssue(line, "skipped: opinion NEGATIVE_CLASS (false positive or test data)")
    try:
        normal = kinds.normalize(kind, value)
    except kinds.InvalidHashError as exc:
        return ParseIssue(line, str(exc))
    return ListRecord(hashes={kind: normal}, category=opinion or None, line=line)


def parse_print_line(line: int, text: str, kind: str | None) -> ListRecord | ParseIssue | None:
    """A ``dataset -P`` / local-file line; None for blank and comment lines."""
    fields = split_fields(text)
    if fields is None:
        return ParseIssue(line, "unterminated quoted collaboration name")
    fields = [f for f in fields if f[0] not in QUOTES]  # collaboration names
    if not fields or fields[0].startswith("#"):
        return None
    signal_type: str | None = fields[0]
    rest = fields[1:]
    if HEX.issuperset(fields[0]):  # ``-s TYPE`` output: the line starts with the signal itself
        signal_type, rest = None, fields
    value = rest[0] if rest else ""
    opinion = rest[1] if len(rest) > 1 and rest[1] in OPINIONS else ""
    return signal_record(line, signal_type, value, opinion, kind)


def is_csv_header(text: str) -> bool:
    """True for the header ``dataset -P --csv`` writes."""
    names = {squash(name) for name in text.split(",")}
    return {"signaltype", "signalstr"} <= names


class ThreatExchangeFormat:
    """python-threatexchange ``dataset -P`` output, its ``--csv`` form, and local-file collabs."""

    name: str = "threatexchange"

    def sniff(self, head: bytes, filename: str) -> bool:
        """True when the first content line is a threatexchange signal line or CSV header."""
        line = first_content_line(head_text(head))
        if is_csv_header(line):
            return True
        fields = [f for f in split_fields(line) or [] if f[0] not in QUOTES]
        if len(fields) < 2:
            return False
        signal_type = fields[0].lower()
        if signal_type in SIGNAL_KINDS:
            return HEX.issuperset(fields[1])
        return signal_type in OTHER_SIGNALS

    def parse(self, stream: IO[bytes], kind: str | None) -> Iterator[ListRecord | ParseIssue]:
        """Yield one record per usable signal; other signal types are reported and skipped."""
        issue = kind_issue(kind)
        if issue is not None:
            yield issue
            return
        lines = text_lines(stream)
        preamble: list[str] = []
        for text in lines:
            preamble.append(text)
            if text.strip() and not text.lstrip().startswith("#"):
                break
        all_lines = itertools.chain(preamble, lines)
        if preamble and is_csv_header(preamble[-1].strip()):
            yield from self._parse_csv(all_lines, kind)
            return
        for lineno, text in enumerate(all_lines, 1):
            stripped = text.strip()
            if stripped:
                item = parse_print_line(lineno, stripped, kind)
                if item is not None:
                    yield item

    @staticmethod
    def _parse_csv(lines: Iterable[str], kind: str | None) -> Iterator[ListRecord | ParseIssue]:
        columns: dict[str, int] | None = None
        for item in csv_rows(lines, ","):
            if isinstance(item, ParseIssue):
                yield item
            elif columns is None:
                columns = {squash(name): i for i, name in reversed(list(enumerate(item[1])))}
            else:
                line, row = item
                signal_type = cell(row, columns.get("signaltype")) or None
                opinion = cell(row, columns.get("category"))
                value = cell(row, columns.get("signalstr"))
                yield signal_record(line, signal_type, value, opinion, kind)

    def export(self, records: Iterable[ListRecord], out: IO[str], list_name: str) -> None:
        """Write ``<signal_type> <hash>`` lines, the local-file format threatexchange reads back.

        No header or comment: threatexchange's file reader would take it for a signal.
        """
        for record in records:
            for kind, value in record.hashes.items():
                out.write(f"{EXPORT_NAMES.get(kind, kind)} {value}\n")


FORMAT = ThreatExchangeFormat()
