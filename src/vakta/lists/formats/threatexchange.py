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

from collections.abc import Iterable, Iterator
from typing import IO

from vakta.lists.formats._common import (
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
UNTERMINATED = "unterminated quoted collaboration name"
HEX = frozenset("0123456789abcdefABCDEF")


def closing_quote(text: str) -> int:
    """Index of the quote closing the one ``text`` starts with, skipping backslash escapes; -1 if none."""
    end = text.find(text[0], 1)
    while end > 0:
        backslashes = len(text[:end]) - len(text[:end].rstrip("\\"))
        if backslashes % 2 == 0:
            return end
        end = text.find(text[0], end + 1)
    return -1


def skip_collab(text: str) -> str | None:
    """``text`` after a leading quoted collaboration name (if any); None if the quote is unterminated."""
    if not text or text[0] not in QUOTES:
        return text
    end = closing_quote(text)
    return None if end < 0 else text[end + 1 :].lstrip()


def split_signal(text: str) -> tuple[str | None, str, str] | str:
    """``(signal type, signal, rest of line)`` of a print line, or why it has none.

    Only the first fields are split off: the rest is free text (raw_text
    signals, collaboration names) that need not be tokenised to find a hash.
    The signal type is None where the line starts with the signal itself
    (``dataset -P -s TYPE`` leaves the type out).
    """
    rest = skip_collab(text)
    if rest is None:
        return UNTERMINATED
    if not rest:
        return "no signal after the collaboration name"
    first, *tail = rest.split(None, 1)
    if HEX.issuperset(first):
        return None, first, tail[0] if tail else ""
    value, *tail = tail[0].split(None, 1) if tail else [""]
    if value[:1] in QUOTES:  # a collaboration name where the signal should be
        return first, "", f"{value} {tail[0]}" if tail else value
    return first, value, tail[0] if tail else ""


def opinion_of(rest: str) -> str | None:
    """The opinion category printed after the signal ('' if none); None if a quote is unterminated."""
    after = skip_collab(rest)
    if after is None:
        return None
    first = after.split(None, 1)[:1]
    return first[0] if first and first[0] in OPINIONS else ""


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


def parse_print_line(line: int, text: str, kind: str | None) -> ListRecord | ParseIssue:
    """A ``dataset -P`` or local-file line (stripped, not blank) as a record or an issue."""
    fields = split_signal(text)
    if isinstance(fields, str):
        return ParseIssue(line, fields)
    signal_type, value, rest = fields
    if signal_type is not None and signal_type.lower() not in SIGNAL_KINDS:
        return ParseIssue(line, f"unsupported signal type {signal_type}")
    opinion = opinion_of(rest)
    if opinion is None:
        return ParseIssue(line, UNTERMINATED)
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
        fields = split_signal(line) if line else ""
        if isinstance(fields, str) or fields[0] is None or not fields[1]:
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
        preamble, all_lines = split_preamble(text_lines(stream))
        if preamble and is_csv_header(preamble[-1].strip()):
            yield from self._parse_csv(all_lines, kind)
            return
        for lineno, text in enumerate(all_lines, 1):
            stripped = text.strip()
            if stripped and stripped[0] != "#":
                yield parse_print_line(lineno, stripped, kind)

    @staticmethod
    def _parse_csv(lines: Iterable[str], kind: str | None) -> Iterator[ListRecord | ParseIssue]:
        """The ``dataset -P --csv`` form: signal_type, signal_str and category columns by name."""
        columns: dict[str, int] | None = None
        for item in csv_rows(lines, ","):
            if isinstance(item, ParseIssue):
                yield item
            elif columns is None:
                columns = {}
                for index, name in enumerate(item[1]):
                    columns.setdefault(squash(name), index)
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
