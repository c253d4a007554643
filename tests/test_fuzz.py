"""Hostile bytes: whatever a file holds, hashing it gives signals or an error, never an exception."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vakta.signals.compute import compute_signals
from vakta.signals.model import HashOptions, Signals


def _seed_images() -> list[bytes]:
    im = Image.radial_gradient("L").resize((96, 64)).convert("RGB")
    out = []
    for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"):
        buf = io.BytesIO()
        im.save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seed_images()


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A real image with bytes flipped, cut short or spliced: the shapes decoders choke on."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    cut = draw(st.integers(8, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=64))


def _hash(data: bytes) -> Signals:
    return compute_signals(io.BytesIO(data), Signals("fuzz"), HashOptions())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_images())
def test_mutated_images_never_raise(data: bytes) -> None:
    signals = _hash(data)
    assert signals.md5 and signals.size == len(data)
    assert signals.pdq is not None or signals.errors or not (signals.type or "").startswith("image/")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise(data: bytes) -> None:
    signals = _hash(data)
    assert signals.size == len(data)


@pytest.mark.parametrize("seed", SEEDS)
def test_seeds_hash_cleanly(seed: bytes) -> None:
    signals = _hash(seed)
    assert not signals.errors and signals.pdq
