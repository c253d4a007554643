"""The files of one filesystem, deleted ones included, as container members.

Choices, each for a reason:

- Every regular file is a member, named by its path (``/DCIM/a.jpg``); an NTFS
  alternate data stream is one too (``/a.txt:hidden``), as data can hide there.
- A deleted file (its name or its metadata unallocated) whose data TSK can still
  locate is a member with ``deleted`` set.  One whose data is gone (ext4 clears
  the block map on delete, NTFS reuses the MFT entry) is a member with an error,
  so the report says what could not be checked.
- ``$OrphanFiles`` (TSK's folder of deleted files whose names are gone) is
  walked: orphans with data left are deleted members; those with none are left
  out, as they have neither a name nor content to report.
- TSK's virtual files (``$MBR``, ``$FAT1``...) and the system files of NTFS,
  HFS+ and exFAT (``$MFT``, ``$BadClus``, ``$Extend``, ``$ALLOC_BITMAP``...:
  filesystem metadata, not files anyone stored) are skipped, as are symlinks,
  devices and sockets.
- A folder is entered once (keyed on its metadata address), so a crafted
  directory loop ends; a folder that cannot be listed is a member with an error.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import pytsk3  # type: ignore[import-not-found]

from vakta.containers import Member, MemberStream
from vakta.containers.disk.image import LIBRARY_ERRORS, library_message

log = logging.getLogger(__name__)

#: Largest single read from TSK: bounds memory whatever size the caller asks for.
MAX_READ = 8 << 20

ORPHANS = "$OrphanFiles"
#: Metadata addresses below these hold filesystem metadata (NTFS reserves MFT entries 0-23,
#: HFS+ catalog node ids below 16), shown by TSK as ``$`` files in the root.
_SYSTEM_BELOW = {int(pytsk3.TSK_FS_TYPE_NTFS): 24, int(pytsk3.TSK_FS_TYPE_HFS): 16}
#: The pseudo-files TSK names after exFAT's non-file directory entries.
_EXFAT_SYSTEM = frozenset(
    {"$ALLOC_BITMAP", "$UPCASE_TABLE", "$VOLUME_GUID", "$TEX_FAT", "$ACT", "$VOLUME_LABEL_NONE"}
)
_DATA_ATTRIBUTES = {
    int(pytsk3.TSK_FS_ATTR_TYPE_DEFAULT),
    int(pytsk3.TSK_FS_ATTR_TYPE_NTFS_DATA),
    int(pytsk3.TSK_FS_ATTR_TYPE_HFS_DATA),
}
_VIRTUAL = {int(pytsk3.TSK_FS_NAME_TYPE_VIRT), int(pytsk3.TSK_FS_NAME_TYPE_VIRT_DIR)}
_VIRTUAL_META = {int(pytsk3.TSK_FS_META_TYPE_VIRT), int(pytsk3.TSK_FS_META_TYPE_VIRT_DIR)}

_FS_NAMES = {
    int(getattr(pytsk3, f"TSK_FS_TYPE_{tsk}")): name
    for tsk, name in [
        *[(n, n) for n in ("FAT12", "FAT16", "FAT32", "NTFS", "ISO9660", "YAFFS2", "APFS")],
        *[(f"EXT{n}", f"ext{n}") for n in (2, 3, 4)],
        ("EXFAT", "exFAT"),
        ("HFS", "HFS+"),
        ("FFS1", "UFS1"),
        ("FFS1B", "UFS1"),
        ("FFS2", "UFS2"),
    ]
}


def filesystem_name(fs: Any) -> str:
    """A short name for the filesystem's type: ``FAT32``, ``NTFS``, ``ext4``, ``HFS+``."""
    kind = int(fs.info.ftype)
    return _FS_NAMES.get(kind, f"type 0x{kind:x}")


@dataclass(frozen=True, slots=True)
class _Folder:
    addr: int
    path: str
    #: Inside ``$OrphanFiles`` or a deleted folder: everything below is deleted.
    deleted: bool
    #: ``$OrphanFiles`` itself, whose entries TSK lists without their metadata.
    orphans: bool = False


def filesystem_members(fs: Any, prefix: str = "") -> Iterator[Member]:
    """Every regular file (and NTFS data stream) of ``fs``, named ``prefix`` + its path."""
    walk = _Walk(fs, prefix)
    root = int(fs.info.root_inum)
    walk.seen.add(root)
    stack = [_Folder(root, "", False)]
    while stack:
        folder = stack.pop()
        subfolders: list[_Folder] = []
        yield from walk.folder(folder, subfolders)
        stack.extend(reversed(subfolders))


class _Walk:
    """What one filesystem walk needs at every entry: the filesystem, its kind and the folders seen."""

    def __init__(self, fs: Any, prefix: str) -> None:
        self.fs = fs
        self.prefix = prefix
        self.system_below = _SYSTEM_BELOW.get(int(fs.info.ftype), 0)
        self.ntfs = int(fs.info.ftype) == int(pytsk3.TSK_FS_TYPE_NTFS)
        self.exfat = int(fs.info.ftype) == int(pytsk3.TSK_FS_TYPE_EXFAT)
        self.block_size = int(fs.info.block_size)
        self.seen: set[int] = set()

    def folder(self, folder: _Folder, subfolders: list[_Folder]) -> Iterator[Member]:
        """Members for the files in ``folder``; its subfolders go to ``subfolders``."""
        try:
            for entry in self.fs.open_dir(inode=folder.addr):
                yield from self._entry(entry, folder, subfolders)
        except LIBRARY_ERRORS as exc:
            message = f"cannot list folder: {library_message(exc)}"
            if folder.deleted:
                log.debug("%s%s/: deleted folder, %s", self.prefix, folder.path, message)
            else:
                yield Member(f"{self.prefix}{folder.path}/", error=message)

    def _entry(self, entry: Any, folder: _Folder, subfolders: list[_Folder]) -> Iterator[Member]:
        name = entry.info.name
        text = name.name.decode("utf-8", "backslashreplace")
        if text in (".", "..") or self._system_file(name, text, folder):
            return
        if folder.orphans:
            entry = self._with_metadata(entry)
        elif folder.deleted and not int(name.flags) & int(pytsk3.TSK_FS_NAME_FLAG_UNALLOC):
            return  # a live folder now holds the deleted one's blocks: its files are listed where it is
        if entry is None:
            return
        meta = entry.info.meta
        path = f"{folder.path}/{text}"
        if int(name.type) in _VIRTUAL or (meta is not None and int(meta.type) in _VIRTUAL_META):
            if text == ORPHANS and folder.path == "" and self._enter(name.meta_addr):
                subfolders.append(_Folder(int(name.meta_addr), path, True, orphans=True))
            return
        deleted = folder.deleted or _unallocated(name, meta)
        if _is_folder(name, meta):
            if not (deleted and _reallocated(name, meta, self.ntfs)) and self._enter(name.meta_addr):
                subfolders.append(_Folder(int(name.meta_addr), path, deleted))
            return
        if _is_regular(name, meta):
            yield from self._file(entry, name, path, deleted, folder.orphans)

    def _with_metadata(self, entry: Any) -> Any:
        """An orphan with its metadata loaded, or None when it cannot be."""
        try:
            return self.fs.open_meta(inode=int(entry.info.name.meta_addr))
        except LIBRARY_ERRORS as exc:
            log.debug("orphan %d: %s", int(entry.info.name.meta_addr), library_message(exc))
            return None

    def _file(self, entry: Any, name: Any, path: str, deleted: bool, orphan: bool) -> Iterator[Member]:
        meta = entry.info.meta
        where = self.prefix + path
        if deleted and meta is None:
            yield Member(where, deleted=True, error="deleted, its metadata is gone: not recoverable")
            return
        if deleted and not orphan and _reallocated(name, meta, self.ntfs):
            yield Member(where, deleted=True, error="deleted, its metadata now describes another file")
            return
        try:
            streams = _data_streams(entry, self.ntfs, self.block_size)
        except LIBRARY_ERRORS as exc:
            if not orphan:
                yield Member(
                    where, deleted=deleted, error=f"cannot read its attributes: {library_message(exc)}"
                )
            return
        for stream in streams:
            member = f"{where}:{stream.name}" if stream.name else where
            if deleted and not (stream.size and stream.lost is None):
                if not orphan:  # an orphan has no name either: nothing to report
                    lost = stream.lost if stream.size else "no data left (size 0)"
                    yield Member(member, deleted=True, error=f"deleted, {lost}: not recoverable")
                continue
            yield Member(
                member,
                open=_opener(entry, stream),
                size=stream.size,
                stored_size=stream.stored,
                deleted=deleted,
            )

    def _system_file(self, name: Any, text: str, folder: _Folder) -> bool:
        if folder.path or not text.startswith("$"):
            return False
        return int(name.meta_addr) < self.system_below or (self.exfat and text in _EXFAT_SYSTEM)

    def _enter(self, addr: int) -> bool:
        """True the first time a folder is reached: a directory loop is entered once."""
        if int(addr) in self.seen:
            return False
        self.seen.add(int(addr))
        return True


def _unallocated(name: Any, meta: Any) -> bool:
    if int(name.flags) & int(pytsk3.TSK_FS_NAME_FLAG_UNALLOC):
        return True
    return meta is not None and bool(int(meta.flags) & int(pytsk3.TSK_FS_META_FLAG_UNALLOC))


def _reallocated(name: Any, meta: Any, ntfs: bool) -> bool:
    """A deleted name whose metadata entry was given to another file since."""
    if meta is None:
        return False
    if int(meta.flags) & int(pytsk3.TSK_FS_META_FLAG_ALLOC):
        return True
    return ntfs and int(name.meta_seq) != int(meta.seq)


def _is_folder(name: Any, meta: Any) -> bool:
    if meta is not None:
        return int(meta.type) == int(pytsk3.TSK_FS_META_TYPE_DIR)
    return int(name.type) == int(pytsk3.TSK_FS_NAME_TYPE_DIR)


def _is_regular(name: Any, meta: Any) -> bool:
    if meta is not None:
        return int(meta.type) == int(pytsk3.TSK_FS_META_TYPE_REG)
    return int(name.type) == int(pytsk3.TSK_FS_NAME_TYPE_REG)


@dataclass(frozen=True, slots=True)
class _DataStream:
    """One readable stream of a file: its main data (``name`` empty) or an NTFS named stream."""

    name: str
    attr_type: int
    attr_id: int
    size: int
    #: Bytes the stream has on disk (holes of a sparse file excluded): the driver's bomb check.
    stored: int
    #: Why its bytes are not all located any more, or None (only a deleted file's matters).
    lost: str | None


def _data_streams(entry: Any, ntfs: bool, block_size: int) -> list[_DataStream]:
    """The file's main data, plus its named data streams on NTFS."""
    size = int(entry.info.meta.size)
    main = _DataStream("", int(pytsk3.TSK_FS_ATTR_TYPE_DEFAULT), -1, size, size, "it has no data attribute")
    named: list[_DataStream] = []
    for attr in entry:
        info = attr.info
        if int(info.type) not in _DATA_ATTRIBUTES:
            continue
        label = info.name.decode("utf-8", "backslashreplace") if info.name else ""
        if not label and main.lost:
            main = _stream("", attr, main.attr_type, -1, size, block_size)
        elif label and ntfs:
            named.append(_stream(label, attr, int(info.type), int(info.id), int(info.size), block_size))
    return [main, *named]


def _stream(label: str, attr: Any, attr_type: int, attr_id: int, size: int, block_size: int) -> _DataStream:
    """The stream of one attribute, with what is left of it on disk."""
    flags = int(attr.info.flags)
    if flags & int(pytsk3.TSK_FS_ATTR_RES) or not flags & int(pytsk3.TSK_FS_ATTR_NONRES):
        return _DataStream(label, attr_type, attr_id, size, size, None)  # resident: in the metadata itself
    sparse = int(pytsk3.TSK_FS_ATTR_RUN_FLAG_SPARSE) | int(pytsk3.TSK_FS_ATTR_RUN_FLAG_FILLER)
    covered = located = 0
    for run in attr:
        covered += int(run.len) * block_size
        located += 0 if int(run.flags) & sparse else int(run.len) * block_size
    lost = None
    if not located:
        lost = "its data is no longer located"  # ext4 clears the block map on delete
    elif covered < size:
        lost = f"only {covered:,} of its {size:,} bytes are still located (overwritten or fragmented)"
    return _DataStream(label, attr_type, attr_id, size, min(located, size), lost)


def _opener(entry: Any, stream: _DataStream) -> Callable[[], BinaryIO]:
    def open_stream() -> BinaryIO:
        return TskFileStream(entry, stream.size, stream.attr_type, stream.attr_id)  # type: ignore[return-value]

    return open_stream


class TskFileStream(MemberStream):
    """One file's bytes read through TSK at any offset, never more than :data:`MAX_READ` at a time."""

    def __init__(self, entry: Any, size: int, attr_type: int, attr_id: int) -> None:
        self._entry = entry
        self._size = size
        self._type = attr_type
        self._id = attr_id
        self._pos = 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        """At most :data:`MAX_READ` bytes (RawIOBase would allocate ``size`` bytes first)."""
        if size is None or size < 0:
            return self.readall()
        # TSK's own bytes object, handed on as is: a buffer to read into and a
        # copy out of it cost three passes over every byte of the image's files.
        return self._read(min(size, MAX_READ))

    def readinto(self, buffer: Any) -> int:
        data = self._read(min(len(buffer), MAX_READ))
        buffer[: len(data)] = data
        return len(data)

    def _read(self, size: int) -> bytes:
        want = min(size, self._size - self._pos)
        if want <= 0:
            return b""
        try:
            data: bytes = self._entry.read_random(self._pos, want, self._type, self._id)
        except LIBRARY_ERRORS as exc:
            raise OSError(f"read error at offset {self._pos:,}: {library_message(exc)}") from None
        if not data:
            raise OSError(
                f"nothing readable at offset {self._pos:,} of {self._size:,} bytes (image truncated?)"
            )
        self._pos += len(data)
        return data
