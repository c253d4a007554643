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

Speed: sampled frames are converted and hashed on :data:`HASH_THREADS`
worker threads while the decoder goes on (swscale, numpy, BLAS and scipy's
filters release the GIL), at most :data:`IN_FLIGHT` frames ahead of the
collector, which still takes them in frame order; one swscale context per
thread is reused for every frame (a fresh one per frame cost as much as the
conversion itself).  A window's overlay and bar variants are made on the same
threads while the next window's frames come.  None of this changes a bit of
any hash: each frame goes through the same operations on the same values.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageSequence

from vakta.signals import pdq
from vakta.signals.imaging import LumaArray, rgb_luma
from vakta.signals.model import HashOptions, PdqQuery, Signals, VideoFrame
from vakta.signals.video_overlays import Plan, StaticOverlayRemover, Window, work_luma

log = logging.getLogger(__name__)

# swscale flags: point sampling (no scaling happens) with exact rounding.
_EXACT_RGB = 16 | 262144
#: Frames larger than this (in pixels) are refused as hostile (8K is 33 MP).
MAX_FRAME_PIXELS = 50_000_000
#: Animated pictures are hashed as short videos; only so many frames are read.
MAX_ANIMATION_FRAMES = 100_000
ANIMATED_IMAGE_TYPES = frozenset({"image/gif", "image/webp", "image/png", "image/apng"})
#: Threads converting and hashing sampled frames beside the decoding thread (two: HD frames
#: cost several times their decoding, and one thread could not keep up with the decoder).
HASH_THREADS = 2
#: Sampled frames decoded but not yet collected, at most (bounds memory: a few frames).
IN_FLIGHT = 4
#: Frames over this many pixels (4K UHD) are converted one at a time, as before any pipelining:
#: converting one takes about 19 bytes a pixel (RGB, its float32 copy and the luma), 0.6 GB at 8K.
ONE_AT_A_TIME_PIXELS = 3840 * 2160
#: What a collected frame keeps of its luma when no remover needs it (the hash is made).
_NO_LUMA: LumaArray = np.zeros((0, 0), dtype=np.float32)


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
        found = _Frames(options.video_prune_distance, _hash_pool(), _remover(options))
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


_POOL: tuple[int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def _hash_pool() -> ThreadPoolExecutor:
    """This process's frame-hashing threads, started once: starting them cost 5 ms a video.

    Keyed on the process id, so a process forked from one that had the pool
    starts its own (threads do not survive a fork).
    """
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            _POOL = (os.getpid(), ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="vakta-vpdq"))
        return _POOL[1]


def _remover(options: HashOptions) -> StaticOverlayRemover | None:
    """Overlay and bar removal for query variants: scans only, at the native frame size."""
    return StaticOverlayRemover() if options.extra_queries and not options.video_frame_size else None


@dataclass(slots=True)
class _Frames:
    """Sampled frames as they come, pruned of near-repeats of the last kept one when asked,
    with query variants (overlay or bars removed) when a remover is given.

    A window's variants are made and hashed on ``pool`` while the next
    window's frames come, and collected (in frame order) before the next
    window's start and in :meth:`finish`.
    """

    prune_distance: int
    pool: Executor
    remover: StaticOverlayRemover | None = None
    frames: list[VideoFrame] = field(default_factory=list)
    variants: list[tuple[VideoFrame, str]] = field(default_factory=list)
    seen: int = 0
    seconds: float = 0.0
    audio_only: bool = False
    _window: list[Future[list[_VariantHash]]] = field(default_factory=list)

    def add(self, number: int, timestamp: float, luma: LumaArray, hashed: pdq.PdqHash | None = None) -> None:
        """Keep a sampled frame (unless pruned), given its luma and, if already computed, its PDQ.

        With ``hashed`` given, ``luma`` need only be what the remover uses: the
        frame scaled by :func:`~vakta.signals.video_overlays.work_luma`, or
        nothing (an empty array) when there is no remover.
        """
        if hashed is None:
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
        self._collect_variants()

    def _hash_variants(self, window: Window | None) -> None:
        if window is None:
            return
        self._collect_variants()  # at most one window's variants wait: memory stays bounded
        self._window = [
            self.pool.submit(_variant_hashes, window.plan, key, luma) for key, luma in window.frames
        ]

    def _collect_variants(self) -> None:
        jobs, self._window = self._window, []
        for job in jobs:
            for index, name, hashed in job.result():
                kept = self.frames[index]
                if hashed.hex != kept.pdq:
                    self.variants.append(
                        (VideoFrame(kept.frame, kept.timestamp, hashed.hex, hashed.quality), name)
                    )


_VariantHash = tuple[int, str, pdq.PdqHash]


def _variant_hashes(plan: Plan, key: int, luma: LumaArray) -> list[_VariantHash]:
    """The PDQ of each variant ``plan`` makes of one frame's (work-size) luma."""
    return [(key, name, pdq.hash_luma(variant)) for name, variant in plan.apply(luma)]


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

    A picture attached to the file (cover art, marked ``attached_pic``) is not
    video: the ``media`` container reader gives it out as a picture. Declared
    frame sizes are checked here, before the decoder allocates anything.
    """
    streams = [s for s in container.streams.video if not is_attached_picture(s)]
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


def is_attached_picture(stream: Any) -> bool:
    """Whether a video stream is a still picture attached to the file (cover art), not video."""
    import av

    return bool(int(stream.disposition) & int(av.stream.Disposition.attached_pic))


def _frame_luma(frame: Any, reformatter: Any, size: int) -> LumaArray:
    """A decoded frame's luma, at its own size or scaled to ``size`` x ``size``."""
    if size:
        # The reference's downscaled files were made with swscale's Lanczos.
        rgb = reformatter.reformat(
            frame, width=size, height=size, format="rgb24", interpolation="LANCZOS", threads=1
        )
    else:
        rgb = reformatter.reformat(frame, format="rgb24", interpolation=_EXACT_RGB, threads=1)
    return rgb_luma(rgb.to_ndarray())


_Hashed = tuple[int, float, LumaArray, pdq.PdqHash]


class _Hashing:
    """Sampled frames converted and hashed on the pool's threads, collected in frame order.

    :meth:`submit` returns once the frame is queued; the collector
    (:meth:`_Frames.add`) gets each frame in the order submitted, at the
    latest when more than :data:`IN_FLIGHT` wait (any wait, for a frame over
    :data:`ONE_AT_A_TIME_PIXELS`) and on leaving the ``with`` block.  A
    failure converting a frame is raised there, after the frames before it
    were collected and in place of any later error: the same frames and the
    same error as hashing one frame at a time.
    """

    def __init__(self, found: _Frames, size: int) -> None:
        self._found = found
        self._size = size
        self._local = threading.local()
        self._pending: deque[Future[_Hashed]] = deque()
        self.submitted = 0

    def __enter__(self) -> _Hashing:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            while self._pending:
                self._collect()
        finally:
            self._drop()

    def submit(self, frame: Any, number: int, timestamp: float) -> None:
        self._pending.append(self._found.pool.submit(self._hash, frame, number, timestamp))
        self.submitted += 1
        limit = IN_FLIGHT if frame.width * frame.height <= ONE_AT_A_TIME_PIXELS else 0
        while len(self._pending) > limit:
            self._collect()

    def _collect(self) -> None:
        job = self._pending.popleft()
        try:
            self._found.add(*job.result())
        except BaseException:
            self._drop()  # the frames after a failed one are not wanted
            raise

    def _drop(self) -> None:
        for job in self._pending:
            job.cancel()
        self._pending.clear()

    def _hash(self, frame: Any, number: int, timestamp: float) -> _Hashed:
        reformatter = getattr(self._local, "reformatter", None)
        if reformatter is None:
            from av.video.reformatter import VideoReformatter

            reformatter = self._local.reformatter = VideoReformatter()
        luma = _frame_luma(frame, reformatter, self._size)
        hashed = pdq.hash_luma(luma)
        # Only what the remover uses is kept: made here, beside the decoder, not in the collector.
        kept = _NO_LUMA if self._found.remover is None else work_luma(luma)
        return number, timestamp, kept, hashed


def _hash_frame(frame: Any, number: int, fps: float, hashing: _Hashing) -> None:
    """Hand a sampled frame to be hashed, timed as the reference times it."""
    hashing.submit(frame, number, number / fps)


def _check_size(frame: Any) -> None:
    if frame.width * frame.height > MAX_FRAME_PIXELS:
        raise VideoDecodeError(f"video frame {frame.width}x{frame.height} is over the size limit")


def _sample(container: Any, stream: Any, rate: Fraction, options: HashOptions, found: _Frames) -> None:
    """Every frame decoded, one per ``seconds_per_hash`` hashed, as the reference samples."""
    fps = float(rate)
    step = max(1, int(options.seconds_per_hash * fps))
    last_frame = int(options.max_video_seconds * fps) if options.max_video_seconds else None
    with _Hashing(found, options.video_frame_size) as hashing:
        for number, frame in enumerate(container.decode(stream)):
            if last_frame is not None and number > last_frame:
                log.info("video sampled up to %.0f s (--max-video-seconds)", options.max_video_seconds)
                break
            _check_size(frame)
            found.seconds = (number + 1) / fps
            if number % step == 0:
                _hash_frame(frame, number, fps, hashing)


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
    with _Hashing(found, options.video_frame_size) as hashing:
        for frame in _key_frames(container, stream, clock, fps, last_frame, found):
            _check_size(frame)
            if frame.pts is None:
                raise VideoDecodeError("key frames carry no timestamps; hash without keyframes-only")
            number = clock.number(frame.pts)
            if last_frame is not None and number > last_frame:
                continue
            if number >= next_number or not hashing.submitted:
                _hash_frame(frame, number, fps, hashing)
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
