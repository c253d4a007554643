"""The PDQ hasher: image bytes -> the item's PDQ signal and its query hashes.

Besides the stored image in its eight rotations/flips, a few extra query
variants recover copies PDQ alone misses (see bench/accuracy.py):

- ``up2``/``up4``: the image hashed as if it were stored 2x/4x larger, so a
  downscaled copy gets the blur its larger original got;
- ``trimmed*``: the picture inside uniform borders (screenshots,
  letterboxing, padding), found at a few strictness levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vakta.signals import borders, overlays, pdq
from vakta.signals.imaging import DEFAULT_MAX_PIXELS, DecodedLuma, LumaArray, decode_luma
from vakta.signals.model import HashOptions, PdqQuery, Signals

#: Upscaled variants are tried only for images whose long side is at most this
#: (a copy that small may be a downscaled original).
UPSCALE_LIMITS = {2: 2048, 4: 1024}
#: Tone curves tried on the query, undoing a brightened (or darkened) copy.
TONE_GAMMAS = (1.6, 0.625)
#: The darkest luma (as a fraction of white) the tone curves see; see :func:`_tone_queries`.
_DARKEST = np.float32(1e-20)


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
        queries = _variant(decoded.luma, decoded.scale, (decoded.height, decoded.width), "full")
        signals.pdq = queries[0].hex
        signals.pdq_quality = queries[0].quality
        signals.image_width = decoded.width
        signals.image_height = decoded.height
        if options.extra_queries:
            queries += _upscaled_queries(decoded) + _unbanded_queries(decoded) + _tone_queries(decoded)
            queries += _trimmed_queries(data, decoded, options)
        signals.pdq_queries = queries


def _variant(
    luma: LumaArray, scale: pdq.Scale, full_shape: tuple[int, int] | None, name: str
) -> list[PdqQuery]:
    hashes, quality = pdq.dihedral_hashes(luma, scale, full_shape)
    return [PdqQuery(h, quality, t, name) for h, t in zip(hashes, pdq.TRANSFORMS, strict=True)]


def _upscaled_queries(decoded: DecodedLuma) -> list[PdqQuery]:
    queries: list[PdqQuery] = []
    long_side = max(decoded.width, decoded.height)
    for factor, limit in UPSCALE_LIMITS.items():
        if long_side <= limit:
            scale = (decoded.scale[0] * factor, decoded.scale[1] * factor)
            queries += _variant(decoded.luma, scale, None, f"up{factor}")
    return queries


def _tone_queries(decoded: DecodedLuma) -> list[PdqQuery]:
    queries: list[PdqQuery] = []
    full_shape = (decoded.height, decoded.width)
    for gamma in TONE_GAMMAS:
        # In place, in float32, as 2 ** (gamma * log2(x)): numpy vectorises log2 and
        # exp2 but not power. Black is taken as 1e-20, whose curve is still 0 to PDQ:
        # log2(0) and results below float32's normal range would take a slow path
        # (0.6 against 2.6 ms for a 0.25 MP picture that is half black).
        toned = decoded.luma * np.float32(1 / 255)
        np.maximum(toned, _DARKEST, out=toned)
        np.log2(toned, out=toned)
        toned *= np.float32(gamma)
        np.exp2(toned, out=toned)
        toned *= np.float32(255)
        queries += _variant(toned, decoded.scale, full_shape, f"gamma{gamma:g}")
    return queries


def _unbanded_queries(decoded: DecodedLuma) -> list[PdqQuery]:
    queries: list[PdqQuery] = []
    full_shape = (decoded.height, decoded.width)
    for axis, luma in (("rows", decoded.luma), ("columns", decoded.luma.T)):
        band = overlays.find_band(luma)
        if band is None:
            continue
        restored = overlays.remove_band(luma, band)
        if axis == "columns":
            restored = np.ascontiguousarray(restored.T)
        queries += _variant(restored, decoded.scale, full_shape, "unbanded")
    return queries


def _trimmed_queries(data: bytes, decoded: DecodedLuma, options: HashOptions) -> list[PdqQuery]:
    boxes = _boxes(decoded.luma)
    if boxes and decoded.scale != pdq.FULL_SIZE:
        # A reduced decode blurs the border's edge over several stored pixels;
        # find the picture's exact edges at full size (only images with borders pay).
        decoded = decode_luma(data, max_pixels=options.max_pixels or DEFAULT_MAX_PIXELS, reduce_jpeg=False)
        boxes = _boxes(decoded.luma)
    queries: list[PdqQuery] = []
    for name, box in boxes.items():
        inner = decoded.luma[box.top : box.bottom, box.left : box.right]
        queries += _variant(inner, decoded.scale, None, name)
    return queries


def _boxes(luma: LumaArray) -> dict[str, borders.Box]:
    found: dict[str, borders.Box] = {}
    for name, box in borders.find_contents(luma, borders.LEVELS).items():
        if box is not None and box not in found.values():
            found[name] = box
    if "trimmed-strict" in found:
        sym = found["trimmed-strict"].symmetric(*luma.shape)
        if sym not in found.values():
            found["trimmed-symmetric"] = sym
    return found


HASHER = PdqHasher()
