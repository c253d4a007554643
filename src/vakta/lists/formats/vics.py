"""VICS JSON, the OData-based format Project VIC and CAID exchange hash sets and cases in.

Two generations ship: 1.x marks the document with ``"odata.metadata":
".../1.3.xml#Media"``, 2.0 with ``"@odata.context": ".../2.0.xml/<region>/$metadata#Media"``
(or ``#Cases``).  Hash sets hold media records directly under ``value``; case
files hold cases there, each with a ``Media`` array.  Rather than trusting the
URL, every element of ``value`` is looked at: one with a ``Media`` array is a
case, anything else a media record.  A media record carries ``MD5`` and
``SHA1`` as hex, ``MediaID``, ``Category`` (0-n) and ``AlternativeHashes``
(``{"HashName": "PDQ", "HashValue": ...}``), where SHA-256 and PDQ live;
names vakta does not match on (PhotoDNA and others) are ignored.  Keys are
matched case-insensitively because hand-made files vary.

Issues name the record by its 1-based position in the file and its MediaID;
the ``line`` of issues and records is that position, since JSON records have
no line of their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from vakta.lists.formats._common import decode_all, head_text, squash
from vakta.lists.model import ListRecord, ParseIssue
from vakta.signals import kinds

EXPORT_CONTEXT = "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/Default/$metadata#Media"
SNIFF_MARKERS = ('"odata.metadata"', '"@odata.context"', '"Media"', '"MediaID"')
#: Squashed key / hash name -> kind, for direct fields and AlternativeHashes alike.
HASH_NAMES: dict[str, str] = {"md5": "md5", "sha1": "sha1", "sha256": "sha256", "pdq": "pdq"}


def lower_keys(item: dict[str, Any]) -> dict[str, Any]:
    """The same mapping with lower-case keys."""
    return {str(key).lower(): value for key, value in item.items()}


def media_items(doc: Any) -> Iterator[Any] | str:
    """Every media record in a VICS document, whatever its shape; or why there are none."""
    if isinstance(doc, dict):
        top = lower_keys(doc)
        elements = top.get("value", top.get("media"))
        if not isinstance(elements, list):
            return "no 'value' or 'Media' array at the top level"
    elif isinstance(doc, list):
        elements = doc
    else:
        return "top level is neither a JSON object nor an array"
    return _flatten_cases(elements)


def _flatten_cases(elements: list[Any]) -> Iterator[Any]:
    for element in elements:
        media = lower_keys(element).get("media") if isinstance(element, dict) else None
        if isinstance(media, list):
            yield from media
        else:
            yield element


def text_field(value: Any) -> str | None:
    """MediaID or Category as text: numbers are kept as their digits, empty as None."""
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def collect_hashes(media: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """``(kind, raw value)`` for each hash a media record names, direct fields first."""
    for key, value in media.items():
        kind = HASH_NAMES.get(squash(key))
        if kind is not None and value not in (None, ""):
            yield kind, value
    alternatives = media.get("alternativehashes")
    if not isinstance(alternatives, list):
        return
    for alt in alternatives:
        if not isinstance(alt, dict):
            continue
        alt = lower_keys(alt)
        kind = HASH_NAMES.get(squash(str(alt.get("hashname", ""))))
        value = alt.get("hashvalue")
        if kind is not None and value not in (None, ""):
            yield kind, value


def media_record(index: int, item: Any) -> Iterator[ListRecord | ParseIssue]:
    """One media record as a ListRecord, with an issue per unusable hash."""
    if not isinstance(item, dict):
        yield ParseIssue(index, f"record {index}: not a JSON object")
        return
    media = lower_keys(item)
    entry_id = text_field(media.get("mediaid"))
    where = f"record {index}" + (f" (MediaID {entry_id})" if entry_id else "")
    hashes: dict[str, str] = {}
    bad = 0
    for kind, value in collect_hashes(media):
        try:
            normal = kinds.normalize(kind, value if isinstance(value, str) else repr(value))
        except kinds.InvalidHashError as exc:
            bad += 1
            yield ParseIssue(index, f"{where}: {exc}")
            continue
        hashes.setdefault(kind, normal)
    if hashes:
        yield ListRecord(hashes, entry_id=entry_id, category=text_field(media.get("category")), line=index)
    elif not bad:
        yield ParseIssue(index, f"{where}: no usable hash (MD5, SHA1, SHA256 or PDQ)")


def as_number(text: str) -> int | str:
    """``text`` as the integer VICS expects where it is one exactly ("007" stays text, to round-trip)."""
    if text.isascii() and text.isdigit() and str(int(text)) == text:
        return int(text)
    return text


def export_media(record: ListRecord) -> dict[str, Any]:
    """A ListRecord as a VICS 2.0 media record; numeric ids and categories become numbers."""
    media: dict[str, Any] = {}
    if record.entry_id is not None:
        media["MediaID"] = as_number(record.entry_id)
    if record.category is not None:
        media["Category"] = as_number(record.category)
    if "md5" in record.hashes:
        media["MD5"] = record.hashes["md5"].upper()
    if "sha1" in record.hashes:
        media["SHA1"] = record.hashes["sha1"].upper()
    alternatives = [
        {"HashName": name, "HashValue": record.hashes[kind]}
        for kind, name in (("sha256", "SHA256"), ("pdq", "PDQ"))
        if kind in record.hashes
    ]
    if alternatives:
        media["AlternativeHashes"] = alternatives
    return media


class VicsFormat:
    """VICS JSON 1.x and 2.0, hash sets (``#Media``) and case files (``#Cases``)."""

    name: str = "vics"

    def sniff(self, head: bytes, filename: str) -> bool:
        """True for a JSON document whose opening names the OData context or VICS media fields."""
        text = head_text(head).lstrip()
        return text[:1] in ("{", "[") and any(marker in text[:4096] for marker in SNIFF_MARKERS)

    def parse(self, stream: IO[bytes], kind: str | None) -> Iterator[ListRecord | ParseIssue]:
        """Yield a record per media item; invalid JSON is one issue and no records."""
        try:
            doc = json.loads(decode_all(stream.read()))
        except json.JSONDecodeError as exc:
            yield ParseIssue(exc.lineno, f"not valid JSON: {exc.msg} (column {exc.colno})")
            return
        except RecursionError:
            yield ParseIssue(1, "not usable JSON: nested too deeply")
            return
        items = media_items(doc)
        if isinstance(items, str):
            yield ParseIssue(1, items)
            return
        for index, item in enumerate(items, 1):
            yield from media_record(index, item)

    def export(self, records: Iterable[ListRecord], out: IO[str], list_name: str) -> None:
        """Write a VICS 2.0 hash set, one media record per ListRecord, streamed record by record."""
        out.write("{\n")
        out.write(f'  "@odata.context": {json.dumps(EXPORT_CONTEXT)},\n')
        out.write('  "value": [')
        separator = "\n"
        for record in records:
            out.write(separator)
            out.write("    " + json.dumps(export_media(record)))
            separator = ",\n"
        out.write("\n  ]\n}\n")


FORMAT = VicsFormat()
