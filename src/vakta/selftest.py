"""End-to-end self test: hash and match the test signature and an altered copy of it."""

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


def altered_copy(data: bytes) -> bytes:
    """The test image at 60% size, re-encoded at lower quality: only PDQ can find it."""
    im = Image.open(io.BytesIO(data))
    small = im.resize((im.width * 3 // 5, im.height * 3 // 5), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=60)
    return out.getvalue()


def run_selftest() -> dict[str, list[Match]]:
    """Scan the two test files against the built-in list; file name -> its matches."""
    original = testsignature.image_bytes()
    matcher = Matcher(ListIndex.build(testsignature.entry_rows()))
    with tempfile.TemporaryDirectory(prefix="vakta-selftest-") as folder:
        root = Path(folder)
        (root / ORIGINAL).write_bytes(original)
        (root / ALTERED).write_bytes(altered_copy(original))
        results: dict[str, list[Match]] = {ORIGINAL: [], ALTERED: []}
        for finding in Scanner(matcher).scan([folder]):
            results[Path(finding.signals.path).name] = finding.matches
    return results
