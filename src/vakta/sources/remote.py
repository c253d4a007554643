"""Remote storage through fsspec: ``s3://bucket/prefix``, and any protocol an installed fsspec backend reads.

Objects are streamed with a small block cache, never copied to local disk:
blocks are large enough that hashing a big object sequentially costs few
requests, and few enough that a container reader seeking to the end and back
keeps its blocks.  Credentials and endpoints come the way each backend finds
them by default (s3fs: botocore's chain of ``AWS_*`` variables, ``~/.aws``,
instance roles); further options from fsspec's ``FSSPEC_<PROTOCOL>_<OPTION>``
variables or configuration files.  Every failure (no such bucket, access
denied, an object deleted after listing, a network failure) is an error on
its item, or on the target when it cannot be listed; the scan goes on.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, BinaryIO, cast

import fsspec
from fsspec.implementations.cached import CachingFileSystem

from vakta.items import Item

#: Bytes per request: sequential hashing of a large object costs one request per block.
BLOCK_SIZE = 8 << 20
#: Blocks kept per open object (32 MiB): the end of a ZIP stays cached while its members are read.
MAX_BLOCKS = 4

_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")

#: Extras of this package that bring a protocol's backend.
_EXTRAS = {"s3": "s3", "s3a": "s3"}


class UnreadableTargetError(ValueError):
    """A target no installed backend can read; the message says what to install or give instead."""


@dataclass(frozen=True, slots=True)
class RemoteSource:
    """Every URL that is not ``file://``: the exact complement of the filesystem source."""

    name: str = "remote"

    def handles(self, target: str) -> bool:
        return "://" in target and not target.startswith("file://")

    def items(self, target: str, follow_symlinks: bool = False) -> Iterator[Item]:
        try:
            fs, root = connect(target)
        except UnreadableTargetError as exc:
            yield Item(_url_bytes(target), error=str(exc))
            return
        yield from _walk(fs, root, target)


def connect(url: str) -> tuple[Any, str]:
    """The fsspec filesystem and its path for ``url``; a clear error when it cannot be read."""
    match = _URL.match(url)
    if match is None:
        raise UnreadableTargetError(
            "not a URL Vakta can read (chained fsspec URLs such as simplecache:: are not supported; "
            "a local path containing '://' can be given as file://PATH)"
        )
    protocol = match.group(1).lower()
    url = protocol + url[match.end(1) :]  # backends strip their scheme in lower case only
    cls = _backend(protocol)
    try:
        fs = cls(**cls._get_kwargs_from_urls(url))
        return fs, cls._strip_protocol(url)
    except Exception as exc:  # bad options or credentials configuration: this target only
        raise UnreadableTargetError(f"cannot connect to {protocol}://: {_describe(exc)}") from exc


def _backend(protocol: str) -> Any:
    """The fsspec class for ``protocol``, or an error naming the package to install."""
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        extra = _EXTRAS.get(protocol)
        hint = f" (pip install 'vakta[{extra}]')" if extra else ""
        raise UnreadableTargetError(
            f"{protocol}:// needs a package that is not installed: {exc}{hint}"
        ) from exc
    except ValueError as exc:
        raise UnreadableTargetError(
            f"unknown storage protocol {protocol}://: no installed fsspec backend reads it "
            "(see https://filesystem-spec.readthedocs.io/en/latest/api.html#other-known-implementations)"
        ) from exc
    if issubclass(cls, CachingFileSystem):
        raise UnreadableTargetError(f"{protocol}:// copies what it reads to local disk: give the inner URL")
    return cls


def _walk(fs: Any, root: str, url: str) -> Iterator[Item]:
    """The object ``url`` names, or every object below it; an error item when it cannot be listed."""
    try:
        info = fs.info(root)
    except Exception as exc:
        yield Item(_url_bytes(url), error=f"cannot list: {_describe(exc)}")
        return
    if info.get("type") == "directory":
        yield from _walk_folders(fs, root, _base_url(url))
    else:
        yield _object_item(fs, info, url)


def _walk_folders(fs: Any, root: str, url: str) -> Iterator[Item]:
    """Depth first, each folder's objects in name order before its subfolders (as the filesystem source)."""
    seen = {root}
    stack = [(root, url)]
    while stack:
        folder, folder_url = stack.pop()
        try:
            entries = _listing(fs, folder)
        except Exception as exc:
            yield Item(_url_bytes(folder_url), error=f"cannot list: {_describe(exc)}")
            continue
        subfolders = []
        for entry in entries:
            name = str(entry["name"]).rstrip("/")
            entry_url = _child_url(fs, root, url, name)
            kind = entry.get("type")
            if kind == "directory" and name not in seen:
                seen.add(name)
                subfolders.append((name, entry_url))
            elif kind == "file":
                yield _object_item(fs, entry, entry_url)
            elif kind != "directory":
                yield Item(_url_bytes(entry_url), skip=f"not a regular file ({kind})")
        stack.extend(reversed(subfolders))


def _listing(fs: Any, folder: str) -> list[dict[str, Any]]:
    """One folder's entries in name order, not kept in the backend's listing cache (a bucket can hold millions)."""
    try:
        return sorted(fs.ls(folder, detail=True), key=lambda e: str(e["name"]))
    finally:
        fs.invalidate_cache(folder)


def _base_url(target: str) -> str:
    """The target without trailing slashes after its scheme, to which member names are appended."""
    scheme, _, rest = target.partition("://")
    return f"{scheme}://{rest.rstrip('/')}"


def _child_url(fs: Any, root: str, url: str, name: str) -> str:
    """The URL of ``name`` spelt as the user spelt the target, so reports read as the command line."""
    prefix = root.rstrip("/") + "/"
    if name.startswith(prefix):
        return url + "/" + name[len(prefix) :]
    return str(fs.unstrip_protocol(name))


def _object_item(fs: Any, entry: Mapping[str, Any], url: str) -> Item:
    size = entry.get("size")
    return Item(
        _url_bytes(url),
        size=size if isinstance(size, int) else 0,
        mtime_ns=_mtime_ns(entry),
        opener=partial(open_object, fs, str(entry["name"])),
    )


def _mtime_ns(entry: Mapping[str, Any]) -> int:
    """Modification time from a listing entry; each backend names it its own way."""
    for key in ("LastModified", "mtime", "last_modified", "updated", "modified", "created"):
        value = entry.get(key)
        try:
            if isinstance(value, datetime):
                return int(value.timestamp() * 1e9)
            if isinstance(value, int | float):
                return int(value * 1e9)
            if isinstance(value, str):
                return int(datetime.fromisoformat(value).timestamp() * 1e9)
        except (ValueError, OverflowError, OSError):
            continue
    return 0


def _url_bytes(url: str) -> bytes:
    """The URL as item path bytes; undecodable names from a backend keep their original bytes."""
    try:
        return url.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return url.encode("utf-8", "surrogatepass")


def open_object(fs: Any, path: str) -> BinaryIO:
    """Open one object for streaming; module-level so that items pickle into worker processes."""
    try:
        raw = fs.open(
            path,
            "rb",
            block_size=BLOCK_SIZE,
            cache_type="blockcache",
            cache_options={"maxblocks": MAX_BLOCKS},
        )
    except Exception as exc:
        raise _read_error(exc) from exc
    return cast(BinaryIO, RemoteStream(raw))


class RemoteStream(io.RawIOBase):
    """An fsspec file whose failures are all ``OSError`` with a message saying what went wrong.

    Backends raise their own exceptions for network faults (aiohttp, botocore);
    the pipeline reports ``OSError`` as a read error on the item.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._call(self._raw.seekable))

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(self._call(self._raw.seek, offset, whence))

    def tell(self) -> int:
        return int(self._call(self._raw.tell))

    def read(self, size: int | None = -1) -> bytes:
        return bytes(self._call(self._raw.read, -1 if size is None else size))

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._call(self._raw.close)
        finally:
            super().close()

    def _call(self, method: Any, *args: Any) -> Any:
        try:
            return method(*args)
        except Exception as exc:
            raise _read_error(exc) from exc


def _read_error(exc: Exception) -> OSError:
    if isinstance(exc, FileNotFoundError):
        return FileNotFoundError(f"no longer exists (deleted after listing?): {_message(exc)}")
    if type(exc).__name__ == "FileExpired":  # s3fs: the ETag pinned at open no longer matches
        return OSError("changed while it was being read (replaced or rewritten): not hashed")
    return OSError(_describe(exc))


def _describe(exc: BaseException) -> str:
    """A one-line reason, named by kind: what a user can act on (credentials, the URL, the network)."""
    if isinstance(exc, FileNotFoundError):
        return f"no such bucket, folder or object: {_message(exc)}"
    if isinstance(exc, PermissionError):
        return f"access denied (check the credentials and their permissions): {_message(exc)}"
    if isinstance(exc, OSError):
        return _message(exc)
    return f"network or storage failure: {type(exc).__name__}: {_message(exc)}"


def _message(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return text or type(exc).__name__


SOURCE = RemoteSource()
