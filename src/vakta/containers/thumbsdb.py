"""``Thumbs.db``: the thumbnails Windows XP (and later Windows, in network folders) kept beside pictures.

Explorer wrote a ``Thumbs.db`` into each folder it showed as thumbnails; it
keeps a picture's thumbnail after the picture is deleted, and travels with the
folder (a copied USB stick, a zipped directory). It is an OLE compound file
(read with ``olefile``): a ``Catalog`` stream lists each thumbnail's number, the
file's modification time and its name; each thumbnail is a stream named by its
number written backwards (``1``, ``01`` for 10, ``321`` for 123), a short
header and then the picture (JPEG). Windows 7 and later write streams named
``256_<hash>`` and ``96_<hash>`` in network folders, without a catalog.

Members are named by the original file's name, ``Thumbs.db > holiday.jpg
(thumbnail 7)``, else by their stream. A stream without a picture signature
near its start is handed on from its header's end and fails to decode as an
error on that member. OLE files that hold none of these streams (other
programs' compound files) have no members.
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
from vakta.signals.sniff import OLE_TYPE

log = logging.getLogger(__name__)

_CATALOG = "Catalog"
_NETWORK_STREAM = re.compile(r"\d+_[0-9a-fA-F]+")
#: Where a thumbnail's picture may start in its stream (the headers are 12 or 24 bytes).
_HEADER_REACH = 64
_PICTURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM")
#: What olefile raises on damaged or hostile compound files (a fuzzed header gave OverflowError).
_DAMAGE = (OSError, ValueError, EOFError, struct.error, OverflowError, IndexError, KeyError)
#: Largest stream read into memory (Explorer's thumbnails are tens of kilobytes).
MAX_STREAM_BYTES = 64 << 20


class ThumbsDbReader:
    """Reads the thumbnails out of ``Thumbs.db`` files."""

    name = "thumbsdb"

    def accepts(self, content_type: str) -> bool:
        return content_type == OLE_TYPE

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        stream.seek(0)
        try:
            ole = olefile.OleFileIO(stream)
        except _DAMAGE as exc:
            raise ValueError(f"damaged OLE compound file: {exc}") from None
        try:
            yield from _thumbnails(ole)
        except _DAMAGE as exc:
            raise ValueError(f"damaged OLE compound file: {exc}") from None
        finally:
            ole.close()


def _thumbnails(ole: Any) -> Iterator[Member]:
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
        yield Member(name, open=partial(_opened, picture), size=len(picture))


def _opened(picture: bytes) -> BinaryIO:
    return io.BytesIO(picture)


def _picture_start(data: bytes) -> int:
    """Where the picture starts: its signature near the start, else after the header its first word sizes."""
    found = [i for i in (data.find(magic, 0, _HEADER_REACH) for magic in _PICTURES) if i >= 0]
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


READER = ThumbsDbReader()
