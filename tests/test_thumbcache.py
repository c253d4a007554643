"""Windows thumbnail caches (thumbcache_*.db): every cached thumbnail is a member, found by PDQ.

The caches are built here in the layout of each Windows version (Vista, 7, 8-11),
holding benign pictures only: the built-in test signature and generated images.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest
from members import read_members
from PIL import Image

from vakta import testsignature
from vakta.containers import Limits, reader_for
from vakta.containers.thumbcache import READER
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Matcher
from vakta.pipeline import Scanner
from vakta.signals.model import HashOptions
from vakta.signals.sniff import THUMBCACHE_TYPE, content_type

SIG = testsignature.image_bytes()
VISTA, WINDOWS_7, WINDOWS_10 = 20, 21, 32


def _picture(fmt: str, size: tuple[int, int] = (96, 72), seed: int = 1) -> bytes:
    rng = __import__("numpy").random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype="uint8")
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


def _thumbnail_of_signature(width: int) -> bytes:
    """The test picture as Explorer would cache it: scaled down and saved again as JPEG."""
    image = Image.open(io.BytesIO(SIG)).convert("RGB")
    image.thumbnail((width, width))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def entry(version: int, data: bytes, padding: int = 0, identifier: bool = True) -> bytes:
    """One cache entry in ``version``'s layout; the identifier is the entry hash in hex, as Windows writes it."""
    key = os.urandom(8)
    ident = key[::-1].hex().encode("utf-16-le") if identifier else b""
    sizes = struct.pack("<III", len(ident), padding, len(data))
    checksums = os.urandom(16)
    if version == VISTA:
        fields = "jpg\0".encode("utf-16-le") + sizes + b"\0" * 4 + checksums
    elif version == WINDOWS_7:
        fields = sizes + b"\0" * 4 + checksums
    else:
        fields = sizes + struct.pack("<III", 256, 192, 0) + checksums
    body = fields + ident + b"\0" * padding + data
    return b"CMMM" + struct.pack("<I", 16 + len(body)) + key + body


def cache(version: int, entries: list[bytes], slack: bytes = b"") -> bytes:
    """A cache file: its 24-byte header (first entry at 24) and the entries, ``slack`` before each."""
    first = 24 + len(slack)
    if version == VISTA:
        header = struct.pack("<4sIIIII", b"CMMM", version, 2, first, 0, len(entries))
    else:
        header = struct.pack("<4sIIIII", b"CMMM", version, 2, 0, first, len(entries))
    return header + b"".join(slack + e for e in entries)


def members(data: bytes) -> dict[str, bytes | str]:
    return read_members(READER, data)


@pytest.mark.parametrize("version", [VISTA, WINDOWS_7, WINDOWS_10])
def test_every_thumbnail_is_a_member_in_each_windows_layout(version: int) -> None:
    png, bmp = _picture("PNG"), _picture("BMP", seed=2)
    data = cache(
        version,
        [entry(version, SIG, padding=8), entry(version, b""), entry(version, png), entry(version, bmp)],
    )
    assert content_type(data[:8192]) == THUMBCACHE_TYPE and reader_for(THUMBCACHE_TYPE) is READER

    found = members(data)

    assert sorted(found.values(), key=len) == sorted([SIG, png, bmp], key=len)  # the empty slot is no member
    assert sorted(name[-4:] for name in found) == [".bmp", ".jpg", ".png"]
    assert all(len(name) == 16 + 4 and int(name[:16], 16) >= 0 for name in found)


def test_a_thumbnail_without_identifier_is_named_by_its_entry_hash() -> None:
    data = cache(WINDOWS_10, [entry(WINDOWS_10, SIG, identifier=False)])
    (name,) = members(data)
    assert name.endswith(".jpg") and len(name) == 20


def test_damage_slack_and_truncation_cost_only_their_entry() -> None:
    png = _picture("PNG")
    first, last, damaged = entry(WINDOWS_10, SIG), entry(WINDOWS_10, SIG), bytearray(entry(WINDOWS_10, png))
    damaged[4:8] = struct.pack("<I", 60)  # its size no longer holds its parts
    slack = os.urandom(333).replace(b"CMMM", b"XXXX")
    data = cache(WINDOWS_10, [first, bytes(damaged), last], slack=slack)
    cut = cache(WINDOWS_10, [first, entry(WINDOWS_10, png)])[:-100]

    found, truncated = members(data), members(cut)

    errors = [v for v in found.values() if isinstance(v, str)]
    assert [v for v in found.values() if isinstance(v, bytes)] == [SIG, SIG]
    assert len(errors) == 1 and errors[0].startswith("damaged thumbnail cache entry: its parts")
    assert next(iter(truncated.values())) == SIG
    (error,) = [v for v in truncated.values() if isinstance(v, str)]
    assert error.endswith("run past the end of the file (truncated)")


def test_a_cached_thumbnail_of_the_test_signature_is_found(tmp_path: Path) -> None:
    """What the cache holds is a smaller, re-encoded copy: PDQ finds it, at its place in the cache."""
    thumbnail = _thumbnail_of_signature(256)
    path = tmp_path / "Users/x/AppData/Local/Microsoft/Windows/Explorer/thumbcache_256.db"
    path.parent.mkdir(parents=True)
    path.write_bytes(cache(WINDOWS_10, [entry(WINDOWS_10, _picture("JPEG")), entry(WINDOWS_10, thumbnail)]))
    scanner = Scanner(Matcher(ListIndex.build(testsignature.entry_rows())), HashOptions(), limits=Limits())

    findings = {f.signals.location: f for f in scanner.scan([str(tmp_path)])}

    hits = [loc for loc, f in findings.items() if f.matched]
    assert len(hits) == 1 and hits[0].startswith(f"{path} > ") and hits[0].endswith(".jpg"), hits
    assert [m.signal for m in findings[hits[0]].matches] == ["pdq"]
    assert len(findings) == 3 and not any(f.signals.errors for f in findings.values())


def test_a_flood_of_damaged_entries_ends_in_one_error() -> None:
    """Garbage holding the entry signature every few bytes: 100 entry errors, then one on the file."""
    data = cache(WINDOWS_10, [entry(WINDOWS_10, SIG)]) + b"CMMM\0\0\0\0" * 10_000
    found = []
    with pytest.raises(ValueError, match="more than 100 damaged entries in a row"):
        for member in READER.members(io.BytesIO(data)):
            found.append(member)
    assert found[0].open is not None and len(found) == 1 + 100
