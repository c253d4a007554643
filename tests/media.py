"""Generated test videos: RGB frames encoded with PyAV (FFmpeg's own encoders, in the wheel)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import av
import numpy as np


def encode_video(
    pictures: Sequence[np.ndarray],
    fps: int = 10,
    *,
    container_format: str = "mp4",
    codec: str = "mpeg4",
    size: tuple[int, int] | None = None,
    pix_fmt: str = "yuv420p",
    gop: int = 0,
    bit_rate: int | None = None,
    codec_options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> bytes:
    """The frames as a video file; ``size`` is (width, height), by default the frames' own."""
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_format, options=container_options or {}) as container:
        extra = {"bit_rate": bit_rate} if bit_rate else {}
        stream = container.add_stream(codec, rate=fps, **extra)
        stream.width, stream.height = size or (pictures[0].shape[1], pictures[0].shape[0])
        stream.pix_fmt = pix_fmt
        if gop:
            stream.codec_context.gop_size = gop
        stream.options = codec_options or {}
        for rgb in pictures:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return out.getvalue()
