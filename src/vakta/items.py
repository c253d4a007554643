"""Items: the things a source yields for hashing (today files; later archive members...)."""

from __future__ import annotations

import base64
import io
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO


def display_path(raw: bytes) -> tuple[str, str | None]:
    """A printable path, plus the raw bytes in base64 when they are not valid UTF-8."""
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace"), base64.b64encode(raw).decode("ascii")


class ItemChangedError(OSError):
    """The file was replaced or modified between listing and reading it."""


@dataclass(frozen=True, slots=True)
class Item:
    """A file to hash, or a place the source could not turn into one.

    ``error`` marks a place that could not be read (an error for the report);
    ``skip`` one that is deliberately not scanned (FIFO, device, symlink).
    """

    path: bytes
    size: int = 0
    dev: int = 0
    ino: int = 0
    mtime_ns: int = 0
    #: Change time: unlike mtime no tool can set it back, so the cache key uses it.
    ctime_ns: int = 0
    error: str | None = None
    skip: str | None = None
    follow_symlinks: bool = False
    #: Opens an item that is not a local file (a URL through fsspec); picklable, for worker processes.
    opener: Callable[[], BinaryIO] | None = None
    #: The item's bytes when it is already in memory (a web body): hashed as they are, no stream.
    data: bytes | None = None

    @property
    def display(self) -> tuple[str, str | None]:
        return display_path(self.path)

    @property
    def cache_key(self) -> tuple[int, int, int, int, int]:
        return (self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns)

    @property
    def cacheable(self) -> bool:
        """Only local files have the (device, inode, ctime) identity the scan cache keys on."""
        return self.ino != 0 and self.opener is None and not (self.error or self.skip)

    def open(self) -> BinaryIO:
        """Open for reading without ever blocking on a FIFO swapped in after listing."""
        if self.data is not None:
            return io.BytesIO(self.data)
        if self.opener is not None:
            return self.opener()
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
        if not self.follow_symlinks:
            flags |= getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.path, flags)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ItemChangedError("no longer a regular file")
            if self.ino and (st.st_dev, st.st_ino) != (self.dev, self.ino):
                raise ItemChangedError("file was replaced during the scan")
            if hasattr(os, "set_blocking"):
                os.set_blocking(fd, True)
            stream = os.fdopen(fd, "rb", buffering=0)
        except BaseException:
            os.close(fd)
            raise
        stream.name = self.path  # as open(path) names it: a reader finds sibling files (.E02...) by it
        return stream

    def changed_since_listing(self, stream: BinaryIO) -> bool:
        if self.opener is not None or not self.ino:
            return False
        st = os.fstat(stream.fileno())
        return (st.st_size, st.st_mtime_ns) != (self.size, self.mtime_ns)
