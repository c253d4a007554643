"""The vPDQ hasher: PDQ of sampled video frames, as Meta's vPDQ reference computes it.

Reference conventions (measured, see docs/vpdq-interop.md): frames are counted
in decode order from 0; a frame is kept when ``number % max(1, int(seconds
per hash * fps)) == 0``; its timestamp is ``number / fps``; frames are hashed
at the stream's own size (or scaled to N x N with Lanczos, the reference's
downscaled mode), never rotated.  YUV is converted to RGB with
swscale's exact path (``POINT | ACCURATE_RND``), which equals the C converter
the reference hashes were made with on every CPU; the default SIMD path is off
by a level or two, enough to move dark, flat frames by dozens of bits.

Every sampled frame is also a PDQ query, so a known image that appears as
frames inside a video is found by the image lists.  Animated GIF, WebP and
PNG pictures are hashed the same way, as short videos.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageSequence

from vakta.signals import pdq
from vakta.signals.imaging import rgb_luma
from vakta.signals.model import HashOptions, PdqQuery, Signals, VideoFrame

log = logging.getLogger(__name__)

# swscale flags: point sampling (no scaling happens) with exact rounding.
_EXACT_RGB = 16 | 262144
#: Frames larger than this (in pixels) are refused as hostile (8K is 33 MP).
MAX_FRAME_PIXELS = 50_000_000
#: Animated pictures are hashed as short videos; only so many frames are read.
MAX_ANIMATION_FRAMES = 100_000
ANIMATED_IMAGE_TYPES = frozenset({"image/gif", "image/webp", "image/png", "image/apng"})


class VideoDecodeError(ValueError):
    """The bytes are not a decodable video, or decoding them is unsafe."""


@dataclass(frozen=True, slots=True)
class VideoHasher:
    """Computes vPDQ for every content type FFmpeg (through PyAV) can decode as video."""

    name: str = "vpdq"

    def accepts(self, content_type: str) -> bool:
        return content_type.startswith("video/") or content_type in ANIMATED_IMAGE_TYPES

    def compute(self, data: bytes, signals: Signals, options: HashOptions) -> None:
        if signals.type in ANIMATED_IMAGE_TYPES:
            frames, duration = _animated_frames(data, options)
            if len(frames) < 2:
                return  # a still picture: the PDQ hasher has it
            _record(signals, frames, duration)
            return
        try:
            import av
        except ImportError as exc:  # pragma: no cover - av is a declared dependency
            raise VideoDecodeError(f"video support needs PyAV: {exc}") from None
        try:
            with av.open(io.BytesIO(data), mode="r") as container:
                frames, duration = _sample(container, options)
        except VideoDecodeError:
            raise
        except MemoryError:
            raise VideoDecodeError("video frame too large to decode in memory") from None
        except Exception as exc:  # FFmpeg reports hostile input in many ways
            raise VideoDecodeError(f"video decode failed: {type(exc).__name__}: {exc}") from None
        if not frames:
            raise VideoDecodeError("video has no decodable frames")
        _record(signals, frames, duration)


def _record(signals: Signals, frames: list[VideoFrame], duration: float) -> None:
    signals.video_frames = frames
    signals.video_seconds = duration
    signals.pdq_queries += [
        PdqQuery(f.pdq, f.quality, "original", f"frame {f.frame} ({f.timestamp:.3f} s)") for f in frames
    ]


def _animated_frames(data: bytes, options: HashOptions) -> tuple[list[VideoFrame], float]:
    """Frames of an animated GIF/WebP/PNG, sampled by their own timing (decoded by Pillow).

    Frame durations vary, so a frame is kept when its start time reaches the
    next sampling time, rather than by a fixed frame stride.
    """
    frames: list[VideoFrame] = []
    t = 0.0
    next_sample = 0.0
    try:
        im = Image.open(io.BytesIO(data))
        animated = getattr(im, "n_frames", 1) >= 2
    except Exception:  # not a picture Pillow reads: the PDQ hasher reports why
        return [], 0.0
    if not animated:
        return [], 0.0
    try:
        with im:
            for number, frame in enumerate(ImageSequence.Iterator(im)):
                frame.load()  # some formats (WebP) set a frame's duration only once it is decoded
                if number >= MAX_ANIMATION_FRAMES or (
                    options.max_video_seconds and t > options.max_video_seconds
                ):
                    break
                if t >= next_sample or options.seconds_per_hash == 0:
                    hashed = pdq.hash_luma(rgb_luma(np.asarray(frame.convert("RGB"))))
                    frames.append(VideoFrame(number, t, hashed.hex, hashed.quality))
                    next_sample = t + options.seconds_per_hash
                t += max(float(frame.info.get("duration", 100) or 100), 10.0) / 1000.0
    except Exception as exc:  # Pillow reports hostile input in many ways
        raise VideoDecodeError(f"animation decode failed: {type(exc).__name__}: {exc}") from None
    return frames, t


def _sample(container: object, options: HashOptions) -> tuple[list[VideoFrame], float]:
    streams = container.streams.video  # type: ignore[attr-defined]
    if not streams:
        raise VideoDecodeError("no video stream")
    stream = streams[0]
    stream.thread_type = "AUTO"
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if fps <= 0:
        raise VideoDecodeError("video stream has no frame rate")
    step = max(1, int(options.seconds_per_hash * fps))
    last_frame = int(options.max_video_seconds * fps) if options.max_video_seconds else None
    frames: list[VideoFrame] = []
    number = -1
    for number, frame in enumerate(container.decode(stream)):  # type: ignore[attr-defined]
        if last_frame is not None and number > last_frame:
            log.info("video sampled up to %.0f s (--max-video-seconds)", options.max_video_seconds)
            break
        if number % step:
            continue
        if frame.width * frame.height > MAX_FRAME_PIXELS:
            raise VideoDecodeError(f"video frame {frame.width}x{frame.height} is over the size limit")
        size = options.video_frame_size
        if size:
            # The reference's downscaled files were made with swscale's Lanczos.
            rgb = frame.to_ndarray(width=size, height=size, format="rgb24", interpolation="LANCZOS")
        else:
            rgb = frame.to_ndarray(format="rgb24", interpolation=_EXACT_RGB)
        hashed = pdq.hash_luma(rgb_luma(rgb))
        frames.append(VideoFrame(number, number / fps, hashed.hex, hashed.quality))
    return frames, (number + 1) / fps


HASHER = VideoHasher()
