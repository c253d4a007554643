"""TAR archives (v7, ustar, GNU, pax), read with :mod:`tarfile` and streamed member by member.

Only entries that hold data are members: regular files (GNU sparse files with
their holes as zeros) and entries of a type tarfile does not know, which it
reads as files, so nothing can hide in a vendor type.  Directories, symbolic
and hard links, devices and FIFOs hold no data of their own (a hard link's data
is that of its target, scanned where it is stored) and are not members.
Names are only names: absolute paths, ``../`` and links are never followed or
written anywhere, since members are streamed, not extracted.

Compressed tars (``.tar.gz``, ``.tar.zst``, ...) reach this reader as the
member of a compressed file (:mod:`vakta.containers.compressed`).  Header
blocks that are damaged are skipped, as ``tar --ignore-zeros`` does, so the
members after them are still found (and concatenated archives are read
whole); each damaged stretch is reported as a member with an error.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Self, cast

from vakta.containers import Member
from vakta.containers.compressed import DecodedStream

#: A header block that is neither a header nor zeros, and one cut off by the end of the data.
_DAMAGED: tuple[type[Exception], ...] = (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError)  # type: ignore[attr-defined]


class _Header(tarfile.TarInfo):
    """A header that counts the damaged blocks tarfile skips silently with ``ignore_zeros`` (and a cut-off last one)."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tarfile_)
        except _DAMAGED:
            if isinstance(tarfile_, _Archive):
                tarfile_.damaged(tarfile_.offset)
            raise


class _Archive(tarfile.TarFile):
    """A tar archive that remembers where damaged header blocks were skipped."""

    tarinfo = _Header
    members: list[tarfile.TarInfo]
    damaged_blocks = 0
    damaged_at: int | None = None

    def damaged(self, offset: int) -> None:
        self.damaged_blocks += 1
        if self.damaged_at is None:
            self.damaged_at = offset


@dataclass(frozen=True)
class TarReader:
    """Reads tar archives."""

    name: str = "tar"

    def accepts(self, content_type: str) -> bool:
        return content_type == "application/x-tar"

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        try:
            archive = _Archive.open(
                fileobj=stream, mode="r:", ignore_zeros=True, encoding="utf-8", errors="backslashreplace"
            )
        except tarfile.TarError as exc:
            raise ValueError(f"not a readable tar archive: {exc}") from exc
        yield from _members(archive)  # left open, as a ZIP is: members stay readable while the stream is


def _members(archive: _Archive) -> Iterator[Member]:
    while True:
        try:
            info = archive.next()
        except tarfile.TarError as exc:
            raise ValueError(f"damaged or truncated tar archive: {exc}") from exc
        archive.members.clear()  # tarfile keeps every header; millions of them need not stay in memory
        damage = _damage(archive)
        if damage is not None:
            yield damage
        if info is None:
            return
        if info.isreg() or info.type not in tarfile.SUPPORTED_TYPES:
            yield _member(archive, info)


def _member(archive: tarfile.TarFile, info: tarfile.TarInfo) -> Member:
    def open_member() -> BinaryIO:
        return DecodedStream(lambda: _data(archive, info), "tar member")  # type: ignore[return-value]

    return Member(info.name, open_member, size=info.size)


def _data(archive: tarfile.TarFile, info: tarfile.TarInfo) -> tarfile.ExFileObject:
    data = archive.extractfile(info)
    assert data is not None, "regular members always have data"
    return cast(tarfile.ExFileObject, data)


def _damage(archive: _Archive) -> Member | None:
    """A member standing for the damaged header blocks skipped since the last member, if any."""
    if not archive.damaged_blocks:
        return None
    blocks, offset = archive.damaged_blocks, archive.damaged_at or 0
    archive.damaged_blocks, archive.damaged_at = 0, None
    return Member(
        f"(damaged data at offset {offset:,})",
        error=f"{blocks:,} damaged tar header block(s) skipped; any member stored there is lost",
    )


READER = TarReader()
