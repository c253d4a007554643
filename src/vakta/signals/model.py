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
class HashOptions:
    """Settings of the hashing stage; part of the scan-cache key via :meth:`fingerprint`."""

    max_pixels: int = 0
    #: Files larger than this are digested but not decoded.
    max_decode_bytes: int = 512 * 1024 * 1024
    reduce_jpeg: bool = True
    #: Query-side variants (upscaled, border-trimmed) beside the eight rotations.
    extra_queries: bool = True

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
    errors: list[str] = field(default_factory=list)
    #: Raw path bytes (base64) when the path is not valid UTF-8, so it is reported losslessly.
    path_b64: str | None = None
    #: Why the item was not hashed in full (e.g. on a known-good list); not an error.
    skipped: str | None = None
    cached: bool = False

    def hash_fields(self) -> dict[str, Any]:
        """The ``vakta hash`` JSON object: digests and PDQ, ``error`` where a value is missing."""
        out: dict[str, Any] = {"path": self.path}
        if self.path_b64:
            out["path_b64"] = self.path_b64
        for key in ("size", "type", "md5", "sha1", "sha256", "pdq", "pdq_quality"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
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
        return cls(**data, pdq_queries=queries)
