"""Containers: files that hold other files (archives, documents, disk images, mailboxes).

A container reader turns one item's bytes into :class:`Member` objects, each
able to stream its own bytes.  Members are hashed like files and, when they are
containers themselves, opened in turn, so a finding can sit at
``laptop.E01 > partition 2 (NTFS) > /Users/x/old.zip > a/b.jpg``.

Readers are registered through the ``vakta.containers`` entry points, the same
way a third-party plugin adds one.  Nothing is ever extracted to disk: readers
stream members, and :class:`Budget` bounds the work one top-level item may
cause (depth, member size, bytes, members, time), as ClamAV's scan limits do,
so a zip bomb or an archive that contains itself is an error on that item.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, cast

from vakta.registry import Registry

GiB = 1 << 30


class LimitExceeded(ValueError):
    """A scan limit stopped reading a member; the message names the limit and its option."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on the work one top-level item may cause, ClamAV's scan limits scaled for forensics.

    ClamAV's defaults (100 MB per file, 400 MB per scan, 10,000 files, 17 levels,
    120 s) suit mail gateways; evidence holds videos of gigabytes and disk images
    of millions of files, so sizes and counts are larger while depth matches.
    """

    max_depth: int = 17
    max_member_bytes: int = 8 * GiB
    max_total_bytes: int = 256 * GiB
    max_members: int = 5_000_000
    max_seconds: float = 3600.0
    #: A member that inflates beyond this ratio (and past 64 MiB) is a compression bomb.
    max_ratio: float = 1000.0


#: Size below which no compression ratio counts as a bomb.
RATIO_FLOOR = 64 << 20


@dataclass(slots=True)
class Budget:
    """What is left of the :class:`Limits` for one top-level item, shared by every level."""

    limits: Limits
    bytes_read: int = 0
    members: int = 0
    deadline: float = field(default=0.0)
    #: Members are hashed on several threads: their counts go through this lock.
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = time.monotonic() + self.limits.max_seconds

    def add_bytes(self, n: int) -> int:
        """Count ``n`` more bytes read; the total so far."""
        with self._lock:
            self.bytes_read += n
            return self.bytes_read

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitExceeded(
                f"stopped after {self.limits.max_seconds:g} s (--max-item-seconds): the rest is not scanned"
            )

    def count_member(self) -> None:
        with self._lock:
            self.members += 1
            members = self.members
        if members > self.limits.max_members:
            raise LimitExceeded(
                f"more than {self.limits.max_members:,} members (--max-members): the rest are not scanned"
            )
        self.check_time()


@dataclass(frozen=True, slots=True)
class Member:
    """One file inside a container.

    ``name`` says where it sits inside its container, readable as is; a reader
    with several levels of its own (partition, then path) joins them with
    ``" > "``.  ``error`` marks a member that cannot be read (encrypted,
    corrupt header): it is reported, never skipped silently.
    """

    name: str
    open: Callable[[], BinaryIO] | None = None
    size: int | None = None
    #: Bytes the member takes inside the container (compressed), for the bomb check.
    stored_size: int | None = None
    deleted: bool = False
    error: str | None = None


class ContainerReader(Protocol):
    """Reads one kind of container.

    A reader may also set ``shardable = True`` when listing its members is cheap
    and each member reads independently of the others: a large container of its
    kind is then split between worker processes (see :mod:`vakta.containers.shard`).
    A reader sets ``version`` (default 1) and raises it when it comes to give out
    other members than before, so members kept in the scan cache are looked for again.
    """

    name: str

    def accepts(self, content_type: str) -> bool:
        """True if an item of this sniffed type (see :mod:`vakta.signals.sniff`) is this kind of container."""
        ...

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        """The members of the container in ``stream`` (seekable, at its first byte).

        A reader streams: the caller reads each member before asking for the
        next, so a reader of a compressed stream (tar.gz) may pass through once.
        Damage found along the way is a member with ``error`` set; a container
        that cannot be opened at all raises ``ValueError`` with a clear message.
        """
        ...


containers: Registry[ContainerReader] = Registry("containers")


def reader_for(content_type: str | None) -> ContainerReader | None:
    """The reader for items of this type, or None when it is not a container."""
    if not content_type:
        return None
    for _, reader in containers:
        if reader.accepts(content_type):
            return reader
    return None


def readers_fingerprint() -> str:
    """Every registered reader's name and version: members found under other readers may differ."""
    return ",".join(sorted(f"{name}/{getattr(reader, 'version', 1)}" for name, reader in containers))


class MemberStream(io.RawIOBase):
    """Base of the readers' member streams: a position, and ``readinto`` made from ``read``.

    Subclasses define ``read`` (and ``seek`` where they can); Python's buffered
    readers, zipfile and tarfile call ``readinto``.
    """

    _pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class Slice(MemberStream):
    """Bytes ``start`` to ``end`` of a stream shared with others (an mbox's message, a cached thumbnail): every read seeks first."""

    def __init__(self, stream: BinaryIO, start: int, end: int) -> None:
        self._stream = stream
        self._start = start
        self._end = end
        self._pos = 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        origin = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._end - self._start}[whence]
        self._pos = max(0, origin + offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        left = self._end - self._start - self._pos
        size = left if size is None or size < 0 else min(size, left)
        if size <= 0:
            return b""
        data = read_at(self._stream, self._start + self._pos, size)
        self._pos += len(data)
        return data


def slice_opener(stream: BinaryIO, start: int, end: int) -> Callable[[], BinaryIO]:
    """A member's ``open``: bytes ``start`` to ``end`` of its container's stream, read in place."""

    def open_slice() -> BinaryIO:
        return cast("BinaryIO", Slice(stream, start, end))

    return open_slice


def read_at(stream: BinaryIO, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` of ``stream``, fewer only at its end."""
    stream.seek(offset)
    parts = []
    while size > 0 and (chunk := stream.read(size)):
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


class LimitedStream(MemberStream):
    """A member's stream that stops at the size, bomb, byte-budget and time limits."""

    def __init__(self, raw: BinaryIO, member: Member, budget: Budget) -> None:
        self._raw = raw
        self._member = member
        self._budget = budget
        self._read = 0

    def seekable(self) -> bool:
        return self._raw.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._account(len(data))
        return data

    def _account(self, n: int) -> None:
        self._read += n
        total = self._budget.add_bytes(n)
        limits = self._budget.limits
        if self._read > limits.max_member_bytes:
            raise LimitExceeded(f"member larger than {limits.max_member_bytes:,} bytes (--max-member-size)")
        if total > limits.max_total_bytes:
            raise LimitExceeded(
                f"container holds more than {limits.max_total_bytes:,} bytes (--max-container-size)"
            )
        stored = self._member.stored_size
        if stored is not None and self._read > RATIO_FLOOR and self._read > limits.max_ratio * max(stored, 1):
            raise LimitExceeded(
                f"inflates more than {limits.max_ratio:g} times its stored size: a compression bomb"
            )
        self._budget.check_time()

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()
