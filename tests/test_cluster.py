"""``vakta scan --cluster``: a real Dask scheduler and two workers, each its own process.

The scan on the cluster must report exactly what a scan on this machine
reports for the same tree: same files, same hashes, same matches (from the
built-in test list and from an imported list the workers memory-map from the
on-disk index), same errors.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from vakta import testsignature
from vakta.cluster import units
from vakta.items import Item

if TYPE_CHECKING:
    from conftest import ImageFactory, RunCli

distributed = pytest.importorskip("distributed", reason="cluster scans need Dask (pip install '.[cluster]')")
DASK = Path(sys.executable).parent / "dask"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Dask scheduler and two single-threaded workers on loopback; yields the scheduler address."""
    if not DASK.exists():
        pytest.skip(f"the dask command is not installed beside {sys.executable}")
    logs = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{_free_port()}"
    port = address.rsplit(":", 1)[1]
    procs = [
        _start(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"],
            logs / "scheduler.log",
        )
    ]
    worker = [str(DASK), "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard"]
    for n in (1, 2):
        procs.append(
            _start(
                [*worker, "--name", f"w{n}", "--local-directory", str(logs / f"w{n}")],
                logs / f"worker{n}.log",
            )
        )
    try:
        client = _wait_for_workers(address, 2, logs)
        client.close()
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_for_workers(address: str, count: int, logs: Path) -> Any:
    deadline = time.monotonic() + 90
    while True:
        try:
            client = distributed.Client(address, timeout="5s")
            client.wait_for_workers(count, timeout=60)
            return client
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                text = "\n".join(p.read_text(errors="replace")[-2000:] for p in logs.glob("*.log"))
                pytest.fail(f"Dask cluster did not start:\n{text}")
            time.sleep(1)


@pytest.fixture
def tree(tmp_path: Path, images: ImageFactory) -> Path:
    """Matches (test signature, an imported list's picture), plain pictures, a broken file, a folder."""
    root = tmp_path / "evidence"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "signature.jpg").write_bytes(testsignature.image_bytes())
    images.save(images.pattern(7), root / "a" / "b" / "listed.png")
    for n in range(12):
        images.save(images.pattern(100 + n), root / "a" / f"photo{n}.jpg", "JPEG", quality=85)
    (root / "a" / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 300)
    (root / "notes.txt").write_text("nothing to see\n")
    return root


def _import_list(run_cli: RunCli, picture: Path, tmp_path: Path) -> None:
    hashed = run_cli("hash", picture).records()[0]
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(f"md5,pdq,category\n{hashed['md5']},{hashed['pdq']},1\n")
    result = run_cli("lists", "import", csv_file, "--name", "national")
    assert result.exit_code == 0, result.stderr


def _comparable(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for record in records:
        for match in record["matches"]:
            match.pop("imported_at", None)
        out[record["path"]] = record
    return out


def test_cluster_scan_equals_a_local_scan(
    scheduler: str, tree: Path, tmp_path: Path, run_cli: RunCli
) -> None:
    _import_list(run_cli, tree / "a" / "b" / "listed.png", tmp_path)

    local = run_cli("scan", tree, "--all", "--workers", "1")
    clustered = run_cli("scan", tree, "--all", "--cluster", scheduler)

    assert clustered.exit_code == local.exit_code == 1, clustered.stderr
    assert "Dask cluster" in clustered.stderr
    found_here, found_there = _comparable(local.records()), _comparable(clustered.records())
    assert found_there == found_here
    assert len(found_there) == 16
    lists = {m["list"] for r in found_there.values() for m in r["matches"]}
    assert lists == {testsignature.LIST_NAME, "national"}
    assert found_there[str(tree / "a" / "b" / "broken.jpg")]["errors"]


def test_cluster_results_stream_into_every_report_format(scheduler: str, tree: Path, run_cli: RunCli) -> None:
    for fmt in ("csv", "vics"):
        local = run_cli("scan", tree, "--format", fmt, "--workers", "1")
        clustered = run_cli("scan", tree, "--format", fmt, "--cluster", scheduler)
        assert clustered.exit_code == 1, clustered.stderr
        if fmt == "csv":
            assert sorted(r["path"] for r in clustered.csv_rows()) == sorted(
                r["path"] for r in local.csv_rows()
            )
        else:
            media = clustered.json()["value"][0]["Media"]
            assert [m["MD5"] for m in media] == [m["MD5"] for m in local.json()["value"][0]["Media"]]


def test_unreachable_scheduler_is_a_clear_error(tree: Path, run_cli: RunCli) -> None:
    result = run_cli("scan", tree, "--cluster", f"tcp://127.0.0.1:{_free_port()}")
    assert result.exit_code == 2
    assert "cannot reach the Dask scheduler" in result.stderr


def test_work_units_group_small_files_and_keep_large_ones_alone() -> None:
    sizes = [10, 10, 10, 500, 10, 10, 10, 10, 10]
    pending = ((Item(f"f{n}".encode(), size), None) for n, size in enumerate(sizes))
    grouped = [[item.size for item, _ in unit] for unit in units(pending, max_bytes=100, max_items=3)]
    assert grouped == [[10, 10, 10], [500], [10, 10, 10], [10, 10]]
    assert sum(map(len, grouped)) == len(sizes)


def test_local_cluster_needs_no_address(tree: Path, run_cli: RunCli) -> None:
    result = run_cli("scan", tree / "a" / "signature.jpg", "--cluster", "local")
    assert result.exit_code == 1, result.stderr
    assert result.records()[0]["matches"][0]["list"] == testsignature.LIST_NAME
