"""Summary only: the scan's totals as one JSON object, no per-file lines."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO

from vakta.findings import Finding
from vakta.stats import ScanStats


@dataclass(slots=True)
class SummaryWriter:
    out: IO[str]

    def write(self, finding: Finding) -> None:
        return None

    def close(self, stats: ScanStats) -> None:
        self.out.write(json.dumps(stats.to_dict()) + "\n")
        self.out.flush()


@dataclass(frozen=True, slots=True)
class SummarySink:
    name: str = "summary"
    wants_all: bool = False

    def open(self, out: IO[str]) -> SummaryWriter:
        return SummaryWriter(out)


SINK = SummarySink()
