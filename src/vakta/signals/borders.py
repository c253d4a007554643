"""Find the picture inside uniform borders (letterboxing, screenshots, padding).

A border shifts and shrinks the picture inside the frame, which PDQ cannot see
through; hashing the trimmed picture as an extra query recovers such copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vakta.signals.imaging import LumaArray

#: A border line may vary this much (luma standard deviation, 0-255) and still
#: count as uniform: enough for JPEG noise, too little for picture content.
UNIFORM_STD = 6.0
#: ...and its mean may differ this much from the outermost line of that side.
SAME_LEVEL = 12.0
#: Ignore trims thinner than this fraction of a side (edge noise, thin frames).
MIN_TRIM = 0.02
#: Keep at least this fraction of each axis; less is not a picture in a frame.
MIN_KEEP = 0.3


@dataclass(frozen=True, slots=True)
class Box:
    """Rows ``top:bottom`` and columns ``left:right`` of the picture inside its border."""

    top: int
    bottom: int
    left: int
    right: int


def _uniform_run(lines: LumaArray, reverse: bool) -> int:
    """How many leading lines (rows of ``lines``) are uniform and alike."""
    order = lines[::-1] if reverse else lines
    means = order.mean(axis=1)
    stds = order.std(axis=1)
    ok = (stds <= UNIFORM_STD) & (np.abs(means - means[0]) <= SAME_LEVEL)
    if not ok[0]:
        return 0
    bad = np.flatnonzero(~ok)
    return int(bad[0]) if bad.size else len(ok)


def find_content(luma: LumaArray) -> Box | None:
    """The box inside uniform borders, or None when there is no worthwhile border."""
    height, width = luma.shape
    if height < 16 or width < 16:
        return None
    top = _uniform_run(luma, reverse=False)
    bottom = height - _uniform_run(luma, reverse=True)
    if bottom - top < height * MIN_KEEP:
        return None
    inner = luma[top:bottom]
    left = _uniform_run(inner.T, reverse=False)
    right = width - _uniform_run(inner.T, reverse=True)
    if right - left < width * MIN_KEEP:
        return None
    trimmed = max(top / height, (height - bottom) / height, left / width, (width - right) / width)
    if trimmed < MIN_TRIM:
        return None
    return Box(top, bottom, left, right)
