"""Open containers recursively and hash every member, each with its location chain.

Every member becomes one :class:`~vakta.signals.model.Signals`, in depth-first
order, whatever goes wrong: an unreadable member, a limit reached or a reader
failing on damaged bytes is an error on that member (or on the container,
when it stops the listing) and the rest goes on.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from vakta.containers import Budget, LimitedStream, LimitExceeded, Limits, Member, reader_for
from vakta.signals.compute import KnownGoodCheck, compute_signals
from vakta.signals.model import HashOptions, Signals
from vakta.signals.sniff import content_type

log = logging.getLogger(__name__)

Opener = Callable[[], BinaryIO]

#: Copies of nested containers held in memory at once for one top-level item (see :class:`_Copy`).
COPY_BYTES = 256 << 20


@dataclass(slots=True)
class Expansion:
    """The settings and the shared budget of one top-level item's expansion."""

    options: HashOptions
    known_good: KnownGoodCheck | None
    budget: Budget
    #: Bytes of member copies held now, down the chain being opened.
    copied: int = 0

    @classmethod
    def start(cls, options: HashOptions, known_good: KnownGoodCheck | None, limits: Limits) -> Expansion:
        return cls(options, known_good, Budget(limits))


def member_signals(parent: Signals, open_parent: Opener, expansion: Expansion) -> list[Signals]:
    """Signals of every member below ``parent`` (not ``parent`` itself); errors land on ``parent``."""
    out: list[Signals] = []
    _expand(parent, open_parent, expansion, frozenset(), out)
    return out


def _expand(
    parent: Signals, open_parent: Opener, expansion: Expansion, ancestors: frozenset[str], out: list[Signals]
) -> None:
    if reader_for(parent.type) is None:
        return
    try:
        with open_parent() as stream:
            _list_members(parent, _seekable(stream, expansion.options), expansion, ancestors, out)
    except LimitExceeded as exc:
        parent.errors.append(str(exc))
    except OSError as exc:
        parent.errors.append(f"cannot open as a container: {exc.strerror or exc}")


def _list_members(
    parent: Signals, stream: BinaryIO, expansion: Expansion, ancestors: frozenset[str], out: list[Signals]
) -> None:
    reader = reader_for(parent.type)
    if reader is None:
        return
    limits = expansion.budget.limits
    if len(parent.inside) >= limits.max_depth:
        parent.errors.append(f"nested deeper than {limits.max_depth} levels (--max-depth): not opened")
        return
    if parent.sha256 and parent.sha256 in ancestors:
        parent.errors.append("contains itself (a recursive archive): not opened again")
        return
    inner = ancestors | {parent.sha256 or ""}
    try:
        for member in reader.members(stream):
            expansion.budget.count_member()
            _hash_member(parent, member, expansion, inner, out)
    except LimitExceeded as exc:
        parent.errors.append(str(exc))
    except ValueError as exc:
        parent.errors.append(f"{reader.name}: {exc}")
    except Exception as exc:  # a reader bug or damaged bytes must cost only this container
        log.exception("%s reader failed on %s", reader.name, parent.location)
        parent.errors.append(f"{reader.name} reader failed: {type(exc).__name__}: {exc}")


def _hash_member(
    parent: Signals, member: Member, expansion: Expansion, ancestors: frozenset[str], out: list[Signals]
) -> None:
    signals = Signals(
        path=parent.path,
        path_b64=parent.path_b64,
        inside=[*parent.inside, member.name],
        deleted=member.deleted,
        parent_md5=parent.md5,
    )
    out.append(signals)
    if member.error or member.open is None:
        signals.errors.append(member.error or "member cannot be read")
        return
    budget = expansion.budget

    def open_member() -> BinaryIO:
        assert member.open is not None
        return LimitedStream(member.open(), member, budget)  # type: ignore[return-value]

    copy = _Copy(COPY_BYTES - expansion.copied)
    try:
        with open_member() as stream:
            compute_signals(copy.tee(stream), signals, expansion.options, expansion.known_good)
    except LimitExceeded as exc:
        _clear_partial(signals)
        signals.errors.append(str(exc))
        return
    except OSError as exc:
        signals.errors.append(f"cannot read member: {exc.strerror or exc}")
        return
    except (ValueError, EOFError) as exc:  # corrupt compressed data, CRC mismatch, truncation
        _clear_partial(signals)
        signals.errors.append(f"cannot read member: {exc}")
        return
    if member.size is not None and signals.size is not None and signals.size != member.size:
        signals.errors.append(f"container says {member.size:,} bytes, member has {signals.size:,}")
    if signals.skipped:
        return
    data = copy.data()
    if data is None:
        _expand(signals, open_member, expansion, ancestors, out)
        return
    expansion.copied += len(data)
    try:
        _expand(signals, lambda: io.BytesIO(data), expansion, ancestors, out)
    finally:
        expansion.copied -= len(data)


class _Copy:
    """A copy of a member that sniffs as a container, taken while it is hashed, to open it from memory.

    Opening a member again means decoding it again: a member of a solid 7z or
    RAR, or of a .tar.gz, from the start of the archive; a ZIP inside a
    compressed member, once per seek of its central directory reader.  Copies
    held down one chain stay within COPY_BYTES; a larger member is opened again.
    """

    def __init__(self, room: int) -> None:
        self._room = room
        self._chunks: list[bytes] | None = None
        self._size = 0
        self._first = True

    def tee(self, stream: BinaryIO) -> BinaryIO:
        return _Tee(stream, self)  # type: ignore[return-value]

    def add(self, chunk: bytes) -> None:
        if self._first:
            self._first = False
            if self._room > 0 and reader_for(content_type(chunk)) is not None:
                self._chunks = []
        if self._chunks is not None:
            self._size += len(chunk)
            self._chunks.append(chunk)
            if self._size > self._room:
                self._chunks = None

    def drop(self) -> None:
        """The stream was rewound (a large video read twice): the copy would not be the member."""
        self._first = False
        self._chunks = None

    def data(self) -> bytes | None:
        chunks, self._chunks = self._chunks, None
        return None if chunks is None else b"".join(chunks)


class _Tee(io.RawIOBase):
    """Passes a member's bytes through to the hashers and hands each read to a :class:`_Copy`."""

    def __init__(self, raw: BinaryIO, copy: _Copy) -> None:
        self._raw = raw
        self._copy = copy

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._raw.seekable()

    def tell(self) -> int:
        return self._raw.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._copy.drop()
        return self._raw.seek(offset, whence)

    def read(self, size: int | None = -1) -> bytes:
        data = self._raw.read(-1 if size is None else size)
        self._copy.add(data)
        return data

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _clear_partial(signals: Signals) -> None:
    """Digests of a member read only in part describe no file: drop them."""
    signals.md5 = signals.sha1 = signals.sha256 = None
    signals.size = None


def _seekable(stream: BinaryIO, options: HashOptions) -> BinaryIO:
    """Container readers need to seek; a stream that cannot is held in memory up to the decode limit."""
    if stream.seekable():
        return stream
    data = stream.read(options.max_decode_bytes + 1)
    if len(data) > options.max_decode_bytes:
        raise LimitExceeded(
            f"nested container over {options.max_decode_bytes:,} bytes in a stream that cannot seek: not opened"
        )
    return io.BytesIO(data)
