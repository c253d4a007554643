"""Content type from the first bytes of a file, never from its name.

``filetype`` does the bulk.  A few video containers it misses or mislabels are
recognised here, so that they reach the vPDQ hasher under a ``video/`` type:

- MPEG transport streams (``.ts``, ``.m2ts``) have no magic number, only a sync
  byte at the start of every 188-byte packet (192 bytes in M2TS, 204 with
  error-correction bytes).  Several consecutive sync bytes are required, so
  random bytes are not taken for a stream.
- 3GP/3G2: filetype's own check looks for ``ftyp`` at the wrong offset, so a
  3GP file is either missed or called MP4, depending on its compatible brands.
- ISO BMFF files whose brands filetype does not list (``avc1``, ``iso5``,
  ``dash``, ``M4V`` with a longer ``ftyp`` box, ...); and MP4 audio files
  (``M4A``), which filetype calls ``video/mp4`` when they list ``isom``.
"""

from __future__ import annotations

import filetype

#: How many leading bytes detection looks at.
SNIFF_BYTES = 8192

#: MPEG-TS packet sizes: plain, M2TS (4-byte timecode first), and with 16 Reed-Solomon bytes.
TS_PACKET_SIZES = (188, 192, 204)
TS_SYNC = 0x47
#: Consecutive packets that must start with the sync byte (random bytes: about 2^-40 per offset).
TS_MIN_PACKETS = 5

#: ISO BMFF brands of video files that filetype does not recognise itself.
ISO_VIDEO_BRANDS = frozenset(
    {b"avc1", b"dash", b"mp71", b"MSNV", b"M4V ", b"M4VH", b"M4VP", b"f4v ", b"f4p ", b"XAVC", b"mmp4"}
    | {b"MQT ", b"CAEP", b"caqv", b"NDAS", b"NDSC", b"NDSH", b"NDSM", b"NDSP", b"NDSS", b"NDXC"}
    | {b"iso%d" % n for n in range(2, 10)}
)
#: Major brands of MP4 audio (and audio books); they name ``isom`` as compatible too.
ISO_AUDIO_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "})
#: Major brands of still pictures and raw photos (HEIF, AVIF, JPEG 2000, Canon CR3): never video here.
ISO_IMAGE_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"mif2", b"msf1", b"avif", b"avis"}
    | {b"jp2 ", b"jpx ", b"jpm ", b"crx "}
)
_MAX_FTYP_BOX = 1024


def content_type(head: bytes) -> str:
    """MIME type of a file judged from its first bytes; ``application/octet-stream`` if unknown."""
    if not head:
        return "application/x-empty"
    head = head[:SNIFF_BYTES]
    iso = _iso_bmff_type(head)
    if iso and not iso.startswith("video/mp4"):
        return iso
    kind = filetype.guess_mime(head)
    if kind:
        return str(kind)
    if iso:
        return iso
    if _is_transport_stream(head):
        return "video/mp2t"
    return "application/octet-stream"


def _iso_bmff_type(head: bytes) -> str | None:
    """3GP, 3G2, MP4 audio, or MP4 video from other brands; None if not an ISO BMFF ``ftyp`` file.

    The result is ``video/mp4`` only for brands filetype misses: the caller
    then lets filetype have the first say.
    """
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    major = head[8:12]
    box = min(int.from_bytes(head[:4], "big"), len(head), _MAX_FTYP_BOX)
    brands = {major} | {head[i : i + 4] for i in range(16, box - 3, 4)}
    if major.startswith(b"3g2") or major == b"kddi":
        return "video/3gpp2"
    if major.startswith(b"3g"):
        return "video/3gpp"
    if major in ISO_AUDIO_BRANDS:
        return "audio/mp4"
    if major in ISO_IMAGE_BRANDS:
        return None
    if brands & ISO_VIDEO_BRANDS:
        return "video/mp4"
    return None


def _is_transport_stream(head: bytes) -> bool:
    """True if ``head`` holds TS_MIN_PACKETS packets in a row, each starting with the sync byte.

    The first packet may start anywhere within one packet length, so a stream
    carved out of a larger one is still recognised.
    """
    for size in TS_PACKET_SIZES:
        span = size * (TS_MIN_PACKETS - 1)
        for start in range(min(size, len(head) - span)):
            if all(head[start + k * size] == TS_SYNC for k in range(TS_MIN_PACKETS)):
                return True
    return False
