"""Find and undo a banner laid across a picture (watermark strip, caption bar).

A semi-transparent band moves many of PDQ's low-frequency coefficients at
once, so a copy with a watermark strip lands just past the match threshold.
A band has two straight edges across the whole picture where nearly every
column steps the same way; from the size of that step the band's opacity
follows, and the pixels under it can be restored:
``original = (pixel - alpha * level) / (1 - alpha)``.  An opaque band
cannot be inverted and is filled from the rows beside it instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vakta.signals.imaging import LumaArray

#: A luma step counts when it is at least this large.
STEP = 6.0
#: ...and an edge when this fraction of the columns step the same way.
EDGE_SHARE = 0.6
#: Band height as a fraction of the picture: thinner is a line, thicker a frame.
MIN_HEIGHT, MAX_HEIGHT = 0.03, 0.35
#: Above this opacity the band hides the picture; fill instead of inverting.
OPAQUE = 0.9


@dataclass(frozen=True, slots=True)
class Band:
    """Rows ``top:bottom`` covered by a band of luma ``level`` laid on at ``alpha``."""

    top: int
    bottom: int
    level: float
    alpha: float


#: Columns already near white (black) cannot brighten (darken): not counted.
HEADROOM = 20.0
#: ...but at least this share of columns must be able to show the step.
MIN_ELIGIBLE = 0.3


Shares = NDArray[np.float64]


def _shares(stepped: NDArray[np.bool_], count: NDArray[np.intp], lines: int) -> Shares:
    share: Shares = np.count_nonzero(stepped, axis=1) / np.maximum(count, 1)
    share[count < MIN_ELIGIBLE * lines] = 0.0
    return share


def _edge_shares(luma: LumaArray) -> tuple[Shares, Shares]:
    """Per row boundary: the share of columns that step up, and that step down.

    Each share counts only columns with room for the step on the dark (bright)
    side, so a light band over a white background is still seen at its edges.
    The masks are computed once for both directions: this runs on every picture.
    """
    room = luma < 255 - HEADROOM
    before_room, after_room = room[:-2], room[2:]  # over two rows: edges blurred by decoding
    step = luma[2:] - luma[:-2]
    count = np.count_nonzero(before_room | after_room, axis=1)
    up = _shares((step > STEP) & before_room, count, luma.shape[1])
    down = _shares((step < -STEP) & after_room, count, luma.shape[1])
    return up, down


def find_band(luma: LumaArray) -> Band | None:
    """The strongest horizontal band across the picture, or None."""
    height = luma.shape[0]
    if height < 24 or luma.shape[1] < 16:
        return None
    up, down = _edge_shares(luma)
    best: tuple[float, int, int, bool] | None = None
    for light in (True, False):
        enter, leave = (up, down) if light else (down, up)
        starts = np.flatnonzero(enter >= EDGE_SHARE)
        ends = np.flatnonzero(leave >= EDGE_SHARE)
        for start in starts.tolist():
            lo, hi = start + max(2, int(MIN_HEIGHT * height)), start + int(MAX_HEIGHT * height)
            cands = ends[(ends >= lo) & (ends <= hi)]
            if cands.size == 0:
                continue
            end = int(cands[np.argmax(leave[cands])])
            score = float(enter[start] + leave[end])
            if best is None or score > best[0]:
                best = (score, start, end, light)
    if best is None:
        return None
    _, start, end, light = best
    top, bottom = start + 2, end + 1  # first and one-past-last row inside the band
    if bottom - top < 2 or top < 2 or bottom > height - 2:
        return None
    return _estimate(luma, top, bottom, 255.0 if light else 0.0)


def _estimate(luma: LumaArray, top: int, bottom: int, level: float) -> Band | None:
    """Opacity from the step at both edges: inside = alpha * level + (1 - alpha) * outside."""
    pairs = ((luma[top - 2], luma[top]), (luma[bottom + 1], luma[bottom - 1]))
    estimates = []
    for outside, inside in pairs:
        room = level - outside
        usable = np.abs(room) > 30
        if usable.sum() >= 8:
            estimates.append(np.median((inside[usable] - outside[usable]) / room[usable]))
    if not estimates:
        return None
    alpha = float(np.clip(np.mean(estimates), 0.0, 1.0))
    return Band(top, bottom, level, alpha) if alpha >= 0.1 else None


#: Band pixels further than this outside the range a blend can produce are
#: the banner's own text or logo.
TEXT_MARGIN = 12.0


def remove_band(luma: LumaArray, band: Band) -> LumaArray:
    """A copy of ``luma`` with the band undone: inverted where it is translucent,
    filled from the rows beside it where it is opaque or carries text."""
    out = luma.copy()
    rows = slice(band.top, band.bottom)
    above, below = luma[band.top - 1], luma[band.bottom]
    weights = np.linspace(0.0, 1.0, band.bottom - band.top + 2, dtype=np.float32)[1:-1, None]
    filled = above[None, :] * (1 - weights) + below[None, :] * weights
    if band.alpha >= OPAQUE:
        out[rows] = filled
        return out
    pixels = luma[rows]
    # A blend of `level` at `alpha` over 0..255 stays within these bounds.
    floor = band.alpha * band.level
    ceiling = floor + (1.0 - band.alpha) * 255.0
    text = (pixels < floor - TEXT_MARGIN) | (pixels > ceiling + TEXT_MARGIN)
    restored = np.clip((pixels - floor) / (1.0 - band.alpha), 0.0, 255.0)
    # Under the text the picture is lost; its row's typical value guesses it
    # best (filling from the rows beside the band streaks small details).
    visible = ~text
    row_level = np.full(len(pixels), 128.0, dtype=np.float32)
    for i in np.flatnonzero(visible.any(axis=1)).tolist():
        row_level[i] = np.median(restored[i][visible[i]])
    out[rows] = np.where(text, row_level[:, None], restored)
    return out
