"""The thumbnail a JPEG carries in its EXIF data, as a container member.

Cameras, phones and most editors store a small JPEG of the picture in the
second directory (IFD1) of the EXIF block. Some editors leave that thumbnail
as it was when the picture itself is cropped, retouched or painted over, so
it can still show what the picture showed before; forensic examiners look at
it for that reason. It is given out byte for byte as
``photo.jpg > EXIF thumbnail.jpg`` and hashed like any picture, so PDQ finds
a listed picture's thumbnail like any resized copy.

Only the picture's header is read (Pillow parses the markers up to the image
data); nothing is decoded here. A picture whose header Pillow cannot read has
no members: its own decode error is reported by the PDQ hasher.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from functools import partial
from typing import BinaryIO

from vakta.containers import Member
from vakta.signals.sniff import picture_extension

log = logging.getLogger(__name__)

NAME = "EXIF thumbnail"
#: IFD1 tags (TIFF 6.0 / EXIF 2.3): where the thumbnail JPEG starts, and its length.
_OFFSET, _LENGTH = 0x0201, 0x0202
_EXIF_HEADER = b"Exif\x00\x00"


class ExifThumbnailReader:
    """Reads the EXIF thumbnail of JPEG pictures."""

    name = "exif"

    def accepts(self, content_type: str) -> bool:
        return content_type == "image/jpeg"

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        stream.seek(0)
        found = _thumbnail_place(stream)
        if found is None:
            return
        tiff, offset, length = found
        if not (isinstance(offset, int) and isinstance(length, int)) or offset < 0 or length <= 0:
            yield Member(NAME, error=f"damaged EXIF thumbnail entry (offset {offset!r}, length {length!r})")
            return
        if offset + length > len(tiff):
            yield Member(
                NAME,
                error=f"damaged EXIF thumbnail: {length:,} bytes at {offset:,} run past the "
                f"{len(tiff):,} bytes of EXIF data",
            )
            return
        data = tiff[offset : offset + length]
        name = NAME + (picture_extension(data) or ".bin")
        yield Member(name, open=partial(io.BytesIO, data), size=len(data))


def _thumbnail_place(stream: BinaryIO) -> tuple[bytes, object, object] | None:
    """The EXIF data (from its TIFF header on) and IFD1's thumbnail offset and length, if it names one."""
    from PIL import ExifTags, Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # decompression-bomb and corrupt-EXIF notes: not ours
            with Image.open(stream, formats=["JPEG"]) as im:
                raw = im.info.get("exif")
                if not isinstance(raw, bytes) or not raw:
                    return None
                thumbnail = im.getexif().get_ifd(ExifTags.IFD.IFD1)
    except Exception as exc:  # Pillow reports hostile headers in many ways
        log.debug("no EXIF thumbnail read: %s: %s", type(exc).__name__, exc)
        return None
    if _OFFSET not in thumbnail and _LENGTH not in thumbnail:
        return None
    tiff = raw[len(_EXIF_HEADER) :] if raw.startswith(_EXIF_HEADER) else raw
    return tiff, thumbnail.get(_OFFSET), thumbnail.get(_LENGTH)


READER = ExifThumbnailReader()
