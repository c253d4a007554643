"""The selected lists in memory: their hash arrays for searching, and where each entry came from.

Hashes are loaded from the store in one query per list and kind into the
search structures of :mod:`vakta.matching.search`; an entry's provenance (id,
category, import) is fetched only when it matched, so opening millions of
hashes costs seconds and bytes per hash, not Python objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vakta.lists.store import EntryRow, ListStore
from vakta.matching.search import MIN_QUALITY, DigestIndex, Owners, PdqIndex
from vakta.matching.videos import VideoIndex
from vakta.signals.kinds import DIGEST_KINDS, HEX_LENGTHS


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


def store_videos(store: ListStore, names: list[str], lists: Sequence[str], min_quality: int) -> VideoIndex:
    """The known videos of store ``lists``; list numbers are positions in ``names``."""
    frames: list[bytes] = []
    owners: list[Owners] = []
    stamps: list[bytes] = []
    video_lists: list[int] = []
    fingerprints: list[bytes] = []
    for name in lists:
        prints, video_of_frame, values, times = store.video_frames(name, min_quality)
        owners.append(np.frombuffer(video_of_frame, dtype=np.int32) + len(fingerprints))
        frames.append(values)
        stamps.append(times)
        video_lists += [names.index(name)] * len(prints)
        fingerprints += prints
    if not fingerprints:
        return VideoIndex.empty()
    return VideoIndex(
        b"".join(frames),
        np.concatenate(owners),
        np.frombuffer(b"".join(stamps), dtype=np.float64),
        np.array(video_lists, dtype=np.int32),
        fingerprints,
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
    ) -> ListIndex:
        """Index in-memory rows (e.g. the built-in test list) plus whole lists of ``store``."""
        columns = {k: _Columns() for k in (*DIGEST_KINDS, "pdq")}
        names: list[str] = []
        known: dict[tuple[str, str, bytes], EntryMeta] = {}
        for row in rows:
            if row.list_name not in names:
                names.append(row.list_name)
            low_quality = row.kind == "pdq" and row.quality is not None and row.quality < min_quality
            if row.kind not in columns or low_quality:
                continue  # the reference never matches low-quality hashes
            width = HEX_LENGTHS[row.kind] // 2
            columns[row.kind].add(row.value, names.index(row.list_name), width)
            known[(row.list_name, row.kind, row.value)] = _meta(row)
        for name in store_lists if store is not None else ():
            assert store is not None
            names.append(name)
            for kind, col in columns.items():
                floor = min_quality if kind == "pdq" else None
                col.add(store.hash_values(name, kind, floor), len(names) - 1, HEX_LENGTHS[kind] // 2)

        def provenance(name: str, kind: str, value: bytes) -> EntryMeta | None:
            if (name, kind, value) in known:
                return known[(name, kind, value)]
            found = store.provenance(name, kind, value) if store is not None else None
            return _meta(found) if found else None

        digests = {k: columns[k].digest_index(k) for k in DIGEST_KINDS}
        pdq = PdqIndex(b"".join(columns["pdq"].values), columns["pdq"].owner_array())
        videos = store_videos(store, names, store_lists, min_quality) if store else VideoIndex.empty()
        return cls(SearchIndex(digests, pdq, names, videos), provenance)

    def __len__(self) -> int:
        return len(self.search)
