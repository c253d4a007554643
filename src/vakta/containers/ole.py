"""OLE compound files: the thumbnails of ``Thumbs.db`` and the attachments of Outlook ``.msg`` messages.

Both are OLE compound files (read with ``olefile``), told apart by their streams.

``Thumbs.db``: Explorer wrote one into each folder it showed as thumbnails
(Windows XP; later Windows in network folders). It keeps a picture's thumbnail
after the picture is deleted and travels with the folder (a copied USB stick, a
zipped directory). A ``Catalog`` stream lists each thumbnail's number, the
file's modification time and its name; each thumbnail is a stream named by its
number written backwards (``1``, ``01`` for 10, ``321`` for 123), a short
header and then the picture (JPEG). Network folders of Windows 7 and later hold
streams named ``256_<hash>`` and ``96_<hash>``, without a catalog. Members are
named ``holiday.jpg (thumbnail 7)`` from the catalog, else by their stream; a
stream without a picture signature near its start is handed on from its
header's end and fails to decode as an error on that member.

``.msg`` (MS-OXMSG, what Outlook saves and many mail exports hold): each
attachment is a storage ``__attach_version1.0_#<n>`` whose data stream
(``__substg1.0_37010102``) is the file, named by its long or short file name
(Unicode or 8-bit properties) or display name, else ``attachment <n>``. An
attached message is a storage holding a whole message: its attachments are
members too, under its subject (``Fwd: photos (message) > b.jpg``), to the
container depth limit. An attached OLE object (an embedded Office object) is
a member with an error: not opened.

Compound files of other programs (.msi, old Office files that filetype does not
name) have no members. Damage anywhere is one error on the file.
"""

from __future__ import annotations

import io
import logging
import re
import struct
from collections.abc import Iterator
from functools import partial
from typing import Any, BinaryIO

import olefile  # type: ignore[import-untyped]

from vakta.containers import Member
from vakta.signals.sniff import OLE_TYPE, PICTURE_SIGNATURES

log = logging.getLogger(__name__)

_CATALOG = "Catalog"
_NETWORK_STREAM = re.compile(r"\d+_[0-9a-fA-F]+")
#: Where a thumbnail's picture may start in its stream (the headers are 12 or 24 bytes).
_HEADER_REACH = 64
#: What olefile raises on damaged or hostile compound files (a fuzzed header gave OverflowError).
_DAMAGE = (OSError, ValueError, EOFError, struct.error, OverflowError, IndexError, KeyError)
#: Largest stream read into memory (Explorer's thumbnails are tens of kilobytes).
MAX_STREAM_BYTES = 64 << 20
#: Largest attachment read into memory (Outlook's own limit is 20-150 MB).
MAX_ATTACHMENT_BYTES = 256 << 20
_MAX_NAME_BYTES = 4096


class OleReader:
    """Reads thumbnails out of ``Thumbs.db`` and attachments out of ``.msg`` files."""

    name = "ole"

    def accepts(self, content_type: str) -> bool:
        return content_type == OLE_TYPE

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        stream.seek(0)
        try:
            ole = olefile.OleFileIO(stream)
        except _DAMAGE as exc:
            raise ValueError(f"damaged OLE compound file: {exc}") from None
        try:
            if _is(ole, [_PROPERTIES], olefile.STGTY_STREAM):
                yield from _attachments(ole, [], "", 0)
            else:
                yield from _thumbnails(ole)
        except _DAMAGE as exc:
            raise ValueError(f"damaged OLE compound file: {exc}") from None
        finally:
            ole.close()


def _thumbnails(ole: Any) -> Iterator[Member]:
    """The thumbnails of a ``Thumbs.db``; nothing for a compound file of another program."""
    streams = ["/".join(path) for path in ole.listdir(streams=True, storages=False)]
    numbered = [s for s in streams if s.isdigit() or _NETWORK_STREAM.fullmatch(s)]
    if not numbered:
        return  # a compound file of some other program
    names = _catalog(ole) if _CATALOG in streams else {}
    for stream in sorted(numbered, key=lambda s: (len(s), s)):
        label = names.get(int(stream[::-1])) if stream.isdigit() else None
        name = f"{label} (thumbnail {int(stream[::-1])})" if label else f"stream {stream}"
        size = ole.get_size(stream)
        if size > MAX_STREAM_BYTES:
            yield Member(
                name, error=f"thumbnail stream of {size:,} bytes: not read (over {MAX_STREAM_BYTES:,})"
            )
            continue
        try:
            data = ole.openstream(stream).read()
        except _DAMAGE as exc:
            yield Member(name, error=f"cannot read thumbnail stream: {exc}")
            continue
        picture = data[_picture_start(data) :]
        yield Member(name, open=partial(io.BytesIO, picture), size=len(picture))


def _picture_start(data: bytes) -> int:
    """Where the picture starts: its signature near the start, else after the header its first word sizes."""
    found = [i for i in (data.find(magic, 0, _HEADER_REACH) for magic, _ in PICTURE_SIGNATURES) if i >= 0]
    if found:
        return min(found)
    header = int.from_bytes(data[:4], "little") if len(data) >= 4 else 0
    return header if 0 < header < min(len(data), _HEADER_REACH) else 0


def _catalog(ole: Any) -> dict[int, str]:
    """Thumbnail number -> the file's name, from the ``Catalog`` stream (damage ends the list there)."""
    try:
        data = ole.openstream(_CATALOG).read()
    except _DAMAGE as exc:
        log.info("Thumbs.db catalog unreadable: %s", exc)
        return {}
    names: dict[int, str] = {}
    pos = int.from_bytes(data[:2], "little") or 16  # the header's own length
    while pos + 16 <= len(data):
        length, number = struct.unpack_from("<II", data, pos)
        if length < 18 or pos + length > len(data):
            break
        text = data[pos + 16 : pos + length].decode("utf-16-le", "replace")
        names[number] = text.split("\0", 1)[0]
        pos += length
    return names


#: The root of a message (and of each attached message) has its properties stream.
_PROPERTIES = "__properties_version1.0"
_ATTACHMENT = re.compile(r"__attach_version1\.0_#([0-9A-Fa-f]{8})")
_DATA = "__substg1.0_37010102"
#: An attached message or OLE object: a storage instead of a data stream.
_OBJECT = "__substg1.0_3701000D"
#: Attachment names, best first: long file name, file name, display name (each Unicode, then 8-bit).
_NAME_PROPERTIES = ("3707", "3704", "3001")
_SUBJECT = "0037"
#: Attached messages inside attached messages opened at most this deep (the scan's own depth limit
#: counts the .msg as one level).
MAX_MESSAGE_DEPTH = 16


def _attachments(ole: Any, storage: list[str], prefix: str, depth: int) -> Iterator[Member]:
    """The attachments of the message at ``storage`` (the root: []), names starting with ``prefix``."""
    found = sorted(
        {
            (int(m.group(1), 16), m.group(0))
            for path in ole.listdir(streams=True, storages=True)
            if len(path) > len(storage)
            and path[: len(storage)] == storage
            and (m := _ATTACHMENT.fullmatch(path[len(storage)]))
        }
    )
    for number, name in found:
        where = [*storage, name]
        label = prefix + (_text(ole, where, _NAME_PROPERTIES) or f"attachment {number}")
        if _is(ole, [*where, _DATA], olefile.STGTY_STREAM):
            yield _attached_file(ole, "/".join([*where, _DATA]), label)
        elif _is(ole, [*where, _OBJECT, _PROPERTIES], olefile.STGTY_STREAM):
            inner = [*where, _OBJECT]
            subject = _text(ole, inner, (_SUBJECT,)) or f"attachment {number}"
            if depth >= MAX_MESSAGE_DEPTH:
                yield Member(
                    f"{prefix}{subject} (message)",
                    error=f"messages nested deeper than {MAX_MESSAGE_DEPTH}: not opened",
                )
                continue
            yield from _attachments(ole, inner, f"{prefix}{subject} (message) > ", depth + 1)
        elif _is(ole, [*where, _OBJECT], olefile.STGTY_STORAGE):
            yield Member(label, error="embedded OLE object (attach method 6): not opened")
        else:
            yield Member(label, error="attachment without data (a link, or removed)")


def _is(ole: Any, path: list[str], kind: int) -> bool:
    """Whether ``path`` is an entry of that kind (a damaged directory can make a stream's name a storage)."""
    return bool(ole.get_type("/".join(path)) == kind)


def _attached_file(ole: Any, stream: str, label: str) -> Member:
    size = ole.get_size(stream)
    if size > MAX_ATTACHMENT_BYTES:
        return Member(label, error=f"attachment of {size:,} bytes: not read (over {MAX_ATTACHMENT_BYTES:,})")
    data = ole.openstream(stream).read()
    return Member(label, open=partial(io.BytesIO, data), size=len(data))


def _text(ole: Any, storage: list[str], properties: tuple[str, ...]) -> str | None:
    """The first of ``properties`` the storage has, as Unicode (``001F``) or 8-bit (``001E``) text."""
    for tag in properties:
        for kind, encoding in (("001F", "utf-16-le"), ("001E", "cp1252")):
            path = [*storage, f"__substg1.0_{tag}{kind}"]
            stream = "/".join(path)
            if _is(ole, path, olefile.STGTY_STREAM) and ole.get_size(stream) <= _MAX_NAME_BYTES:
                text = ole.openstream(stream).read().decode(encoding, "replace").split("\0", 1)[0].strip()
                if text:
                    return " ".join(text.split())
    return None


READER = OleReader()
