"""The scan pipeline under hostile or awkward input: it never hangs or crashes, and every other file is reported.

Broken images, decompression bombs, symlink loops, FIFOs, undecodable paths,
files that vanish or change while being read, huge files and crashing worker
processes are each an error (or a skip) on that one item only.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import multiprocessing
import os
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

import vakta.pipeline
import vakta.signals.pdq_hasher
from vakta.items import Item
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Matcher
from vakta.pipeline import Scanner, hash_item
from vakta.signals.compute import CHUNK_SIZE, compute_signals
from vakta.signals.hashers import Hasher, hashers
from vakta.signals.imaging import DEFAULT_MAX_PIXELS
from vakta.signals.model import HashOptions, Signals
from vakta.sources.filesystem import FilesystemSource

if TYPE_CHECKING:
    from conftest import ImageFactory, KnownList, RunCli

GIB = 1 << 30
MIB = 1 << 20
#: Address-space cap for subprocess scans of hostile images (a plain scan needs ~200 MB).
MEMORY_LIMIT = 1 * GIB
#: Pillow's default ``Image.MAX_IMAGE_PIXELS``; it refuses images over twice that.
PILLOW_DEFAULT_MAX_PIXELS = 89_478_485
EMPTY_MD5 = hashlib.md5(b"").hexdigest()


# --------------------------------------------------------------------------- hostile files


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, bit_depth: int, row: bytes) -> bytes:
    """A valid greyscale PNG whose every row is ``row``, compressed while streamed (never held whole)."""
    compressor = zlib.compressobj(6)
    line = b"\x00" + row  # filter type "none"
    rows_per_block = max(1, (1 << 20) // len(line))
    block = line * rows_per_block
    parts = []
    for _ in range(height // rows_per_block):
        parts.append(compressor.compress(block))
    parts.append(compressor.compress(line * (height % rows_per_block)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


@cache
def bomb_png() -> bytes:
    """30000 x 30000 1-bit PNG (900 megapixels) in about 100 kB."""
    return _png(30_000, 30_000, 1, bytes(30_000 // 8))


@cache
def pixel_flood_png() -> bytes:
    """20,000,000 x 1 8-bit PNG: only 20 megapixels, but an absurd aspect ratio."""
    width = 20_000_000
    return _png(width, 1, 8, bytes(range(256)) * (width // 256))


def jpeg_declaring(width: int, height: int) -> bytes:
    """A tiny real JPEG whose frame header claims ``width`` x ``height``."""
    out = io.BytesIO()
    Image.new("L", (64, 48), 128).save(out, "JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _random_bytes(seed: int, size: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


@dataclass
class Messy:
    """A folder of broken and hostile files next to a known match and a normal picture."""

    root: Path
    broken: set[str]  # files that must carry an error
    clean: set[str]  # files that must not


@pytest.fixture
def messy(tmp_path: Path, images: ImageFactory, known: KnownList) -> Messy:
    root = tmp_path / "messy"
    root.mkdir()
    (root / "empty.jpg").write_bytes(b"")
    jpeg = images.encode(images.noise(3, (300, 200)), "JPEG", quality=90)
    (root / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    png = images.encode(images.noise(4), "PNG")
    (root / "corrupt.png").write_bytes(png[:33] + _random_bytes(5, len(png) - 33))
    (root / "random.jpg").write_bytes(_random_bytes(1234, 4096))
    (root / "bomb.png").write_bytes(bomb_png())
    (root / "bomb.jpg").write_bytes(jpeg_declaring(60_000, 60_000))
    shutil.copyfile(known.a, root / "match.png")
    images.save(images.gradient(), root / "fine.png")
    return Messy(
        root,
        broken={"truncated.jpg", "corrupt.png", "bomb.png", "bomb.jpg"},
        clean={"empty.jpg", "random.jpg", "match.png", "fine.png"},
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_scan_goes_on_past_broken_files(messy: Messy, run_cli: RunCli, workers: int) -> None:
    result = run_cli("scan", messy.root, "--all", "--workers", workers)

    assert result.exit_code == 1, result.stderr  # a match wins over errors
    found = result.by_name()
    assert set(found) == messy.broken | messy.clean
    for name in messy.broken:
        assert found[name]["errors"], name
        assert found[name]["matches"] == [], name
        assert "pdq" not in found[name], name
        assert found[name]["md5"] == hashlib.md5((messy.root / name).read_bytes()).hexdigest(), name
    for name in messy.clean:
        assert found[name]["errors"] == [], name
    for name in ("bomb.png", "bomb.jpg"):
        assert any("decompression bomb" in e for e in found[name]["errors"]), found[name]
    assert found["empty.jpg"]["size"] == 0
    assert found["empty.jpg"]["md5"] == EMPTY_MD5
    assert not found["empty.jpg"]["type"].startswith("image/")
    assert found["random.jpg"]["type"] == "application/octet-stream"
    assert "pdq" not in found["random.jpg"]
    assert found["match.png"]["matches"]
    assert found["fine.png"]["pdq"]


def test_errors_are_reported_without_all(messy: Messy, run_cli: RunCli) -> None:
    found = run_cli("scan", messy.root, "--workers", 1).by_name()
    assert set(found) == messy.broken | {"match.png"}


def test_parallel_scan_reports_the_same_as_serial(messy: Messy, run_cli: RunCli) -> None:
    def findings(workers: int) -> list[dict[str, Any]]:
        result = run_cli("scan", messy.root, "--all", "--workers", workers)
        assert result.exit_code == 1
        return sorted(result.records(), key=lambda r: str(r["path"]))

    serial = findings(1)
    assert len(serial) == len(messy.broken | messy.clean)
    assert findings(2) == serial
    assert findings(3) == serial


def test_decompression_bomb_is_an_error_with_bounded_memory(
    tmp_path: Path, images: ImageFactory, run_vakta: RunCli
) -> None:
    folder = tmp_path / "bombs"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(bomb_png())
    (folder / "bomb.jpg").write_bytes(jpeg_declaring(60_000, 60_000))
    images.save(images.pattern(8), folder / "fine.png")

    # Decoding the PNG would need ~900 MB for the pixels alone: far over the cap.
    result = run_vakta("scan", folder, "--all", "--workers", 1, memory_limit=MEMORY_LIMIT, timeout=60)

    assert result.exit_code == 2, result.stderr
    found = result.by_name()
    assert set(found) == {"bomb.png", "bomb.jpg", "fine.png"}
    for name in ("bomb.png", "bomb.jpg"):
        assert any("decompression bomb" in e for e in found[name]["errors"]), found[name]
    assert found["fine.png"]["errors"] == []
    assert found["fine.png"]["pdq"]

    hashed = run_vakta("hash", folder / "bomb.png", memory_limit=MEMORY_LIMIT, timeout=60)
    assert hashed.exit_code == 2
    [record] = hashed.records()
    assert "decompression bomb" in record["error"]
    assert record["md5"] == hashlib.md5(bomb_png()).hexdigest()


def test_pixel_limit_is_vaktas_not_pillows() -> None:
    if DEFAULT_MAX_PIXELS <= 2 * PILLOW_DEFAULT_MAX_PIXELS:
        pytest.skip("Vakta's limit is no longer above Pillow's hard limit")
    # A 14650 x 14650 JPEG (~215 MP): over Pillow's limit, under Vakta's documented one.
    side = int(((2 * PILLOW_DEFAULT_MAX_PIXELS + DEFAULT_MAX_PIXELS) / 2) ** 0.5)
    signals = compute_signals(io.BytesIO(jpeg_declaring(side, side)), Signals(path="big.jpg"), HashOptions())
    assert not any("decompression bomb" in e for e in signals.errors), signals.errors
    assert signals.image_width == side


def test_extreme_aspect_ratio_image_does_not_kill_the_scan(
    tmp_path: Path, images: ImageFactory, run_vakta: RunCli
) -> None:
    folder = tmp_path / "flood"
    folder.mkdir()
    (folder / "wide.png").write_bytes(pixel_flood_png())
    images.save(images.pattern(9), folder / "fine.png")

    result = run_vakta("scan", folder, "--all", "--workers", 1, memory_limit=MEMORY_LIMIT, timeout=120)

    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.exit_code in (0, 2)
    found = result.by_name()
    assert set(found) == {"wide.png", "fine.png"}
    assert found["wide.png"]["errors"] or found["wide.png"].get("pdq")
    assert found["fine.png"]["errors"] == []


# --------------------------------------------------------------------------- unreadable files


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads chmod 000 files; see the PermissionError test")
def test_unreadable_file_and_folder_are_errors(tmp_path: Path, images: ImageFactory, run_cli: RunCli) -> None:
    folder = tmp_path / "perm"
    secret = images.save(images.pattern(10), folder / "secret.png")
    images.save(images.pattern(11), folder / "open.png")
    locked = folder / "locked"
    images.save(images.pattern(12), locked / "inside.png")
    secret.chmod(0)
    locked.chmod(0)
    try:
        result = run_cli("scan", folder, "--all", "--workers", 1)
    finally:
        secret.chmod(0o644)
        locked.chmod(0o755)
    assert result.exit_code == 2
    found = result.by_name()
    assert found["secret.png"]["errors"]
    assert found["locked"]["errors"]
    assert found["open.png"]["errors"] == []


def test_permission_denied_on_open_is_an_error_on_that_item(
    tmp_path: Path, images: ImageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "perm"
    secret = images.save(images.pattern(10), folder / "secret.png")
    images.save(images.pattern(11), folder / "open.png")
    real_open = os.open

    def guarded_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fsencode(path) == os.fsencode(secret):
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    findings = {
        Path(f.signals.path).name: f for f in Scanner(Matcher(ListIndex.build([]))).scan([str(folder)])
    }

    assert findings["secret.png"].signals.errors == ["cannot read: Permission denied"]
    assert findings["secret.png"].signals.md5 is None
    assert findings["open.png"].signals.errors == []
    assert findings["open.png"].signals.pdq


# --------------------------------------------------------------------------- symlinks


def test_symlink_loop_never_hangs(tmp_path: Path, images: ImageFactory, run_vakta: RunCli) -> None:
    root = tmp_path / "tree"
    images.save(images.pattern(20), root / "top.png")
    images.save(images.pattern(21), root / "sub" / "deep.png")
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)
    (root / "sub" / "up").symlink_to("..", target_is_directory=True)

    plain = run_vakta("scan", root, "--all", "--workers", 1, timeout=30)
    assert plain.exit_code == 0, plain.stderr
    found = plain.by_name()  # fails on any file reported twice
    assert set(found) == {"top.png", "deep.png", "loop", "up"}
    assert "symlink" in found["loop"]["skipped"]
    assert "symlink" in found["up"]["skipped"]

    followed = run_vakta("scan", root, "--all", "--workers", 1, "--follow-symlinks", timeout=30)
    assert followed.exit_code == 0, followed.stderr
    found = followed.by_name()
    assert set(found) == {"top.png", "deep.png", "loop", "up"}
    assert found["top.png"]["errors"] == found["deep.png"]["errors"] == []
    assert found["loop"]["skipped"]
    assert found["up"]["skipped"]


def test_self_referencing_symlink_is_reported_not_followed_forever(
    tmp_path: Path, images: ImageFactory, run_vakta: RunCli
) -> None:
    root = tmp_path / "tree"
    images.save(images.pattern(22), root / "a.png")
    (root / "self").symlink_to("self")
    for extra in ((), ("--follow-symlinks",)):
        result = run_vakta("scan", root, "--all", "--workers", 1, *extra, timeout=30)
        found = result.by_name()
        assert set(found) == {"a.png", "self"}
        assert found["self"]["errors"] or found["self"].get("skipped")
        assert result.exit_code == (2 if found["self"]["errors"] else 0)


def test_symlinks_are_not_followed_by_default(tmp_path: Path, known: KnownList, run_cli: RunCli) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copyfile(known.a, outside / "a-copy.png")
    root = tmp_path / "scan"
    root.mkdir()
    (root / "link.png").symlink_to(outside / "a-copy.png")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)

    default = run_cli("scan", root, "--all", "--workers", 1)
    assert default.exit_code == 0
    found = default.by_name()
    assert set(found) == {"link.png", "linkdir"}
    for record in found.values():
        assert "symlink" in record["skipped"]
        assert record["matches"] == []
        assert "md5" not in record

    followed = run_cli("scan", root, "--all", "--workers", 1, "--follow-symlinks")
    assert followed.exit_code == 1
    paths = {str(Path(r["path"]).relative_to(root)): r for r in followed.records()}
    assert set(paths) == {"link.png", "linkdir/a-copy.png"}
    assert all(r["matches"] for r in paths.values())

    # A link named on the command line is what the user asked for.
    named = run_cli("scan", root / "link.png", "--workers", 1)
    assert named.exit_code == 1


# --------------------------------------------------------------------------- FIFOs and special files


def test_fifo_is_skipped_without_blocking(tmp_path: Path, known: KnownList, run_vakta: RunCli) -> None:
    root = tmp_path / "special"
    root.mkdir()
    os.mkfifo(root / "pipe.jpg")
    shutil.copyfile(known.a, root / "match.png")

    result = run_vakta("scan", root, "--all", "--workers", 1, timeout=30)
    assert result.exit_code == 1, result.stderr
    found = result.by_name()
    assert set(found) == {"pipe.jpg", "match.png"}
    assert "FIFO" in found["pipe.jpg"]["skipped"]
    assert found["pipe.jpg"]["errors"] == []
    assert found["match.png"]["matches"]

    direct = run_vakta("scan", root / "pipe.jpg", "--all", "--workers", 1, timeout=30)
    assert direct.exit_code == 0
    [record] = direct.records()
    assert "FIFO" in record["skipped"]

    hashed = run_vakta("hash", root / "pipe.jpg", root / "match.png", timeout=30)
    assert hashed.exit_code == 0
    assert set(hashed.by_name()) == {"match.png"}
    assert "pipe.jpg" in hashed.stderr


def test_hash_skip_message_survives_brackets_in_paths(tmp_path: Path, run_cli: RunCli) -> None:
    folder = tmp_path / "d["
    folder.mkdir()
    os.mkfifo(folder / "]pipe")  # the path now reads ".../d[/]pipe"
    result = run_cli("hash", folder)
    assert result.exit_code == 0
    assert "d[/]pipe" in result.stderr


def test_fifo_swapped_in_after_listing_does_not_block(tmp_path: Path, deadline: Any) -> None:
    path = tmp_path / "swapped.jpg"
    path.write_bytes(b"\xff\xd8\xff" + bytes(100))
    [item] = FilesystemSource().items(str(path))
    path.unlink()
    os.mkfifo(path)
    with deadline(10):
        signals = hash_item(item, HashOptions())
    assert len(signals.errors) == 1
    assert "regular file" in signals.errors[0] or "replaced" in signals.errors[0]


# --------------------------------------------------------------------------- undecodable paths


def test_non_utf8_paths_are_reported_losslessly(
    tmp_path: Path, images: ImageFactory, known: KnownList, run_cli: RunCli, run_vakta: RunCli
) -> None:
    root = tmp_path / "names"
    root.mkdir()
    raw_root = os.fsencode(root)
    bad_file = raw_root + b"/bad\xff.jpg"
    bad_dir = raw_root + b"/dir\xfe\xfd"
    with open(bad_file, "wb") as out:
        out.write(known.a.read_bytes())
    os.mkdir(bad_dir)
    with open(bad_dir + b"/inner.png", "wb") as out:
        out.write(images.encode(images.pattern(30), "PNG"))
    images.save(images.pattern(31), root / "plain.png")

    def raw_paths(records: list[dict[str, Any]]) -> dict[bytes, dict[str, Any]]:
        out = {}
        for record in records:
            if "path_b64" in record:
                raw = base64.b64decode(record["path_b64"], validate=True)
                assert os.fsdecode(raw) != record["path"]  # the printable form is not the real one
            else:
                raw = record["path"].encode("utf-8")
            out[raw] = record
        return out

    scan = run_cli("scan", root, "--all", "--workers", 1)
    assert scan.exit_code == 1
    found = raw_paths(scan.records())
    assert set(found) == {bad_file, bad_dir + b"/inner.png", raw_root + b"/plain.png"}
    assert found[bad_file]["matches"]
    assert "path_b64" not in found[raw_root + b"/plain.png"]

    hashed = run_cli("hash", root)
    assert set(raw_paths(hashed.records())) == set(found)

    # The bad name given on the command line itself (as raw argv bytes).
    direct = run_vakta("scan", os.fsdecode(bad_file), "--workers", 1, timeout=60)
    assert direct.exit_code == 1
    [record] = direct.records()
    assert base64.b64decode(record["path_b64"]) == bad_file


# --------------------------------------------------------------------------- files vanishing or changing


def _listed(path: Path) -> Item:
    [item] = FilesystemSource().items(str(path))
    assert item.error is None and item.skip is None
    return item


def test_file_vanishing_after_listing_is_an_error_on_that_item(tmp_path: Path) -> None:
    path = tmp_path / "gone.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    item = _listed(path)
    path.unlink()
    signals = hash_item(item, HashOptions())
    assert len(signals.errors) == 1
    assert signals.errors[0].startswith("cannot read")
    assert signals.md5 is None


def test_file_deleted_mid_scan_fails_alone(tmp_path: Path, images: ImageFactory) -> None:
    folder = tmp_path / "racy"
    for name in ("a.png", "b.png", "c.png"):
        images.save(images.pattern(ord(name[0])), folder / name)
    scan = Scanner(Matcher(ListIndex.build([]))).scan([str(folder)])
    first = next(scan)  # the folder has been listed; later items are not hashed yet
    assert Path(first.signals.path).name == "a.png"
    (folder / "c.png").unlink()
    rest = {Path(f.signals.path).name: f for f in scan}
    assert set(rest) == {"b.png", "c.png"}
    assert rest["b.png"].signals.errors == []
    assert rest["c.png"].signals.errors
    assert rest["c.png"].signals.md5 is None


def test_recorded_size_mismatch_reports_changed(tmp_path: Path, images: ImageFactory) -> None:
    path = images.save(images.pattern(40), tmp_path / "x.png")
    item = _listed(path)
    signals = hash_item(dataclasses.replace(item, size=item.size + 1), HashOptions())
    assert any("changed" in e for e in signals.errors), signals.errors
    assert signals.md5 == hashlib.md5(path.read_bytes()).hexdigest()

    signals = hash_item(dataclasses.replace(item, mtime_ns=item.mtime_ns - 1), HashOptions())
    assert any("changed" in e for e in signals.errors), signals.errors


def test_file_replaced_after_listing_reports_replaced(tmp_path: Path, images: ImageFactory) -> None:
    path = images.save(images.pattern(41), tmp_path / "x.png")
    item = _listed(path)
    replacement = images.save(images.pattern(42), tmp_path / "new.png")
    os.replace(replacement, path)
    signals = hash_item(item, HashOptions())
    assert signals.errors == ["file was replaced during the scan"]
    assert signals.md5 is None


def test_file_growing_while_read_reports_changed(
    tmp_path: Path, images: ImageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = images.save(images.pattern(43), tmp_path / "x.png")
    item = _listed(path)
    real = vakta.pipeline.compute_signals

    def append_then_compute(stream: Any, signals: Signals, *args: Any) -> Signals:
        with path.open("ab") as out:
            out.write(b"appended while the scanner reads")
        return real(stream, signals, *args)

    monkeypatch.setattr(vakta.pipeline, "compute_signals", append_then_compute)
    signals = hash_item(item, HashOptions())
    assert any("changed" in e for e in signals.errors), signals.errors


# --------------------------------------------------------------------------- huge files


def _sparse(path: Path, head: bytes, size: int) -> Path:
    with path.open("wb") as out:
        out.write(head)
        out.truncate(size)
    return path


def test_huge_sparse_file_is_listed_without_being_read(tmp_path: Path) -> None:
    path = _sparse(tmp_path / "huge.jpg", jpeg_declaring(64, 48), 3 * GIB)
    if path.stat().st_blocks * 512 > 64 * MIB:
        pytest.skip("this filesystem does not keep sparse files sparse")
    item = _listed(path)
    assert item.size == 3 * GIB


def test_file_over_decode_limit_gets_digests_only(
    tmp_path: Path, images: ImageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = images.encode(images.pattern(44), "JPEG")
    path = _sparse(tmp_path / "big.jpg", head, 8 * MIB)

    def no_decode(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a file over max_decode_bytes must not be decoded")

    monkeypatch.setattr(vakta.signals.pdq_hasher, "decode_luma", no_decode)
    signals = hash_item(_listed(path), HashOptions(max_decode_bytes=2 * MIB))

    data = path.read_bytes()
    assert signals.type == "image/jpeg"
    assert signals.size == len(data) == 8 * MIB
    assert (signals.md5, signals.sha1, signals.sha256) == (
        hashlib.md5(data).hexdigest(),
        hashlib.sha1(data).hexdigest(),
        hashlib.sha256(data).hexdigest(),
    )
    assert signals.pdq is None
    assert len(signals.errors) == 1
    assert "too large to decode" in signals.errors[0]


def test_file_under_decode_limit_is_decoded(tmp_path: Path, images: ImageFactory) -> None:
    data = images.encode(images.pattern(45), "PNG") + bytes(3 * MIB)  # trailing bytes after IEND
    signals = compute_signals(io.BytesIO(data), Signals(path="x"), HashOptions(max_decode_bytes=4 * MIB))
    assert signals.errors == []
    assert signals.pdq
    assert signals.md5 == hashlib.md5(data).hexdigest()


def test_decode_limit_applies_to_files_smaller_than_one_chunk(images: ImageFactory) -> None:
    data = images.encode(images.pattern(46), "PNG")
    assert 1000 < len(data) < CHUNK_SIZE
    signals = compute_signals(io.BytesIO(data), Signals(path="x"), HashOptions(max_decode_bytes=1000))
    assert signals.pdq is None
    assert any("too large to decode" in e for e in signals.errors)


# --------------------------------------------------------------------------- crashing and failing hashers


@dataclass(frozen=True)
class MarkedHasher:
    """A test hasher that misbehaves on items whose bytes start with ``marker``."""

    marker: bytes
    action: Callable[[], None]
    name: str = "misbehaving"

    def accepts(self, content_type: str) -> bool:
        return True

    def compute(self, data: bytes, signals: Signals, options: HashOptions) -> None:
        if data.startswith(self.marker):
            self.action()


def _exit_process() -> None:
    os._exit(70)


def _raise_runtime_error() -> None:
    raise RuntimeError("bug in a hasher plugin")


@pytest.fixture
def register_hasher() -> Iterator[Callable[[str, Hasher], None]]:
    """Add a hasher to the registry for one test (worker processes are forked, so they inherit it)."""
    added: list[str] = []

    def register(name: str, hasher: Hasher) -> None:
        assert name not in hashers.names()
        hashers.register(name, hasher)
        added.append(name)

    yield register
    for name in added:
        hashers._items.pop(name, None)  # the registry has no public removal


def _notes(folder: Path, count: int) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    contents = {f"note-{i:02}.bin": f"note number {i}\n".encode() * (i + 1) for i in range(count)}
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return contents


@pytest.mark.skipif(
    multiprocessing.get_start_method() != "fork", reason="the test hasher reaches workers by fork"
)
def test_worker_crash_fails_only_the_item_that_caused_it(
    tmp_path: Path, register_hasher: Callable[[str, Hasher], None]
) -> None:
    register_hasher("crash", MarkedHasher(b"CRASH-ME", _exit_process, "crash"))
    folder = tmp_path / "items"
    contents = _notes(folder, 14)
    for name in ("crash-1.bin", "crash-2.bin"):
        contents[name] = b"CRASH-ME " + name.encode()
        (folder / name).write_bytes(contents[name])

    scanner = Scanner(Matcher(ListIndex.build([])), HashOptions(), workers=2)
    findings = {Path(f.signals.path).name: f for f in scanner.scan([str(folder)])}

    assert set(findings) == set(contents)
    for name, data in contents.items():
        signals = findings[name].signals
        if name.startswith("crash-"):
            assert signals.errors == ["hashing process crashed on this item"], name
        else:
            assert signals.errors == [], name
            assert signals.md5 == hashlib.md5(data).hexdigest(), name
            assert signals.size == len(data)
    assert scanner.stats.files == len(contents)
    assert scanner.stats.errors == 2


def test_a_pool_found_broken_when_an_item_is_handed_to_it_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's death can break the pool after the scan's last look at its futures: the next hand-over fails.

    The item refused then is hashed again with the ones in flight, like them (CI once saw
    the error escape the scan).
    """
    contents = _notes(tmp_path / "items", 12)
    genuine = Scanner._new_pool
    refusals = [5]  # the pool refuses the fifth item handed to it, once

    class Refusing(ProcessPoolExecutor):
        def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
            refusals[0] -= 1
            if refusals[0] == 0:
                raise BrokenProcessPool("a child process terminated abruptly")
            return super().submit(fn, *args, **kwargs)

    def refusing_pool(self: Scanner, work: Any) -> ProcessPoolExecutor:
        pool = genuine(self, work)
        pool.__class__ = Refusing
        return pool

    monkeypatch.setattr(Scanner, "_new_pool", refusing_pool)
    scanner = Scanner(Matcher(ListIndex.build([])), HashOptions(), workers=2)
    findings = {Path(f.signals.path).name: f.signals for f in scanner.scan([str(tmp_path / "items")])}
    assert refusals[0] < 0  # the refusal happened and the scan went on
    assert {name: (s.errors, s.md5) for name, s in findings.items()} == {
        name: ([], hashlib.md5(data).hexdigest()) for name, data in contents.items()
    }


@pytest.mark.parametrize("workers", [1, 2])
def test_hasher_exception_is_an_error_on_that_item_only(
    tmp_path: Path, register_hasher: Callable[[str, Hasher], None], workers: int
) -> None:
    register_hasher("buggy", MarkedHasher(b"BUGGY", _raise_runtime_error, "buggy"))
    folder = tmp_path / "items"
    contents = _notes(folder, 5)
    (folder / "buggy.bin").write_bytes(b"BUGGY input")

    scanner = Scanner(Matcher(ListIndex.build([])), HashOptions(), workers=workers)
    findings = {Path(f.signals.path).name: f for f in scanner.scan([str(folder)])}

    assert set(findings) == {*contents, "buggy.bin"}
    assert findings["buggy.bin"].signals.errors
    assert findings["buggy.bin"].signals.md5 == hashlib.md5(b"BUGGY input").hexdigest()
    for name in contents:
        assert findings[name].signals.errors == [], name
