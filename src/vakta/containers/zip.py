"""ZIP archives, and the documents that are ZIP archives: DOCX/XLSX/PPTX, ODT/ODS/ODP, EPUB.

Pictures pasted into an office document are files in its ZIP (``word/media/``,
``Pictures/``), so they are found as members like any other.  The central
directory is read with :mod:`zipfile` (ZIP64 included); members are streamed
through it, never extracted.  Encrypted members (ZipCrypto or AES) and
compression methods :mod:`zipfile` cannot decode are members with an error,
named and counted, not skipped.  zipfile itself refuses entries whose data
overlap another's (the "overlapping files" zip bomb); that is an error on the
member too.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

from vakta.containers import Member
from vakta.containers.compressed import DecodedStream

#: Compression methods zipfile decodes: stored, deflate, bzip2, LZMA.
DECODED_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
#: Names of the methods that occur in the wild and zipfile cannot decode.
METHOD_NAMES = {
    1: "Shrink",
    6: "Implode",
    9: "Deflate64",
    10: "PKWARE DCL Implode",
    93: "Zstandard",
    95: "xz",
    96: "JPEG",
    97: "WavPack",
    98: "PPMd",
    99: "AES encryption",
}
_AES = 99
_ENCRYPTED_FLAG = 0x1
#: Content types of ZIP archives and of documents that are ZIP archives.
ZIP_TYPES = frozenset({"application/zip", "application/epub+zip"})
ZIP_TYPE_PREFIXES = ("application/vnd.openxmlformats-officedocument.", "application/vnd.oasis.opendocument.")


@dataclass(frozen=True)
class ZipReader:
    """Reads ZIP archives and ZIP-based documents."""

    name: str = "zip"
    #: The central directory lists members at once and each reads on its own (see containers.shard).
    shardable: bool = True

    def accepts(self, content_type: str) -> bool:
        return content_type in ZIP_TYPES or content_type.startswith(ZIP_TYPE_PREFIXES)

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        try:
            archive = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, struct.error, EOFError, ValueError) as exc:
            raise ValueError(f"cannot read the ZIP central directory: {exc}") from exc
        # Not closed at the end: closing a ZipFile on a stream it was given only stops its members
        # from being read again, and they stay readable while the stream is.
        for info in archive.infolist():
            if info.is_dir() and not info.file_size:
                continue
            yield _member(archive, info)


def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Member:
    """The entry as a member; one that cannot be decoded here carries the reason as its error."""
    name, size, stored = info.filename, info.file_size, info.compress_size
    if info.flag_bits & _ENCRYPTED_FLAG or info.compress_type == _AES:
        return Member(name, size=size, stored_size=stored, error="encrypted: not scanned")
    if info.compress_type not in DECODED_METHODS:
        method = f"{info.compress_type} ({METHOD_NAMES.get(info.compress_type, 'unknown')})"
        return Member(
            name,
            size=size,
            stored_size=stored,
            error=f"compression method {method} not supported: not scanned",
        )

    def open_member() -> BinaryIO:
        return DecodedStream(lambda: cast(zipfile.ZipExtFile, archive.open(info)), "ZIP member")  # type: ignore[return-value]

    return Member(name, open_member, size=size, stored_size=stored)


READER = ZipReader()
