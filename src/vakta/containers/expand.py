"""Open containers recursively and hash every member, each with its location chain.

Every member becomes one :class:`~vakta.signals.model.Signals`, in depth-first
order, whatever goes wrong: an unreadable member, a limit reached or a reader
failing on damaged bytes is an error on that member (or on the container,
when it stops the listing) and the rest goes on.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO

from vakta.containers import Budget, LimitedStream, LimitExceeded, Limits, Member, MemberStream, reader_for
from vakta.containers.shard import Shard
from vakta.signals.compute import KnownGoodCheck, compute_signals, compute_signals_of_bytes
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
    #: Bytes of member copies held now, down the chains being opened.
    copied: int = 0
    #: Threads hashing the members of the top-level container (1: all in the caller's thread).
    threads: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def start(
        cls, options: HashOptions, known_good: KnownGoodCheck | None, limits: Limits, threads: int = 0
    ) -> Expansion:
        return cls(options, known_good, Budget(limits), threads=threads or default_threads())

    def reserve(self, n: int) -> int:
        """Room left for member copies after taking ``n`` bytes of it (``n`` may be negative: a release)."""
        with self._lock:
            self.copied += n
            return COPY_BYTES - self.copied


#: Members up to this size are read whole by the listing thread and hashed on the pool.
PARALLEL_BYTES = 96 << 20
#: Bytes of such members waiting for or being hashed at once.
IN_FLIGHT_BYTES = 256 << 20

_POOL: tuple[int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def default_threads() -> int:
    """Member-hashing threads: this machine's cores, at most 4 (hashlib, Pillow and numpy free the GIL)."""
    return max(1, min(4, os.cpu_count() or 1))


def _member_pool(threads: int) -> ThreadPoolExecutor:
    """This process's member-hashing threads (started once; anew after a fork)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            _POOL = (os.getpid(), ThreadPoolExecutor(threads, thread_name_prefix="vakta-member"))
        return _POOL[1]


def member_signals(
    parent: Signals, open_parent: Opener, expansion: Expansion, shard: Shard | None = None
) -> list[Signals]:
    """Signals of every member below ``parent`` (not ``parent`` itself); errors land on ``parent``.

    The members of the top-level container are read one after the other (as
    readers require) and hashed on :func:`default_threads` threads, so a single
    disk image or archive uses every core; what is nested deeper is hashed in
    the thread of the member it is inside.  The order is depth-first, as if
    hashed one by one.  With ``shard``, only that share of the top-level
    members (and what is inside them) is hashed; ``shard.positions`` says where
    each sat in the listing.
    """
    out: list[Signals] = []
    _expand(parent, open_parent, expansion, frozenset(), out, parallel=expansion.threads > 1, shard=shard)
    return out


def _expand(
    parent: Signals,
    open_parent: Opener,
    expansion: Expansion,
    ancestors: frozenset[str],
    out: list[Signals],
    parallel: bool = False,
    shard: Shard | None = None,
) -> None:
    if reader_for(parent.type) is None:
        return
    try:
        with open_parent() as stream:
            seekable = _seekable(stream, expansion.options)
            _list_members(parent, seekable, expansion, ancestors, out, parallel, shard)
    except LimitExceeded as exc:
        parent.errors.append(str(exc))
    except OSError as exc:
        parent.errors.append(f"cannot open as a container: {exc.strerror or exc}")


def _list_members(
    parent: Signals,
    stream: BinaryIO,
    expansion: Expansion,
    ancestors: frozenset[str],
    out: list[Signals],
    parallel: bool = False,
    shard: Shard | None = None,
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
    slots = _Slots(expansion, out) if parallel else None
    try:
        for member in reader.members(stream):
            expansion.budget.count_member()
            if shard is not None and not shard.owns(member):
                continue
            if slots is None or not slots.take(parent, member, inner):
                _hash_member(parent, member, expansion, inner, slots.inline() if slots else out)
    except LimitExceeded as exc:
        parent.errors.append(str(exc))
    except ValueError as exc:
        parent.errors.append(f"{reader.name}: {exc}")
    except Exception as exc:  # a reader bug or damaged bytes must cost only this container
        log.exception("%s reader failed on %s", reader.name, parent.location)
        parent.errors.append(f"{reader.name} reader failed: {type(exc).__name__}: {exc}")
    finally:
        if slots is not None:
            slots.finish()


class _Slots:
    """Members of one container in listing order: hashed inline, or read whole here and hashed on the pool.

    ``out`` receives each member (and what is inside it) in listing order once
    the members before it are done; at most :data:`IN_FLIGHT_BYTES` of read
    members wait, so memory stays bounded whatever the container holds.
    """

    def __init__(self, expansion: Expansion, out: list[Signals]) -> None:
        self._expansion = expansion
        self._out = out
        self._pool = _member_pool(expansion.threads)
        self._queue: deque[Future[list[Signals]] | list[Signals]] = deque()
        self._sizes: deque[int] = deque()
        self._bytes = 0

    def inline(self) -> list[Signals]:
        """A slot for a member hashed in this thread (large, or unreadable)."""
        slot: list[Signals] = []
        self._queue.append(slot)
        self._sizes.append(0)
        return slot

    def take(self, parent: Signals, member: Member, ancestors: frozenset[str]) -> bool:
        """Read a small member whole and queue its hashing; False if it is to be hashed inline."""
        if member.error or member.open is None or (member.size is not None and member.size > PARALLEL_BYTES):
            return False
        try:
            with LimitedStream(member.open(), member, self._expansion.budget) as stream:
                data = _read_up_to(stream, PARALLEL_BYTES + 1)
        except (LimitExceeded, OSError, ValueError, EOFError):
            return False  # hashed inline, where the failure becomes the member's error
        if len(data) > PARALLEL_BYTES:
            return False  # larger than it said: hashed inline, reading it again
        while self._queue and (self._bytes + len(data) > IN_FLIGHT_BYTES or len(self._queue) > 64):
            self._emit_first()
        future = self._pool.submit(_hash_read_member, parent, member, data, self._expansion, ancestors)
        self._queue.append(future)
        self._sizes.append(len(data))
        self._bytes += len(data)
        return True

    def _emit_first(self) -> None:
        slot = self._queue.popleft()
        self._bytes -= self._sizes.popleft()
        self._out.extend(slot if isinstance(slot, list) else slot.result())

    def finish(self) -> None:
        while self._queue:
            self._emit_first()


def _read_up_to(stream: BinaryIO | LimitedStream, limit: int) -> bytes:
    """Up to ``limit`` bytes: a raw stream may return less than asked before its end."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = stream.read(min(limit - size, 8 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _hash_read_member(
    parent: Signals, member: Member, data: bytes, expansion: Expansion, ancestors: frozenset[str]
) -> list[Signals]:
    """On a pool thread: a member already read whole, and everything inside it."""
    out: list[Signals] = []
    try:
        _hash_member(parent, member, expansion, ancestors, out, data)
    except Exception as exc:  # never lose the member: the failure is its error
        log.exception("hashing %s failed", member.name)
        if not out:
            out.append(_member_signals(parent, member))
        out[0].errors.append(f"hashing failed: {type(exc).__name__}: {exc}")
    return out


def _member_signals(parent: Signals, member: Member) -> Signals:
    return Signals(
        path=parent.path,
        path_b64=parent.path_b64,
        inside=[*parent.inside, member.name],
        deleted=member.deleted,
        parent_md5=parent.md5,
    )


def _hash_member(
    parent: Signals,
    member: Member,
    expansion: Expansion,
    ancestors: frozenset[str],
    out: list[Signals],
    data: bytes | None = None,
) -> None:
    """Hash one member (read from its stream, or ``data`` when already read) and what is inside it."""
    signals = _member_signals(parent, member)
    out.append(signals)
    if member.error or member.open is None:
        signals.errors.append(member.error or "member cannot be read")
        return
    budget = expansion.budget

    def open_member() -> BinaryIO:
        if data is not None:
            return io.BytesIO(data)
        assert member.open is not None
        return LimitedStream(member.open(), member, budget)  # type: ignore[return-value]

    copy = _Copy(0 if data is not None else expansion.reserve(0))
    try:
        if data is not None:
            compute_signals_of_bytes(data, signals, expansion.options, expansion.known_good)
        else:
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
    if data is not None:  # already in memory: open it from there
        _expand(signals, open_member, expansion, ancestors, out)
        return
    copied = copy.data()
    if copied is None:
        _expand(signals, open_member, expansion, ancestors, out)
        return
    expansion.reserve(len(copied))
    try:
        _expand(signals, lambda: io.BytesIO(copied), expansion, ancestors, out)
    finally:
        expansion.reserve(-len(copied))


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


class _Tee(MemberStream):
    """Passes a member's bytes through to the hashers and hands each read to a :class:`_Copy`."""

    def __init__(self, raw: BinaryIO, copy: _Copy) -> None:
        self._raw = raw
        self._copy = copy

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
