"""Read an item once: digests on the way through, then the content hashers on the bytes.

Items over ``max_decode_bytes`` are not kept in memory.  When the stream can
seek, it is rewound after the digest pass for the hashers that decode from a
stream (:class:`~vakta.signals.hashers.StreamHasher`); the others, and every
hasher on a stream that cannot seek, leave such items at their digests.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import BinaryIO

from vakta.signals.hashers import Hasher, StreamHasher, hashers_for
from vakta.signals.model import HashOptions, Signals
from vakta.signals.sniff import SNIFF_BYTES, content_type

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20

#: Given an item's digests, the name of the known-good list it is on, or None.
KnownGoodCheck = Callable[[Signals], str | None]


def compute_signals(
    stream: BinaryIO,
    signals: Signals,
    options: HashOptions,
    known_good: KnownGoodCheck | None = None,
) -> Signals:
    """Fill ``signals`` from ``stream``; decode errors become entries of ``signals.errors``.

    Read errors (``OSError``) propagate: the caller owns the item and reports them.
    """
    digests = _Digests()
    start = _start_position(stream)
    first = stream.read(CHUNK_SIZE)
    signals.type = content_type(first)
    wanted = hashers_for(signals.type)
    kept: list[bytes] | None = [first] if wanted and len(first) <= options.max_decode_bytes else None
    # Digests of an item held for decoding can wait and run beside the decoder (unless a
    # known-good check needs them first): a video's answer comes sooner.
    deferred = kept is not None and known_good is None
    size = len(first)
    if not deferred:
        digests.update([first])
    while chunk := stream.read(CHUNK_SIZE):
        size += len(chunk)
        if kept is not None and size > options.max_decode_bytes:
            if deferred:
                digests.update(kept)
            kept, deferred = None, False
        if kept is not None:
            kept.append(chunk)
        if not deferred:
            digests.update([chunk])
    signals.size = size
    if not deferred:
        digests.finish(signals)
    if _known_good(signals, known_good):
        return signals
    if kept is not None:
        pending = digests.in_background(kept) if deferred and size >= OVERLAP_BYTES else None
        if deferred and pending is None:
            digests.update(kept)
        _decode(b"".join(kept), wanted, signals, options)
        if pending is not None:
            pending.result()
        if deferred:
            digests.finish(signals)
    elif wanted:
        _too_large(stream, start, wanted, signals, options)
    return signals


def compute_signals_of_bytes(
    data: bytes,
    signals: Signals,
    options: HashOptions,
    known_good: KnownGoodCheck | None = None,
) -> Signals:
    """:func:`compute_signals` for an item already in memory (a container member read whole).

    The digests read views of ``data`` and the hashers get ``data`` itself: no
    copy of the item is made, where a stream over it would copy every chunk.
    """
    signals.type = content_type(data[:SNIFF_BYTES])
    signals.size = len(data)
    wanted = hashers_for(signals.type)
    decode = bool(wanted) and len(data) <= options.max_decode_bytes
    view = memoryview(data)
    chunks = [view[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]
    digests = _Digests()
    pending = None
    if decode and known_good is None and len(data) >= OVERLAP_BYTES:
        pending = digests.in_background(chunks)
    else:
        digests.update(chunks)
        digests.finish(signals)
    if _known_good(signals, known_good):
        return signals
    if decode:
        _decode(data, wanted, signals, options)
    elif wanted:
        _too_large(io.BytesIO(data), 0, wanted, signals, options)
    if pending is not None:
        pending.result()
        digests.finish(signals)
    return signals


def _known_good(signals: Signals, known_good: KnownGoodCheck | None) -> bool:
    """Whether the item's digests are on a known-good list (then it is marked skipped)."""
    name = known_good(signals) if known_good is not None else None
    if name is not None:
        signals.skipped = f"on known-good list {name!r}"
    return name is not None


def _decode(data: bytes, wanted: list[Hasher], signals: Signals, options: HashOptions) -> None:
    """Every content hasher on an item held whole in memory."""
    for hasher in wanted:
        _run(hasher.name, signals, partial(hasher.compute, data, signals, options))


#: Items at least this large have their digests computed beside the decoder.
OVERLAP_BYTES = 1 << 20

_DIGEST_THREAD: tuple[int, ThreadPoolExecutor] | None = None
_DIGEST_LOCK = threading.Lock()


class _Digests:
    """MD5, SHA-1 and SHA-256 of one item, fed chunk by chunk (hashlib frees the GIL meanwhile)."""

    def __init__(self) -> None:
        self._hashes = (
            hashlib.md5(usedforsecurity=False),
            hashlib.sha1(usedforsecurity=False),
            hashlib.sha256(),
        )

    def update(self, chunks: Sequence[bytes | memoryview]) -> None:
        for chunk in chunks:
            for h in self._hashes:
                h.update(chunk)

    def in_background(self, chunks: Sequence[bytes | memoryview]) -> Future[None]:
        """Digest ``chunks`` on this process's digest thread (started once, anew after a fork)."""
        global _DIGEST_THREAD
        with _DIGEST_LOCK:
            if _DIGEST_THREAD is None or _DIGEST_THREAD[0] != os.getpid():
                _DIGEST_THREAD = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="vakta-digest"))
            return _DIGEST_THREAD[1].submit(self.update, list(chunks))

    def finish(self, signals: Signals) -> None:
        signals.md5, signals.sha1, signals.sha256 = (h.hexdigest() for h in self._hashes)


def _too_large(
    stream: BinaryIO, start: int | None, wanted: list[Hasher], signals: Signals, options: HashOptions
) -> None:
    """Hash an item over the memory limit from its stream, where a hasher can and the stream seeks."""
    limit = f"{options.max_decode_bytes:,} byte limit"
    streamed = False
    for hasher in wanted:
        if start is not None and isinstance(hasher, StreamHasher):
            stream.seek(start)  # an OSError here is a read error: the caller reports it
            _run(hasher.name, signals, partial(hasher.compute_stream, stream, signals, options))
            streamed = True
    skipped = [h.name for h in wanted if not (start is not None and isinstance(h, StreamHasher))]
    if skipped and streamed:
        signals.errors.append(f"too large to decode ({limit}): no {', '.join(skipped)}")
    elif skipped:
        signals.errors.append(f"too large to decode ({limit}); digests only")


def _start_position(stream: BinaryIO) -> int | None:
    """Where the item starts in ``stream``, or None if the stream cannot be rewound."""
    try:
        return stream.tell() if stream.seekable() else None
    except (OSError, ValueError):
        return None


def _run(name: str, signals: Signals, call: Callable[[], None]) -> None:
    """One hasher on one item: its ValueError is the item's error, any other failure too."""
    try:
        call()
    except ValueError as exc:
        signals.errors.append(str(exc))
    except Exception as exc:  # a hasher bug or exhaustion must cost only this item
        log.exception("%s hasher failed on %s", name, signals.path)
        signals.errors.append(f"{name} failed: {type(exc).__name__}: {exc}")
