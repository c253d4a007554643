"""Cover art: pictures attached to audio and video files are members, byte for byte.

The files are muxed here with PyAV (FFmpeg): silent audio, generated video frames
and, as the attached picture, the built-in test signature or a generated picture.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from members import read_members
from PIL import Image

from vakta import testsignature
from vakta.containers import Limits, reader_for
from vakta.containers.media import READER
from vakta.icap.filter import wanted
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Matcher
from vakta.pipeline import Scanner, hash_item
from vakta.signals.model import HashOptions
from vakta.signals.sniff import content_type
from vakta.sources.filesystem import SOURCE

SIG = testsignature.image_bytes()


def _jpeg(seed: int) -> bytes:
    out = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(out, "JPEG")
    return out.getvalue()


def muxed(fmt: str, cover: bytes | None, video: bool = False, audio: bool = True, title: str = "") -> bytes:
    """A small media file: silent audio and/or moving noise, with ``cover`` attached as its picture."""
    out = io.BytesIO()
    with av.open(out, "w", format=fmt) as container:
        picture = None
        if cover is not None:
            picture = container.add_stream("mjpeg")
            picture.width, picture.height, picture.pix_fmt = 64, 64, "yuvj420p"
            picture.disposition = av.stream.Disposition.attached_pic
            if title:
                picture.metadata["comment"] = title
        codec = {"mp3": "mp3", "flac": "flac"}.get(fmt, "aac")
        sound = container.add_stream(codec, rate=44100) if audio else None
        moving = container.add_stream("mpeg4", rate=10) if video else None
        if moving is not None:
            moving.width, moving.height, moving.pix_fmt = 64, 48, "yuv420p"
        if picture is not None:
            packet = av.Packet(cover)
            packet.stream, packet.pts, packet.dts = picture, 0, 0
            container.mux(packet)
        for i in range(20):
            if moving is not None:
                pixels = np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8)
                container.mux(moving.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
            if sound is not None:
                samples = sound.codec_context.frame_size or 4608
                frame = av.AudioFrame.from_ndarray(
                    np.zeros((1, samples), np.int16 if fmt == "flac" else np.float32),
                    format="s16" if fmt == "flac" else "fltp",
                    layout="mono",
                )
                frame.sample_rate = 44100
                container.mux(sound.encode(frame))
        for stream in (moving, sound):
            if stream is not None:
                container.mux(stream.encode())
    return out.getvalue()


def members(data: bytes) -> dict[str, bytes | str]:
    return read_members(READER, data)


@pytest.mark.parametrize("fmt", ["mp3", "flac"])
def test_an_audio_file_cover_is_a_member_byte_for_byte(fmt: str) -> None:
    data = muxed(fmt, SIG, title="Cover (front)")
    kind = content_type(data[:8192])
    assert kind.startswith("audio/") and reader_for(kind) is READER
    assert members(data) == {"Cover (front).jpg": SIG}


def test_a_video_cover_is_a_member_and_the_video_is_still_what_vpdq_hashes(tmp_path: Path) -> None:
    cover = _jpeg(1)
    path = tmp_path / "clip.mp4"
    path.write_bytes(muxed("mp4", cover, video=True))
    assert members(path.read_bytes()) == {"attached picture 1.jpg": cover}
    (item,) = SOURCE.items(str(path))
    signals = hash_item(item, HashOptions(extra_queries=False))
    assert signals.errors == [] and len(signals.video_frames) >= 2  # the moving stream, not the cover


def test_audio_with_only_a_cover_is_audio_to_vpdq(tmp_path: Path) -> None:
    """An MP4 of sound and a cover: no video to hash, no error; the cover is the member."""
    path = tmp_path / "song.mp4"
    path.write_bytes(muxed("mp4", _jpeg(2)))
    assert members(path.read_bytes()) == {"attached picture 1.jpg": _jpeg(2)}
    (item,) = SOURCE.items(str(path))
    signals = hash_item(item, HashOptions(extra_queries=False))
    assert (
        signals.errors == [] and signals.video_frames == []
    )  # once, the cover was hashed as a one-frame video


def test_files_without_covers_or_that_ffmpeg_cannot_open_have_no_members() -> None:
    assert members(muxed("mp3", None)) == {}
    assert members(muxed("mp4", None, video=True)) == {}
    assert members(b"ID3\x04\x00\x00\x00\x00\x00\x10" + b"\xff" * 500) == {}


def test_a_listed_picture_set_as_album_cover_is_found(tmp_path: Path) -> None:
    music = tmp_path / "Music"
    music.mkdir()
    (music / "song.mp3").write_bytes(muxed("mp3", SIG, title="Cover (front)"))
    (music / "other.mp3").write_bytes(muxed("mp3", _jpeg(3)))
    scanner = Scanner(Matcher(ListIndex.build(testsignature.entry_rows())), HashOptions(), limits=Limits())

    findings = {f.signals.location: f for f in scanner.scan([str(music)])}

    hit = f"{music / 'song.mp3'} > Cover (front).jpg"
    assert [loc for loc, f in findings.items() if f.matched] == [hit]
    assert {m.signal for m in findings[hit].matches} >= {"md5", "pdq"}
    assert len(findings) == 4 and not any(f.signals.errors for f in findings.values())


@pytest.mark.parametrize("declared", [None, "audio/mpeg"])
def test_icap_does_not_hold_audio_bodies(declared: str | None) -> None:
    """Streamed music would wait for its end to be checked for a cover: audio passes after the preview."""
    assert not wanted(declared, muxed("mp3", SIG)[: 48 << 10])
    assert wanted(None, muxed("mp4", SIG, video=True)[: 48 << 10])  # a video is checked as before
