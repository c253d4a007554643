"""PDQ perceptual hash, computed with numpy and equivalent to Meta's reference.

The reference blurs the full-resolution luma with two passes of a box filter
("Jarosz filter") along each axis, then samples a 64x64 grid.  Both steps are
linear and separable, so the 64x64 grid equals ``A_rows @ luma @ A_cols.T``
where each ``A`` holds, for the 64 sampled rows, the weights the two box
passes give every input row.  Two small matrix products replace a filter pass
over every pixel, which is what makes hashing fast without changing the
result beyond float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

# Vakta parallelises with one process per core; BLAS threads inside each would
# oversubscribe the cores (measured: hashing 3-5x slower), so keep BLAS serial.
threadpool_limits(limits=1, user_api="blas")

HASH_BITS = 256
HASH_HEX_LEN = HASH_BITS // 4
_GRID = 64
_DCT_SIZE = 16
#: The reference gives images thinner than this an all-zero hash of quality 0.
MIN_HASHABLE_DIM = 5
_EMPTY = "0" * (HASH_BITS // 4)

#: Names of the eight dihedral transforms, in the order :func:`dihedral_hashes`
#: returns them.  Each names how the query image differs from the image whose
#: hash it matches (``rotate90``: the query is the original turned 90 degrees
#: counter-clockwise, as ``PIL.Image.Transpose.ROTATE_90``).
TRANSFORMS = (
    "original",
    "rotate270",
    "rotate180",
    "rotate90",
    "mirror",
    "flip",
    "transpose",
    "transverse",
)

FloatArray = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class PdqHash:
    """A 256-bit PDQ hash as 64 lower-case hex characters, with its quality (0-100)."""

    hex: str
    quality: int


def window_size(length: int) -> int:
    """Box-filter width the reference uses for an axis of ``length`` pixels."""
    return (length + 2 * _GRID - 1) // (2 * _GRID)


class _BoxPass:
    """One pass of the reference's box filter over an axis of ``length`` pixels.

    Output ``k`` averages inputs ``lo(k)..hi(k)``: the window is clipped at the
    ends and the average taken over what remains, as the reference does.
    """

    def __init__(self, length: int, width: int) -> None:
        half = (width + 2) // 2
        self.before = width - half
        self.after = half - 1
        self.last = length - 1

    def lo(self, k: NDArray[np.int64]) -> NDArray[np.int64]:
        return np.maximum(k - self.before, 0)

    def hi(self, k: NDArray[np.int64]) -> NDArray[np.int64]:
        return np.minimum(k + self.after, self.last)

    def inverse_count(self, k: NDArray[np.int64]) -> NDArray[np.float64]:
        result: NDArray[np.float64] = 1.0 / (self.hi(k) - self.lo(k) + 1)
        return result


#: (rows, columns) of stored pixels each luma pixel stands for; (1, 1) at full size.
Scale = tuple[int, int]
FULL_SIZE: Scale = (1, 1)


#: Longest stored axis whose weights are modelled pixel by pixel; beyond it the
#: blur is so wide that modelling at the luma's own resolution is as good, and
#: a 20,000,000 x 1 picture costs no more than a small one.
_MAX_MODEL_LENGTH = 1 << 17


def _sample_weights(full: int, width: int) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The weights two box passes give each stored pixel, for each of the 64 samples.

    Only a span of about twice the box width around each sample is non-zero,
    so the weights are built on that span alone (a difference array per
    sample): returns, per sample, the first pixel of its span and the span's
    weights (64 x span).
    """
    box = _BoxPass(full, width)
    samples = ((np.arange(_GRID) + 0.5) * full / _GRID).astype(np.int64)
    # First pass: sample s averages pixels lo(s)..hi(s).
    first = box.lo(samples)[:, None] + np.arange(width + 1)[None, :]
    first_weight = np.where(first <= box.hi(samples)[:, None], box.inverse_count(samples)[:, None], 0.0)
    first = np.minimum(first, full - 1)
    # Second pass: each of those pixels k spreads its weight over lo(k)..hi(k).
    start = box.lo(box.lo(samples))
    span = 2 * width + 4
    # Each sample's difference array, all summed by one bincount over flat indices.
    spread = first_weight * box.inverse_count(first)
    row = np.arange(_GRID)[:, None] * (span + 1) - start[:, None]
    at = np.concatenate([(row + box.lo(first)).ravel(), (row + box.hi(first) + 1).ravel()])
    diff = np.bincount(at, np.concatenate([spread.ravel(), -spread.ravel()]), _GRID * (span + 1))
    return start, np.cumsum(diff.reshape(_GRID, span + 1)[:, :span], axis=1)


@lru_cache(maxsize=16)  # at most 64 x 2048 float32 (512 KiB) each; the bands built from it are cached
def sampling_matrix(length: int, scale: int = 1, full_length: int | None = None) -> FloatArray:
    """Weights (64 x ``length``) mapping an axis of luma to the reference's 64 samples.

    For an axis decoded at 1/``scale`` (``full_length`` stored pixels shown as
    ``length``), the full-size weights are summed over each reduced pixel's
    block, so the blur and sample positions stay those of the stored image.
    """
    full = length * scale if full_length is None else full_length
    if scale > 1 and full > _MAX_MODEL_LENGTH:
        full, width, scale = length, max(1, round(window_size(full) / scale)), 1
    else:
        width = window_size(full)
    start, weights = _sample_weights(full, width)
    pixels = start[:, None] + np.arange(weights.shape[1])[None, :]
    target = pixels // scale
    keep = (pixels < full) & (target < length)
    at = (np.arange(_GRID)[:, None] * length + target)[keep]
    out = np.bincount(at, weights[keep], _GRID * length).reshape(_GRID, length)
    return out.astype(np.float32)


@lru_cache(maxsize=1)
def _dct_matrix() -> NDArray[np.float64]:
    i = np.arange(1, _DCT_SIZE + 1)[:, None]
    j = np.arange(_GRID)[None, :]
    matrix: NDArray[np.float64] = np.sqrt(2.0 / _GRID) * np.cos((np.pi / 2 / _GRID) * i * (2 * j + 1))
    return matrix


def grid64(
    luma: FloatArray, scale: Scale = FULL_SIZE, full_shape: tuple[int, int] | None = None
) -> FloatArray:
    """Blur and sample a luma image (values 0-255) to the reference's 64x64 grid.

    ``scale`` and ``full_shape`` (stored height, width) describe a reduced decode
    or a pre-reduced axis (see :func:`sampling_matrix`).
    """
    rows, cols = _axis_bands(luma, scale, full_shape)
    return rows.times(cols.times_transposed(luma))


def _axis_bands(
    luma: FloatArray, scale: Scale, full_shape: tuple[int, int] | None, reverse: bool = False
) -> tuple[_Band, _Band]:
    """The row and column sampling weights of a luma plane (see :func:`grid64`); reversed: of it flipped."""
    full_rows, full_cols = full_shape if full_shape else (None, None)
    return (
        _band(luma.shape[0], scale[0], full_rows, reverse),
        _band(luma.shape[1], scale[1], full_cols, reverse),
    )


#: Pixels per block of a band (fewer blocks: less Python; more: fewer zeros multiplied).
_BLOCK_PIXELS = 64
_MAX_BLOCKS = 16


@dataclass(frozen=True, slots=True)
class _Band:
    """A 64 x length sampling matrix cut into column blocks, each with the samples that reach into it.

    Each sample's weights span about 1/64 of the axis, so the dense matrix is
    mostly zeros: multiplying block by block with only the samples that touch
    each block does a sixth of the arithmetic (measured 2.5-3x faster on
    pictures of 0.1-3 MP) and sums only non-zero terms.
    """

    #: (first pixel, end pixel, first sample, end sample, weights samples x pixels) per block.
    blocks: tuple[tuple[int, int, int, int, FloatArray], ...]

    def times_transposed(self, x: FloatArray) -> FloatArray:
        """``x @ matrix.T``: the samples of every row of ``x`` (x is n x length)."""
        out = np.zeros((x.shape[0], _GRID), np.float32)
        for c0, c1, j0, j1, weights in self.blocks:
            out[:, j0:j1] += x[:, c0:c1] @ weights.T
        return out

    def times(self, y: FloatArray) -> FloatArray:
        """``matrix @ y``: the samples of every column of ``y`` (y is length x n)."""
        out = np.zeros((_GRID, y.shape[1]), np.float32)
        for c0, c1, j0, j1, weights in self.blocks:
            out[j0:j1] += weights @ y[c0:c1]
        return out


@lru_cache(maxsize=512)  # every picture size seen recently, each axis both ways: a few MB
def _band(length: int, scale: int, full_length: int | None, reverse: bool) -> _Band:
    """The :func:`sampling_matrix` of an axis (reversed: of the axis flipped) as a :class:`_Band`."""
    matrix = sampling_matrix(length, scale, full_length)
    if reverse:
        matrix = matrix[:, ::-1]
    count = max(1, min(_MAX_BLOCKS, length // _BLOCK_PIXELS))
    edges = np.linspace(0, length, count + 1).astype(np.int64)
    nonzero = matrix != 0
    first = np.where(nonzero.any(axis=1), nonzero.argmax(axis=1), length)
    last = length - 1 - nonzero[:, ::-1].argmax(axis=1)
    # reaches[b, j]: sample j has weight in block b (its span overlaps the block).
    reaches = (first[None, :] < edges[1:, None]) & (last[None, :] >= edges[:-1, None])
    blocks = []
    for b in np.flatnonzero(reaches.any(axis=1)).tolist():
        j0, j1 = int(reaches[b].argmax()), _GRID - int(reaches[b, ::-1].argmax())
        c0, c1 = int(edges[b]), int(edges[b + 1])
        blocks.append((c0, c1, j0, j1, np.ascontiguousarray(matrix[j0:j1, c0:c1])))
    return _Band(tuple(blocks))


def quality(grid: FloatArray) -> int:
    """The reference's image-domain quality: summed gradients of the 64x64 grid."""
    g = grid.astype(np.float32)
    down = np.trunc((g[:-1, :] - g[1:, :]) * 100 / 255)
    across = np.trunc((g[:, :-1] - g[:, 1:]) * 100 / 255)
    total = int(np.abs(down).sum() + np.abs(across).sum())
    return min(100, total // 90)


def dct16(grid: FloatArray) -> NDArray[np.float64]:
    """The 16x16 low-frequency DCT coefficients (without DC) the hash thresholds."""
    d = _dct_matrix()
    result: NDArray[np.float64] = d @ grid.astype(np.float64) @ d.T
    return result


def _bits_to_hex(coeffs: NDArray[np.float64]) -> str:
    flat = coeffs.ravel()
    median = np.partition(flat, HASH_BITS // 2 - 1)[HASH_BITS // 2 - 1]
    # Bit k = row * 16 + col; the reference prints 16-bit words from the
    # highest down, so the hex string reads the bits in reverse order.
    bits = (flat > median)[::-1]
    return np.packbits(bits).tobytes().hex()


def dihedral_grids(
    luma: FloatArray, scale: Scale = FULL_SIZE, full_shape: tuple[int, int] | None = None
) -> list[FloatArray]:
    """The 64x64 grids of the image's eight rotations/flips, in :data:`TRANSFORMS` order.

    Entry ``k`` is the grid of the query undone by ``TRANSFORMS[k]``: it equals
    the original's grid when the query is the original under that transform.
    Flipping an axis reverses that axis's sampling weights, and transposing the
    image transposes the grid, so all eight are exact (the reference's own
    dihedral mode flips DCT signs instead, which is off by the filter's
    asymmetry and misses some mirrored copies) and cost one extra pass over the pixels.
    """
    rows, cols = _axis_bands(luma, scale, full_shape)
    rows_rev, cols_rev = _axis_bands(luma, scale, full_shape, reverse=True)
    across = np.concatenate([cols.times_transposed(luma), cols_rev.times_transposed(luma)], axis=1)
    top, bottom = rows.times(across), rows_rev.times(across)
    g, mirrored = top[:, :_GRID], top[:, _GRID:]
    flipped, turned = bottom[:, :_GRID], bottom[:, _GRID:]
    return [g, mirrored.T, turned, flipped.T, mirrored, flipped, g.T, turned.T]


def _too_small(luma: FloatArray, scale: Scale, full_shape: tuple[int, int] | None) -> bool:
    rows, cols = full_shape or (luma.shape[0] * scale[0], luma.shape[1] * scale[1])
    return min(rows, cols) < MIN_HASHABLE_DIM


def hash_luma(
    luma: FloatArray, scale: Scale = FULL_SIZE, full_shape: tuple[int, int] | None = None
) -> PdqHash:
    """PDQ hash of a luma image (see :func:`grid64` for the reduced-decode arguments)."""
    if _too_small(luma, scale, full_shape):
        return PdqHash(_EMPTY, 0)
    grid = grid64(luma, scale, full_shape)
    return PdqHash(_bits_to_hex(dct16(grid)), quality(grid))


def dihedral_hashes(
    luma: FloatArray, scale: Scale = FULL_SIZE, full_shape: tuple[int, int] | None = None
) -> tuple[list[str], int]:
    """The eight dihedral PDQ hashes (see :data:`TRANSFORMS`) and the quality of the image as stored."""
    if _too_small(luma, scale, full_shape):
        return [_EMPTY] * len(TRANSFORMS), 0
    grids = dihedral_grids(luma, scale, full_shape)
    return [_bits_to_hex(dct16(g)) for g in grids], quality(grids[0])


def hamming(a: str, b: str) -> int:
    """Bit distance between two PDQ hex strings."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
