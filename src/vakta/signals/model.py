"""Signals: what the hashers learn about one item, and the options that steer them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class PdqQuery:
    """One PDQ hash to look up for an item: a rotation/flip and/or a trimmed variant."""

    hex: str
    quality: int
    transform: str
    variant: str


@dataclass(frozen=True, slots=True)
class VideoFrame:
    """One sampled frame of a video: the reference vPDQ line ``frame,quality,pdq,timestamp``."""

    frame: int
    timestamp: float
    pdq: str
    quality: int

    def vpdq_line(self) -> str:
        return f"{self.frame},{self.quality},{self.pdq},{self.timestamp:.3f}"


@dataclass(frozen=True, slots=True)
class HashOptions:
    """Settings of the hashing stage; part of the scan-cache key via :meth:`fingerprint`."""

    max_pixels: int = 0
    #: Files larger than this are not held in memory: they get digests only, except from
    #: hashers that can decode a seekable stream (vPDQ), which then read the file again.
    max_decode_bytes: int = 512 * 1024 * 1024
    reduce_jpeg: bool = True
    #: Query-side variants (upscaled, border-trimmed) beside the eight rotations.
    extra_queries: bool = True
    #: Video: one frame hashed per this many seconds (0: every frame), as vPDQ samples.
    seconds_per_hash: float = 1.0
    #: Video: sample at most this many seconds from the start (0: all), bounding hostile files.
    max_video_seconds: float = 7200.0
    #: Video: scale frames to this many pixels square before hashing (0: native size);
    #: the reference's downscaled mode uses 128.
    video_frame_size: int = 0
    #: Video triage: decode and hash only key frames (numbered and timed as in a full pass),
    #: at most one per ``seconds_per_hash``.  Much faster; other frames than the reference's.
    keyframes_only: bool = False
    #: Video: drop a sampled frame whose PDQ is within this many bits of the last kept frame
    #: (-1: keep every sampled frame; 0: drop exact repeats only).
    video_prune_distance: int = -1

    def fingerprint(self) -> str:
        return "v1:" + ",".join(f"{k}={v}" for k, v in sorted(asdict(self).items()))


@dataclass(slots=True)
class Signals:
    """Everything computed for one item.  Errors are values here, never swallowed."""

    path: str
    size: int | None = None
    type: str | None = None
    md5: str | None = None
    sha1: str | None = None
    sha256: str | None = None
    pdq: str | None = None
    pdq_quality: int | None = None
    image_width: int | None = None
    image_height: int | None = None
    pdq_queries: list[PdqQuery] = field(default_factory=list)
    video_frames: list[VideoFrame] = field(default_factory=list)
    #: Query-side variants of sampled frames (logo or bars removed), linked by frame number.
    video_variants: list[VideoFrame] = field(default_factory=list)
    video_seconds: float | None = None
    errors: list[str] = field(default_factory=list)
    #: Raw path bytes (base64) when the path is not valid UTF-8, so it is reported losslessly.
    path_b64: str | None = None
    #: Why the item was not hashed in full (e.g. on a known-good list); not an error.
    skipped: str | None = None
    cached: bool = False
    #: Where a member of a container sits: one step per container level below ``path``.
    inside: list[str] = field(default_factory=list)
    #: A member a filesystem still holds the data of, though its file was deleted.
    deleted: bool = False
    #: MD5 of the container the item was found in (VICS ``ParentMD5``).
    parent_md5: str | None = None

    @property
    def location(self) -> str:
        """The full location chain, e.g. ``laptop.E01 > partition 2 (NTFS) > /a.zip > b.jpg``."""
        return " > ".join([self.path, *self.inside])

    def hash_fields(self) -> dict[str, Any]:
        """The ``vakta hash`` JSON object: digests and PDQ, ``error`` where a value is missing."""
        out: dict[str, Any] = {"path": self.path}
        if self.path_b64:
            out["path_b64"] = self.path_b64
        if self.inside:
            out["inside"] = list(self.inside)
            out["location"] = self.location
            out["parent_md5"] = self.parent_md5
        if self.deleted:
            out["deleted"] = True
        for key in ("size", "type", "md5", "sha1", "sha256", "pdq", "pdq_quality"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.video_frames:
            out["video_seconds"] = round(self.video_seconds or 0.0, 3)
            out["vpdq_frames"] = len(self.video_frames)
        if self.errors:
            out["error"] = "; ".join(self.errors)
        return out

    def to_cache(self) -> dict[str, Any]:
        data = asdict(self)
        data["pdq_queries"] = [asdict(q) for q in self.pdq_queries]
        return data

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> Signals:
        queries = [PdqQuery(**q) for q in data.pop("pdq_queries", [])]
        frames = [VideoFrame(**f) for f in data.pop("video_frames", [])]
        variants = [VideoFrame(**f) for f in data.pop("video_variants", [])]
        return cls(**data, pdq_queries=queries, video_frames=frames, video_variants=variants)
