"""OLE compound files: Thumbs.db thumbnails and Outlook .msg attachments are members.

The compound files are made by libgsf's ``gsf createole`` (Debian: libgsf-bin,
installed by .ci/run), an OLE writer independent of the olefile reader Vakta
uses; the streams inside follow Windows XP's and MS-OXMSG's layouts. Benign
pictures only.
"""

from __future__ import annotations

import io
import random
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from members import read_members
from PIL import Image

from vakta import testsignature
from vakta.containers import Limits, reader_for
from vakta.containers.ole import READER
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Matcher
from vakta.pipeline import Scanner
from vakta.signals.model import HashOptions
from vakta.signals.sniff import OLE_TYPE, content_type

pytestmark = pytest.mark.skipif(
    shutil.which("gsf") is None, reason="gsf (Debian: libgsf-bin) writes the test compound files"
)

SIG = testsignature.image_bytes()


def _jpeg(image: Image.Image, width: int = 96) -> bytes:
    image = image.convert("RGB")
    image.thumbnail((width, width))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _noise(seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 255, (72, 96, 3), dtype="uint8")
    return Image.fromarray(pixels)


def catalog(names: dict[int, str]) -> bytes:
    """Windows XP's Catalog stream: a 16-byte header, then number, FILETIME and name per thumbnail."""
    entries = b""
    for number, name in names.items():
        text = name.encode("utf-16-le") + b"\0\0"
        entries += struct.pack("<IIQ", 16 + len(text), number, 0x01D0_0000_0000_0000) + text
    return struct.pack("<HHIII", 16, 7, len(names), 96, 96) + entries


def thumbnail(number: int, picture: bytes, header: int = 12) -> bytes:
    return struct.pack("<III", header, number, len(picture)) + b"\0" * (header - 12) + picture


def compound(folder: Path, streams: dict[str, bytes]) -> bytes:
    """An OLE compound file holding ``streams`` (``a/b``: stream b in storage a), written by ``gsf createole``."""
    work = folder / "streams"
    work.mkdir(parents=True, exist_ok=True)
    for name, data in streams.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    out = folder / "out.db"
    top = sorted({name.split("/")[0] for name in streams})
    subprocess.run(["gsf", "createole", str(out), *top], cwd=work, check=True, capture_output=True)
    return out.read_bytes()


def members(data: bytes) -> dict[str, bytes | str]:
    return read_members(READER, data)


def test_xp_thumbnails_are_named_after_their_pictures(tmp_path: Path) -> None:
    sig, other = _jpeg(Image.open(io.BytesIO(SIG))), _jpeg(_noise(1))
    data = compound(
        tmp_path,
        {
            "Catalog": catalog({1: "holiday.jpg", 12: "other.png"}),
            "1": thumbnail(1, sig),
            "21": thumbnail(12, other, header=24),  # number 12, written backwards
        },
    )
    assert content_type(data[:8192]) == OLE_TYPE and reader_for(OLE_TYPE) is READER

    assert members(data) == {"holiday.jpg (thumbnail 1)": sig, "other.png (thumbnail 12)": other}


def test_network_folder_streams_and_headerless_ones(tmp_path: Path) -> None:
    png = io.BytesIO()
    _noise(2).save(png, "PNG")
    data = compound(
        tmp_path,
        {
            "256_0a1b2c3d4e5f6071": b"\x18\0\0\0" + b"\0" * 20 + png.getvalue(),
            "3": struct.pack("<III", 12, 3, 40) + b"not a picture at all" * 2,
        },
    )
    found = members(data)
    assert found["stream 256_0a1b2c3d4e5f6071"] == png.getvalue()
    assert (
        found["stream 3"] == b"not a picture at all" * 2
    )  # handed on after its header: a decode error later


def test_other_compound_files_have_no_members_and_damage_is_an_error(tmp_path: Path) -> None:
    other = compound(tmp_path / "a", {"WordDocument": b"x" * 5000, "SummaryInformation": b"y" * 100})
    assert members(other) == {}
    with pytest.raises(ValueError, match="damaged OLE compound file"):
        members(other[:1000])


def test_a_thumbnail_of_the_test_signature_is_found(tmp_path: Path) -> None:
    data = compound(
        tmp_path / "build",
        {
            "Catalog": catalog({1: "a.jpg", 2: "b.jpg"}),
            "1": thumbnail(1, _jpeg(_noise(3))),
            "2": thumbnail(2, _jpeg(Image.open(io.BytesIO(SIG)), 128)),
        },
    )
    stick = tmp_path / "stick" / "DCIM"
    stick.mkdir(parents=True)
    (stick / "Thumbs.db").write_bytes(data)
    scanner = Scanner(Matcher(ListIndex.build(testsignature.entry_rows())), HashOptions(), limits=Limits())

    findings = {f.signals.location: f for f in scanner.scan([str(tmp_path / "stick")])}

    assert [loc for loc, f in findings.items() if f.matched] == [
        f"{stick / 'Thumbs.db'} > b.jpg (thumbnail 2)"
    ]
    assert not any(f.signals.errors for f in findings.values())


# --------------------------------------------------------------------------- Outlook .msg

PROPS = "__properties_version1.0"


def _unicode(text: str) -> bytes:
    return text.encode("utf-16-le") + b"\0\0"


def attachment(n: int, data: bytes | None = None, **names: bytes) -> dict[str, bytes]:
    """The streams of attachment ``n``: its data, and name properties by tag (``p3707001F=...``)."""
    storage = f"__attach_version1.0_#{n:08X}"
    streams = {f"{storage}/{PROPS}": b"\0" * 8}
    if data is not None:
        streams[f"{storage}/__substg1.0_37010102"] = data
    streams.update({f"{storage}/__substg1.0_{tag[1:]}": value for tag, value in names.items()})
    return streams


def message(subject: str, *attachments: dict[str, bytes]) -> dict[str, bytes]:
    streams = {PROPS: b"\0" * 32, "__substg1.0_0037001F": _unicode(subject)}
    for streams_of_one in attachments:
        streams.update(streams_of_one)
    return streams


def test_msg_attachments_nested_messages_and_objects(tmp_path: Path) -> None:
    png = io.BytesIO()
    _noise(4).save(png, "PNG")
    notes = b"meeting notes " * 400
    inner = message("Fwd: photos", attachment(0, png.getvalue(), p3707001F=_unicode("b.png")))
    outer = message(
        "Holiday",
        attachment(0, SIG, p3707001F=_unicode("holiday.jpg"), p3704001F=_unicode("HOLIDAY.JPG")),
        attachment(1, notes, p3704001E=b"NOTES.TXT\0"),  # an 8-bit (ANSI) message's name
        {f"__attach_version1.0_#00000002/__substg1.0_3701000D/{k}": v for k, v in inner.items()},
        {"__attach_version1.0_#00000003/__substg1.0_3701000D/CONTENTS": b"an embedded chart" * 300},
        attachment(4, None, p3001001F=_unicode("link to share")),
    )
    data = compound(tmp_path, outer)
    assert content_type(data[:8192]) == OLE_TYPE

    found = members(data)

    assert found == {
        "holiday.jpg": SIG,
        "NOTES.TXT": notes,
        "Fwd: photos (message) > b.png": png.getvalue(),
        "attachment 3": "embedded OLE object (attach method 6): not opened",
        "link to share": "attachment without data (a link, or removed)",
    }


def test_a_listed_picture_attached_to_a_msg_is_found(tmp_path: Path) -> None:
    data = compound(
        tmp_path / "build", message("Report", attachment(0, SIG, p3707001F=_unicode("scan 001.jpg")))
    )
    path = tmp_path / "export" / "mail.msg"
    path.parent.mkdir()
    path.write_bytes(data)
    scanner = Scanner(Matcher(ListIndex.build(testsignature.entry_rows())), HashOptions(), limits=Limits())

    findings = {f.signals.location: f for f in scanner.scan([str(path.parent)])}

    assert [loc for loc, f in findings.items() if f.matched] == [f"{path} > scan 001.jpg"]
    assert {m.signal for m in findings[f"{path} > scan 001.jpg"].matches} >= {"md5", "sha256"}


@pytest.mark.parametrize("kind", ["thumbs", "msg"])
def test_mutated_compound_files_give_members_or_a_clear_error(tmp_path: Path, kind: str) -> None:
    """Bytes flipped in the header, allocation tables and directory: never another exception, never slow."""
    if kind == "thumbs":
        streams = {"Catalog": catalog({1: "a.jpg"}), "1": thumbnail(1, _jpeg(_noise(1))), "2": b"z" * 9000}
    else:
        inner = message("Fwd", attachment(0, b"p" * 5000, p3707001F=_unicode("b.png")))
        streams = message(
            "H",
            attachment(0, SIG, p3707001F=_unicode("h.jpg")),
            {f"__attach_version1.0_#00000002/__substg1.0_3701000D/{k}": v for k, v in inner.items()},
        )
    data = compound(tmp_path, streams)
    rng = random.Random(7)
    outcomes = set()
    for _ in range(600):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(512) if rng.random() < 0.5 else rng.randrange(len(data) - 2048, len(data))
            mutated[at] = rng.randrange(256)
        started = time.monotonic()
        try:
            members(bytes(mutated))
            outcomes.add("read")
        except ValueError as exc:
            assert str(exc).startswith("damaged OLE compound file: "), exc
            outcomes.add("error")
        assert time.monotonic() - started < 2
    assert outcomes == {"read", "error"}
