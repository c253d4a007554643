"""End-to-end self test: hash and match the test picture and video, and an altered copy of each."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from PIL import Image

from vakta import testsignature
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Match, Matcher
from vakta.pipeline import Scanner

ORIGINAL = "vakta-test.jpg"
ALTERED = "vakta-test-resized.jpg"
VIDEO = "vakta-test-video.mp4"
ALTERED_VIDEO = "vakta-test-video-clip.mp4"


def altered_copy(data: bytes) -> bytes:
    """The test image at 60% size, re-encoded at lower quality: only PDQ can find it."""
    im = Image.open(io.BytesIO(data))
    small = im.resize((im.width * 3 // 5, im.height * 3 // 5), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=60)
    return out.getvalue()


def altered_video(data: bytes, keep: float = 0.6) -> bytes:
    """The test video's first 60%, at 75% size, re-encoded: a clip only vPDQ can find."""
    import av

    out = io.BytesIO()
    with av.open(io.BytesIO(data), mode="r") as source, av.open(out, mode="w", format="mp4") as target:
        video = source.streams.video[0]
        rate = video.average_rate or 8
        last = int(float(video.frames or 0) * keep) or None
        stream = target.add_stream("mpeg4", rate=rate, bit_rate=200_000)
        stream.width, stream.height = video.width * 3 // 4 // 2 * 2, video.height * 3 // 4 // 2 * 2
        stream.pix_fmt = "yuv420p"
        for number, frame in enumerate(source.decode(video)):
            if last is not None and number >= last:
                break
            rgb = frame.to_ndarray(width=stream.width, height=stream.height, format="rgb24")
            target.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        target.mux(stream.encode())
    return out.getvalue()


def run_selftest() -> dict[str, list[Match]]:
    """Scan the four test files against the built-in list; file name -> its matches."""
    original = testsignature.image_bytes()
    video = testsignature.video_bytes()
    index = ListIndex.build(testsignature.entry_rows(), videos=testsignature.video_entries())
    matcher = Matcher(index)
    with tempfile.TemporaryDirectory(prefix="vakta-selftest-") as folder:
        root = Path(folder)
        (root / ORIGINAL).write_bytes(original)
        (root / ALTERED).write_bytes(altered_copy(original))
        (root / VIDEO).write_bytes(video)
        (root / ALTERED_VIDEO).write_bytes(altered_video(video))
        results: dict[str, list[Match]] = {ORIGINAL: [], ALTERED: [], VIDEO: [], ALTERED_VIDEO: []}
        for finding in Scanner(matcher).scan([folder]):
            results[Path(finding.signals.path).name] = finding.matches
    return results
