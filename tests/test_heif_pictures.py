"""HEIF/HEIC thumbnails and non-primary pictures are members, as lossless PNGs of their pixels.

Files with several pictures are written here by pillow-heif (libheif with x265);
files with a thumbnail by Debian's ``heif-enc --thumb`` (libheif-examples), as
pillow-heif cannot write thumbnails.
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pillow_heif
import pytest
from members import read_members
from PIL import Image

from vakta import testsignature
from vakta.containers import Limits, reader_for
from vakta.containers.heif import READER, _member
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Matcher
from vakta.pipeline import Scanner
from vakta.signals.model import HashOptions
from vakta.signals.sniff import content_type

SIG = Image.open(io.BytesIO(testsignature.image_bytes())).convert("RGB")


def _noise(seed: int, shape: tuple[int, int] = (240, 320)) -> Image.Image:
    """Smooth random blobs: distinct pictures that survive lossy coding (pixel noise would not)."""
    coarse = np.random.default_rng(seed).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((shape[1], shape[0]), Image.Resampling.BICUBIC)


def heif_file(*pictures: Image.Image, primary: int = 0) -> bytes:
    """A HEIC holding ``pictures``, the one at ``primary`` marked as the file's primary picture."""
    heif = pillow_heif.from_pillow(pictures[0])
    for picture in pictures[1:]:
        heif.add_from_pillow(picture)
    out = io.BytesIO()
    heif.save(out, quality=90, primary_index=primary)
    return out.getvalue()


def with_thumbnail(picture: Image.Image, tmp_path: Path, size: int = 96) -> bytes:
    """A HEIC of ``picture`` with a thumbnail of at most ``size`` pixels, written by heif-enc."""
    if shutil.which("heif-enc") is None:
        pytest.skip(
            "heif-enc is absent: Debian's libheif-examples writes HEIC thumbnails (.ci/run installs it)"
        )
    source, target = tmp_path / "source.png", tmp_path / "thumbnailed.heic"
    picture.save(source)
    subprocess.run(
        ["heif-enc", "--thumb", str(size), "-q", "90", str(source), "-o", str(target)],
        check=True,
        capture_output=True,
    )
    return target.read_bytes()


def members(data: bytes) -> dict[str, bytes | str]:
    return read_members(READER, data)


def _pixels(png: bytes | str) -> np.ndarray:
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG"), png
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def test_the_pictures_after_the_primary_are_lossless_pngs_of_their_pixels() -> None:
    second, third = _noise(1, (120, 160)), _noise(2, (64, 48))
    data = heif_file(_noise(3), second, third)
    assert content_type(data[:8192]) == "image/heic" and reader_for("image/heic") is READER
    found = members(data)
    assert list(found) == ["HEIF picture 2.png", "HEIF picture 3.png"]
    decoded = pillow_heif.open_heif(io.BytesIO(data))
    for index, name in ((1, "HEIF picture 2.png"), (2, "HEIF picture 3.png")):
        assert np.array_equal(_pixels(found[name]), np.asarray(decoded[index].to_pillow().convert("RGB")))
    # Lossy HEVC, but the same picture: close to what was encoded.
    assert np.abs(_pixels(found["HEIF picture 2.png"]) - np.asarray(second, dtype=np.int16)).mean() < 4


def test_a_primary_picture_that_is_not_the_first() -> None:
    assert list(members(heif_file(_noise(4, (64, 64)), _noise(5, (64, 64)), primary=1))) == [
        "HEIF picture 1.png"
    ]


def test_a_single_picture_without_a_thumbnail_has_no_members() -> None:
    assert members(heif_file(_noise(6, (64, 64)))) == {}


def test_the_thumbnail_is_a_member(tmp_path: Path) -> None:
    found = members(with_thumbnail(_noise(7), tmp_path))
    assert list(found) == ["HEIF thumbnail.png"]
    assert max(Image.open(io.BytesIO(found["HEIF thumbnail.png"])).size) <= 96  # type: ignore[arg-type]


def test_a_listed_picture_in_the_thumbnail_or_a_further_picture_is_found(tmp_path: Path) -> None:
    """PDQ matches both; nothing else in the folder does."""
    (tmp_path / "hidden.heic").write_bytes(heif_file(_noise(8), SIG))
    (tmp_path / "plain.heic").write_bytes(heif_file(_noise(9), _noise(10)))
    scanner = Scanner(Matcher(ListIndex.build(testsignature.entry_rows())), HashOptions(), limits=Limits())
    findings = {f.signals.location: f for f in scanner.scan([str(tmp_path)])}
    hit = f"{tmp_path / 'hidden.heic'} > HEIF picture 2.png"
    assert [loc for loc, f in findings.items() if f.matched] == [hit]
    assert [m.signal for m in findings[hit].matches] == ["pdq"]
    assert not any(f.signals.errors for f in findings.values())

    thumbnailed = tmp_path / "thumbnails"
    thumbnailed.mkdir()
    (thumbnailed / "sig.heic").write_bytes(with_thumbnail(SIG, tmp_path, size=160))
    findings = {f.signals.location: f for f in scanner.scan([str(thumbnailed)])}
    assert {loc for loc, f in findings.items() if f.matched} == {
        str(thumbnailed / "sig.heic"),
        f"{thumbnailed / 'sig.heic'} > HEIF thumbnail.png",
    }


@pytest.mark.parametrize("brand", [b"heix", b"heim", b"hevc"])
def test_brands_filetype_does_not_know_are_pictures_too(brand: bytes, tmp_path: Path) -> None:
    """``heix`` (HEVC's 10-bit and 4:2:2 profiles) and others: once sniffed as unknown bytes, digests only."""
    data = heif_file(SIG, _noise(13))
    assert data[8:12] == b"heic"
    (tmp_path / "camera.hif").write_bytes(data[:8] + brand + data[12:])
    scanner = Scanner(Matcher(ListIndex.build(testsignature.entry_rows())), HashOptions(), limits=Limits())
    findings = {f.signals.location: f for f in scanner.scan([str(tmp_path)])}
    picture = findings[str(tmp_path / "camera.hif")]
    assert picture.signals.type == "image/heic" and picture.matched and not picture.signals.errors
    assert list(findings) == [str(tmp_path / "camera.hif"), f"{tmp_path / 'camera.hif'} > HEIF picture 2.png"]


def test_damaged_files_give_members_or_errors_never_an_exception() -> None:
    data = heif_file(_noise(11, (64, 64)), _noise(12, (32, 32)))
    rng = random.Random(9)
    for _ in range(150):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        end = len(damaged) if rng.random() < 0.5 else rng.randrange(len(damaged) // 2, len(damaged))
        cut = bytes(damaged[:end])  # flipped bytes, and half of the time truncated too
        for member in READER.members(io.BytesIO(cut)):
            assert member.name.startswith("HEIF picture")
            if member.open is None:
                assert "pixel limit" in str(member.error)
                continue
            try:
                assert member.open().read().startswith(b"\x89PNG")
            except ValueError as exc:  # the pipeline makes it the member's error
                assert "HEIF picture decode failed" in str(exc)


def test_absurd_sizes_are_refused_before_decoding_and_decode_failures_are_errors() -> None:
    huge = _member("HEIF picture 2", SimpleNamespace(size=(100_000, 100_000)))
    assert huge.open is None and "pixel limit" in str(huge.error)

    attempts: list[int] = []

    def fail() -> Image.Image:
        attempts.append(1)
        raise RuntimeError("Invalid input: Unspecified: Bitstream not supported by this decoder")

    broken = _member("HEIF picture 2", SimpleNamespace(size=(64, 64), to_pillow=fail))
    assert broken.open is not None
    for _ in range(2):  # the pipeline opens a member that failed once more, inline
        with pytest.raises(ValueError, match="HEIF picture decode failed"):
            broken.open()
    assert len(attempts) == 1
