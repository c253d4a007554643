"""Hash-list file formats: parsing, error reporting, detection and export round trips.

All hashes here are made up (digests of strings like ``vakta-fixture-1``).
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest

from vakta.lists.formats import ListFormat, detect, list_formats
from vakta.lists.formats.csv import FORMAT as CSV
from vakta.lists.formats.text import FORMAT as TEXT
from vakta.lists.formats.threatexchange import FORMAT as TE
from vakta.lists.formats.vics import FORMAT as VICS
from vakta.lists.model import ListRecord, ParseIssue

FIXTURES = Path(__file__).parent / "fixtures" / "lists"

MD5 = [
    "0cbdd121922a0cbe2224053ba630faad",
    "ab4debe25c1d7c1691e1fe377b1d300b",
    "89748e2c54e749fc5e636fdada652cac",
]
SHA1 = ["407677247bea64a9a92ca7c8ee78bad3570c66cf", "43a0554cee4ed46b47ca97400be101dad675aa1d"]
SHA256 = "1e30188946c2b1eb41415922264bd4aa766d91df508deb998a4eca8291a718fb"
PDQ = "d3dfe7f5e0637227a6c10abb5bbd08f533edf74569bfe4fbce1432acf34a3358"


def run(fmt: ListFormat, data: bytes, kind: str | None = None) -> tuple[list[ListRecord], list[ParseIssue]]:
    """Parse ``data`` completely, split into records and issues."""
    records: list[ListRecord] = []
    issues: list[ParseIssue] = []
    for item in fmt.parse(io.BytesIO(data), kind):
        if isinstance(item, ListRecord):
            records.append(item)
        else:
            issues.append(item)
    return records, issues


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def strip_lines(records: list[ListRecord]) -> list[tuple[object, ...]]:
    """Records without their source position, for comparing across a round trip."""
    return [(r.hashes, r.entry_id, r.category, r.pdq_quality) for r in records]


# --- text -----------------------------------------------------------------------------------


def test_text_infers_md5_and_sha1_by_length() -> None:
    records, issues = run(TEXT, f"{MD5[0]}\n{SHA1[0].upper()}\n".encode())
    assert issues == []
    assert [r.hashes for r in records] == [{"md5": MD5[0]}, {"sha1": SHA1[0]}]
    assert [r.line for r in records] == [1, 2]


def test_text_skips_blank_and_comment_lines_keeping_line_numbers() -> None:
    data = f"# list header\n\n   \n{MD5[0]}\n#{MD5[1]}\n{MD5[2]}\n".encode()
    records, issues = run(TEXT, data)
    assert issues == []
    assert [(r.line, r.hashes["md5"]) for r in records] == [(4, MD5[0]), (6, MD5[2])]


def test_text_tolerates_crlf_trailing_space_and_md5sum_lines() -> None:
    data = f"{MD5[0]}  \r\n{MD5[1]}  some/file name.jpg\r\n{MD5[2]} *binary.bin\r\n\\{SHA1[0]}  a\\\\b\r\n"
    records, issues = run(TEXT, data.encode())
    assert issues == []
    assert [r.hashes for r in records] == [
        {"md5": MD5[0]},
        {"md5": MD5[1]},
        {"md5": MD5[2]},
        {"sha1": SHA1[0]},
    ]


def test_text_64_hex_is_ambiguous_without_kind() -> None:
    records, issues = run(TEXT, f"{MD5[0]}\n{SHA256}\n".encode())
    assert [r.hashes for r in records] == [{"md5": MD5[0]}]
    assert issues == [ParseIssue(2, "64 hex characters can be SHA-256 or PDQ: give --kind")]


@pytest.mark.parametrize("kind", ["sha256", "pdq"])
def test_text_64_hex_with_kind(kind: str) -> None:
    records, issues = run(TEXT, f"{SHA256.upper()}\n".encode(), kind)
    assert issues == []
    assert records[0].hashes == {kind: SHA256}


def test_text_with_kind_reports_other_lengths() -> None:
    records, issues = run(TEXT, f"{SHA256}\n{MD5[0]}\n".encode(), "pdq")
    assert [r.hashes for r in records] == [{"pdq": SHA256}]
    assert [i.line for i in issues] == [2]
    assert "pdq hash must be 64" in issues[0].message


def test_text_invalid_lines_are_reported_and_not_fatal() -> None:
    data = f"{MD5[0]}\nhello\n{'g' * 32}\n{MD5[1][:-1]}\n{MD5[1]}\n".encode()
    records, issues = run(TEXT, data)
    assert [r.line for r in records] == [1, 5]
    assert [i.line for i in issues] == [2, 3, 4]
    assert "non-hex" in issues[1].message
    assert "31 characters" in issues[2].message


def test_text_unknown_kind_is_one_issue_not_one_per_line() -> None:
    records, issues = run(TEXT, f"{MD5[0]}\n{MD5[1]}\n".encode(), "photodna")
    assert records == []
    assert len(issues) == 1
    assert "unknown hash kind 'photodna'" in issues[0].message


def test_text_utf8_bom_is_ignored() -> None:
    records, issues = run(TEXT, b"\xef\xbb\xbf" + f"{MD5[0]}\n".encode())
    assert issues == []
    assert records[0].hashes == {"md5": MD5[0]}


def test_text_latin1_bytes_do_not_crash() -> None:
    data = (
        f"{MD5[0]}  caf".encode()
        + b"\xe9.jpg\n"
        + b"\xff\xfe\xe9"
        + MD5[1].encode()
        + b"\n"
        + MD5[2].encode()
    )
    records, issues = run(TEXT, data)
    assert [r.hashes["md5"] for r in records] == [MD5[0], MD5[2]]
    assert [i.line for i in issues] == [2]


def test_text_utf16_file_with_bom() -> None:
    records, issues = run(TEXT, f"{MD5[0]}\r\n{SHA1[0]}\r\n".encode("utf-16"))
    assert issues == []
    assert [(r.line, r.hashes) for r in records] == [(1, {"md5": MD5[0]}), (2, {"sha1": SHA1[0]})]


def test_text_export_reimports() -> None:
    records = [ListRecord({"md5": MD5[0]}), ListRecord({"sha1": SHA1[0], "md5": MD5[1]})]
    out = io.StringIO()
    TEXT.export(records, out, "my\nlist")
    assert out.getvalue().splitlines()[0] == "# vakta list: my list"
    back, issues = run(TEXT, out.getvalue().encode())
    assert issues == []
    assert [r.hashes for r in back] == [{"md5": MD5[0]}, {"sha1": SHA1[0]}, {"md5": MD5[1]}]


def test_text_parses_a_large_list() -> None:
    """A sanity check that a 200,000-line list goes through; the timing is measured elsewhere."""
    rnd = random.Random(7)
    lines = [f"{rnd.getrandbits(128):032x}" for _ in range(200_000)]
    records, issues = run(TEXT, ("\n".join(lines) + "\n").encode())
    assert issues == []
    assert len(records) == 200_000
    assert records[-1].hashes == {"md5": lines[-1]} and records[-1].line == 200_000


# --- csv ------------------------------------------------------------------------------------


def test_csv_fixture_with_mixed_case_headers() -> None:
    records, issues = run(CSV, fixture("mixed_case_headers.csv"))
    assert [(r.line, r.entry_id, r.category) for r in records] == [
        (2, "101", "1"),
        (3, "102", "2"),
        (4, "103", "1"),
        (6, "105", "3"),
    ]
    assert records[0].hashes == {
        "md5": "5a74134b53ec3ab8e8c95d6824783e3b",
        "sha1": "edf53f97e345fb832e9676cb04cdd5f71bb10051",
    }
    assert records[1].hashes["pdq"] == "7ccc2fc7adf2f9dd17197c215595819dc5ebeca103436ce70bd8cddc5e00a802"
    assert records[1].pdq_quality == 87
    assert records[2].hashes == {"sha1": "793caa7aa1c6bfc676f2977a770bda12635ddce2"}
    assert [(i.line, i.message.split(":")[0]) for i in issues] == [(4, "md5 column"), (5, "row has no hash")]


def test_csv_any_column_order_case_and_aliases() -> None:
    data = f"Notes,PDQ_HASH,Quality,Entry_ID,SHA256,CATEGORY\nx,{PDQ},90,e-1,{SHA256},A1\n"
    records, issues = run(CSV, data.encode())
    assert issues == []
    assert records == [
        ListRecord({"pdq": PDQ, "sha256": SHA256}, entry_id="e-1", category="A1", line=2, pdq_quality=90)
    ]


@pytest.mark.parametrize("delimiter", [",", "\t", ";"])
def test_csv_delimiters(delimiter: str) -> None:
    data = delimiter.join(["id", "md5", "sha1"]) + "\n" + delimiter.join(["7", MD5[0], SHA1[0]]) + "\n"
    assert CSV.sniff(data.encode(), "list.txt")
    records, issues = run(CSV, data.encode())
    assert issues == []
    assert records[0].hashes == {"md5": MD5[0], "sha1": SHA1[0]}


def test_csv_bad_hash_kept_apart_from_good_one() -> None:
    data = f"md5,sha1,sha256\n{MD5[0]},zz,{SHA1[0]}\n"
    records, issues = run(CSV, data.encode())
    assert [r.hashes for r in records] == [{"md5": MD5[0]}]
    assert [i.line for i in issues] == [2, 2]
    assert issues[0].message.startswith("sha1 column")
    assert issues[1].message.startswith("sha256 column")


def test_csv_generic_hash_column_uses_kind_or_length() -> None:
    data = f"hash,category\n{MD5[0]},1\n{PDQ},2\n".encode()
    records, issues = run(CSV, data)
    assert [r.hashes for r in records] == [{"md5": MD5[0]}]
    assert issues[0].line == 3 and "give --kind" in issues[0].message
    records, issues = run(CSV, f"hash\n{PDQ}\n".encode(), "pdq")
    assert (records[0].hashes, issues) == ({"pdq": PDQ}, [])


def test_csv_header_without_hash_column() -> None:
    records, issues = run(CSV, b"name,size\na,1\n")
    assert records == []
    assert issues == [ParseIssue(1, "header names no hash column (md5, sha1, sha256, pdq)")]


def test_csv_comments_blank_rows_and_bad_quality() -> None:
    data = f"# exported for tests\n\nmd5,quality\n\n,,\n{MD5[0]},high\n# {MD5[1]}\n".encode()
    records, issues = run(CSV, data)
    assert [(r.line, r.pdq_quality) for r in records] == [(6, None)]
    assert issues == [ParseIssue(6, "PDQ quality 'high' is not a whole number")]


def test_csv_oversized_field_is_reported_and_parsing_goes_on() -> None:
    data = f'md5,notes\n{MD5[0]},"{"x" * 200_000}"\n{MD5[1]},ok\n'.encode()
    records, issues = run(CSV, data)
    assert [r.hashes["md5"] for r in records] == [MD5[1]]
    assert len(issues) == 1 and "unreadable CSV" in issues[0].message


def test_csv_latin1_cells_do_not_lose_the_row() -> None:
    data = b"md5,notes\n" + MD5[0].encode() + b",caf\xe9\n"
    records, issues = run(CSV, data)
    assert issues == []
    assert records[0].hashes == {"md5": MD5[0]}


def test_csv_round_trip() -> None:
    records, _ = run(CSV, fixture("mixed_case_headers.csv"))
    out = io.StringIO()
    CSV.export(records, out, "fixture")
    assert out.getvalue().splitlines()[0] == "id,category,md5,sha1,sha256,pdq"
    back, issues = run(CSV, out.getvalue().encode())
    assert issues == []
    # PDQ quality is not part of the export header.
    expected = [(h, i, c, None) for h, i, c, _ in strip_lines(records)]
    assert strip_lines(back) == expected


# --- threatexchange -------------------------------------------------------------------------


def test_threatexchange_dataset_print() -> None:
    records, issues = run(TE, fixture("threatexchange_dataset.txt"))
    assert [(r.line, r.hashes, r.category) for r in records] == [
        (1, {"pdq": PDQ}, "POSITIVE_CLASS"),
        (2, {"pdq": "0d1dd6767764818f45469fbfdd74d9f63138b2bbb3efa8fe8d6e8854679ad4ee"}, "POSITIVE_CLASS"),
        (3, {"md5": MD5[2]}, "POSITIVE_CLASS"),
        (6, {"pdq": "783ca09f40235b4ac788b1ece0d79a2528996f27ffcd9f9fbd6673bc331fc25a"}, "POSITIVE_CLASS"),
    ]
    assert [(i.line, i.message) for i in issues[:3]] == [
        (4, "unsupported signal type raw_text"),
        (5, "unsupported signal type url"),
        (7, "skipped: opinion NEGATIVE_CLASS (false positive or test data)"),
    ]
    assert issues[3].line == 8 and "must be 64 hex characters" in issues[3].message
    assert len(issues) == 4


def test_threatexchange_plain_and_collab_first_lines() -> None:
    data = f"pdq {PDQ}\n'Old Collab' video_md5 {MD5[0]} POSITIVE_CLASS\nphoto_md5 {MD5[1]}\nsha256 {SHA256}\n"
    records, issues = run(TE, data.encode())
    assert issues == []
    assert [r.hashes for r in records] == [{"pdq": PDQ}, {"md5": MD5[0]}, {"md5": MD5[1]}, {"sha256": SHA256}]


def test_threatexchange_single_type_output_needs_kind() -> None:
    data = f"{PDQ} 'Sample Data' POSITIVE_CLASS\n".encode()
    records, issues = run(TE, data)
    assert records == [] and issues == [ParseIssue(1, "no signal type on the line: give --kind")]
    records, issues = run(TE, data, "pdq")
    assert issues == [] and records[0].hashes == {"pdq": PDQ}


def test_threatexchange_unterminated_quote_and_missing_value() -> None:
    data = f"pdq {PDQ} 'broken\npdq\nvideo_md5 {MD5[0]}\n'Only Collab'\npdq 'Collab' POSITIVE_CLASS\n"
    records, issues = run(TE, data.encode())
    assert [r.line for r in records] == [3]
    assert [(i.line, i.message) for i in issues] == [
        (1, "unterminated quoted collaboration name"),
        (2, "pdq signal has no value"),
        (4, "no signal after the collaboration name"),
        (5, "pdq signal has no value"),
    ]


def test_threatexchange_csv_variant() -> None:
    data = (
        "signal_type,signal_str,collab,category,tags\r\n"
        f"pdq,{PDQ},Sample Data,POSITIVE_CLASS,a b\r\n"
        f"video_md5,{MD5[0]},Sample Data,NEGATIVE_CLASS,\r\n"
        'raw_text,"some, text",Sample Data,POSITIVE_CLASS,\r\n'
    ).encode()
    assert TE.sniff(data, "collab.csv")
    records, issues = run(TE, data)
    assert [(r.line, r.hashes, r.category) for r in records] == [(2, {"pdq": PDQ}, "POSITIVE_CLASS")]
    assert [i.line for i in issues] == [3, 4]


def test_threatexchange_export_round_trip() -> None:
    records = [
        ListRecord({"pdq": PDQ}),
        ListRecord({"md5": MD5[0], "sha256": SHA256}),
        ListRecord({"sha1": SHA1[0]}),
    ]
    out = io.StringIO()
    TE.export(records, out, "x")
    assert out.getvalue().splitlines() == [
        f"pdq {PDQ}",
        f"video_md5 {MD5[0]}",
        f"video_sha256 {SHA256}",
        f"sha1 {SHA1[0]}",
    ]
    back, issues = run(TE, out.getvalue().encode())
    assert issues == []
    assert [r.hashes for r in back] == [{"pdq": PDQ}, {"md5": MD5[0]}, {"sha256": SHA256}, {"sha1": SHA1[0]}]


# --- vics -----------------------------------------------------------------------------------


def test_vics_1_3_media_file() -> None:
    records, issues = run(VICS, fixture("vics_1_3_media.json"))
    assert [(r.line, r.entry_id, r.category, r.hashes) for r in records] == [
        (1, "1", "1", {"md5": MD5[0], "sha1": SHA1[0]}),
        (2, "2", "2", {"md5": MD5[1]}),
        (3, "3", "0", {"sha1": "464548c715ad79c484676ee0c38d58bca0b4fe1d"}),
        (
            5,
            "5",
            "3",
            {
                "md5": "5a74134b53ec3ab8e8c95d6824783e3b",
                "sha256": "8fcdc54814ccbd6a23bdfdb2e9566338b88bec44779b823bf766c3069cdc4a96",
            },
        ),
    ]
    assert [i.line for i in issues] == [3, 4]
    assert issues[0].message.startswith("record 3 (MediaID 3): md5 hash must be 32")
    assert issues[1].message == "record 4 (MediaID 4): no usable hash (MD5, SHA1, SHA256 or PDQ)"


def test_vics_2_0_cases_file_reads_every_case() -> None:
    records, issues = run(VICS, fixture("vics_2_0_cases.json"))
    assert issues == []
    assert [(r.line, r.entry_id, r.category, r.hashes) for r in records] == [
        (
            1,
            "10",
            "1",
            {
                "md5": "86322e22e99efddba6df802c85045ae5",
                "sha1": "fb95d1fa8cba291e2662dee4a8756589fd1a0e63",
                "pdq": "7ccc2fc7adf2f9dd17197c215595819dc5ebeca103436ce70bd8cddc5e00a802",
            },
        ),
        (
            2,
            "11",
            "2",
            {
                "md5": "d3f847f3f46921b47c41b8e66b660aa8",
                "sha256": "b43ecc5d251426cf9998d82b8b47c7bdfabb87c508c28455e782d3a49b7c16ac",
            },
        ),
        (3, "12", "0", {"sha1": "1c4cc3e96d58f9d50317ed9a87785babf170bd9b"}),
    ]


@pytest.mark.parametrize(
    "envelope",
    [
        {"odata.metadata": "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/1.3.xml#Media"},
        {
            "@odata.context": "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/US/$metadata#Media"
        },
    ],
)
def test_vics_media_hash_set_v1_and_v2(envelope: dict[str, str]) -> None:
    media = [
        {
            "MediaID": 1,
            "Category": 2,
            "MD5": MD5[0].upper(),
            "AlternativeHashes": [{"HashName": "PDQ", "HashValue": PDQ}],
        }
    ]
    data = json.dumps({**envelope, "value": media}).encode()
    assert VICS.sniff(data[:64], "set.json")
    records, issues = run(VICS, data)
    assert issues == []
    assert records == [ListRecord({"md5": MD5[0], "pdq": PDQ}, entry_id="1", category="2", line=1)]


def test_vics_cases_v1_and_bare_media_array() -> None:
    case_v1 = {
        "odata.metadata": "http://github.com/ICMEC/ProjectVic/DataModels/1.3.xml#Cases",
        "value": [{"Media": [{"MD5": MD5[0]}]}],
    }
    bare = [{"MD5": MD5[1], "Category": None, "MediaID": None}]
    assert [r.hashes for r in run(VICS, json.dumps(case_v1).encode())[0]] == [{"md5": MD5[0]}]
    records, issues = run(VICS, json.dumps(bare).encode())
    assert issues == []
    assert records == [ListRecord({"md5": MD5[1]}, line=1)]


def test_vics_invalid_json_is_one_issue() -> None:
    data = b'{\n  "value": [\n    {"MD5": "x",}\n  ]\n}'
    records, issues = run(VICS, data)
    assert records == []
    assert len(issues) == 1
    assert issues[0].line == 3 and issues[0].message.startswith("not valid JSON")


def test_vics_odd_records_are_issues() -> None:
    doc = {
        "value": [
            "just text",
            {"MD5": 12345},
            {"SHA1": SHA1[0], "AlternativeHashes": [{"HashName": "SHA256"}, "x"]},
        ]
    }
    records, issues = run(VICS, json.dumps(doc).encode())
    assert [r.hashes for r in records] == [{"sha1": SHA1[0]}]
    assert [i.message.split(":")[0] for i in issues] == ["record 1", "record 2"]


def test_vics_document_without_media() -> None:
    records, issues = run(VICS, b'{"odata.metadata": "x"}')
    assert records == [] and issues == [ParseIssue(1, "no 'value' or 'Media' array at the top level")]


def test_vics_bom_and_latin1_text() -> None:
    doc = {"value": [{"MD5": MD5[0], "MediaID": "caf\u00e9"}]}
    records, _ = run(VICS, b"\xef\xbb\xbf" + json.dumps(doc).encode())
    assert records[0].entry_id == "caf\u00e9"
    records, issues = run(VICS, json.dumps(doc, ensure_ascii=False).encode("latin-1"))
    assert issues == [] and records[0].entry_id == "caf\u00e9"


def test_vics_round_trip() -> None:
    records = [
        ListRecord(
            {"md5": MD5[0], "sha1": SHA1[0], "sha256": SHA256, "pdq": PDQ}, entry_id="1", category="2"
        ),
        ListRecord({"pdq": PDQ}, entry_id="007", category="B-3"),
        ListRecord({"sha1": SHA1[1]}),
    ]
    out = io.StringIO()
    VICS.export(records, out, "fixture")
    doc = json.loads(out.getvalue())
    assert doc["@odata.context"].endswith("/2.0.xml/Default/$metadata#Media")
    assert doc["value"][0]["MediaID"] == 1 and doc["value"][0]["MD5"] == MD5[0].upper()
    assert doc["value"][0]["AlternativeHashes"] == [
        {"HashName": "SHA256", "HashValue": SHA256},
        {"HashName": "PDQ", "HashValue": PDQ},
    ]
    back, issues = run(VICS, out.getvalue().encode())
    assert issues == []
    assert strip_lines(back) == strip_lines(records)


def test_vics_fixture_round_trip() -> None:
    records, _ = run(VICS, fixture("vics_2_0_cases.json"))
    out = io.StringIO()
    VICS.export(records, out, "cases")
    back, issues = run(VICS, out.getvalue().encode())
    assert issues == []
    assert back == records


def test_vics_export_of_nothing_is_valid_json() -> None:
    out = io.StringIO()
    VICS.export([], out, "empty")
    assert json.loads(out.getvalue())["value"] == []


# --- detection and robustness ---------------------------------------------------------------


def test_entry_points_register_all_formats() -> None:
    assert {"text", "csv", "threatexchange", "vics"} <= set(list_formats.names())
    assert list_formats.get("vics") is VICS


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vics_1_3_media.json", "vics"),
        ("vics_2_0_cases.json", "vics"),
        ("threatexchange_dataset.txt", "threatexchange"),
        ("mixed_case_headers.csv", "csv"),
    ],
)
def test_detect_fixtures(name: str, expected: str) -> None:
    assert detect(fixture(name)[:65536], name).name == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (f"{MD5[0]}\n{MD5[1]}\n".encode(), "text"),
        (f"{MD5[0]}  file.jpg\n".encode(), "text"),
        (f"# md5 list, sha1 too\n{MD5[0]}\n".encode(), "text"),
        (b"", "text"),
        (b"\xef\xbb\xbf" + f"md5;category\n{MD5[0]};1\n".encode(), "csv"),
        (f"md5\n{MD5[0]}\n".encode(), "text"),
        (f"\n\npdq {PDQ}\n".encode(), "threatexchange"),
        (b"signal_type,signal_str,collab,category,tags\n", "threatexchange"),
        (b'  \n{"@odata.context": "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml', "vics"),
        (b'[{"MediaID": 1, "MD5": "', "vics"),
        (b'{"odata.metadata":"x","value":[', "vics"),
    ],
)
def test_detect_heads(head: bytes, expected: str) -> None:
    assert detect(head, "list").name == expected


GARBAGE = [
    b"",
    b"\xef\xbb\xbf",
    b"\x00\x01\x02\xff\xfe\x80\n\x00\x00\n",
    bytes(random.Random(3).getrandbits(8) for _ in range(4096)),
    b'{"value": [',
    b'md5,sha1\n"unterminated\n',
    b"'x'\n'y' \n",
    b"'''\n\"\n\\\n",
    b"\xff\xfe" + "md5\n\ud800".encode("utf-16-le", errors="surrogatepass"),
]


@pytest.mark.parametrize("fmt", [TEXT, CSV, TE, VICS], ids=lambda f: f.name)
@pytest.mark.parametrize("data", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_never_raises(fmt: ListFormat, data: bytes) -> None:
    records, issues = run(fmt, data)
    assert all(r.hashes for r in records)
    assert all(i.line >= 0 and i.message for i in issues)
    assert isinstance(fmt.sniff(data, "x"), bool)
