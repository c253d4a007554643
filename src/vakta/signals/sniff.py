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

import re

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
#: Major brands of HEIF pictures by the type they are given when filetype does not know the
#: brand (it knows only ``heic``, ``mif1``, ``msf1`` and ``avif``; ``heix`` is the brand of
#: HEVC's 10-bit and 4:2:2 profiles).
HEIF_BRAND_TYPES = {
    **dict.fromkeys((b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"), "image/heic"),
    **dict.fromkeys((b"mif1", b"mif2", b"msf1"), "image/heif"),
    **dict.fromkeys((b"avif", b"avis"), "image/avif"),
}
#: Major brands of still pictures and raw photos (HEIF, AVIF, JPEG 2000, Canon CR3): never video here.
ISO_IMAGE_BRANDS = frozenset(HEIF_BRAND_TYPES) | {b"jp2 ", b"jpx ", b"jpm ", b"crx "}
_MAX_FTYP_BOX = 1024


def content_type(head: bytes) -> str:
    """MIME type of a file judged from its first bytes; ``application/octet-stream`` if unknown."""
    if not head:
        return "application/x-empty"
    head = head[:SNIFF_BYTES]
    iso = _iso_bmff_type(head)
    if iso and not iso.startswith(("video/mp4", "image/")):
        return iso
    kind = filetype.guess_mime(head)
    if kind:
        return str(kind)
    if iso:
        return iso
    disk = disk_image_type(head)
    if disk:
        return disk
    if is_thumbcache(head):
        return THUMBCACHE_TYPE
    if head.startswith(_OLE_MAGIC):
        return OLE_TYPE
    mail = mail_type(head)
    if mail:
        return mail
    if _is_transport_stream(head):
        return "video/mp2t"
    return "application/octet-stream"


def _iso_bmff_type(head: bytes) -> str | None:
    """3GP, 3G2, MP4 audio, HEIF, or MP4 video from other brands; None if not an ISO BMFF ``ftyp`` file.

    For ``video/mp4`` and HEIF pictures the caller lets filetype have the first
    say: the result is for brands filetype misses.
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
        return HEIF_BRAND_TYPES.get(major)
    if brands & ISO_VIDEO_BRANDS:
        return "video/mp4"
    return None


#: Signatures of the picture files that containers hold whole (cached thumbnails, cover art),
#: with the extension a member named after its entry is given.
PICTURE_SIGNATURES = (
    (b"\xff\xd8\xff", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"GIF8", ".gif"),
    (b"BM", ".bmp"),
)


def picture_extension(head: bytes) -> str:
    """``.jpg``, ``.png``, ``.gif`` or ``.bmp`` for a picture file's first bytes, else ``""``."""
    return next((ext for magic, ext in PICTURE_SIGNATURES if head.startswith(magic)), "")


#: An OLE compound file that filetype does not name (``Thumbs.db``, Outlook ``.msg``, ``.msi``...).
OLE_TYPE = "application/x-ole-storage"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: Windows Explorer's thumbnail cache (``thumbcache_256.db``...; ``iconcache_*.db`` too).
THUMBCACHE_TYPE = "application/x-windows-thumbcache"
#: Its format versions: Windows Vista (20) and 7 (21), then 8 to 11 (26-32); a little room above.
_THUMBCACHE_VERSIONS = range(20, 48)


def is_thumbcache(head: bytes) -> bool:
    """A thumbnail cache file: ``CMMM``, then a format version Windows has used (or a near one)."""
    return head[:4] == b"CMMM" and int.from_bytes(head[4:8], "little") in _THUMBCACHE_VERSIONS


#: Disk images (:mod:`vakta.containers.disk`): an EnCase/EWF segment, a partitioned
#: disk (MBR or GPT), a bare filesystem (FAT, exFAT, NTFS, ext2/3/4, HFS+).
EWF_TYPE = "application/x-ewf"
DISK_TYPE = "application/x-raw-disk-image"
FILESYSTEM_TYPE = "application/x-filesystem-image"
_EWF_MAGIC = b"EVF\x09\x0d\x0a\xff\x00"
_BOOT_SIGNATURE = b"\x55\xaa"


def disk_image_type(head: bytes) -> str | None:
    """EWF, partitioned disk or bare filesystem judged from the first sectors; None if neither.

    A FAT boot sector also ends in 0x55AA, so a filesystem's own boot sector is
    recognised before an MBR, and an MBR needs four well-formed partition entries.
    """
    if head.startswith(_EWF_MAGIC):
        return EWF_TYPE
    if b"EFI PART" in (head[512:520], head[4096:4104]):
        return DISK_TYPE
    if _is_boot_sector(head) or _is_ext(head) or _is_hfs_plus(head):
        return FILESYSTEM_TYPE
    if _is_mbr(head):
        return DISK_TYPE
    return None


def _is_boot_sector(head: bytes) -> bool:
    """An NTFS, exFAT or FAT boot sector (the latter by a sane BIOS parameter block)."""
    if head[510:512] != _BOOT_SIGNATURE:
        return False
    if head[3:11] in (b"NTFS    ", b"EXFAT   "):
        return True
    if not (head[0] == 0xE9 or (head[0] == 0xEB and head[2] == 0x90)):
        return False
    sector = int.from_bytes(head[11:13], "little")
    cluster, reserved, fats, media = head[13], int.from_bytes(head[14:16], "little"), head[16], head[21]
    return (
        sector in (512, 1024, 2048, 4096)
        and cluster in (1, 2, 4, 8, 16, 32, 64, 128)
        and reserved > 0
        and fats in (1, 2)
        and (media == 0xF0 or media >= 0xF8)
    )


def _is_mbr(head: bytes) -> bool:
    """0x55AA at 510 and four partition entries that an MBR could hold, at least one in use."""
    if len(head) < 512 or head[510:512] != _BOOT_SIGNATURE:
        return False
    used = 0
    for k in range(4):
        entry = head[446 + 16 * k : 462 + 16 * k]
        if entry[0] not in (0x00, 0x80):
            return False
        if entry[4]:
            if not int.from_bytes(entry[8:12], "little") or not int.from_bytes(entry[12:16], "little"):
                return False
            used += 1
    return used > 0


def _is_ext(head: bytes) -> bool:
    """The ext2/3/4 superblock magic at 1080, with a sane block size and inode count."""
    sb = head[1024:1124]
    if len(sb) < 100 or sb[56:58] != b"\x53\xef":
        return False
    return int.from_bytes(sb[24:28], "little") <= 6 and int.from_bytes(sb[0:4], "little") > 0


def _is_hfs_plus(head: bytes) -> bool:
    """An HFS+ (``H+``, version 4) or HFSX (``HX``, version 5) volume header at 1024."""
    return head[1024:1028] in (b"H+\x00\x04", b"HX\x00\x05")


def _is_transport_stream(head: bytes) -> bool:
    """True if ``head`` holds TS_MIN_PACKETS packets in a row, each starting with the sync byte.

    The first packet may start anywhere within one packet length, so a stream
    carved out of a larger one is still recognised.
    """
    syncs = bytes([TS_SYNC]) * TS_MIN_PACKETS
    for size in TS_PACKET_SIZES:
        span = size * (TS_MIN_PACKETS - 1)
        limit = min(size, len(head) - span)
        start = head.find(TS_SYNC, 0, max(limit, 0))
        while start != -1:  # only offsets holding a sync byte are candidates (C-speed search)
            if head[start : start + span + 1 : size] == syncs:
                return True
            start = head.find(TS_SYNC, start + 1, limit)
    return False


#: E-mail (:mod:`vakta.containers.mail`): one message (EML) or an mbox mailbox.
MESSAGE_TYPE = "message/rfc822"
MBOX_TYPE = "application/mbox"
#: An mbox separator line: ``From <sender> <date>``, the date holding a time of day.
MBOX_FROM_LINE = re.compile(rb"From \S+ +[^\r\n]*\d\d?:\d\d")
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:")
#: Header fields only mail has: one of them must be among a message's first lines.
_MAIL_FIELDS = frozenset(
    {b"from", b"received", b"return-path", b"message-id", b"mime-version", b"delivered-to", b"x-original-to"}
)
#: One-word header fields of mail; any other field name must hold a hyphen (``X-Mailer``,
#: ``Thread-Topic``), so ``key: value`` text such as YAML is not taken for mail.
_MAIL_WORDS = _MAIL_FIELDS | {
    b"to", b"cc", b"bcc", b"subject", b"date", b"sender", b"references", b"comments", b"keywords",
    b"status", b"importance", b"priority", b"sensitivity", b"organization", b"precedence", b"encrypted",
    b"newsgroups", b"path", b"lines", b"xref",
}  # fmt: skip


def mail_type(head: bytes) -> str | None:
    """``message/rfc822`` for a file of mail header lines, ``application/mbox`` for one after a From_ line."""
    if head.startswith(b"From "):
        line, _, rest = head.partition(b"\n")
        separator = len(line) <= 1000 and MBOX_FROM_LINE.match(line.rstrip(b"\r"))
        return MBOX_TYPE if separator and _is_mail_header(rest) else None
    return MESSAGE_TYPE if _is_mail_header(head) else None


def _is_mail_header(head: bytes) -> bool:
    """True if ``head`` opens with RFC 5322 header lines (up to a blank line) that name a mail-only field.

    Every line must be a field or the continuation of one, every field name a
    mail word or hyphenated, and at least two fields must be there.
    """
    lines = head.split(b"\n")
    if len(head) >= SNIFF_BYTES:
        lines.pop()  # cut off by the sniffing window
    names: set[bytes] = set()
    for number, raw in enumerate(lines):
        line = raw.rstrip(b"\r")
        if not line:
            break
        if number and line[:1] in (b" ", b"\t"):
            continue
        field = _FIELD.match(line)
        name = field.group(1).lower() if field else b""
        if not name or (name not in _MAIL_WORDS and b"-" not in name):
            return False
        names.add(name)
    return len(names) >= 2 and bool(names & _MAIL_FIELDS)
