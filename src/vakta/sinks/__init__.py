"""Sinks: where findings go (report files today; alert queues, console and SIEM later)."""

from __future__ import annotations

from typing import IO, Protocol

from vakta.findings import Finding
from vakta.registry import Registry
from vakta.stats import ScanStats


class SinkWriter(Protocol):
    def write(self, finding: Finding) -> None: ...

    def close(self, stats: ScanStats) -> None:
        """Finish the report (totals, closing brackets); the caller closes the stream."""
        ...


class Sink(Protocol):
    name: str
    #: True if the sink wants every finding, not only matches and errors.
    wants_all: bool

    def open(self, out: IO[str]) -> SinkWriter: ...


sinks: Registry[Sink] = Registry("sinks")
