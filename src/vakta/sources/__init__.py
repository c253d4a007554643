"""Sources turn what the user names (a folder, later an archive or a bucket) into items."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from vakta.items import Item
from vakta.registry import Registry


class Source(Protocol):
    name: str

    def handles(self, target: str) -> bool:
        """True if this source can read ``target`` (a path or URL the user gave)."""
        ...

    def items(self, target: str, follow_symlinks: bool = False) -> Iterator[Item]:
        """Every item below ``target``; unreadable places are items with ``error`` set."""
        ...


sources: Registry[Source] = Registry("sources")


def source_for(target: str) -> Source:
    for _, source in sources:
        if source.handles(target):
            return source
    raise ValueError(f"no source can read {target!r}")
