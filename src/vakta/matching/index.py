"""The selected lists in memory: their hash arrays for searching, and where each entry came from.

Hashes are loaded from the store in one query per list and kind into the
search structures of :mod:`vakta.matching.search`; an entry's provenance (id,
category, import) is fetched only when it matched, so opening millions of
hashes costs seconds and bytes per hash, not Python objects.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from vakta.lists.store import EntryRow, ListStore
from vakta.matching.diskindex import DiskIndex
from vakta.matching.search import MIN_QUALITY, DigestIndex, DigestSegment, Owners, PdqIndex, PdqSegment
from vakta.matching.videos import VideoIndex
from vakta.signals.kinds import DIGEST_KINDS, HEX_LENGTHS
from vakta.signals.model import VideoFrame


@dataclass(frozen=True, slots=True)
class EntryMeta:
    """Provenance of one list entry, carried into every finding it causes."""

    list_name: str
    entry_id: str | None
    category: str | None
    source_format: str
    imported_at: str


Provenance = Callable[[str, str, bytes], EntryMeta | None]


def _meta(row: EntryRow) -> EntryMeta:
    return EntryMeta(row.list_name, row.entry_id, row.category, row.source_format, row.imported_at)


@dataclass
class _Columns:
    """Hashes of one kind being gathered: concatenated values and their list numbers."""

    values: list[bytes] = field(default_factory=list)
    owners: list[Owners] = field(default_factory=list)

    def add(self, values: bytes, owner: int, width: int) -> None:
        self.values.append(values)
        self.owners.append(np.full(len(values) // width, owner, dtype=np.int32))

    def owner_array(self) -> Owners:
        return np.concatenate(self.owners) if self.owners else np.empty(0, np.int32)

    def digest_index(self, kind: str) -> DigestIndex:
        return DigestIndex(kind, b"".join(self.values), self.owner_array())


def store_digests(store: ListStore, names: Sequence[str]) -> dict[str, DigestIndex]:
    """Digest indexes of whole store lists; list numbers are positions in ``names``."""
    indexes = {}
    for kind in DIGEST_KINDS:
        columns = _Columns()
        for number, name in enumerate(names):
            columns.add(store.hash_values(name, kind), number, HEX_LENGTHS[kind] // 2)
        indexes[kind] = columns.digest_index(kind)
    return indexes


@dataclass
class _VideoColumns:
    """Known videos being gathered: their frames, and each video's list and fingerprint."""

    frames: list[bytes] = field(default_factory=list)
    owners: list[Owners] = field(default_factory=list)
    stamps: list[NDArray[np.float64]] = field(default_factory=list)
    lists: list[int] = field(default_factory=list)
    fingerprints: list[bytes] = field(default_factory=list)

    def add(
        self, list_no: int, prints: list[bytes], video_of_frame: Owners, values: bytes, times: bytes
    ) -> None:
        """Videos of one list; ``video_of_frame`` numbers them from 0 within ``prints``."""
        self.owners.append(video_of_frame + len(self.fingerprints))
        self.frames.append(values)
        self.stamps.append(np.frombuffer(times, dtype=np.float64))
        self.lists += [list_no] * len(prints)
        self.fingerprints += prints

    def add_frames(
        self, list_no: int, fingerprint: bytes, frames: Sequence[VideoFrame], min_quality: int
    ) -> None:
        """One video held in memory (the built-in test video)."""
        usable = [f for f in frames if f.quality >= min_quality]
        values = b"".join(bytes.fromhex(f.pdq) for f in usable)
        times = np.array([f.timestamp for f in usable], dtype=np.float64).tobytes()
        self.add(list_no, [fingerprint], np.zeros(len(usable), np.int32), values, times)

    def add_store(self, store: ListStore, name: str, list_no: int, min_quality: int) -> None:
        """The known videos of one store list."""
        prints, video_of_frame, values, times = store.video_frames(name, min_quality)
        self.add(list_no, prints, np.frombuffer(video_of_frame, np.int32), values, times)

    def index(self) -> VideoIndex:
        if not self.fingerprints:
            return VideoIndex.empty()
        return VideoIndex(
            b"".join(self.frames),
            np.concatenate(self.owners),
            np.concatenate(self.stamps),
            np.array(self.lists, dtype=np.int32),
            self.fingerprints,
        )


@dataclass
class SearchIndex:
    """The hash arrays of the selected lists: all a worker process needs to find hits.

    Plain numpy arrays, so worker processes share it (copy-on-write after fork)
    or receive it pickled; provenance stays with :class:`ListIndex`.
    """

    digests: dict[str, DigestIndex]
    pdq: PdqIndex
    list_names: list[str]
    videos: VideoIndex = field(default_factory=VideoIndex.empty)

    def __len__(self) -> int:
        """Hashes plus known videos."""
        return sum(len(d) for d in self.digests.values()) + len(self.pdq) + len(self.videos)

    def prefault(self) -> int:
        """Read one byte of every page of the digest and PDQ arrays; returns the bytes covered.

        On-disk arrays are memory-mapped and read on first use, so in a fresh process
        the first lookups wait for the pages they touch (the first match of a picture
        against a 1,000,000-entry list took 16 ms from the page cache, 143 ms after the
        cache was dropped, against 2 ms later). A long-running service pays that once, at start.
        """
        segments: list[DigestSegment | PdqSegment] = [s for d in self.digests.values() for s in d.segments]
        covered = 0
        for segment in [*segments, *self.pdq.segments]:
            for array in segment.arrays().values():
                if array.flags.c_contiguous and array.nbytes:
                    int(array.reshape(-1).view(np.uint8)[:: mmap.PAGESIZE].sum())
                    covered += array.nbytes
        return covered


@dataclass
class _InMemory:
    """Entries held in memory (the built-in test list) gathered for an index, and their provenance."""

    names: list[str]
    min_quality: int
    columns: dict[str, _Columns] = field(
        default_factory=lambda: {k: _Columns() for k in (*DIGEST_KINDS, "pdq")}
    )
    videos: _VideoColumns = field(default_factory=_VideoColumns)
    known: dict[tuple[str, str, bytes], EntryMeta] = field(default_factory=dict)

    def number(self, name: str) -> int:
        if name not in self.names:
            self.names.append(name)
        return self.names.index(name)

    def add(self, rows: Iterable[EntryRow], videos: Sequence[tuple[EntryRow, Sequence[VideoFrame]]]) -> None:
        for row, frames in videos:
            self.videos.add_frames(self.number(row.list_name), row.value, frames, self.min_quality)
            self.known[(row.list_name, row.kind, row.value)] = _meta(row)
        for row in rows:
            number = self.number(row.list_name)
            low_quality = row.kind == "pdq" and row.quality is not None and row.quality < self.min_quality
            if row.kind not in self.columns or low_quality:
                continue  # the reference never matches low-quality hashes
            self.columns[row.kind].add(row.value, number, HEX_LENGTHS[row.kind] // 2)
            self.known[(row.list_name, row.kind, row.value)] = _meta(row)

    def provenance(self, store: ListStore | None) -> Provenance:
        known = self.known

        def lookup(name: str, kind: str, value: bytes) -> EntryMeta | None:
            if (name, kind, value) in known:
                return known[(name, kind, value)]
            found = store.provenance(name, kind, value) if store is not None else None
            return _meta(found) if found else None

        return lookup


@dataclass
class ListIndex:
    """The selected lists: the search arrays plus where each entry came from."""

    search: SearchIndex
    provenance: Provenance

    @property
    def list_names(self) -> list[str]:
        return self.search.list_names

    def meta(self, list_no: int, kind: str, value: bytes) -> EntryMeta:
        name = self.list_names[list_no]
        return self.provenance(name, kind, value) or EntryMeta(name, None, None, "unknown", "")

    @classmethod
    def build(
        cls,
        rows: Iterable[EntryRow],
        min_quality: int = MIN_QUALITY,
        store: ListStore | None = None,
        store_lists: Sequence[str] = (),
        videos: Sequence[tuple[EntryRow, Sequence[VideoFrame]]] = (),
    ) -> ListIndex:
        """Index in-memory rows and videos (the built-in test list) plus whole lists of ``store``.

        An in-memory video is its row (kind ``vpdq``, value its fingerprint) and its frames.
        """
        mem = _InMemory([], min_quality)
        mem.add(rows, videos)
        for name in store_lists if store is not None else ():
            assert store is not None
            mem.names.append(name)
            for kind, col in mem.columns.items():
                floor = min_quality if kind == "pdq" else None
                col.add(store.hash_values(name, kind, floor), len(mem.names) - 1, HEX_LENGTHS[kind] // 2)
            mem.videos.add_store(store, name, len(mem.names) - 1, min_quality)
        digests = {k: mem.columns[k].digest_index(k) for k in DIGEST_KINDS}
        pdq = PdqIndex(b"".join(mem.columns["pdq"].values), mem.columns["pdq"].owner_array())
        search = SearchIndex(digests, pdq, mem.names, mem.videos.index())
        return cls(search, mem.provenance(store))

    @classmethod
    def from_disk(
        cls,
        disk: DiskIndex,
        store: ListStore,
        store_lists: Sequence[str],
        rows: Iterable[EntryRow] = (),
        videos: Sequence[tuple[EntryRow, Sequence[VideoFrame]]] = (),
        min_quality: int = MIN_QUALITY,
    ) -> ListIndex:
        """Store lists from the memory-mapped disk index (nothing loaded), plus in-memory rows and videos.

        Known videos are not in the disk index yet: they are read from the store.
        """
        digests, pdq = disk.restricted(store_lists)
        mem = _InMemory(list(disk.list_names), min_quality)
        mem.add(rows, videos)
        for kind, col in mem.columns.items():
            if not col.values:
                continue
            width = HEX_LENGTHS[kind] // 2
            keys = b"".join(col.values)
            if kind == "pdq":
                pdq = pdq.extended(PdqSegment.build(keys, col.owner_array()))
            else:
                digests[kind] = digests[kind].extended(DigestSegment.build(width, keys, col.owner_array()))
        for name, number in zip(store_lists, disk.numbers(store_lists), strict=True):
            mem.videos.add_store(store, name, number, min_quality)
        return cls(SearchIndex(digests, pdq, mem.names, mem.videos.index()), mem.provenance(store))

    def __len__(self) -> int:
        return len(self.search)
