"""PDF documents: every embedded picture and attached file, as members (pypdf).

A picture is found wherever a page can draw it: in the page's own XObjects,
inside form XObjects (nested, e.g. in templates and stamps) and in the normal
appearance of annotations.  Each picture is given out once (deduplicated by
object number), named by the first place it was found: ``page 3 / Im1.jpg``,
``page 5 / Fm0 / Im2.png``.

- A JPEG (``/DCTDecode``) is given out as its stream bytes, which are exactly
  the JPEG file that was put into the PDF, so its MD5/SHA-1 still match the
  original picture's; PDQ is computed from it like from any JPEG.
- Any other encoding is given out as a lossless PNG, so PDQ matches: a grey or
  RGB picture deflated with PNG predictors (as PNG files are put into PDFs) as
  its stored data in a PNG wrapper, anything else (Flate, LZW, run length,
  CCITT, JPEG 2000, palettes, CMYK) decoded by pypdf.
- Attached files (the ``/EmbeddedFiles`` name tree, and file-attachment
  annotations) are given out as they were attached: ``attachment / a.zip``.

Damage is an error member named after the structure that failed (``page 4``,
``page tree``, ``cross-reference table``).  A document cut short is read again
with its cross-reference table rebuilt from the objects found in it; when its
pages still cannot be read, every picture and embedded file among its objects
is given out (``object 12.jpg``).

Hostile files: pypdf's own limits (declared stream lengths, decompressed
output, image buffers, page-tree size and loops, object self-reference) are
applied with sizes fit for page scans; a picture that claims more pixels than
Vakta decodes is refused before decoding; a picture's stream is held only
while it is given out; and the document is read through a stream that refuses
any single read over :data:`MAX_WHOLE_READ` and more than
:data:`MAX_REPAIR_BYTES` of whole-file reads in all, which is how pypdf
repairs a damaged cross-reference table (and looks for each missing object),
so a large or deliberately broken file cannot make it copy gigabytes over and
over.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, suppress
from functools import partial
from typing import Any, BinaryIO

from pypdf import PasswordType, PdfReader, apply_configuration
from pypdf.errors import DependencyError
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject, StreamObject

from vakta.containers import LimitExceeded, Member
from vakta.signals.imaging import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

PDF_TYPE = "application/pdf"

#: Largest stream pypdf may read or decode (declared length, each filter's output, image
#: buffer).  pypdf's 75 MB defaults refuse a 600 dpi colour A4 scan (105 MB of pixels) or a
#: 27 MP photo stored losslessly; 256 MiB keeps a worker's peak within a few times that.
MAX_STREAM_BYTES = 256 << 20
#: pypdf's LZW decoder is pure Python (some 10 MB/s): its output stays at pypdf's default.
MAX_LZW_BYTES = 75_000_000
#: One read of the document larger than this is refused: pypdf reads the whole file into
#: memory to rebuild a damaged cross-reference table or to look for a missing object.
MAX_WHOLE_READ = 256 << 20
#: Bytes a damaged document may be read whole for such repairs, in all: a small file may be
#: searched for thousands of missing objects, a large one a few times.
MAX_REPAIR_BYTES = 2 << 30
#: Entries of the attachment name tree read at most (pypdf's own tree limits are 100,000).
MAX_NAME_TREE_ENTRIES = 100_000

#: Colour modes a PNG holds as they are; anything else (CMYK, YCbCr, LAB) is converted to RGB.
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"})

#: Identity of a PDF object for deduplication: (object number, generation), or None when direct.
ObjectKey = tuple[int, int] | None


def _limits() -> AbstractContextManager[Any]:
    """pypdf's resource limits for one unit of work (never held across a ``yield``)."""
    return apply_configuration(
        maximum_declared_stream_length=MAX_STREAM_BYTES,
        array_based_stream_maximum_output_length=MAX_STREAM_BYTES,
        zlib_maximum_output_length=MAX_STREAM_BYTES,
        run_length_maximum_output_length=MAX_STREAM_BYTES,
        brotli_maximum_output_length=MAX_STREAM_BYTES,
        lzw_maximum_output_length=MAX_LZW_BYTES,
        image_maximum_buffer_size=MAX_STREAM_BYTES,
        stream_decoding_work_maximum_length=3 * MAX_STREAM_BYTES,
    )


class DamagedPdfError(ValueError):
    """The document needs more repair than is allowed: reading it stops."""


#: Errors that end the whole document, not just the member being read.
_FATAL = (DamagedPdfError, LimitExceeded)


class GuardedStream(io.BufferedReader):
    """The document as pypdf reads it: buffered (it reads byte by byte), whole-file reads bounded."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__(raw, buffer_size=1 << 16)  # type: ignore[arg-type]
        self._size = raw.seek(0, io.SEEK_END)
        raw.seek(0)
        self._repair_bytes = 0

    def close(self) -> None:
        """The scan owns the stream underneath and closes it: leave it open."""
        with suppress(ValueError):  # detached already
            self.detach()

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > MAX_WHOLE_READ:
            self._whole_read()
        return super().read(size)

    def _whole_read(self) -> None:
        left = self._size - self.tell()
        if left > MAX_WHOLE_READ:
            raise DamagedPdfError(f"damaged PDF over {MAX_WHOLE_READ:,} bytes: not repaired in memory")
        self._repair_bytes += left
        if self._repair_bytes > MAX_REPAIR_BYTES:
            raise DamagedPdfError(
                f"damaged PDF: repairs would read more than {MAX_REPAIR_BYTES:,} bytes, the rest is not read"
            )


class PdfContainer:
    """Pictures and attached files of a PDF document."""

    name = "pdf"

    def accepts(self, content_type: str) -> bool:
        return content_type == PDF_TYPE

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        _quiet_pypdf()
        with _limits():
            reader, repaired = _open(stream)
            pages, problem = _page_count(reader)
        seen: set[tuple[int, int]] = set()
        if repaired:
            yield Member("cross-reference table", error=f"damaged PDF, read from its objects: {repaired}")
        if problem:
            yield Member(
                "page tree",
                error=f"cannot read the page tree ({problem}): pictures are looked for object by object",
            )
        for number in range(1, pages + 1):
            with _limits():
                found = _page_objects(reader, number, seen)
            yield from _made(found)
        if not problem:
            with _limits():
                found = _document_attachments(reader, seen)
            yield from _made(found)
        if repaired or problem:
            with _limits():
                found = _carved(reader, seen)
            yield from _made(found)


def _quiet_pypdf() -> None:
    """pypdf logs a warning for every repair of a damaged file (thousands for some): what cannot
    be read is reported on the members instead, and pypdf's own account is shown with -vv."""
    logging.getLogger("pypdf").setLevel(logging.NOTSET if log.isEnabledFor(logging.DEBUG) else logging.ERROR)


#: A member still to be made: its stream is read and decoded only when the scan reaches it.
PendingMember = partial[Member]


def _made(pending: list[PendingMember]) -> Iterator[Member]:
    for make in pending:
        with _limits():
            member = make()
        yield member


def _open(stream: BinaryIO) -> tuple[PdfReader, str | None]:
    """The document (decrypted when it opens with an empty password) and why it had to be repaired, if it did."""
    try:
        reader, repaired = PdfReader(GuardedStream(stream), strict=False), None
    except _FATAL:
        raise
    except Exception as exc:  # pypdf raises many kinds of error on damaged files
        reader, repaired = _reopen_truncated(stream, exc), _reason(exc)
    if reader.is_encrypted:
        try:
            decrypted = reader.decrypt("")
        except DependencyError as exc:
            raise ValueError(f"encrypted PDF: {exc}") from exc
        except Exception as exc:
            raise ValueError(f"encrypted PDF: cannot decrypt: {exc}") from exc
        if decrypted == PasswordType.NOT_DECRYPTED:
            raise ValueError("encrypted PDF: needs a password, not scanned")
    return reader, repaired


#: Put after a document that lost its end: pypdf then rebuilds the cross-reference table.
_LOST_END = b"\nstartxref\n0\n%%EOF\n"


def _reopen_truncated(stream: BinaryIO, first: Exception) -> PdfReader:
    """A document cut short (no cross-reference table, trailer or ``%%EOF``): its objects, found by scanning."""
    size = stream.seek(0, io.SEEK_END)
    if size > MAX_WHOLE_READ:
        raise DamagedPdfError(f"damaged PDF over {MAX_WHOLE_READ:,} bytes: not repaired in memory ({first})")
    stream.seek(0)
    copy = io.BytesIO()
    while chunk := stream.read(1 << 20):
        copy.write(chunk)
    copy.write(_LOST_END)
    copy.seek(0)
    try:
        reader = PdfReader(GuardedStream(copy), strict=False)
        found = any(reader.xref.values())
    except _FATAL:
        raise
    except Exception:
        found = False
    if not found:
        raise ValueError(f"cannot open PDF: {first}") from first
    if "/Root" not in reader.trailer:  # the trailer was lost with the end: find the catalog
        _find_catalog(reader)
    return reader


def _find_catalog(reader: PdfReader) -> None:
    for generation, table in list(reader.xref.items()):
        for number in list(table):
            ref = IndirectObject(number, generation, reader)
            try:
                obj = ref.get_object()
            except _FATAL:
                raise
            except Exception:
                continue
            if isinstance(obj, DictionaryObject) and obj.get("/Type") == "/Catalog":
                reader.trailer[NameObject("/Root")] = ref
                return
            _release(reader, (number, generation))


def _page_count(reader: PdfReader) -> tuple[int, str | None]:
    """Pages in the document, or 0 and why the page tree cannot be read."""
    try:
        return len(reader.pages), None
    except _FATAL:
        raise
    except Exception as exc:
        return 0, _reason(exc).rstrip(".")


def _page_objects(reader: PdfReader, number: int, seen: set[tuple[int, int]]) -> list[PendingMember]:
    """Pictures and attachments of one page not yet seen; a page that cannot be read is one error."""
    prefix = f"page {number}"
    try:
        page = reader.pages[number - 1]
        found = _images(reader, _dict(page, "/Resources"), prefix, seen)
        for index, annotation in enumerate(_annotations(page), 1):
            found += _annotation_objects(reader, annotation, f"{prefix} / annotation {index}", seen)
    except _FATAL:
        raise
    except Exception as exc:
        log.debug("page %d: %s", number, exc, exc_info=True)
        return [partial(Member, prefix, error=f"cannot read page: {exc}")]
    return found


def _images(
    reader: PdfReader, resources: DictionaryObject | None, prefix: str, seen: set[tuple[int, int]]
) -> list[PendingMember]:
    """Pictures in ``resources`` and in the form XObjects they hold, each object once.

    A picture's stream is dropped once its kind is known and read again when
    its member is made, so a page of many pictures is never held whole.
    """
    found: list[PendingMember] = []
    pending = [(prefix, resources)]
    while pending:
        where, resources = pending.pop(0)
        for key, value in (_dict(resources, "/XObject") or {}).items():
            obj = value.get_object()
            if not isinstance(obj, StreamObject) or not _first_time(_key(value), seen):
                continue
            name = f"{where} / {_printable(str(key).lstrip('/'))}"
            subtype = obj.get("/Subtype")
            if subtype == "/Image":
                found.append(partial(_image_member, reader, name, value))
            elif subtype == "/Form":
                pending.append((name, _dict(obj, "/Resources")))
            _release(reader, _key(value))
    return found


def _annotations(page: DictionaryObject) -> list[DictionaryObject]:
    annotations = page.get("/Annots")
    annotations = annotations.get_object() if annotations is not None else None
    if not isinstance(annotations, ArrayObject):
        return []
    return [a for a in (v.get_object() for v in annotations) if isinstance(a, DictionaryObject)]


def _annotation_objects(
    reader: PdfReader, annotation: DictionaryObject, prefix: str, seen: set[tuple[int, int]]
) -> list[PendingMember]:
    """A stamp's pictures (its normal appearance) and a file-attachment annotation's file."""
    found: list[PendingMember] = []
    appearance = _dict(annotation, "/AP")
    normal = appearance.get("/N") if appearance is not None else None
    normal = normal.get_object() if normal is not None else None
    states = [normal] if isinstance(normal, StreamObject) else []
    if isinstance(normal, DictionaryObject) and not isinstance(normal, StreamObject):
        states = [s.get_object() for s in normal.values()]
    for state in states:
        if isinstance(state, StreamObject):
            found += _images(reader, _dict(state, "/Resources"), prefix, seen)
    if annotation.get("/Subtype") == "/FileAttachment":
        found += _attachment(reader, annotation.get("/FS"), None, prefix, seen)
    return found


def _document_attachments(reader: PdfReader, seen: set[tuple[int, int]]) -> list[PendingMember]:
    """Files of the ``/EmbeddedFiles`` name tree not already found on a page."""
    try:
        names = _dict(reader.root_object, "/Names")
        tree = _dict(names, "/EmbeddedFiles") if names is not None else None
        found: list[PendingMember] = []
        for key, spec in _name_tree(tree):
            found += _attachment(reader, spec, key, "attachment", seen)
        return found
    except _FATAL:
        raise
    except Exception as exc:
        log.debug("attachments: %s", exc, exc_info=True)
        return [partial(Member, "attachment", error=f"cannot read the attached files: {exc}")]


def _name_tree(root: DictionaryObject | None) -> list[tuple[str, Any]]:
    """(key, value) pairs of a PDF name tree, walked without recursion, loops and size bounded."""
    out: list[tuple[str, Any]] = []
    pending = [root] if root is not None else []
    visited: set[int] = set()
    while pending and len(out) < MAX_NAME_TREE_ENTRIES:
        node = pending.pop(0)
        if id(node) in visited:
            continue
        visited.add(id(node))
        names = node.get("/Names")
        names = names.get_object() if names is not None else None
        if isinstance(names, ArrayObject):
            out += [(str(names[i].get_object()), names[i + 1]) for i in range(0, len(names) - 1, 2)]
        kids = node.get("/Kids")
        kids = kids.get_object() if kids is not None else None
        if isinstance(kids, ArrayObject):
            pending += [k for k in (kid.get_object() for kid in kids) if isinstance(k, DictionaryObject)]
    return out[:MAX_NAME_TREE_ENTRIES]


def _attachment(
    reader: PdfReader, spec: Any, key: str | None, prefix: str, seen: set[tuple[int, int]]
) -> list[PendingMember]:
    """The embedded file of a file specification, unless that file was already given out."""
    spec = spec.get_object() if spec is not None else None
    files = _dict(spec, "/EF") if isinstance(spec, DictionaryObject) else None
    if spec is None or files is None:
        return []
    ref = files.raw_get("/UF") if "/UF" in files else files.raw_get("/F") if "/F" in files else None
    if ref is None or not _first_time(_key(ref), seen):
        return []
    filename = next((str(spec[k]) for k in ("/UF", "/F") if k in spec), key or "unnamed")
    name = f"{prefix} / {_printable(filename) or 'unnamed'}"
    return [partial(_attachment_member, reader, name, ref)]


def _carved(reader: PdfReader, seen: set[tuple[int, int]]) -> list[PendingMember]:
    """Pictures and embedded files among all the objects of a document whose pages cannot all be read."""
    found: list[PendingMember] = []
    for generation, table in list(reader.xref.items()):
        for number in list(table):
            key = (number, generation)
            if key in seen:
                continue
            ref = IndirectObject(number, generation, reader)
            try:
                obj = ref.get_object()
            except _FATAL:
                raise
            except Exception:  # the damage that made the pages unreadable: nothing to find there
                continue
            if isinstance(obj, StreamObject) and obj.get("/Subtype") == "/Image":
                found.append(partial(_image_member, reader, f"object {number}", ref))
                seen.add(key)
            elif isinstance(obj, StreamObject) and obj.get("/Type") == "/EmbeddedFile":
                found.append(partial(_attachment_member, reader, f"object {number} (embedded file)", ref))
                seen.add(key)
            _release(reader, key)
    return found


def _image_member(reader: PdfReader, name: str, ref: Any) -> Member:
    """A picture as JPEG stream bytes or lossless PNG; an error member when it cannot be decoded."""
    try:
        image = ref.get_object()
        jpeg = _filters(image)[-1:] == ["/DCTDecode"]
        name += ".jpg" if jpeg else ".png"
        data = image.get_data() if jpeg else _png(image)
    except _FATAL:
        raise
    except Exception as exc:
        return Member(name, error=f"cannot decode picture: {_reason(exc)}")
    finally:
        _release(reader, _key(ref))
    return Member(name, open=partial(io.BytesIO, data), size=len(data))


def _attachment_member(reader: PdfReader, name: str, ref: Any) -> Member:
    """An attached file as it was attached; stored size from the stream, for the bomb check."""
    try:
        stream = ref.get_object()
        if not isinstance(stream, StreamObject):
            raise ValueError("the embedded file is not a stream")
        stored = len(stream._data)
        data = stream.get_data()
    except _FATAL:
        raise
    except Exception as exc:
        return Member(name, error=f"cannot read attached file: {_reason(exc)}")
    finally:
        _release(reader, _key(ref))
    return Member(name, open=partial(io.BytesIO, data), size=len(data), stored_size=stored)


def _png(image: StreamObject) -> bytes:
    """A non-JPEG picture as a PNG file, refusing absurd sizes before any decoding."""
    width, height = image.get("/Width"), image.get("/Height")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise ValueError(f"no valid size ({width!r} x {height!r})")
    if width * height > DEFAULT_MAX_PIXELS:
        raise ValueError(
            f"decompression bomb: {width}x{height} is over the {DEFAULT_MAX_PIXELS:,} pixel limit"
        )
    png = _png_as_stored(image, width, height)
    return png if png is not None else _png_decoded(image)


def _png_decoded(image: StreamObject) -> bytes:
    picture = image.decode_as_image()
    if picture is None:
        raise ValueError("pypdf cannot decode this encoding")
    if picture.mode not in _PNG_MODES:
        picture = picture.convert("RGB")
    out = io.BytesIO()
    picture.save(out, "PNG", compress_level=1)
    return out.getvalue()


#: PNG colour type by colour components: grey, truecolour.
_PNG_COLOUR_TYPES = {1: 0, 3: 2}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_as_stored(image: StreamObject, width: int, height: int) -> bytes | None:
    """The PNG file around a stream that holds what a PNG's IDAT holds, else None.

    A grey or RGB picture deflated with PNG row predictors (how PNG pictures
    are put into PDFs) is exactly PNG's compressed pixel data: wrapped in a PNG
    header it is handed on undecoded.  pypdf's predictor decoding is pure
    Python (about a second per 3 megapixels), Pillow's is C.
    """
    params = image.get("/DecodeParms")
    params = params.get_object() if params is not None else None
    if isinstance(params, ArrayObject) and len(params) == 1:
        params = params[0].get_object()
    if _filters(image) != ["/FlateDecode"] or "/Decode" in image or not isinstance(params, DictionaryObject):
        return None
    depth = image.get("/BitsPerComponent", 8)
    colours = _components(image.get("/ColorSpace"))
    layout = (params.get("/Columns", 1), params.get("/Colors", 1), params.get("/BitsPerComponent", 8))
    if (
        params.get("/Predictor", 1) < 10
        or layout != (width, colours, depth)
        or colours not in _PNG_COLOUR_TYPES
    ):
        return None
    if depth not in ((1, 2, 4, 8, 16) if colours == 1 else (8, 16)):
        return None
    header = struct.pack(">IIBBBBB", width, height, depth, _PNG_COLOUR_TYPES[colours], 0, 0, 0)
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", image._data) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _components(colour_space: Any) -> int | None:
    """Colour components of a grey or RGB colour space (device, calibrated or ICC based), else None."""
    space = colour_space.get_object() if colour_space is not None else None
    if isinstance(space, ArrayObject) and space:
        family, detail = space[0], space[1].get_object() if len(space) > 1 else None
        if family == "/ICCBased" and isinstance(detail, DictionaryObject):
            n = detail.get("/N")
            return n if isinstance(n, int) else None
        space = {"/CalGray": "/DeviceGray", "/CalRGB": "/DeviceRGB"}.get(str(family))
    return {"/DeviceGray": 1, "/DeviceRGB": 3}.get(str(space))


def _release(reader: PdfReader, key: ObjectKey) -> None:
    """Drop a decoded stream from pypdf's object cache: a document's pictures are never all held."""
    if key is not None:
        reader.resolved_objects.pop((key[1], key[0]), None)


def _filters(stream: StreamObject) -> list[str]:
    filters = stream.get("/Filter")
    filters = filters.get_object() if filters is not None else None
    if isinstance(filters, ArrayObject):
        return [str(f.get_object()) for f in filters]
    return [str(filters)] if isinstance(filters, NameObject) else []


def _dict(obj: Any, key: str) -> DictionaryObject | None:
    value = obj.get(key) if isinstance(obj, DictionaryObject) else None
    value = value.get_object() if value is not None else None
    return value if isinstance(value, DictionaryObject) else None


def _key(value: Any) -> ObjectKey:
    return (value.idnum, value.generation) if isinstance(value, IndirectObject) else None


def _first_time(key: ObjectKey, seen: set[tuple[int, int]]) -> bool:
    """True the first time an object is met (always for direct objects, which cannot recur)."""
    if key is None:
        return True
    if key in seen:
        return False
    seen.add(key)
    return True


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text).strip()


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


READER = PdfContainer()
