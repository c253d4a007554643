"""Reports of a triage: the HTML report a person reads, and the VICS case file other tools import."""

from __future__ import annotations

import html.parser
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from vakta import testsignature

if TYPE_CHECKING:
    from conftest import ImageFactory, RunCli

HOSTILE = "<img src=x onerror=alert(1)><script>&\"'.jpg"


class _Tags(html.parser.HTMLParser):
    """Every tag in a document, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _evidence(tmp_path: Path, images: ImageFactory) -> Path:
    root = tmp_path / "evidence"
    root.mkdir()
    signature = testsignature.image_bytes()
    (root / HOSTILE).write_bytes(signature)
    with zipfile.ZipFile(root / "old.zip", "w") as archive:
        archive.writestr("a/b/sig.jpg", signature)
        archive.writestr("a/plain.png", images.encode(images.pattern(3), "PNG"))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)
    images.save(images.pattern(4), root / "holiday.jpg", "JPEG")
    return root


def test_html_report_is_self_contained_escaped_and_holds_no_picture(
    tmp_path: Path, images: ImageFactory, run_cli: RunCli
) -> None:
    root = _evidence(tmp_path, images)
    report = tmp_path / "report.html"

    result = run_cli("scan", root, "--format", "html", "-o", report)

    assert result.exit_code == 1, result.stderr
    page = report.read_text(encoding="utf-8")
    parsed = _Tags()
    parsed.feed(page)
    text = "".join(parsed.text)
    assert "script" not in parsed.tags and "img" not in parsed.tags  # the hostile name is text
    assert not any(name in ("src", "href") for name, _ in parsed.attrs)  # nothing loaded from anywhere
    assert HOSTILE in text
    assert f"{root / 'old.zip'} > a/b/sig.jpg" in text  # the location chain of a member
    assert f"List {testsignature.LIST_NAME}" in text
    assert testsignature.records()[0].hashes["md5"] in text
    assert "broken.jpg" in text and "Errors: 1" in text
    assert "Vakta " in text and "PDQ threshold" in text and "fmt=html" in text
    assert "holiday.jpg" not in text  # a file that neither matched nor failed is not listed


def test_vics_case_export_names_containers_and_reimports_losslessly(
    tmp_path: Path, images: ImageFactory, run_cli: RunCli
) -> None:
    root = _evidence(tmp_path, images)
    case = tmp_path / "case.json"
    assert run_cli("scan", root, "--format", "vics", "-o", case).exit_code == 1
    media = {m["MediaFiles"][0]["FilePath"]: m for m in json.loads(case.read_text())["value"][0]["Media"]}
    member = media[f"{root / 'old.zip'} > a/b/sig.jpg"]
    archive_md5 = run_cli("hash", root / "old.zip", "--no-containers").records()[0]["md5"]
    assert member["MediaFiles"][0]["FileName"] == "sig.jpg"
    assert member["MediaFiles"][0]["ParentFilePath"] == str(root / "old.zip")
    assert member["MediaFiles"][0]["ParentMD5"] == archive_md5.upper()
    assert "ParentMD5" not in media[str(root / HOSTILE)]["MediaFiles"][0]

    assert run_cli("lists", "import", case, "--name", "case").exit_code == 0
    exported = run_cli("lists", "export", "case", "--format", "csv").csv_rows()
    assert {(r["md5"], r["sha1"], r["category"]) for r in exported} == {
        (m["MD5"].lower(), m["SHA1"].lower(), str(m["Category"])) for m in media.values()
    }
