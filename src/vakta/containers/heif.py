"""The pictures a HEIF/HEIC file holds beside its primary one: thumbnails and further pictures.

Phones store a thumbnail with each HEIC photo, and a HEIF file may hold several
pictures of which viewers show only the primary one. Like a JPEG's EXIF
thumbnail, a thumbnail can still show what an edited picture showed before, and
a further picture can be anything. The PDQ hasher sees only the primary picture.

These pictures are HEVC-coded items of the file, not files of their own, so
each is given out as a lossless PNG of its decoded pixels (as a PDF's non-JPEG
pictures are): PDQ matches it; its digests are of that PNG, not of any file a
list could name. Names say where each sits: ``photo.heic > HEIF thumbnail.png``,
``photo.heic > HEIF picture 2.png``, ``photo.heic > HEIF picture 2 thumbnail.png``.

Nothing is decoded to list them: a picture is decoded when its member is read,
after its size is checked against the pixel limit. A file libheif cannot open
has no members: its own decode error is reported by the PDQ hasher.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from vakta.containers import Member
from vakta.signals.imaging import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

#: Sniffed types of HEIF files with HEVC pictures (libheif also opens AVIF, which Pillow decodes itself).
_TYPES = frozenset({"image/heic", "image/heif"})


class HeifPicturesReader:
    """Reads the thumbnails and non-primary pictures of HEIF/HEIC files."""

    name = "heif"

    def accepts(self, content_type: str) -> bool:
        return content_type in _TYPES

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        try:
            import pillow_heif
        except ImportError:  # pillow-heif is a dependency, but a broken install must not stop a scan
            yield Member("HEIF pictures", error="not opened: pillow-heif is not installed")
            return
        stream.seek(0)
        try:
            heif = pillow_heif.open_heif(stream, convert_hdr_to_8bit=True)
            pictures = list(heif)
            primary = heif.primary_index
        except Exception as exc:  # libheif reports hostile or unknown input in many ways
            log.debug("no HEIF pictures read: %s: %s", type(exc).__name__, exc)
            return
        for index, picture in enumerate(pictures):
            label = "HEIF" if index == primary else f"HEIF picture {index + 1}"
            if index != primary:
                yield _member(label, picture)
            for number, thumbnail in enumerate(_thumbnails(picture), 1):
                yield _member(f"{label} thumbnail" + ("" if number == 1 else f" {number}"), thumbnail)


def _thumbnails(picture: Any) -> Iterator[Any]:
    """A picture's thumbnails, in the order the file lists them."""
    for position in range(len(picture.info.get("thumbnails") or ())):
        yield picture.get_thumbnail(position)


def _member(label: str, picture: Any) -> Member:
    """The picture as a lossless PNG, decoded when read; an error when its size is absurd."""
    width, height = picture.size
    if width <= 0 or height <= 0 or width * height > DEFAULT_MAX_PIXELS:
        return Member(
            label, error=f"not decoded: {width}x{height} is outside the {DEFAULT_MAX_PIXELS:,} pixel limit"
        )
    return Member(label + ".png", open=_png_opener(picture))


def _png_opener(picture: Any) -> Callable[[], BinaryIO]:
    """Decodes on each open, but a failure only once: the pipeline opens a failed member again, inline."""
    failure: list[ValueError] = []

    def open_png() -> BinaryIO:
        if failure:
            raise failure[0]
        png = _png(picture)
        if isinstance(png, ValueError):
            failure.append(png)
            raise png
        return io.BytesIO(png)

    return open_png


def _png(picture: Any) -> bytes | ValueError:
    try:
        decoded = picture.to_pillow()
    except Exception as exc:  # libheif's decode errors are RuntimeError or ValueError
        return ValueError(f"HEIF picture decode failed: {exc}")
    out = io.BytesIO()
    decoded.save(out, "PNG", compress_level=1)
    return out.getvalue()


READER = HeifPicturesReader()
