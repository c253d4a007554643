"""Disk images: raw and E01 images, MBR and GPT partitions, FAT/ext4/NTFS/exFAT filesystems, deleted files.

Every image is built here with Debian's tools, without mounting anything:
mkfs.vfat and mtools, mkfs.ext4 -d and debugfs, sfdisk, mkntfs and ntfscp,
mkfs.exfat, ewfacquire.  .ci/run installs them; without them these tests skip.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from conftest import ImageFactory

from vakta import testsignature
from vakta.containers import Limits, Member, reader_for
from vakta.containers.disk import READER
from vakta.containers.disk.filesystem import MAX_READ
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Matcher
from vakta.pipeline import Scanner, hash_tree
from vakta.signals.model import HashOptions, Signals
from vakta.signals.sniff import DISK_TYPE, EWF_TYPE, FILESYSTEM_TYPE, content_type
from vakta.sources.filesystem import SOURCE

if TYPE_CHECKING:
    from conftest import RunCli

_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
TOOLS = ("mkfs.vfat", "mcopy", "mmd", "mdel", "mkfs.ext4", "debugfs", "sfdisk", "ewfacquire")
TOOLS += ("mkntfs", "ntfscp", "mkfs.exfat")
_MISSING = [t for t in TOOLS if shutil.which(t, path=_SEARCH_PATH) is None]
pytestmark = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"needs {', '.join(_MISSING)} (dosfstools mtools e2fsprogs fdisk ewf-tools ntfs-3g exfatprogs)",
)

SECTOR = 512
MIB = 1 << 20
SIG = testsignature.image_bytes()
OPTIONS = HashOptions(extra_queries=False)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# --------------------------------------------------------------------------- building images


def run(*args: str | os.PathLike[str]) -> str:
    """Run a Debian tool (found in /usr/sbin too); its failure fails the test with its message."""
    command = [shutil.which(str(args[0]), path=_SEARCH_PATH) or str(args[0]), *map(str, args[1:])]
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(command)}: {done.stderr}"
    return done.stdout


def blank(path: Path, size: int) -> Path:
    """A sparse file of ``size`` bytes (made only if absent, so filesystems can share a disk)."""
    if not path.exists():
        with path.open("wb") as out:
            out.truncate(size)
    return path


def fat(
    path: Path,
    files: dict[str, bytes],
    deleted: dict[str, bytes] | None = None,
    *,
    bits: int = 16,
    start: int = 0,
    sectors: int = 32768,
) -> Path:
    """A FAT filesystem of ``sectors`` at sector ``start`` of ``path``; ``deleted`` files are copied, then mdel'ed."""
    blank(path, (start + sectors) * SECTOR)
    per_cluster = "4" if bits == 12 else "1"  # small volumes, within each FAT size's cluster counts
    run("mkfs.vfat", "-F", str(bits), "-s", per_cluster, "--offset", str(start), path, str(sectors // 2))
    target = f"{path}@@{start * SECTOR}"
    made: set[str] = set()
    with tempfile.TemporaryDirectory() as source:
        for k, (name, data) in enumerate({**files, **(deleted or {})}.items()):
            parts = name.strip("/").split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder not in made:
                    run("mmd", "-i", target, f"::/{folder}")
                    made.add(folder)
            (Path(source) / str(k)).write_bytes(data)
            run("mcopy", "-i", target, Path(source) / str(k), f"::/{name.strip('/')}")
    for name in deleted or {}:
        run("mdel", "-i", target, f"::/{name.strip('/')}")
    return path


def ext4(path: Path, files: dict[str, bytes], *, start: int = 0, kib: int = 8192) -> Path:
    """An ext4 filesystem made with ``mkfs.ext4 -d`` from a folder holding ``files``."""
    blank(path, start * SECTOR + kib * 1024)
    options = ["-E", f"offset={start * SECTOR}"] if start else []
    with tempfile.TemporaryDirectory() as tree:
        for name, data in files.items():
            (Path(tree) / name.strip("/")).parent.mkdir(parents=True, exist_ok=True)
            (Path(tree) / name.strip("/")).write_bytes(data)
        run("mkfs.ext4", "-q", "-F", *options, "-d", tree, path, f"{kib}k")
    return path


def debugfs(path: Path, *requests: str) -> str:
    """Run debugfs requests on an image, one after the other (``-R`` takes only one)."""
    with tempfile.NamedTemporaryFile("w", suffix=".debugfs") as commands:
        commands.write("".join(f"{r}\n" for r in requests))
        commands.flush()
        return run("debugfs", "-w", "-f", commands.name, path)


def inode_of(path: Path, name: str) -> int:
    match = re.search(r"Inode: (\d+)", run("debugfs", "-R", f"stat {name}", path))
    assert match, f"no inode for {name}"
    return int(match.group(1))


def partitioned(path: Path, table: str, size: int = 40 * MIB) -> Path:
    blank(path, size)
    done = subprocess.run(
        [shutil.which("sfdisk", path=_SEARCH_PATH) or "sfdisk", "-q", str(path)],
        input=table,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return path


def ewf(raw: Path, target: Path, *options: str) -> Path:
    """``ewfacquire -u`` of ``raw`` into ``target.E01`` (and ``.E02``... with ``-S``)."""
    run("ewfacquire", "-u", "-q", "-t", target, *options, raw)
    return target.with_name(target.name + ".E01")


def zipped(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(name, data)
    return out.getvalue()


# --------------------------------------------------------------------------- the evidence


@dataclass(frozen=True)
class Evidence:
    folder: Path
    benign: bytes
    inner: bytes
    #: Inode of a deleted file on linux.img whose name is gone too (TSK lists it in $OrphanFiles).
    orphan: int


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> Evidence:
    """A bare FAT and ext4 image, an MBR and a GPT disk, and E01 sets, in one folder."""
    images = ImageFactory()
    folder = tmp_path_factory.mktemp("evidence")
    work = tmp_path_factory.mktemp("work")
    benign = images.encode(images.pattern(7), "PNG")
    inner = ext4(work / "inner.img", {"sig.jpg": SIG}, kib=1024).read_bytes()

    fat(
        folder / "card.img",
        {
            "DCIM/a.jpg": SIG,
            "DCIM/b.png": benign,
            "docs/old.zip": zipped("sig.jpg", SIG),
            "vm/inner.img": inner,
        },
        {"DCIM/old.jpg": SIG},
    )

    ext = ext4(
        folder / "linux.img",
        {
            "home/a.jpg": SIG,
            "gone.jpg": SIG,
            "cleared.bin": os.urandom(70_000),
            "emptied.bin": os.urandom(9000),
            "lost/orphan.jpg": SIG,
        },
    )
    cleared, emptied, orphan = (
        inode_of(ext, n) for n in ("/cleared.bin", "/emptied.bin", "/lost/orphan.jpg")
    )
    # An orphan: its name is unlinked, then overwritten by a longer one in the same (otherwise
    # empty) folder, before any inode is free to be reused; then its inode is freed.
    (work / "note.txt").write_bytes(b"a new file where the old name was\n")
    debugfs(ext, "unlink /lost/orphan.jpg", f"write {work / 'note.txt'} /lost/overwrites-the-old-name.txt")
    debugfs(ext, f"freei <{orphan}>", f"sif <{orphan}> links_count 0", f"sif <{orphan}> dtime 1700000000")
    debugfs(ext, "rm /gone.jpg", "rm /cleared.bin", "rm /emptied.bin", "ln <2> /home/loop")
    # What the kernel does on delete and debugfs does not: the extent tree loses its entries
    # (header 0xF30A, 0 entries), and in the second case the size goes too.
    debugfs(
        ext, f"sif <{cleared}> block[0] 62218", f"sif <{emptied}> block[0] 62218", f"sif <{emptied}> size 0"
    )

    disk = partitioned(
        work / "disk.img",
        "label: dos\nstart=2048, size=16384, type=6\nstart=18432, size=16384, type=83\n"
        "start=34816, size=8192, type=83\n",
    )
    fat(disk, {"DCIM/a.jpg": SIG, "docs/old.zip": zipped("sig.jpg", SIG)}, start=2048, sectors=16384)
    ext4(disk, {"b.png": benign}, start=18432, kib=8192)
    shutil.copyfile(disk, folder / "disk.img")
    ewf(disk, folder / "disk", "-c", "best")

    gpt = partitioned(
        folder / "gpt.img",
        "label: gpt\nstart=2048, size=69632, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n"
        "start=71680, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
    )
    fat(gpt, {"photos/a.jpg": SIG}, bits=32, start=2048, sectors=69632)
    ext4(gpt, {"b.png": benign}, start=71680, kib=4096)

    small = partitioned(work / "small.img", "label: dos\nstart=2048, size=6144, type=1\n", size=4 * MIB)
    fat(small, {"a.jpg": SIG, "noise.bin": os.urandom(1_500_000)}, bits=12, start=2048, sectors=6144)
    (folder / "split").mkdir()
    ewf(small, folder / "split" / "set", "-c", "none", "-S", str(MIB))
    return Evidence(folder, benign, inner, orphan)


def listing(path: Path) -> dict[str, Member]:
    """The reader's members of the image at ``path``, read from memory (they stay readable)."""
    return {m.name: m for m in READER.members(io.BytesIO(path.read_bytes()))}


def content(member: Member) -> bytes:
    assert member.open is not None, member.error
    with member.open() as stream:
        return stream.read()


def tree(path: Path, limits: Limits | None = None) -> list[Signals]:
    (item,) = SOURCE.items(str(path))
    return hash_tree(item, OPTIONS, None, limits or Limits())


def by_location(signals: list[Signals]) -> dict[str, Signals]:
    return {s.location: s for s in signals}


# --------------------------------------------------------------------------- detection


def test_sniffing_tells_disks_filesystems_and_ewf_apart(evidence: Evidence, tmp_path: Path) -> None:
    def sniff(path: Path, offset: int = 0) -> str:
        with path.open("rb") as f:
            f.seek(offset)
            return content_type(f.read(1 << 20))

    ntfs = blank(tmp_path / "ntfs.img", 8 * MIB)
    run("mkntfs", "-q", "-F", "-Q", ntfs)
    exfat = blank(tmp_path / "exfat.img", 8 * MIB)
    run("mkfs.exfat", exfat)
    folder = evidence.folder
    assert sniff(folder / "card.img") == FILESYSTEM_TYPE  # a FAT boot sector ends in 0x55AA too
    assert sniff(folder / "linux.img") == FILESYSTEM_TYPE
    assert sniff(ntfs) == FILESYSTEM_TYPE
    assert sniff(exfat) == FILESYSTEM_TYPE
    assert sniff(folder / "disk.img") == DISK_TYPE
    assert sniff(folder / "gpt.img") == DISK_TYPE
    assert sniff(folder / "disk.img", 2048 * SECTOR) == FILESYSTEM_TYPE  # the partition inside
    assert sniff(folder / "disk.E01") == EWF_TYPE
    assert sniff(folder / "split" / "set.E02") == EWF_TYPE
    assert reader_for(DISK_TYPE) is READER


def test_sniffing_wants_a_plausible_partition_table_not_just_0x55aa() -> None:
    rng = np.random.default_rng(5)
    for _ in range(300):
        sector = bytearray(rng.integers(0, 256, 512, dtype=np.uint8).tobytes())
        sector[510:512] = b"\x55\xaa"
        assert content_type(bytes(sector) + bytes(4096)) == "application/octet-stream"
    text = (b"just some notes, not a disk " * 19)[:510] + b"\x55\xaa"
    assert content_type(text) == "application/octet-stream"
    assert content_type(bytes(510) + b"\x55\xaa") == "application/octet-stream"  # no partition in use
    table = bytearray(512)
    table[446:462] = (
        bytes([0x80, 0, 0, 0, 0x07, 0, 0, 0]) + (2048).to_bytes(4, "little") + (4096).to_bytes(4, "little")
    )
    table[510:512] = b"\x55\xaa"
    assert content_type(bytes(table)) == DISK_TYPE
    table[446 + 16] = 0x33  # a second entry whose status byte no MBR has
    assert content_type(bytes(table)) == "application/octet-stream"
    assert content_type(SIG) == "image/jpeg"


# --------------------------------------------------------------------------- reading directly


def test_fat_image_lists_every_file_and_deleted_ones_without_tsk_virtual_files(evidence: Evidence) -> None:
    members = listing(evidence.folder / "card.img")
    assert set(members) == {"/DCIM/a.jpg", "/DCIM/b.png", "/docs/old.zip", "/vm/inner.img", "/DCIM/_ld.jpg"}
    assert md5(content(members["/DCIM/a.jpg"])) == md5(SIG)
    assert content(members["/DCIM/b.png"]) == evidence.benign
    assert content(members["/vm/inner.img"]) == evidence.inner
    gone = members["/DCIM/_ld.jpg"]  # FAT overwrites a deleted name's first letter
    assert gone.deleted and gone.error is None and content(gone) == SIG
    assert not any(m.deleted for name, m in members.items() if name != "/DCIM/_ld.jpg")
    assert all(m.size == len(content(m)) for m in members.values())


def test_member_streams_seek_and_never_read_more_than_a_chunk_at_once(tmp_path: Path) -> None:
    big = np.random.default_rng(1).integers(0, 256, MAX_READ + 3 * MIB, dtype=np.uint8).tobytes()
    image = ext4(tmp_path / "big.img", {"big.bin": big}, kib=16384)
    member = listing(image)["/big.bin"]
    assert member.open is not None
    with member.open() as stream:
        assert len(stream.read(1 << 40)) == MAX_READ  # a huge request is served in bounded pieces
        assert stream.seek(-10, io.SEEK_END) == len(big) - 10
        assert stream.read() == big[-10:]
        stream.seek(12345)
        assert stream.read(100) == big[12345:12445]
        assert stream.read(0) == b""
        assert stream.seek(len(big) + 5) == len(big) + 5 and stream.read(10) == b""
        with pytest.raises(OSError):
            stream.seek(-1)


def test_ext4_deleted_files_are_recovered_while_their_blocks_are_recorded(evidence: Evidence) -> None:
    members = listing(evidence.folder / "linux.img")
    assert md5(content(members["/home/a.jpg"])) == md5(SIG)
    gone = members["/gone.jpg"]  # debugfs frees the blocks but leaves the extent tree
    assert gone.deleted and content(gone) == SIG
    cleared, emptied = members["/cleared.bin"], members["/emptied.bin"]
    assert cleared.deleted and cleared.open is None
    assert cleared.error == "deleted, its data is no longer located: not recoverable"
    assert emptied.deleted and emptied.error == "deleted, no data left (size 0): not recoverable"
    orphan = members[f"/$OrphanFiles/OrphanFile-{evidence.orphan}"]
    assert orphan.deleted and content(orphan) == SIG
    # /home/loop is a second link to the root folder: entered once, so nothing is listed twice.
    assert set(members) == {
        "/home/a.jpg",
        "/gone.jpg",
        "/cleared.bin",
        "/emptied.bin",
        "/lost/overwrites-the-old-name.txt",
        f"/$OrphanFiles/OrphanFile-{evidence.orphan}",
    }


def test_partitions_are_numbered_as_linux_does_and_named_by_filesystem(evidence: Evidence) -> None:
    members = listing(evidence.folder / "disk.img")
    assert set(members) == {
        "partition 1 (FAT16) > /DCIM/a.jpg",
        "partition 1 (FAT16) > /docs/old.zip",
        "partition 2 (ext4) > /b.png",
        "partition 3 (Linux (0x83))",
    }
    assert content(members["partition 1 (FAT16) > /DCIM/a.jpg"]) == SIG
    assert content(members["partition 2 (ext4) > /b.png"]) == evidence.benign
    unformatted = members["partition 3 (Linux (0x83))"]
    assert unformatted.open is None and unformatted.error is not None
    assert unformatted.error.startswith("no filesystem that can be read")
    gpt = listing(evidence.folder / "gpt.img")
    assert {n: content(m) for n, m in gpt.items()} == {
        "partition 1 (FAT32) > /photos/a.jpg": SIG,
        "partition 2 (ext4) > /b.png": evidence.benign,
    }


def test_logical_partitions_are_numbered_from_5_and_encrypted_ones_named(tmp_path: Path) -> None:
    disk = partitioned(
        tmp_path / "logical.img",
        "label: dos\nstart=2048, size=4096, type=83\nstart=8192, size=20480, type=5\n"
        "start=10240, size=6144, type=6\nstart=18432, size=6144, type=83\n",
    )
    fat(disk, {"x.txt": b"logical\n"}, bits=12, start=10240, sectors=6144)
    with disk.open("r+b") as f:  # a LUKS header where the last logical partition starts
        f.seek(18432 * SECTOR)
        f.write(b"LUKS\xba\xbe\x00\x02" + bytes(504))
    members = listing(disk)
    assert content(members["partition 5 (FAT12) > /x.txt"]) == b"logical\n"
    assert members["partition 6 (Linux (0x83))"].error == "encrypted (LUKS): not scanned"
    assert members["partition 1 (Linux (0x83))"].error is not None
    assert len(members) == 3


def test_ntfs_files_and_alternate_data_streams_without_system_files(tmp_path: Path) -> None:
    image = blank(tmp_path / "ntfs.img", 16 * MIB)
    run("mkntfs", "-q", "-F", "-Q", image)
    (tmp_path / "sig.jpg").write_bytes(SIG)
    (tmp_path / "note.txt").write_bytes(b"nothing to see\n")
    run("ntfscp", "-q", image, tmp_path / "note.txt", "note.txt")
    run("ntfscp", "-q", "-N", "hidden", image, tmp_path / "sig.jpg", "note.txt")
    members = listing(image)
    assert {n: content(m) for n, m in members.items()} == {
        "/note.txt": b"nothing to see\n",
        "/note.txt:hidden": SIG,
    }
    exfat = blank(tmp_path / "exfat.img", 8 * MIB)
    run("mkfs.exfat", exfat)
    assert listing(exfat) == {}  # its allocation bitmap and up-case table are not files


# --------------------------------------------------------------------------- through the driver


def test_e01_sets_are_read_through_their_first_segment(evidence: Evidence) -> None:
    found = by_location(tree(evidence.folder / "disk.E01"))
    top = str(evidence.folder / "disk.E01")
    image = found[top]
    assert image.type == EWF_TYPE and not image.errors
    a = found[f"{top} > partition 1 (FAT16) > /DCIM/a.jpg"]
    assert a.md5 == md5(SIG) and a.inside == ["partition 1 (FAT16) > /DCIM/a.jpg"]
    assert a.parent_md5 == image.md5
    assert found[f"{top} > partition 2 (ext4) > /b.png"].md5 == md5(evidence.benign)
    assert found[f"{top} > partition 3 (Linux (0x83))"].errors

    split = evidence.folder / "split"
    segments = sorted(split.iterdir())
    assert len(segments) >= 3
    first = by_location(tree(split / "set.E01"))
    assert first[f"{split / 'set.E01'} > partition 1 (FAT12) > /a.jpg"].md5 == md5(SIG)
    assert not any(s.errors for s in first.values())
    for later in segments[1:]:  # read as part of the set: no members, no error
        assert [(s.location, s.errors) for s in tree(later)] == [(str(later), [])]


def test_an_incomplete_or_nested_e01_set_is_an_error_on_the_image(evidence: Evidence, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    kept = sorted((evidence.folder / "split").iterdir())[:-1]
    for segment in kept:
        shutil.copyfile(segment, partial / segment.name)
    (image,) = tree(partial / "set.E01")
    assert image.md5 is not None
    assert image.errors == [
        f"disk: EWF set incomplete: segments after {kept[-1].name} are missing; not opened"
    ]
    outer = fat(
        tmp_path / "outer.img",
        {
            "one/disk.E01": (evidence.folder / "disk.E01").read_bytes(),
            "two/set.E01": (evidence.folder / "split" / "set.E01").read_bytes(),
        },
        sectors=65536,
    )
    found = by_location(tree(outer))
    single = f"{outer} > /one/disk.E01 > partition 1 (FAT16) > /DCIM/a.jpg"
    assert found[single].md5 == md5(SIG)
    assert found[single].inside == ["/one/disk.E01", "partition 1 (FAT16) > /DCIM/a.jpg"]
    nested_split = found[f"{outer} > /two/set.E01"]
    assert nested_split.md5 is not None
    assert nested_split.errors == [
        "disk: EWF segment 1 of a set of several, inside another container: "
        "the other segments (.E02, ...) must be files beside it on disk; not opened"
    ]


def test_scanner_matches_the_test_signature_inside_images_with_location_chains(evidence: Evidence) -> None:
    scanner = Scanner(Matcher(ListIndex.build(testsignature.entry_rows())), OPTIONS)
    findings = {f.signals.location: f for f in scanner.scan([str(evidence.folder)])}
    root = evidence.folder
    expected = {
        f"{root / 'card.img'} > /DCIM/a.jpg",
        f"{root / 'card.img'} > /DCIM/_ld.jpg",
        f"{root / 'card.img'} > /vm/inner.img > /sig.jpg",
        f"{root / 'linux.img'} > /home/a.jpg",
        f"{root / 'linux.img'} > /gone.jpg",
        f"{root / 'linux.img'} > /$OrphanFiles/OrphanFile-{evidence.orphan}",
        f"{root / 'disk.img'} > partition 1 (FAT16) > /DCIM/a.jpg",
        f"{root / 'disk.E01'} > partition 1 (FAT16) > /DCIM/a.jpg",
        f"{root / 'gpt.img'} > partition 1 (FAT32) > /photos/a.jpg",
        f"{root / 'split' / 'set.E01'} > partition 1 (FAT12) > /a.jpg",
    }
    matched = {location for location, f in findings.items() if f.matched}
    assert expected <= matched
    assert matched - expected <= {loc for loc in matched if loc.endswith(" > sig.jpg")}  # inside old.zip
    assert {m.meta.list_name for m in findings[f"{root / 'card.img'} > /DCIM/a.jpg"].matches} == {
        "vakta-test"
    }
    assert findings[f"{root / 'card.img'} > /DCIM/_ld.jpg"].signals.deleted
    assert findings[f"{root / 'linux.img'} > /gone.jpg"].signals.deleted
    assert not findings[f"{root / 'card.img'} > /DCIM/a.jpg"].signals.deleted
    assert not findings[f"{root / 'card.img'} > /DCIM/b.png"].matched
    nested = findings[f"{root / 'card.img'} > /vm/inner.img > /sig.jpg"].signals
    assert nested.inside == ["/vm/inner.img", "/sig.jpg"]
    assert nested.parent_md5 == md5(evidence.inner)
    assert findings[f"{root / 'linux.img'} > /cleared.bin"].signals.errors == [
        "deleted, its data is no longer located: not recoverable"
    ]


def _report(scanner: Scanner, folder: Path) -> list[tuple[str, Any]]:
    """Each finding's location and everything it reports, in the order the scan wrote them per item."""
    rows = [(f.signals.location, f.to_dict()) for f in scanner.scan([str(folder)])]
    items: dict[str, list[tuple[str, Any]]] = {}
    for location, row in rows:
        items.setdefault(location.split(" > ")[0], []).append((location, row))
    return [row for item in sorted(items) for row in items[item]]


def test_images_split_between_worker_processes_report_what_one_process_reports(evidence: Evidence) -> None:
    """Every disk image and ZIP split into shares (one per worker) gives the same findings in the same order."""
    matcher = Matcher(ListIndex.build(testsignature.entry_rows()))
    whole = _report(Scanner(matcher, OPTIONS), evidence.folder)
    split_scanner = Scanner(matcher, OPTIONS, workers=3, shard_bytes=0)
    split = _report(split_scanner, evidence.folder)
    assert split_scanner.split >= 6  # card, linux, disk, gpt, E01 images, the zip
    assert [loc for loc, _ in split] == [loc for loc, _ in whole]
    assert split == whole
    nested = dict(split)[f"{evidence.folder / 'card.img'} > /vm/inner.img > /sig.jpg"]
    assert nested["matches"] and nested["parent_md5"] == md5(evidence.inner)
    top = dict(split)[f"{evidence.folder / 'card.img'} > /DCIM/a.jpg"]
    assert top["parent_md5"] == md5((evidence.folder / "card.img").read_bytes())


def test_a_zip_inside_a_partition_is_opened_in_turn(evidence: Evidence) -> None:
    if reader_for("application/zip") is None:
        pytest.skip("no zip reader is registered")
    found = by_location(tree(evidence.folder / "disk.E01"))
    sig = found[f"{evidence.folder / 'disk.E01'} > partition 1 (FAT16) > /docs/old.zip > sig.jpg"]
    assert sig.md5 == md5(SIG) and sig.inside == ["partition 1 (FAT16) > /docs/old.zip", "sig.jpg"]


def test_cli_scan_reports_matches_inside_disk_images(evidence: Evidence, run_vakta: RunCli) -> None:
    result = run_vakta(
        "scan", evidence.folder / "disk.E01", evidence.folder / "card.img", "--workers", "2", timeout=120
    )
    assert result.exit_code == 1, result.stderr
    records = {r["location"]: r for r in result.records() if "location" in r}
    hit = records[f"{evidence.folder / 'disk.E01'} > partition 1 (FAT16) > /DCIM/a.jpg"]
    assert {m["list"] for m in hit["matches"]} == {"vakta-test"}
    assert hit["inside"] == ["partition 1 (FAT16) > /DCIM/a.jpg"] and hit["md5"] == md5(SIG)
    deleted = records[f"{evidence.folder / 'card.img'} > /DCIM/_ld.jpg"]
    assert deleted["deleted"] is True and deleted["matches"]
    unformatted = records[f"{evidence.folder / 'disk.E01'} > partition 3 (Linux (0x83))"]
    assert unformatted["errors"] and not unformatted["matches"]


# --------------------------------------------------------------------------- hostile images


def _fat_loop(path: Path) -> Path:
    """A FAT image where folder /a/b points back at /a's own cluster."""
    fat(path, {"a/x.txt": b"x\n", "a/b/y.txt": b"y\n"})
    data = bytearray(path.read_bytes())
    a_entry = data.index(b"A          \x10")
    b_entry = data.index(b"B          \x10")
    data[b_entry + 26 : b_entry + 28] = data[a_entry + 26 : a_entry + 28]
    path.write_bytes(bytes(data))
    return path


HostileBuilder = Callable[[Path, Evidence], Path]


def _truncated(path: Path, evidence: Evidence) -> Path:
    path.write_bytes((evidence.folder / "disk.img").read_bytes()[: 2048 * SECTOR + 300 * SECTOR])
    return path


def _past_the_end(path: Path, evidence: Evidence) -> Path:
    data = bytearray((evidence.folder / "disk.img").read_bytes())
    data[446 + 16 + 8 : 446 + 16 + 12] = (0x7FFF0000).to_bytes(4, "little")  # partition 2 starts at 1 TiB
    path.write_bytes(bytes(data))
    return path


def _random_mbr(path: Path, evidence: Evidence) -> Path:
    data = bytearray(np.random.default_rng(9).integers(0, 256, 4 * MIB, dtype=np.uint8).tobytes())
    data[446:510] = bytes(64)
    for k, start in enumerate((2048, 4096)):
        entry = 446 + 16 * k
        data[entry : entry + 16] = (
            bytes([0, 0, 0, 0, 0x0C, 0, 0, 0]) + start.to_bytes(4, "little") + (2048).to_bytes(4, "little")
        )
    data[510:512] = b"\x55\xaa"
    path.write_bytes(bytes(data))
    return path


def _random_ewf(path: Path, evidence: Evidence) -> Path:
    path.write_bytes(b"EVF\x09\x0d\x0a\xff\x00\x01\x01\x00" + os.urandom(200_000))
    return path


def _bad_superblock(path: Path, evidence: Evidence) -> Path:
    data = bytearray((evidence.folder / "linux.img").read_bytes())
    data[1024 + 4 : 1024 + 8] = (0xFFFFFFF0).to_bytes(4, "little")  # more blocks than the image holds
    data[1024 + 24 : 1024 + 28] = (6).to_bytes(4, "little")  # 64 KiB blocks
    path.write_bytes(bytes(data))
    return path


def _loop(path: Path, evidence: Evidence) -> Path:
    return _fat_loop(path)


HOSTILE: dict[str, HostileBuilder] = {
    "truncated.img": _truncated,
    "past-the-end.img": _past_the_end,
    "random-mbr.img": _random_mbr,
    "random.E01": _random_ewf,
    "bad-superblock.img": _bad_superblock,
    "loop.img": _loop,
}


def test_scan_limits_stop_a_disk_image_with_an_error_on_it(evidence: Evidence) -> None:
    image, *members = tree(evidence.folder / "card.img", Limits(max_members=2))
    assert image.errors == ["more than 2 members (--max-members): the rest are not scanned"]
    assert len(members) == 2 and all(m.md5 for m in members)
    image, *members = tree(evidence.folder / "card.img", Limits(max_depth=1))
    inner = next(m for m in members if m.inside == ["/vm/inner.img"])
    assert inner.md5 == md5(evidence.inner)
    assert inner.errors == ["nested deeper than 1 levels (--max-depth): not opened"]


def test_fat_directory_loop_ends_with_each_folder_listed_once(tmp_path: Path, deadline: Any) -> None:
    with deadline(20):
        members = listing(_fat_loop(tmp_path / "loop.img"))
    assert "/a/x.txt" in members
    assert all(name.count("/b") <= 1 for name in members)


def test_hostile_images_are_errors_on_their_item_and_the_scan_goes_on(
    evidence: Evidence, tmp_path: Path, run_vakta: RunCli
) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    for name, build in HOSTILE.items():
        build(folder / name, evidence)
    (folder / "z-sig.jpg").write_bytes(SIG)
    result = run_vakta("scan", folder, "--all", "--workers", "1", timeout=120, memory_limit=3 << 30)
    assert result.exit_code == 1, result.stderr
    records = result.records()
    tops = {Path(r["path"]).name: r for r in records if "inside" not in r}
    assert set(tops) == {*HOSTILE, "z-sig.jpg"}
    assert tops["z-sig.jpg"]["matches"]  # the scan went on past every hostile image
    inside = [r for r in records if "inside" in r]

    def errors_of(name: str) -> list[str]:
        own = tops[name]["errors"]
        members = [e for r in inside if Path(r["path"]).name == name for e in r["errors"]]
        return own + members

    for name in ("truncated.img", "past-the-end.img", "random-mbr.img", "random.E01", "bad-superblock.img"):
        assert errors_of(name), f"{name}: no error reported"
    assert tops["random.E01"]["errors"] == ["disk: EWF image holds no media data (damaged or empty)"]
    past = [r for r in inside if Path(r["path"]).name == "past-the-end.img"]
    assert any("past the end of the image" in e for r in past for e in r["errors"])
    assert any(r["inside"] == ["partition 1 (FAT16) > /DCIM/a.jpg"] and r["matches"] for r in past)
    loop = [r["inside"][0] for r in inside if Path(r["path"]).name == "loop.img"]
    assert "/a/x.txt" in loop and len(loop) == len(set(loop))
