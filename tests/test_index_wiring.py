"""The on-disk index behind `scan` and `lookup`: kept up to date with the store, rebuilt or bypassed when broken."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from vakta import testsignature

if TYPE_CHECKING:
    from conftest import RunCli


def _current(home: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((home / "index" / "CURRENT").read_text())
    return data


def test_imports_and_removals_reach_scans_through_index_deltas(
    tmp_path: Path, home: Path, run_cli: RunCli
) -> None:
    image = tmp_path / "t.jpg"
    image.write_bytes(testsignature.image_bytes())
    md5 = testsignature.records()[0].hashes["md5"]
    (tmp_path / "other.txt").write_text("0" * 32 + "\n")
    (tmp_path / "one.txt").write_text(md5 + "\n")
    assert run_cli("lists", "import", tmp_path / "other.txt", "--name", "other").exit_code == 0
    assert _current(home)["delta"] is None  # the first import builds the index
    assert run_cli("scan", "--no-test-list", image).exit_code == 0
    assert run_cli("lists", "import", tmp_path / "one.txt", "--name", "one").exit_code == 0
    assert _current(home)["delta"] is not None  # a change is a delta beside the base
    found = run_cli("scan", "--no-test-list", image)
    assert found.exit_code == 1 and found.records()[0]["matches"][0]["list"] == "one"
    assert run_cli("lookup", "--no-test-list", md5).exit_code == 1
    assert run_cli("lists", "remove", "one").exit_code == 0
    assert run_cli("scan", "--no-test-list", image).exit_code == 0
    assert run_cli("lookup", "--no-test-list", md5).exit_code == 0


def test_known_good_lists_come_from_the_index(tmp_path: Path, run_cli: RunCli) -> None:
    image = tmp_path / "t.jpg"
    image.write_bytes(testsignature.image_bytes())
    (tmp_path / "good.txt").write_text(testsignature.records()[0].hashes["sha1"] + "\n")
    assert run_cli("lists", "import", tmp_path / "good.txt", "--name", "good", "--ignore").exit_code == 0
    result = run_cli("scan", "--all", image)
    assert result.exit_code == 0
    assert result.records()[0]["skipped"] == "on known-good list 'good'"


def test_a_damaged_index_is_rebuilt_and_an_unusable_one_bypassed(
    tmp_path: Path, home: Path, run_cli: RunCli
) -> None:
    image = tmp_path / "t.jpg"
    image.write_bytes(testsignature.image_bytes())
    (tmp_path / "one.txt").write_text(testsignature.records()[0].hashes["md5"] + "\n")
    assert run_cli("lists", "import", tmp_path / "one.txt", "--name", "one").exit_code == 0
    (home / "index" / "CURRENT").write_text("not json")
    assert run_cli("scan", "--no-test-list", image).exit_code == 1
    assert _current(home)["format"] == 1  # rebuilt
    # An index folder that cannot be used at all: scans load the lists from the store instead.
    for path in sorted((home / "index").rglob("*"), reverse=True):
        if path.is_file():
            path.unlink()
        else:
            path.rmdir()
    (home / "index").rmdir()
    (home / "index").write_text("in the way")
    assert run_cli("scan", "--no-test-list", image).exit_code == 1


def test_index_commands_show_compact_and_rebuild(tmp_path: Path, home: Path, run_cli: RunCli) -> None:
    assert run_cli("index", "status").exit_code == 2  # nothing built yet: a clear error
    md5 = testsignature.records()[0].hashes["md5"]
    (tmp_path / "a.txt").write_text("0" * 32 + "\n")
    (tmp_path / "b.txt").write_text(md5 + "\n")
    run_cli("lists", "import", tmp_path / "a.txt", "--name", "a")
    run_cli("lists", "import", tmp_path / "b.txt", "--name", "b")
    status = run_cli("index", "status", "--json").json()
    assert status["delta"] is not None and status["delta_entries"] == 1
    assert status["entries"]["md5"] == 2 and status["lists"] == ["a", "b"]
    assert status["current_with_store"] and not status["compacting"]

    assert run_cli("index", "compact").exit_code == 0
    compacted = run_cli("index", "status", "--json").json()
    assert compacted["delta"] is None and compacted["base"] != status["base"]
    assert compacted["entries"] == status["entries"]
    assert run_cli("lookup", "--no-test-list", md5).exit_code == 1

    assert run_cli("index", "rebuild").exit_code == 0
    rebuilt = run_cli("index", "status", "--json").json()
    assert rebuilt["base"] != compacted["base"] and rebuilt["entries"] == status["entries"]
    assert run_cli("lookup", "--no-test-list", md5).exit_code == 1
