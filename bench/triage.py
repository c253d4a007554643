"""Triage speed: `vakta scan` of a raw disk image against `hashdeep -r` over the same files.

    python bench/triage.py [--size 2G] [--photo-share 0.03] [--repeat 2] [--workers N] [--keep DIR] [--json]

In one run, on benign generated data and the photos of ``../shared/corpus``:

1. A folder shaped like a laptop's user data is generated (``--size`` bytes in all):
   application files (random bytes: incompressible, as installed software and media
   containers are), documents (text), photos (copies of the corpus, each made unique by a
   trailing tag), and in ``Downloads`` archives holding photos and documents: a ZIP, a
   tar.gz, and a ZIP inside a ZIP.  ``--photo-share`` is the photos' share of the bytes.
2. ``mkfs.ext4 -d`` turns the folder into a raw ext4 disk image (no mounting).
3. The baseline: the same files with every archive extracted beside it (what an examiner
   hashes after unpacking) are hashed by ``hashdeep -r -c md5,sha1,sha256`` (the digests
   Vakta computes; hashdeep's default ``md5,sha256`` is timed too).  MB/s = the bytes of that
   folder over the wall time.
4. Vakta: ``vakta scan IMAGE --all``, as it is and with ``--no-extra-queries`` (PDQ's eight
   rotations only, no edited-copy variants: a faster triage pass), (the installed CLI, ``--workers`` processes, default
   one per core, a fresh home, no lists but the built-in test list): it reads the image,
   walks the filesystem, opens the archives in it, and computes MD5, SHA-1, SHA-256 and,
   for every picture, PDQ with its query variants.  MB/s = the same byte count as the
   baseline's over Vakta's wall time (Vakta also reads the image itself once for its
   digests: that is part of its time).
5. Completeness: every MD5 hashdeep reports must be among the MD5s Vakta reports.

Each timing is the best of ``--repeat`` runs after one warm-up run of each (page cache
warm for both).  The goal, ``vakta >= 0.8x hashdeep`` in MB/s, is printed as met or missed;
nothing is asserted.  Needs Debian's ``hashdeep`` and ``e2fsprogs``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE.parent.parent / "shared" / "corpus"
MiB = 1 << 20
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "they",
    "you",
    "were",
    "her",
    "she",
    "there",
    "been",
    "one",
    "all",
    "we",
    "their",
    "has",
    "would",
    "when",
    "if",
    "so",
    "no",
    "more",
    "can",
    "will",
    "up",
    "out",
    "do",
    "any",
    "invoice",
    "meeting",
    "report",
    "budget",
    "quarter",
    "project",
    "schedule",
    "review",
    "minutes",
    "draft",
    "contract",
    "policy",
]


@dataclass
class Content:
    """The generated tree: its bytes by kind, and its archives."""

    root: Path
    bytes_by_kind: dict[str, int] = field(default_factory=dict)
    files_by_kind: dict[str, int] = field(default_factory=dict)
    archives: list[Path] = field(default_factory=list)

    def add(self, kind: str, path: Path) -> int:
        size = path.stat().st_size
        self.bytes_by_kind[kind] = self.bytes_by_kind.get(kind, 0) + size
        self.files_by_kind[kind] = self.files_by_kind.get(kind, 0) + 1
        return size


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper()
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def _photos(corpus: Path) -> list[bytes]:
    files = sorted(p for d in ("originals", "distractors") for p in (corpus / d).glob("*") if p.is_file())
    if not files:
        sys.exit(f"no photos in {corpus} (see ../shared/corpus/README.md)")
    return [p.read_bytes() for p in files]


def _photo(rng: random.Random, photos: list[bytes], n: int) -> bytes:
    """A corpus photo made unique: decoders ignore bytes after the end of the image."""
    return photos[n % len(photos)] + b"\0vakta-bench-" + rng.randbytes(12)


def _text(rng: random.Random, size: int) -> bytes:
    words = rng.choices(WORDS, k=size // 5 + 1)
    return " ".join(words).encode()[:size]


def _random_file(path: Path, size: int, rng: random.Random) -> None:
    with path.open("wb") as out:
        left = size
        while left:
            chunk = min(left, 4 * MiB)
            out.write(rng.randbytes(chunk))
            left -= chunk


def generate(root: Path, total: int, photo_share: float, corpus: Path, seed: int = 1) -> Content:
    """A laptop-shaped tree of about ``total`` bytes."""
    rng = random.Random(seed)
    photos = _photos(corpus)
    content = Content(root)
    pics = root / "Users" / "alice" / "Pictures"
    docs = root / "Users" / "alice" / "Documents"
    apps = root / "Program Files" / "Vendor"
    downloads = root / "Users" / "alice" / "Downloads"
    for folder in (pics, docs, apps, downloads):
        folder.mkdir(parents=True, exist_ok=True)
    made = 0
    n = 0
    while content.bytes_by_kind.get("photo", 0) < photo_share * total:
        sub = pics / f"{2015 + n // 400}" / f"{n // 40 % 10:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"IMG_{n:05d}.jpg"
        path.write_bytes(_photo(rng, photos, n))
        made += content.add("photo", path)
        n += 1
    doc_bytes = int(0.06 * total)
    d = 0
    while content.bytes_by_kind.get("document", 0) < doc_bytes:
        path = docs / f"{WORDS[d % len(WORDS)]}-{d:04d}.txt"
        path.write_bytes(_text(rng, int(rng.lognormvariate(10, 1.5)) % (2 * MiB) + 200))
        made += content.add("document", path)
        d += 1
    made += _archives(downloads, rng, photos, n, content, int(0.08 * total))
    a = 0
    while made < total:
        size = min(int(2 ** rng.uniform(12, 26)), total - made)
        path = apps / f"component-{a:05d}.bin"
        _random_file(path, max(size, 1), rng)
        made += content.add("application", path)
        a += 1
    return content


def _archives(
    folder: Path, rng: random.Random, photos: list[bytes], first: int, content: Content, budget: int
) -> int:
    """A ZIP, a tar.gz and a ZIP inside a ZIP, each holding photos and documents."""
    made = 0
    per = budget // 3

    def members(count_bytes: int, offset: int) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        size = 0
        k = 0
        while size < count_bytes:
            if k % 3 == 2:
                data = _text(rng, 20_000 + k)
                name = f"notes/{k:04d}.txt"
            else:
                data = _photo(rng, photos, offset + k)
                name = f"photos/DSC{k:05d}.jpg"
            out.append((name, data))
            size += len(data)
            k += 1
        return out

    zpath = folder / "holiday-photos.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members(per, first + 10_000):
            z.writestr(name, data)
    tpath = folder / "backup-2019.tar.gz"
    with tarfile.open(tpath, "w:gz") as t:
        for name, data in members(per, first + 20_000):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members(per, first + 30_000):
            z.writestr(name, data)
    npath = folder / "old-phone.zip"
    with zipfile.ZipFile(npath, "w", zipfile.ZIP_STORED) as z:
        z.writestr("export/inner.zip", inner.getvalue())
        z.writestr("export/readme.txt", _text(rng, 5_000))
    for path in (zpath, tpath, npath):
        made += content.add("archive", path)
        content.archives.append(path)
    return made


def extracted_copy(content: Content, dest: Path) -> int:
    """The tree with every archive (nested ones too) extracted beside it; returns its byte count."""
    shutil.copytree(content.root, dest, copy_function=os.link)
    pending = [dest / p.relative_to(content.root) for p in content.archives]
    while pending:
        archive = pending.pop()
        target = archive.with_name(archive.name + ".d")
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                z.extractall(target)
        else:
            with tarfile.open(archive) as t:
                t.extractall(target, filter="data")
        pending += [p for p in target.rglob("*.zip")]
    return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())


def make_image(content: Content, image: Path) -> None:
    total = sum(p.stat().st_size for p in content.root.rglob("*") if p.is_file())
    size_mb = int(total * 1.12 / MiB) + 96
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d", str(content.root), str(image), f"{size_mb}M"],
        check=True,
    )


def _time(command: list[str], env: dict[str, str] | None = None, out: Path | None = None) -> float:
    started = time.perf_counter()
    with open(out or os.devnull, "wb") as sink:
        subprocess.run(command, check=False, stdout=sink, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def _best(
    command: list[str], repeat: int, env: dict[str, str] | None = None, out: Path | None = None
) -> float:
    _time(command, env, out)  # warm the page cache and the imports
    return min(_time(command, env, out) for _ in range(repeat))


def _vakta_bin() -> list[str]:
    beside = Path(sys.executable).parent / "vakta"
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "vakta"]


def _md5s_hashdeep(folder: Path) -> set[str]:
    done = subprocess.run(
        ["hashdeep", "-r", "-c", "md5", str(folder)], check=True, capture_output=True, text=True
    ).stdout
    return {line.split(",")[1] for line in done.splitlines() if line and not line.startswith(("%", "#"))}


def _md5s_vakta(report: Path) -> tuple[set[str], int, int]:
    md5s: set[str] = set()
    errors = files = 0
    for line in report.read_text().splitlines():
        record = json.loads(line)
        files += 1
        errors += bool(record.get("errors"))
        if record.get("md5"):
            md5s.add(record["md5"])
    return md5s, files, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="2G", help="bytes of generated files (default 2G)")
    ap.add_argument(
        "--photo-share", type=float, default=0.03, help="photos' share of the bytes (default 0.03)"
    )
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0, help="vakta scan --workers (default: one per core)")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for tool in ("hashdeep", "mkfs.ext4"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install hashdeep e2fsprogs)")
    work = args.keep or Path(tempfile.mkdtemp(prefix="vakta-triage-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> int:
    total = parse_size(args.size)
    for earlier in ("content", "extracted", "home"):  # a --keep folder used before
        shutil.rmtree(work / earlier, ignore_errors=True)
    started = time.perf_counter()
    content = generate(work / "content", total, args.photo_share, args.corpus)
    image = work / "laptop.raw"
    make_image(content, image)
    folder_bytes = extracted_copy(content, work / "extracted")
    made_in = time.perf_counter() - started
    print(
        f"generated in {made_in:.0f} s: image {image.stat().st_size / MiB:,.0f} MiB; files "
        + ", ".join(
            f"{k} {content.files_by_kind[k]:,} ({v / MiB:,.0f} MiB)" for k, v in content.bytes_by_kind.items()
        )
        + f"; extracted folder {folder_bytes / MiB:,.0f} MiB",
        flush=True,
    )
    folder = str(work / "extracted")
    t_hd3 = _best(["hashdeep", "-r", "-c", "md5,sha1,sha256", folder], args.repeat)
    t_hd = _best(["hashdeep", "-r", folder], args.repeat)
    home = work / "home"
    env = dict(os.environ, VAKTA_HOME=str(home))
    report = work / "vakta.jsonl"
    scan = [*_vakta_bin(), "scan", str(image), "--all", "--no-progress"]
    if args.workers:
        scan += ["--workers", str(args.workers)]
    t_plain = _best([*scan, "--no-extra-queries"], args.repeat, env, work / "vakta-plain.jsonl")
    t_vakta = _best(scan, args.repeat, env, report)
    found, files, errors = _md5s_vakta(report)
    expected = _md5s_hashdeep(work / "extracted")
    missing = expected - found
    result: dict[str, Any] = {
        "folder_mib": round(folder_bytes / MiB, 1),
        "hashdeep_md5_sha1_sha256_s": round(t_hd3, 2),
        "hashdeep_default_s": round(t_hd, 2),
        "vakta_s": round(t_vakta, 2),
        "hashdeep_md5_sha1_sha256_mb_s": round(folder_bytes / 1e6 / t_hd3, 1),
        "hashdeep_default_mb_s": round(folder_bytes / 1e6 / t_hd, 1),
        "vakta_mb_s": round(folder_bytes / 1e6 / t_vakta, 1),
        "vakta_plain_s": round(t_plain, 2),
        "vakta_plain_mb_s": round(folder_bytes / 1e6 / t_plain, 1),
        "vakta_plain_vs_hashdeep": round(t_hd3 / t_plain, 2),
        "vakta_vs_hashdeep": round(t_hd3 / t_vakta, 2),
        "vakta_vs_hashdeep_default": round(t_hd / t_vakta, 2),
        "vakta_items": files,
        "vakta_items_with_errors": errors,
        "files_hashdeep_hashed": len(expected),
        "missed_by_vakta": len(missing),
        "photo_share": args.photo_share,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"hashdeep -r -c md5,sha1,sha256: {result['hashdeep_md5_sha1_sha256_mb_s']} MB/s ({t_hd3:.1f} s); "
        f"hashdeep -r (md5,sha256): {result['hashdeep_default_mb_s']} MB/s ({t_hd:.1f} s)"
    )
    print(
        f"vakta scan (digests + PDQ + archives, from the raw image): {result['vakta_mb_s']} MB/s ({t_vakta:.1f} s), "
        f"{files:,} items, {errors} with errors"
    )
    print(
        f"vakta scan --no-extra-queries (the eight PDQ rotations only): {result['vakta_plain_mb_s']} MB/s "
        f"({t_plain:.1f} s)"
    )
    for label, key in (
        ("default scan", "vakta_vs_hashdeep"),
        ("--no-extra-queries", "vakta_plain_vs_hashdeep"),
    ):
        met = result[key] >= 0.8
        print(
            f"vakta ({label}) vs hashdeep -r -c md5,sha1,sha256: {result[key]:.2f}x (goal >= 0.8x) "
            f"{'met' if met else 'MISSED'}"
        )
    print(
        f"completeness: {len(expected) - len(missing):,} of {len(expected):,} files hashdeep hashed found by vakta"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
