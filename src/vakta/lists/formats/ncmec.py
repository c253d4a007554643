"""NCMEC hash-sharing XML: the ``queryResult`` documents of NCMEC's hash sharing API (v2).

What the API returns, and what exports of it keep (namespace
``https://hashsharing.ncmec.org/hashsharing/v2``; prefixes are ignored)::

    <queryResult>
      <images count="2" maxTimestamp="2017-10-24T15:10:00Z">
        <image>
          <member id="42">Member name</member> <timestamp>...</timestamp> <id>image1</id>
          <classification>A1</classification>
          <fingerprints> <md5>...</md5> <sha1>...</sha1> <pdna>...</pdna> </fingerprints>
          <feedback>...</feedback>
        </image>
        <deletedImage> <member id="43">...</member> <id>image4</id> <timestamp>...</timestamp> </deletedImage>
      </images>
      <videos> <video>...</video> <deletedVideo>...</deletedVideo> </videos>
      <paging> <next>...</next> </paging>
    </queryResult>

An entry is known by its ``id`` (NCMEC serves entries as ``/v2/entries/{id}``),
which becomes the entry id; ``classification`` (A1, A2, B1, B2) the category.
Fingerprints Vakta matches on are ``md5``, ``sha1``, ``sha256`` and ``pdq``;
others (``pdna`` = PhotoDNA, ``tmk-pdqf``, ``videntifier``) are ignored.  A
deleted entry usually carries its id alone, so it becomes a removal record:
the import withdraws every hash of that id from the list.

Exports run to millions of entries, so the file is parsed as a stream with
the standard library's expat, in pieces of 64 KiB whatever the line
lengths (no tree is built, and expat gives the line numbers issues need).  XML from outside is hostile until proven otherwise:
any entity declaration stops the parse, which makes entity expansion attacks
(billion laughs, quadratic blowup) and external entities impossible whatever
the expat version; expat never fetches a DTD.  No new dependency is needed
for that (defusedxml does the same by the same means).  Text is decoded as
every list format decodes (UTF-8, BOM, stray bytes as latin-1), then fed to
expat as text, so a stray latin-1 byte in a member name costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO
from xml.parsers import expat
from xml.sax.saxutils import escape, quoteattr

from vakta.lists.formats._common import head_text, text_chunks
from vakta.lists.model import ListRecord, ParseIssue
from vakta.signals import kinds

NAMESPACE = "https://hashsharing.ncmec.org/hashsharing/v2"
#: Entry element (lower case) -> whether it deletes.
ENTRY_TAGS: dict[str, bool] = {"image": False, "video": False, "deletedimage": True, "deletedvideo": True}
#: Fingerprint element (lower case) -> Vakta hash kind.
FINGERPRINT_KINDS: dict[str, str] = {"md5": "md5", "sha1": "sha1", "sha256": "sha256", "pdq": "pdq"}
#: The longest text kept from one element; anything longer is no hash and no id.
MAX_TEXT = 1024
_SNIFF = re.compile(r"<(?:[\w.-]+:)?(?:queryResult|images|videos)[\s>/]")


class EntityRefused(Exception):
    """An entity declaration in the document: refused, so nothing can expand."""


@dataclass
class Entry:
    """One ``image``/``video``/``deleted*`` element as read so far."""

    tag: str
    line: int
    depth: int
    deleted: bool
    entry_id: str | None = None
    classification: str | None = None
    #: (fingerprint element, text, line) in document order.
    fingerprints: list[tuple[str, str, int]] = field(default_factory=list)


def local_name(name: str) -> str:
    """An element name without its namespace prefix."""
    return name.rpartition(":")[2]


def entry_records(entry: Entry) -> Iterator[ListRecord | ParseIssue]:
    """An entry as a record (a removal for a deleted one), with an issue per unusable fingerprint."""
    where = f"{entry.tag} {entry.entry_id}" if entry.entry_id else entry.tag
    hashes: dict[str, str] = {}
    bad = 0
    for name, text, line in entry.fingerprints:
        kind = FINGERPRINT_KINDS.get(name.lower())
        if kind is None:
            continue
        try:
            hashes.setdefault(kind, kinds.normalize(kind, text))
        except kinds.InvalidHashError as exc:
            bad += 1
            yield ParseIssue(line, f"{where}: {exc}")
    if entry.deleted:
        if entry.entry_id is None and not hashes:
            yield ParseIssue(entry.line, f"{where} names no id and no fingerprint: nothing to remove")
        else:
            yield ListRecord(hashes, entry.entry_id, None, entry.line, removed=True)
    elif hashes:
        yield ListRecord(hashes, entry.entry_id, entry.classification, entry.line)
    elif not bad:
        yield ParseIssue(entry.line, f"{where}: no usable fingerprint (md5, sha1, sha256, pdq)")


class Reader:
    """Expat handlers that turn entry elements into records as they close."""

    def __init__(self) -> None:
        self.parser = expat.ParserCreate()
        self.parser.EntityDeclHandler = self._refuse_entity
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.parser.CharacterDataHandler = self._text
        self.out: list[ListRecord | ParseIssue] = []
        self.entries = 0
        self._stack: list[str] = []
        self._entry: Entry | None = None
        #: Text of the element being kept, and that element's depth.
        self._capture: list[str] | None = None
        self._capture_depth = -1
        self._captured = 0

    def _refuse_entity(self, *_: object) -> None:
        raise EntityRefused

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        tag = local_name(name)
        depth = len(self._stack)
        entry = self._entry
        if entry is None and tag.lower() in ENTRY_TAGS:
            self._entry = Entry(tag, self.parser.CurrentLineNumber, depth, ENTRY_TAGS[tag.lower()])
        elif entry is not None and self._capture is None and self._wanted(entry, tag, depth):
            self._capture, self._capture_depth, self._captured = [], depth, 0
        self._stack.append(tag)

    def _wanted(self, entry: Entry, tag: str, depth: int) -> bool:
        """Whether an element inside an entry holds text the record needs (id, classification, a fingerprint)."""
        if depth == entry.depth + 1:
            return tag.lower() in ("id", "classification")
        return depth == entry.depth + 2 and self._stack[-1].lower() == "fingerprints"

    def _text(self, data: str) -> None:
        if self._capture is not None and self._captured <= MAX_TEXT:
            self._capture.append(data)
            self._captured += len(data)

    def _end(self, name: str) -> None:
        tag = self._stack.pop()
        entry = self._entry
        if entry is None:
            return
        if self._capture is not None and len(self._stack) == self._capture_depth:
            self._keep(entry, tag, "".join(self._capture).strip())
            self._capture = None
        if len(self._stack) == entry.depth:
            self.entries += 1
            self.out.extend(entry_records(entry))
            self._entry = None

    def _keep(self, entry: Entry, tag: str, text: str) -> None:
        """File a captured text where the record wants it: a fingerprint, the id or the classification."""
        if len(self._stack) == entry.depth + 2:
            entry.fingerprints.append((tag, text, self.parser.CurrentLineNumber))
        elif tag.lower() == "id":
            entry.entry_id = text[:MAX_TEXT] or None
        else:
            entry.classification = text[:MAX_TEXT] or None

    def feed(self, text: str, final: bool) -> ParseIssue | None:
        """Parse the next piece of the document; the reason parsing must stop, if it must."""
        try:
            self.parser.Parse(text, final)
        except EntityRefused:
            return ParseIssue(
                self.parser.CurrentLineNumber,
                "entity declarations are refused (they could expand without bound)",
            )
        except expat.ExpatError as exc:
            return ParseIssue(exc.lineno, f"not well-formed XML: {expat.errors.messages[exc.code]}")
        if final and self.entries == 0:
            return ParseIssue(1, "no NCMEC entries (image, video, deletedImage, deletedVideo elements)")
        return None

    def drain(self) -> list[ListRecord | ParseIssue]:
        """The records and issues of the entries closed since the last call."""
        out, self.out = self.out, []
        return out


class NcmecFormat:
    """NCMEC hash-sharing API XML (``queryResult``): images, videos and their deletions."""

    name: str = "ncmec"

    def sniff(self, head: bytes, filename: str) -> bool:
        """True for XML naming the hash-sharing namespace or a ``queryResult``/``images``/``videos`` element."""
        text = head_text(head).lstrip()[:8192]
        return text.startswith("<") and ("hashsharing" in text or bool(_SNIFF.search(text)))

    def parse(self, stream: IO[bytes], kind: str | None) -> Iterator[ListRecord | ParseIssue]:
        """Yield records as their entries close; malformed XML ends the file with one issue."""
        reader = Reader()
        for piece in text_chunks(stream):
            stop = reader.feed(piece, False)
            yield from reader.drain()
            if stop is not None:
                yield stop
                return
        stop = reader.feed("", True)
        yield from reader.drain()
        if stop is not None:
            yield stop

    def export(self, records: Iterable[ListRecord], out: IO[str], list_name: str) -> None:
        """Write a ``queryResult`` with one ``image`` per record that has an md5, sha1, sha256 or pdq.

        Vakta keeps no media type, no NCMEC member and no timestamps for an
        entry, so every entry is an ``image`` of member 0 (standing for this
        export, named after the list) stamped with the export time, and the
        ``count`` attribute, unknown until the end of a streamed export, is
        left out.  An entry without an id gets ``<list>-<n>``.  Known videos
        (vPDQ frames only) have no NCMEC fingerprint and are not written.
        """
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        member = f'<member id="0">{escape(" ".join(list_name.split()))}</member>'
        out.write('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n')
        out.write(f"<queryResult xmlns={quoteattr(NAMESPACE)}>\n")
        out.write(f"  <images maxTimestamp={quoteattr(stamp)}>\n")
        for number, record in enumerate(records, 1):
            prints = [(k, record.hashes[k]) for k in FINGERPRINT_KINDS.values() if k in record.hashes]
            if not prints:
                continue
            entry_id = record.entry_id or f"{list_name}-{number}"
            out.write(f"    <image>\n      {member}\n      <timestamp>{stamp}</timestamp>\n")
            out.write(f"      <id>{escape(entry_id)}</id>\n")
            if record.category is not None:
                out.write(f"      <classification>{escape(record.category)}</classification>\n")
            out.write("      <fingerprints>")
            out.write("".join(f"<{k}>{v}</{k}>" for k, v in prints))
            out.write("</fingerprints>\n    </image>\n")
        out.write("  </images>\n</queryResult>\n")


FORMAT = NcmecFormat()
