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


class _Edge:
    """One side of a plane: its lines from the edge inward, and their flatness by chunk.

    Lines are examined in growing chunks from the edge (8, 16, 32...), so a
    picture without a border (the usual case) costs a few lines, not a pass over
    the image; each chunk's statistics are computed once, for every strictness level.
    """

    def __init__(self, lines: LumaArray, reverse: bool) -> None:
        self.order = lines[::-1] if reverse else lines
        self.level = float(self.order[0].mean())
        self._chunks: list[tuple[LumaArray, LumaArray]] = []

    def chunk(self, k: int) -> tuple[LumaArray, LumaArray]:
        """The standard deviation and mean of each line of chunk ``k`` (empty past the last line)."""
        while len(self._chunks) <= k:
            i = len(self._chunks)
            block = self.order[8 * (2**i - 1) : 8 * (2 ** (i + 1) - 1)]
            self._chunks.append((block.std(axis=1), block.mean(axis=1)))
        return self._chunks[k]


def _uniform_run(edge: _Edge, how: Strictness) -> int:
    """How many leading lines of ``edge`` are flat border lines."""
    done = k = 0
    while done < len(edge.order):
        std, mean = edge.chunk(k)
        ok = (std <= how.max_std) & (np.abs(mean - edge.level) <= how.max_level_change)
        if not ok.all():
            return done + int(np.argmin(ok))
        done, k = done + len(std), k + 1
    return done


def find_content(luma: LumaArray, how: Strictness) -> Box | None:
    """The box inside uniform borders, or None when there is no worthwhile border."""
    return find_contents(luma, {"": how})[""]


def find_contents(luma: LumaArray, levels: dict[str, Strictness]) -> dict[str, Box | None]:
    """:func:`find_content` at several strictness levels, each line's flatness measured once."""
    height, width = luma.shape
    if height < 16 or width < 16:
        return dict.fromkeys(levels)
    rows = (_Edge(luma, False), _Edge(luma, True))
    columns: dict[tuple[int, int], tuple[_Edge, _Edge]] = {}
    found: dict[str, Box | None] = {}
    for name, how in levels.items():
        top = _uniform_run(rows[0], how)
        bottom = height - _uniform_run(rows[1], how)
        if bottom - top < height * MIN_KEEP:
            found[name] = None
            continue
        if (top, bottom) not in columns:
            inner = luma[top:bottom].T
            columns[top, bottom] = (_Edge(inner, False), _Edge(inner, True))
        left_edge, right_edge = columns[top, bottom]
        left = _uniform_run(left_edge, how)
        right = width - _uniform_run(right_edge, how)
        found[name] = _worthwhile(Box(top, bottom, left, right), height, width)
    return found


def _worthwhile(box: Box, height: int, width: int) -> Box | None:
    if box.right - box.left < width * MIN_KEEP:
        return None
    trimmed = max(
        box.top / height, (height - box.bottom) / height, box.left / width, (width - box.right) / width
    )
    return box if trimmed >= MIN_TRIM else None
