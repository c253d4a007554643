"""Every image format the issue names decodes to the same picture, detected by content."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vakta.signals import pdq
from vakta.signals.compute import compute_signals
from vakta.signals.model import HashOptions, Signals

FORMATS = {
    "JPEG": ("image/jpeg", {"quality": 90}),
    "PNG": ("image/png", {}),
    "GIF": ("image/gif", {}),
    "WEBP": ("image/webp", {"quality": 90}),
    "BMP": ("image/bmp", {}),
    "TIFF": ("image/tiff", {}),
    "AVIF": ("image/avif", {"quality": 90}),
    "HEIF": ("image/heic", {"quality": 90}),
}


def _picture() -> Image.Image:
    y, x = np.mgrid[0:240, 0:320]
    r = 128 + 100 * np.sin(x / 23.0)
    g = 128 + 100 * np.cos(y / 17.0)
    b = (x + y) % 256
    return Image.fromarray(np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8))


def _signals(data: bytes) -> Signals:
    return compute_signals(io.BytesIO(data), Signals("x"), HashOptions(extra_queries=False))


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_format_is_sniffed_and_hashes_like_the_png(fmt: str) -> None:
    mime, options = FORMATS[fmt]
    picture = _picture()
    if fmt == "GIF":  # GIF holds 256 colours: compare with the same palette picture
        picture = picture.quantize(256, dither=Image.Dither.NONE).convert("RGB")
    reference = io.BytesIO()
    picture.save(reference, "PNG")
    out = io.BytesIO()
    if fmt == "HEIF":
        pytest.importorskip("pillow_heif", reason="pillow-heif not installed")
    try:
        picture.save(out, fmt, **options)
    except (KeyError, OSError) as exc:  # an encoder missing from this Pillow build
        pytest.skip(f"Pillow cannot write {fmt} here: {exc}")
    signals = _signals(out.getvalue())
    assert signals.type in (mime, "image/heif"), signals.type
    assert not signals.errors, signals.errors
    assert pdq.hamming(signals.pdq or "", _signals(reference.getvalue()).pdq or "") <= 12


def test_animated_gif_hashes_its_first_frame() -> None:
    first = _picture()
    second = first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = io.BytesIO()
    first.save(out, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    only_first = io.BytesIO()
    first.save(only_first, "GIF")
    assert _signals(out.getvalue()).pdq == _signals(only_first.getvalue()).pdq
