"""Files and folders on local (or mounted) filesystems, walked without ever hanging.

Symlinks are not followed unless asked; when they are, a directory reached
twice (a loop, or two links to one place) is reported once and not re-entered.
FIFOs, sockets and devices are skipped: reading them could block or never end.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from vakta.items import Item


def _describe(exc: OSError) -> str:
    return f"cannot access: {exc.strerror or exc}"


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    return "special file"


@dataclass(frozen=True, slots=True)
class FilesystemSource:
    name: str = "file"

    def handles(self, target: str) -> bool:
        return "://" not in target or target.startswith("file://")

    def items(self, target: str, follow_symlinks: bool = False) -> Iterator[Item]:
        path = os.fsencode(target.removeprefix("file://"))
        try:
            st = os.stat(path) if follow_symlinks else os.lstat(path)
        except OSError as exc:
            yield Item(path, error=_describe(exc))
            return
        if stat.S_ISLNK(st.st_mode):
            # A link named on the command line is what the user asked for.
            try:
                st = os.stat(path)
            except OSError as exc:
                yield Item(path, error=f"broken symlink: {exc.strerror or exc}")
                return
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(path, st, follow_symlinks)
        else:
            yield _file_item(path, st, True)


def _file_item(path: bytes, st: os.stat_result, follow: bool) -> Item:
    if stat.S_ISREG(st.st_mode):
        return Item(
            path, st.st_size, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, follow_symlinks=follow
        )
    return Item(path, skip=_special_kind(st.st_mode))


def _walk(root: bytes, root_st: os.stat_result, follow: bool) -> Iterator[Item]:
    seen = {(root_st.st_dev, root_st.st_ino)}
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield Item(folder, error=f"cannot list folder: {exc.strerror or exc}")
            continue
        subdirs: list[bytes] = []
        for entry in entries:
            item_or_dir = _entry(entry, follow, seen)
            if isinstance(item_or_dir, bytes):
                subdirs.append(item_or_dir)
            elif item_or_dir is not None:
                yield item_or_dir
        stack.extend(reversed(subdirs))


def _entry(entry: os.DirEntry[bytes], follow: bool, seen: set[tuple[int, int]]) -> Item | bytes | None:
    """An item for a file, the path of a folder to enter, or None for nothing to do."""
    path = entry.path
    try:
        is_link = entry.is_symlink()
        if is_link and not follow:
            return Item(path, skip="symlink (not followed; use --follow-symlinks)")
        st = os.stat(path) if is_link else entry.stat(follow_symlinks=False)
    except OSError as exc:
        return Item(path, error=_describe(exc))
    if stat.S_ISDIR(st.st_mode):
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return (
                Item(path, skip="folder already scanned (symlink loop or second link)") if is_link else None
            )
        seen.add(key)
        return path
    return _file_item(path, st, follow)


SOURCE = FilesystemSource()
