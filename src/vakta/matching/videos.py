"""Whole-video matching: a query's sampled frames against the frames of known videos (vPDQ).

The reference decides per pair of videos: frames of quality below 50 are
left out on both sides, duplicate hashes count once, and each side's share of
frames within the distance threshold of some frame on the other side is
taken.  A known video matches when enough of *its* frames are reached (the
query holds all or most of it) or when enough of the *query's* frames reach
it (the query is a clip of it); either share alone is enough by default, so
clips and padded copies are found, and ``require_both`` gives the
reference's strict reading.

All frames of all known videos sit in one :class:`PdqIndex`, so a query is
one radius search however many videos are known, not a comparison with each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vakta.matching.search import PdqIndex
from vakta.signals.model import VideoFrame

#: The reference's share of frames that makes a video match, in percent.
DEFAULT_SHARE = 80.0
#: Matched query times this many sampling steps apart still form one range.
MAX_GAP_SAMPLES = 3


@dataclass(frozen=True, slots=True)
class VideoRule:
    """When a known video counts as matched by a query video."""

    known_share: float = DEFAULT_SHARE
    query_share: float = DEFAULT_SHARE
    require_both: bool = False

    def __post_init__(self) -> None:
        for share in (self.known_share, self.query_share):
            if not 0 < share <= 100:
                raise ValueError(f"a video match share must be over 0 and at most 100 percent, got {share}")

    def accepts(self, known: float, query: float) -> bool:
        hits = (known >= self.known_share, query >= self.query_share)
        return all(hits) if self.require_both else any(hits)


@dataclass(frozen=True, slots=True)
class VideoHit:
    """How a query video reached one known video: both shares and where in the query."""

    known_share: float
    query_share: float
    #: Units of the known video compared: distinct frames, or sampling intervals
    #: when the known video was hashed more densely than the query.
    known_frames: int
    matched_frames: int
    query_ranges: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "known_share": round(self.known_share, 1),
            "query_share": round(self.query_share, 1),
            "known_frames": self.known_frames,
            "matched_known_frames": self.matched_frames,
            "query_ranges": [[round(a, 3), round(b, 3)] for a, b in self.query_ranges],
        }


#: (list number, video fingerprint, median frame distance, details) of one matched video.
VideoMatch = tuple[int, bytes, int, VideoHit]


class VideoIndex:
    """The usable frames of every known video, searchable as one PDQ index.

    Rows are frames in video order; a hash recurring within one video is
    searched (and counted) once, as the reference de-duplicates, while every
    frame keeps its timestamp for comparisons by time.
    """

    def __init__(
        self,
        frames: bytes,
        owners: NDArray[np.int32],
        timestamps: NDArray[np.float64],
        lists: NDArray[np.int32],
        fingerprints: Sequence[bytes],
    ) -> None:
        order = np.argsort(owners, kind="stable")
        owners = owners[order]
        raw = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 32)[order]
        keyed = np.concatenate([owners.astype(">i4").view(np.uint8).reshape(-1, 4), raw], axis=1)
        unique, inverse = np.unique(np.ascontiguousarray(keyed).view("V36").ravel(), return_inverse=True)
        unique_bytes = unique.view(np.uint8).reshape(-1, 36)
        self._owners = np.ascontiguousarray(unique_bytes[:, :4]).view(">i4").ravel().astype(np.int32)
        self._frames = PdqIndex(np.ascontiguousarray(unique_bytes[:, 4:]).tobytes(), self._owners)
        self._row_unique = inverse.ravel().astype(np.int32)
        self._row_time = timestamps[order].astype(np.float32)
        self._starts = np.searchsorted(owners, np.arange(len(fingerprints) + 1))
        self._lists = lists
        self._fingerprints = list(fingerprints)
        self._sizes = np.bincount(self._owners, minlength=len(self._fingerprints))

    def __len__(self) -> int:
        return len(self._fingerprints)

    @classmethod
    def empty(cls) -> VideoIndex:
        none = np.empty(0, np.int32)
        return cls(b"", none, np.empty(0, np.float64), none, [])

    def _known_coverage(self, video: int, reached: NDArray[np.int64], step: float) -> tuple[int, int]:
        """(reached, total) units of a known video: its distinct frames, or intervals of ``step``.

        A list hashed every frame compared with a query sampled once a second
        would otherwise reach at most one frame in 30; when the known video is
        sampled much more densely than the query, it is counted in intervals
        of the query's sampling step instead, each reached if any frame in it is.
        """
        rows = slice(int(self._starts[video]), int(self._starts[video + 1]))
        times = self._row_time[rows]
        known_step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        if step <= 0 or known_step >= 0.75 * step:
            return len(reached), int(self._sizes[video])
        buckets = np.floor(times / step).astype(np.int64)
        hit = np.isin(self._row_unique[rows], reached)
        return len(np.unique(buckets[hit])), len(np.unique(buckets))

    def match(
        self,
        frames: Sequence[VideoFrame],
        threshold: int,
        min_quality: int,
        rule: VideoRule,
        variants: Sequence[VideoFrame] = (),
    ) -> list[VideoMatch]:
        """Every known video the query frames match under ``rule``, best known share first.

        A query frame is one unit however often its hash recurs (the
        reference's de-duplication); ``variants`` (e.g. with a logo removed)
        are further hashes of the frames with the same frame number, and a
        unit is matched when any of its hashes is.
        """
        units = _Units(frames, variants, min_quality)
        if not units.times or not len(self._frames):
            return []
        pairs = units.expand(np.array(self._frames.search(units.hashes, threshold), dtype=np.int64))
        if not len(pairs):
            return []
        videos = self._owners[pairs[:, 1]]
        # Sort by video, then unit, then distance: each video's pairs form one
        # block, and a unit's first pair in its block is its closest frame.
        order = np.lexsort((pairs[:, 2], pairs[:, 0], videos))
        pairs, videos = pairs[order], videos[order]
        ids, starts = np.unique(videos, return_index=True)
        step = _sampling_step(frames)
        found: list[VideoMatch] = []
        for video, block in zip(ids.tolist(), np.split(pairs, starts[1:]), strict=True):
            matched, size = self._known_coverage(video, np.unique(block[:, 1]), step)
            hit_units, first = np.unique(block[:, 0], return_index=True)
            known, query = 100.0 * matched / size, 100.0 * len(hit_units) / len(units.times)
            if not rule.accepts(known, query):
                continue
            stamps = sorted(t for u in hit_units.tolist() for t in units.times[u])
            hit = VideoHit(known, query, size, matched, _ranges(stamps, step))
            distance = int(np.median(block[first, 2]))
            found.append((int(self._lists[video]), self._fingerprints[video], distance, hit))
        return sorted(found, key=lambda m: -m[3].known_share)


class _Units:
    """A query video's matching units: its distinct usable frame hashes, each with its variants."""

    def __init__(
        self, frames: Sequence[VideoFrame], variants: Sequence[VideoFrame], min_quality: int
    ) -> None:
        unit_of_hash: dict[str, int] = {}
        unit_of_frame: dict[int, int] = {}
        self.times: list[list[float]] = []
        for f in frames:
            if f.quality < min_quality:
                continue
            unit = unit_of_hash.setdefault(f.pdq, len(unit_of_hash))
            if unit == len(self.times):
                self.times.append([])
            self.times[unit].append(f.timestamp)
            unit_of_frame[f.frame] = unit
        # Each distinct hash is searched once, and may stand for several units.
        self._units_of: dict[str, set[int]] = {h: {u} for h, u in unit_of_hash.items()}
        for v in variants:
            if v.quality >= min_quality and v.frame in unit_of_frame:
                self._units_of.setdefault(v.pdq, set()).add(unit_of_frame[v.frame])
        self.hashes = list(self._units_of)

    def expand(self, pairs: NDArray[np.int64]) -> NDArray[np.int64]:
        """(hash index, row, distance) search pairs as (unit, row, distance)."""
        rows = [
            (unit, row, dist)
            for q, row, dist in pairs.reshape(-1, 3).tolist()
            for unit in self._units_of[self.hashes[q]]
        ]
        return np.array(rows, dtype=np.int64).reshape(-1, 3)


def _sampling_step(frames: Sequence[VideoFrame]) -> float:
    """The query's usual gap between sampled frames (0 for a single frame)."""
    stamps = np.unique(np.array([f.timestamp for f in frames], dtype=np.float64))
    return float(np.median(np.diff(stamps))) if len(stamps) > 1 else 0.0


def _ranges(stamps: list[float], step: float) -> tuple[tuple[float, float], ...]:
    """Matched sample times merged into ranges; up to two unmatched samples in a row do not split one.

    A re-encoded copy misses a frame here and there (a keyframe landing
    elsewhere), which says nothing about where the known content is.
    """
    ranges: list[tuple[float, float]] = []
    for t in stamps:
        if ranges and t - ranges[-1][1] <= MAX_GAP_SAMPLES * step + 1e-6:
            ranges[-1] = (ranges[-1][0], t)
        else:
            ranges.append((t, t))
    return tuple(ranges)
