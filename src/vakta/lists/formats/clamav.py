"""ClamAV hash signatures: ``.hdb`` (MD5) and ``.hsb`` (SHA-1, SHA-256) databases.

One signature per line, ``HashString:FileSize:MalwareName``, optionally
followed by ``:MinFL[:MaxFL]`` (the engine functionality levels the signature
needs).  ClamAV tells the hash kind by its length (32, 40 or 64 hex
characters; 64 is always SHA-256 here, never PDQ), and since 0.98 accepts
``*`` as the size when it is unknown.  The signature name becomes the entry
id.  ClamAV's false-positive databases (``.fp``, ``.sfp``) have the same lines
and import as known-good lists (``--ignore``).

PE-section signatures (``.mdb``/``.msb``: ``Size:Hash:Name``) hash one section
of an executable, never a whole file, so they cannot match and are reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import IO

from vakta.lists.formats._common import first_content_line, head_text, text_lines
from vakta.lists.model import ListRecord, ParseIssue
from vakta.signals import kinds

#: Hex length -> kind, as ClamAV reads it.
KIND_BY_LENGTH: dict[int, str] = {32: "md5", 40: "sha1", 64: "sha256"}
#: The functionality level ClamAV requires of a signature whose size is ``*`` (ClamAV 0.98).
WILDCARD_FLEVEL = 73
_LINE = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}):(?:\d+|\*):[^:]+(?::\d*){0,2}$")
#: Characters a signature name cannot hold: the field separator and line breaks.
_UNSAFE = re.compile(r"[:\s]+")


def parse_signature(line: int, text: str) -> ListRecord | ParseIssue:
    """One ``hash:size:name[:flevels]`` line as a record, or why it is unusable."""
    fields = text.split(":")
    if len(fields) < 3:
        return ParseIssue(line, f"a hash signature has 3 fields (hash:size:name), got {len(fields)}")
    value, size, name = (f.strip() for f in fields[:3])
    if value.isdigit() and len(value) not in KIND_BY_LENGTH:
        return ParseIssue(line, "a PE section signature (size first): it hashes part of a file, never a file")
    kind = KIND_BY_LENGTH.get(len(value))
    if kind is None:
        return ParseIssue(line, f"not a hash: {len(value)} characters (MD5 has 32, SHA-1 40, SHA-256 64)")
    if size != "*" and not size.isdigit():
        return ParseIssue(line, "the size must be a whole number of bytes or *")
    try:
        normal = kinds.normalize(kind, value)
    except kinds.InvalidHashError as exc:
        return ParseIssue(line, str(exc))
    return ListRecord({kind: normal}, name or None, None, line)


def signature_name(record: ListRecord, list_name: str, number: int) -> str:
    """The record's entry id as a ClamAV name (no ``:`` or spaces), or ``<list>.<n>`` without one."""
    name = record.entry_id or f"{list_name}.{number}"
    return _UNSAFE.sub("_", name.strip()) or f"vakta.{number}"


class ClamavFormat:
    """ClamAV ``.hdb``/``.hsb`` hash signatures (``hash:size:name``)."""

    name: str = "clamav"

    def sniff(self, head: bytes, filename: str) -> bool:
        """True when the first content line is a ``hash:size:name`` signature."""
        return bool(_LINE.match(first_content_line(head_text(head))))

    def parse(self, stream: IO[bytes], kind: str | None) -> Iterator[ListRecord | ParseIssue]:
        """Yield one record per signature; blank and ``#`` lines are skipped.

        ``kind`` is not needed: ClamAV's hash lengths are unambiguous.
        """
        for lineno, line in enumerate(text_lines(stream), 1):
            text = line.strip()
            if text and text[0] != "#":
                yield parse_signature(lineno, text)

    def export(self, records: Iterable[ListRecord], out: IO[str], list_name: str) -> None:
        """Write ``hash:*:name:73`` for every MD5, SHA-1 and SHA-256; PDQ has no ClamAV form and is left out.

        Vakta's store keeps no file sizes, so every size is ``*``, which ClamAV
        accepts from 0.98 on and only with functionality level 73 or higher
        (hence the ``:73``; older engines skip these lines).  MD5 lines are what
        an ``.hdb`` holds, SHA lines what an ``.hsb`` holds; ClamAV 0.98 and later
        read all three from either, so one file serves (name it ``.hsb``).  No
        comment is written: ClamAV databases have no comment syntax.
        """
        for number, record in enumerate(records, 1):
            name = signature_name(record, list_name, number)
            for kind in KIND_BY_LENGTH.values():
                if kind in record.hashes:
                    out.write(f"{record.hashes[kind]}:*:{name}:{WILDCARD_FLEVEL}\n")


FORMAT = ClamavFormat()
