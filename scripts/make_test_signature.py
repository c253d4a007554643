"""Regenerate the benign test signatures in src/vakta/data: a picture and a short video.

Run only to change the design: the committed files are authoritative (their
digests are on the built-in ``vakta-test`` list), and a re-encode may differ
byte for byte.  ``--video`` writes the video (a camera panning over the test
picture); afterwards ``--list`` rewrites the list and the video's vPDQ file.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from vakta.signals.compute import compute_signals
from vakta.signals.model import HashOptions, Signals

DATA = Path(__file__).resolve().parent.parent / "src" / "vakta" / "data"


def draw() -> Image.Image:
    width, height = 640, 480
    im = Image.new("RGB", (width, height))
    px = im.load()
    assert px is not None
    for y in range(height):
        for x in range(width):
            px[x, y] = (40 + x * 160 // width, 60 + y * 120 // height, 150)
    d = ImageDraw.Draw(im)
    d.rectangle((40, 40, 280, 200), fill=(250, 200, 40))
    d.ellipse((380, 60, 600, 280), fill=(20, 20, 30))
    d.polygon([(60, 440), (220, 250), (330, 440)], fill=(240, 240, 240))
    d.rectangle((420, 330, 600, 440), outline=(255, 255, 255), width=10)
    for i in range(8):
        d.line((300 + i * 12, 30, 360 + i * 12, 440), fill=(200, 30, 60), width=4)
    font = ImageFont.load_default(size=34)
    d.text((40, 225), "VAKTA TEST SIGNATURE", fill=(255, 255, 255), font=font)
    small = ImageFont.load_default(size=18)
    d.text((40, 265), "harmless test file - like EICAR", fill=(255, 255, 255), font=small)
    return im


VIDEO_FPS = 8
VIDEO_SECONDS = 8
VIDEO_SIZE = (320, 240)


def video_frames() -> list[Image.Image]:
    """A slow pan and zoom over the test picture: every second shows a different view."""
    picture = Image.open(DATA / "vakta-test.jpg").convert("RGB")
    frames = []
    for i in range(VIDEO_FPS * VIDEO_SECONDS):
        t = i / (VIDEO_FPS * VIDEO_SECONDS)
        width = int(picture.width * (0.75 - 0.3 * t))
        height = width * VIDEO_SIZE[1] // VIDEO_SIZE[0]
        left = int((picture.width - width) * t)
        top = int((picture.height - height) * (0.5 + 0.5 * math.sin(6 * t)) / 1)
        box = (left, top, left + width, top + height)
        frames.append(picture.resize(VIDEO_SIZE, Image.Resampling.LANCZOS, box=box))
    return frames


def write_video() -> None:
    import av

    with av.open(str(DATA / "vakta-test-video.mp4"), mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=VIDEO_FPS, bit_rate=150_000)
        stream.width, stream.height = VIDEO_SIZE
        stream.pix_fmt = "yuv420p"
        for frame in video_frames():
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode())


def _hash(name: str) -> Signals:
    path = DATA / name
    with path.open("rb") as f:
        return compute_signals(f, Signals(str(path)), HashOptions(reduce_jpeg=False, extra_queries=False))


def write_list() -> None:
    image, video = _hash("vakta-test.jpg"), _hash("vakta-test-video.mp4")
    (DATA / "vakta-test-list.csv").write_text(
        "id,category,md5,sha1,sha256,pdq,pdq_quality\n"
        f"vakta-test-1,test,{image.md5},{image.sha1},{image.sha256},{image.pdq},{image.pdq_quality}\n"
        f"vakta-test-video,test,{video.md5},{video.sha1},{video.sha256},,\n"
    )
    lines = "".join(f.vpdq_line() + "\n" for f in video.video_frames)
    (DATA / "vakta-test-video.vpdq").write_text("# vakta-test-video\n" + lines)


if __name__ == "__main__":
    if "--list" in sys.argv:
        write_list()
    elif "--video" in sys.argv:
        write_video()
    else:
        draw().save(DATA / "vakta-test.jpg", quality=90, optimize=True)
