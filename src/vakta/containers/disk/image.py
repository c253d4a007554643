"""Disk images as The Sleuth Kit reads them: raw bytes from the driver's stream, or an EWF set.

TSK reads through an ``Img_Info`` whose ``read``/``get_size`` Python supplies,
so a raw image is read in place from whatever stream the driver hands over (a
file, or a member of another container) and an EnCase image through libewf,
which decompresses its chunks on demand.  Nothing is copied to disk.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import pyewf  # type: ignore[import-not-found]
import pytsk3  # type: ignore[import-not-found]

from vakta.containers import read_at

#: What libtsk and libewf raise: OSError for their own errors, RuntimeError when a read
#: through Python (our ``StreamImage.read``) failed underneath them.
LIBRARY_ERRORS = (OSError, RuntimeError)

#: Reads ``size`` bytes at ``offset`` of the image (fewer only at its end).
ReadAt = Callable[[int, int], bytes]

#: An EWF segment ends with the header of its last section: ``next`` if more segments follow.
_SECTION_HEADER = 76
_EWF_HEADER = 13


#: The size a truncated image is shown to TSK as: beyond any MBR's reach (2 TiB) and most GPTs'.
PADDED_SIZE = 1 << 48


class StreamImage(pytsk3.Img_Info):  # type: ignore[misc]
    """An image TSK reads through ``read_at``: a raw stream, or libewf's decompressed media."""

    def __init__(self, read_at: ReadAt, size: int, shown_size: int = 0) -> None:
        self._read_at = read_at
        #: The bytes there are; TSK is told ``shown_size`` when that is larger (see :meth:`padded`).
        self.size = size
        self._shown = max(size, shown_size)
        super().__init__(url="", type=pytsk3.TSK_IMG_TYPE_EXTERNAL)

    def read(self, offset: int, size: int) -> bytes:
        size = min(size, self.size - offset)
        return self._read_at(offset, size) if size > 0 else b""

    def get_size(self) -> int:
        return self._shown

    def padded(self) -> StreamImage:
        """The same bytes shown as a much larger image, whose reads past the real end fail.

        TSK refuses a whole partition table when one partition reaches past the end of
        the image, as in every truncated acquisition; shown whole, the partitions that
        are there are read and each one cut off fails on its own.
        """
        return StreamImage(self._read_at, self.size, PADDED_SIZE)

    def close(self) -> None:
        """The stream belongs to the caller: nothing to release here."""


def raw_image(stream: BinaryIO) -> StreamImage:
    """The bytes of ``stream`` (seekable) as an image."""
    size = stream.seek(0, io.SEEK_END)
    return StreamImage(lambda offset, n: read_at(stream, offset, n), size)


def segment_number(head: bytes) -> int:
    """The number of an EWF segment (1 for ``.E01``), from its file header."""
    return int.from_bytes(head[9:11], "little")


@contextlib.contextmanager
def ewf_image(stream: BinaryIO) -> Iterator[StreamImage]:
    """The media of the EWF set whose first segment is ``stream``.

    libewf reads the segments as file objects: the first is the stream the scan
    already opened, the others (``.E02``...) are found beside it by name when it
    is a file on disk (``pyewf.glob``).  A set with missing segments is refused
    up front rather than failing on every file that lies in the missing part.
    """
    with contextlib.ExitStack() as stack:
        segments = [stream]
        for path in _other_segments(stream):
            try:
                segments.append(stack.enter_context(open(path, "rb")))
            except OSError as exc:
                raise ValueError(f"cannot open EWF segment {path}: {exc.strerror or exc}") from None
        _check_complete(segments, stream)
        handle = pyewf.handle()
        try:
            handle.open_file_objects(segments)
        except LIBRARY_ERRORS as exc:
            raise ValueError(f"cannot open EWF image: {library_message(exc)}") from None
        stack.callback(handle.close)
        size = handle.get_media_size()
        if not size:
            raise ValueError("EWF image holds no media data (damaged or empty)")
        yield StreamImage(lambda offset, n: _read_media(handle, offset, n), size)


def _other_segments(stream: BinaryIO) -> list[str]:
    """Paths of the segments after the first, when ``stream`` is a file whose name libewf can glob."""
    path = _path_of(stream)
    if path is None:
        return []
    try:
        found = pyewf.glob(path)
    except (OSError, ValueError, TypeError):  # not named .E01/.s01/...: a single segment
        return []
    first = os.path.realpath(path)
    return [p for p in found if os.path.realpath(p) != first]


def _path_of(stream: BinaryIO) -> str | None:
    """The file a stream reads, when it is one (``Item.open`` and ``open()`` name their streams)."""
    name: Any = getattr(stream, "name", None)
    if isinstance(name, bytes | str) and os.path.isfile(name):
        return os.fsdecode(name)
    return None


def _check_complete(segments: list[BinaryIO], first: BinaryIO) -> None:
    """Raise ValueError when the last segment at hand says more follow."""
    last = segments[-1]
    size = last.seek(0, io.SEEK_END)
    if size < _EWF_HEADER + _SECTION_HEADER or read_at(last, size - _SECTION_HEADER, 4) != b"next":
        return
    if len(segments) == 1 and _path_of(first) is None:
        raise ValueError(
            "EWF segment 1 of a set of several, inside another container: "
            "the other segments (.E02, ...) must be files beside it on disk; not opened"
        )
    name = os.path.basename(_path_of(last) or "segment")
    raise ValueError(f"EWF set incomplete: segments after {name} are missing; not opened")


def _read_media(handle: Any, offset: int, size: int) -> bytes:
    try:
        return bytes(handle.read_buffer_at_offset(size, offset))
    except LIBRARY_ERRORS as exc:
        raise OSError(f"EWF read error at offset {offset:,}: {library_message(exc)}") from None


_FUNCTION_PREFIX = re.compile(r"^\s*(?:\w+: )?(?:\(\w+\.\w+:\d+\) )?")


def library_message(exc: BaseException) -> str:
    """libtsk's and libewf's error chains without function names and source lines, first two causes."""
    seen: list[str] = []
    for part in re.split(r"\.\s+|\n", str(exc)):
        text = _FUNCTION_PREFIX.sub("", part).strip().rstrip(".").rsplit(" with error: ", 1)[-1]
        if text and text not in seen:
            seen.append(text)
    return "; ".join(seen[:2]) or type(exc).__name__
