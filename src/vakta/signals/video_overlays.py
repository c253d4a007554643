"""Logos and bars burnt into a video, found from what does not move, and removed for extra queries.

A logo, watermark or channel badge added to a video stays put while the
picture under it moves; so do pillarbox and letterbox bars.  Over a window of
sampled frames, pixels whose luma hardly varies are static.  Static pixels in
flat bands at the edges are bars: the picture inside them is cropped out.
Static pixels inside the picture are an overlay: they are filled in from
their moving surroundings (normalised Gaussian interpolation), which brings
a frame back within PDQ's reach of the original.  On the reference videos a
large logo moves frames 40-88 bits from the original; filled in, 2-22.

When most of the picture is still (a static scene, a slide show) nothing can
be told apart, and no variant is made.  The variants are query-side only:
the vPDQ signal itself stays the reference's plain frame hashes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage

from vakta.signals import borders
from vakta.signals.imaging import LumaArray

#: Frames are analysed with their long side scaled to this (less costs recall on fine texture).
WORK_SIZE = 512
#: Sampled frames per estimate of what is static: an overlay appearing later is found in its window.
WINDOW = 32
#: Fewer frames than this cannot tell an overlay from a still moment.
MIN_FRAMES = 6
#: Luma standard deviation (0-255) over a window below which a pixel is static.
STATIC_STD = 8.0
#: Share of the picture that may be overlay; a larger static share is a still scene.
MAX_OVERLAY = 0.2
#: Bars must be static over at least this share of their pixels.
MIN_STATIC_BARS = 0.95
#: At the reference resolution (720 px) the mask grows by 2 px and fills blur with sigma 4 px.
_DILATE_AT_720 = 2.0
_SIGMA_AT_720 = 4.0
#: Share of a fill's weight that must come from moving pixels before a pixel is filled at that width.
_MIN_FILL_WEIGHT = 0.1

FrameVariant = tuple[str, LumaArray]


def work_luma(luma: LumaArray) -> LumaArray:
    """The frame scaled (box filter) so its long side is at most :data:`WORK_SIZE`."""
    height, width = luma.shape
    scale = WORK_SIZE / max(height, width)
    if scale >= 1:
        return luma.astype(np.float32, copy=False)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(luma.astype(np.float32, copy=False), "F")
    return np.asarray(image.resize(size, Image.Resampling.BOX), dtype=np.float32)


@dataclass(frozen=True)
class Plan:
    """What a window showed to be static: the bars around the picture and the overlay on it."""

    shape: tuple[int, ...]
    box: borders.Box | None
    bars: NDArray[np.bool_]
    overlay: NDArray[np.bool_] | None = None
    sigma: float = 0.0

    def apply(self, luma: LumaArray) -> list[FrameVariant]:
        """The frame with its overlay filled in, and/or cropped to the picture inside its bars."""
        if luma.shape != self.shape:
            return []
        variants: list[FrameVariant] = []
        cleaned = luma
        if self.overlay is not None:
            cleaned = self._fill(luma)
            variants.append(("overlay-removed", cleaned))
        if self.box is not None:
            b = self.box
            variants.append(
                ("bars-removed", np.ascontiguousarray(cleaned[b.top : b.bottom, b.left : b.right]))
            )
        return variants

    def _fill(self, luma: LumaArray) -> LumaArray:
        """Overlay pixels interpolated from the moving picture around them.

        Normalised Gaussian convolution at growing widths: thin strokes are
        filled from close by, the inside of a solid badge from further out.
        """
        assert self.overlay is not None
        valid = ~(self.overlay | self.bars)
        moving = np.where(valid, luma, 0.0).astype(np.float32)
        out = luma.astype(np.float32, copy=True)
        todo = self.overlay.copy()
        sigma = self.sigma
        while todo.any() and sigma <= max(self.shape):
            weight = ndimage.gaussian_filter(valid.astype(np.float32), sigma)
            ready = todo & (weight > _MIN_FILL_WEIGHT)
            if ready.any():
                out[ready] = (ndimage.gaussian_filter(moving, sigma)[ready]) / weight[ready]
                todo &= ~ready
            sigma *= 2
        return out


def plan_window(frames: NDArray[np.float32]) -> Plan | None:
    """Find bars and a static overlay in a stack of work-size lumas, or None when there are neither.

    Bars are looked for in any window (flat bands show in a single frame);
    an overlay only in a window of :data:`MIN_FRAMES` or more, since in fewer
    frames a still part of the picture looks just like one.
    """
    static = frames.std(axis=0) < STATIC_STD
    shape = static.shape
    box = borders.find_content(np.median(frames, axis=0), borders.LEVELS["trimmed-flat"])
    bars = np.zeros_like(static)
    if box is not None:
        bars[:] = True
        bars[box.top : box.bottom, box.left : box.right] = False
        if static[bars].mean() < MIN_STATIC_BARS:  # a flat edge of the picture itself, moving
            box, bars = None, np.zeros_like(static)
    scale = max(shape) / 720
    grow = max(1, round(_DILATE_AT_720 * scale))
    # The picture's edge along a bar rings in the encoding and looks still: not an overlay.
    near_bars = ndimage.binary_dilation(bars, iterations=2 * grow) if box is not None else bars
    grown = ndimage.binary_dilation(static & ~near_bars, iterations=grow)
    overlay = grown & ~bars
    share = overlay.sum() / max(1, (~bars).sum())
    if len(frames) < MIN_FRAMES or not 0 < share <= MAX_OVERLAY:
        return Plan(shape, box, bars) if box is not None else None
    return Plan(shape, box, bars, overlay, max(1.0, _SIGMA_AT_720 * scale))


class StaticOverlayRemover:
    """Collects a video's sampled frames window by window and returns their variants.

    Memory stays bounded by one window of work-size frames, whatever the
    video's length; a last, short window reuses the previous window's plan.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[int, LumaArray]] = []
        self._plan: Plan | None = None

    def add(self, key: int, luma: LumaArray) -> list[tuple[int, str, LumaArray]]:
        """Queue a frame; returns ``(key, variant, luma)`` for a window once it is complete."""
        self._pending.append((key, work_luma(luma)))
        return self._flush() if len(self._pending) >= WINDOW else []

    def finish(self) -> list[tuple[int, str, LumaArray]]:
        """The variants of the frames still queued."""
        return self._flush()

    def _flush(self) -> list[tuple[int, str, LumaArray]]:
        pending, self._pending = self._pending, []
        if not pending:
            return []
        if len({luma.shape for _, luma in pending}) != 1:
            self._plan = None  # the frame size changed mid-window: nothing in common to compare
            return []
        if len(pending) >= MIN_FRAMES or self._plan is None:
            self._plan = plan_window(np.stack([luma for _, luma in pending]))
        plan = self._plan
        if plan is None:
            return []
        return [(key, name, variant) for key, luma in pending for name, variant in plan.apply(luma)]
