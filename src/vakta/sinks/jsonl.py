"""JSON Lines: one object per finding, the default report and the easiest to pipe."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO

from vakta.findings import Finding
from vakta.stats import ScanStats


@dataclass(slots=True)
class JsonlWriter:
    out: IO[str]

    def write(self, finding: Finding) -> None:
        self.out.write(json.dumps(finding.to_dict(), ensure_ascii=False) + "\n")

    def close(self, stats: ScanStats) -> None:
        self.out.flush()


@dataclass(frozen=True, slots=True)
class JsonlSink:
    name: str = "jsonl"
    wants_all: bool = False

    def open(self, out: IO[str]) -> JsonlWriter:
        return JsonlWriter(out)


SINK = JsonlSink()
