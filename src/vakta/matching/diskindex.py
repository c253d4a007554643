"""The on-disk index of a list store: memory-mapped hash arrays that open in milliseconds.

A folder (``<home>/index``) holds *generations*; ``CURRENT`` names the one in use::

    index/
      CURRENT                 {"format": 1, "base": "gen-000003", "delta": "delta-000003-000005"}
      LOCK                    writers take it (flock); readers never do
      gen-000003/             a full build: manifest.json and .npy arrays
        manifest.json         format, lists (number, name, purpose, store id, last import seen),
                              counts, PDQ word layout, byte size of every file
        pdq-hashes.npy        N x 32 uint8            pdq-owners.npy    N int32 (list numbers)
        pdq-postings.npy      m x N uint32 (rows by word)
        pdq-tables.npy        bucket offsets, 2**b + 1 per word
        md5-keys.npy ...      n x 16 uint8 grouped by leading bits, owners, bucket table
      delta-000003-000005/    everything changed since gen-000003 (cumulative): added hashes as
                              small segments of the same form, removed base rows (tombstones),
                              the list table with removed lists marked

Arrays are opened with ``np.load(mmap_mode="r")``: opening reads only the
headers, pages are read on first use and shared between all processes that
map them (a scan's workers, other scans).  Nothing is ever rewritten in
place: a change writes a new folder under a temporary name, renames it, then
replaces ``CURRENT`` (``os.replace``, atomic), so a reader holding the old
generation keeps working (its mapped files stay valid even once deleted) and
a new reader sees either the old or the new state, never a mix.  A delta
makes a change visible in a fraction of a second; :func:`compact` merges it
into a new base, in a background process once the delta grows past a share
of the base (``COMPACTING`` is held while one runs).

Each entry carries its list number; :meth:`DiskIndex.restricted` limits a
search to chosen lists without copying anything.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vakta.lists.store import ListStore
from vakta.matching.search import (
    MIN_QUALITY,
    DigestIndex,
    DigestSegment,
    Layout,
    Owners,
    PdqIndex,
    PdqSegment,
    Rows,
    owner_mask,
)
from vakta.signals.kinds import DIGEST_KINDS, HEX_LENGTHS

#: Version of the folder layout; an index of another version is refused (rebuild it).
FORMAT = 1
KINDS = (*DIGEST_KINDS, "pdq")
#: A delta larger than this share of the base (or than _DELTA_MIN entries) is merged into a new base.
_DELTA_SHARE = 0.05
_DELTA_MIN = 200_000
_OPEN_RETRIES = 5


class IndexFormatError(Exception):
    """The index folder is missing, of another format version, or damaged: rebuild it from the store."""


@dataclass
class IndexedList:
    """One list as the index knows it; its position in :attr:`DiskIndex.lists` is its number."""

    name: str
    purpose: str
    store_id: int | None
    #: The last import of the list that the index holds (store import id).
    seen_import: int
    removed: bool = False
    #: The store's creation time of the list (its id alone may be reused after a removal).
    created_at: str = ""


@dataclass
class UpdateReport:
    """What :func:`update` (or :func:`add`/:func:`remove`) did."""

    added: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    lists_added: list[str] = field(default_factory=list)
    lists_removed: list[str] = field(default_factory=list)
    compacted: bool = False
    #: A background compaction was started (the delta grew past its share of the base).
    compacting: bool = False
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(
            any(self.added.values()) or any(self.removed.values()) or self.lists_added or self.lists_removed
        )


# --- files -------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _save(folder: Path, name: str, array: NDArray[Any], files: dict[str, int]) -> None:
    path = folder / f"{name}.npy"
    with open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())
    files[path.name] = path.stat().st_size


def _load(folder: Path, name: str, files: dict[str, int]) -> NDArray[Any]:
    path = folder / f"{name}.npy"
    try:
        size = path.stat().st_size
        if files.get(path.name) != size:
            raise IndexFormatError(
                f"index file {path} is damaged: {size} bytes, the manifest says {files.get(path.name)}"
            )
        array: NDArray[Any] = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise IndexFormatError(f"index file {path} is missing") from None
    except (ValueError, OSError) as exc:
        raise IndexFormatError(f"index file {path} is damaged: {exc}") from None
    return array


def _save_pdq(folder: Path, prefix: str, segment: PdqSegment, files: dict[str, int]) -> dict[str, Any]:
    for key, array in segment.arrays().items():
        _save(folder, f"{prefix}-{key}", array, files)
    return {"count": len(segment), "layout": list(segment.layout)}


def _load_pdq(folder: Path, prefix: str, meta: dict[str, Any], files: dict[str, int]) -> PdqSegment:
    arrays = {
        key: _load(folder, f"{prefix}-{key}", files) for key in ("hashes", "owners", "postings", "tables")
    }
    layout: Layout = tuple(int(b) for b in meta["layout"])
    try:
        segment = PdqSegment(
            arrays["hashes"],
            arrays["owners"],
            layout,
            arrays["postings"] if layout else None,
            arrays["tables"] if layout else None,
        )
    except ValueError as exc:
        raise IndexFormatError(f"index {folder}: {prefix} arrays do not fit together ({exc})") from None
    if (
        len(segment) != meta["count"]
        or arrays["hashes"].dtype != np.uint8
        or arrays["owners"].dtype != np.int32
    ):
        raise IndexFormatError(f"index {folder}: {prefix} arrays do not match the manifest")
    segment.reopen = (_load_pdq, (folder, prefix, meta, files))
    return segment


def _save_digests(folder: Path, prefix: str, segment: DigestSegment, files: dict[str, int]) -> dict[str, Any]:
    for key, array in segment.arrays().items():
        _save(folder, f"{prefix}-{key}", array, files)
    return {"count": len(segment), "bits": segment.bits}


def _load_digests(
    folder: Path, prefix: str, kind: str, meta: dict[str, Any], files: dict[str, int]
) -> DigestSegment:
    arrays = {key: _load(folder, f"{prefix}-{key}", files) for key in ("keys", "owners", "table")}
    try:
        segment = DigestSegment(arrays["keys"], arrays["owners"], arrays["table"], int(meta["bits"]))
    except ValueError as exc:
        raise IndexFormatError(f"index {folder}: {prefix} arrays do not fit together ({exc})") from None
    shape_ok = arrays["keys"].ndim == 2 and arrays["keys"].shape[1] == HEX_LENGTHS[kind] // 2
    if len(segment) != meta["count"] or not shape_ok or arrays["owners"].dtype != np.int32:
        raise IndexFormatError(f"index {folder}: {prefix} arrays do not match the manifest")
    segment.reopen = (_load_digests, (folder, prefix, kind, meta, files))
    return segment


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise IndexFormatError(f"{path} is missing") from None
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{path} is damaged: {exc}") from None
    if not isinstance(data, dict):
        raise IndexFormatError(f"{path} is damaged: not a JSON object")
    if data.get("format") != FORMAT:
        raise IndexFormatError(f"{path} is index format {data.get('format')!r}, this Vakta reads {FORMAT}")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _new_folder(root: Path, name: str) -> Iterator[Path]:
    """A folder filled under a temporary name, renamed to ``name`` when complete."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        yield tmp
        os.rename(tmp, root / name)
        _fsync_dir(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _writer_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "LOCK", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _publish(root: Path, base: str, delta: str | None) -> None:
    _write_json(root / "CURRENT", {"format": FORMAT, "base": base, "delta": delta})
    _fsync_dir(root)
    _prune(root, {base, delta})


def _prune(root: Path, keep: set[str | None]) -> None:
    """Delete generations older than the previous one (a reader may still be opening that)."""
    folders = sorted(
        (p for p in root.iterdir() if p.is_dir() and p.name.startswith(("gen-", "delta-"))),
        key=lambda p: p.stat().st_mtime,
    )
    old = [p for p in folders if p.name not in keep]
    for path in old[:-2]:
        shutil.rmtree(path, ignore_errors=True)


def _next_generation(root: Path) -> int:
    numbers = [0]
    for path in root.iterdir() if root.exists() else ():
        parts = path.name.lstrip(".").split(".")[0].split("-")
        if parts[0] in ("gen", "delta") and parts[-1].isdigit():
            numbers.append(int(parts[-1]))
    return max(numbers) + 1


# --- the reader ----------------------------------------------------------------


@dataclass
class _Delta:
    """Changes since the base: added entries per kind and removed base rows per kind."""

    pdq_hashes: NDArray[np.uint8]
    pdq_owners: Owners
    digest_keys: dict[str, NDArray[np.uint8]]
    digest_owners: dict[str, Owners]
    removed: dict[str, Rows]

    @classmethod
    def empty(cls) -> _Delta:
        return cls(
            np.empty((0, 32), np.uint8),
            np.empty(0, np.int32),
            {k: np.empty((0, HEX_LENGTHS[k] // 2), np.uint8) for k in DIGEST_KINDS},
            {k: np.empty(0, np.int32) for k in DIGEST_KINDS},
            {k: np.empty(0, np.int64) for k in KINDS},
        )

    def size(self) -> int:
        return (
            len(self.pdq_owners)
            + sum(len(o) for o in self.digest_owners.values())
            + sum(len(r) for r in self.removed.values())
        )


class DiskIndex:
    """An opened generation (base plus delta) of an index folder: searchable, shareable, read-only."""

    def __init__(
        self,
        root: Path,
        base: str,
        delta: str | None,
        lists: list[IndexedList],
        pdq: PdqIndex,
        digests: dict[str, DigestIndex],
        manifest: dict[str, Any],
    ) -> None:
        self.root = root
        self.base = base
        self.delta = delta
        self.lists = lists
        self.manifest = manifest
        self._pdq = pdq
        self._digests = digests

    # opening

    @classmethod
    def open(cls, root: Path, reuse: DiskIndex | None = None) -> DiskIndex:
        """Open the current generation; IndexFormatError if there is none or it is damaged.

        With ``reuse`` (an index of the same folder), its base arrays serve
        again when the base did not change: mapped pages stay mapped.
        """
        for attempt in range(_OPEN_RETRIES):
            current = _read_json(root / "CURRENT")
            try:
                return cls._open(root, str(current["base"]), current.get("delta"), reuse)
            except IndexFormatError:
                # A writer may have switched generations and pruned this one meanwhile.
                if attempt == _OPEN_RETRIES - 1 or _read_json(root / "CURRENT") == current:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _open(cls, root: Path, base: str, delta: str | None, reuse: DiskIndex | None = None) -> DiskIndex:
        folder = root / base
        manifest = _read_json(folder / "manifest.json")
        files: dict[str, int] = manifest["files"]
        try:
            if reuse is not None and reuse.root == root and reuse.base == base:
                pdq_segments = reuse.pdq.segments[:1]
                digest_segments = {k: reuse.digests[k].segments[:1] for k in DIGEST_KINDS}
            else:
                pdq_segments = [_load_pdq(folder, "pdq", manifest["pdq"], files)]
                digest_segments = {
                    k: [_load_digests(folder, k, k, manifest["digests"][k], files)] for k in DIGEST_KINDS
                }
            lists = [IndexedList(**item) for item in manifest["lists"]]
            removed: dict[str, Rows] = {k: np.empty(0, np.int64) for k in KINDS}
            if delta:
                dfolder = root / delta
                dman = _read_json(dfolder / "manifest.json")
                if dman.get("base") != base:
                    raise IndexFormatError(f"index delta {dfolder} belongs to {dman.get('base')}, not {base}")
                dfiles: dict[str, int] = dman["files"]
                pdq_segments.append(_load_pdq(dfolder, "pdq", dman["pdq"], dfiles))
                for k in DIGEST_KINDS:
                    digest_segments[k].append(_load_digests(dfolder, k, k, dman["digests"][k], dfiles))
                removed = {
                    k: np.asarray(_load(dfolder, f"{k}-removed", dfiles), dtype=np.int64) for k in KINDS
                }
                lists = [IndexedList(**item) for item in dman["lists"]]
        except (KeyError, TypeError) as exc:
            raise IndexFormatError(f"index {folder}: manifest lacks {exc}") from None
        live = owner_mask((n for n, item in enumerate(lists) if not item.removed), len(lists))
        pdq = PdqIndex.from_segments(pdq_segments, removed["pdq"], live)
        digests = {
            k: DigestIndex.from_segments(k, digest_segments[k], removed[k], live) for k in DIGEST_KINDS
        }
        return cls(root, base, delta, lists, pdq, digests, manifest)

    def is_current(self) -> bool:
        """Whether ``CURRENT`` still names what this index opened."""
        try:
            current = _read_json(self.root / "CURRENT")
        except IndexFormatError:
            return False
        return bool(current.get("base") == self.base and current.get("delta") == self.delta)

    def refresh(self) -> DiskIndex:
        """This index, or the newer generation if one was published (cheap: one small file read)."""
        return self if self.is_current() else DiskIndex.open(self.root, reuse=self)

    # searching

    @property
    def list_names(self) -> list[str]:
        """Names by list number (the numbers hits carry); a removed list keeps its place, named "".

        So a name occurs once even when a list was removed and imported again.
        """
        return ["" if item.removed else item.name for item in self.lists]

    def numbers(self, names: Sequence[str]) -> list[int]:
        """The list numbers of live lists named ``names`` (KeyError for one the index lacks)."""
        live = {item.name: n for n, item in enumerate(self.lists) if not item.removed}
        missing = [name for name in names if name not in live]
        if missing:
            raise KeyError(f"the index has no list named {', '.join(map(repr, missing))}")
        return [live[name] for name in names]

    def restricted(self, names: Sequence[str] | None = None) -> tuple[dict[str, DigestIndex], PdqIndex]:
        """Digest and PDQ indexes limited to lists ``names`` (None: every live list); arrays shared."""
        if names is None:
            return self._digests, self._pdq
        mask = owner_mask(self.numbers(names), len(self.lists))
        return {k: d.restricted(mask) for k, d in self._digests.items()}, self._pdq.restricted(mask)

    @property
    def pdq(self) -> PdqIndex:
        return self._pdq

    @property
    def digests(self) -> dict[str, DigestIndex]:
        return self._digests

    def names(self, purpose: str | None = None) -> list[str]:
        return [i.name for i in self.lists if not i.removed and (purpose is None or i.purpose == purpose)]

    def stale(self, store: ListStore) -> bool:
        """Whether the store changed since this generation (lists added, removed or imported into)."""
        known = {
            (i.store_id, i.name, i.purpose, i.created_at, i.seen_import)
            for i in self.lists
            if not i.removed and i.store_id is not None
        }
        return known != set(store.list_states())

    def delta_size(self) -> int:
        """Entries added or removed since the base (what a compaction would merge)."""
        return self._delta().size()

    # reading the arrays back (compaction, deltas)

    def _delta(self) -> _Delta:
        if not self.delta:
            return _Delta.empty()
        pdq_delta = self._pdq.segments[1]
        return _Delta(
            np.array(pdq_delta.raw),
            np.array(pdq_delta.owners),
            {k: np.array(d.segments[1].keys) for k, d in self._digests.items()},
            {k: np.array(d.segments[1].owners) for k, d in self._digests.items()},
            {k: d.removed_rows for k, d in self._digests.items()} | {"pdq": self._pdq.removed_rows},
        )


# --- writing -------------------------------------------------------------------


def _write_base(
    root: Path,
    lists: list[IndexedList],
    pdq: tuple[NDArray[np.uint8], Owners],
    digests: dict[str, tuple[NDArray[np.uint8], Owners]],
    min_quality: int,
    layout: Layout | None = None,
) -> str:
    name = f"gen-{_next_generation(root):06d}"
    with _new_folder(root, name) as folder:
        files: dict[str, int] = {}
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "kind": "base",
            "created": _now(),
            "min_quality": min_quality,
        }
        manifest["lists"] = [asdict(item) for item in lists]
        manifest["pdq"] = _save_pdq(folder, "pdq", PdqSegment.build(pdq[0], pdq[1], layout), files)
        manifest["digests"] = {
            k: _save_digests(folder, k, DigestSegment.build(HEX_LENGTHS[k] // 2, keys, owners), files)
            for k, (keys, owners) in digests.items()
        }
        manifest["files"] = files
        _write_json(folder / "manifest.json", manifest)
    return name


def _write_delta(root: Path, base: str, lists: list[IndexedList], delta: _Delta) -> str:
    name = f"delta-{base.split('-')[-1]}-{_next_generation(root):06d}"
    with _new_folder(root, name) as folder:
        files: dict[str, int] = {}
        manifest: dict[str, Any] = {"format": FORMAT, "kind": "delta", "base": base, "created": _now()}
        manifest["lists"] = [asdict(item) for item in lists]
        manifest["pdq"] = _save_pdq(
            folder, "pdq", PdqSegment.build(delta.pdq_hashes, delta.pdq_owners), files
        )
        manifest["digests"] = {
            k: _save_digests(
                folder,
                k,
                DigestSegment.build(HEX_LENGTHS[k] // 2, delta.digest_keys[k], delta.digest_owners[k]),
                files,
            )
            for k in DIGEST_KINDS
        }
        for k in KINDS:
            _save(folder, f"{k}-removed", np.unique(delta.removed[k]).astype(np.int64), files)
        manifest["files"] = files
        _write_json(folder / "manifest.json", manifest)
    return name


def build(
    store: ListStore, root: Path, min_quality: int = MIN_QUALITY, layout: Layout | None = None
) -> DiskIndex:
    """Index every list of ``store`` into a new generation under ``root``, publish it and open it.

    PDQ hashes of recorded quality below ``min_quality`` are left out, as the
    in-memory index does.  ``layout`` overrides the PDQ word layout (benchmarks).
    """
    with _writer_lock(root):
        lists: list[IndexedList] = []
        pdq_parts: list[bytes] = []
        pdq_owner_parts: list[Owners] = []
        digest_parts: dict[str, list[bytes]] = {k: [] for k in DIGEST_KINDS}
        digest_owner_parts: dict[str, list[Owners]] = {k: [] for k in DIGEST_KINDS}
        for list_id, name, purpose, created, last in store.list_states():
            number = len(lists)
            lists.append(IndexedList(name, purpose, list_id, last, created_at=created))
            for kind in KINDS:
                floor = min_quality if kind == "pdq" else None
                values = store.hash_values_since(list_id, kind, -1, floor)
                count = len(values) // (HEX_LENGTHS[kind] // 2)
                owners = np.full(count, number, np.int32)
                if kind == "pdq":
                    pdq_parts.append(values)
                    pdq_owner_parts.append(owners)
                else:
                    digest_parts[kind].append(values)
                    digest_owner_parts[kind].append(owners)
        pdq = (_array(pdq_parts, 32), _owners(pdq_owner_parts))
        digests = {
            k: (_array(digest_parts[k], HEX_LENGTHS[k] // 2), _owners(digest_owner_parts[k]))
            for k in DIGEST_KINDS
        }
        base = _write_base(root, lists, pdq, digests, min_quality, layout)
        _publish(root, base, None)
    return DiskIndex.open(root)


def write_index(
    root: Path,
    lists: Sequence[IndexedList],
    pdq: tuple[NDArray[np.uint8], Owners],
    digests: dict[str, tuple[NDArray[np.uint8], Owners]] | None = None,
    min_quality: int = MIN_QUALITY,
    layout: Layout | None = None,
) -> DiskIndex:
    """Publish a new base generation from arrays (owners are positions in ``lists``) and open it."""
    empty = {k: (np.empty((0, HEX_LENGTHS[k] // 2), np.uint8), np.empty(0, np.int32)) for k in DIGEST_KINDS}
    with _writer_lock(root):
        base = _write_base(root, list(lists), pdq, empty | (digests or {}), min_quality, layout)
        _publish(root, base, None)
    return DiskIndex.open(root)


def _array(parts: list[bytes], width: int) -> NDArray[np.uint8]:
    return np.frombuffer(b"".join(parts), dtype=np.uint8).reshape(-1, width)


def _owners(parts: list[Owners]) -> Owners:
    return np.concatenate(parts) if parts else np.empty(0, np.int32)


def compact(root: Path) -> DiskIndex:
    """Merge the delta into a new base generation (no store needed) and publish it.

    The new base is written from a snapshot without the writer lock, so imports
    and removals go on meanwhile (readers are never blocked); it is published
    only if nothing changed since the snapshot, else the merge starts again
    from the newer state, the last time under the lock.
    """
    with _compactor_lock(root, wait=True):
        for _ in range(_COMPACT_ATTEMPTS):
            snapshot = DiskIndex.open(root)
            if snapshot.delta is None:
                return snapshot
            base = _write_compacted(snapshot)
            with _writer_lock(root):
                if snapshot.is_current():
                    _publish(root, base, None)
                    return DiskIndex.open(root)
            shutil.rmtree(root / base, ignore_errors=True)
        with _writer_lock(root):
            _publish(root, _write_compacted(DiskIndex.open(root)), None)
    return DiskIndex.open(root)


#: Merges tried from a snapshot before the last one runs under the writer lock.
_COMPACT_ATTEMPTS = 3
COMPACTION_LOG = "compaction.log"
#: How long a caller waits for the compaction process to start (Python start-up).
_COMPACTOR_START_S = 30.0


@contextmanager
def _compactor_lock(root: Path, wait: bool) -> Iterator[bool]:
    """Held by the one compaction running on ``root``; yields False (without waiting) if taken."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "COMPACTING", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def compaction_running(root: Path) -> bool:
    with _compactor_lock(root, wait=False) as free:
        return not free


def compact_in_background(root: Path) -> bool:
    """Start a detached process that compacts ``root``; False if one is already at work.

    A separate process, so a short-lived caller (``vakta lists import``) returns
    at once and the merge survives it; its output goes to ``compaction.log``.
    """
    if compaction_running(root):
        return False
    code = "import sys; from pathlib import Path; from vakta.matching.diskindex import compact; compact(Path(sys.argv[1]))"
    with open(root / COMPACTION_LOG, "ab") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-c", code, str(root)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    # Return once the child holds the lock, so a waiter never sees "no compaction" too early.
    deadline = time.monotonic() + _COMPACTOR_START_S
    while not compaction_running(root) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return True


def wait_for_compaction(root: Path, timeout: float = 600.0) -> bool:
    """Wait until no compaction runs on ``root`` (True), or ``timeout`` seconds (False)."""
    deadline = time.monotonic() + timeout
    while compaction_running(root):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _live_arrays(
    segments: Sequence[Any], removed: Rows, live: NDArray[np.bool_], attr: str
) -> tuple[NDArray[np.uint8], Owners]:
    values = [np.asarray(getattr(s, attr)) for s in segments]
    owners = [np.asarray(s.owners) for s in segments]
    all_values = np.concatenate(values) if values else np.empty((0, 32), np.uint8)
    all_owners = np.concatenate(owners) if owners else np.empty(0, np.int32)
    keep = live[all_owners]
    keep[removed[removed < len(keep)]] = False
    return all_values[keep], all_owners[keep]


def _write_compacted(index: DiskIndex) -> str:
    """A new base generation holding everything ``index`` (base plus delta) holds; not published."""
    live = owner_mask((n for n, i in enumerate(index.lists) if not i.removed), len(index.lists))
    removed = index._delta().removed
    pdq = _live_arrays(index.pdq.segments, removed["pdq"], live, "raw")
    digests = {k: _live_arrays(d.segments, removed[k], live, "keys") for k, d in index.digests.items()}
    layout = None
    return _write_base(
        index.root, index.lists, pdq, digests, int(index.manifest.get("min_quality", MIN_QUALITY)), layout
    )


def _apply(
    index: DiskIndex,
    lists: list[IndexedList],
    added: dict[str, tuple[NDArray[np.uint8], Owners]],
    removed: dict[str, tuple[NDArray[np.uint8], Owners]],
    report: UpdateReport,
    explicit: bool = False,
) -> None:
    """Publish a new delta (or a compacted base) holding the index's delta plus these changes.

    ``explicit`` additions (one list per kind, from :func:`add`) are checked
    against what the list holds; the store's new rows never repeat one.
    """
    delta = index._delta()
    base_sizes = {"pdq": len(index.pdq.segments[0])} | {
        k: len(d.segments[0]) for k, d in index.digests.items()
    }
    for kind in KINDS:
        width = HEX_LENGTHS[kind] // 2
        # Removals: base rows become tombstones, delta entries are dropped.
        values, owners = removed.get(kind, (np.empty((0, width), np.uint8), np.empty(0, np.int32)))
        if len(values):
            base_rows, delta_rows = _matching_rows_of_owners(index, kind, values, owners)
            delta.removed[kind] = np.union1d(delta.removed[kind], base_rows).astype(np.int64)
            if kind == "pdq":
                keep = np.ones(len(delta.pdq_owners), bool)
                keep[delta_rows - base_sizes[kind]] = False
                delta.pdq_hashes, delta.pdq_owners = delta.pdq_hashes[keep], delta.pdq_owners[keep]
            else:
                keep = np.ones(len(delta.digest_owners[kind]), bool)
                keep[delta_rows - base_sizes[kind]] = False
                delta.digest_keys[kind] = delta.digest_keys[kind][keep]
                delta.digest_owners[kind] = delta.digest_owners[kind][keep]
            report.removed[kind] = report.removed.get(kind, 0) + len(base_rows) + len(delta_rows)
        values, owners = added.get(kind, (np.empty((0, width), np.uint8), np.empty(0, np.int32)))
        if len(values) and explicit:
            # A hash the list already holds (and was not removed) is not added twice.
            qi, rows = _found(index, kind, values, int(owners[0]))
            tombstones = delta.removed[kind]
            present = np.unique(qi[~np.isin(rows, tombstones)])
            fresh = np.ones(len(values), bool)
            fresh[present] = False
            values, owners = values[fresh], owners[fresh]
        if len(values):
            if kind == "pdq":
                delta.pdq_hashes = np.concatenate([delta.pdq_hashes, values])
                delta.pdq_owners = np.concatenate([delta.pdq_owners, owners])
            else:
                delta.digest_keys[kind] = np.concatenate([delta.digest_keys[kind], values])
                delta.digest_owners[kind] = np.concatenate([delta.digest_owners[kind], owners])
            report.added[kind] = report.added.get(kind, 0) + len(values)
    name = _write_delta(index.root, index.base, lists, delta)
    _publish(index.root, index.base, name)
    if delta.size() > max(_DELTA_MIN, _DELTA_SHARE * sum(base_sizes.values())):
        report.compacting = compact_in_background(index.root)


def _found(
    index: DiskIndex, kind: str, values: NDArray[np.uint8], owner: int
) -> tuple[NDArray[np.int64], Rows]:
    """(value index, row) of every row holding one of ``values`` for list ``owner``, removed ones included."""
    if kind == "pdq":
        pdq = PdqIndex.from_segments(index.pdq.segments)
        qi, rows, _ = pdq.search_raw(values, 0)
        row_owners = np.array([pdq.entry(r)[0] for r in rows.tolist()], dtype=np.int32)
    else:
        digest = DigestIndex.from_segments(kind, index.digests[kind].segments)
        qi, rows = digest.find_rows(values)
        row_owners = np.array([digest.owner_of(r) for r in rows.tolist()], dtype=np.int32)
    mine = row_owners == owner
    return qi[mine], rows[mine]


def _matching_rows(index: DiskIndex, kind: str, values: NDArray[np.uint8], owner: int) -> tuple[Rows, Rows]:
    """Rows (in the base, in the delta) holding these values for list ``owner``, removed ones included."""
    _, rows = _found(index, kind, values, owner)
    start = len(index.pdq.segments[0]) if kind == "pdq" else len(index.digests[kind].segments[0])
    return rows[rows < start], rows[rows >= start]


def _matching_rows_of_owners(
    index: DiskIndex, kind: str, values: NDArray[np.uint8], owners: Owners
) -> tuple[Rows, Rows]:
    """:func:`_matching_rows` for values of several lists (``owners`` gives each value's list)."""
    found = [_matching_rows(index, kind, values[owners == o], int(o)) for o in np.unique(owners)]
    return (
        np.unique(np.concatenate([f[0] for f in found])).astype(np.int64),
        np.unique(np.concatenate([f[1] for f in found])).astype(np.int64),
    )


def _list_number(lists: list[IndexedList], name: str, purpose: str | None) -> int:
    """The number of live list ``name``; with a ``purpose``, a list the index lacks is created."""
    for number, item in enumerate(lists):
        if item.name == name and not item.removed:
            return number
    if purpose is None:
        raise KeyError(f"the index has no list named {name!r}")
    lists.append(IndexedList(name, purpose, None, 0))
    return len(lists) - 1


def _hashes(kind: str, values: bytes) -> NDArray[np.uint8]:
    if kind not in KINDS:
        raise ValueError(f"unknown hash kind {kind!r}")
    width = HEX_LENGTHS[kind] // 2
    if len(values) % width:
        raise ValueError(f"{kind} values must be whole {width}-byte hashes")
    return np.frombuffer(values, dtype=np.uint8).reshape(-1, width)


def add(root: Path, list_name: str, kind: str, values: bytes, purpose: str = "detect") -> UpdateReport:
    """Make hashes of one kind (concatenated raw bytes) of one list visible through a delta.

    A list the index lacks is created (with no store id, so :func:`update` leaves it alone).
    """
    started = time.perf_counter()
    report = UpdateReport()
    array = np.unique(_hashes(kind, values), axis=0)
    with _writer_lock(root):
        index = DiskIndex.open(root)
        lists = [IndexedList(**asdict(i)) for i in index.lists]
        number = _list_number(lists, list_name, purpose)
        _apply(
            index, lists, {kind: (array, np.full(len(array), number, np.int32))}, {}, report, explicit=True
        )
    report.seconds = time.perf_counter() - started
    return report


def remove(root: Path, list_name: str, kind: str, values: bytes) -> UpdateReport:
    """Stop matching hashes of one kind of one list (tombstones in the delta)."""
    started = time.perf_counter()
    report = UpdateReport()
    array = _hashes(kind, values)
    with _writer_lock(root):
        index = DiskIndex.open(root)
        lists = [IndexedList(**asdict(i)) for i in index.lists]
        number = _list_number(lists, list_name, None)
        _apply(index, lists, {}, {kind: (array, np.full(len(array), number, np.int32))}, report)
    report.seconds = time.perf_counter() - started
    return report


def update(store: ListStore, root: Path) -> UpdateReport:
    """Bring the index up to the store through a delta: new lists, removed lists, new imports.

    Builds the index first if there is none (or it is unreadable).  What a
    list gained is read by import id, so a daily delta of 10,000 hashes costs
    a query of those rows, not a reload of the list.
    """
    started = time.perf_counter()
    report = UpdateReport()
    try:
        index = DiskIndex.open(root)
    except IndexFormatError:
        index = build(store, root)
        report.lists_added = index.names()
        report.compacted = True
        report.seconds = time.perf_counter() - started
        return report
    with _writer_lock(root):
        index = index.refresh()
        min_quality = int(index.manifest.get("min_quality", MIN_QUALITY))
        lists = [IndexedList(**asdict(i)) for i in index.lists]
        states = {row[0]: row[1:] for row in store.list_states()}
        by_store_id = {i.store_id: n for n, i in enumerate(lists) if not i.removed and i.store_id is not None}
        for item in lists:
            if item.store_id is None or item.removed:
                continue
            state = states.get(item.store_id)
            if state is None or state[:3] != (item.name, item.purpose, item.created_at):
                item.removed = True
                by_store_id.pop(item.store_id, None)
                report.lists_removed.append(item.name)
        added: dict[str, tuple[list[NDArray[np.uint8]], list[Owners]]] = {k: ([], []) for k in KINDS}
        gone: dict[str, tuple[list[NDArray[np.uint8]], list[Owners]]] = {k: ([], []) for k in KINDS}
        for list_id, (name, purpose, created, last) in states.items():
            number = by_store_id.get(list_id)
            if number is None:
                lists.append(IndexedList(name, purpose, list_id, 0, created_at=created))
                number = len(lists) - 1
                report.lists_added.append(name)
            item = lists[number]
            if last <= item.seen_import:
                continue
            for kind in KINDS:
                width = HEX_LENGTHS[kind] // 2
                floor = min_quality if kind == "pdq" else None
                for into, values in (
                    (added, store.hash_values_since(list_id, kind, item.seen_import, floor)),
                    (gone, store.withdrawn_since(list_id, kind, item.seen_import)),
                ):
                    if values:
                        array = np.frombuffer(values, dtype=np.uint8).reshape(-1, width)
                        into[kind][0].append(array)
                        into[kind][1].append(np.full(len(array), number, np.int32))
            item.seen_import = last
        if lists == index.lists:
            report.seconds = time.perf_counter() - started
            return report
        changes = {k: (np.concatenate(v), np.concatenate(o)) for k, (v, o) in added.items() if v}
        removals = {k: (np.concatenate(v), np.concatenate(o)) for k, (v, o) in gone.items() if v}
        _apply(index, lists, changes, removals, report)
    report.seconds = time.perf_counter() - started
    return report
