"""Content hashers (PDQ today, vPDQ next): the registry and the protocol they follow.

Digests are not a hasher: they are computed for every item while it is read.
A hasher gets the item's bytes once the read is complete and adds its signals.
"""

from __future__ import annotations

from typing import Protocol

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


hashers: Registry[Hasher] = Registry("hashers")


def hashers_for(content_type: str) -> list[Hasher]:
    return [h for _, h in hashers if h.accepts(content_type)]
