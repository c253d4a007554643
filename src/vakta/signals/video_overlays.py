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

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

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
#: Gaussian filters reach this many sigmas (scipy's default ``truncate``).
_TRUNCATE = 4.0

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
    """What a window showed to be static: the bars around the picture and the overlay on it.

    Which pixels each blur width of a fill fills, and their weights, depend
    on the masks alone: they are worked out once per plan, and a frame costs
    only the blur of its own picture around the filled pixels.
    """

    shape: tuple[int, ...]
    box: borders.Box | None
    bars: NDArray[np.bool_]
    overlay: NDArray[np.bool_] | None = None
    sigma: float = 0.0
    _valid: NDArray[np.bool_] = field(init=False, repr=False, compare=False)
    _fill_steps: list[_FillStep] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        valid = ~self.bars if self.overlay is None else ~(self.overlay | self.bars)
        object.__setattr__(self, "_valid", valid)
        steps = [] if self.overlay is None else _fill_steps(valid, self.overlay, self.sigma)
        object.__setattr__(self, "_fill_steps", steps)

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

        Normalised Gaussian convolution at growing widths (see
        :func:`_fill_steps`): thin strokes are filled from close by, the
        inside of a solid badge from further out.
        """
        moving = np.where(self._valid, luma, 0.0).astype(np.float32)
        out = luma.astype(np.float32, copy=True)
        for step in self._fill_steps:
            out[step.ready] = step.blur(moving) / step.weight
        return out


def _fill_steps(valid: NDArray[np.bool_], overlay: NDArray[np.bool_], sigma: float) -> list[_FillStep]:
    """Per blur width, from ``sigma`` doubling, the overlay pixels it fills and their weights.

    A pixel is filled at the first width whose weight from moving pixels
    (``valid``) is over :data:`_MIN_FILL_WEIGHT`; weights are needed at the
    pixels still to fill alone, so only the region around them is blurred.
    """
    todo = overlay.copy()
    steps: list[_FillStep] = []
    while todo.any() and sigma <= max(valid.shape):
        region = _region(todo, sigma)
        weight = _blur(valid, region, sigma)
        ready = np.zeros_like(todo)
        ready[region] = todo[region] & (weight > _MIN_FILL_WEIGHT)
        if ready.any():
            filled = _region(ready, sigma)
            steps.append(_FillStep(ready, weight[ready[region]], sigma, filled, ready[filled]))
            todo &= ~ready
        sigma *= 2
    return steps


def _region(mask: NDArray[np.bool_], sigma: float) -> tuple[slice, slice]:
    """The bounding box of ``mask`` grown by the reach of a Gaussian blur of ``sigma``, within the frame.

    A Gaussian filter's output at a pixel depends only on the input within its
    radius (``truncate`` x sigma, as :func:`scipy.ndimage.gaussian_filter` cuts
    it), so blurring this region alone gives, inside the box, exactly the
    values a blur of the whole frame gives (where the region meets the frame's
    edge, the filter's reflection is the same too).
    """
    radius = int(_TRUNCATE * sigma + 0.5)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    height, width = mask.shape
    return (
        slice(max(0, int(rows[0]) - radius), min(height, int(rows[-1]) + 1 + radius)),
        slice(max(0, int(cols[0]) - radius), min(width, int(cols[-1]) + 1 + radius)),
    )


def _blur(image: NDArray[Any], region: tuple[slice, slice], sigma: float) -> NDArray[np.float32]:
    """The Gaussian blur of ``image`` (as float32) over ``region`` (see :func:`_region`)."""
    part = image[region].astype(np.float32, copy=False)
    blurred: NDArray[np.float32] = ndimage.gaussian_filter(part, sigma, truncate=_TRUNCATE)
    return blurred


@dataclass(frozen=True)
class _FillStep:
    """One blur width of a fill: the pixels it fills, their weights, and the region to blur for them."""

    ready: NDArray[np.bool_]
    weight: NDArray[np.float32]
    sigma: float
    region: tuple[slice, slice]
    ready_in_region: NDArray[np.bool_]

    def blur(self, moving: NDArray[np.float32]) -> NDArray[np.float32]:
        """The whole-frame blur of ``moving`` at the filled pixels, in their (row-major) order."""
        result: NDArray[np.float32] = _blur(moving, self.region, self.sigma)[self.ready_in_region]
        return result


def plan_window(frames: NDArray[np.float32]) -> Plan | None:
    """Find bars and a static overlay in a stack of work-size lumas, or None when there are neither.

    Bars are looked for in any window (flat bands show in a single frame);
    an overlay only in a window of :data:`MIN_FRAMES` or more, since in fewer
    frames a still part of the picture looks just like one.
    """
    static = frames.std(axis=0) < STATIC_STD
    shape = static.shape
    box = borders.find_content(_median(frames), borders.LEVELS["trimmed-flat"])
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


def _median(frames: NDArray[np.float32]) -> NDArray[np.float32]:
    """``np.median(frames, axis=0)``, the same values (frames hold no NaN), several times as fast.

    A window has at most :data:`WINDOW` frames, so each pixel's median is
    taken by a comparator network run on whole frames (``np.minimum`` and
    ``np.maximum``, which move values without changing them) rather than by
    numpy's selection, pixel by pixel: the middle value, or the float32 mean
    of the middle two, as ``np.median`` computes it.
    """
    lanes = list(frames)
    for low, high in _median_network(len(lanes)):
        lanes[low], lanes[high] = np.minimum(lanes[low], lanes[high]), np.maximum(lanes[low], lanes[high])
    half = len(lanes) // 2
    middle: NDArray[np.float32] = lanes[half] if len(lanes) % 2 else (lanes[half - 1] + lanes[half]) / 2
    return middle


@lru_cache(maxsize=2 * WINDOW)
def _median_network(count: int) -> tuple[tuple[int, int], ...]:
    """Comparators ``(low, high)`` that bring the middle value(s) of ``count`` values to the middle.

    Batcher's odd-even merge sort for the next power of two sorts any input;
    comparators touching the missing values (as if +inf, which never move)
    are dropped, and so is every comparator the middle position(s) do not
    depend on: 104 comparators for 23 frames instead of a sort of each pixel.
    """
    size = 1 << max(0, count - 1).bit_length()
    network = []
    span = 1
    while span < size:
        step = span
        while step >= 1:
            for first in range(step % span, size - step, 2 * step):
                for i in range(min(step, size - first - step)):
                    if (first + i) // (2 * span) == (first + i + step) // (2 * span):
                        network.append((first + i, first + i + step))
            step //= 2
        span *= 2
    needed = {count // 2, (count - 1) // 2}
    kept = []
    for low, high in reversed(network):
        if high < count and (low in needed or high in needed):
            kept.append((low, high))
            needed |= {low, high}
    return tuple(reversed(kept))


@dataclass(frozen=True)
class Window:
    """A complete window of sampled frames, as ``(key, work-size luma)``, and the plan for them.

    Each frame's variants are :meth:`Plan.apply` of its luma, independent of
    the other frames' (so they can be made in any order, or at once).
    """

    plan: Plan
    frames: list[tuple[int, LumaArray]]


class StaticOverlayRemover:
    """Collects a video's sampled frames window by window and plans each window's variants.

    Memory stays bounded by one window of work-size frames, whatever the
    video's length; a last, short window reuses the previous window's plan.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[int, LumaArray]] = []
        self._plan: Plan | None = None

    def add(self, key: int, luma: LumaArray) -> Window | None:
        """Queue a frame; returns the window once it is complete, if it has anything to remove.

        ``luma`` may be the frame already scaled by :func:`work_luma` (which leaves it as it is).
        """
        self._pending.append((key, work_luma(luma)))
        return self._flush() if len(self._pending) >= WINDOW else None

    def finish(self) -> Window | None:
        """The window of the frames still queued, if it has anything to remove."""
        return self._flush()

    def _flush(self) -> Window | None:
        pending, self._pending = self._pending, []
        if not pending:
            return None
        if len({luma.shape for _, luma in pending}) != 1:
            self._plan = None  # the frame size changed mid-window: nothing in common to compare
            return None
        if len(pending) >= MIN_FRAMES or self._plan is None:
            self._plan = plan_window(np.stack([luma for _, luma in pending]))
        return None if self._plan is None else Window(self._plan, pending)
