"""The ``vakta`` command line end to end: hash, lists, scan (matching, formats, options), test signature."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from vakta.sinks.csv import COLUMNS

if TYPE_CHECKING:
    from conftest import ImageFactory, KnownList, RunCli

HASH_KEYS = {"path", "size", "type", "md5", "sha1", "sha256", "pdq", "pdq_quality"}
PDQ_THRESHOLD = 31


def _digests(data: bytes) -> dict[str, str]:
    return {
        "md5": hashlib.md5(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _signals(record: dict[str, Any]) -> set[str]:
    return {m["signal"] for m in record["matches"]}


# --------------------------------------------------------------------------- vakta hash


def test_hash_prints_digests_and_pdq_with_type_sniffed_from_content(
    tmp_path: Path, images: ImageFactory, run_cli: RunCli
) -> None:
    png_as_txt = images.save(images.pattern(5), tmp_path / "picture.txt", "PNG")
    jpeg_as_png = images.save(images.gradient(), tmp_path / "photo.png", "JPEG", quality=90)
    text_as_jpg = tmp_path / "notes.jpg"
    text_as_jpg.write_bytes(b"just some notes, not a picture\n" * 10)

    result = run_cli("hash", png_as_txt, jpeg_as_png, text_as_jpg)

    assert result.exit_code == 0, result.stderr
    records = result.by_name()
    assert list(records) == ["picture.txt", "photo.png", "notes.jpg"]  # one line per file, in order
    for name, record in records.items():
        data = (tmp_path / name).read_bytes()
        assert record["path"] == str(tmp_path / name)
        assert record["size"] == len(data)
        assert {k: record[k] for k in ("md5", "sha1", "sha256")} == _digests(data)
        assert "error" not in record
    assert records["picture.txt"]["type"] == "image/png"
    assert records["photo.png"]["type"] == "image/jpeg"
    for name in ("picture.txt", "photo.png"):
        assert set(records[name]) == HASH_KEYS
        assert len(records[name]["pdq"]) == 64
        int(records[name]["pdq"], 16)
        assert 0 <= records[name]["pdq_quality"] <= 100
    # Not an image whatever its name says: digests only, and no error for that.
    assert not records["notes.jpg"]["type"].startswith("image/")
    assert set(records["notes.jpg"]) == HASH_KEYS - {"pdq", "pdq_quality"}


def test_hash_same_bytes_same_result_whatever_the_name(
    tmp_path: Path, images: ImageFactory, run_cli: RunCli
) -> None:
    first = images.save(images.pattern(6), tmp_path / "one.png")
    second = tmp_path / "two.dat"
    shutil.copyfile(first, second)
    records = run_cli("hash", first, second).records()
    strip = [{k: v for k, v in r.items() if k != "path"} for r in records]
    assert strip[0] == strip[1]


def test_hash_reports_error_key_for_undecodable_and_missing_files(
    tmp_path: Path, images: ImageFactory, run_cli: RunCli
) -> None:
    good = images.save(images.pattern(7), tmp_path / "good.png")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:40] + b"\x00garbage" * 50)
    missing = tmp_path / "missing.png"

    result = run_cli("hash", corrupt, missing, good)

    assert result.exit_code == 2
    records = result.by_name()
    assert set(records) == {"corrupt.png", "missing.png", "good.png"}
    assert records["corrupt.png"]["error"]
    assert records["corrupt.png"]["type"] == "image/png"
    assert records["corrupt.png"]["md5"] == hashlib.md5(corrupt.read_bytes()).hexdigest()
    assert "pdq" not in records["corrupt.png"]
    assert records["missing.png"]["error"]
    assert "md5" not in records["missing.png"]
    assert "error" not in records["good.png"]
    assert records["good.png"]["pdq"]


# --------------------------------------------------------------------------- matching


@dataclass
class ScanFolder:
    root: Path
    benign: Path


@pytest.fixture
def scan_folder(tmp_path: Path, images: ImageFactory, known: KnownList) -> ScanFolder:
    """Copies of original A (exact, resized + re-encoded, rotated, mirrored) and an unrelated image."""
    root = tmp_path / "scan"
    root.mkdir()
    shutil.copyfile(known.a, root / "exact.png")
    original = Image.open(known.a)
    small = original.resize((original.width * 13 // 20, original.height * 13 // 20), Image.Resampling.LANCZOS)
    images.save(small, root / "resized.jpg", "JPEG", quality=70)
    images.save(original.transpose(Image.Transpose.ROTATE_90), root / "rot90.png")
    images.save(original.transpose(Image.Transpose.FLIP_LEFT_RIGHT), root / "mirror.png")
    benign = images.save(images.pattern(99), root / "benign.png")
    return ScanFolder(root, benign)


def test_scan_finds_exact_resized_rotated_and_mirrored_copies(
    scan_folder: ScanFolder, known: KnownList, run_cli: RunCli
) -> None:
    result = run_cli("scan", scan_folder.root, "--workers", 1)

    assert result.exit_code == 1, result.stderr
    found = result.by_name()
    assert set(found) == {"exact.png", "resized.jpg", "rot90.png", "mirror.png"}  # benign not reported
    for record in found.values():
        assert HASH_KEYS - {"pdq", "pdq_quality"} <= set(record)
        assert record["errors"] == []
        for match in record["matches"]:
            assert {"list", "entry_id", "category", "signal", "distance", "transform"} <= set(match)
            assert match["list"] == "known"
            assert match["entry_id"] == known.entry_ids["a"]
            assert match["category"] == "1"

    exact = {m["signal"]: m for m in found["exact.png"]["matches"]}
    assert exact["md5"]["distance"] == 0
    assert exact["md5"]["transform"] is None
    assert exact["sha1"]["distance"] == 0
    assert found["exact.png"]["md5"] == known.hashes["a"]["md5"]

    for name, transform in (("resized.jpg", "original"), ("rot90.png", "rotate90"), ("mirror.png", "mirror")):
        matches = found[name]["matches"]
        assert _signals(found[name]) == {"pdq"}, name
        assert len(matches) == 1, name
        assert 0 <= matches[0]["distance"] <= PDQ_THRESHOLD, name
        assert matches[0]["transform"] == transform, name


def test_scan_all_reports_every_file_including_unmatched(scan_folder: ScanFolder, run_cli: RunCli) -> None:
    result = run_cli("scan", scan_folder.root, "--all", "--workers", 1)
    found = result.by_name()
    assert set(found) == {"exact.png", "resized.jpg", "rot90.png", "mirror.png", "benign.png"}
    benign = found["benign.png"]
    assert benign["matches"] == []
    assert benign["errors"] == []
    assert benign["md5"] == hashlib.md5(scan_folder.benign.read_bytes()).hexdigest()
    assert benign["type"] == "image/png"
    assert len(benign["pdq"]) == 64


def test_threshold_zero_turns_off_near_matches(scan_folder: ScanFolder, run_cli: RunCli) -> None:
    default = run_cli("scan", scan_folder.root, "--workers", 1).by_name()
    assert any(m["distance"] > 0 for m in default["resized.jpg"]["matches"])  # control

    result = run_cli("scan", scan_folder.root, "--threshold", 0, "--workers", 1)
    assert result.exit_code == 1
    found = result.by_name()
    # Lossless rotations may still hash identically; a resized, re-encoded copy cannot.
    assert "resized.jpg" not in found
    assert "exact.png" in found
    assert all(m["distance"] == 0 for r in found.values() for m in r["matches"])


def test_unrelated_image_alone_is_not_matched_and_exits_0(
    scan_folder: ScanFolder, known: KnownList, run_cli: RunCli
) -> None:
    result = run_cli("scan", scan_folder.benign, "--all", "--workers", 1)
    assert result.exit_code == 0, result.stderr
    [record] = result.records()
    assert record["matches"] == []


# --------------------------------------------------------------------------- exit codes


def test_exit_code_2_on_read_errors_without_matches(
    tmp_path: Path, images: ImageFactory, known: KnownList, run_cli: RunCli
) -> None:
    folder = tmp_path / "errors"
    images.save(images.pattern(50), folder / "fine.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\xff" * 200)
    result = run_cli("scan", folder, "--workers", 1)
    assert result.exit_code == 2
    found = result.by_name()
    assert set(found) == {"broken.png"}  # errors are reported even without --all
    assert found["broken.png"]["errors"]
    assert found["broken.png"]["matches"] == []


def test_exit_code_1_when_a_match_and_an_error(
    tmp_path: Path, images: ImageFactory, known: KnownList, run_cli: RunCli
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copyfile(known.b, folder / "copy.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\xff" * 200)
    result = run_cli("scan", folder, "--workers", 1)
    assert result.exit_code == 1
    assert set(result.by_name()) == {"copy.png", "broken.png"}


def test_exit_code_2_for_a_missing_target(tmp_path: Path, run_cli: RunCli) -> None:
    result = run_cli("scan", tmp_path / "does-not-exist", "--workers", 1)
    assert result.exit_code == 2
    [record] = result.records()
    assert record["errors"]


# --------------------------------------------------------------------------- report formats


def test_csv_report_has_one_row_per_match(scan_folder: ScanFolder, run_cli: RunCli) -> None:
    result = run_cli("scan", scan_folder.root, "--format", "csv", "--workers", 1)
    assert result.exit_code == 1
    reader = csv.DictReader(io.StringIO(result.stdout))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    rows = list(reader)
    by_file: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_file.setdefault(Path(row["path"]).name, []).append(row)
    assert set(by_file) == {"exact.png", "resized.jpg", "rot90.png", "mirror.png"}
    assert {r["signal"] for r in by_file["exact.png"]} == {"md5", "sha1", "pdq"}
    assert all(r["list"] == "known" and r["entry_id"] == "A-1" for r in rows)
    [rotated] = by_file["rot90.png"]
    assert rotated["transform"] == "rotate90"
    assert 0 <= int(rotated["distance"]) <= PDQ_THRESHOLD


def test_vics_report_is_valid_json_with_hashes_and_no_content(
    scan_folder: ScanFolder, run_cli: RunCli
) -> None:
    result = run_cli("scan", scan_folder.root, "--format", "vics", "--workers", 1)
    assert result.exit_code == 1
    document = result.json()
    [case] = document["value"]
    media = case["Media"]
    assert len(media) == 4
    by_name = {m["MediaFiles"][0]["FileName"]: m for m in media}
    assert set(by_name) == {"exact.png", "resized.jpg", "rot90.png", "mirror.png"}
    for name, record in by_name.items():
        data = (scan_folder.root / name).read_bytes()
        digests = _digests(data)
        assert record["MD5"] == digests["md5"].upper()
        assert record["SHA1"] == digests["sha1"].upper()
        assert record["MediaSize"] == len(data)
        assert set(record["MediaFiles"][0]) <= {"FileName", "FilePath"}
        # Hashes and provenance only: no trace of the bytes themselves.
        for encoded in (base64.b64encode(data[:48]).decode(), data[:48].hex(), data[:48].hex().upper()):
            assert encoded not in result.stdout
    assert len({m["MediaID"] for m in media}) == 4


def test_vics_report_imports_back_as_a_list(scan_folder: ScanFolder, run_cli: RunCli, tmp_path: Path) -> None:
    """A case file Vakta writes is one the field's tools (and Vakta) read as a hash set."""
    report = tmp_path / "case.json"
    assert run_cli("scan", scan_folder.root, "--format", "vics", "--output", report).exit_code == 1
    imported = run_cli("lists", "import", report, "--name", "from-case")
    assert imported.exit_code == 0, imported.stderr
    assert "4 records read as vics" in imported.stderr
    again = run_cli("scan", scan_folder.root, "--list", "from-case", "--no-test-list", "--threshold", "0")
    assert set(again.by_name()) == {"exact.png", "resized.jpg", "rot90.png", "mirror.png"}


def test_vics_report_without_matches_is_valid_json(scan_folder: ScanFolder, run_cli: RunCli) -> None:
    result = run_cli("scan", scan_folder.benign, "--format", "vics", "--workers", 1)
    assert result.exit_code == 0
    assert result.json()["value"][0]["Media"] == []


def test_summary_report_is_one_json_object(scan_folder: ScanFolder, run_cli: RunCli) -> None:
    result = run_cli("scan", scan_folder.root, "--format", "summary", "--workers", 1)
    assert result.exit_code == 1
    summary = result.json()
    assert summary["files"] == 5
    assert summary["matched_files"] == 4
    assert summary["errors"] == 0
    assert summary["bytes"] == sum(p.stat().st_size for p in scan_folder.root.iterdir())


def test_output_option_writes_the_report_to_a_file(
    tmp_path: Path, scan_folder: ScanFolder, run_cli: RunCli
) -> None:
    report = tmp_path / "report.jsonl"
    result = run_cli("scan", scan_folder.root, "--output", report, "--workers", 1)
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert {Path(r["path"]).name for r in lines} == {"exact.png", "resized.jpg", "rot90.png", "mirror.png"}


def test_output_to_an_unwritable_place_fails_with_2(
    tmp_path: Path, scan_folder: ScanFolder, run_cli: RunCli
) -> None:
    result = run_cli("scan", scan_folder.root, "--output", tmp_path, "--workers", 1)
    assert result.exit_code == 2
    assert "cannot write" in result.stderr


# --------------------------------------------------------------------------- list selection


def test_list_option_selects_lists(
    tmp_path: Path, scan_folder: ScanFolder, known: KnownList, run_cli: RunCli
) -> None:
    shutil.copyfile(known.b, scan_folder.root / "b-copy.png")
    b_list = tmp_path / "b.txt"
    b_list.write_text(known.hashes["b"]["md5"] + "\n", encoding="utf-8")
    assert run_cli("lists", "import", b_list, "--name", "only-b", "--format", "text").exit_code == 0

    only_b = run_cli("scan", scan_folder.root, "--list", "only-b", "--workers", 1).by_name()
    assert set(only_b) == {"b-copy.png"}
    assert [m["list"] for m in only_b["b-copy.png"]["matches"]] == ["only-b"]

    both = run_cli("scan", scan_folder.root, "--workers", 1).by_name()
    assert {m["list"] for m in both["b-copy.png"]["matches"]} == {"known", "only-b"}
    assert "exact.png" in both

    known_only = run_cli("scan", scan_folder.root, "--list", "known", "--workers", 1).by_name()
    assert {m["list"] for m in known_only["b-copy.png"]["matches"]} == {"known"}


def test_unknown_list_is_an_error(scan_folder: ScanFolder, run_cli: RunCli) -> None:
    result = run_cli("scan", scan_folder.root, "--list", "no-such-list", "--workers", 1)
    assert result.exit_code == 2
    assert "no-such-list" in result.stderr
    assert result.stdout == ""


# --------------------------------------------------------------------------- known-good (--ignore) lists


def test_ignore_list_skips_a_file_that_would_match_by_pdq(
    tmp_path: Path, images: ImageFactory, known: KnownList, run_cli: RunCli
) -> None:
    folder = tmp_path / "shared"
    near_copy = images.save(Image.open(known.a), folder / "near.jpg", "JPEG", quality=92)
    images.save(images.pattern(60), folder / "other.png")

    before = run_cli("scan", folder, "--workers", 1).by_name()
    assert _signals(before["near.jpg"]) == {"pdq"}  # control: it does match by PDQ

    good = tmp_path / "good.txt"
    good.write_text(hashlib.md5(near_copy.read_bytes()).hexdigest() + "\n", encoding="utf-8")
    imported = run_cli("lists", "import", good, "--name", "good", "--format", "text", "--ignore")
    assert imported.exit_code == 0, imported.stderr

    quiet = run_cli("scan", folder, "--workers", 1)
    assert quiet.exit_code == 0
    assert quiet.records() == []

    everything = run_cli("scan", folder, "--all", "--workers", 1)
    assert everything.exit_code == 0
    found = everything.by_name()
    assert found["near.jpg"]["matches"] == []
    assert "good" in found["near.jpg"]["skipped"]
    assert "pdq" not in found["near.jpg"]  # skipped before decoding
    assert found["near.jpg"]["md5"] == hashlib.md5(near_copy.read_bytes()).hexdigest()
    assert "skipped" not in found["other.png"]

    # Also when the scan names lists explicitly.
    named = run_cli("scan", folder, "--list", "known", "--all", "--workers", 1).by_name()
    assert named["near.jpg"]["matches"] == []
    assert "skipped" in named["near.jpg"]


# --------------------------------------------------------------------------- lists show / remove / export


@pytest.mark.parametrize("kind", ["sha256", "pdq"])
def test_text_list_of_64_hex_hashes_matches_by_the_given_kind(
    tmp_path: Path, scan_folder: ScanFolder, known: KnownList, run_cli: RunCli, kind: str
) -> None:
    hashes = tmp_path / f"{kind}.txt"
    hashes.write_text(known.hashes["a"][kind] + "\n", encoding="utf-8")
    imported = run_cli("lists", "import", hashes, "--name", kind, "--format", "text", "--kind", kind)
    assert imported.exit_code == 0, imported.stderr

    found = run_cli("scan", scan_folder.root / "exact.png", "--list", kind, "--workers", 1).by_name()
    assert [(m["list"], m["signal"], m["distance"]) for m in found["exact.png"]["matches"]] == [
        (kind, kind, 0)
    ]


def test_lists_show_json_includes_builtin_and_imported_lists(known: KnownList, run_cli: RunCli) -> None:
    result = run_cli("lists", "show", "--json")
    assert result.exit_code == 0
    rows = {r["name"]: r for r in result.records()}
    assert rows["vakta-test"]["builtin"] is True
    assert rows["known"]["builtin"] is False
    assert rows["known"]["purpose"] == "detect"
    assert rows["known"]["counts"] == {"md5": 2, "sha1": 2, "pdq": 2}
    assert rows["known"]["imports"] == 1

    table = run_cli("lists", "show")
    assert table.exit_code == 0
    assert "known" in table.stdout


def test_lists_remove_drops_the_list_and_its_matches(scan_folder: ScanFolder, run_cli: RunCli) -> None:
    assert run_cli("lists", "remove", "known").exit_code == 0
    names = {r["name"] for r in run_cli("lists", "show", "--json").records()}
    assert names == {"vakta-test"}
    result = run_cli("scan", scan_folder.root, "--workers", 1)
    assert result.exit_code == 0
    assert result.records() == []
    assert run_cli("lists", "remove", "known").exit_code == 2


def test_lists_export_csv_holds_every_hash(known: KnownList, run_cli: RunCli) -> None:
    result = run_cli("lists", "export", "known", "--format", "csv")
    assert result.exit_code == 0
    rows = result.csv_rows()
    exported = {(kind, row[kind]) for row in rows for kind in ("md5", "sha1", "pdq") if row[kind]}
    expected = {(kind, known.hashes[key][kind]) for key in ("a", "b") for kind in ("md5", "sha1", "pdq")}
    assert exported == expected
    assert {row["id"] for row in rows} == {"A-1", "B-1"}


def test_lists_export_vics_is_valid_json(known: KnownList, run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "known.json"
    result = run_cli("lists", "export", "known", "--format", "vics", "--output", out)
    assert result.exit_code == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    text = json.dumps(document)
    for key in ("a", "b"):
        assert known.hashes[key]["md5"].upper() in text
        assert known.hashes[key]["sha1"].upper() in text


def test_lists_export_unknown_list_fails(run_cli: RunCli) -> None:
    result = run_cli("lists", "export", "nope", "--format", "csv")
    assert result.exit_code == 2
    assert "nope" in result.stderr


@pytest.mark.parametrize("name", ["weird[/]name", "[bold]name"])
def test_error_messages_show_names_verbatim(name: str, run_cli: RunCli) -> None:
    result = run_cli("lists", "remove", name)
    assert result.exit_code == 2
    assert name in result.stderr


def test_lists_import_refuses_the_builtin_name(tmp_path: Path, run_cli: RunCli) -> None:
    hashes = tmp_path / "l.txt"
    hashes.write_text("d41d8cd98f00b204e9800998ecf8427e\n", encoding="utf-8")
    result = run_cli("lists", "import", hashes, "--name", "vakta-test")
    assert result.exit_code == 2
    names = {r["name"] for r in run_cli("lists", "show", "--json").records()}
    assert names == {"vakta-test"}


# --------------------------------------------------------------------------- test signature, selftest


def test_testfile_is_found_by_every_scan(tmp_path: Path, run_cli: RunCli) -> None:
    folder = tmp_path / "deploy-check"
    folder.mkdir()
    made = run_cli("testfile", folder / "vakta-test.jpg")
    assert made.exit_code == 0
    result = run_cli("scan", folder, "--workers", 1)
    assert result.exit_code == 1
    [record] = result.records()
    assert record["matches"]
    assert {m["list"] for m in record["matches"]} == {"vakta-test"}
    assert "md5" in _signals(record)

    # A re-encoded copy is still found, by PDQ.
    copy = Image.open(folder / "vakta-test.jpg")
    copy.resize((copy.width // 2, copy.height // 2)).save(folder / "smaller.jpg", quality=60)
    found = run_cli("scan", folder, "--workers", 1).by_name()
    assert _signals(found["smaller.jpg"]) == {"pdq"}
    assert found["smaller.jpg"]["matches"][0]["list"] == "vakta-test"


def test_no_test_list_ignores_the_test_signature(tmp_path: Path, run_cli: RunCli) -> None:
    run_cli("testfile", tmp_path / "t.jpg")
    result = run_cli("scan", tmp_path / "t.jpg", "--no-test-list", "--all", "--workers", 1)
    assert result.exit_code == 0
    [record] = result.records()
    assert record["matches"] == []


def test_lists_export_builtin_test_list(run_cli: RunCli, tmp_path: Path) -> None:
    run_cli("testfile", tmp_path / "t.jpg")
    md5 = hashlib.md5((tmp_path / "t.jpg").read_bytes()).hexdigest()
    result = run_cli("lists", "export", "vakta-test", "--format", "csv")
    assert result.exit_code == 0
    assert md5 in {row["md5"] for row in result.csv_rows()}


def test_selftest_passes(run_cli: RunCli) -> None:
    result = run_cli("selftest")
    assert result.exit_code == 0, result.stderr
    assert "passed" in result.stderr


# --------------------------------------------------------------------------- scan cache


def _summary(run_cli: RunCli, folder: Path, *extra: str) -> dict[str, Any]:
    result = run_cli("scan", folder, "--cache", "--format", "summary", "--workers", 1, *extra)
    summary: dict[str, Any] = result.json()
    return summary


def test_cache_reuses_unchanged_files_and_rehashes_modified_ones(
    tmp_path: Path, images: ImageFactory, known: KnownList, run_cli: RunCli
) -> None:
    folder = tmp_path / "cached"
    for seed in range(4):
        images.save(images.pattern(200 + seed), folder / f"img{seed}.png")
    target = folder / "img0.png"

    first = _summary(run_cli, folder)
    assert first["files"] == 4
    assert first["cache_hits"] == 0
    second = _summary(run_cli, folder)
    assert second["cache_hits"] == second["files"] == 4

    # Replace img0 with a copy of known original A (different size and content).
    shutil.copyfile(known.a, target)
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 5_000_000_000))
    third = _summary(run_cli, folder)
    assert third["cache_hits"] == 3
    assert third["matched_files"] == 1
    found = run_cli("scan", folder, "--cache", "--workers", 1).by_name()
    assert set(found) == {"img0.png"}
    assert found["img0.png"]["md5"] == known.hashes["a"]["md5"]


def test_cached_file_put_on_an_ignore_list_is_skipped(
    tmp_path: Path, known: KnownList, run_cli: RunCli
) -> None:
    folder = tmp_path / "cached"
    folder.mkdir()
    shutil.copyfile(known.a, folder / "a.png")
    assert _summary(run_cli, folder)["matched_files"] == 1

    good = tmp_path / "good.txt"
    good.write_text(known.hashes["a"]["sha1"] + "\n", encoding="utf-8")
    assert run_cli("lists", "import", good, "--name", "good", "--format", "text", "--ignore").exit_code == 0

    summary = _summary(run_cli, folder)
    assert summary["cache_hits"] == 1
    assert summary["matched_files"] == 0
    assert summary["known_good"] == 1
    [record] = run_cli("scan", folder, "--cache", "--all", "--workers", 1).records()
    assert record["matches"] == []
    assert "good" in record["skipped"]


def test_cache_is_shared_between_parallel_and_serial_scans(
    tmp_path: Path, images: ImageFactory, run_cli: RunCli
) -> None:
    folder = tmp_path / "cached"
    for seed in range(3):
        images.save(images.pattern(300 + seed), folder / f"img{seed}.png")
    assert _summary(run_cli, folder, "--workers", 2)["cache_hits"] == 0
    assert _summary(run_cli, folder)["cache_hits"] == 3


def test_cache_notices_same_size_rewrite_with_restored_mtime(
    tmp_path: Path, images: ImageFactory, known: KnownList, run_cli: RunCli
) -> None:
    folder = tmp_path / "cached"
    folder.mkdir()
    target = folder / "img.png"
    data = bytearray(known.a.read_bytes())
    target.write_bytes(data)
    assert _summary(run_cli, folder)["cache_hits"] == 0

    # Same size, other bytes, mtime put back (as `touch -r`, `cp -p` or an archive tool would).
    before = target.stat()
    data[-20] ^= 0xFF
    target.write_bytes(data)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert target.stat().st_size == before.st_size

    record = run_cli("scan", folder, "--cache", "--all", "--workers", 1).by_name()["img.png"]
    assert record["md5"] == hashlib.md5(bytes(data)).hexdigest()


def test_import_without_valid_records_leaves_no_list(tmp_path: Path, run_cli: RunCli) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("hello\nworld\n")
    result = run_cli("lists", "import", bad, "--name", "empty")
    assert result.exit_code == 1
    assert "bad.txt:1:" in result.stderr and "nothing imported" in result.stderr
    shown = run_cli("lists", "show", "--json").records()
    assert [r["name"] for r in shown] == ["vakta-test"]


def test_unusable_home_is_a_clear_error(tmp_path: Path, run_cli: RunCli) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for args in (("lists", "show"), ("scan", tmp_path)):
        result = run_cli("--home", blocker / "home", *args)
        assert result.exit_code == 2
        assert "cannot open the list store" in result.stderr
