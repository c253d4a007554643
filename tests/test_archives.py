"""Archive readers: ZIP (and ZIP-based documents), TAR, gzip/bzip2/xz/zstd, 7z and RAR.

Every archive is built here: with zipfile, tarfile and the compression modules,
with libarchive's writers (7z, encrypted ZIP), from the RAR 5 specification
(stored members), and a real ZIP quine from deflate's stored and fixed-Huffman
blocks.  Only three small RAR archives made by WinRAR are embedded, from the
test suite of the ``rarfile`` package (ISC licence, notice below).  The only
picture inside any of them is the built-in, harmless test signature.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import hashlib
import io
import lzma
import os
import struct
import tarfile
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zstandard

import vakta.containers.compressed
from vakta import testsignature
from vakta.containers import Limits, Member, reader_for
from vakta.containers.compressed import READER as COMPRESSED
from vakta.containers.compressed import check_zstd_frames, gzip_name
from vakta.containers.tar import READER as TAR
from vakta.containers.zip import READER as ZIP
from vakta.findings import Finding
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Matcher
from vakta.pipeline import Scanner, hash_tree
from vakta.signals.model import HashOptions, Signals
from vakta.signals.sniff import content_type
from vakta.sources.filesystem import SOURCE

try:
    import libarchive

    from vakta.containers.rar import READER as RAR
    from vakta.containers.sevenzip import READER as SEVENZIP
except (ImportError, OSError):  # libarchive-c is installed, the system library it binds is not
    libarchive = RAR = SEVENZIP = None

#: 7z, RAR and encrypted-ZIP tests need the system's libarchive, as the 7z and RAR readers do.
needs_libarchive = pytest.mark.skipif(
    libarchive is None, reason="the system's libarchive is missing (Debian: apt-get install libarchive13)"
)

if TYPE_CHECKING:
    from conftest import RunCli

SIG = testsignature.image_bytes()
OPTIONS = HashOptions(extra_queries=False)
MIB = 1 << 20
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT = "application/vnd.oasis.opendocument.text"
EPUB = "application/epub+zip"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tree(path: Path, limits: Limits | None = None) -> dict[str, Signals]:
    """Signals of the file at ``path`` and of everything inside it, by location."""
    (item,) = SOURCE.items(str(path))
    return {s.location: s for s in hash_tree(item, OPTIONS, None, limits or Limits())}


def scan(folder: Path, workers: int = 1, limits: Limits | None = None) -> dict[str, Finding]:
    """Findings of a scan of ``folder`` against the built-in test list, by location."""
    scanner = Scanner(Matcher(ListIndex.build(testsignature.entry_rows())), OPTIONS, workers=workers)
    if limits is not None:
        scanner.limits = limits
    return {f.signals.location: f for f in scanner.scan([str(folder)])}


def content(member: Member) -> bytes:
    assert member.open is not None, member.error
    with member.open() as stream:
        return stream.read()


def members(reader: Any, data: bytes) -> dict[str, Member]:
    return {m.name: m for m in reader.members(io.BytesIO(data))}


def zip_bytes(files: list[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return out.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def matched(findings: dict[str, Finding]) -> set[str]:
    return {location for location, f in findings.items() if f.matched}


# --------------------------------------------------------------------------- ZIP


def test_zip_members_are_streamed_with_their_location_and_the_signature_matches(tmp_path: Path) -> None:
    text = b"minutes of the meeting\n" * 50
    files = [("photos/2024/sig.jpg", SIG), ("notes.txt", text), ("empty.bin", b"")]
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("photos/", b"")  # a directory entry: not a member
        for name, payload in files:
            archive.writestr(name, payload)
        archive.writestr("bzip2.jpg", SIG, compress_type=zipfile.ZIP_BZIP2)
        archive.writestr("lzma.jpg", SIG, compress_type=zipfile.ZIP_LZMA)
        archive.writestr("stored.jpg", SIG, compress_type=zipfile.ZIP_STORED)
    path = write(tmp_path / "case.zip", data.getvalue())

    found = tree(path)

    root = str(path)
    assert list(found) == [root] + [
        f"{root} > {n}" for n in ["photos/2024/sig.jpg", "notes.txt", "empty.bin"]
    ] + [f"{root} > {n}" for n in ["bzip2.jpg", "lzma.jpg", "stored.jpg"]]
    sig = found[f"{root} > photos/2024/sig.jpg"]
    assert (sig.md5, sig.size, sig.type, sig.errors) == (md5(SIG), len(SIG), "image/jpeg", [])
    assert sig.inside == ["photos/2024/sig.jpg"] and sig.parent_md5 == md5(data.getvalue())
    assert sig.pdq is not None
    assert found[f"{root} > notes.txt"].md5 == md5(text)
    assert found[f"{root} > empty.bin"].size == 0
    assert {found[f"{root} > {n}"].md5 for n in ("bzip2.jpg", "lzma.jpg", "stored.jpg")} == {md5(SIG)}
    assert all(not s.errors for s in found.values())
    findings = scan(tmp_path)
    assert matched(findings) == {
        f"{root} > {n}" for n in ("photos/2024/sig.jpg", "bzip2.jpg", "lzma.jpg", "stored.jpg")
    }


def test_zip64_archives_are_read() -> None:
    out = io.BytesIO()
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("big/sig.jpg", "w", force_zip64=True) as member,
    ):
        member.write(SIG)
    data = out.getvalue()
    assert b"\x01\x00" in data[30:60]  # the ZIP64 extra field is in the local header
    (member,) = ZIP.members(io.BytesIO(data))
    assert member.name == "big/sig.jpg" and member.size == len(SIG)
    assert content(member) == SIG


@needs_libarchive
@pytest.mark.parametrize("encryption", ["zipcrypt", "aes256"])
def test_encrypted_zip_members_are_errors_not_scanned(encryption: str) -> None:
    out = io.BytesIO()
    with libarchive.custom_writer(
        out.write, "zip", options=f"encryption={encryption}", passphrase="secret"
    ) as w:
        w.add_file_from_memory("locked.jpg", len(SIG), SIG)
    (member,) = ZIP.members(io.BytesIO(out.getvalue()))
    assert (member.name, member.error, member.open) == ("locked.jpg", "encrypted: not scanned", None)


def _central_entries(data: bytes) -> dict[str, int]:
    """Where each member's central directory entry starts."""
    eocd = data.rindex(b"PK\x05\x06")
    size, pos = struct.unpack("<II", data[eocd + 12 : eocd + 20])
    entries, end = {}, pos + size
    while pos < end:
        name_len, extra_len, comment_len = struct.unpack("<HHH", data[pos + 28 : pos + 34])
        entries[data[pos + 46 : pos + 46 + name_len].decode()] = pos
        pos += 46 + name_len + extra_len + comment_len
    return entries


def _patch(data: bytes, name: str, local: int, central: int, value: bytes) -> bytes:
    """``data`` with ``value`` at ``local`` in ``name``'s local header and at ``central`` in its directory entry."""
    out = bytearray(data)
    start = zipfile.ZipFile(io.BytesIO(data)).getinfo(name).header_offset + local
    out[start : start + len(value)] = value
    start = _central_entries(data)[name] + central
    out[start : start + len(value)] = value
    return bytes(out)


FLAGS, METHOD, FILE_SIZE = (6, 8), (8, 10), (22, 24)  # offsets in the local header and the directory entry


def test_an_encrypted_or_undecodable_member_costs_only_itself(tmp_path: Path) -> None:
    names = ["a.jpg", "locked.jpg", "deflate64.jpg", "zstd.jpg", "z.jpg"]
    data = zip_bytes([(n, SIG) for n in names], zipfile.ZIP_STORED)
    data = _patch(data, "locked.jpg", *FLAGS, struct.pack("<H", 1))
    data = _patch(data, "deflate64.jpg", *METHOD, struct.pack("<H", 9))
    data = _patch(data, "zstd.jpg", *METHOD, struct.pack("<H", 93))
    path = write(tmp_path / "mixed.zip", data)

    found = tree(path)

    errors = {loc.rpartition(" > ")[2]: s.errors for loc, s in found.items() if loc != str(path)}
    assert errors == {
        "a.jpg": [],
        "locked.jpg": ["encrypted: not scanned"],
        "deflate64.jpg": ["compression method 9 (Deflate64) not supported: not scanned"],
        "zstd.jpg": ["compression method 93 (Zstandard) not supported: not scanned"],
        "z.jpg": [],
    }
    assert found[f"{path} > locked.jpg"].md5 is None
    assert matched(scan(tmp_path)) == {f"{path} > a.jpg", f"{path} > z.jpg"}


def test_a_zip_without_a_readable_central_directory_is_an_error_and_the_scan_goes_on(tmp_path: Path) -> None:
    good = zip_bytes([("sig.jpg", SIG)])
    broken = good.replace(b"PK\x01\x02", b"PK\x09\x09")  # the central directory's entry is not one
    write(tmp_path / "broken.zip", broken)
    write(tmp_path / "truncated.zip", good[: len(good) // 2])
    write(tmp_path / "good.zip", good)
    write(tmp_path / "loose.jpg", SIG)

    findings = scan(tmp_path)

    for name, data in (("broken.zip", broken), ("truncated.zip", good[: len(good) // 2])):
        signals = findings[str(tmp_path / name)].signals
        assert signals.md5 == md5(data) and signals.type == "application/zip"
        assert len(signals.errors) == 1 and signals.errors[0].startswith(
            "zip: cannot read the ZIP central directory:"
        )
    assert matched(findings) == {f"{tmp_path / 'good.zip'} > sig.jpg", str(tmp_path / "loose.jpg")}


def test_lying_size_fields_are_errors_on_their_member(tmp_path: Path) -> None:
    data = zip_bytes([("short.jpg", SIG), ("long.jpg", SIG), ("ok.jpg", SIG)])
    data = _patch(data, "short.jpg", *FILE_SIZE, struct.pack("<I", 10))  # says 10 bytes: more follow
    data = _patch(data, "long.jpg", *FILE_SIZE, struct.pack("<I", 10 * len(SIG)))  # says more than there is
    path = write(tmp_path / "liar.zip", data)

    found = tree(path)

    short, long, ok = (found[f"{path} > {n}"] for n in ("short.jpg", "long.jpg", "ok.jpg"))
    assert short.md5 is None
    assert short.errors == ["cannot read member: damaged ZIP member data: Bad CRC-32 for file 'short.jpg'"]
    assert long.md5 == md5(SIG)
    assert long.errors == [f"container says {10 * len(SIG):,} bytes, member has {len(SIG):,}"]
    assert ok.md5 == md5(SIG) and not ok.errors


def _zip_with_bzip2_bomb() -> bytes:
    """A member of 80 MiB of zeros, bzip2-compressed to a few hundred bytes, then the test signature."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_BZIP2) as archive:
        with archive.open("zeros.bin", "w", force_zip64=True) as member:
            for _ in range(10):
                member.write(bytes(8 * MIB))
        archive.writestr("after.jpg", SIG)
    return out.getvalue()


def test_a_zip_bomb_member_is_an_error_and_the_rest_is_scanned(
    tmp_path: Path, deadline: Callable[[int], Any]
) -> None:
    data = _zip_with_bzip2_bomb()
    assert len(data) < 100_000
    path = write(tmp_path / "bomb.zip", data)
    write(tmp_path / "loose.jpg", SIG)

    with deadline(60):
        findings = scan(tmp_path, workers=2)

    bomb = findings[f"{path} > zeros.bin"].signals
    assert bomb.md5 is None
    assert bomb.errors == ["inflates more than 1000 times its stored size: a compression bomb"]
    assert matched(findings) == {f"{path} > after.jpg", str(tmp_path / "loose.jpg")}


def test_nested_zip_bombs_stop_at_the_byte_budget(tmp_path: Path, deadline: Callable[[int], Any]) -> None:
    level = zip_bytes([("zeros.bin", bytes(32 * MIB))])
    for depth in range(3):  # 4 x 4 x 4 leaves of 32 MiB: 2 GiB from about 2 MB
        level = zip_bytes([(f"{depth}-{k}.zip", level) for k in range(4)])
    path = write(tmp_path / "42.zip", level)
    write(tmp_path / "loose.jpg", SIG)
    limits = Limits(max_total_bytes=256 * MIB)

    start = time.monotonic()
    with deadline(120):
        findings = scan(tmp_path, limits=limits)
    elapsed = time.monotonic() - start

    errors = [e for loc, f in findings.items() if loc.startswith(f"{path} > ") for e in f.signals.errors]
    assert any("(--max-container-size)" in e for e in errors)
    leaves = [f for loc, f in findings.items() if loc.endswith("zeros.bin") and f.signals.md5]
    assert 0 < len(leaves) < 8  # at most 256 MiB of 32 MiB leaves, not 64 of them
    assert matched(findings) == {str(tmp_path / "loose.jpg")}
    assert elapsed < 60


# --------------------------------------------------------------------------- a ZIP quine

_LENGTHS = [
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    13,
    15,
    17,
    19,
    23,
    27,
    31,
    35,
    43,
    51,
    59,
    67,
    83,
    99,
    115,
    131,
    163,
    195,
    227,
]
_LENGTH_BITS = [0] * 8 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4
_DISTANCES = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537]
_DISTANCE_BITS = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]


class _Bits:
    """Deflate's bit order: fields least significant bit first, Huffman codes most significant bit first."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def field(self, value: int, n: int) -> None:
        self.bits += [(value >> i) & 1 for i in range(n)]

    def code(self, value: int, n: int) -> None:
        self.bits += [(value >> i) & 1 for i in reversed(range(n))]

    def fixed(self, symbol: int) -> None:
        """A literal/length symbol in deflate's fixed Huffman code (the symbols used here are below 144 or 256-279)."""
        self.code(symbol - 256, 7) if symbol >= 256 else self.code(0x30 + symbol, 8)

    def to_bytes(self) -> bytes:
        bits = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(sum(b << i for i, b in enumerate(bits[k : k + 8])) for k in range(0, len(bits), 8))


def _empty_fixed_blocks(bits: _Bits, count: int) -> None:
    for _ in range(count):
        bits.field(0b010, 3)  # not final, fixed Huffman
        bits.fixed(256)  # end of block


def _print(n: int, size: int) -> bytes | None:
    """Deflate for "the next n bytes are literal": a stored-block header, padded before by empty blocks to ``size`` bytes."""
    for pad in range(size):
        bits = _Bits()
        _empty_fixed_blocks(bits, pad)
        bits.field(0, 3)  # not final, stored
        out = bits.to_bytes() + struct.pack("<HH", n, n ^ 0xFFFF)
        if len(out) == size:
            return out
    return None


def _repeat(n: int, size: int, final: bool = False) -> bytes | None:
    """Deflate for "repeat the last n bytes": one copy, then an empty stored block to get back to a byte boundary."""
    i = max(k for k, base in enumerate(_LENGTHS) if base <= n)
    j = max(k for k, base in enumerate(_DISTANCES) if base <= n)
    for pad in range(size):
        bits = _Bits()
        bits.field(0b010, 3)
        bits.fixed(257 + i)
        bits.field(n - _LENGTHS[i], _LENGTH_BITS[i])
        bits.code(j, 5)
        bits.field(n - _DISTANCES[j], _DISTANCE_BITS[j])
        bits.fixed(256)
        _empty_fixed_blocks(bits, pad)
        bits.field(int(final), 3)  # stored
        out = bits.to_bytes() + struct.pack("<HH", 0, 0xFFFF)
        if len(out) == size:
            return out
    return None


def zip_quine(name: bytes = b"r.zip") -> bytes:
    """A ZIP archive whose one member, ``r.zip``, is the archive itself, byte for byte (Russ Cox's construction).

    The deflate data is a program of "print n" (stored block) and "repeat n"
    (a copy) steps, each u bytes long, that prints the local header P, itself
    and the central directory S.  The CRC-32 of the archive is stored inside it
    (four times); CRC-32 is affine over GF(2), so the fixed point is solved for.
    """
    p, s = 30 + len(name), 46 + len(name) + 22
    unit = next(u for u in range(5, 64) if all(_steps(p, s, u).values()))
    steps = {k: v or b"" for k, v in _steps(p, s, unit).items()}

    def archive(crc: int) -> bytes:
        pr, rp, p1, p4, r4, p0, ps, rs = (steps[k] for k in ("Pp", "Rp", "P1", "P4", "R4", "P0", "Ps", "Rs"))
        program = [pr, b"P", pr, rp, p1, rp, p1, p1, p4, rp, p1, p1, p4, r4, p4, r4, p4, r4, p4, r4, p4, r4]
        program += [p0, p0, ps, r4, p0, p0, ps, rs, b"S", rs]
        size = sum(len(x) for x in program) + p + s - 2
        total = p + size + s
        local = (
            struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, size, total, len(name), 0) + name
        )
        central = struct.pack(
            "<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, size, total, len(name), 0, 0, 0, 0, 0, 0
        )
        tail = (
            central
            + name
            + struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(name), p + size, 0)
        )
        data = b"".join(local if x == b"P" else tail if x == b"S" else x for x in program)
        return local + data + tail

    return archive(_crc_fixed_point(archive))


def _steps(p: int, s: int, u: int) -> dict[str, bytes | None]:
    return {
        "Pp": _print(p + u, u), "Rp": _repeat(p + u, u), "P1": _print(u, u), "P4": _print(4 * u, u),
        "R4": _repeat(4 * u, u), "P0": _print(0, u), "Ps": _print(s + u, u), "Rs": _repeat(s + u, u, final=True),
    }  # fmt: skip


def _crc_fixed_point(build: Callable[[int], bytes]) -> int:
    """The c with crc32(build(c)) == c: crc32(build(c)) = base ^ M c over GF(2), so solve (M + I) c = base."""
    base = zlib.crc32(build(0))
    columns = [zlib.crc32(build(1 << i)) ^ base for i in range(32)]
    rows = [
        (sum(((columns[i] >> b) & 1) << i for i in range(32)) ^ (1 << b), (base >> b) & 1) for b in range(32)
    ]
    pivots: dict[int, tuple[int, int]] = {}
    for row, value in rows:
        for col in range(32):
            if (row >> col) & 1:
                if col not in pivots:
                    pivots[col] = (row, value)
                    break
                row, value = row ^ pivots[col][0], value ^ pivots[col][1]
    crc = 0
    for col in sorted(pivots, reverse=True):
        row, value = pivots[col]
        for other in range(col + 1, 32):
            value ^= ((row >> other) & 1) & ((crc >> other) & 1)
        crc |= value << col
    assert zlib.crc32(build(crc)) == crc
    return crc


def test_a_zip_quine_is_an_error_on_its_copy_of_itself(
    tmp_path: Path, deadline: Callable[[int], Any]
) -> None:
    quine = zip_quine()
    assert zipfile.ZipFile(io.BytesIO(quine)).read("r.zip") == quine  # a real quine
    path = write(tmp_path / "r.zip", quine)
    write(tmp_path / "loose.jpg", SIG)

    with deadline(30):
        found = tree(path)
        findings = scan(tmp_path)

    assert list(found) == [str(path), f"{path} > r.zip"]
    inner = found[f"{path} > r.zip"]
    assert inner.md5 == md5(quine) and inner.type == "application/zip"
    assert inner.errors == ["contains itself (a recursive archive): not opened again"]
    assert matched(findings) == {str(tmp_path / "loose.jpg")}


# --------------------------------------------------------------------------- documents that are ZIPs


def _document(mimetype: str | None, files: list[tuple[str, bytes]]) -> bytes:
    """A ZIP laid out as the format asks: an uncompressed ``mimetype`` member first (ODF, EPUB)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        if mimetype:
            archive.writestr("mimetype", mimetype, compress_type=zipfile.ZIP_STORED)
        for name, data in files:
            archive.writestr(name, data)
    return out.getvalue()


def test_pictures_in_office_documents_and_ebooks_are_found(tmp_path: Path) -> None:
    documents = {
        "report.docx": (
            DOCX,
            _document(
                None,
                [
                    ("[Content_Types].xml", b'<?xml version="1.0"?><Types/>'),
                    ("_rels/.rels", b"<Relationships/>"),
                    ("word/document.xml", b"<w:document/>"),
                    ("word/media/image1.jpeg", SIG),
                ],
            ),
            "word/media/image1.jpeg",
        ),
        "minutes.odt": (
            ODT,
            _document(ODT, [("content.xml", b"<office:document-content/>"), ("Pictures/1.jpg", SIG)]),
            "Pictures/1.jpg",
        ),
        "book.epub": (
            EPUB,
            _document(EPUB, [("META-INF/container.xml", b"<container/>"), ("OEBPS/images/cover.jpg", SIG)]),
            "OEBPS/images/cover.jpg",
        ),
    }
    for name, (kind, data, _) in documents.items():
        assert content_type(data[:8192]) == kind, name
        assert reader_for(kind) is ZIP
        write(tmp_path / name, data)

    findings = scan(tmp_path)

    assert matched(findings) == {f"{tmp_path / name} > {inner}" for name, (_, _, inner) in documents.items()}


# --------------------------------------------------------------------------- streaming


def test_a_200_mb_zip_streams_in_constant_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.zip"
    rng = np.random.default_rng(7)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive,
        archive.open("random.bin", "w", force_zip64=True) as member,
    ):
        for _ in range(200):
            member.write(rng.bytes(MIB))
    tree(
        write(tmp_path / "warm-up.zip", zip_bytes([("a.bin", b"a")]))
    )  # imports and plugins load outside the trace
    tracemalloc.start()
    try:
        found = tree(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    big = found[f"{path} > random.bin"]
    assert big.size == 200 * MIB and not big.errors
    assert peak < 16 * MIB, f"peak {peak / MIB:.1f} MiB of Python memory for a 200 MiB member"


def test_a_nested_container_is_decoded_once_and_opened_from_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind, decoder = vakta.containers.compressed.FORMATS["application/gzip"]
    opened: list[int] = []

    def counting(stream: Any) -> Any:
        opened.append(1)
        return decoder(stream)

    monkeypatch.setitem(vakta.containers.compressed.FORMATS, "application/gzip", (kind, counting))
    docs = [
        (f"doc{k}.docx", _document(None, [("[Content_Types].xml", b"<Types/>"), ("word/media/a.jpg", SIG)]))
        for k in range(5)
    ]
    path = write(tmp_path / "docs.tar.gz", _gzip(_tar(docs), "docs.tar"))

    found = tree(path)

    assert {loc for loc, s in found.items() if s.md5 == md5(SIG)} == {
        f"{path} > docs.tar > doc{k}.docx > word/media/a.jpg" for k in range(5)
    }
    assert len(opened) == 1  # hashed and listed from one decoding; each document from memory


# --------------------------------------------------------------------------- TAR


def _tar(
    files: list[tuple[str, bytes]], fmt: int = tarfile.PAX_FORMAT, more: list[tarfile.TarInfo] | None = None
) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as archive:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in more or []:
            archive.addfile(info)
    return out.getvalue()


def _special(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_members_are_the_files_and_names_are_only_names(
    tmp_path: Path, fmt: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = "deep/" * 30 + "sig.jpg"
    files = [
        ("a/sig.jpg", SIG),
        ("/abs/sig.jpg", SIG),
        ("../../escape.jpg", SIG),
        (deep, SIG),
        ("notes.txt", b"n"),
    ]
    specials = [
        _special("a", tarfile.DIRTYPE),
        _special("link", tarfile.SYMTYPE, "/etc/passwd"),
        _special("hard", tarfile.LNKTYPE, "a/sig.jpg"),
        _special("dev/null", tarfile.CHRTYPE),
        _special("fifo", tarfile.FIFOTYPE),
    ]
    path = write(tmp_path / "archive" / "case.tar", _tar(files, fmt, specials))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    found = tree(path)
    findings = scan(tmp_path / "archive")

    assert [m.name for m in TAR.members(io.BytesIO(path.read_bytes()))] == [name for name, _ in files]
    assert list(found) == [str(path)] + [f"{path} > {name}" for name, _ in files]
    assert all(not s.errors for s in found.values())
    assert matched(findings) == {f"{path} > {name}" for name, data in files if data == SIG}
    assert list(work.iterdir()) == [] and not (tmp_path / "escape.jpg").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["archive", "case.tar", "work"]


def _gzip(data: bytes, name: str | None = None) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(filename=name or "", mode="wb", fileobj=out, mtime=0) as stream:
        stream.write(data)
    return out.getvalue()


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gz": lambda data: _gzip(data, "x.tar"),
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zst": lambda data: zstandard.ZstdCompressor(write_checksum=True).compress(data),
}


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_compressed_tars_are_opened_in_turn(tmp_path: Path, suffix: str) -> None:
    tar = _tar([("a/b.jpg", SIG)])
    path = write(tmp_path / f"x.tar.{suffix}", COMPRESSORS[suffix](tar))
    inner = "x.tar" if suffix == "gz" else "(decompressed)"

    found = tree(path)

    assert found[f"{path} > {inner}"].type == "application/x-tar"
    assert found[f"{path} > {inner}"].md5 == md5(tar)
    chain = found[f"{path} > {inner} > a/b.jpg"]
    assert chain.inside == [inner, "a/b.jpg"] and chain.parent_md5 == md5(tar)
    assert matched(scan(tmp_path)) == {f"{path} > {inner} > a/b.jpg"}


def test_damaged_tar_headers_are_reported_and_the_members_after_them_found(tmp_path: Path) -> None:
    tar = bytearray(
        _tar([("first.jpg", SIG), ("middle.txt", b"x" * 100), ("last.jpg", SIG)], tarfile.GNU_FORMAT)
    )
    at = tar.index(b"middle.txt")
    tar[at : at + 512] = b"\xff" * 512  # the header, then its data block, read as headers, are garbage
    path = write(tmp_path / "damaged.tar", bytes(tar))

    found = tree(path)

    assert list(found) == [str(path)] + [
        f"{path} > {n}" for n in ("first.jpg", f"(damaged data at offset {at:,})", "last.jpg")
    ]
    assert found[f"{path} > (damaged data at offset {at:,})"].errors == [
        "2 damaged tar header block(s) skipped; any member stored there is lost"
    ]
    assert found[f"{path} > last.jpg"].md5 == md5(SIG) and not found[str(path)].errors


def test_a_truncated_tar_keeps_the_members_before_the_cut(tmp_path: Path) -> None:
    tar = _tar([("first.jpg", SIG), ("second.jpg", SIG)], tarfile.USTAR_FORMAT)
    path = write(tmp_path / "cut.tar", tar[: tar.index(b"second.jpg") + 512 + 1000])

    found = tree(path)

    assert found[f"{path} > first.jpg"].md5 == md5(SIG)
    second = found[f"{path} > second.jpg"]
    assert second.md5 is None and second.errors == [
        "cannot read member: damaged tar member data: unexpected end of data"
    ]
    assert found[str(path)].errors == ["tar: damaged or truncated tar archive: unexpected end of data"]


# --------------------------------------------------------------------------- gzip, bzip2, xz, zstd


def test_a_gzip_member_is_named_from_its_header() -> None:
    assert gzip_name(_gzip(b"x", "photo.jpg")) == "photo.jpg"
    assert gzip_name(_gzip(b"x")) is None
    extra = (
        b"\x1f\x8b\x08\x0c\0\0\0\0\0\xff" + b"\x04\x00abcd" + b"caf\xe9.txt\0"
    )  # FEXTRA, then FNAME in Latin-1
    assert gzip_name(extra) == "café.txt"
    (member,) = COMPRESSED.members(io.BytesIO(_gzip(SIG, "photo.jpg")))
    assert member.name == "photo.jpg" and content(member) == SIG
    (member,) = COMPRESSED.members(io.BytesIO(bz2.compress(SIG)))
    assert member.name == "(decompressed)" and content(member) == SIG


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def test_damaged_compressed_files_are_errors_on_the_member(tmp_path: Path) -> None:
    text = os.urandom(50_000)
    cases = {
        "crc.gz": _flip(_gzip(text), -6),
        "cut.xz": lzma.compress(text)[:-100],
        "bad.zst": _flip(zstandard.ZstdCompressor(write_checksum=True).compress(text), 1000),
        "bad.bz2": _flip(bz2.compress(text), 2000),
        "trailing.gz": _gzip(text) + b"junk after the end",
        "cut.zst": zstandard.ZstdCompressor().compress(text)[:-100],
        "cut-stream.zst": _zstd_streamed(text)[:-100],  # no content size in its header
    }
    for name, data in cases.items():
        write(tmp_path / name, data)

    findings = scan(tmp_path)

    errors = {loc.split("/")[-1]: f.signals.errors for loc, f in findings.items() if " > " in loc}
    assert errors["crc.gz > (decompressed)"][0].startswith(
        "cannot read member: damaged gzip data: CRC check failed"
    )
    assert errors["cut.xz > (decompressed)"] == [
        "cannot read member: damaged xz data: Compressed file ended before the end-of-stream marker was reached"
    ]
    assert errors["bad.zst > (decompressed)"][0].startswith("cannot read member: damaged zstd data:")
    assert errors["bad.bz2 > (decompressed)"] == ["cannot read member: Invalid data stream"]
    assert errors["trailing.gz > (decompressed)"] == []  # bytes after the end are ignored, as gzip -d does
    for cut in ("cut.zst", "cut-stream.zst"):  # zstandard's own reader would end quietly, short
        assert errors[f"{cut} > (decompressed)"] == [
            "cannot read member: damaged zstd data: the data ends inside a zstd frame (truncated)"
        ]
    assert findings[f"{tmp_path / 'trailing.gz'} > (decompressed)"].signals.md5 == md5(text)


def _zstd_streamed(data: bytes) -> bytes:
    compressor = zstandard.ZstdCompressor(write_checksum=True).compressobj()
    return compressor.compress(data) + compressor.flush()


def test_zstd_frames_and_skippable_frames_read_whole() -> None:
    """Several frames (as ``cat a.zst b.zst`` makes), a skippable one between, RLE blocks: all read, no error."""
    first, second = os.urandom(300_000), bytes(200_000)
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"hello"
    data = zstandard.ZstdCompressor().compress(first) + skippable + _zstd_streamed(second)
    check_zstd_frames(io.BytesIO(data))
    (member,) = COMPRESSED.members(io.BytesIO(data))
    assert content(member) == first + second
    for cut in (len(data) - 1, len(data) - 6, len(first) // 2, 3):
        with pytest.raises(EOFError, match="ends inside a zstd frame"):
            check_zstd_frames(io.BytesIO(data[:cut]))
    with pytest.raises(ValueError, match="not zstd data at byte"):
        check_zstd_frames(io.BytesIO(data + b"junk"))


def test_a_compression_bomb_stops_at_the_ratio_limit(tmp_path: Path, deadline: Callable[[int], Any]) -> None:
    block = bz2.compress(bytes(8 * MIB), 9)
    path = write(tmp_path / "zeros.bz2", block * 1024)  # 8 GiB of zeros in a few tens of kilobytes
    write(tmp_path / "loose.jpg", SIG)

    with deadline(60):
        findings = scan(tmp_path)

    bomb = findings[f"{path} > (decompressed)"].signals
    assert bomb.md5 is None
    assert bomb.errors == ["inflates more than 1000 times its stored size: a compression bomb"]
    assert matched(findings) == {str(tmp_path / "loose.jpg")}


# --------------------------------------------------------------------------- 7z


def _7z(files: list[tuple[str, bytes]], compression: str = "lzma2") -> bytes:
    out = io.BytesIO()
    with libarchive.custom_writer(out.write, "7zip", options=f"compression={compression}") as archive:
        for name, data in files:
            archive.add_file_from_memory(name, len(data), data)
    return out.getvalue()


@needs_libarchive
def test_7z_members_are_streamed_and_a_hostile_name_hides_nothing(tmp_path: Path) -> None:
    files = [("../evil.jpg", SIG), ("docs/notes.txt", b"notes" * 100), ("pics/sig.jpg", SIG), ("empty", b"")]
    data = _7z(files)
    assert content_type(data[:8192]) == "application/x-7z-compressed"
    path = write(tmp_path / "case.7z", data)

    found = tree(path)

    assert list(found) == [str(path)] + [f"{path} > {name}" for name, _ in files]
    for name, payload in files:
        signals = found[f"{path} > {name}"]
        assert (signals.md5, signals.size, signals.errors) == (md5(payload), len(payload), [])
    assert matched(scan(tmp_path)) == {f"{path} > ../evil.jpg", f"{path} > pics/sig.jpg"}


@needs_libarchive
@pytest.mark.parametrize("compression", ["lzma1", "bzip2", "deflate", "ppmd", "store"])
def test_7z_members_can_be_read_again_after_the_listing_moved_on(compression: str) -> None:
    files = [(f"f{k}.bin", bytes([k]) * 70_000 + os.urandom(1000)) for k in range(4)]
    data = _7z(files, compression)
    listing = SEVENZIP.members(io.BytesIO(data))
    first = next(listing)
    assert content(first) == files[0][1]  # read as the listing goes
    assert content(first) == files[0][1]  # and again, through a new reading of the archive
    rest = list(listing)
    assert [m.name for m in rest] == ["f1.bin", "f2.bin", "f3.bin"]
    assert [content(m) for m in reversed(rest)] == [d for _, d in reversed(files[1:])]


#: 7z archives made with py7zr 1.1.4 (SevenZipFile(..., "w", password="secret").writestr(b"hello world",
#: "secret.txt")), the second with header_encryption=True: its names are encrypted too.
ENCRYPTED_7Z = base64.b64decode(
    "N3q8ryccAASHcfVThAAAAAAAAAAUAAAAAAAAABS+Rn8Rh/GBjrVFSCPVvtTfuE/J4ABuAGxdAACBMweuD87zckeDJzdgSA4ZdW9v8BBk5PYy"
    "Hud3xmLogt7QhWrHwgPLjxf3mxcf2r94XLrPpRfIMmlzTlNsMs+r3uVRdiXqqR8ucXfMGAGrQ9ea5jf27VvN10lewzMz7UhvLVUhq6VXFgAA"
    "AAAXBhABCXQABwsBAAEhIQEYDG8AAA=="
)
HEADER_ENCRYPTED_7Z = base64.b64decode(
    "N3q8ryccAARfXeJEgAAAAAAAAAAoAAAAAAAAAI6vdG6ivc1lGpj0xcvG7UtgNutUT+xBLheZcy4i2NfdCo/12oBCZlm/5ikelHJ3XyRfN7Hi"
    "waqSrBthexXafF6YUn8Exz8qGkAQnk5s86KUT/V7qac0jTL7CegKstLGakm/lP63cMLXF0CLUCqdFAJIeIp6X99ZwIFOWYhAIQ5kslTYXRcG"
    "EAEJcAAHCwEAASQG8QcBElMP8G3vX1WjYea8n/eAP4kF9AxvAAA="
)


@needs_libarchive
def test_encrypted_and_damaged_7z_archives_are_errors(tmp_path: Path) -> None:
    (member,) = SEVENZIP.members(io.BytesIO(ENCRYPTED_7Z))
    assert (member.name, member.error, member.open) == ("secret.txt", "encrypted: not scanned", None)
    good = _7z([("a.jpg", SIG), ("b.jpg", SIG)])
    cases = {
        "names.7z": HEADER_ENCRYPTED_7Z,
        "cut.7z": good[: len(good) // 2],
        "flipped.7z": _flip(good, 32 + len(SIG) // 2),  # inside the packed data
    }
    for name, data in cases.items():
        write(tmp_path / name, data)
    write(tmp_path / "good.7z", good)

    findings = scan(tmp_path)

    assert findings[str(tmp_path / "names.7z")].signals.errors == [
        "7z: The archive header is encrypted, but currently not supported"
    ]
    assert findings[str(tmp_path / "cut.7z")].signals.errors[0].startswith("7z: ")
    flipped = [
        f.signals.errors for loc, f in findings.items() if loc.startswith(str(tmp_path / "flipped.7z"))
    ]
    assert any(flipped), "a damaged packed stream is an error on the archive or its members"
    assert matched(findings) == {f"{tmp_path / 'good.7z'} > a.jpg", f"{tmp_path / 'good.7z'} > b.jpg"}


# --------------------------------------------------------------------------- RAR

# Three archives made by WinRAR, from the test suite of the rarfile package (test/files/):
# Copyright (c) 2005-2024 Marko Kreen <markokr@gmail.com>
# Permission to use, copy, modify, and/or distribute this software for any purpose with or without fee is
# hereby granted, provided that the above copyright notice and this permission notice appear in all copies.
# THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES WITH REGARD TO THIS SOFTWARE
# INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS. (ISC licence.)
RAR5_SOLID = (
    base64.b64decode(  # rar5-solid.rar: stest1.txt and stest2.txt, 2,048 bytes each, compressed, solid
        "UmFyIRoHAQAJ78hvCwEFBwQGAQGAgIAA3vVwchwCAroABIAQtoMCoua3xYAbAQpzdGVzdDEudHh0waw3REQj+iP2l/1iU1G+TJGB"
        "QQKMwQN5XL9Ho6otoDaT3aBYAEACANRQBHb2xH8y6p8ypcTM14PfABDoLYkcAgKNAASAELaDAqLmt8XAGwEKc3Rlc3QyLnR4dEUV"
        "CmABAAgD37f79vwdd1ZRAwUEAA=="
    )
)
RAR3_SOLID = base64.b64decode(  # rar3-solid.rar: the same two files in a RAR 3 solid archive
    "UmFyIRoHADvQcwgADQAAAAAAAAArNHSAkCwAXAAAAAAIAAADoua3xbBmzD4dMwoApIEAAHN0ZXN0MS50eHQAwBEMzP6MnrD+MYGr"
    "rLG7QHeoCmTWSzeDwQe8AeCFku77th0ACCAACIjpeAzSDAdhOkF4S7Nun1IK2sonQLrnC2SKYnH7uACRnlAv2FX/+sZY6+vE14h+"
    "VJaHH03s2RZ0kJAsAA4AAAAACAAAA6Lmt8WwZsw+HTMKAKSBAABzdGVzdDIudHh0AMCxIACIB+vyCmn6/JTe0MQ9ewBABwA="
)
RAR3_SUBDIRS = base64.b64decode(  # rar3-subdirs.rar: four small files in subfolders, and the folders
    "UmFyIRoHAM+QcwAADQAAAAAAAADiw3QgkDcABgAAAAYAAAADx6QEyTao9FAdMBIApIEAAHN1YlxkaXIyXGZpbGUyLnR4dACwfLUw"
    "ZmlsZTIK+lF0IJA/AAgAAAAIAAAAA30kt3FIqPRQHTAaAKSBAABzdWJcd2l0aCBzcGFjZVxsb25nIGZuLnR4dADwCEdMbG9uZyBm"
    "bgojwXQgklcABQAAAAUAAAADwYnsL+Co9FAdMDIApIEAAHN1YlzDvMi1xKnDtuG4i8OoXGZpbGUudHh0AALGAvw1KQEg9gse6FwA"
    "ZmlsZQAudHh0ALByoRVmaWxlChRcdCCQNwAGAAAABgAAAAME9yniMKj0UB0wEgCkgQAAc3ViXGRpcjFcZmlsZTEudHh0APAChIVm"
    "aWxlMQrRdXTgkC0AAAAAAAAAAAADAAAAADao9FAUMAgA7UEAAHN1YlxkaXIyALB/JjP75XTgkDMAAAAAAAAAAAADAAAAAEio9FAU"
    "MA4A7UEAAHN1Ylx3aXRoIHNwYWNlAPDLG06903TgkC4AAAAAAAAAAAADAAAAACSo9FAUMAkA7UEAAHN1YlxlbXB0eQDwcNkb8Ed0"
    "4JJDAAAAAAAAAAAAAwAAAADgqPRQFDAeAO1BAABzdWJcw7zItcSpw7bhuIvDqAACxgL8NSkBIPYLHugAsDR2F89rdOCQLQAAAAAA"
    "AAAAAAMAAAAAMKj0UBQwCADtQQAAc3ViXGRpcjEA8MVYh6xSdOCQKAAAAAAAAAAAAAMAAAAA1aj0UBQwAwDtQQAAc3ViALAO1STE"
    "PXsAQAcA"
)


@needs_libarchive
def test_real_rar_archives_are_read() -> None:
    solid = members(RAR, RAR5_SOLID)
    assert {n: (m.size, zlib.crc32(content(m))) for n, m in solid.items()} == {
        "stest1.txt": (2048, 0xC5B7E6A2),
        "stest2.txt": (2048, 0xC5B7E6A2),
    }
    subdirs = members(RAR, RAR3_SUBDIRS)
    assert {n: zlib.crc32(content(m)) for n, m in subdirs.items()} == {
        "sub/dir2/file2.txt": 0xC904A4C7,
        "sub/with space/long fn.txt": 0x71B7247D,
        "sub/üȵĩöḋè/file.txt": 0x2FEC89C1,
        "sub/dir1/file1.txt": 0xE229F704,
    }


@needs_libarchive
def test_a_rar4_solid_archive_is_read_up_to_what_libarchive_can_decode() -> None:
    listing = RAR.members(io.BytesIO(RAR3_SOLID))
    first = next(listing)
    assert (first.name, zlib.crc32(content(first))) == ("stest1.txt", 0xC5B7E6A2)
    with pytest.raises(ValueError, match="RAR solid archive support unavailable"):
        next(listing)


def _vint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _rar5_block(kind: int, fields: bytes, extra: bytes = b"", data: bytes | None = None) -> bytes:
    """One RAR 5 block: CRC32, size, type, flags, [extra size], [data size], fields, extra area, data."""
    flags = (1 if extra else 0) | (2 if data is not None else 0)
    head = _vint(kind) + _vint(flags) + (_vint(len(extra)) if extra else b"")
    head += (_vint(len(data)) if data is not None else b"") + fields + extra
    body = _vint(len(head)) + head
    return struct.pack("<I", zlib.crc32(body)) + body + (data or b"")


def rar5_stored(
    files: list[tuple[str, bytes]], encrypted: bool = False, names_encrypted: bool = False
) -> bytes:
    """A RAR 5 archive of uncompressed members, made as RARLAB's format description says."""
    out = b"Rar!\x1a\x07\x01\x00"
    if names_encrypted:  # archive encryption header: AES-256, KDF count 15, salt
        out += _rar5_block(4, _vint(0) + _vint(0) + bytes([15]) + os.urandom(16))
    out += _rar5_block(1, _vint(0))
    for name, data in files:
        raw = name.encode()
        fields = _vint(0x0004) + _vint(len(data)) + _vint(0o100644) + struct.pack("<I", zlib.crc32(data))
        fields += _vint(0) + _vint(1) + _vint(len(raw)) + raw  # stored, Unix, name
        record = _vint(0x01) + _vint(0) + _vint(0) + bytes([15]) + os.urandom(32)  # file encryption record
        extra = _vint(len(record)) + record if encrypted else b""
        out += _rar5_block(2, fields, extra, data)
    return out + _rar5_block(5, _vint(0))


@needs_libarchive
def test_the_signature_in_a_rar_archive_matches(tmp_path: Path) -> None:
    data = rar5_stored([("photos/sig.jpg", SIG), ("notes.txt", b"notes")])
    assert content_type(data[:8192]) == "application/x-rar-compressed"
    path = write(tmp_path / "case.rar", data)

    found = tree(path)

    assert list(found) == [str(path), f"{path} > photos/sig.jpg", f"{path} > notes.txt"]
    assert found[f"{path} > photos/sig.jpg"].md5 == md5(SIG)
    assert matched(scan(tmp_path)) == {f"{path} > photos/sig.jpg"}


@needs_libarchive
def test_encrypted_rar_archives_are_errors(tmp_path: Path) -> None:
    write(tmp_path / "files.rar", rar5_stored([("sig.jpg", SIG)], encrypted=True))
    write(tmp_path / "names.rar", rar5_stored([("sig.jpg", SIG)], names_encrypted=True))

    findings = scan(tmp_path)

    assert findings[str(tmp_path / "names.rar")].signals.errors == ["rar: Encryption is not supported"]
    locked = findings[f"{tmp_path / 'files.rar'} > sig.jpg"].signals
    assert locked.md5 is None and locked.errors == ["encrypted: not scanned"]
    assert not matched(findings)


# --------------------------------------------------------------------------- the command line


def test_vakta_scan_reports_the_signature_inside_archives(tmp_path: Path, run_cli: RunCli) -> None:
    folder = tmp_path / "evidence"
    tar = _tar([("a/b.jpg", SIG), ("a/c.txt", b"not a picture")])
    write(folder / "x.tar.gz", _gzip(tar, "x.tar"))
    write(
        folder / "docs.zip",
        zip_bytes(
            [
                (
                    "report.docx",
                    _document(None, [("[Content_Types].xml", b"<Types/>"), ("word/media/image1.jpeg", SIG)]),
                )
            ]
        ),
    )
    write(folder / "r.zip", zip_quine())
    write(folder / "broken.zip", b"PK\x03\x04" + os.urandom(200))

    result = run_cli("scan", folder)

    assert result.exit_code == 1, result.stderr
    records = {r.get("location", r["path"]): r for r in result.records()}
    gz = str(folder / "x.tar.gz")
    found = records[f"{gz} > x.tar > a/b.jpg"]
    assert found["inside"] == ["x.tar", "a/b.jpg"] and found["md5"] == md5(SIG)
    assert found["parent_md5"] == md5(tar)
    assert {m["list"] for m in found["matches"]} == {"vakta-test"}
    docx = records[f"{folder / 'docs.zip'} > report.docx > word/media/image1.jpeg"]
    assert docx["matches"]
    assert records[f"{folder / 'r.zip'} > r.zip"]["errors"] == [
        "contains itself (a recursive archive): not opened again"
    ]
    assert records[str(folder / "broken.zip")]["errors"][0].startswith(
        "zip: cannot read the ZIP central directory"
    )
    assert {loc for loc, r in records.items() if r["matches"]} == {
        f"{gz} > x.tar > a/b.jpg",
        f"{folder / 'docs.zip'} > report.docx > word/media/image1.jpeg",
    }
