"""Turn an item's signals into matches against the loaded lists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vakta.matching.index import DEFAULT_THRESHOLD, MIN_QUALITY, EntryMeta, ListIndex
from vakta.signals.kinds import DIGEST_KINDS
from vakta.signals.model import PdqQuery, Signals


@dataclass(frozen=True, slots=True)
class Match:
    """One list entry an item matched, how, and where the entry came from."""

    meta: EntryMeta
    signal: str
    distance: int
    transform: str | None = None
    variant: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "list": self.meta.list_name,
            "entry_id": self.meta.entry_id,
            "category": self.meta.category,
            "signal": self.signal,
            "distance": self.distance,
            "transform": self.transform,
        }
        if self.variant and self.variant != "full":
            out["variant"] = self.variant
        out["list_format"] = self.meta.source_format
        out["imported_at"] = self.meta.imported_at
        return out


class Matcher:
    """Exact digest matches and PDQ matches within ``threshold`` over all query hashes."""

    def __init__(
        self, index: ListIndex, threshold: int = DEFAULT_THRESHOLD, min_quality: int = MIN_QUALITY
    ) -> None:
        if not 0 <= threshold <= 256:
            raise ValueError(f"PDQ threshold must be 0-256, got {threshold}")
        self.index = index
        self.threshold = threshold
        self.min_quality = min_quality

    def match(self, signals: Signals) -> list[Match]:
        matches: list[Match] = []
        for kind in DIGEST_KINDS:
            value = getattr(signals, kind)
            if value:
                for list_no in self.index.digests[kind].lookup(value):
                    matches.append(Match(self.index.meta(list_no, kind, bytes.fromhex(value)), kind, 0))
        matches += self._match_pdq(signals)
        return matches

    def _match_pdq(self, signals: Signals) -> list[Match]:
        # Variants often coincide (an image without borders...): look each hash up once.
        unique: dict[str, PdqQuery] = {}
        for q in signals.pdq_queries:
            if q.quality >= self.min_quality:
                unique.setdefault(q.hex, q)
        queries = list(unique.values())
        if not queries or not len(self.index.pdq):
            return []
        best: dict[int, tuple[int, int]] = {}  # entry row -> (distance, query index)
        for qi, row, distance in self.index.pdq.search([q.hex for q in queries], self.threshold):
            if row not in best or distance < best[row][0]:
                best[row] = (distance, qi)
        matches = []
        for row, (dist, qi) in sorted(best.items(), key=lambda kv: kv[1][0]):
            list_no, value = self.index.pdq.entry(row)
            meta = self.index.meta(list_no, "pdq", value)
            matches.append(Match(meta, "pdq", dist, queries[qi].transform, queries[qi].variant))
        return matches
