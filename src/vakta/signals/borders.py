"""Find the picture inside uniform borders (letterboxing, screenshots, padding).

A border shifts and shrinks the picture inside the frame, which PDQ cannot see
through; hashing the trimmed picture as an extra query recovers such copies.
Two strictness levels are tried: synthetic padding is flat to within JPEG
noise, while a photo's own dark sky or white wall is flat only loosely.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vakta.signals.imaging import LumaArray

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

    def symmetric(self, height: int, width: int) -> Box:
        """The box with equal margins on opposite sides, the thinner of each pair.

        Letterboxing and padding are added evenly; where one side looks wider,
        the excess is the picture's own dark or flat edge.
        """
        dy = min(self.top, height - self.bottom)
        dx = min(self.left, width - self.right)
        return Box(dy, height - dy, dx, width - dx)


@dataclass(frozen=True, slots=True)
class Strictness:
    """How flat (luma standard deviation) a border line must be, and how close to the edge's level."""

    max_std: float
    max_level_change: float


#: Tried in this order; each distinct box found becomes one query variant.
LEVELS = {
    "trimmed": Strictness(6.0, 255.0),  # flat lines, bands of any level (page + toolbar)
    "trimmed-flat": Strictness(3.0, 4.0),  # flat lines at one level, JPEG ringing tolerated
    "trimmed-strict": Strictness(1.5, 4.0),  # synthetic padding only; spares a photo's dark sky
}


def _uniform_run(lines: LumaArray, reverse: bool, how: Strictness) -> int:
    """How many leading lines (rows of ``lines``) are flat border lines.

    Lines are examined in growing chunks from the edge, so a picture without a
    border (the usual case) costs a few lines, not a pass over the image.
    """
    order = lines[::-1] if reverse else lines
    edge_level = float(order[0].mean())
    done, chunk = 0, 8
    while done < len(order):
        block = order[done : done + chunk]
        ok = (block.std(axis=1) <= how.max_std) & (
            np.abs(block.mean(axis=1) - edge_level) <= how.max_level_change
        )
        if not ok.all():
            return done + int(np.argmin(ok))
        done += len(block)
        chunk *= 2
    return done


def find_content(luma: LumaArray, how: Strictness) -> Box | None:
    """The box inside uniform borders, or None when there is no worthwhile border."""
    height, width = luma.shape
    if height < 16 or width < 16:
        return None
    top = _uniform_run(luma, False, how)
    bottom = height - _uniform_run(luma, True, how)
    if bottom - top < height * MIN_KEEP:
        return None
    inner = luma[top:bottom]
    left = _uniform_run(inner.T, False, how)
    right = width - _uniform_run(inner.T, True, how)
    if right - left < width * MIN_KEEP:
        return None
    trimmed = max(top / height, (height - bottom) / height, left / width, (width - right) / width)
    if trimmed < MIN_TRIM:
        return None
    return Box(top, bottom, left, right)
