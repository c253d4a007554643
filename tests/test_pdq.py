"""Unit tests of the numpy PDQ: equivalence with the reference binding and exact dihedral hashes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vakta.signals import kinds, pdq
from vakta.signals.imaging import MAX_AXIS, decode_luma
from vakta.signals.model import HashOptions, Signals
from vakta.signals.pdq_hasher import HASHER

SIZES = [(64, 64), (100, 37), (257, 513), (480, 640), (1004, 1600), (1, 300), (3, 3)]


def _image(height: int, width: int, seed: int) -> np.ndarray:
    """A benign generated picture: smooth gradients, blobs and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = 128 + 60 * np.sin(x / max(width, 1) * 6 + seed) * np.cos(y / max(height, 1) * 4)
    base += rng.normal(0, 20, (height, width))
    rgb = np.stack([base, base * 0.8 + 30, 255 - base], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_equivalent_to_the_reference_binding(height: int, width: int) -> None:
    pdqhash = pytest.importorskip("pdqhash", reason="pdqhash (reference C++ binding) not installed")
    for seed in range(3):
        rgb = _image(height, width, seed)
        vector, quality = pdqhash.compute(rgb)
        reference = f"{int(''.join(str(int(b)) for b in vector), 2):064x}"
        ours = pdq.hash_luma(_luma(rgb))
        assert pdq.hamming(ours.hex, reference) <= 1, (height, width, seed)
        assert ours.quality == quality


def test_eight_dihedral_hashes_are_exact() -> None:
    """Each rotation/flip of a picture gives back the original's hash at distance 0, with its name."""
    im = Image.fromarray(_image(301, 517, 7))
    original = pdq.hash_luma(_luma(np.asarray(im))).hex
    expected = {
        Image.Transpose.ROTATE_90: "rotate90",
        Image.Transpose.ROTATE_180: "rotate180",
        Image.Transpose.ROTATE_270: "rotate270",
        Image.Transpose.FLIP_LEFT_RIGHT: "mirror",
        Image.Transpose.FLIP_TOP_BOTTOM: "flip",
        Image.Transpose.TRANSPOSE: "transpose",
        Image.Transpose.TRANSVERSE: "transverse",
    }
    for op, name in expected.items():
        hashes, _ = pdq.dihedral_hashes(_luma(np.asarray(im.transpose(op))))
        assert hashes[pdq.TRANSFORMS.index(name)] == original, name
        assert hashes[0] != original


def test_flat_image_has_quality_zero() -> None:
    assert pdq.hash_luma(np.full((200, 300), 128, dtype=np.float32)).quality == 0


def test_hamming_and_hex_validation() -> None:
    a = "f" * 64
    assert pdq.hamming(a, "0" * 64) == 256
    assert pdq.hamming(a, a) == 0
    with pytest.raises(ValueError, match="64 hex"):
        kinds.normalize("pdq", "abc")


def test_reduced_axis_weights_stay_small_for_absurd_shapes() -> None:
    """A 20,000,000 x 1 picture must not need gigabytes of weights."""
    weights = pdq.sampling_matrix(MAX_AXIS, 20_000_000 // MAX_AXIS + 1, 20_000_000)
    assert weights.shape == (64, MAX_AXIS)
    assert np.isclose(weights.sum(axis=1), 1.0, atol=1e-3).all()


def test_long_png_axis_is_block_averaged_and_stays_close() -> None:
    rgb = _image(300, 5000, 3)
    exact = pdq.hash_luma(_luma(rgb)).hex
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "PNG")
    decoded = decode_luma(out.getvalue())
    assert decoded.luma.shape[1] <= MAX_AXIS
    assert decoded.scale == (1, 3)
    assert pdq.hamming(exact, pdq.hash_luma(decoded.luma, decoded.scale, (300, 5000)).hex) <= 8


@pytest.mark.parametrize("gamma", [0.6, 1.6])
def test_tone_queries_undo_a_brightened_or_darkened_copy(gamma: float) -> None:
    """A copy through a tone curve is found by the tone-curve query, black areas included."""
    rgb = _image(360, 480, 5).astype(np.float32)
    rgb[:, :160] *= 0.15  # a dark part, with black rows above it
    rgb[:40] = 0
    original = np.clip(rgb, 0, 255).astype(np.uint8)
    toned = np.clip(255 * (original / 255.0) ** gamma, 0, 255).astype(np.uint8)

    def hashed(pixels: np.ndarray) -> Signals:
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG")
        signals = Signals(path="x.png")
        HASHER.compute(buf.getvalue(), signals, HashOptions())
        return signals

    stored, query = hashed(original), hashed(toned)
    assert stored.pdq and query.pdq
    plain = pdq.hamming(stored.pdq, query.pdq)
    tone = min(
        pdq.hamming(stored.pdq, q.hex)
        for q in query.pdq_queries
        if q.variant.startswith("gamma") and q.transform == "original"
    )
    assert tone <= 2 < plain, (plain, tone)
