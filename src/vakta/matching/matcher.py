"""Turn an item's signals into matches against the loaded lists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vakta.lists.store import VIDEO_KIND
from vakta.matching.index import EntryMeta, ListIndex, SearchIndex
from vakta.matching.search import DEFAULT_THRESHOLD, MIN_QUALITY
from vakta.matching.videos import VideoHit, VideoRule
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
    video: VideoHit | None = None

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
        if self.video is not None:
            out["video"] = self.video.to_dict()
        out["list_format"] = self.meta.source_format
        out["imported_at"] = self.meta.imported_at
        return out


@dataclass(frozen=True, slots=True)
class Hit:
    """A list entry an item's signals reached, before its provenance is looked up.

    Small and picklable: worker processes find hits, the main process (which
    holds the store) turns them into :class:`Match` es.
    """

    list_no: int
    kind: str
    value: bytes
    distance: int
    transform: str | None = None
    variant: str | None = None
    video: VideoHit | None = None


@dataclass(frozen=True)
class HitFinder:
    """Exact digest hits, PDQ hits within ``threshold`` over all of an item's query hashes,
    and known videos its sampled frames match as a whole."""

    index: SearchIndex
    threshold: int = DEFAULT_THRESHOLD
    min_quality: int = MIN_QUALITY
    video_rule: VideoRule = field(default_factory=VideoRule)

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 256:
            raise ValueError(f"PDQ threshold must be 0-256, got {self.threshold}")

    def find(self, signals: Signals) -> list[Hit]:
        hits: list[Hit] = []
        for kind in DIGEST_KINDS:
            value = getattr(signals, kind)
            if value:
                raw = bytes.fromhex(value)
                hits += [Hit(list_no, kind, raw, 0) for list_no in self.index.digests[kind].lookup(value)]
        return hits + self._find_pdq(signals) + self._find_videos(signals)

    def lookup(self, kind: str, values: Sequence[str]) -> list[list[Hit]]:
        """The hits of bare hashes of one kind (no file, so no quality: all are used), closest first."""
        if kind in DIGEST_KINDS:
            owners = self.index.digests[kind].lookup_many(values)
            return [
                [Hit(list_no, kind, bytes.fromhex(v), 0) for list_no in found]
                for v, found in zip(values, owners, strict=True)
            ]
        if kind != "pdq":
            raise ValueError(f"cannot look up {kind} hashes")
        found: list[list[Hit]] = [[] for _ in values]
        for qi, row, distance in self.index.pdq.search(list(values), self.threshold):
            list_no, value = self.index.pdq.entry(row)
            found[qi].append(Hit(list_no, "pdq", value, distance))
        return [sorted(hits, key=lambda h: h.distance) for hits in found]

    def _find_videos(self, signals: Signals) -> list[Hit]:
        if not signals.video_frames or not len(self.index.videos):
            return []
        found = self.index.videos.match(
            signals.video_frames, self.threshold, self.min_quality, self.video_rule, signals.video_variants
        )
        return [
            Hit(list_no, VIDEO_KIND, fingerprint, distance, video=video)
            for list_no, fingerprint, distance, video in found
        ]

    def _find_pdq(self, signals: Signals) -> list[Hit]:
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
        hits = []
        for row, (dist, qi) in sorted(best.items(), key=lambda kv: kv[1][0]):
            list_no, value = self.index.pdq.entry(row)
            hits.append(Hit(list_no, "pdq", value, dist, queries[qi].transform, queries[qi].variant))
        return hits


class Matcher:
    """Finds hits and attaches each entry's provenance: the whole of matching in one process."""

    def __init__(
        self,
        index: ListIndex,
        threshold: int = DEFAULT_THRESHOLD,
        min_quality: int = MIN_QUALITY,
        video_rule: VideoRule | None = None,
    ) -> None:
        self.index = index
        self.finder = HitFinder(index.search, threshold, min_quality, video_rule or VideoRule())

    def resolve(self, hits: list[Hit]) -> list[Match]:
        return [
            Match(
                self.index.meta(h.list_no, h.kind, h.value),
                h.kind,
                h.distance,
                h.transform,
                h.variant,
                h.video,
            )
            for h in hits
        ]

    def match(self, signals: Signals) -> list[Match]:
        return self.resolve(self.finder.find(signals))

    def lookup(self, kind: str, values: Sequence[str]) -> list[list[Match]]:
        """Matches of bare hashes of one kind, in input order."""
        return [self.resolve(hits) for hits in self.finder.lookup(kind, values)]
