"""vPDQ hash files: one known video per file, one ``frame,quality,pdq_hex,timestamp`` line per frame.

This is the line format of Meta's vPDQ reference (its CLI and test hashes),
and what ``vakta hash --format vpdq`` prints.  A file may hold several videos
when each is introduced by a ``# name`` comment line, as Vakta's own output
and export do; a reference file with no comment is one video, named by the
importer after the file.  The Python binding prints ``frame,pdq_hex,quality,
timestamp`` instead, so the hash is found by its shape, not its position.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator
from typing import IO

from vakta.lists.formats._common import first_content_line, head_text, text_lines
from vakta.lists.model import ListRecord, ParseIssue
from vakta.signals import kinds
from vakta.signals.model import VideoFrame

_LINE = re.compile(
    r"^\s*\d+\s*,\s*(\d+\s*,\s*[0-9a-fA-F]{64}|[0-9a-fA-F]{64}\s*,\s*\d+)\s*,\s*[\d.eE+-]+\s*$"
)


class VpdqFormat:
    """Reference vPDQ hash files (``frame,quality,pdq,timestamp``)."""

    name: str = "vpdq"

    def sniff(self, head: bytes, filename: str) -> bool:
        """True when the first content line is a vPDQ frame line."""
        return bool(_LINE.match(first_content_line(head_text(head))))

    def parse(self, stream: IO[bytes], kind: str | None) -> Iterator[ListRecord | ParseIssue]:
        """Yield one record per video (its frames in file order) and an issue per bad line."""
        frames: list[VideoFrame] = []
        name: str | None = None
        start = 0
        for lineno, line in enumerate(text_lines(stream), 1):
            text = line.strip()
            if not text:
                continue
            if text.startswith("#"):
                if frames:
                    yield ListRecord({}, name, None, start, frames=tuple(frames))
                    frames = []
                name = _video_name(text[1:])
                continue
            frame = parse_frame(text)
            if isinstance(frame, str):
                yield ParseIssue(lineno, frame)
                continue
            if not frames:
                start = lineno
            frames.append(frame)
        if frames:
            yield ListRecord({}, name, None, start, frames=tuple(frames))

    def export(self, records: Iterable[ListRecord], out: IO[str], list_name: str) -> None:
        """Write each video as a ``# name`` line and its frame lines; other records have no vPDQ."""
        out.write(f"# vakta list: {' '.join(list_name.split())}\n")
        skipped = 0
        for number, record in enumerate(records, 1):
            if not record.frames:
                skipped += 1
                continue
            out.write(f"# {' '.join((record.entry_id or f'video {number}').split())}\n")
            out.writelines(frame.vpdq_line() + "\n" for frame in record.frames)
        if skipped:
            out.write(f"# {skipped} records without vPDQ frames (digests, image PDQ) not written\n")


def parse_frame(text: str) -> VideoFrame | str:
    """One ``frame,quality,pdq,timestamp`` line as a frame, or the reason it is unusable."""
    fields = [f.strip() for f in text.split(",")]
    if len(fields) != 4:
        return f"a vPDQ line has 4 fields (frame,quality,pdq,timestamp), got {len(fields)}"
    number, second, third, stamp = fields
    quality, value = (third, second) if len(second) == 64 else (second, third)
    try:
        pdq = kinds.normalize("pdq", value)
    except kinds.InvalidHashError as exc:
        return str(exc)
    if not number.isdigit() or not quality.isdigit():
        return "frame number and quality must be whole numbers"
    if int(quality) > 100:
        return f"quality must be 0-100, got {quality}"
    try:
        timestamp = float(stamp)
    except ValueError:
        return f"timestamp is not a number: {stamp[:40]!r}"
    if not 0 <= timestamp < float("inf"):
        return f"timestamp must be a non-negative number of seconds, got {stamp[:40]!r}"
    return VideoFrame(int(number), timestamp, pdq, int(quality))


def _video_name(comment: str) -> str | None:
    """The name a ``# ...`` comment gives the video after it: a path's last part, or the text."""
    text = " ".join(comment.split())
    if not text:
        return None
    base = posixpath.basename(text.replace("\\", "/"))
    return base or text


FORMAT = VpdqFormat()
