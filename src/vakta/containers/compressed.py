"""Single compressed files (gzip, bzip2, xz, zstd): one member, the decompressed bytes.

A ``.tar.gz`` is a gzip file whose member sniffs as a tar archive and is then
opened by the tar reader, so no archive reader needs to know about
compression: the location reads ``x.tar.gz > x.tar > a/b.jpg``.  The member is
named from the gzip header's FNAME field when there is one (``gzip`` writes
it, ``tar -z`` through a pipe does not), else ``(decompressed)``.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol, TypeVar

import zstandard

from vakta.containers import Member, MemberStream

log = logging.getLogger(__name__)
T = TypeVar("T")

UNNAMED = "(decompressed)"
_SKIP_CHUNK = 1 << 20
MAX_READ = 64 << 20
#: gzip header flags (RFC 1952): extra field, original file name.
_FEXTRA, _FNAME = 0x04, 0x08
_MAX_NAME = 4096
#: Decoder failures on damaged data; each becomes a ValueError on the member.
DECODE_ERRORS: tuple[type[Exception], ...] = (
    zlib.error,
    lzma.LZMAError,
    zstandard.ZstdError,
    gzip.BadGzipFile,
    zipfile.BadZipFile,
    tarfile.TarError,
    EOFError,
)
_NOT_GZIP = "Not a gzipped file"


class Decoder(Protocol):
    """A library's reader of a member's bytes (GzipFile, a zstd reader, ZipExtFile, ExFileObject...)."""

    def read1(self, size: int, /) -> bytes: ...

    def seekable(self) -> bool: ...

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int: ...

    def close(self) -> None: ...


class DecodedStream(MemberStream):
    """A member's bytes as a library decodes them, with the library's failures as ValueError.

    Damaged or truncated data is an error the expansion driver reports on the
    member (read errors and scan limits of the stream below pass through
    unchanged).  A decoder that cannot seek (zstd) is made to: forward by
    reading on, backward by decoding again from the start.  One read returns at
    most MAX_READ bytes, so a header that claims gigabytes (a tar pax header
    inside a .tar.gz) cannot make its reader hold them.
    """

    def __init__(self, open_decoder: Callable[[], Decoder], what: str) -> None:
        self._open = open_decoder
        self._what = what
        self._decoder = self._decoding(open_decoder)
        self._pos = 0
        self._ended = False

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self._read(_SKIP_CHUNK), b""))
        return self._read(size)

    def _read(self, size: int) -> bytes:
        """Up to ``size`` bytes (at most MAX_READ), fewer only at the end: tarfile takes a short read for the end."""
        parts: list[bytes] = []
        size = min(size, MAX_READ)
        while size > 0 and not self._ended:
            data = self._read1(size)
            self._ended = not data
            parts.append(data)
            size -= len(data)
            self._pos += len(data)
        return b"".join(parts)

    def _read1(self, size: int) -> bytes:
        try:
            return self._decoding(lambda: self._decoder.read1(size))
        except ValueError as exc:
            if not (self._pos and isinstance(exc.__cause__, gzip.BadGzipFile) and _NOT_GZIP in str(exc)):
                raise
            log.info("%s: bytes after the end of the compressed data ignored, as gzip -d does", self._what)
            return b""

    def _decoding(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except DECODE_ERRORS as exc:
            raise ValueError(f"damaged {self._what} data: {exc or type(exc).__name__}") from exc

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._ended = False
        if self._decoder.seekable():
            self._pos = self._decoding(lambda: self._decoder.seek(offset, whence))
            return self._pos
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            while self._read(_SKIP_CHUNK):
                pass
            offset += self._pos
        if offset < 0:
            raise ValueError(f"negative seek position {offset}")
        if offset < self._pos:
            self._decoder.close()
            self._decoder = self._decoding(self._open)
            self._pos = 0
            self._ended = False
        while self._pos < offset and self._read(min(_SKIP_CHUNK, offset - self._pos)):
            pass
        return self._pos

    def close(self) -> None:
        try:
            self._decoder.close()
        finally:
            super().close()


def _at_start(stream: BinaryIO) -> BinaryIO:
    stream.seek(0)
    return stream


def _gzip(stream: BinaryIO) -> Decoder:
    return gzip.GzipFile(fileobj=_at_start(stream), mode="rb")


def _bzip2(stream: BinaryIO) -> Decoder:
    return bz2.BZ2File(_at_start(stream), mode="rb")


def _xz(stream: BinaryIO) -> Decoder:
    return lzma.LZMAFile(_at_start(stream), mode="rb")


def _zstd(stream: BinaryIO) -> Decoder:
    """A zstd reader; frames whose window exceeds zstd's default decoder limit (128 MiB) are refused."""
    check_zstd_frames(stream)
    return zstandard.ZstdDecompressor().stream_reader(
        _at_start(stream), read_across_frames=True, closefd=False
    )


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: The longest zstd frame header (RFC 8878 section 3.1.1.1).
_ZSTD_HEADER = 18


def check_zstd_frames(stream: BinaryIO) -> None:
    """Raise EOFError if the zstd data in ``stream`` ends inside a frame, ValueError if it is not zstd.

    zstandard's reader ends quietly where the data does, with what it decoded
    so far (or nothing), so a truncated .zst would pass as a shorter file.
    Walking the frames' block headers (RFC 8878) finds the cut without
    decoding: a few bytes read per block of up to 128 KiB.
    """
    end = stream.seek(0, io.SEEK_END)
    pos = 0
    while pos < end:
        stream.seek(pos)
        head = stream.read(_ZSTD_HEADER)
        if head[:4] == _ZSTD_MAGIC:
            pos = _zstd_frame_end(stream, pos, head, end)
        elif len(head) >= 8 and _skippable_frame(head):
            pos += 8 + int.from_bytes(head[4:8], "little")
        elif _ZSTD_MAGIC.startswith(head):
            raise EOFError("the data ends inside a zstd frame (truncated)")
        else:
            raise ValueError(f"not zstd data at byte {pos:,}")
    if pos > end:
        raise EOFError("the data ends inside a zstd frame (truncated)")


def _skippable_frame(head: bytes) -> bool:
    """A zstd skippable frame starts here (magic 0x184D2A50-5F): metadata to pass over."""
    return len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50


def _zstd_frame_end(stream: BinaryIO, start: int, head: bytes, end: int) -> int:
    """Where the zstd frame at ``start`` ends, past ``end`` if the data stops inside it."""
    try:
        pos = start + zstandard.frame_header_size(head)
    except zstandard.ZstdError:
        raise EOFError("the data ends inside a zstd frame header (truncated)") from None
    while pos <= end:
        stream.seek(pos)
        block = stream.read(3)
        if len(block) < 3:
            return end + 1
        header = int.from_bytes(block, "little")
        kind = (header >> 1) & 3
        if kind == 3:
            raise ValueError(f"damaged zstd data: reserved block type at byte {pos:,}")
        pos += 3 + (1 if kind == 1 else header >> 3)  # an RLE block stores one byte
        if header & 1:  # the frame's last block, then its checksum if it has one
            return pos + (4 if head[4] & 0x04 else 0)
    return pos


def gzip_name(head: bytes) -> str | None:
    """The original file name in a gzip header (FNAME, ISO 8859-1), or None if it has none."""
    if len(head) < 10 or head[:3] != b"\x1f\x8b\x08" or not head[3] & _FNAME:
        return None
    pos = 10
    if head[3] & _FEXTRA:
        pos += 2 + int.from_bytes(head[10:12], "little")
    end = head.find(b"\0", pos, pos + _MAX_NAME)
    name = head[pos:end].decode("latin-1") if end > pos else ""
    return name or None


#: Content type (as sniffed) -> what the member's stream is called in messages, and its decoder.
FORMATS: dict[str, tuple[str, Callable[[BinaryIO], Decoder]]] = {
    "application/gzip": ("gzip", _gzip),
    "application/x-bzip2": ("bzip2", _bzip2),
    "application/x-xz": ("xz", _xz),
    "application/zstd": ("zstd", _zstd),
}


def format_of(head: bytes) -> str:
    """The content type of a compressed file from its magic number (a zstd file may open with skippable frames)."""
    if head.startswith(b"\x1f\x8b"):
        return "application/gzip"
    if head.startswith(b"BZh"):
        return "application/x-bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "application/x-xz"
    if head.startswith(_ZSTD_MAGIC) or _skippable_frame(head):
        return "application/zstd"
    raise ValueError("not a gzip, bzip2, xz or zstd file")


@dataclass(frozen=True)
class CompressedReader:
    """Reads gzip, bzip2, xz and zstd files as containers of one member."""

    name: str = "compressed"

    def accepts(self, content_type: str) -> bool:
        return content_type in FORMATS

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        head = stream.read(12 + 0xFFFF + _MAX_NAME)
        content_type = format_of(head)
        kind, open_decoder = FORMATS[content_type]
        size = stream.seek(0, io.SEEK_END)

        def open_member() -> BinaryIO:
            return DecodedStream(lambda: open_decoder(stream), kind)  # type: ignore[return-value]

        yield Member(gzip_name(head) or UNNAMED, open_member, stored_size=size)


READER = CompressedReader()
