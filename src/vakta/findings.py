"""Findings: an item's signals, its matches and its errors, as every sink reports them.

A finding carries hashes, sizes, paths and list provenance, never content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vakta.matching.matcher import Match
from vakta.signals.model import Signals


@dataclass(slots=True)
class Finding:
    signals: Signals
    matches: list[Match] = field(default_factory=list)

    @property
    def matched(self) -> bool:
        return bool(self.matches)

    @property
    def failed(self) -> bool:
        return bool(self.signals.errors)

    def to_dict(self) -> dict[str, Any]:
        out = self.signals.hash_fields()
        out.pop("error", None)
        out["matches"] = [m.to_dict() for m in self.matches]
        out["errors"] = list(self.signals.errors)
        if self.signals.skipped:
            out["skipped"] = self.signals.skipped
        return out
