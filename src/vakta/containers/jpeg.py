"""The pictures a JPEG carries beside its own: the EXIF thumbnail and MPF's further pictures.

Cameras, phones and most editors store a small JPEG of the picture in the
second directory (IFD1) of the EXIF block. Some editors leave that thumbnail
as it was when the picture itself is cropped, retouched or painted over, so
it can still show what the picture showed before; forensic examiners look at
it for that reason. It is given out byte for byte as
``photo.jpg > EXIF thumbnail.jpg``.

The Multi-Picture Format (CIPA DC-007; stereo cameras, phones' large previews,
depth and HDR gain maps) appends whole further JPEGs after the first one and
lists them in an ``APP2`` index. Viewers show only the first picture, so any
other can hold something else entirely; each is given out byte for byte as
``photo.jpg > MPF picture 2.jpg`` (and on).

Each member is hashed like any picture, so PDQ finds a listed picture's
thumbnail or preview like any resized copy. Only the picture's header is read
(Pillow parses the markers up to the image data); nothing is decoded here. A
picture whose header Pillow cannot read has no members: its own decode error is
reported by the PDQ hasher.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import BinaryIO

from vakta.containers import Member, read_at, slice_opener
from vakta.signals.sniff import picture_extension

log = logging.getLogger(__name__)

THUMBNAIL = "EXIF thumbnail"
MPF_PICTURE = "MPF picture"
#: IFD1 tags (TIFF 6.0 / EXIF 2.3): where the thumbnail JPEG starts, and its length.
_OFFSET, _LENGTH = 0x0201, 0x0202
_EXIF_HEADER = b"Exif\x00\x00"
#: MP Index IFD tag (CIPA DC-007): 16 bytes per picture (attribute, size, offset, two entry numbers).
_MP_ENTRIES = 0xB002
_MP_ENTRY_BYTES = 16


@dataclass(frozen=True, slots=True)
class _MpIndex:
    """The MP index's picture list (raw, to be checked), the file offset its offsets count from, its byte order."""

    entries: object
    base: int
    order: str


@dataclass(frozen=True, slots=True)
class _Header:
    """What the JPEG's header says of its embedded pictures (raw, to be checked)."""

    exif: bytes | None
    thumbnail: tuple[object, object] | None
    mp_index: _MpIndex | None


class JpegPicturesReader:
    """Reads the EXIF thumbnail and the Multi-Picture Format pictures of JPEG files."""

    name = "jpeg"

    def accepts(self, content_type: str) -> bool:
        return content_type == "image/jpeg"

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        stream.seek(0)
        header = _read_header(stream)
        if header is None:
            return
        if header.thumbnail is not None and header.exif is not None:
            yield _thumbnail(header.exif, *header.thumbnail)
        if header.mp_index is not None:
            yield from _mpf_pictures(stream, header.mp_index)


def _read_header(stream: BinaryIO) -> _Header | None:
    """The JPEG's EXIF data (from its TIFF header on), IFD1's thumbnail place and the MP index."""
    from PIL import ExifTags, Image, JpegImagePlugin

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # decompression-bomb and corrupt-EXIF notes: not ours
            # The plain JPEG class, not Image.open: an MPO image drops the MP index's file offset.
            with JpegImagePlugin.JpegImageFile(stream) as im:
                raw, mp, mp_base = im.info.get("exif"), im.info.get("mp"), im.info.get("mpoffset")
                ifd1 = im.getexif().get_ifd(ExifTags.IFD.IFD1) if isinstance(raw, bytes) and raw else {}
                mp_index = None
                if isinstance(mp, bytes) and isinstance(mp_base, int):
                    tags = Image.Exif()
                    tags.load(mp)
                    order = "<" if mp.startswith(b"II") else ">"
                    mp_index = _MpIndex(tags.get(_MP_ENTRIES), mp_base, order)
    except Exception as exc:  # Pillow reports hostile headers in many ways
        log.debug("no embedded pictures read: %s: %s", type(exc).__name__, exc)
        return None
    exif = None
    if isinstance(raw, bytes):
        exif = raw[len(_EXIF_HEADER) :] if raw.startswith(_EXIF_HEADER) else raw
    thumbnail = (ifd1.get(_OFFSET), ifd1.get(_LENGTH)) if _OFFSET in ifd1 or _LENGTH in ifd1 else None
    return _Header(exif, thumbnail, mp_index)


def _thumbnail(tiff: bytes, offset: object, length: object) -> Member:
    if not (isinstance(offset, int) and isinstance(length, int)) or offset < 0 or length <= 0:
        return Member(THUMBNAIL, error=f"damaged EXIF thumbnail entry (offset {offset!r}, length {length!r})")
    if offset + length > len(tiff):
        return Member(
            THUMBNAIL,
            error=f"damaged EXIF thumbnail: {length:,} bytes at {offset:,} run past the "
            f"{len(tiff):,} bytes of EXIF data",
        )
    data = tiff[offset : offset + length]
    return Member(
        THUMBNAIL + (picture_extension(data) or ".bin"), open=partial(io.BytesIO, data), size=len(data)
    )


def _mpf_pictures(stream: BinaryIO, index: _MpIndex) -> Iterator[Member]:
    """Every picture of the MP index but the first (the file's own picture), read in place."""
    entries = index.entries
    if entries is None:
        return
    if not isinstance(entries, bytes) or len(entries) % _MP_ENTRY_BYTES:
        yield Member(f"{MPF_PICTURE}s", error="damaged Multi-Picture index (its picture list is not whole)")
        return
    file_size = stream.seek(0, io.SEEK_END)
    for number, (_, size, offset, _, _) in enumerate(struct.iter_unpack(index.order + "IIIHH", entries), 1):
        if number == 1:
            continue
        name = f"{MPF_PICTURE} {number}"
        start = index.base + offset
        if offset == 0 or size == 0 or start >= file_size:
            yield Member(
                name,
                error=f"damaged Multi-Picture entry: {size:,} bytes at {offset:,} from the index "
                f"(file offset {start:,}) in a file of {file_size:,} bytes",
            )
            continue
        # A size past the end is cut at it: Pillow's MPO writer (13.0) records wrong sizes from
        # the third picture on, and a truncated picture is still hashed (its decode error reported).
        end = min(start + size, file_size)
        extension = picture_extension(read_at(stream, start, 16)) or ".bin"
        yield Member(name + extension, open=slice_opener(stream, start, end), size=end - start)


READER = JpegPicturesReader()
