"""One registry per extension point (hash kinds, list formats, sources, sinks).

Built-ins register themselves through the same ``vakta.<group>`` entry points a
third-party plugin declares in its own ``pyproject.toml``, so adding a format or
a sink never touches the pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class UnknownPluginError(KeyError):
    """Raised when a name is not registered; the message lists what is."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Named plugins of one kind, loaded lazily from the ``vakta.<group>`` entry points."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str, plugin: T) -> T:
        """Add ``plugin`` under ``name``; a later registration replaces an earlier one."""
        self._items[name] = plugin
        return plugin

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for ep in entry_points(group=f"vakta.{self.group}"):
            if ep.name in self._items:
                continue
            try:
                self._items[ep.name] = ep.load()
            except Exception as exc:  # a broken plugin must not break the tool
                log.warning("could not load %s plugin %r: %s", self.group, ep.name, exc)

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise UnknownPluginError(f"unknown {self.group} {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __iter__(self) -> Iterator[tuple[str, T]]:
        self._load()
        return iter(sorted(self._items.items()))
