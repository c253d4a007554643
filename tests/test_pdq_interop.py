"""PDQ interoperability with Meta's reference, on the shared reference vectors.

Lists come from other organisations, hashed with the reference; our hashes
must land where theirs do.  These tests need ../shared/vectors and skip
(with the reason) where it is absent.
"""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

import pytest
from PIL import Image

from vakta.lists.store import EntryRow
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Matcher
from vakta.signals import pdq
from vakta.signals.imaging import decode_luma
from vakta.signals.model import HashOptions, Signals
from vakta.signals.pdq_hasher import HASHER

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "pdq"
pytestmark = pytest.mark.skipif(
    not (VECTORS / "reference.csv").exists(), reason=f"reference vectors not found at {VECTORS}"
)


def _reference_rows() -> list[dict[str, str]]:
    with (VECTORS / "reference.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _hash_bytes(data: bytes, **kw: bool) -> Signals:
    signals = Signals("x")
    HASHER.compute(data, signals, HashOptions(**kw))
    return signals


def _hash_file(path: Path, **kw: bool) -> Signals:
    return _hash_bytes(path.read_bytes(), **kw)


def _reference_is_right(row: dict[str, str]) -> bool:
    """The reference mis-decodes some colour modes; those rows are tested against the picture instead."""
    return "reference decoder" not in row["note"]


def test_reference_hashes_within_bounds() -> None:
    distances = []
    for row in _reference_rows():
        if int(row["quality"]) < 80 or not _reference_is_right(row):
            continue
        ours = _hash_file(VECTORS / row["file"])
        d = pdq.hamming(ours.pdq or "", row["pdq_reference"])
        assert d <= 10, f"{row['file']}: {d} bits from the reference"
        distances.append(d)
    assert len(distances) > 30
    assert statistics.median(distances) <= 2


def test_full_resolution_is_bit_exact_with_reference() -> None:
    """Without the reduced JPEG decode our arithmetic equals the reference's."""
    for row in _reference_rows():
        if not _reference_is_right(row) or row["file"].endswith("1.png"):
            continue
        ours = _hash_file(VECTORS / row["file"], reduce_jpeg=False)
        assert pdq.hamming(ours.pdq or "", row["pdq_reference"]) <= 1, row["file"]
        assert ours.pdq_quality == int(row["quality"]), row["file"]


def test_every_pillow_mode_hashes_like_the_picture() -> None:
    modes = VECTORS / "misc-images" / "modes"
    original = _hash_file(modes / "original.jpg").pdq or ""
    for path in sorted(modes.iterdir()):
        d = pdq.hamming(original, _hash_file(path).pdq or "")
        assert d <= 4, f"{path.name}: {d} bits from original.jpg"


def test_exif_orientation_is_ignored_like_the_reference() -> None:
    for row in _reference_rows():
        if row["file"].startswith("reg-test-input/exif-rotn/"):
            ours = _hash_file(VECTORS / row["file"])
            assert pdq.hamming(ours.pdq or "", row["pdq_reference"]) <= 10, row["file"]


def _matcher_for(hex_hash: str) -> Matcher:
    row = EntryRow("orig", "pdq", bytes.fromhex(hex_hash), "1", None, 100, "test", "now")
    return Matcher(ListIndex.build([row]))


def test_rotations_and_flips_match_the_original() -> None:
    dih = VECTORS / "reg-test-input" / "dih"
    matcher = _matcher_for(_hash_file(dih / "bridge-1-original.jpg").pdq or "")
    expected = {
        "bridge-1-original.jpg": "original",
        "bridge-2-rotate-90.jpg": "rotate90",
        "bridge-3-rotate-180.jpg": "rotate180",
        "bridge-4-rotate-270.jpg": "rotate270",
        # The reference names flips by their axis: flipx turns the picture upside down.
        "bridge-5-flipx.jpg": "flip",
        "bridge-6-flipy.jpg": "mirror",
        "bridge-7-flip-plus-1.jpg": "transpose",
        "bridge-8-flip-minus-1.jpg": "transverse",
    }
    for name, transform in expected.items():
        matches = matcher.match(_hash_file(dih / name))
        assert matches, f"{name} did not match"
        assert matches[0].distance <= 31
        assert matches[0].transform == transform, name


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_tagged_copies_match(orientation: int) -> None:
    original = VECTORS / "reg-test-input" / "dih" / "bridge-1-original.jpg"
    matcher = _matcher_for(_hash_file(original).pdq or "")
    im = Image.open(original)
    exif = im.getexif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90, exif=exif)
    assert Image.open(io.BytesIO(out.getvalue())).getexif()[0x0112] == orientation
    assert matcher.match(_hash_bytes(out.getvalue()))


def test_jpeg_reduced_decode_stays_close() -> None:
    """The fast path (reduced JPEG decode) stays within a few bits of the exact one."""
    for path in sorted((VECTORS / "reg-test-input" / "exif-rotn").iterdir()):
        fast = decode_luma(path.read_bytes())
        assert min(fast.scale) > 1, "large photos should take the reduced decode"
        exact = _hash_file(path, reduce_jpeg=False).pdq or ""
        assert pdq.hamming(exact, _hash_file(path).pdq or "") <= 8
