"""PDF, EML and MBOX containers: members and their names, location chains, the test signature
found through them (also by ``vakta scan``), mail sniffing, and hostile files.

Every document is built here from generated pictures and the benign test-signature image.
"""

from __future__ import annotations

import hashlib
import io
import mailbox
import os
import time
import tracemalloc
import zlib
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import img2pdf
import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter

from vakta import testsignature
from vakta.containers import ContainerReader, Limits, mail, pdf
from vakta.containers.mail import EML_READER, MBOX_READER
from vakta.containers.pdf import READER as PDF_READER
from vakta.items import Item
from vakta.pipeline import hash_tree
from vakta.signals.model import HashOptions, Signals
from vakta.signals.sniff import content_type

if TYPE_CHECKING:
    from conftest import ImageFactory, RunCli

OPTIONS = HashOptions(extra_queries=False)
SIGNATURE = testsignature.image_bytes()
SIGNATURE_MD5 = hashlib.md5(SIGNATURE).hexdigest()
MIB = 1 << 20
GIB = 1 << 30
#: Address-space cap for subprocess scans of hostile documents (a plain scan needs ~200 MB).
MEMORY_LIMIT = 1 * GIB


# --------------------------------------------------------------------------- helpers


def members(reader: ContainerReader, data: bytes) -> dict[str, bytes | str]:
    """Each member's bytes by name, or its error text; names must be unique."""
    out: dict[str, bytes | str] = {}
    container = io.BytesIO(data)
    for member in reader.members(container):
        assert member.name not in out, member.name
        if member.error or member.open is None:
            out[member.name] = member.error or "no opener"
            continue
        with member.open() as stream:
            out[member.name] = stream.read()
        assert member.size == len(out[member.name])
    assert not container.closed  # the scan owns it
    return out


def tree(path: Path) -> dict[str, Signals]:
    """A file's signals and its members', keyed on the location inside it ("" for the file)."""
    signals = hash_tree(Item(path=os.fsencode(path)), OPTIONS, None, Limits())
    out = {" > ".join(s.inside): s for s in signals}
    assert len(out) == len(signals), [s.location for s in signals]
    return out


def pixels(data: bytes | str) -> bytes:
    assert isinstance(data, bytes), data  # not an error member
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB").tobytes()


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **params)
    return out.getvalue()


def md5(data: bytes | str) -> str:
    assert isinstance(data, bytes), data
    return hashlib.md5(data).hexdigest()


class PdfBuilder:
    """A minimal PDF writer, every object spelled out, so that damaged and hostile files are easy to make.

    Object 1 is the catalog and object 2 the page tree; ``build`` writes them last.
    """

    def __init__(self) -> None:
        self.objects: list[bytes] = [b"", b""]
        self.pages: list[int] = []
        self.catalog = b""

    def add(self, body: bytes) -> int:
        self.objects.append(body)
        return len(self.objects)

    def stream(self, data: bytes, entries: bytes = b"") -> int:
        return self.add(b"<< %s /Length %d >>\nstream\n%s\nendstream" % (entries, len(data), data))

    def flate_image(self, im: Image.Image) -> int:
        rgb = im.convert("RGB")
        return self.stream(zlib.compress(rgb.tobytes()), image_entries(*rgb.size, b"/FlateDecode"))

    def jpeg_image(self, jpeg: bytes) -> int:
        with Image.open(io.BytesIO(jpeg)) as im:
            size = im.size
        return self.stream(jpeg, image_entries(*size, b"/DCTDecode"))

    def form(self, xobjects: dict[str, int]) -> int:
        resources = b"<< /XObject %s >>" % refs(xobjects)
        return self.stream(b"", b"/Type /XObject /Subtype /Form /BBox [0 0 100 100] /Resources " + resources)

    def page(self, xobjects: dict[str, int], annotations: tuple[int, ...] = ()) -> int:
        annots = b" ".join(b"%d 0 R" % a for a in annotations)
        body = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Resources << /XObject %s >> /Annots [%s] >>"
        number = self.add(body % (refs(xobjects), annots))
        self.pages.append(number)
        return number

    def file_spec(self, name: bytes, data: bytes) -> int:
        stream = self.stream(zlib.compress(data), b"/Type /EmbeddedFile /Filter /FlateDecode")
        return self.add(b"<< /Type /Filespec /F (%s) /UF (%s) /EF << /F %d 0 R >> >>" % (name, name, stream))

    def attach(self, specs: dict[bytes, int]) -> None:
        """An /EmbeddedFiles name tree, one leaf under a root with /Kids (as large trees are)."""
        pairs = b" ".join(b"(%s) %d 0 R" % (k, v) for k, v in sorted(specs.items()))
        leaf = self.add(b"<< /Names [%s] /Limits [(a) (zzz)] >>" % pairs)
        self.catalog = b"/Names << /EmbeddedFiles << /Kids [%d 0 R] >> >>" % leaf

    def build(self, trailer: bytes = b"") -> bytes:
        kids = b" ".join(b"%d 0 R" % p for p in self.pages)
        self.objects[0] = b"<< /Type /Catalog /Pages 2 0 R %s >>" % self.catalog
        self.objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(self.pages))
        return write_pdf(self.objects, trailer)


def write_pdf(objects: list[bytes], trailer: bytes = b"") -> bytes:
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s >>\n" % (len(objects) + 1, trailer)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def image_entries(width: int, height: int, filters: bytes) -> bytes:
    return (
        b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
        b"/BitsPerComponent 8 /Filter %s" % (width, height, filters)
    )


def refs(named: dict[str, int]) -> bytes:
    return b"<< %s >>" % b" ".join(b"/%s %d 0 R" % (k.encode(), v) for k, v in named.items())


def zeros_deflated(size: int) -> bytes:
    """``size`` zero bytes, deflated in pieces (a stream that inflates far beyond its size)."""
    packer = zlib.compressobj(9)
    block = bytes(16 * MIB)
    parts = [packer.compress(block[: min(len(block), size - done)]) for done in range(0, size, len(block))]
    return b"".join(parts) + packer.flush()


# --------------------------------------------------------------------------- PDF: members


def test_a_jpeg_in_a_pdf_is_given_out_as_the_original_file(images: ImageFactory) -> None:
    png = encode(images.pattern(3), "PNG")
    document = img2pdf.convert([SIGNATURE, png])

    found = members(PDF_READER, document)

    assert list(found) == ["page 1 / Im0.jpg", "page 2 / Im0.png"]
    assert found["page 1 / Im0.jpg"] == SIGNATURE  # MD5/SHA-1 of the original picture still match
    picture = found["page 2 / Im0.png"]
    assert isinstance(picture, bytes) and picture.startswith(b"\x89PNG")
    assert pixels(picture) == pixels(png)  # lossless


@pytest.mark.parametrize("mode", ["RGB", "L", "1", "P", "I;16"])
def test_lossless_pictures_come_out_pixel_for_pixel(mode: str, images: ImageFactory) -> None:
    # img2pdf stores PNG pictures deflated with PNG predictors (handed on as a PNG around the
    # stored data) and palette pictures as /Indexed (decoded by pypdf).
    picture = images.pattern(5, (97, 61)).convert("L" if mode == "I;16" else mode)
    if mode == "I;16":
        picture = Image.fromarray(np.asarray(picture).astype(np.uint16) * 257)
    (found,) = members(PDF_READER, img2pdf.convert(encode(picture, "PNG"))).values()
    assert isinstance(found, bytes)
    with Image.open(io.BytesIO(found)) as decoded:
        assert np.array_equal(np.asarray(decoded.convert("RGB")), np.asarray(picture.convert("RGB")))
        if mode == "I;16":
            assert np.array_equal(np.asarray(decoded), np.asarray(picture))


def test_pictures_in_forms_and_stamps_and_attached_files_are_found_once(images: ImageFactory) -> None:
    pdf_ = PdfBuilder()
    a = pdf_.flate_image(images.pattern(1, (64, 48)))
    b = pdf_.jpeg_image(encode(images.pattern(2, (80, 60)), "JPEG", quality=90))
    c = pdf_.flate_image(images.gradient((40, 30)))
    d = pdf_.flate_image(images.noise(4, (20, 20)))
    inner = pdf_.form({"Im3": c})
    outer = pdf_.form({"Im2": b, "Fm2": inner, "Fm1": 0})  # the form also draws itself: a loop
    pdf_.objects[outer - 1] = pdf_.objects[outer - 1].replace(b"/Fm1 0 0 R", b"/Fm1 %d 0 R" % outer)
    stamp = pdf_.form({"Im4": d})
    notes = pdf_.file_spec(b"notes.txt", b"plain words\n")
    stamp_annotation = pdf_.add(
        b"<< /Type /Annot /Subtype /Stamp /Rect [0 0 9 9] /AP << /N %d 0 R >> >>" % stamp
    )
    file_annotation = pdf_.add(
        b"<< /Type /Annot /Subtype /FileAttachment /Rect [0 0 9 9] /FS %d 0 R >>" % notes
    )
    pdf_.page({"Im1": a, "Fm1": outer}, (stamp_annotation, file_annotation))
    pdf_.page({"Im1": a, "Fm1": outer, "Other": b}, (stamp_annotation,))  # nothing new
    pdf_.attach({b"sig.jpg": pdf_.file_spec(b"sig.jpg", SIGNATURE), b"notes.txt": notes})

    found = members(PDF_READER, pdf_.build())

    assert list(found) == [
        "page 1 / Im1.png",
        "page 1 / Fm1 / Im2.jpg",
        "page 1 / Fm1 / Fm2 / Im3.png",
        "page 1 / annotation 1 / Im4.png",
        "page 1 / annotation 2 / notes.txt",
        "attachment / sig.jpg",
    ]
    assert pixels(found["page 1 / Im1.png"]) == images.pattern(1, (64, 48)).tobytes()
    assert pixels(found["page 1 / Fm1 / Fm2 / Im3.png"]) == images.gradient((40, 30)).tobytes()
    assert found["page 1 / annotation 2 / notes.txt"] == b"plain words\n"
    assert found["attachment / sig.jpg"] == SIGNATURE


def test_pdf_location_chain_and_nested_pdf_in_the_scan(tmp_path: Path) -> None:
    nested = PdfBuilder()
    nested.attach({b"inner.pdf": nested.file_spec(b"inner.pdf", img2pdf.convert(SIGNATURE))})
    path = tmp_path / "outer.pdf"
    path.write_bytes(nested.build())

    found = tree(path)

    assert list(found) == ["", "attachment / inner.pdf", "attachment / inner.pdf > page 1 / Im0.jpg"]
    picture = found["attachment / inner.pdf > page 1 / Im0.jpg"]
    assert picture.location == f"{path} > attachment / inner.pdf > page 1 / Im0.jpg"
    assert picture.md5 == SIGNATURE_MD5 and picture.pdq and picture.errors == []
    assert picture.parent_md5 == found["attachment / inner.pdf"].md5
    assert found["attachment / inner.pdf"].parent_md5 == found[""].md5
    assert found[""].type == "application/pdf" and found[""].errors == []


def _encrypted(document: bytes, user_password: str, algorithm: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(document)))
    writer.encrypt(user_password=user_password, owner_password="owner secret", algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-128", "AES-256"])
def test_encrypted_pdf_opens_with_an_empty_user_password_only(algorithm: str, tmp_path: Path) -> None:
    document = img2pdf.convert(SIGNATURE)

    opened = members(PDF_READER, _encrypted(document, "", algorithm))
    assert opened == {"page 1 / Im0.jpg": SIGNATURE}

    locked = tmp_path / "locked.pdf"
    locked.write_bytes(_encrypted(document, "user secret", algorithm))
    with pytest.raises(ValueError, match="needs a password"):
        members(PDF_READER, locked.read_bytes())
    found = tree(locked)
    assert list(found) == [""]
    assert found[""].errors == ["pdf: encrypted PDF: needs a password, not scanned"]
    assert found[""].md5 == hashlib.md5(locked.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- PDF: hostile files


def test_hostile_pictures_and_attachments_are_errors_on_themselves(
    tmp_path: Path, images: ImageFactory, run_vakta: RunCli
) -> None:
    pdf_ = PdfBuilder()
    huge = pdf_.stream(zlib.compress(bytes(300)), image_entries(1_000_000, 1_000_000, b"/FlateDecode"))
    # 12000 x 12000 RGB: 432 MB of pixels behind 0.4 MB, over the 256 MiB stream limit.
    bomb = pdf_.stream(zeros_deflated(12_000 * 12_000 * 3), image_entries(12_000, 12_000, b"/FlateDecode"))
    corrupt = pdf_.stream(b"not deflate data" * 10, image_entries(10, 10, b"/FlateDecode"))
    unsized = pdf_.stream(
        zlib.compress(bytes(30)), b"/Subtype /Image /Width (ten) /Height 1 /Filter /FlateDecode"
    )
    good = pdf_.jpeg_image(SIGNATURE)
    pdf_.page({"Huge": huge, "Bomb": bomb, "Corrupt": corrupt, "Unsized": unsized, "Good": good})
    attached_bomb = pdf_.stream(zeros_deflated(GIB), b"/Type /EmbeddedFile /Filter /FlateDecode")
    spec = pdf_.add(b"<< /Type /Filespec /F (zeros.bin) /EF << /F %d 0 R >> >>" % attached_bomb)
    pdf_.attach({b"zeros.bin": spec})
    document = pdf_.build()
    assert len(document) < 3 * MIB

    started = time.monotonic()
    found = members(PDF_READER, document)
    assert time.monotonic() - started < 30

    assert set(found) == {
        "page 1 / Huge.png",
        "page 1 / Bomb.png",
        "page 1 / Corrupt.png",
        "page 1 / Unsized.png",
        "page 1 / Good.jpg",
        "attachment / zeros.bin",
    }
    assert "decompression bomb: 1000000x1000000" in str(found["page 1 / Huge.png"])
    assert "cannot decode picture" in str(found["page 1 / Bomb.png"])
    assert "limit" in str(found["page 1 / Bomb.png"]).lower()
    assert "cannot decode picture" in str(found["page 1 / Corrupt.png"])
    assert "no valid size" in str(found["page 1 / Unsized.png"])
    assert "limit" in str(found["attachment / zeros.bin"]).lower()
    assert found["page 1 / Good.jpg"] == SIGNATURE

    # The same through the command line, within a memory cap: errors on the members, the match found.
    folder = tmp_path / "scan"
    folder.mkdir()
    (folder / "hostile.pdf").write_bytes(document)
    result = run_vakta("scan", folder, "--all", "--workers", 1, memory_limit=MEMORY_LIMIT, timeout=120)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.exit_code == 1, result.stderr[-3000:]
    records = {r.get("location", r["path"]): r for r in result.records()}
    good_record = records[f"{folder / 'hostile.pdf'} > page 1 / Good.jpg"]
    assert {m["list"] for m in good_record["matches"]} == {"vakta-test"}
    assert records[f"{folder / 'hostile.pdf'} > page 1 / Bomb.png"]["errors"]


def _truncated(images: ImageFactory) -> bytes:
    pdf_ = PdfBuilder()
    for seed in range(4):
        pdf_.page({"Im0": pdf_.jpeg_image(encode(images.pattern(seed, (120, 90)), "JPEG"))})
    document = pdf_.build()
    return document[: int(len(document) * 0.7)]


def _prev_loop() -> bytes:
    document = write_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])
    xref = int(document.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    return document.replace(b"/Root 1 0 R", b"/Root 1 0 R /Prev %d" % xref)


def _page_tree_loop() -> bytes:
    return write_pdf(
        [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [2 0 R 2 0 R] /Count 2 >>"]
    )


def _missing_objects() -> bytes:
    xobjects = b" ".join(b"/X%d %d 0 R" % (n, 1000 + n) for n in range(5000))
    page = b"<< /Type /Page /Parent 2 0 R /Resources << /XObject << %s >> >> >>" % xobjects
    return write_pdf(
        [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", page]
    )


def _garbage() -> bytes:
    return b"%PDF-1.4\n" + os.urandom(200_000)


@pytest.mark.parametrize("damage", ["truncated", "prev-loop", "page-tree-loop", "missing-objects", "garbage"])
def test_damaged_pdfs_cost_bounded_time(damage: str, images: ImageFactory, tmp_path: Path) -> None:
    document = {
        "truncated": lambda: _truncated(images),
        "prev-loop": _prev_loop,
        "page-tree-loop": _page_tree_loop,
        "missing-objects": _missing_objects,
        "garbage": _garbage,
    }[damage]()
    path = tmp_path / "damaged.pdf"
    path.write_bytes(document)

    started = time.monotonic()
    found = tree(path)
    assert time.monotonic() - started < 20

    top = found.pop("")
    assert top.type == "application/pdf" and top.md5
    if damage == "truncated":  # rebuilt from its objects: the pages before the cut are found
        assert list(found) == [
            "cross-reference table",
            "page 1 / Im0.jpg",
            "page 2 / Im0.jpg",
            "page 3 / Im0.jpg",
        ]
        assert found["cross-reference table"].errors == [
            "damaged PDF, read from its objects: Stream has ended unexpectedly"
        ]
    else:
        assert (
            top.errors == []
            if damage != "garbage"
            else ["pdf: cannot open PDF: Stream has ended unexpectedly"]
        )
        expected = {
            "page-tree-loop": {
                "page tree": [
                    "cannot read the page tree (Detected cyclic page references): "
                    "pictures are looked for object by object"
                ]
            }
        }
        assert {k: v.errors for k, v in found.items()} == expected.get(damage, {})


def test_a_damaged_pdf_too_large_to_repair_in_memory_is_refused(
    images: ImageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = _truncated(images)
    monkeypatch.setattr(pdf, "MAX_WHOLE_READ", len(document) // 2)
    with pytest.raises(ValueError, match="not repaired in memory"):
        members(PDF_READER, document)


def test_repairs_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    document = _missing_objects()  # pypdf reads the whole file for every missing object
    monkeypatch.setattr(pdf, "MAX_REPAIR_BYTES", 40 * len(document))
    with pytest.raises(ValueError, match="repairs would read more than"):
        members(PDF_READER, document)


def test_pdf_pictures_are_not_all_held_in_memory(tmp_path: Path) -> None:
    pdf_ = PdfBuilder()
    for seed in range(40):  # 40 MB of pictures (raw JPEG streams are passed on undecoded)
        blob = b"\xff\xd8\xff\xe0" + seed.to_bytes(4, "big") * (MIB // 4)
        pdf_.page({"Im0": pdf_.stream(blob, image_entries(100, 100, b"/DCTDecode"))})
    path = tmp_path / "big.pdf"
    path.write_bytes(pdf_.build())

    tracemalloc.start()
    try:
        with path.open("rb") as stream:
            count = 0
            for member in PDF_READER.members(stream):
                assert member.open is not None
                with member.open() as data:
                    count += len(data.read()) > MIB
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 40
    assert peak < 8 * MIB, f"peak {peak / MIB:.1f} MiB"


# --------------------------------------------------------------------------- EML


def _message(images: ImageFactory) -> tuple[EmailMessage, dict[str, bytes]]:
    """A message with every kind of part, and the bytes each member must have."""
    inline_png = encode(images.pattern(6, (60, 40)), "PNG")
    other_jpeg = encode(images.pattern(7, (60, 40)), "JPEG")
    forwarded = EmailMessage()
    forwarded["From"] = "sender@example.org"
    forwarded["To"] = "first@example.org"
    forwarded["Subject"] = "the original"
    forwarded["Message-ID"] = "<original@example.org>"
    forwarded.set_content("see the picture")
    forwarded.add_attachment(SIGNATURE, maintype="image", subtype="jpeg", filename="sig.jpg")

    message = EmailMessage()
    message["From"] = "Someone <someone@example.org>"
    message["To"] = "other@example.org"
    message["Subject"] = "Fwd: pictures"
    message["Message-ID"] = "<outer@example.org>"
    message.set_content("plain body")
    message.add_alternative("<p>html body <img src='cid:pic'></p>", subtype="html")
    html = message.get_payload()[1]
    html.add_related(inline_png, maintype="image", subtype="png", cid="<pic>")
    message.add_attachment(SIGNATURE, maintype="image", subtype="jpeg", filename="photo.jpg")
    message.add_attachment(other_jpeg, maintype="image", subtype="jpeg", filename="photo.jpg")
    message.add_attachment("a text attachment\n", filename="notes.txt")
    message.add_attachment(forwarded)
    expected = {
        "part 1.2.2 (image/png)": inline_png,
        "photo.jpg": SIGNATURE,
        "photo.jpg (part 3)": other_jpeg,
        "notes.txt": b"a text attachment\n",
        "part 5 (message/rfc822)": forwarded.as_bytes(),
    }
    return message, expected


def test_eml_members_are_attachments_and_inline_parts_but_not_the_body(images: ImageFactory) -> None:
    message, expected = _message(images)
    assert members(EML_READER, message.as_bytes()) == expected


def test_eml_scan_opens_the_attached_message(images: ImageFactory, tmp_path: Path) -> None:
    message, expected = _message(images)
    path = tmp_path / "mail.eml"
    path.write_bytes(message.as_bytes(policy=message.policy.clone(linesep="\r\n")))  # as mail travels

    found = tree(path)

    assert found[""].type == "message/rfc822" and found[""].errors == []
    assert list(found)[1:] == [
        "part 1.2.2 (image/png)",
        "photo.jpg",
        "photo.jpg (part 3)",
        "notes.txt",
        "part 5 (message/rfc822)",
        "part 5 (message/rfc822) > sig.jpg",
    ]
    forwarded = found["part 5 (message/rfc822)"]
    assert forwarded.type == "message/rfc822"  # given out with the line ends it came with:
    assert forwarded.md5 == md5(expected["part 5 (message/rfc822)"].replace(b"\n", b"\r\n"))
    nested = found["part 5 (message/rfc822) > sig.jpg"]
    assert nested.md5 == found["photo.jpg"].md5 == SIGNATURE_MD5
    assert nested.parent_md5 == forwarded.md5 and forwarded.parent_md5 == found[""].md5
    assert nested.location == f"{path} > part 5 (message/rfc822) > sig.jpg"


def test_damaged_and_hostile_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    head = b"From: a@example.org\r\nSubject: hostile\r\nMIME-Version: 1.0\r\n"
    mixed = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    truncated = head + mixed + b"--b\r\nContent-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n"
    truncated += b"Content-Disposition: attachment; filename=cut.jpg\r\n\r\n"
    truncated += b"\r\n".join(
        zlib.compress(b"x" * 3000)[i : i + 57].hex().encode() for i in range(0, 300, 57)
    )
    nested = head + b"".join(
        b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (i, i) for i in range(3000)
    )
    flood = head + mixed + b"--b\r\n\r\nx\r\n" * 20_000 + b"--b--\r\n"
    params = b"".join(b" filename*%d*=utf-8''a%%41;" % i for i in range(50_000))
    long_header = head + mixed + b"--b\r\nContent-Type: image/png\r\nContent-Disposition: attachment;"
    long_header += params + b"\r\n\r\npng bytes\r\n--b--\r\n"
    files = {"truncated": truncated, "nested": nested, "flood": flood, "long-header": long_header}
    for name, data in files.items():
        (tmp_path / f"{name}.eml").write_bytes(data)
        assert content_type(data) == "message/rfc822", name

    started = time.monotonic()
    found = {name: tree(tmp_path / f"{name}.eml") for name in files}
    assert time.monotonic() - started < 10  # about 1 s; the long header alone took 25 s before it was cut

    cut = found["truncated"]["cut.jpg"]
    assert cut.errors == [] and cut.size and cut.md5  # what is there is hashed
    assert found["nested"][""].errors == ["eml: MIME parts nested too deeply to parse"]
    assert found["flood"][""].errors == ["eml: more than 10,000 MIME boundary lines: not parsed"]
    (name,) = [n for n in found["long-header"] if n]
    assert name.startswith("aAaA") and len(name) == mail.MAX_NAME_CHARS
    assert found["long-header"][name].md5 == md5(b"png bytes")

    monkeypatch.setattr(mail, "MAX_MESSAGE_BYTES", 2000)
    (tmp_path / "large.eml").write_bytes(head + b"\r\n" + b"x" * 3000)
    assert tree(tmp_path / "large.eml")[""].errors == ["eml: message over 2,000 bytes: not parsed"]


# --------------------------------------------------------------------------- sniffing mail


MAIL_HEADERS = b"From: Someone <a@example.org>\nTo: b@example.org\nSubject: hi\n\nbody\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (MAIL_HEADERS, "message/rfc822"),
        (MAIL_HEADERS.replace(b"\n", b"\r\n"), "message/rfc822"),
        (
            b"Return-Path: <a@example.org>\nReceived: from x\n  by y; Mon, 1 Jan 2001\nX-Any: 1\n\n",
            "message/rfc822",
        ),
        (
            b"X-Mozilla-Status: 0001\nX-Mozilla-Status2: 00000000\nMessage-ID: <1@x>\nDate: now\n\n",
            "message/rfc822",
        ),
        (b"MIME-Version: 1.0\nContent-Type: text/plain\n\nhello\n", "message/rfc822"),
        (b"From MAILER-DAEMON Mon Jan  1 00:00:00 2001\n" + MAIL_HEADERS, "application/mbox"),
        (b"From - Mon Jan 01 00:00:00 2001\r\nX-Mozilla-Status: 0001\r\n" + MAIL_HEADERS, "application/mbox"),
        (b"From 1234@xxx Sat Jan 01 00:00:00 +0000 2011\nX-GM-THRID: 1\n" + MAIL_HEADERS, "application/mbox"),
        # Not mail: prose, a Python file, YAML, HTTP, a From line without a date or without headers.
        (b"From here on, we go to the mountains.\nIt was fun.\n", "application/octet-stream"),
        (b"From: Alice\nI wrote this letter to you\n", "application/octet-stream"),
        (b"Subject: notes\nDate: Monday\n\nthings to do\n", "application/octet-stream"),
        (b"from os import path\nimport sys\n", "application/octet-stream"),
        (b"from: 2020\nitems:\n  - a\n  - b\n", "application/octet-stream"),
        (b"HTTP/1.1 200 OK\nContent-Type: text/html\n\n<html>", "application/octet-stream"),
        (b"Host: example.org\nUser-Agent: curl\nAccept: */*\n\n", "application/octet-stream"),
        (b"From someone who cares\nFrom: a@b\nTo: c@d\n\n", "application/octet-stream"),
        (b"From MAILER-DAEMON Mon Jan  1 00:00:00 2001\nthis is not a header\n", "application/octet-stream"),
        (b"md5,sha1,category\nabc,def,1\n", "application/octet-stream"),
    ],
)
def test_mail_is_sniffed_from_its_headers_and_plain_text_is_not(data: bytes, expected: str) -> None:
    assert content_type(data) == expected


def test_a_header_block_longer_than_the_sniffing_window_is_still_mail() -> None:
    received = b"".join(
        b"Received: from relay%d.example.org by mx.example.org; Mon, 1 Jan 2001\n" % i for i in range(400)
    )
    assert content_type(b"Delivered-To: a@example.org\n" + received + MAIL_HEADERS) == "message/rfc822"


# --------------------------------------------------------------------------- MBOX


def _mailbox(tmp_path: Path, images: ImageFactory) -> tuple[Path, list[bytes]]:
    """An mbox of four messages (written by the stdlib), and each message's bytes as it reads them."""
    path = tmp_path / "box.mbox"
    box = mailbox.mbox(path)
    first = EmailMessage()
    first["From"] = "a@example.org"
    first["Subject"] = "holiday pictures"
    first.set_content("From here on the text says From a line\nFrom x Mon Jan  1 00:00:00 2001\n")
    first.add_attachment(encode(images.pattern(8, (50, 40)), "PNG"), maintype="image", subtype="png")
    second = EmailMessage()
    second["From"] = "b@example.org"
    second["Message-ID"] = "<second@example.org>"
    second.add_attachment(SIGNATURE, maintype="image", subtype="jpeg", filename="sig.jpg")
    third = EmailMessage()
    third["From"] = "c@example.org"
    third["Subject"] = "=?utf-8?q?caf=C3=A9_?=" + "x" * 200
    third.set_content("no attachment")
    fourth = EmailMessage()
    fourth["From"] = "d@example.org"
    fourth["To"] = "e@example.org"
    fourth.set_content("no subject, no id")
    for message in (first, second, third, fourth):
        box.add(message)
    box.flush()
    expected = [box.get_bytes(key) for key in box.iterkeys()]
    box.close()
    return path, expected


@pytest.mark.parametrize("chunk", [mail.CHUNK, 7, 64])
def test_mbox_messages_are_slices_of_the_file(
    chunk: int, tmp_path: Path, images: ImageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, expected = _mailbox(tmp_path, images)
    monkeypatch.setattr(mail, "CHUNK", chunk)  # separators across chunk boundaries

    found = members(MBOX_READER, path.read_bytes())

    assert list(found) == [
        "message 1 (holiday pictures)",
        "message 2 (<second@example.org>)",
        f"message 3 (café {'x' * 92}...)",
        "message 4",
    ]
    assert list(found.values()) == expected  # exactly what the stdlib's mailbox module reads


def test_mbox_with_crlf_line_ends(tmp_path: Path) -> None:
    one = b"From: a@example.org\r\nSubject: one\r\n\r\nbody one\r\n"
    two = b"From: b@example.org\r\nSubject: two\r\n\r\nbody two\r\n>From quoted\r\n"
    data = b"From - Mon Jan 01 00:00:00 2001\r\n" + one + b"\r\nFrom - Tue Jan 02 00:00:00 2001\r\n" + two
    assert content_type(data) == "application/mbox"
    assert members(MBOX_READER, data) == {"message 1 (one)": one, "message 2 (two)": two}


def test_mbox_scan_finds_attachments_below_each_message(tmp_path: Path, images: ImageFactory) -> None:
    path, _ = _mailbox(tmp_path, images)

    found = tree(path)

    assert found[""].type == "application/mbox"
    assert [n for n in found if n] == [
        "message 1 (holiday pictures)",
        "message 1 (holiday pictures) > part 2 (image/png)",
        "message 2 (<second@example.org>)",
        "message 2 (<second@example.org>) > sig.jpg",
        f"message 3 (café {'x' * 92}...)",
        "message 4",
    ]
    signature = found["message 2 (<second@example.org>) > sig.jpg"]
    assert signature.md5 == SIGNATURE_MD5
    assert signature.parent_md5 == found["message 2 (<second@example.org>)"].md5
    assert all(s.errors == [] for s in found.values())


def _large_mbox(path: Path, messages: int, attachment: bytes) -> None:
    message = EmailMessage()
    message["From"] = "a@example.org"
    message["Subject"] = "bulk"
    message.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="blob.bin")
    body = message.as_bytes()
    with path.open("wb") as out:
        for n in range(messages):
            out.write(b"From a@example.org Mon Jan  1 00:00:%02d 2001\n" % (n % 60) + body + b"\n")


def test_a_large_mbox_is_streamed_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "large.mbox"
    _large_mbox(path, 300, os.urandom(100_000))  # 40 MB

    tracemalloc.start()
    try:
        with path.open("rb") as stream:
            count = 0
            for member in MBOX_READER.members(stream):
                assert member.open is not None
                with member.open() as message:
                    count += len(message.read()) > 100_000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 300
    assert peak < 6 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_hostile_mbox_separator_lines() -> None:
    # A From_ line of a megabyte, and 50,000 empty messages: bounded work, the scan goes on.
    message = b"From: a@b\nTo: c@d\n\nbody\n\nFrom " + b"x" * MIB + b" Mon Jan  1 00:00:00 2001\nmore\n"
    long_line = members(MBOX_READER, b"From a@b Mon Jan  1 00:00:00 2001\n" + message)
    assert long_line == {"message 1": message}  # the long line is no separator: one message
    with pytest.raises(ValueError, match="does not start with a From_ line"):
        members(MBOX_READER, b"From " + b"x" * MIB + b" Mon Jan  1 00:00:00 2001\n" + message)
    empty = b"".join(b"From a@b Mon Jan  1 00:00:00 2001\n" for _ in range(50_000))
    started = time.monotonic()
    found = members(MBOX_READER, b"From a@b Mon Jan  1 00:00:00 2001\nFrom: a@b\nTo: c@d\n\n" + empty)
    assert time.monotonic() - started < 20
    assert len(found) == 50_001 and found["message 50001"] == b""


# --------------------------------------------------------------------------- end to end


def test_vakta_scan_matches_the_test_signature_inside_pdf_eml_and_mbox(
    tmp_path: Path, images: ImageFactory, run_cli: RunCli
) -> None:
    folder = tmp_path / "evidence"
    folder.mkdir()
    (folder / "scan.pdf").write_bytes(img2pdf.convert([encode(images.pattern(9), "PNG"), SIGNATURE]))
    message, _ = _message(images)
    (folder / "mail.eml").write_bytes(message.as_bytes())
    _mailbox(folder, images)
    with Image.open(io.BytesIO(SIGNATURE)) as picture:  # redrawn losslessly: a match by PDQ only
        (folder / "redrawn.pdf").write_bytes(img2pdf.convert(encode(picture.convert("RGB"), "PNG")))
    (folder / "notes.txt").write_bytes(b"Subject: notes\n\nnot mail\n")

    result = run_cli("scan", folder, "--all")

    assert result.exit_code == 1, result.stderr
    records = {r.get("location", r["path"]): r for r in result.records()}
    matched = {
        location: sorted({m["signal"] for m in r["matches"] if m["list"] == "vakta-test"})
        for location, r in records.items()
        if r["matches"]
    }
    exact = ["md5", "pdq", "sha1", "sha256"]  # the picture itself: every digest, and PDQ
    assert matched == {
        f"{folder / 'scan.pdf'} > page 2 / Im0.jpg": exact,
        f"{folder / 'mail.eml'} > photo.jpg": exact,
        f"{folder / 'mail.eml'} > part 5 (message/rfc822) > sig.jpg": exact,
        f"{folder / 'box.mbox'} > message 2 (<second@example.org>) > sig.jpg": exact,
        f"{folder / 'redrawn.pdf'} > page 1 / Im0.png": ["pdq"],
    }
    errors = {location: r["errors"] for location, r in records.items() if r["errors"]}
    assert errors == {}
    sig = records[f"{folder / 'box.mbox'} > message 2 (<second@example.org>) > sig.jpg"]
    assert sig["inside"] == ["message 2 (<second@example.org>)", "sig.jpg"]
    assert sig["parent_md5"] == records[f"{folder / 'box.mbox'} > message 2 (<second@example.org>)"]["md5"]
    assert records[str(folder / "notes.txt")]["type"] == "application/octet-stream"
