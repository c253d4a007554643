"""Disk images: raw (dd) and EnCase (E01) images, their partitions and filesystems.

The Sleuth Kit (pytsk3) reads the partition table (MBR, GPT, and the BSD, Mac
and Sun ones it knows) and every filesystem it supports (FAT12/16/32, exFAT,
NTFS, ext2/3/4, HFS+, ISO 9660, UFS); libewf (pyewf) decompresses EnCase
images.  Members are named ``partition 2 (FAT32) > /DCIM/a.jpg``, or
``/DCIM/a.jpg`` for a filesystem image without a partition table, and stream
straight from the image.  Partitions are numbered as Linux numbers them:
MBR primaries 1-4 by their slot, logical partitions from 5, GPT by entry.

A partition without a filesystem TSK reads (unformatted, swap, encrypted) is a
member with an error: the report shows what was not scanned.  An EWF segment
other than the first (``.E02``...) has no members of its own: it is read as
part of its set, through ``.E01``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, BinaryIO

import pytsk3  # type: ignore[import-not-found]

from vakta.containers import Member, read_at
from vakta.containers.disk.filesystem import filesystem_members, filesystem_name
from vakta.containers.disk.image import (
    LIBRARY_ERRORS,
    StreamImage,
    ewf_image,
    library_message,
    raw_image,
    segment_number,
)
from vakta.signals.sniff import (
    DISK_TYPE,
    EWF_TYPE,
    FILESYSTEM_TYPE,
    SNIFF_BYTES,
    disk_image_type,
)

log = logging.getLogger(__name__)

#: Volumes TSK cannot open, by their signature at the start of a partition: the reason to report.
_UNREADABLE = (
    (3, b"-FVE-FS-", "encrypted (BitLocker): not scanned"),
    (0, b"LUKS\xba\xbe", "encrypted (LUKS): not scanned"),
    (32, b"NXSB", "APFS container: not supported, not scanned"),
)


class DiskImageReader:
    """Reads raw and EWF disk images and filesystem images through The Sleuth Kit."""

    name = "disk"
    #: Listing walks metadata only and each file reads at its own offsets (see containers.shard).
    shardable = True

    def accepts(self, content_type: str) -> bool:
        return content_type in (EWF_TYPE, DISK_TYPE, FILESYSTEM_TYPE)

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        head = read_at(stream, 0, SNIFF_BYTES)
        if disk_image_type(head) != EWF_TYPE:
            yield from image_members(raw_image(stream))
            return
        number = segment_number(head)
        if number != 1:
            log.info("EWF segment %d: read as part of its set, through its first segment", number)
            return
        with ewf_image(stream) as image:
            yield from image_members(image)


def image_members(image: StreamImage) -> Iterator[Member]:
    """The files of every partition of ``image``, or of the filesystem it holds without a table."""
    head = image.read(0, SNIFF_BYTES)
    kind = disk_image_type(head)
    volumes = None if kind == FILESYSTEM_TYPE else _volumes(image)
    if volumes is None and kind == DISK_TYPE:
        image = image.padded()  # perhaps truncated: see StreamImage.padded
        volumes = _volumes(image)
    if volumes is not None:
        yield from _partitions(image, volumes)
        return
    try:
        fs = pytsk3.FS_Info(image, offset=0)
    except LIBRARY_ERRORS as exc:
        raise ValueError(
            f"no partition table or filesystem that can be read: {library_message(exc)}"
        ) from None
    yield from filesystem_members(fs)


def _volumes(image: StreamImage) -> Any:
    """The partition table with its partitions, or None when there is none (or none in use)."""
    try:
        volumes = pytsk3.Volume_Info(image)
    except LIBRARY_ERRORS as exc:
        log.debug("no partition table: %s", library_message(exc))
        return None
    if not any(int(part.flags) & int(pytsk3.TSK_VS_PART_FLAG_ALLOC) for part in volumes):
        return None
    return volumes


def _partitions(image: StreamImage, volumes: Any) -> Iterator[Member]:
    block = int(volumes.info.block_size)
    numbers = _Numbering(int(volumes.info.vstype))
    for part in volumes:
        if not int(part.flags) & int(pytsk3.TSK_VS_PART_FLAG_ALLOC):
            continue  # the table itself, an extended container, or unallocated space
        number = numbers.next(part)
        offset = int(part.start) * block
        try:
            fs = pytsk3.FS_Info(image, offset=offset)
        except LIBRARY_ERRORS as exc:
            label = part.desc.decode("utf-8", "backslashreplace").strip()
            name = f"partition {number} ({label})" if label else f"partition {number}"
            end = offset + int(part.len) * block
            yield Member(name, error=_no_filesystem(image, offset, end, exc))
            continue
        yield from filesystem_members(fs, f"partition {number} ({filesystem_name(fs)}) > ")


class _Numbering:
    """Partition numbers as Linux gives them: MBR slots 1-4 and logicals from 5, GPT entries, else in order."""

    def __init__(self, vstype: int) -> None:
        self._dos = vstype == int(pytsk3.TSK_VS_TYPE_DOS)
        self._gpt = vstype == int(pytsk3.TSK_VS_TYPE_GPT)
        self._count = 0
        self._logical = 4

    def next(self, part: Any) -> int:
        self._count += 1
        slot, table = int(part.slot_num), int(part.table_num)
        if self._dos and table > 0:
            self._logical += 1
            return self._logical
        if (self._dos or self._gpt) and slot >= 0:
            return slot + 1
        return self._count


def _no_filesystem(image: StreamImage, offset: int, end: int, exc: Exception) -> str:
    """Why a partition was not scanned: encrypted, unsupported, cut off by the image's end, or unknown."""
    start = image.read(offset, 64)
    for at, magic, reason in _UNREADABLE:
        if start[at : at + len(magic)] == magic:
            return reason
    if end > image.size:
        return f"partition runs past the end of the image (truncated?): {library_message(exc)}"
    return f"no filesystem that can be read (unformatted, swap or unsupported): {library_message(exc)}"


READER = DiskImageReader()
