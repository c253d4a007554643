"""The field's interchange hash-list formats: NCMEC XML, ClamAV, hashdeep, checksum files, NIST NSRL.

Every file here is built in the test, shaped as the field ships it, from
made-up hashes (digests of strings like ``vakta-interchange-1``) or the
digests of generated, harmless pictures.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
import tempfile
import time
import xml.etree.ElementTree as ET
from contextlib import closing
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pytest

from vakta.lists.formats import ListFormat, detect, list_formats
from vakta.lists.formats.checksums import FORMAT as CHECKSUMS
from vakta.lists.formats.clamav import FORMAT as CLAMAV
from vakta.lists.formats.hashdeep import FORMAT as HASHDEEP
from vakta.lists.formats.ncmec import FORMAT as NCMEC
from vakta.lists.formats.ncmec import NAMESPACE
from vakta.lists.formats.nsrl import FORMAT as NSRL
from vakta.lists.formats.nsrl import row_query
from vakta.lists.model import ListRecord, ParseIssue
from vakta.lists.store import ListStore

if TYPE_CHECKING:
    from conftest import ImageFactory, RunCli


def fake(kind: str, n: int) -> str:
    """A made-up hash of ``kind`` (lower-case hex)."""
    seed = f"vakta-interchange-{n}".encode()
    if kind == "pdq":
        return hashlib.sha256(b"pdq-" + seed).hexdigest()
    return hashlib.new(kind, seed).hexdigest()


def parse(
    fmt: ListFormat, data: bytes | IO[bytes], kind: str | None = None
) -> tuple[list[ListRecord], list[ParseIssue]]:
    """Parse completely, split into records and issues."""
    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    records: list[ListRecord] = []
    issues: list[ParseIssue] = []
    for item in fmt.parse(stream, kind):
        if isinstance(item, ListRecord):
            records.append(item)
        else:
            issues.append(item)
    return records, issues


def export(fmt: ListFormat, records: list[ListRecord], name: str = "national") -> str:
    out = io.StringIO()
    fmt.export(records, out, name)
    return out.getvalue()


def digests(records: list[ListRecord]) -> set[tuple[str, str]]:
    return {(kind, value) for r in records for kind, value in r.hashes.items()}


# --------------------------------------------------------------------------- NCMEC XML


def ncmec_entry(tag: str, entry_id: str, classification: str | None = None, **prints: str) -> str:
    """One entry element as the hash sharing API writes it (member, timestamp, id, fingerprints, feedback)."""
    parts = [
        f"    <{tag}>",
        '      <member id="42">Example ESP</member>',
        "      <timestamp>2024-05-01T10:00:00Z</timestamp>",
    ]
    parts.append(f"      <id>{entry_id}</id>")
    if classification:
        parts.append(f"      <classification>{classification}</classification>")
    if prints:
        parts.append("      <fingerprints>")
        parts += [f"        <{name}>{value}</{name}>" for name, value in prints.items()]
        parts.append('        <tmk-pdqf rel="self" href="/v2/entries/7/fingerprints/TMK_PDQF"/>')
        parts.append("      </fingerprints>")
        parts.append(
            '      <feedback lastUpdateTimestamp="2024-05-02T08:00:00Z"><affirmativeFeedback type="Md5"/></feedback>'
        )
    parts.append(f"    </{tag}>")
    return "\n".join(parts) + "\n"


def ncmec_doc(images: str = "", videos: str = "") -> bytes:
    head = f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<queryResult xmlns="{NAMESPACE}">\n'
    body = f'  <images count="0" maxTimestamp="2024-05-01T10:10:00Z">\n{images}  </images>\n'
    if videos:
        body += f'  <videos count="0" maxTimestamp="2024-05-01T10:20:00Z">\n{videos}  </videos>\n'
    paging = "  <paging><next>/v2/entries?from=2024-05-01T00%3A00%3A00.000Z&amp;start=1001&amp;size=1000</next></paging>\n"
    return (head + body + paging + "</queryResult>\n").encode()


def test_ncmec_reads_images_videos_and_deleted_entries() -> None:
    doc = ncmec_doc(
        ncmec_entry("image", "1001", "A1", md5=fake("md5", 1).upper(), sha1=fake("sha1", 1), pdna="AbCd" * 36)
        + ncmec_entry("deletedImage", "998"),
        ncmec_entry("video", "2001", "B2", md5=fake("md5", 2)) + ncmec_entry("deletedVideo", "1999"),
    )
    records, issues = parse(NCMEC, doc)
    assert issues == []
    assert [(r.entry_id, r.category, r.removed) for r in records] == [
        ("1001", "A1", False),
        ("998", None, True),
        ("2001", "B2", False),
        ("1999", None, True),
    ]
    assert records[0].hashes == {"md5": fake("md5", 1), "sha1": fake("sha1", 1)}  # PhotoDNA ignored
    assert records[1].hashes == {} and records[2].hashes == {"md5": fake("md5", 2)}
    lines = doc.decode().splitlines()
    assert lines[records[0].line - 1].strip() == "<image>"
    assert lines[records[3].line - 1].strip() == "<deletedVideo>"


def test_ncmec_prefixed_namespace_pdq_and_sha256() -> None:
    doc = (
        f'<h:queryResult xmlns:h="{NAMESPACE}"><h:images><h:image><h:id>7</h:id>'
        f"<h:fingerprints><h:pdq>{fake('pdq', 7)}</h:pdq><h:sha256>{fake('sha256', 7)}</h:sha256></h:fingerprints>"
        "</h:image></h:images></h:queryResult>"
    ).encode()
    records, issues = parse(NCMEC, doc)
    assert issues == []
    assert records == [ListRecord({"pdq": fake("pdq", 7), "sha256": fake("sha256", 7)}, "7", None, 1)]


def test_ncmec_bad_entries_are_issues_with_line_numbers_and_the_rest_is_kept() -> None:
    doc = ncmec_doc(
        ncmec_entry("image", "1", md5="12345", sha1=fake("sha1", 1))
        + ncmec_entry("image", "2", pdna="AbCd" * 36)
        + "    <deletedImage><member id='3'>x</member></deletedImage>\n"
        + ncmec_entry("image", "4", md5=fake("md5", 4))
    )
    records, issues = parse(NCMEC, doc)
    assert [(r.entry_id, r.hashes) for r in records] == [
        ("1", {"sha1": fake("sha1", 1)}),
        ("4", {"md5": fake("md5", 4)}),
    ]
    lines = doc.decode().splitlines()
    assert [i.message for i in issues] == [
        "image 1: md5 hash must be 32 hex characters, got 5",
        "image 2: no usable fingerprint (md5, sha1, sha256, pdq)",
        "deletedImage names no id and no fingerprint: nothing to remove",
    ]
    assert "<md5>12345</md5>" in lines[issues[0].line - 1]
    assert "<deletedImage>" in lines[issues[2].line - 1]


def test_ncmec_truncated_xml_keeps_what_came_before_and_never_raises() -> None:
    doc = ncmec_doc(
        ncmec_entry("image", "1", md5=fake("md5", 1)) + ncmec_entry("image", "2", md5=fake("md5", 2))
    )
    cut = doc[: doc.index(b"<id>2</id>")]
    records, issues = parse(NCMEC, cut)
    assert [r.entry_id for r in records] == ["1"]
    assert len(issues) == 1 and issues[0].message.startswith("not well-formed XML")
    assert issues[0].line == cut.count(b"\n") + 1


@pytest.mark.parametrize(
    "dtd",
    [
        # billion laughs: ten levels of tenfold expansion
        "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10 if i else "lol"}">' for i in range(10)),
        '<!ENTITY leak SYSTEM "file:///etc/passwd">',
        '<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;',
    ],
    ids=["billion-laughs", "external-entity", "parameter-entity"],
)
def test_ncmec_refuses_entity_declarations(dtd: str) -> None:
    doc = f'<?xml version="1.0"?>\n<!DOCTYPE queryResult [{dtd}]>\n<queryResult><images><image><id>1</id>'
    doc += f"<fingerprints><md5>&l9;{fake('md5', 1)}</md5></fingerprints></image></images></queryResult>"
    started = time.perf_counter()
    records, issues = parse(NCMEC, doc.encode())
    assert time.perf_counter() - started < 1
    assert records == []
    assert [i.message for i in issues] == [
        "entity declarations are refused (they could expand without bound)"
    ]
    assert issues[0].line == 2


class CountingStream(io.BytesIO):
    """Remembers how far the parser has read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.furthest = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.furthest = max(self.furthest, self.tell())
        return chunk


def test_ncmec_streams_a_document_on_one_line() -> None:
    entries = "".join(
        f"<image><id>{n}</id><fingerprints><md5>{fake('md5', n)}</md5></fingerprints></image>"
        for n in range(5000)
    )
    doc = f'<queryResult xmlns="{NAMESPACE}"><images>{entries}</images></queryResult>'.encode()
    stream = CountingStream(doc)
    parsed = NCMEC.parse(stream, None)
    first = next(parsed)
    assert isinstance(first, ListRecord) and first.entry_id == "0"
    assert stream.furthest < len(doc) // 2  # records come out while most of the file is unread
    rest = list(parsed)
    assert len(rest) == 4999 and all(isinstance(r, ListRecord) for r in rest)


def test_ncmec_bom_and_latin1_member_names() -> None:
    doc = b"\xef\xbb\xbf" + ncmec_doc(ncmec_entry("image", "5", "A2", md5=fake("md5", 5))).replace(
        b"Example ESP", b"Soci\xe9t\xe9 \xc3\xa9"
    )
    records, issues = parse(NCMEC, doc)
    assert issues == []
    assert [(r.entry_id, r.category, r.hashes) for r in records] == [("5", "A2", {"md5": fake("md5", 5)})]


def test_ncmec_export_is_ncmec_shaped_and_round_trips() -> None:
    records = [
        ListRecord({"md5": fake("md5", 1), "sha1": fake("sha1", 1)}, "1001", "A1"),
        ListRecord({"pdq": fake("pdq", 2), "sha256": fake("sha256", 2)}, None, "B<1>"),
        ListRecord({}, "video-only"),  # no NCMEC fingerprint: not written
    ]
    text = export(NCMEC, records, "nat & co")
    root = ET.fromstring(text)
    ns = f"{{{NAMESPACE}}}"
    assert root.tag == f"{ns}queryResult"
    images = root.findall(f"{ns}images/{ns}image")
    assert [i.findtext(f"{ns}id") for i in images] == ["1001", "nat & co-2"]
    assert images[0].find(f"{ns}member[@id='0']") is not None
    assert images[0].findtext(f"{ns}fingerprints/{ns}md5") == fake("md5", 1)
    back, issues = parse(NCMEC, text.encode())
    assert issues == []
    assert [(r.hashes, r.category) for r in back] == [(r.hashes, r.category) for r in records[:2]]
    assert NCMEC.sniff(text.encode(), "export.xml")


# --------------------------------------------------------------------------- ClamAV


def test_clamav_hdb_and_hsb_signatures() -> None:
    data = (
        f"{fake('md5', 1)}:17387:Vakta.Test.Image-1\n"
        "\n"
        f"{fake('sha1', 2).upper()}:*:Vakta.Test.Image-2:73\n"
        f"{fake('sha256', 3)}:20:Vakta.Test.Image-3:73:255\r\n"
    ).encode()
    records, issues = parse(CLAMAV, data)
    assert issues == []
    assert [(r.hashes, r.entry_id, r.line) for r in records] == [
        ({"md5": fake("md5", 1)}, "Vakta.Test.Image-1", 1),
        ({"sha1": fake("sha1", 2)}, "Vakta.Test.Image-2", 3),
        ({"sha256": fake("sha256", 3)}, "Vakta.Test.Image-3", 4),
    ]


def test_clamav_bad_lines_are_issues() -> None:
    data = (
        f"{fake('md5', 1)}:100\n"
        f"{fake('md5', 2)}:ten:Name\n"
        f"{fake('md5', 3)[:30]}:10:Name\n"
        f"{'g' * 32}:10:Name\n"
        f"237568:{fake('md5', 4)}:Section.Signature\n"
        f"{fake('md5', 5)}:10:Good\n"
    ).encode()
    records, issues = parse(CLAMAV, data)
    assert [r.entry_id for r in records] == ["Good"]
    assert [(i.line, i.message) for i in issues] == [
        (1, "a hash signature has 3 fields (hash:size:name), got 2"),
        (2, "the size must be a whole number of bytes or *"),
        (3, "not a hash: 30 characters (MD5 has 32, SHA-1 40, SHA-256 64)"),
        (4, "md5 hash contains non-hex characters"),
        (5, "a PE section signature (size first): it hashes part of a file, never a file"),
    ]


def test_clamav_export_writes_wildcard_sizes_and_round_trips() -> None:
    records = [
        ListRecord({"md5": fake("md5", 1), "sha1": fake("sha1", 1), "pdq": fake("pdq", 1)}, "case 7: item"),
        ListRecord({"sha256": fake("sha256", 2)}),
    ]
    text = export(CLAMAV, records, "national")
    assert text.splitlines() == [
        f"{fake('md5', 1)}:*:case_7_item:73",
        f"{fake('sha1', 1)}:*:case_7_item:73",
        f"{fake('sha256', 2)}:*:national.2:73",
    ]
    back, issues = parse(CLAMAV, text.encode())
    assert issues == []
    assert digests(back) == digests(records) - {("pdq", fake("pdq", 1))}


# --------------------------------------------------------------------------- hashdeep


def test_hashdeep_output_with_comments_and_commas_in_names() -> None:
    data = (
        "%%%% HASHDEEP-1.0\n"
        "%%%% size,md5,sha256,filename\n"
        "## Invoked from: /cases/4711\n"
        "## $ hashdeep -r evidence\n"
        "##\n"
        f"3148,{fake('md5', 1)},{fake('sha256', 1).upper()},/cases/4711/evidence/a, b.jpg\n"
        f"0,{fake('md5', 2)},{fake('sha256', 2)},/cases/4711/evidence/ empty\r\n"
    ).encode()
    records, issues = parse(HASHDEEP, data)
    assert issues == []
    assert [(r.hashes, r.entry_id, r.line) for r in records] == [
        ({"md5": fake("md5", 1), "sha256": fake("sha256", 1)}, "/cases/4711/evidence/a, b.jpg", 6),
        ({"md5": fake("md5", 2), "sha256": fake("sha256", 2)}, "/cases/4711/evidence/ empty", 7),
    ]


def test_hashdeep_any_column_order_aliases_and_other_algorithms() -> None:
    data = (
        "%%%% HASHDEEP-1.0\n"
        "%%%% size,tiger,SHA-1,whirlpool,md5,sha-256,filename\n"
        f"12,{'a' * 48},{fake('sha1', 1)},{'b' * 128},{fake('md5', 1)},{fake('sha256', 1)},x.png\n"
        "%%%% size,whirlpool,filename\n"
        f"12,{'b' * 128},only-whirlpool.png\n"
    ).encode()
    records, issues = parse(HASHDEEP, data)
    assert records == [
        ListRecord(
            {"sha1": fake("sha1", 1), "md5": fake("md5", 1), "sha256": fake("sha256", 1)}, "x.png", None, 3
        )
    ]
    assert [(i.line, i.message) for i in issues] == [(5, "no md5, sha1 or sha256 on the line")]


def test_hashdeep_bad_lines_are_issues() -> None:
    data = (
        f"{fake('md5', 9)},before-header\n"
        "%%%% HASHDEEP-1.0\n"
        "%%%% size,md5,crc32,filename\n"
        f"12,{fake('md5', 1)},deadbeef,good.png\n"
        f"12,{fake('md5', 2)}\n"
        f"1k,{fake('md5', 3)},0,size.png\n"
        f"12,{fake('md5', 4)[:-1]}x,0,bad.png\n"
    ).encode()
    records, issues = parse(HASHDEEP, data)
    assert [(r.entry_id, r.hashes) for r in records] == [
        ("good.png", {"md5": fake("md5", 1)}),
        ("size.png", {"md5": fake("md5", 3)}),
    ]
    assert [(i.line, i.message) for i in issues] == [
        (1, "no hashdeep column header (%%%% size,...,filename) before this line"),
        (3, "unknown hashdeep column 'crc32' (ignored)"),
        (5, "2 fields where the header names 4"),
        (6, "the size is not a whole number"),
        (7, "md5 hash contains non-hex characters"),
    ]


def test_hashdeep_export_round_trips() -> None:
    records = [
        ListRecord({"md5": fake("md5", 1), "sha1": fake("sha1", 1), "sha256": fake("sha256", 1)}, "a,b.jpg"),
        ListRecord({"sha1": fake("sha1", 2)}, None),
        ListRecord({"pdq": fake("pdq", 3)}, "pdq-only"),
    ]
    text = export(HASHDEEP, records)
    assert text.startswith("%%%% HASHDEEP-1.0\n%%%% size,md5,sha1,sha256,filename\n")
    back, issues = parse(HASHDEEP, text.encode())
    assert issues == []
    assert [(r.hashes, r.entry_id) for r in back] == [(r.hashes, r.entry_id) for r in records[:2]]
    assert detect(text.encode(), "set.txt") is HASHDEEP


# --------------------------------------------------------------------------- checksum files


def test_checksums_gnu_lines_text_binary_and_escaped_names() -> None:
    data = (
        f"{fake('md5', 1)}  photos/a.jpg\n"
        f"{fake('sha1', 2)} *photos/b.jpg\n"
        f"\\{fake('sha256', 3)}  photos/c\\nd\\\\e.jpg\n"
        f"{fake('md5', 4)}  -\n"
        "# a comment\n"
        f"{fake('sha256', 3)[:60]}  short.jpg\n"
    ).encode()
    records, issues = parse(CHECKSUMS, data)
    assert [(r.hashes, r.entry_id) for r in records] == [
        ({"md5": fake("md5", 1)}, "photos/a.jpg"),
        ({"sha1": fake("sha1", 2)}, "photos/b.jpg"),
        ({"sha256": fake("sha256", 3)}, "photos/c\nd\\e.jpg"),  # 64 characters: SHA-256 in a checksum file
        ({"md5": fake("md5", 4)}, None),
    ]
    assert [(i.line, i.message) for i in issues] == [
        (6, "60 hex characters: no hash Vakta matches on (MD5, SHA-1, SHA-256)")
    ]
    as_pdq, _ = parse(CHECKSUMS, f"{fake('pdq', 5)}  p.jpg\n".encode(), kind="pdq")
    assert as_pdq[0].hashes == {"pdq": fake("pdq", 5)}


def test_checksums_bsd_tag_and_openssl_lines() -> None:
    data = (
        f"MD5 (photos/a (1).jpg) = {fake('md5', 1)}\n"
        f"SHA256 (b c.jpg) = {fake('sha256', 2).upper()}\n"
        f"SHA2-256(d.jpg)= {fake('sha256', 3)}\n"
        f"SHA1 (e.jpg) = {fake('sha1', 4)}\n"
        f"SHA512 (f.jpg) = {'0' * 128}\n"
        "MD5 (g.jpg) = 0123\n"
        "just words\n"
    ).encode()
    records, issues = parse(CHECKSUMS, data)
    assert [(r.hashes, r.entry_id) for r in records] == [
        ({"md5": fake("md5", 1)}, "photos/a (1).jpg"),
        ({"sha256": fake("sha256", 2)}, "b c.jpg"),
        ({"sha256": fake("sha256", 3)}, "d.jpg"),
        ({"sha1": fake("sha1", 4)}, "e.jpg"),
    ]
    assert [(i.line, i.message) for i in issues] == [
        (5, "SHA512 is not a hash Vakta matches on (MD5, SHA1, SHA256)"),
        (6, "md5 hash must be 32 hex characters, got 4"),
        (7, "neither 'HASH  name' nor 'ALGO (name) = HASH'"),
    ]


def test_checksums_export_round_trips() -> None:
    records = [
        ListRecord({"md5": fake("md5", 1), "sha256": fake("sha256", 1), "pdq": fake("pdq", 1)}, "a.jpg"),
        ListRecord({"sha1": fake("sha1", 2)}, None),
    ]
    text = export(CHECKSUMS, records)
    assert text.splitlines() == [
        f"MD5 (a.jpg) = {fake('md5', 1)}",
        f"SHA256 (a.jpg) = {fake('sha256', 1)}",
        f"SHA1 (-) = {fake('sha1', 2)}",
    ]
    back, issues = parse(CHECKSUMS, text.encode())
    assert issues == []
    assert digests(back) == digests(records) - {("pdq", fake("pdq", 1))}


# --------------------------------------------------------------------------- NIST NSRL RDSv3

#: The RDSv3 layout (tables, primary keys, a view), as NIST's ``schema.sql`` defines it.
RDS_SCHEMA = """
CREATE TABLE FILE (
 sha256 VARCHAR NOT NULL, sha1 VARCHAR NOT NULL, md5 VARCHAR NOT NULL, crc32 VARCHAR NOT NULL,
 file_name VARCHAR NOT NULL, file_size INTEGER NOT NULL, package_id INTEGER NOT NULL,
 CONSTRAINT PK_FILE__FILE PRIMARY KEY (sha256, sha1, md5, crc32, file_name, file_size, package_id)
);
CREATE TABLE MFG (manufacturer_id INTEGER NOT NULL, name VARCHAR NOT NULL,
 CONSTRAINT PK_MFG__MFG_ID PRIMARY KEY (manufacturer_id));
CREATE TABLE OS (operating_system_id INTEGER NOT NULL, name VARCHAR NOT NULL, version VARCHAR NOT NULL,
 manufacturer_id INTEGER NOT NULL, CONSTRAINT PK_OS__OS_ID PRIMARY KEY (operating_system_id, manufacturer_id));
CREATE TABLE PKG (package_id INTEGER NOT NULL, name VARCHAR NOT NULL, version VARCHAR NOT NULL,
 operating_system_id INTEGER NOT NULL, manufacturer_id INTEGER NOT NULL, language VARCHAR NOT NULL,
 application_type VARCHAR NOT NULL,
 CONSTRAINT PK_PGK__PKG_ID PRIMARY KEY (package_id, operating_system_id, manufacturer_id, language, application_type));
CREATE TABLE VERSION (version VARCHAR UNIQUE NOT NULL, build_set VARCHAR NOT NULL, build_date TIMESTAMP NOT NULL,
 release_date TIMESTAMP NOT NULL, description VARCHAR NOT NULL);
CREATE VIEW DISTINCT_HASH AS SELECT DISTINCT sha256, sha1, md5, crc32 FROM FILE;
"""


def make_rds(path: Path, files: list[tuple[str, str, str, int]]) -> Path:
    """An RDSv3-shaped database with ``(sha256, sha1, md5, size)`` files, each in two packages."""
    with closing(sqlite3.connect(path)) as db, db:
        db.executescript(RDS_SCHEMA)
        rows = [
            (s256.upper(), s1.upper(), m5.upper(), "0BADF00D", f"file{n}.dll", size, package)
            for n, (s256, s1, m5, size) in enumerate(files)
            for package in (1, 2)
        ]
        db.executemany("INSERT INTO FILE VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        db.execute("INSERT INTO PKG VALUES (1, 'Office', '2016', 1, 1, 'English', 'Office')")
        db.execute("INSERT INTO VERSION VALUES ('2024.03.1', 'modern', '2024-03-01', '2024-03-01', 'test')")
    return path


def rds_files(count: int) -> list[tuple[str, str, str, int]]:
    return [(fake("sha256", n), fake("sha1", n), fake("md5", n), 100 + n) for n in range(count)]


def test_nsrl_reads_each_file_once_from_a_real_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = make_rds(tmp_path / "RDS_2024.03.1_modern_minimal.db", rds_files(5))

    def no_spooling(*args: object, **kwargs: object) -> None:
        raise AssertionError("a real file must be read in place, not copied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", no_spooling)
    with db.open("rb") as stream:
        records, issues = parse(NSRL, stream)
    assert issues == []
    assert len(records) == 5  # two packages per file, one record
    assert {tuple(sorted(r.hashes.items())) for r in records} == {
        (("md5", m5), ("sha1", s1), ("sha256", s256)) for s256, s1, m5, _ in rds_files(5)
    }
    with closing(sqlite3.connect(db)) as con:
        assert "ORDER BY" in row_query(
            con, ["sha256", "sha1", "md5"]
        )  # sorted by the key's index, no sort step


def test_nsrl_in_memory_stream_is_spooled(tmp_path: Path) -> None:
    data = make_rds(tmp_path / "rds.db", rds_files(3)).read_bytes()
    records, issues = parse(NSRL, data)
    assert issues == [] and len(records) == 3
    assert NSRL.sniff(data[:65536], "rds.db")


def test_nsrl_bad_rows_and_databases_are_issues(tmp_path: Path) -> None:
    db = make_rds(tmp_path / "rds.db", rds_files(2))
    with closing(sqlite3.connect(db)) as con, con:
        con.execute(
            "INSERT INTO FILE VALUES ('XYZ', ?, ?, '0', 'odd.dll', 1, 1)", (fake("sha1", 9), fake("md5", 9))
        )
    records, issues = parse(NSRL, db.read_bytes())
    assert len(records) == 3
    assert {"md5": fake("md5", 9), "sha1": fake("sha1", 9)} in [r.hashes for r in records]
    assert [i.message.split(": ", 1)[1] for i in issues] == ["sha256 hash must be 64 hex characters, got 3"]

    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as con:
        con.execute("CREATE TABLE things (x)")
    assert parse(NSRL, other.read_bytes()) == (
        [],
        [ParseIssue(0, "no FILE table: not an NSRL RDSv3 database")],
    )
    records, issues = parse(NSRL, b"SQLite format 3\x00" + b"\x00" * 200)
    assert records == [] and len(issues) == 1 and "SQLite" in issues[0].message


def test_nsrl_is_import_only() -> None:
    with pytest.raises(NotImplementedError):
        export(NSRL, [ListRecord({"md5": fake("md5", 1)})])


# --------------------------------------------------------------------------- registry and detection


def test_entry_points_register_the_interchange_formats() -> None:
    for fmt in (NCMEC, CLAMAV, HASHDEEP, CHECKSUMS, NSRL):
        assert list_formats.get(fmt.name) is fmt


@pytest.mark.parametrize(
    ("head", "filename", "expected"),
    [
        (ncmec_doc(ncmec_entry("image", "1", md5=fake("md5", 1))), "entries.xml", "ncmec"),
        (b"\xef\xbb\xbf" + ncmec_doc(), "export", "ncmec"),
        (
            b"<queryResult><videos><deletedVideo><id>1</id></deletedVideo></videos></queryResult>",
            "x",
            "ncmec",
        ),
        (f"{fake('md5', 1)}:17387:Vakta.Test\n".encode(), "local.hdb", "clamav"),
        (f"{fake('sha256', 1)}:*:Vakta.Test:73\n".encode(), "list", "clamav"),
        (b"%%%% HASHDEEP-1.0\n%%%% size,md5,filename\n", "set.txt", "hashdeep"),
        (f"SHA256 (a.jpg) = {fake('sha256', 1)}\n".encode(), "list", "checksums"),
        (f"{fake('sha256', 1)}  a.jpg\n".encode(), "SHA256SUMS", "checksums"),
        (f"{fake('md5', 1)} *a.jpg\n".encode(), "photos.md5", "checksums"),
        (f"{fake('md5', 1)}  a.jpg\n".encode(), "list", "text"),  # as before: md5sum output is text
        (f"{fake('md5', 1)}\n".encode(), "nsrl-md5.txt", "text"),
        (b"SQLite format 3\x00" + b"\x00" * 84, "RDS.db", "nsrl"),
    ],
)
def test_detect_interchange_formats(head: bytes, filename: str, expected: str) -> None:
    assert detect(head, filename).name == expected


GARBAGE = [
    b"",
    b"\xef\xbb\xbf",
    b"\x00\x01\x02\xff\xfe\x80\n\x00\x00\n",
    bytes(range(256)) * 8,
    b"<queryResult><images><image><id>\xff</id><fingerprints><md5>",
    b"<a><b></a>",
    b"%%%% HASHDEEP-1.0\n%%%% size,filename\n,,,\n%%%%\n",
    b"::::\n:*:\n" + b"a" * 32 + b":\n",
    b"MD5 ( = \n\\\n\\x  y\n",
    b"\xff\xfe" + "<queryResult>\n\ud800".encode("utf-16-le", errors="surrogatepass"),
    b"SQLite format 3\x00garbage",
]


@pytest.mark.parametrize("fmt", [NCMEC, CLAMAV, HASHDEEP, CHECKSUMS, NSRL], ids=lambda f: f.name)
@pytest.mark.parametrize("data", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_never_raises(fmt: ListFormat, data: bytes) -> None:
    records, issues = parse(fmt, data)
    assert all(r.hashes or r.removed for r in records)
    assert all(i.line >= 0 and i.message for i in issues)
    assert isinstance(fmt.sniff(data, "x"), bool)


# --------------------------------------------------------------------------- removals in the store


def test_store_removals_apply_in_file_order(tmp_path: Path) -> None:
    with ListStore(tmp_path) as store:
        first = [ListRecord({"md5": fake("md5", n)}, f"id{n}", "A1") for n in range(4)]
        store.import_records("ncmec", first, "full.xml", "ncmec")
        delta = [
            ListRecord({}, "id0", removed=True),  # by entry id alone, as NCMEC deletes
            ListRecord({"md5": fake("md5", 1)}, None, removed=True),  # by hash
            ListRecord({"md5": fake("md5", 8)}, "id8"),  # added, then withdrawn later in the same file
            ListRecord({}, "id8", removed=True),
            ListRecord({}, "id2", removed=True),  # withdrawn, then listed again under another id
            ListRecord({"md5": fake("md5", 2)}, "id2b"),
        ]
        report = store.import_records("ncmec", delta, "delta.xml", "ncmec")
        kept = {(r.entry_id, r.hashes["md5"]) for r in store.records("ncmec")}
    assert kept == {("id2b", fake("md5", 2)), ("id3", fake("md5", 3))}
    assert (report.records, report.removed, report.added, report.duplicates) == (6, 3, 1, 0)
    removed = bytes(report.removed_hashes["md5"])
    assert sorted(removed[i : i + 16] for i in range(0, len(removed), 16)) == sorted(
        bytes.fromhex(fake("md5", n)) for n in (0, 1, 2)
    )


def test_store_removal_only_import_is_not_empty(tmp_path: Path) -> None:
    with ListStore(tmp_path) as store:
        store.import_records("l", [ListRecord({"sha1": fake("sha1", 1)}, "x")], "a", "ncmec")
        report = store.import_records("l", [ListRecord({}, "x", removed=True)], "b", "ncmec")
        assert report.removed == 1 and report.added == 0
        assert list(store.records("l")) == []


# --------------------------------------------------------------------------- the command line end to end


def lookup(run_cli: RunCli, *hashes: str) -> dict[str, list[str]]:
    """``vakta lookup``: each input's matching entry ids (lists other than the test list)."""
    result = run_cli("lookup", "--no-test-list", *hashes)
    assert result.exit_code in (0, 1), result.stderr
    return {r["input"]: [m["entry_id"] for m in r["matches"]] for r in result.records()}


def test_cli_ncmec_deleted_entries_stop_matching(tmp_path: Path, run_cli: RunCli) -> None:
    full = tmp_path / "full.xml"
    full.write_bytes(
        ncmec_doc(
            ncmec_entry("image", "1", "A1", md5=fake("md5", 1), sha1=fake("sha1", 1))
            + ncmec_entry("image", "2", "A2", md5=fake("md5", 2))
            + ncmec_entry("image", "3", "B1", md5=fake("md5", 3)),
            ncmec_entry("video", "4", "A1", md5=fake("md5", 4)),
        )
    )
    imported = run_cli("lists", "import", full, "--name", "ncmec")
    assert imported.exit_code == 0, imported.stderr
    assert "4 records read as ncmec" in imported.stderr
    queries = [f"md5:{fake('md5', n)}" for n in (1, 2, 3, 4)] + [f"sha1:{fake('sha1', 1)}"]
    assert list(lookup(run_cli, *queries).values()) == [["1"], ["2"], ["3"], ["4"], ["1"]]

    delta = tmp_path / "delta.xml"
    delta.write_bytes(
        ncmec_doc(
            ncmec_entry("deletedImage", "1")
            + ncmec_entry("deletedImage", "3")
            + ncmec_entry("image", "5", md5=fake("md5", 3)),
            ncmec_entry("deletedVideo", "4"),
        )
    )
    updated = run_cli("lists", "import", delta, "--name", "ncmec")
    assert updated.exit_code == 0, updated.stderr
    assert "4 removed" in updated.stderr
    # Entry 3's hash came back under entry 5 later in the same file: it still matches, as 5.
    assert list(lookup(run_cli, *queries).values()) == [[], ["2"], ["5"], [], []]
    shown = {r["name"]: r for r in run_cli("lists", "show", "--json").records()}
    assert shown["ncmec"]["counts"] == {"md5": 2}


def test_cli_ncmec_deletion_leaves_the_same_hash_on_other_lists(tmp_path: Path, run_cli: RunCli) -> None:
    full = tmp_path / "full.xml"
    full.write_bytes(
        ncmec_doc(
            ncmec_entry("image", "1", md5=fake("md5", 1)) + ncmec_entry("image", "2", md5=fake("md5", 2))
        )
    )
    assert run_cli("lists", "import", full, "--name", "ncmec").exit_code == 0
    other = tmp_path / "other.hsb"
    other.write_text(f"{fake('md5', 1)}:*:Other.Entry:73\n", encoding="utf-8")
    assert run_cli("lists", "import", other, "--name", "other").exit_code == 0
    delta = tmp_path / "delta.xml"
    delta.write_bytes(ncmec_doc(ncmec_entry("deletedImage", "1")))
    assert run_cli("lists", "import", delta, "--name", "ncmec").exit_code == 0
    result = run_cli("lookup", "--no-test-list", f"md5:{fake('md5', 1)}")
    assert [(m["list"], m["entry_id"]) for m in result.records()[0]["matches"]] == [("other", "Other.Entry")]


def test_cli_nsrl_is_known_good_and_scan_skips_the_file(
    tmp_path: Path, images: ImageFactory, run_cli: RunCli
) -> None:
    folder = tmp_path / "scan"
    listed = images.save(images.pattern(3), folder / "listed.png")
    images.save(images.pattern(4), folder / "other.png")
    data = listed.read_bytes()
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{hashlib.sha256(data).hexdigest()}  listed.png\n", encoding="utf-8")
    assert run_cli("lists", "import", sums, "--name", "detect").exit_code == 0
    before = run_cli("scan", folder, "--workers", 1, "--no-test-list").by_name()
    assert [m["entry_id"] for m in before["listed.png"]["matches"]] == ["listed.png"]

    own = (
        hashlib.sha256(data).hexdigest(),
        hashlib.sha1(data).hexdigest(),
        hashlib.md5(data).hexdigest(),
        len(data),
    )
    rds = make_rds(tmp_path / "RDS_modern_minimal.db", [*rds_files(3), own])
    imported = run_cli("lists", "import", rds, "--name", "nsrl")  # no --ignore: NSRL is known-good anyway
    assert imported.exit_code == 0, imported.stderr
    assert "imported as a known-good list" in imported.stderr
    assert "4 records read as nsrl" in imported.stderr
    shown = {r["name"]: r for r in run_cli("lists", "show", "--json").records()}
    assert shown["nsrl"]["purpose"] == "ignore"
    assert shown["nsrl"]["counts"] == {"md5": 4, "sha1": 4, "sha256": 4}

    after = run_cli("scan", folder, "--all", "--workers", 1, "--no-test-list")
    assert after.exit_code == 0, after.stderr
    found = after.by_name()
    assert found["listed.png"]["matches"] == []
    assert "nsrl" in found["listed.png"]["skipped"]
    assert "skipped" not in found["other.png"]


def test_cli_refuses_nsrl_mixed_with_detection_lists(tmp_path: Path, run_cli: RunCli) -> None:
    folder = tmp_path / "lists"
    folder.mkdir()
    make_rds(folder / "rds.db", rds_files(1))
    (folder / "more.hsb").write_text(f"{fake('md5', 1)}:*:X:73\n", encoding="utf-8")
    result = run_cli("lists", "import", folder, "--name", "mixed")
    assert result.exit_code == 2
    assert "cannot be one list" in result.stderr
    assert [r["name"] for r in run_cli("lists", "show", "--json").records()] == ["vakta-test"]


@pytest.mark.parametrize("fmt", ["ncmec", "clamav", "hashdeep", "checksums"])
def test_cli_export_then_import_round_trip(tmp_path: Path, run_cli: RunCli, fmt: str) -> None:
    source = tmp_path / "list.csv"
    rows = ["id,category,md5,sha1,sha256,pdq"]
    rows += [
        f"E{n},A1,{fake('md5', n)},{fake('sha1', n)},{fake('sha256', n)},{fake('pdq', n)}" for n in range(3)
    ]
    source.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert run_cli("lists", "import", source, "--name", "src").exit_code == 0
    exported = tmp_path / f"export.{fmt}"
    result = run_cli("lists", "export", "src", "--format", fmt, "-o", exported)
    assert result.exit_code == 0, result.stderr
    imported = run_cli("lists", "import", exported, "--name", "copy")  # auto-detected
    assert imported.exit_code == 0, imported.stderr
    assert f"read as {fmt}" in imported.stderr
    counts = {r["name"]: r["counts"] for r in run_cli("lists", "show", "--json").records()}
    expected = {"md5": 3, "sha1": 3, "sha256": 3} | ({"pdq": 3} if fmt == "ncmec" else {})
    assert counts["copy"] == expected
