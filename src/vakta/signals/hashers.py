"""Content hashers (PDQ, vPDQ): the registry and the protocols they follow.

Digests are not a hasher: they are computed for every item while it is read.
A hasher gets the item's bytes once the read is complete and adds its signals.
Items too large to hold in memory go, still seekable, to the hashers that can
read a stream (:class:`StreamHasher`); the others leave them at digests.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol, runtime_checkable

from vakta.registry import Registry
from vakta.signals.model import HashOptions, Signals


class Hasher(Protocol):
    name: str

    def accepts(self, content_type: str) -> bool:
        """True if this hasher wants items of this (sniffed) MIME type."""
        ...

    def compute(self, data: bytes, signals: Signals, options: HashOptions) -> None:
        """Add signals computed from ``data``; raise ValueError with a clear message on bad input."""
        ...


@runtime_checkable
class StreamHasher(Hasher, Protocol):
    """A hasher that can also decode an item from a seekable stream (no size limit)."""

    def compute_stream(self, stream: BinaryIO, signals: Signals, options: HashOptions) -> None:
        """As :meth:`compute`, reading from ``stream`` (seekable, at the item's first byte)."""
        ...


hashers: Registry[Hasher] = Registry("hashers")


def hashers_for(content_type: str) -> list[Hasher]:
    return [h for _, h in hashers if h.accepts(content_type)]
