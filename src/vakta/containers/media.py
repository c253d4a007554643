"""Pictures attached to audio and video files (cover art) as container members.

An MP3's ID3 ``APIC`` frame, an M4A's or MP4's ``covr`` atom and a FLAC
picture block (tested; FFmpeg reads other formats' covers the same way) carry
a whole picture file inside the media file, and FFmpeg (through PyAV) gives
each as a stream marked ``attached_pic`` whose one packet is that file, byte
for byte. So a listed picture set as an album cover is found by its
digests, and a changed one by PDQ, as ``song.mp3 > Cover (front).jpg``.

Nothing is decoded here: the container is opened, its attached pictures read
(FFmpeg delivers them before any audio or video packet), and closed. A file
FFmpeg cannot open has no members: the vPDQ hasher reports a video it cannot
decode, and audio is not decoded at all.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from functools import partial
from typing import Any, BinaryIO

from vakta.containers import Member
from vakta.signals.sniff import picture_extension
from vakta.signals.video_hasher import is_attached_picture

log = logging.getLogger(__name__)

#: Packets read while looking for a stream's attached picture (it comes first).
_MAX_PACKETS = 64
#: Largest attached picture held in memory.
MAX_PICTURE_BYTES = 64 << 20


class AttachedPicturesReader:
    """Reads the attached pictures (cover art) of audio and video files."""

    name = "media"

    def accepts(self, content_type: str) -> bool:
        return content_type.startswith(("audio/", "video/"))

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        import av

        stream.seek(0)
        try:
            container = av.open(stream, mode="r", metadata_errors="ignore")
        except Exception as exc:  # FFmpeg reports hostile or unknown input in many ways
            log.debug("no attached pictures read: %s: %s", type(exc).__name__, exc)
            return
        with container:
            pictures = [s for s in container.streams.video if is_attached_picture(s)]
            for number, picture in enumerate(pictures, 1):
                yield _member(container, picture, number)


def _member(container: Any, stream: Any, number: int) -> Member:
    label = _label(stream, number)
    try:
        data = _picture(container, stream)
    except Exception as exc:  # a damaged file fails on this picture only
        return Member(label, error=f"attached picture unreadable: {type(exc).__name__}: {exc}")
    if data is None:
        return Member(label, error="attached picture not found in the file")
    if len(data) > MAX_PICTURE_BYTES:
        return Member(label, error=f"attached picture of {len(data):,} bytes: not read")
    ext = picture_extension(data)
    name = label if label.lower().endswith(ext) else label + ext
    return Member(name, open=partial(io.BytesIO, data), size=len(data))


def _picture(container: Any, stream: Any) -> bytes | None:
    for count, packet in enumerate(container.demux(stream)):
        if packet.stream.index == stream.index and packet.size:
            return bytes(packet)
        if count >= _MAX_PACKETS:
            break
    return None


def _label(stream: Any, number: int) -> str:
    """The picture's own name (ID3 picture type or title), else ``attached picture N``."""
    metadata = stream.metadata or {}
    for key in ("comment", "title", "filename"):
        text = " ".join(str(metadata.get(key, "")).split())
        if text and len(text) <= 100:
            return text.replace("/", "_").replace(" > ", " - ")
    return f"attached picture {number}"


READER = AttachedPicturesReader()
