"""Video decoding: containers by content, files over the memory limit, keyframes-only, pruning, hostile files,
and the speed paths (hashing beside the decoder, cheaper overlay planning) giving the same hashes.

Every clip here is generated (moving gradients, flat colours); none is read from disk.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from media import encode_video
from PIL import Image
from scipy import ndimage

from vakta.signals import borders, video_hasher, video_overlays
from vakta.signals.compute import compute_signals
from vakta.signals.hashers import hashers_for
from vakta.signals.model import HashOptions, Signals, VideoFrame
from vakta.signals.sniff import content_type

av = pytest.importorskip("av", reason="PyAV not installed")

#: Seconds any hostile file may cost (it is milliseconds in practice).
HOSTILE_SECONDS = 5.0


@dataclass(frozen=True)
class Clip:
    """How to make a short generated clip in one container."""

    format: str
    codec: str
    mime: str
    size: tuple[int, int] = (64, 48)
    container_options: dict[str, str] = field(default_factory=dict)
    codec_options: dict[str, str] = field(default_factory=dict)
    pix_fmt: str = "yuv420p"


CONTAINERS = {
    "mp4": Clip("mp4", "mpeg4", "video/mp4"),
    "mov": Clip("mov", "mpeg4", "video/quicktime"),
    "mkv": Clip("matroska", "mpeg4", "video/x-matroska"),
    "webm": Clip("webm", "libvpx", "video/webm"),
    "avi": Clip("avi", "mpeg4", "video/x-msvideo"),
    "3gp": Clip("3gp", "h263", "video/3gpp", size=(176, 144)),
    "3g2": Clip("3g2", "h263", "video/3gpp2", size=(176, 144)),
    "ts": Clip("mpegts", "mpeg2video", "video/mp2t"),
    "m2ts": Clip("mpegts", "mpeg2video", "video/mp2t", container_options={"mpegts_m2ts_mode": "1"}),
    "flv": Clip("flv", "flv", "video/x-flv"),
    "wmv": Clip("asf", "wmv2", "video/x-ms-wmv"),
}


def _blocks(seed: int, size: tuple[int, int] = (128, 96)) -> np.ndarray:
    """Large flat blocks of random colours: a picture whose PDQ barely moves under re-encoding."""
    grid = np.random.default_rng(seed).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    return np.repeat(np.repeat(grid, size[1] // 3, axis=0), size[0] // 4, axis=1)


def _picture(i: int, size: tuple[int, int]) -> np.ndarray:
    """A benign moving gradient, different every frame."""
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = 128 + 100 * np.sin((x + 5 * i) / 7.0) * np.cos((y - 3 * i) / 9.0)
    return np.stack([base, 255 - base, (base + 80) % 256], axis=-1).astype(np.uint8)


def _encode(clip: Clip, pictures: list[np.ndarray], fps: int = 10, gop: int = 0) -> bytes:
    return encode_video(
        pictures,
        fps,
        container_format=clip.format,
        codec=clip.codec,
        size=clip.size,
        pix_fmt=clip.pix_fmt,
        gop=gop,
        codec_options=clip.codec_options,
        container_options=clip.container_options,
    )


def _clip(clip: Clip, frames: int = 12, fps: int = 10, gop: int = 0) -> bytes:
    return _encode(clip, [_picture(i, clip.size) for i in range(frames)], fps, gop)


def _hash(data: bytes, **options: Any) -> Signals:
    return compute_signals(io.BytesIO(data), Signals("clip"), HashOptions(extra_queries=False, **options))


def _key_packet_numbers(data: bytes) -> list[int]:
    """Frame numbers of the packets the container flags as key, from their timestamps."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        rate, base, start = Fraction(stream.average_rate), stream.time_base, stream.start_time or 0
        return sorted(
            round((p.pts - start) * base * rate) for p in container.demux(stream) if p.size and p.is_keyframe
        )


# --------------------------------------------------------------------------- containers


@pytest.mark.parametrize("name", sorted(CONTAINERS))
def test_each_container_is_sniffed_and_hashed(name: str) -> None:
    clip = CONTAINERS[name]
    data = _clip(clip, frames=12, fps=10)
    assert content_type(data[:8192]) == clip.mime
    assert "vpdq" in [h.name for h in hashers_for(clip.mime)]
    full = _hash(data, seconds_per_hash=0)
    assert full.type == clip.mime and not full.errors
    assert [f.frame for f in full.video_frames] == list(range(12))
    assert full.video_seconds == pytest.approx(1.2)
    streamed = _hash(data, seconds_per_hash=0, max_decode_bytes=100)
    assert streamed.video_frames == full.video_frames and not streamed.errors
    keyframes = _hash(data, seconds_per_hash=0, keyframes_only=True)
    assert not keyframes.errors and keyframes.video_frames[0] == full.video_frames[0]
    assert set(keyframes.video_frames) <= set(full.video_frames)


@pytest.mark.parametrize(
    ("fmt", "mime"), [("GIF", "image/gif"), ("WEBP", "image/webp"), ("PNG", "image/apng")]
)
def test_animated_pictures_are_sniffed_and_hashed_from_memory_or_stream(fmt: str, mime: str) -> None:
    frames = [Image.fromarray(_picture(i, (64, 48))) for i in range(8)]
    out = io.BytesIO()
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:], duration=250, loop=0)
    data = out.getvalue()
    assert content_type(data) == mime
    assert {"pdq", "vpdq"} <= {h.name for h in hashers_for(mime)}
    in_memory = _hash(data, seconds_per_hash=0.5)
    assert [f.frame for f in in_memory.video_frames] == [0, 2, 4, 6] and not in_memory.errors
    streamed = _hash(data, seconds_per_hash=0.5, max_decode_bytes=100)
    assert streamed.video_frames == in_memory.video_frames
    assert streamed.pdq is None and streamed.errors == ["too large to decode (100 byte limit): no pdq"]


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + bytes(64)


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (_ftyp(b"3gp5", b"3gp5", b"3gp4"), "video/3gpp"),  # a phone's 3GP: no isom brand
        (_ftyp(b"3gp4", b"isom"), "video/3gpp"),
        (_ftyp(b"3g2a", b"3g2a"), "video/3gpp2"),
        (_ftyp(b"avc1", b"avc1"), "video/mp4"),
        (_ftyp(b"iso5", b"iso5", b"dash"), "video/mp4"),
        (_ftyp(b"M4V ", b"M4V ", b"M4A ", b"mp42", b"isom"), "video/mp4"),
        (_ftyp(b"qt  ", b"qt  "), "video/quicktime"),
        (_ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"), "audio/mp4"),  # music, not a video
        (_ftyp(b"heic", b"mif1", b"heic"), "image/heic"),
        (_ftyp(b"heix", b"mif1", b"iso8"), "image/heic"),  # 10-bit or 4:2:2 HEVC: a picture, never video
        (_ftyp(b"hevc", b"mif1", b"msf1"), "image/heic"),
        (_ftyp(b"mif2", b"mif2"), "image/heif"),
        (_ftyp(b"avis", b"avis", b"msf1"), "image/avif"),
    ],
)
def test_iso_media_brands(head: bytes, mime: str) -> None:
    assert content_type(head) == mime


def test_transport_stream_needs_several_sync_bytes_in_a_row() -> None:
    data = _clip(CONTAINERS["ts"])
    assert content_type(data[100:]) == "video/mp2t"  # carved out mid-packet
    assert content_type(data[: 188 * 4]) == "application/octet-stream"  # four packets are too few
    broken = bytearray(data[:8192])
    for offset in range(0, len(broken), 188 * 3):
        broken[offset] = 0x00  # every third sync byte gone
    assert content_type(bytes(broken)) == "application/octet-stream"
    rng = np.random.default_rng(7)
    for _ in range(300):
        noise = rng.integers(0, 256, 8192, dtype=np.uint8)
        noise[::190] = 0x47  # sync bytes, but at no packet size's stride
        assert not content_type(bytes(noise)).startswith("video/")


def test_random_bytes_are_never_video() -> None:
    rng = np.random.default_rng(3)
    for _ in range(500):
        assert not content_type(rng.bytes(8192)).startswith("video/")


def test_metadata_in_a_legacy_encoding_does_not_cost_the_frames() -> None:
    out = io.BytesIO()
    with av.open(out, mode="w", format="matroska") as container:
        container.metadata["title"] = "TITLE-PLACEHOLDER"
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_picture(i, (64, 48)), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    latin1 = out.getvalue().replace(b"TITLE-PLACEHOLDER", "Titel på dansk-ø".encode("latin-1") + b"!")
    signals = _hash(latin1, seconds_per_hash=0)
    assert not signals.errors and len(signals.video_frames) == 5


# --------------------------------------------------------------------------- over the memory limit


class _Stream(io.BytesIO):
    """A stream that counts its seeks and can refuse to seek, as a pipe does."""

    def __init__(self, data: bytes, seekable: bool = True) -> None:
        super().__init__(data)
        self.seeks = 0
        self._seekable = seekable

    def seekable(self) -> bool:
        return self._seekable

    def seek(self, offset: int, whence: int = 0) -> int:
        if not self._seekable:
            raise io.UnsupportedOperation("seek")
        self.seeks += 1
        return super().seek(offset, whence)

    def tell(self) -> int:
        if not self._seekable:
            raise io.UnsupportedOperation("tell")
        return super().tell()


@pytest.mark.parametrize("keyframes_only", [False, True])
def test_file_over_the_memory_limit_is_decoded_from_disk(tmp_path: Path, keyframes_only: bool) -> None:
    data = _clip(CONTAINERS["mp4"], frames=40, gop=10)  # MP4 from PyAV: the index is at the end
    path = tmp_path / "big.mp4"
    path.write_bytes(data)
    options = HashOptions(extra_queries=False, keyframes_only=keyframes_only)
    in_memory = compute_signals(io.BytesIO(data), Signals("clip"), options)
    with os.fdopen(os.open(path, os.O_RDONLY), "rb", buffering=0) as raw:  # as the scan opens files
        from_disk = compute_signals(raw, Signals("clip"), replace(options, max_decode_bytes=4096))
    assert not from_disk.errors
    assert from_disk.video_frames == in_memory.video_frames and len(in_memory.video_frames) >= 4
    assert from_disk.video_seconds == in_memory.video_seconds
    assert (from_disk.md5, from_disk.sha256, from_disk.size) == (in_memory.md5, in_memory.sha256, len(data))


def test_item_that_fits_is_read_once_and_never_rewound() -> None:
    data = _clip(CONTAINERS["mkv"], frames=20)
    stream = _Stream(data)
    signals = compute_signals(stream, Signals("clip"), HashOptions(extra_queries=False))
    assert stream.seeks == 0 and len(signals.video_frames) == 2 and not signals.errors


def test_item_is_rewound_to_where_it_starts_in_the_stream() -> None:
    data = _clip(CONTAINERS["mkv"], frames=20)
    stream = _Stream(b"x" * 1000 + data)
    stream.seek(1000)
    signals = compute_signals(stream, Signals("clip"), HashOptions(extra_queries=False, max_decode_bytes=100))
    assert not signals.errors and signals.video_frames == _hash(data).video_frames
    assert signals.size == len(data)


def test_stream_that_cannot_seek_gets_digests_only() -> None:
    data = _clip(CONTAINERS["mkv"], frames=20)
    signals = compute_signals(
        _Stream(data, seekable=False), Signals("clip"), HashOptions(extra_queries=False, max_decode_bytes=100)
    )
    assert signals.md5 and signals.size == len(data) and not signals.video_frames
    assert signals.errors == ["too large to decode (100 byte limit); digests only"]


# --------------------------------------------------------------------------- keyframes only

KEYFRAME_CLIPS = {
    "mpeg4-mp4": Clip("mp4", "mpeg4", "video/mp4"),
    # B-frames (decode order differs from display order) and a stream that does not start at 0.
    "h264-ts": Clip("mpegts", "libx264", "video/mp2t", codec_options={"bf": "2", "sc_threshold": "0"}),
    "mjpeg-mkv": Clip("matroska", "mjpeg", "video/x-matroska", pix_fmt="yuvj420p"),  # every frame is key
}


@pytest.mark.parametrize("name", sorted(KEYFRAME_CLIPS))
def test_keyframes_are_numbered_and_hashed_as_in_a_full_pass(name: str) -> None:
    data = _clip(KEYFRAME_CLIPS[name], frames=50, fps=10, gop=10)
    keys = _key_packet_numbers(data)
    assert 5 <= len(keys) < 50 or name == "mjpeg-mkv"
    full = {f.frame: f for f in _hash(data, seconds_per_hash=0).video_frames}
    every_key = _hash(data, seconds_per_hash=0, keyframes_only=True)
    assert [f.frame for f in every_key.video_frames] == keys
    for frame in every_key.video_frames:
        assert frame == full[frame.frame]  # same picture, number, timestamp and quality
    assert every_key.video_seconds == pytest.approx(5.0)
    # At most one key frame per seconds_per_hash: intra-only streams are not hashed at every frame.
    paced = _hash(data, seconds_per_hash=2.0, keyframes_only=True).video_frames
    expected: list[int] = []
    for number in keys:
        if not expected or number >= expected[-1] + 20:
            expected.append(number)
    assert [f.frame for f in paced] == expected


def test_keyframes_only_honours_max_video_seconds() -> None:
    data = _clip(KEYFRAME_CLIPS["mpeg4-mp4"], frames=60, fps=10, gop=10)
    keys = _key_packet_numbers(data)
    bounded = _hash(data, seconds_per_hash=0, keyframes_only=True, max_video_seconds=2.5)
    assert [f.frame for f in bounded.video_frames] == [k for k in keys if k <= 25]
    assert bounded.video_seconds == pytest.approx(2.6)
    assert bounded.video_seconds == _hash(data, seconds_per_hash=0, max_video_seconds=2.5).video_seconds


# --------------------------------------------------------------------------- pruning


def test_pruning_drops_consecutive_near_identical_frames() -> None:
    a, b = _blocks(1), _blocks(2)
    data = _encode(replace(CONTAINERS["mp4"], size=(128, 96)), [a] * 10 + [b] * 10 + [a] * 10, fps=10)
    every = _hash(data, seconds_per_hash=0)
    assert len(every.video_frames) == 30 and len(every.pdq_queries) == 30
    pruned = _hash(data, seconds_per_hash=0, video_prune_distance=8)
    assert [f.frame for f in pruned.video_frames] == [0, 10, 20]  # a, b, and a again after b
    assert pruned.video_frames == [every.video_frames[n] for n in (0, 10, 20)]
    assert len(pruned.pdq_queries) == 3
    assert pruned.video_seconds == every.video_seconds
    moving = _clip(CONTAINERS["mp4"], frames=20)
    assert len(_hash(moving, seconds_per_hash=0, video_prune_distance=0).video_frames) == 20
    assert len(_hash(moving, seconds_per_hash=0, video_prune_distance=256).video_frames) == 1


def test_pruning_applies_to_animations() -> None:
    a, b = Image.fromarray(_blocks(1)), Image.fromarray(_blocks(2))
    frames = [a, a.copy(), b, b.copy()]
    for i, frame in enumerate(frames):
        frame.putpixel((0, 0), (i, 0, 0))  # so the encoder keeps every frame
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=500, loop=0)
    pruned = _hash(out.getvalue(), seconds_per_hash=0, video_prune_distance=8)
    assert [f.frame for f in pruned.video_frames] == [0, 2]


# --------------------------------------------------------------------------- hostile files

PATHS: dict[str, dict[str, Any]] = {
    "memory": {},
    "stream": {"max_decode_bytes": 100},
    "keyframes": {"keyframes_only": True},
    "keyframes-stream": {"keyframes_only": True, "max_decode_bytes": 100},
}


def _zero_frames() -> bytes:
    """A Matroska file with a video track and no frames in it."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()  # the header, without a single packet
    return out.getvalue()


def _wrong_container() -> bytes:
    mp4 = _clip(CONTAINERS["mp4"])
    return mp4[:32] + _clip(CONTAINERS["mkv"])  # an MP4 header on a Matroska body


def _truncated() -> bytes:
    data = _clip(CONTAINERS["mp4"], frames=30)
    return data[: len(data) // 2]  # PyAV writes the MP4 index last: it is cut off


def _absurd_dimensions() -> bytes:
    """Motion JPEG whose frames are 8000x6500 (52 MP): refused before anything is decoded."""
    picture = io.BytesIO()
    Image.new("L", (8000, 6500), 90).save(picture, "JPEG", quality=30)
    out = io.BytesIO()
    with av.open(out, mode="w", format="matroska") as container:
        stream = container.add_stream("mjpeg", rate=10)
        stream.width, stream.height = 8000, 6500
        stream.pix_fmt = "yuvj420p"
        for i in range(3):
            packet = av.Packet(picture.getvalue())
            packet.stream, packet.pts, packet.dts = stream, i, i
            container.mux(packet)
    return out.getvalue()


HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "zero-frames": (_zero_frames, "video has no decodable frames"),
    "wrong-container": (_wrong_container, "video decode failed"),
    "truncated": (_truncated, "video decode failed"),
    "absurd-dimensions": (_absurd_dimensions, "video frame 8000x6500 is over the size limit"),
}


@pytest.fixture(scope="module")
def hostile_files() -> dict[str, bytes]:
    return {name: make() for name, (make, _) in HOSTILE.items()}


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("damage", sorted(HOSTILE))
def test_hostile_video_is_a_clear_error_in_bounded_time(
    hostile_files: dict[str, bytes], damage: str, path: str
) -> None:
    data = hostile_files[damage]
    start = time.perf_counter()
    signals = _hash(data, **PATHS[path])
    assert time.perf_counter() - start < HOSTILE_SECONDS
    assert signals.type and signals.type.startswith("video/")
    assert signals.md5 and signals.size == len(data) and not signals.video_frames
    [error] = signals.errors
    assert error.startswith(HOSTILE[damage][1]), error
    with pytest.raises(video_hasher.VideoDecodeError):
        video_hasher.HASHER.compute(data, Signals("clip", type=signals.type), HashOptions(**PATHS[path]))


def test_frames_before_a_failure_are_kept_with_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream that turns huge halfway (two transport streams joined) keeps its first frames."""
    small = _clip(CONTAINERS["ts"], frames=20)
    large = _clip(replace(CONTAINERS["ts"], size=(640, 480)), frames=20)
    monkeypatch.setattr(video_hasher, "MAX_FRAME_PIXELS", 64 * 48)
    signals = _hash(small + large, seconds_per_hash=0.5)
    assert [f.frame for f in signals.video_frames] == [0, 5, 10, 15]
    assert signals.errors == ["video frame 640x480 is over the size limit (after 4 sampled frames)"]
    assert len(signals.pdq_queries) == 4


def test_absurd_frame_size_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[VideoFrame] = []
    monkeypatch.setattr(video_hasher, "MAX_FRAME_PIXELS", 64 * 48 - 1)
    monkeypatch.setattr(video_hasher, "_hash_frame", lambda *a: decoded.append(a) or None)
    for keyframes_only in (False, True):
        signals = _hash(_clip(CONTAINERS["mkv"]), keyframes_only=keyframes_only)
        assert signals.errors == ["video frame 64x48 is over the size limit"]
    assert decoded == []


# --------------------------------------------------------------------------- speed paths, same hashes


def _logo_clip(frames: int = 40) -> bytes:
    """A moving picture between black bars, under a static white badge: every frame has variants."""
    pictures = []
    for i in range(frames):
        rgb = _picture(i, (160, 120)).copy()
        rgb[:, :16] = rgb[:, -16:] = 0
        rgb[84:108, 112:140] = 255
        pictures.append(rgb)
    return _encode(replace(CONTAINERS["mp4"], size=(160, 120)), pictures, fps=10)


def _scan_hashes(data: bytes) -> tuple[list[VideoFrame], list[VideoFrame], list[str]]:
    signals = compute_signals(io.BytesIO(data), Signals("clip"), HashOptions(seconds_per_hash=0))
    assert not signals.errors
    return signals.video_frames, signals.video_variants, [q.variant for q in signals.pdq_queries]


def test_frames_hashed_beside_the_decoder_are_those_of_one_frame_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _logo_clip()  # 40 sampled frames: a full window of 32 and a short one
    monkeypatch.setattr(video_hasher, "HASH_THREADS", 1)
    monkeypatch.setattr(video_hasher, "IN_FLIGHT", 0)
    one_at_a_time = _scan_hashes(data)
    frames, variants, _ = one_at_a_time
    assert [f.frame for f in frames] == list(range(40))
    assert {v.frame for v in variants} == set(range(40))  # bars and badge removed in both windows
    for threads, in_flight in ((2, 1), (2, 4), (3, 16)):
        monkeypatch.setattr(video_hasher, "HASH_THREADS", threads)
        monkeypatch.setattr(video_hasher, "IN_FLIGHT", in_flight)
        assert _scan_hashes(data) == one_at_a_time


@pytest.mark.parametrize("large", [False, True])
def test_frames_reach_the_collector_in_order_with_few_in_flight(
    monkeypatch: pytest.MonkeyPatch, large: bool
) -> None:
    if large:  # frames over ONE_AT_A_TIME_PIXELS are converted one at a time
        monkeypatch.setattr(video_hasher, "ONE_AT_A_TIME_PIXELS", 64 * 48 - 1)
    lock = threading.Lock()
    counts = {"converted": 0, "collected": 0, "most": 0}
    numbers: list[int] = []
    convert, add = video_hasher._frame_luma, video_hasher._Frames.add

    def counted_convert(frame: Any, reformatter: Any, size: int) -> Any:
        with lock:
            counts["converted"] += 1
            counts["most"] = max(counts["most"], counts["converted"] - counts["collected"])
        return convert(frame, reformatter, size)

    def counted_add(found: Any, number: int, timestamp: float, luma: Any, hashed: Any = None) -> None:
        with lock:
            counts["collected"] += 1
        numbers.append(number)
        add(found, number, timestamp, luma, hashed)

    monkeypatch.setattr(video_hasher, "_frame_luma", counted_convert)
    monkeypatch.setattr(video_hasher._Frames, "add", counted_add)
    _hash(_clip(CONTAINERS["mp4"], frames=60), seconds_per_hash=0)
    assert numbers == list(range(60))
    # Converted and not yet collected: memory is bounded.
    assert counts["most"] == 1 if large else counts["most"] <= video_hasher.IN_FLIGHT + 1


def test_a_frame_that_fails_to_convert_ends_the_video_after_the_frames_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hash_frame = video_hasher._Hashing._hash

    def failing(hashing: Any, frame: Any, number: int, timestamp: float) -> Any:
        if number == 5:
            raise RuntimeError("conversion failed")
        return hash_frame(hashing, frame, number, timestamp)

    monkeypatch.setattr(video_hasher._Hashing, "_hash", failing)
    signals = _hash(_clip(CONTAINERS["mp4"], frames=30), seconds_per_hash=0)
    assert [f.frame for f in signals.video_frames] == [0, 1, 2, 3, 4]
    assert signals.errors == ["video decode failed: RuntimeError: conversion failed (after 5 sampled frames)"]


def test_median_of_a_window_by_comparator_network_equals_numpys() -> None:
    rng = np.random.default_rng(11)
    for count in range(1, video_overlays.WINDOW + 2):  # odd and even counts, up to a full window and over
        frames = rng.normal(128, 40, (count, 24, 40)).astype(np.float32)
        frames[:, :, :8] = 16  # bars: ties everywhere
        frames[:, :4] = rng.integers(0, 3, (count, 4, 40))  # few distinct values: more ties
        assert np.array_equal(video_overlays._median(frames), np.median(frames, axis=0)), count


def _fill_on_whole_frames(plan: video_overlays.Plan, luma: np.ndarray) -> np.ndarray:
    """The overlay fill as first written: every width's blurs over the whole frame, for every frame."""
    assert plan.overlay is not None
    valid = ~(plan.overlay | plan.bars)
    moving = np.where(valid, luma, 0.0).astype(np.float32)
    out = luma.astype(np.float32, copy=True)
    todo, sigma = plan.overlay.copy(), plan.sigma
    while todo.any() and sigma <= max(plan.shape):
        weight = ndimage.gaussian_filter(valid.astype(np.float32), sigma)
        ready = todo & (weight > 0.1)
        if ready.any():
            out[ready] = ndimage.gaussian_filter(moving, sigma)[ready] / weight[ready]
            todo &= ~ready
        sigma *= 2
    return out


def test_overlay_fill_blurs_only_around_the_filled_pixels_and_gets_the_same_values() -> None:
    shape = (96, 128)
    bars = np.zeros(shape, dtype=bool)
    bars[:, :10] = bars[:, -10:] = True
    overlay = np.zeros(shape, dtype=bool)
    overlay[56:90, 84:116] = True  # a solid badge: filled over several widths
    overlay[2:5, 20:100] = True  # a thin strip along the top edge, where the blur reflects
    plan = video_overlays.Plan(shape, borders.Box(0, 96, 10, 118), bars, overlay, 1.5)
    assert len(plan._fill_steps) >= 3
    rng = np.random.default_rng(2)
    for _ in range(5):
        luma = rng.uniform(0, 255, shape).astype(np.float32)
        [(_, filled), (_, cropped)] = plan.apply(luma)
        assert np.array_equal(filled, _fill_on_whole_frames(plan, luma))
        assert np.array_equal(cropped, filled[:, 10:118])
