"""Video: vPDQ interoperability with the reference, sampling, known images inside videos, hostile files."""

from __future__ import annotations

import io
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from media import encode_video
from PIL import Image

from vakta import testsignature
from vakta.signals import pdq
from vakta.signals.compute import compute_signals
from vakta.signals.model import HashOptions, Signals

if TYPE_CHECKING:
    from conftest import RunCli

av = pytest.importorskip("av", reason="PyAV not installed")

VPDQ = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "vpdq"
needs_vectors = pytest.mark.skipif(
    not (VPDQ / "videos").is_dir(), reason=f"vPDQ reference vectors not found at {VPDQ}"
)


def _video(frames: list[np.ndarray], fps: int = 10) -> bytes:
    """An MP4 (MPEG-4 part 2, FFmpeg's built-in encoder) of generated RGB frames."""
    return encode_video(frames, fps, codec_options={"qscale": "2"})


def _filler(i: int, shape: tuple[int, int] = (240, 320)) -> np.ndarray:
    """A benign moving gradient, different every frame."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = 128 + 100 * np.sin((x + 7 * i) / 19.0) * np.cos((y - 5 * i) / 23.0)
    return np.stack([base, 255 - base, (base + 80) % 256], axis=-1).astype(np.uint8)


def _hash(data: bytes, **options: float) -> Signals:
    return compute_signals(io.BytesIO(data), Signals("video"), HashOptions(extra_queries=False, **options))


def _reference(name: str) -> dict[int, tuple[int, str, float]]:
    rows = {}
    for line in (VPDQ / "hashes" / f"{name}.txt").read_text().splitlines():
        if line.strip():
            frame, quality, value, ts = line.split(",")
            rows[int(frame)] = (int(quality), value, float(ts))
    return rows


@needs_vectors
def test_every_frame_lands_on_the_reference_hashes() -> None:
    medians = []
    for video in sorted((VPDQ / "videos").glob("*.mp4")):
        reference = _reference(video.stem)
        ours = {f.frame: f for f in _hash(video.read_bytes(), seconds_per_hash=0).video_frames}
        assert set(ours) == set(reference), video.name
        distances = [pdq.hamming(ours[n].pdq, value) for n, (_, value, _) in reference.items()]
        median = statistics.median(distances)
        assert median <= 8, video.name
        assert np.mean(np.array(distances) <= 31) >= 0.95, video.name
        medians.append(median)
    assert statistics.median(medians) <= 2


@needs_vectors
def test_frames_scaled_to_128_land_on_the_reference_128_hashes() -> None:
    medians = []
    for video in sorted((VPDQ / "videos").glob("*.mp4")):
        if not (VPDQ / "hashes" / f"{video.stem}-128x128.txt").exists():
            continue
        reference = _reference(f"{video.stem}-128x128")
        ours = {
            f.frame: f
            for f in _hash(video.read_bytes(), seconds_per_hash=0, video_frame_size=128).video_frames
        }
        distances = [pdq.hamming(ours[n].pdq, value) for n, (_, value, _) in reference.items()]
        assert statistics.median(distances) <= 8, video.name
        assert np.mean(np.array(distances) <= 31) >= 0.95, video.name
        medians.append(statistics.median(distances))
    assert len(medians) >= 10
    assert statistics.median(medians) <= 2


@needs_vectors
def test_sampling_follows_the_reference_convention() -> None:
    video = VPDQ / "videos" / "chair-19-sd-bar.mp4"
    reference = _reference("chair-19-sd-bar")
    frames = _hash(video.read_bytes(), seconds_per_hash=1.0).video_frames
    assert [f.frame for f in frames] == list(range(0, max(reference) + 1, 30))
    for f in frames:
        quality, value, ts = reference[f.frame]
        assert f.timestamp == pytest.approx(ts, abs=0.001)
        assert f.quality == quality
        assert pdq.hamming(f.pdq, value) <= 2
    assert f.vpdq_line().count(",") == 3


def test_max_video_seconds_bounds_the_work() -> None:
    data = _video([_filler(i) for i in range(100)], fps=10)  # 10 s
    every_second = _hash(data, seconds_per_hash=1.0)
    assert [f.frame for f in every_second.video_frames] == list(range(0, 100, 10))
    assert every_second.video_seconds == pytest.approx(10.0)
    bounded = _hash(data, seconds_per_hash=1.0, max_video_seconds=3.0)
    assert [f.frame for f in bounded.video_frames] == [0, 10, 20, 30]


def test_known_image_inside_a_video_is_found(tmp_path: Path, run_cli: RunCli) -> None:
    picture = Image.open(io.BytesIO(testsignature.image_bytes())).convert("RGB").resize((320, 240))
    frames = (
        [_filler(i) for i in range(30)] + [np.asarray(picture)] * 15 + [_filler(i) for i in range(30, 45)]
    )
    (tmp_path / "clip.mp4").write_bytes(_video(frames, fps=10))
    result = run_cli("scan", tmp_path, "--workers", 1)
    assert result.exit_code == 1, result.stderr
    [finding] = result.records()
    assert finding["type"] == "video/mp4"
    [match] = [m for m in finding["matches"] if m["signal"] == "pdq"][:1]
    assert match["list"] == testsignature.LIST_NAME
    assert match["distance"] <= 31
    assert match["variant"] in {"frame 30 (3.000 s)", "frame 40 (4.000 s)"}


def test_hash_prints_vpdq_lines(tmp_path: Path, run_cli: RunCli) -> None:
    (tmp_path / "v.mp4").write_bytes(_video([_filler(i) for i in range(25)], fps=10))
    result = run_cli("hash", "--format", "vpdq", "--seconds-per-hash", "0", tmp_path / "v.mp4")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("# ")
    rows = [line.split(",") for line in lines[1:]]
    assert [int(r[0]) for r in rows] == list(range(25))
    assert all(len(r[2]) == 64 and 0 <= int(r[1]) <= 100 for r in rows)
    summary = run_cli("hash", tmp_path / "v.mp4").records()[0]
    assert summary["vpdq_frames"] == 3 and summary["type"] == "video/mp4" and "pdq" not in summary


@pytest.mark.parametrize("damage", ["truncated", "garbage", "header-only"])
def test_broken_video_is_an_error_on_the_item(damage: str) -> None:
    data = _video([_filler(i) for i in range(40)], fps=10)
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = data[:32] + bytes(np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8))
    else:
        data = data[:64]
    signals = _hash(data)
    assert signals.md5 and signals.size == len(data)
    assert signals.errors or signals.video_frames  # a readable prefix may still give frames
    if signals.errors:
        assert "video" in signals.errors[0]


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animated_picture_is_hashed_as_a_short_video(fmt: str, tmp_path: Path, run_cli: RunCli) -> None:
    picture = Image.open(io.BytesIO(testsignature.image_bytes())).convert("RGB").resize((320, 240))
    shown = []
    for i in range(6):  # the picture held for 1.5 s, a corner pixel changing so no encoder merges frames
        copy = picture.copy()
        copy.putpixel((0, 0), (i * 40, 0, 0))
        shown.append(copy)
    frames = [Image.fromarray(_filler(i)) for i in range(12)] + shown
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=250, loop=0)
    signals = _hash(path.read_bytes(), seconds_per_hash=1.0)
    assert [f.frame for f in signals.video_frames] == [0, 4, 8, 12, 16]
    assert signals.video_seconds == pytest.approx(4.5)
    result = run_cli("scan", tmp_path, "--workers", 1)
    assert result.exit_code == 1, result.stderr
    [finding] = result.records()
    variants = {m.get("variant") for m in finding["matches"] if m["signal"] == "pdq"}
    assert variants & {"frame 12 (3.000 s)", "frame 16 (4.000 s)"}, finding["matches"]


def test_still_gif_is_not_a_video() -> None:
    out = io.BytesIO()
    Image.fromarray(_filler(0)).save(out, "GIF")
    signals = _hash(out.getvalue())
    assert signals.pdq and not signals.video_frames and not signals.errors
