"""The PDQ hasher: image bytes -> the item's PDQ signal and its query hashes."""

from __future__ import annotations

from dataclasses import dataclass

from vakta.signals import borders, pdq
from vakta.signals.imaging import DEFAULT_MAX_PIXELS, DecodedLuma, decode_luma
from vakta.signals.model import HashOptions, PdqQuery, Signals


@dataclass(frozen=True, slots=True)
class PdqHasher:
    """Computes PDQ for every content type Pillow can decode."""

    name: str = "pdq"

    def accepts(self, content_type: str) -> bool:
        return content_type.startswith("image/")

    def compute(self, data: bytes, signals: Signals, options: HashOptions) -> None:
        decoded = decode_luma(
            data,
            max_pixels=options.max_pixels or DEFAULT_MAX_PIXELS,
            reduce_jpeg=options.reduce_jpeg,
        )
        hashes, quality = pdq.dihedral_hashes(decoded.luma, decoded.scale, (decoded.height, decoded.width))
        signals.pdq = hashes[0]
        signals.pdq_quality = quality
        signals.image_width = decoded.width
        signals.image_height = decoded.height
        queries = [PdqQuery(h, quality, t, "full") for h, t in zip(hashes, pdq.TRANSFORMS, strict=True)]
        if options.trim_borders:
            queries += _trimmed_queries(decoded)
        signals.pdq_queries = queries


def _trimmed_queries(decoded: DecodedLuma) -> list[PdqQuery]:
    box = borders.find_content(decoded.luma)
    if box is None:
        return []
    inner = decoded.luma[box.top : box.bottom, box.left : box.right]
    hashes, quality = pdq.dihedral_hashes(inner, decoded.scale)
    return [PdqQuery(h, quality, t, "trimmed") for h, t in zip(hashes, pdq.TRANSFORMS, strict=True)]


HASHER = PdqHasher()
