"""Decode image bytes to the luma plane PDQ hashes, safely and fast.

Pixels are hashed as stored (EXIF orientation is ignored, as the reference
does); rotations are covered by matching all eight dihedral hashes instead.
Every Pillow mode is converted to true luma, so palette, CMYK, 16-bit and
alpha images hash like the picture they show.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFile, UnidentifiedImageError

from vakta.signals.pdq import Scale, window_size

try:  # HEIC/HEIF support is optional at run time but declared as a dependency
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - exercised only on broken installs
    pass

ImageFile.LOAD_TRUNCATED_IMAGES = False

#: Largest image (in pixels) Vakta decodes; larger ones are reported as
#: decompression bombs.  Pillow's own default is 89 MP; photos from modern
#: phones and scans reach 50-200 MP, so allow more but stay bounded.
DEFAULT_MAX_PIXELS = 250_000_000
# Pillow refuses images over twice its own limit before Vakta's check can run;
# lift it to Vakta's so the documented limit is the one that applies.
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < DEFAULT_MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS

#: JPEGs are decoded at 1/2, 1/4 or 1/8 scale while the scale stays this many
#: times smaller than PDQ's box-filter width: the filter then dominates the
#: decoder's own averaging and the hash stays within about a bit of the
#: full-resolution one (see bench/hashing.py).
JPEG_SCALE_MARGIN = 2.5

#: Longest luma axis hashed as is; longer axes are block-averaged first.
MAX_AXIS = 2048

#: The reference's luma weights for R, G and B, as float32 (its arithmetic).
_R, _G, _B = np.float32(0.299), np.float32(0.587), np.float32(0.114)

LumaArray = NDArray[np.float32]


class ImageDecodeError(ValueError):
    """The bytes are not a decodable image, or decoding them is unsafe."""


@dataclass(frozen=True, slots=True)
class DecodedLuma:
    """A luma plane and how it relates to the stored image.

    ``scale`` is the reduction used per axis ((1, 1) = full size): each luma
    pixel stands for ``scale[0]`` x ``scale[1]`` stored pixels.
    """

    luma: LumaArray
    width: int
    height: int
    scale: Scale
    format: str


def _jpeg_scale(width: int, height: int) -> int:
    limit = window_size(min(width, height)) / JPEG_SCALE_MARGIN
    for scale in (8, 4, 2):
        if scale <= limit:
            return scale
    return 1


def rgb_luma(rgb: NDArray[np.uint8] | NDArray[np.float32]) -> LumaArray:
    """Luma as the reference computes it from 8-bit RGB (alpha, if any, ignored)."""
    return _weighted(rgb[..., 0], rgb[..., 1], rgb[..., 2])


def _weighted(
    r: NDArray[np.uint8] | NDArray[np.float32],
    g: NDArray[np.uint8] | NDArray[np.float32],
    b: NDArray[np.uint8] | NDArray[np.float32],
) -> LumaArray:
    # Three scaled planes summed in place, in the reference's order: a quarter of
    # the time of a float copy of the pixels times a 3-vector.
    luma: LumaArray = r * _R
    luma += g * _G
    luma += b * _B
    return luma


def _image_luma(im: Image.Image) -> LumaArray:
    """Luma of an RGB-like Pillow image from its bands (Pillow splits them in C, with no interleaved copy)."""
    r, g, b = (np.asarray(band) for band in im.split()[:3])
    return _weighted(r, g, b)


def _to_luma(im: Image.Image) -> LumaArray:
    mode = im.mode
    if mode == "L":
        return np.asarray(im, dtype=np.float32)
    if mode in ("RGB", "RGBA", "RGBX"):
        # Alpha is dropped, not composited: that is what the reference hashes.
        return _image_luma(im)
    if mode in ("LA", "La"):
        return np.asarray(im.getchannel(0), dtype=np.float32)
    if mode.startswith("I") or mode == "F":
        return _wide_luma(im)
    if mode == "LAB":
        return np.asarray(im.getchannel(0), dtype=np.float32)
    return _image_luma(im.convert("RGB"))


def _wide_luma(im: Image.Image) -> LumaArray:
    """16/32-bit integer and float images: scale their range to 0-255."""
    plane = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    if plane.ndim == 3:
        plane = plane[..., 0]
    top = float(plane.max()) if plane.size else 0.0
    if im.mode == "F" and 0.0 <= top <= 1.0:
        plane = plane * 255.0
    elif top > 255.0:
        plane = plane * (255.0 / (65535.0 if top <= 65535.0 else top))
    result: LumaArray = np.clip(plane, 0.0, 255.0)
    return result


def decode_luma(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, reduce_jpeg: bool = True) -> DecodedLuma:
    """Decode the first frame of an image to luma; raise :class:`ImageDecodeError` on any failure."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # e.g. palette transparency notes
            im = Image.open(io.BytesIO(data))
            width, height = im.size
            if width <= 0 or height <= 0:
                raise ImageDecodeError(f"image has no pixels ({width}x{height})")
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"decompression bomb: {width}x{height} is over the {max_pixels:,} pixel limit"
                )
            scale = 1
            if reduce_jpeg and im.format == "JPEG" and im.mode in ("RGB", "L"):
                wanted = _jpeg_scale(width, height)
                if wanted > 1:
                    im.draft("L", (width // wanted, height // wanted))
                    scale = max(1, round(width / im.size[0]))
            im.load()
            fmt = im.format or "unknown"
            shrunk, factors = _shrink_long_axes(im)
            luma = _to_luma(shrunk)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"decompression bomb: {exc}") from None
    except MemoryError:
        raise ImageDecodeError("image too large to decode in memory") from None
    except Exception as exc:  # Pillow raises many types for hostile input
        raise ImageDecodeError(_describe(exc)) from None
    return DecodedLuma(
        np.ascontiguousarray(luma, dtype=np.float32),
        width,
        height,
        (scale * factors[0], scale * factors[1]),
        fmt,
    )


#: Modes Pillow's ``reduce`` (block means in C) works on directly.
_REDUCIBLE = frozenset({"L", "LA", "RGB", "RGBA", "RGBX", "I", "F", "I;16"})


def _shrink_long_axes(im: Image.Image) -> tuple[Image.Image, Scale]:
    """Average blocks of pixels along any axis longer than :data:`MAX_AXIS`.

    The blur PDQ applies to such an axis is many pixels wide, so block means
    change the hash no more than the reduced JPEG decode does.  Done by Pillow
    on the decoded pixels, before any float copy, it bounds memory (a 225 MP
    picture would need 900 MB as floats) and the sampling weights (a
    20,000,000 x 1 picture is legal), and it speeds up large PNG/TIFF/WebP.
    Returns the image and the (rows, columns) block size.
    """
    fy = -(-im.height // MAX_AXIS)
    fx = -(-im.width // MAX_AXIS)
    if fx == 1 and fy == 1:
        return im, (1, 1)
    if im.mode not in _REDUCIBLE:
        im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
    return im.reduce((fx, fy)), (fy, fx)


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, UnidentifiedImageError):
        return "not a decodable image"
    return f"image decode failed: {text}"
