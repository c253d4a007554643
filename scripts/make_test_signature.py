"""Regenerate src/vakta/data/vakta-test.jpg, the benign test-signature image.

Run only to change the design: the committed JPEG is authoritative (its MD5 is
on the built-in ``vakta-test`` list), and a re-encode may differ byte for byte.
Afterwards run ``python scripts/make_test_signature.py --list`` to rewrite the list.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

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


def write_list() -> None:
    from vakta.signals.compute import compute_signals
    from vakta.signals.model import HashOptions, Signals

    path = DATA / "vakta-test.jpg"
    with path.open("rb") as f:
        s = compute_signals(f, Signals(str(path)), HashOptions(reduce_jpeg=False, extra_queries=False))
    (DATA / "vakta-test-list.csv").write_text(
        "id,category,md5,sha1,sha256,pdq,pdq_quality\n"
        f"vakta-test-1,test,{s.md5},{s.sha1},{s.sha256},{s.pdq},{s.pdq_quality}\n"
    )


if __name__ == "__main__":
    if "--list" in sys.argv:
        write_list()
    else:
        draw().save(DATA / "vakta-test.jpg", quality=90, optimize=True)
