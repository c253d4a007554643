"""Windows Explorer's thumbnail caches (``thumbcache_*.db``): every cached thumbnail as a member.

Explorer keeps a thumbnail of every picture and video it has shown, in
``%LOCALAPPDATA%\\Microsoft\\Windows\\Explorer\\thumbcache_<size>.db``, and keeps
it after the file itself is deleted, moved to a USB stick or opened from a
share: a thumbnail of known material is evidence that it was on (or seen from)
the machine. The thumbnails are JPEG, PNG or BMP pictures of up to the cache's
size (16 to 2560 pixels); PDQ matches them against the full-size originals'
hashes as it matches any resized copy.

Layout (Joachim Metz's "Windows Explorer Thumbnail Cache database format"):
a 24-byte file header (``CMMM``, format version, cache type, and the offset of
the first entry), then entries, each ``CMMM``, its size, an 8-byte entry hash,
the sizes of its identifier string, padding and data, checksums, the
identifier (UTF-16, the entry hash in hex), padding, and the picture. Where the
header fields sit depends on the version: Vista (20), 7 (21), 8 to 11 (26+).

Members are named by the identifier and the picture's type (``0a1b2c3d4e5f6071.jpg``).
Empty slots are skipped. A damaged entry is a member with an error and the
reading goes on at the next ``CMMM`` signature, as it does through slack
between entries, so thumbnails left in unused parts of the file are found too.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from vakta.containers import Member, read_at, slice_opener
from vakta.signals.sniff import THUMBCACHE_TYPE, picture_extension

_SIGNATURE = b"CMMM"
_FILE_HEADER = 24
#: Bytes read at once while looking for the next entry signature.
_SCAN_CHUNK = 1 << 20
#: Damaged entries reported one by one before the rest of the file is given up (garbage that
#: happens to hold "CMMM" every few bytes would otherwise be millions of error members).
MAX_DAMAGED_IN_A_ROW = 100


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where one format version keeps the first entry's offset and an entry's sizes."""

    first_entry_at: int
    #: Offset of the identifier size in an entry; the padding and data sizes follow it.
    sizes_at: int
    #: Bytes before an entry's identifier string.
    header: int


_VISTA = _Layout(first_entry_at=12, sizes_at=24, header=56)
_WINDOWS_7 = _Layout(first_entry_at=16, sizes_at=16, header=48)
#: Windows 8 to 11 add the thumbnail's width and height to each entry's header.
_WINDOWS_8 = _Layout(first_entry_at=16, sizes_at=16, header=56)


def _layout(version: int) -> _Layout:
    return {20: _VISTA, 21: _WINDOWS_7}.get(version, _WINDOWS_8)


@dataclass(frozen=True, slots=True)
class _Entry:
    """One parsed entry: the next entry's offset, and its picture's span (empty slot: size 0)."""

    end: int
    name: str
    data_start: int
    data_size: int


class _Damaged(ValueError):
    """An entry whose sizes do not fit together."""


class ThumbcacheReader:
    """Reads ``thumbcache_*.db`` (and ``iconcache_*.db``) files of Windows Vista to 11."""

    name = "thumbcache"

    def accepts(self, content_type: str) -> bool:
        return content_type == THUMBCACHE_TYPE

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        end = stream.seek(0, 2)
        head = read_at(stream, 0, _FILE_HEADER)
        if len(head) < _FILE_HEADER or head[:4] != _SIGNATURE:
            raise ValueError("not a thumbnail cache: no CMMM file header")
        layout = _layout(int.from_bytes(head[4:8], "little"))
        pos = int.from_bytes(head[layout.first_entry_at : layout.first_entry_at + 4], "little")
        if not _FILE_HEADER <= pos < end or read_at(stream, pos, 4) != _SIGNATURE:
            pos = _next_signature(stream, _FILE_HEADER, end)
        damaged = 0
        while pos < end:
            try:
                entry = _entry(stream, pos, end, layout)
            except _Damaged as exc:
                damaged += 1
                if damaged > MAX_DAMAGED_IN_A_ROW:
                    raise ValueError(
                        f"more than {MAX_DAMAGED_IN_A_ROW} damaged entries in a row from byte {pos:,}: "
                        "the rest is not read"
                    ) from None
                yield Member(f"entry at byte {pos:,}", error=f"damaged thumbnail cache entry: {exc}")
                pos = _next_signature(stream, pos + 4, end)
                continue
            damaged = 0
            if entry.data_size:
                span = slice_opener(stream, entry.data_start, entry.data_start + entry.data_size)
                yield Member(entry.name, open=span, size=entry.data_size)
            pos = (
                entry.end
                if read_at(stream, entry.end, 4) == _SIGNATURE
                else _next_signature(stream, entry.end, end)
            )


def _entry(stream: BinaryIO, pos: int, end: int, layout: _Layout) -> _Entry:
    header = read_at(stream, pos, layout.header)
    if len(header) < layout.header:
        raise _Damaged("the file ends inside its header (truncated)")
    size = int.from_bytes(header[4:8], "little")
    id_size, padding, data_size = struct.unpack_from("<III", header, layout.sizes_at)
    data_start = pos + layout.header + id_size + padding
    if size < layout.header or data_start + data_size > pos + size:
        raise _Damaged(
            f"its parts ({id_size:,} + {padding:,} + {data_size:,} bytes) do not fit its size ({size:,})"
        )
    if pos + size > end:
        raise _Damaged(f"its {size:,} bytes run past the end of the file (truncated)")
    identifier = read_at(stream, pos + layout.header, min(id_size, 512))
    name = identifier.decode("utf-16-le", "replace").rstrip("\0") or header[8:16][::-1].hex()
    kind = read_at(stream, data_start, 8) if data_size else b""
    ext = picture_extension(kind)
    return _Entry(pos + size, name + ext, data_start, data_size)


def _next_signature(stream: BinaryIO, start: int, end: int) -> int:
    """The offset of the next ``CMMM`` at or after ``start`` (``end`` if there is none)."""
    pos = start
    while pos < end:
        chunk = read_at(stream, pos, _SCAN_CHUNK + 3)
        found = chunk.find(_SIGNATURE)
        if found >= 0:
            return pos + found
        pos += _SCAN_CHUNK
    return end


READER = ThumbcacheReader()
