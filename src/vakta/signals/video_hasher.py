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
frames inside a video is found by the image lists.  In scans, frames with a
static logo or bars removed (:mod:`vakta.signals.video_overlays`) are further
queries, for image lists and whole-video matching alike.  Animated GIF, WebP and
PNG pictures are hashed the same way, as short videos.

Two options trade completeness for speed or size: ``keyframes_only`` (triage:
only key frames are decoded, numbered from their timestamps so they stay
comparable with a full pass) and ``video_prune_distance`` (a sampled frame
close to the last kept one is dropped).  Files too large to hold in memory are
decoded straight from their (seekable) stream through :meth:`compute_stream`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageSequence

from vakta.signals import pdq
from vakta.signals.imaging import LumaArray, rgb_luma
from vakta.signals.model import HashOptions, PdqQuery, Signals, VideoFrame
from vakta.signals.video_overlays import StaticOverlayRemover

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


class _AudioOnly(Exception):
    """A container typed as video that holds only sound (WebM, MKV, WMA music): nothing to hash."""


@dataclass(frozen=True, slots=True)
class VideoHasher:
    """Computes vPDQ for every content type FFmpeg (through PyAV) can decode as video."""

    name: str = "vpdq"

    def accepts(self, content_type: str) -> bool:
        return content_type.startswith("video/") or content_type in ANIMATED_IMAGE_TYPES

    def compute(self, data: bytes, signals: Signals, options: HashOptions) -> None:
        self.compute_stream(io.BytesIO(data), signals, options)

    def compute_stream(self, stream: BinaryIO, signals: Signals, options: HashOptions) -> None:
        """Hash from a seekable stream at the item's start, so files of any size get vPDQ.

        Frames decoded before a failure are kept (a truncated or carved video
        can still match) and the failure is raised after them.
        """
        found = _Frames(options.video_prune_distance, _remover(options))
        if signals.type in ANIMATED_IMAGE_TYPES:
            _animated_frames(stream, options, found)
            if found.seen >= 2:  # else a still picture, or one sample: the PDQ hasher has it
                _record(signals, found)
            return
        failure = _decode_video(stream, options, found)
        if found.frames:
            _record(signals, found)
        if failure:
            after = f" (after {found.seen} sampled frames)" if found.seen else ""
            raise VideoDecodeError(failure + after)
        if not found.frames and not found.audio_only:
            raise VideoDecodeError("video has no decodable frames")


def _remover(options: HashOptions) -> StaticOverlayRemover | None:
    """Overlay and bar removal for query variants: scans only, at the native frame size."""
    return StaticOverlayRemover() if options.extra_queries and not options.video_frame_size else None


@dataclass(slots=True)
class _Frames:
    """Sampled frames as they come, pruned of near-repeats of the last kept one when asked,
    with query variants (overlay or bars removed) when a remover is given."""

    prune_distance: int
    remover: StaticOverlayRemover | None = None
    frames: list[VideoFrame] = field(default_factory=list)
    variants: list[tuple[VideoFrame, str]] = field(default_factory=list)
    seen: int = 0
    seconds: float = 0.0
    audio_only: bool = False

    def add(self, number: int, timestamp: float, luma: LumaArray) -> None:
        """Hash a sampled frame's luma and keep it (unless pruned)."""
        hashed = pdq.hash_luma(luma)
        frame = VideoFrame(number, timestamp, hashed.hex, hashed.quality)
        self.seen += 1
        last = self.frames[-1] if self.frames else None
        if (
            last is not None
            and self.prune_distance >= 0
            and pdq.hamming(frame.pdq, last.pdq) <= self.prune_distance
        ):
            return
        self.frames.append(frame)
        if self.remover is not None:
            self._hash_variants(self.remover.add(len(self.frames) - 1, luma))

    def finish(self) -> None:
        if self.remover is not None:
            self._hash_variants(self.remover.finish())

    def _hash_variants(self, variants: list[tuple[int, str, LumaArray]]) -> None:
        for index, name, luma in variants:
            hashed = pdq.hash_luma(luma)
            kept = self.frames[index]
            if hashed.hex != kept.pdq:
                self.variants.append(
                    (VideoFrame(kept.frame, kept.timestamp, hashed.hex, hashed.quality), name)
                )


def _record(signals: Signals, found: _Frames) -> None:
    found.finish()
    signals.video_frames = found.frames
    signals.video_variants = [frame for frame, _ in found.variants]
    signals.video_seconds = found.seconds
    signals.pdq_queries += [
        PdqQuery(f.pdq, f.quality, "original", f"frame {f.frame} ({f.timestamp:.3f} s)") for f in found.frames
    ]
    signals.pdq_queries += [
        PdqQuery(f.pdq, f.quality, "original", f"frame {f.frame} ({f.timestamp:.3f} s) {name}")
        for f, name in found.variants
    ]


def _animated_frames(source: BinaryIO, options: HashOptions, found: _Frames) -> None:
    """Frames of an animated GIF/WebP/PNG, sampled by their own timing (decoded by Pillow).

    Frame durations vary, so a frame is kept when its start time reaches the
    next sampling time, rather than by a fixed frame stride.
    """
    t = 0.0
    next_sample = 0.0
    try:
        im = Image.open(source)
        animated = getattr(im, "n_frames", 1) >= 2
    except Exception:  # not a picture Pillow reads: the PDQ hasher reports why
        return
    if not animated:
        return
    try:
        with im:
            for number, frame in enumerate(ImageSequence.Iterator(im)):
                frame.load()  # some formats (WebP) set a frame's duration only once it is decoded
                if number >= MAX_ANIMATION_FRAMES or (
                    options.max_video_seconds and t > options.max_video_seconds
                ):
                    break
                if t >= next_sample or options.seconds_per_hash == 0:
                    found.add(number, t, rgb_luma(np.asarray(frame.convert("RGB"))))
                    next_sample = t + options.seconds_per_hash
                t += max(float(frame.info.get("duration", 100) or 100), 10.0) / 1000.0
                found.seconds = t
    except Exception as exc:  # Pillow reports hostile input in many ways
        raise VideoDecodeError(f"animation decode failed: {type(exc).__name__}: {exc}") from None


def _decode_video(source: BinaryIO, options: HashOptions, found: _Frames) -> str | None:
    """Sample ``source`` into ``found``; the reason decoding stopped early, or None."""
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a declared dependency
        return f"video support needs PyAV: {exc}"
    try:
        # metadata_errors: a tag in a legacy encoding must not cost the frames.
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            stream, rate = _open_stream(container)
            if options.keyframes_only:
                _sample_keyframes(container, stream, rate, options, found)
            else:
                _sample(container, stream, rate, options, found)
    except VideoDecodeError as exc:
        return str(exc)
    except _AudioOnly:
        found.audio_only = True
        return None
    except EOFError:  # FFmpeg's "End of file" from a stream with nothing (more) in it
        return None
    except MemoryError:
        return "video frame too large to decode in memory"
    except Exception as exc:  # FFmpeg reports hostile input in many ways
        # FFmpeg's errors name the input, which is '<none>' for a stream: keep only the reason.
        reason = getattr(exc, "strerror", None) or exc
        return f"video decode failed: {type(exc).__name__}: {reason}"
    return None


def _open_stream(container: Any) -> tuple[Any, Fraction]:
    """The first video stream, as the reference takes, and its frame rate.

    Declared frame sizes are checked here, before the decoder allocates anything.
    """
    streams = container.streams.video
    if not streams and container.streams.audio:
        raise _AudioOnly
    if not streams:
        raise VideoDecodeError("no video stream")
    stream = streams[0]
    ctx = stream.codec_context
    if ctx.width * ctx.height > MAX_FRAME_PIXELS:
        raise VideoDecodeError(f"video frame {ctx.width}x{ctx.height} is over the size limit")
    stream.thread_type = "AUTO"
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise VideoDecodeError("video stream has no frame rate")
    return stream, Fraction(rate)


def _hash_frame(frame: Any, number: int, fps: float, options: HashOptions, found: _Frames) -> None:
    size = options.video_frame_size
    if size:
        # The reference's downscaled files were made with swscale's Lanczos.
        rgb = frame.to_ndarray(width=size, height=size, format="rgb24", interpolation="LANCZOS")
    else:
        rgb = frame.to_ndarray(format="rgb24", interpolation=_EXACT_RGB)
    found.add(number, number / fps, rgb_luma(rgb))


def _check_size(frame: Any) -> None:
    if frame.width * frame.height > MAX_FRAME_PIXELS:
        raise VideoDecodeError(f"video frame {frame.width}x{frame.height} is over the size limit")


def _sample(container: Any, stream: Any, rate: Fraction, options: HashOptions, found: _Frames) -> None:
    """Every frame decoded, one per ``seconds_per_hash`` hashed, as the reference samples."""
    fps = float(rate)
    step = max(1, int(options.seconds_per_hash * fps))
    last_frame = int(options.max_video_seconds * fps) if options.max_video_seconds else None
    number = -1
    for number, frame in enumerate(container.decode(stream)):
        if last_frame is not None and number > last_frame:
            log.info("video sampled up to %.0f s (--max-video-seconds)", options.max_video_seconds)
            break
        _check_size(frame)
        found.seconds = (number + 1) / fps
        if number % step == 0:
            _hash_frame(frame, number, fps, options, found)


def _sample_keyframes(
    container: Any, stream: Any, rate: Fraction, options: HashOptions, found: _Frames
) -> None:
    """Key frames only: the decoder is handed key packets and told to drop anything else.

    A key frame's number is its time since the stream's start times the frame
    rate, which is its decode-order number in a full pass of a constant-rate
    video, so numbers and timestamps stay comparable.  At most one key frame is
    hashed per ``seconds_per_hash`` (intra-only streams have nothing but key frames).
    """
    stream.codec_context.skip_frame = "NONKEY"
    fps = float(rate)
    step = max(1, int(options.seconds_per_hash * fps))
    last_frame = int(options.max_video_seconds * fps) if options.max_video_seconds else None
    if not stream.time_base:
        raise VideoDecodeError("video stream has no time base; hash without keyframes-only")
    clock = _Clock(stream.start_time, Fraction(stream.time_base) * rate)
    next_number = 0
    for frame in _key_frames(container, stream, clock, fps, last_frame, found):
        _check_size(frame)
        if frame.pts is None:
            raise VideoDecodeError("key frames carry no timestamps; hash without keyframes-only")
        number = clock.number(frame.pts)
        if last_frame is not None and number > last_frame:
            continue
        if number >= next_number or not found.seen:
            _hash_frame(frame, number, fps, options, found)
            next_number = number + step


def _key_frames(
    container: Any, stream: Any, clock: _Clock, fps: float, last_frame: int | None, found: _Frames
) -> Iterator[Any]:
    """Decoded key frames up to ``last_frame``; ``found.seconds`` follows the packets read.

    Non-key packets are not even handed to the decoder once the container has
    flagged a key packet (twice as fast as the decoder's own skipping); before
    that, the decoder's ``skip_frame`` does the work.
    """
    trusted = False
    end = 0
    for packet in container.demux(stream):
        if packet.pts is not None:
            number = clock.number(packet.pts)
            if last_frame is not None and number > last_frame:
                log.info("video sampled up to %.0f s (--max-video-seconds)", last_frame / fps)
                found.seconds = max(found.seconds, (last_frame + 1) / fps)
                # Frames still in the (threaded) decoder are wanted too.
                yield from stream.codec_context.decode(None)
                return
            if number >= end:
                end = number + 1
                found.seconds = end / fps
        trusted = trusted or packet.is_keyframe
        if packet.size and trusted and not packet.is_keyframe:
            continue
        yield from packet.decode()


@dataclass(slots=True)
class _Clock:
    """A stream's timestamps as frame numbers, in integer arithmetic (it runs on every packet)."""

    origin: int | None
    frames_per_tick: Fraction

    def number(self, pts: int) -> int:
        """Frames from the stream's start (the first timestamp seen, if it declares none), rounded."""
        if self.origin is None:
            self.origin = pts
        num, den = self.frames_per_tick.numerator, self.frames_per_tick.denominator
        return max(0, (2 * (pts - self.origin) * num + den) // (2 * den))


HASHER = VideoHasher()
