"""7z archives, and the libarchive streaming shared with the RAR reader (:mod:`vakta.containers.rar`).

libarchive (through libarchive-c) hands out entries one after the other and
decodes each entry's data while it is read, a block at a time: members are
streamed whatever their size, solid archives are decoded once, front to back,
and nothing is ever written anywhere.  py7zr, the pure-Python 7z library, was
not used: it only writes members out (to files, or to objects it pushes data
into) and its extraction refuses the whole archive when one member is named
``../x``, which would let such a name hide every other member.

Encrypted entries (7zAES, RAR passwords) are members with an error; an archive
whose names are encrypted too cannot be listed, which is an error on it.
"""

from __future__ import annotations

import ctypes
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from libarchive import ffi
from libarchive.entry import ArchiveEntry
from libarchive.exception import ArchiveError

from vakta.containers import Member

log = logging.getLogger(__name__)

#: Bytes handed to libarchive per read of the container.
BLOCK = 1 << 16
#: At most this much is decoded per read of a member.
MAX_READ = 1 << 20

_FATAL = -30  # ARCHIVE_FATAL

_entry_is_encrypted = ffi.libarchive.archive_entry_is_encrypted
_entry_is_encrypted.argtypes = [ctypes.c_void_p]
_entry_is_encrypted.restype = ctypes.c_int


class _Handle:
    """One libarchive read handle on a container stream.

    Several handles may read one stream (a member opened again while the first
    handle is still listing), so each keeps its own position and seeks the
    stream to it before reading.  A Python exception in a callback (a scan
    limit reached, a read error) must not unwind through C: it is kept, the
    callback reports a fatal error to libarchive, and the exception is raised
    again once libarchive returns.
    """

    def __init__(self, stream: BinaryIO, formats: tuple[str, ...], seekable: bool) -> None:
        self._stream = stream
        self._pos = 0
        #: Entries read so far: the current one is number ``entries - 1``.
        self.entries = 0
        self._failure: BaseException | None = None
        self._block = ctypes.create_string_buffer(BLOCK)
        self._read_cb = ffi.READ_CALLBACK(self._read)
        self._seek_cb = ffi.SEEK_CALLBACK(self._seek)
        self._p: Any = ffi.read_new()
        self._data = ctypes.create_string_buffer(MAX_READ)
        try:
            for name in formats:
                ffi.get_read_format_function(name)(self._p)
            if seekable:
                ffi.read_set_seek_callback(self._p, self._seek_cb)
            self._call(ffi.read_open, self._p, None, ffi.NO_OPEN_CB, self._read_cb, ffi.NO_CLOSE_CB)
        except BaseException:
            self.close()
            raise

    def _read(self, _archive: Any, _context: Any, out: Any) -> int:
        try:
            if self._stream.tell() != self._pos:
                self._stream.seek(self._pos)
            data = self._stream.read(BLOCK)
            ctypes.memmove(self._block, data, len(data))
            self._pos += len(data)
            out[0] = ctypes.addressof(self._block)
            return len(data)
        except BaseException as exc:  # kept and raised again after libarchive returns
            self._failure = exc
            return _FATAL

    def _seek(self, _archive: Any, _context: Any, offset: int, whence: int) -> int:
        try:
            self._pos = self._stream.seek(offset, whence)
            return self._pos
        except BaseException as exc:
            self._failure = exc
            return _FATAL

    def _call(self, function: Any, *args: Any) -> int:
        """Call libarchive: a kept Python failure is raised as it was, libarchive's own as ValueError."""
        try:
            result = int(function(*args))
        except ArchiveError as exc:
            self._raise_failure()
            raise ValueError(_text(exc.msg)) from exc
        self._raise_failure()
        return result

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def next_entry(self) -> ArchiveEntry | None:
        """The next entry's header, or None at the end of the archive."""
        entry = ArchiveEntry(self._p)
        if self._call(ffi.read_next_header2, self._p, entry._entry_p) == ffi.ARCHIVE_EOF:
            return None
        self.entries += 1
        return entry

    def on(self, index: int) -> bool:
        """True while the handle is open on entry ``index`` (counted from 0)."""
        return bool(self._p) and self.entries == index + 1

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the current entry's data; b"" at its end."""
        n = self._call(ffi.read_data, self._p, self._data, min(size, MAX_READ))
        if n < 0:
            raise ValueError(_text(ffi.error_string(self._p)))
        return self._data.raw[:n]

    def close(self) -> None:
        if self._p:
            ffi.read_free(self._p)
            self._p = None


class _EntryStream(io.RawIOBase):
    """The data of the entry a handle is on, read as libarchive decodes it (no seeking)."""

    def __init__(self, handle: _Handle, owned: bool) -> None:
        self._handle = handle
        self._owned = owned

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self._handle.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            if self._owned:
                self._handle.close()
        finally:
            super().close()


@dataclass(frozen=True)
class LibarchiveReader:
    """Reads the archives of the given content types with the given libarchive formats."""

    name: str
    content_types: frozenset[str]
    formats: tuple[str, ...]
    #: Let libarchive seek (7z keeps its index at the end); RAR is read front to back, since
    #: libarchive's RAR 4 reader lists nothing of a solid archive when it may seek.
    seek: bool = True
    #: Names of the encrypted entries, for a format whose libarchive reader does not flag them.
    locked: Callable[[BinaryIO], frozenset[str]] | None = None

    def accepts(self, content_type: str) -> bool:
        return content_type in self.content_types

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        #: The most any member can be stored in: the bound for the compression-bomb check.
        size = stream.seek(0, io.SEEK_END)
        stream.seek(0)
        locked = self.locked(stream) if self.locked else frozenset()
        stream.seek(0)
        handle = _Handle(stream, self.formats, self.seek)
        try:
            index = 0
            while (entry := handle.next_entry()) is not None:
                member = self._member(stream, handle, entry, index, size, locked)
                index += 1
                if member is not None:
                    yield member
        finally:
            handle.close()

    def _member(
        self,
        stream: BinaryIO,
        handle: _Handle,
        entry: ArchiveEntry,
        index: int,
        size: int,
        locked: frozenset[str],
    ) -> Member | None:
        """The entry as a member, or None when it holds no data (directory, link, device)."""
        if not entry.isreg or (ffi.entry_hardlink(entry._entry_p) and not entry.size):
            return None
        name = _name(entry)
        if name in locked or _entry_is_encrypted(entry._entry_p):
            return Member(name, size=entry.size, error="encrypted: not scanned")
        live = [True]

        def open_member() -> BinaryIO:
            """The first opening reads on from where the listing is; any other reads the archive again."""
            if live and handle.on(index):
                live.clear()
                return _EntryStream(handle, owned=False)  # type: ignore[return-value]
            return self._reopen(stream, index)

        return Member(name, open_member, size=entry.size, stored_size=size)

    def _reopen(self, stream: BinaryIO, index: int) -> BinaryIO:
        """A member's data again, through a new handle that skips the entries before it."""
        handle = _Handle(stream, self.formats, self.seek)
        try:
            while handle.entries <= index:
                if handle.next_entry() is None:
                    raise ValueError(f"entry {index + 1} is gone on a second reading")
        except BaseException:
            handle.close()
            raise
        return _EntryStream(handle, owned=True)  # type: ignore[return-value]


def _text(message: str | bytes | None) -> str:
    """libarchive's error message (bytes when it is not ASCII)."""
    if isinstance(message, bytes):
        return message.decode("utf-8", "backslashreplace")
    return message or "damaged data"


def _name(entry: ArchiveEntry) -> str:
    name = entry.pathname
    if isinstance(name, bytes):
        return name.decode("utf-8", "backslashreplace")
    return str(name) if name else "(no name)"


READER = LibarchiveReader("7z", frozenset({"application/x-7z-compressed"}), ("7zip",))
