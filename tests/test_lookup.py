"""`vakta lookup`: bare hashes checked against the lists, one JSON line each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from typer.testing import CliRunner

from vakta.cli import app
from vakta.signals import kinds

if TYPE_CHECKING:
    from conftest import RunCli

MD5 = "0123456789abcdef0123456789abcdef"
SHA256 = "ab" * 32


def _pdq(seed: int) -> str:
    return np.random.default_rng(seed).integers(0, 256, 32, dtype=np.uint8).tobytes().hex()


def _flip(value: str, bits: int) -> str:
    return f"{int(value, 16) ^ ((1 << bits) - 1):064x}"


@pytest.fixture
def listed(tmp_path: Path, run_cli: RunCli) -> list[str]:
    """A list with an MD5, a SHA-256 and 25,000 PDQ hashes (enough for the multi-index search)."""
    pdqs = [_pdq(i) for i in range(25_000)]
    rows = ["id,category,md5,sha256,pdq", f"d1,1,{MD5},{SHA256},"]
    rows += [f"p{i},2,,,{h}" for i, h in enumerate(pdqs)]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    assert run_cli("lists", "import", tmp_path / "list.csv", "--name", "known").exit_code == 0
    (tmp_path / "other.txt").write_text(_pdq(99_999) + "\n")
    assert (
        run_cli("lists", "import", tmp_path / "other.txt", "--name", "other", "--kind", "pdq").exit_code == 0
    )
    return pdqs


def test_kinds_come_from_prefix_or_length() -> None:
    assert kinds.parse_query(MD5) == (("md5",), MD5)
    assert kinds.parse_query(" PDQ:" + SHA256.upper()) == (("pdq",), SHA256)
    assert kinds.parse_query(SHA256) == (("sha256", "pdq"), SHA256)
    for bad in ("xyz", "sha1:" + MD5, "crc:00", ""):
        with pytest.raises(kinds.InvalidHashError):
            kinds.parse_query(bad)


def test_each_hash_gets_one_line_with_its_matches(listed: list[str], run_cli: RunCli) -> None:
    near = _flip(listed[123], 31)
    result = run_cli("lookup", "--no-test-list", MD5, SHA256, "pdq:" + near, _flip(listed[5], 32))
    assert result.exit_code == 1
    md5, sha, pdq, far = result.records()
    assert [(m["list"], m["entry_id"], m["signal"]) for m in md5["matches"]] == [("known", "d1", "md5")]
    assert sha["kinds"] == ["sha256", "pdq"] and [m["signal"] for m in sha["matches"]] == ["sha256"]
    assert [(m["entry_id"], m["category"], m["distance"]) for m in pdq["matches"]] == [("p123", "2", 31)]
    assert far["matches"] == []


def test_standard_input_is_read_in_bulk_and_bad_lines_are_named(listed: list[str], home: Path) -> None:
    lines = ["# one hash per line", "", *listed[:5000], "not-a-hash", "md5:" + MD5]
    result = CliRunner().invoke(app, ["lookup", "--no-test-list", "-"], input="\n".join(lines) + "\n")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 1 and len(records) == 5002
    assert all(r["matches"][0]["entry_id"] == f"p{i}" for i, r in enumerate(records[:5000]))
    assert records[5000] == {"input": "not-a-hash", "line": 5003, "error": records[5000]["error"]}
    assert records[5001]["line"] == 5004 and records[5001]["matches"][0]["signal"] == "md5"


def test_list_choice_threshold_and_exit_codes(listed: list[str], run_cli: RunCli) -> None:
    other = _pdq(99_999)
    assert run_cli("lookup", "--no-test-list", "--list", "known", other).records()[0]["matches"] == []
    assert run_cli("lookup", "--no-test-list", "--list", "other", other).exit_code == 1
    near = _flip(listed[0], 10)
    assert run_cli("lookup", "--no-test-list", "--threshold", "9", near).exit_code == 0
    assert run_cli("lookup", "--no-test-list", "--threshold", "10", near).exit_code == 1
    assert run_cli("lookup", "--no-test-list", "nonsense").exit_code == 2
    assert run_cli("lookup", "--list", "missing", MD5).exit_code == 2


def test_builtin_test_signature_is_found_by_hash(run_cli: RunCli) -> None:
    from vakta import testsignature

    (record, *_) = testsignature.records()
    result = run_cli("lookup", record.hashes["md5"], "pdq:" + record.hashes["pdq"])
    assert result.exit_code == 1
    assert [r["matches"][0]["list"] for r in result.records()] == ["vakta-test", "vakta-test"]
