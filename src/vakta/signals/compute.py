"""Read an item once: digests on the way through, then the content hashers on the bytes."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import BinaryIO

from vakta.signals.hashers import hashers_for
from vakta.signals.model import HashOptions, Signals
from vakta.signals.sniff import content_type

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
    digests = (hashlib.md5(usedforsecurity=False), hashlib.sha1(usedforsecurity=False), hashlib.sha256())
    first = stream.read(CHUNK_SIZE)
    signals.type = content_type(first)
    wanted = hashers_for(signals.type)
    kept: list[bytes] | None = [first] if wanted else None
    if kept is not None and len(first) > options.max_decode_bytes:
        kept = None
        signals.errors.append(_too_large(options))
    size = 0
    chunk = first
    while chunk:
        for d in digests:
            d.update(chunk)
        size += len(chunk)
        chunk = stream.read(CHUNK_SIZE)
        if kept is not None and chunk:
            if size + len(chunk) > options.max_decode_bytes:
                kept = None
                signals.errors.append(_too_large(options))
            else:
                kept.append(chunk)
    signals.size = size
    signals.md5, signals.sha1, signals.sha256 = (d.hexdigest() for d in digests)
    if known_good is not None:
        name = known_good(signals)
        if name is not None:
            signals.skipped = f"on known-good list {name!r}"
            return signals
    if kept is not None:
        data = b"".join(kept)
        for hasher in wanted:
            try:
                hasher.compute(data, signals, options)
            except ValueError as exc:
                signals.errors.append(str(exc))
            except Exception as exc:  # a hasher bug or exhaustion must cost only this item
                log.exception("%s hasher failed on %s", hasher.name, signals.path)
                signals.errors.append(f"{hasher.name} failed: {type(exc).__name__}: {exc}")
    return signals


def _too_large(options: HashOptions) -> str:
    return f"too large to decode ({options.max_decode_bytes:,} byte limit); digests only"
