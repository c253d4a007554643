"""A JPEG's EXIF thumbnail and Multi-Picture Format pictures are members, byte for byte.

The EXIF blocks are written here by hand (a TIFF header, IFD0, IFD1 naming the
thumbnail, the thumbnail), independently of Pillow's EXIF reader that the
reader uses, and stored in the picture by Pillow's JPEG writer. The MPF files
are put together by hand too (an ``APP2`` index after the first picture's
``APP0``, the further pictures appended), and also written by Pillow's MPO writer.
"""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import numpy as np
import pytest
from members import read_members
from PIL import Image

from vakta import testsignature
from vakta.cache import SignalCache
from vakta.containers import Limits, reader_for, readers_fingerprint
from vakta.containers.jpeg import READER
from vakta.icap.filter import Examiner, web_limits
from vakta.items import Item
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Matcher
from vakta.pipeline import Scanner
from vakta.signals.model import HashOptions
from vakta.signals.sniff import content_type

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "originals"
SIG = testsignature.image_bytes()


def _jpeg(pixels: np.ndarray, exif: bytes | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90, **({"exif": exif} if exif is not None else {}))
    return out.getvalue()


def _noise(seed: int, shape: tuple[int, int] = (240, 320)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (*shape, 3), dtype=np.uint8)


def _thumbnail_of(picture: bytes, size: tuple[int, int] = (160, 120)) -> bytes:
    im = Image.open(io.BytesIO(picture)).convert("RGB")
    im.thumbnail(size)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=85)
    return out.getvalue()


def exif_block(
    thumbnail: bytes, *, offset: int | None = None, length: int | None = None, big: bool = False
) -> bytes:
    """``Exif\\0\\0`` + a TIFF structure whose IFD1 names ``thumbnail`` (placed after it), as cameras write it."""
    order = ">" if big else "<"

    def ifd(entries: list[tuple[int, int, int, int]], next_ifd: int) -> bytes:
        out = struct.pack(order + "H", len(entries))
        for tag, kind, count, value in entries:
            packed = struct.pack(order + "HHI", tag, kind, count)
            # A SHORT sits left-justified in the 4-byte value field; a LONG fills it.
            out += packed + (
                struct.pack(order + "HH", value, 0) if kind == 3 else struct.pack(order + "I", value)
            )
        return out + struct.pack(order + "I", next_ifd)

    ifd0_at = 8
    ifd0 = ifd([(0x0112, 3, 1, 1)], 0)  # Orientation, then IFD1 (offset patched in below)
    ifd1_at = ifd0_at + len(ifd0)
    ifd1_size = 2 + 3 * 12 + 4
    data_at = ifd1_at + ifd1_size
    ifd0 = ifd([(0x0112, 3, 1, 1)], ifd1_at)
    ifd1 = ifd(
        [
            (0x0103, 3, 1, 6),  # Compression: JPEG
            (0x0201, 4, 1, data_at if offset is None else offset),
            (0x0202, 4, 1, len(thumbnail) if length is None else length),
        ],
        0,
    )
    header = (b"MM\x00\x2a" if big else b"II\x2a\x00") + struct.pack(order + "I", ifd0_at)
    return b"Exif\x00\x00" + header + ifd0 + ifd1 + thumbnail


def members(data: bytes) -> dict[str, bytes | str]:
    return read_members(READER, data)


@pytest.mark.parametrize("big", [False, True])
def test_the_thumbnail_is_a_member_byte_for_byte(big: bool) -> None:
    thumbnail = _thumbnail_of(SIG)
    picture = _jpeg(_noise(1), exif_block(thumbnail, big=big))
    assert content_type(picture[:8192]) == "image/jpeg" and reader_for("image/jpeg") is READER
    assert members(picture) == {"EXIF thumbnail.jpg": thumbnail}


def test_pictures_without_a_thumbnail_have_no_members() -> None:
    assert members(_jpeg(_noise(2))) == {}  # no EXIF at all
    tags = Image.Exif()
    tags[0x010F] = "Camera maker"  # IFD0 only
    assert members(_jpeg(_noise(3), tags.tobytes())) == {}
    assert (
        members(b"\xff\xd8\xff\xe0" + b"\x00" * 40) == {}
    )  # a header Pillow cannot read: the hasher reports it


def test_a_thumbnail_entry_outside_the_exif_data_is_an_error() -> None:
    thumbnail = _thumbnail_of(SIG)
    past = members(_jpeg(_noise(4), exif_block(thumbnail, length=len(thumbnail) + 10_000)))
    assert list(past) == ["EXIF thumbnail"] and "run past" in str(past["EXIF thumbnail"])
    empty = members(_jpeg(_noise(4), exif_block(thumbnail, length=0)))
    assert "damaged EXIF thumbnail entry" in str(empty["EXIF thumbnail"])


def test_damaged_exif_gives_members_or_an_error_never_an_exception() -> None:
    block = exif_block(_thumbnail_of(SIG))
    rng = random.Random(7)
    for _ in range(300):
        damaged = bytearray(block)
        for _ in range(rng.randint(1, 8)):
            damaged[rng.randrange(6, 60)] = rng.randrange(256)  # the TIFF header and directories
        for name, found in members(_jpeg(_noise(5, (32, 32)), bytes(damaged))).items():
            assert name.startswith("EXIF thumbnail")
            assert isinstance(found, bytes) or "EXIF thumbnail" in found


def test_a_listed_picture_kept_only_in_the_thumbnail_is_found(tmp_path: Path) -> None:
    """The picture was painted over, the thumbnail still shows what it was: the member matches."""
    (tmp_path / "edited.jpg").write_bytes(_jpeg(_noise(6), exif_block(_thumbnail_of(SIG))))
    (tmp_path / "other.jpg").write_bytes(_jpeg(_noise(7), exif_block(_thumbnail_of(_jpeg(_noise(8))))))
    scanner = Scanner(Matcher(ListIndex.build(testsignature.entry_rows())), HashOptions(), limits=Limits())

    findings = {f.signals.location: f for f in scanner.scan([str(tmp_path)])}

    hit = f"{tmp_path / 'edited.jpg'} > EXIF thumbnail.jpg"
    assert [loc for loc, f in findings.items() if f.matched] == [hit]
    assert [m.signal for m in findings[hit].matches] == ["pdq"]  # a resized copy: PDQ, not the digests
    assert len(findings) == 4 and not any(f.signals.errors for f in findings.values())


def _cached_scan(cache: SignalCache, target: Path) -> dict[str, tuple[bool, bool]]:
    """Each finding's location: (matched, taken from the cache)."""
    scanner = Scanner(Matcher(ListIndex.build(testsignature.entry_rows())), cache=cache, limits=Limits())
    return {f.signals.location: (f.matched, f.signals.cached) for f in scanner.scan([str(target)])}


def _count_opens(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The paths of the files opened from now on."""
    opened: list[bytes] = []
    genuine = Item.open

    def counting_open(item: Item) -> object:
        opened.append(item.path)
        return genuine(item)

    monkeypatch.setattr(Item, "open", counting_open)
    return opened


def test_a_rescan_takes_the_picture_and_its_thumbnail_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent's rescans of a photo folder: no picture is opened again, the thumbnail's match stays."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "edited.jpg").write_bytes(_jpeg(_noise(10), exif_block(_thumbnail_of(SIG))))
    (folder / "plain.jpg").write_bytes(_jpeg(_noise(11)))
    cache = SignalCache(tmp_path / "cache.sqlite", HashOptions().fingerprint())
    first = _cached_scan(cache, folder)
    opened = _count_opens(monkeypatch)
    second = _cached_scan(cache, folder)
    assert opened == []
    hit = f"{folder / 'edited.jpg'} > EXIF thumbnail.jpg"
    assert first[hit] == (True, False) and second[hit] == (True, True)
    assert {k: m for k, (m, _) in first.items()} == {k: m for k, (m, _) in second.items()}
    assert len(second) == 3 and all(cached for _, cached in second.values())


@pytest.mark.parametrize("old", ["without members", "members of an older reader"])
def test_an_entry_of_an_older_vakta_is_rewritten_with_the_members_found_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str
) -> None:
    """A cache from an older Vakta: the picture is opened once for its thumbnail, then never again."""
    photo = tmp_path / "edited.jpg"
    photo.write_bytes(_jpeg(_noise(12), exif_block(_thumbnail_of(SIG))))
    cache = SignalCache(tmp_path / "cache.sqlite", HashOptions().fingerprint())
    _cached_scan(cache, photo)
    (item,) = Scanner(Matcher(ListIndex.build([]))).items([str(photo)])
    kept = cache.get(item.cache_key)
    assert kept is not None and kept.members is not None and kept.readers == readers_fingerprint()
    if old == "without members":
        cache.put(item.cache_key, kept.signals)  # as a Vakta that kept no members wrote it
    else:
        cache.put(item.cache_key, kept.signals, [], kept.readers)  # its reader found no thumbnail
        monkeypatch.setattr(READER, "version", 2, raising=False)  # this one does
    cache.flush()
    opened = _count_opens(monkeypatch)
    hit = f"{photo} > EXIF thumbnail.jpg"
    assert _cached_scan(cache, photo)[hit] == (True, False) and len(opened) == 1
    renewed = cache.get(item.cache_key)
    assert renewed is not None and [m.inside for m in renewed.members or ()] == [["EXIF thumbnail.jpg"]]
    assert renewed.readers == readers_fingerprint() and "jpeg/" in renewed.readers
    assert _cached_scan(cache, photo)[hit] == (True, True) and len(opened) == 1


def test_the_web_filter_checks_the_thumbnail_too() -> None:
    examine = Examiner(
        Matcher(ListIndex.build(testsignature.entry_rows())), HashOptions(), None, web_limits(30.0)
    )
    found = examine(_jpeg(_noise(9), exif_block(_thumbnail_of(SIG))), "http://example.test/a.jpg")
    assert [f.signals.location for f in found if f.matched] == [
        "http://example.test/a.jpg > EXIF thumbnail.jpg"
    ]


def test_camera_and_editor_thumbnails_of_the_corpus() -> None:
    """Real EXIF blocks (KDE, MATE, OpenCV sample photos): every thumbnail read is a JPEG, no errors."""
    if not CORPUS.is_dir():
        pytest.skip(f"{CORPUS} is absent: the benign corpus lives beside the project (../shared)")
    thumbnails = 0
    for path in sorted(CORPUS.glob("*.jpg")):
        for name, found in members(path.read_bytes()).items():
            assert name == "EXIF thumbnail.jpg" and isinstance(found, bytes), (path, found)
            assert Image.open(io.BytesIO(found)).format == "JPEG"
            thumbnails += 1
    assert thumbnails >= 10


def mpf_file(primary: bytes, *more: bytes, big: bool = False, offsets: list[int] | None = None) -> bytes:
    """``primary`` with an MPF index (``APP2``) listing it and ``more``, which are appended after it."""
    order = ">" if big else "<"
    app0_end = 4 + struct.unpack(">H", primary[4:6])[0]  # SOI, then APP0 (JFIF) as Pillow writes it
    count = 1 + len(more)
    ifd_at = 8
    entries_at = ifd_at + 2 + 3 * 12 + 4
    index_size = entries_at + 16 * count
    segment_size = 2 + 4 + index_size  # the length field, "MPF\0", the index
    first_size = len(primary) + 2 + segment_size
    base = app0_end + 2 + 2 + 4  # the index's TIFF header: marker, length and "MPF\0" after APP0
    starts, at = [], first_size
    for picture in more:
        starts.append(at - base)
        at += len(picture)
    starts = offsets if offsets is not None else starts
    entries = struct.pack(order + "IIIHH", 0x20030000, first_size, 0, 0, 0)
    for picture, start in zip(more, starts, strict=True):
        entries += struct.pack(order + "IIIHH", 0x00020002, len(picture), start, 0, 0)
    ifd = struct.pack(order + "H", 3)
    ifd += struct.pack(order + "HHI", 0xB000, 7, 4) + b"0100"  # MPFVersion
    ifd += struct.pack(order + "HHII", 0xB001, 4, 1, count)  # NumberOfImages
    ifd += struct.pack(order + "HHII", 0xB002, 7, 16 * count, entries_at)  # MPEntry
    ifd += struct.pack(order + "I", 0)
    header = (b"MM\x00\x2a" if big else b"II\x2a\x00") + struct.pack(order + "I", ifd_at)
    index = header + ifd + entries
    assert len(index) == index_size
    segment = b"\xff\xe2" + struct.pack(">H", segment_size) + b"MPF\x00" + index
    return primary[:app0_end] + segment + primary[app0_end:] + b"".join(more)


@pytest.mark.parametrize("big", [False, True])
def test_the_further_pictures_of_a_multi_picture_file_are_members_byte_for_byte(big: bool) -> None:
    second, third = _jpeg(_noise(20, (60, 80))), SIG
    found = members(mpf_file(_jpeg(_noise(21)), second, third, big=big))
    assert found == {"MPF picture 2.jpg": second, "MPF picture 3.jpg": third}


def test_pillows_mpo_writer_is_read_alike() -> None:
    """Another writer's files: each member decodes to the frame Pillow's MPO reader gives."""
    frames = [Image.fromarray(_noise(n, (48 + 8 * n, 64))) for n in range(3)]
    out = io.BytesIO()
    frames[0].save(out, "MPO", save_all=True, append_images=frames[1:])
    found = members(out.getvalue())
    assert list(found) == ["MPF picture 2.jpg", "MPF picture 3.jpg"]
    with Image.open(io.BytesIO(out.getvalue())) as mpo:
        for number, name in enumerate(found, 1):
            mpo.seek(number)
            member = found[name]
            assert isinstance(member, bytes)
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(member))), np.asarray(mpo.convert("RGB")))


def test_the_thumbnail_and_the_further_pictures_together() -> None:
    thumbnail, second = _thumbnail_of(SIG), _jpeg(_noise(22, (30, 40)))
    found = members(mpf_file(_jpeg(_noise(23), exif_block(thumbnail)), second))
    assert found == {"EXIF thumbnail.jpg": thumbnail, "MPF picture 2.jpg": second}


def test_a_multi_picture_entry_outside_the_file_is_an_error() -> None:
    second = _jpeg(_noise(24, (30, 40)))
    primary = _jpeg(_noise(25))
    past = members(mpf_file(primary, second, offsets=[10_000_000]))
    assert list(past) == ["MPF picture 2"] and "damaged Multi-Picture entry" in str(past["MPF picture 2"])
    zero = members(mpf_file(primary, second, offsets=[0]))
    assert list(zero) == ["MPF picture 2"] and "file offset" in str(zero["MPF picture 2"])


def test_a_multi_picture_size_past_the_end_is_cut_at_the_end() -> None:
    second = _jpeg(_noise(29, (30, 40)))
    data = mpf_file(_jpeg(_noise(30)), second)
    entry = data.index(struct.pack("<I", len(second)))  # the second picture's size in its entry
    longer = data[:entry] + struct.pack("<I", len(second) + 5000) + data[entry + 4 :]
    assert members(longer) == {"MPF picture 2.jpg": second}


def test_a_damaged_multi_picture_index_gives_members_or_an_error_never_an_exception() -> None:
    data = mpf_file(_jpeg(_noise(26, (32, 32))), _jpeg(_noise(27, (16, 16))))
    at = data.index(b"MPF\x00") + 4
    rng = random.Random(8)
    for _ in range(300):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            damaged[at + rng.randrange(0, 112)] = rng.randrange(256)  # the TIFF header, the IFD, the entries
        for name, found in members(bytes(damaged)).items():
            assert name.startswith("MPF picture")
            assert isinstance(found, bytes) or "Multi-Picture" in found


def test_a_listed_picture_hidden_after_the_first_is_found(tmp_path: Path) -> None:
    """Viewers show only the first picture; the listed one appended behind it matches by its digests."""
    (tmp_path / "holiday.jpg").write_bytes(mpf_file(_jpeg(_noise(28)), SIG))
    scanner = Scanner(Matcher(ListIndex.build(testsignature.entry_rows())), HashOptions(), limits=Limits())
    findings = {f.signals.location: f for f in scanner.scan([str(tmp_path)])}
    hit = f"{tmp_path / 'holiday.jpg'} > MPF picture 2.jpg"
    assert [loc for loc, f in findings.items() if f.matched] == [hit]
    assert {m.signal for m in findings[hit].matches} >= {"md5", "sha1", "sha256"}
