"""In-memory indexes over the selected lists: exact digests and exact PDQ radius search.

Hashes sit in numpy arrays, loaded from the store in one query per list and
kind; an entry's provenance (id, category, import) is fetched only when it
matched, so opening millions of hashes costs seconds and bytes per hash, not
Python objects.

PDQ search is multi-index hashing: a 256-bit hash is cut into 16 words of 16
bits, and two hashes within distance ``t`` must agree to within ``t // 16``
bits on at least one word (pigeonhole).  Probing each word's sorted column
for the query word and its near neighbours yields every candidate, which is
then checked at full length: exact, no entry within the threshold is missed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from numpy.typing import NDArray

from vakta.lists.store import EntryRow, ListStore
from vakta.signals.kinds import DIGEST_KINDS, HEX_LENGTHS

#: Reference PDQ settings: match at distance <= 31, both hashes of quality >= 50.
DEFAULT_THRESHOLD = 31
MIN_QUALITY = 50
#: Query x entry pairs compared per numpy step of a brute-force search.
_CHUNK_CELLS = 1 << 18
_WORDS = 16
#: Below this many entries, or when a word may differ in more bits than this,
#: comparing against every entry is cheaper than probing.
_BRUTE_FORCE_BELOW = 20_000
_MAX_WORD_RADIUS = 2

Owners = NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class EntryMeta:
    """Provenance of one list entry, carried into every finding it causes."""

    list_name: str
    entry_id: str | None
    category: str | None
    source_format: str
    imported_at: str


class DigestIndex:
    """Exact lookup of one digest kind: sorted keys, each with the list it belongs to."""

    def __init__(self, kind: str, keys: bytes, owners: Owners) -> None:
        self.kind = kind
        width = HEX_LENGTHS[kind] // 2
        array = np.frombuffer(keys, dtype=f"S{width}") if keys else np.empty(0, dtype=f"S{width}")
        order = np.argsort(array, kind="stable")
        self._keys = array[order]
        self._owners = owners[order]

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, hexdigest: str) -> list[int]:
        """The list numbers holding this digest."""
        key = np.frombuffer(bytes.fromhex(hexdigest), dtype=self._keys.dtype)[0]
        lo = int(np.searchsorted(self._keys, key, side="left"))
        hi = int(np.searchsorted(self._keys, key, side="right"))
        owners: list[int] = self._owners[lo:hi].tolist()
        return owners


def _neighbour_masks(radius: int) -> NDArray[np.uint16]:
    """XOR masks of every 16-bit word within ``radius`` flipped bits of zero."""
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in bits) for bits in combinations(range(_WORDS), r)]
    return np.array(masks, dtype=np.uint16)


class PdqIndex:
    """Every entry within a Hamming radius of a batch of query hashes."""

    def __init__(self, hashes: bytes, owners: Owners) -> None:
        raw = np.frombuffer(hashes, dtype=np.uint8).reshape(-1, 32)
        self._raw = raw
        self._owners = owners
        self._hashes: NDArray[np.uint64] = raw.view(">u8").astype(np.uint64)
        self._words: list[tuple[NDArray[np.uint16], NDArray[np.int32]]] = []
        if len(raw) >= _BRUTE_FORCE_BELOW:
            words = raw.view(">u2").astype(np.uint16)
            for w in range(_WORDS):
                order = np.argsort(words[:, w], kind="stable").astype(np.int32)
                self._words.append((words[order, w], order))

    def __len__(self) -> int:
        return len(self._raw)

    def entry(self, row: int) -> tuple[int, bytes]:
        """The list number and hash of an entry row."""
        return int(self._owners[row]), self._raw[row].tobytes()

    def search(self, queries: Sequence[str], threshold: int) -> list[tuple[int, int, int]]:
        """(query index, entry row, distance) for every pair within ``threshold``."""
        if not queries or not len(self):
            return []
        raw = np.frombuffer(b"".join(bytes.fromhex(h) for h in queries), dtype=np.uint8).reshape(-1, 32)
        if self._words and threshold // _WORDS <= _MAX_WORD_RADIUS:
            return self._probe(raw, threshold)
        return self._brute_force(raw.view(">u8").astype(np.uint64), threshold)

    def _brute_force(self, q: NDArray[np.uint64], threshold: int) -> list[tuple[int, int, int]]:
        hits: list[tuple[int, int, int]] = []
        step = max(1, _CHUNK_CELLS // q.shape[0])
        for start in range(0, len(self._hashes), step):
            block = self._hashes[start : start + step]
            dist = np.bitwise_count(q[:, None, :] ^ block[None, :, :]).sum(axis=2, dtype=np.int16)
            qi, rows = np.nonzero(dist <= threshold)
            hits.extend(zip(qi.tolist(), (rows + start).tolist(), dist[qi, rows].tolist(), strict=True))
        return hits

    def _probe(self, raw: NDArray[np.uint8], threshold: int) -> list[tuple[int, int, int]]:
        masks = _neighbour_masks(threshold // _WORDS)
        words = raw.view(">u2").astype(np.uint16)
        pair_q: list[NDArray[np.int64]] = []
        pair_row: list[NDArray[np.int32]] = []
        for w, (sorted_words, order) in enumerate(self._words):
            probes = (words[:, w, None] ^ masks[None, :]).ravel()  # queries x masks
            lo = np.searchsorted(sorted_words, probes, side="left")
            hi = np.searchsorted(sorted_words, probes, side="right")
            counts = hi - lo
            total = int(counts.sum())
            if total == 0:
                continue
            # Expand each [lo, hi) range into its positions, remembering the query.
            starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
            positions = starts + np.arange(total)
            pair_row.append(order[positions])
            pair_q.append(np.repeat(np.arange(len(probes)) // len(masks), counts))
        if not pair_row:
            return []
        q_idx = np.concatenate(pair_q)
        rows = np.concatenate(pair_row)
        # Check every candidate (a pair found through several words is checked
        # again: cheaper than de-duplicating all of them first), then de-duplicate hits.
        q64 = raw.view(">u8").astype(np.uint64)
        dist = np.bitwise_count(q64[q_idx] ^ self._hashes[rows]).sum(axis=1, dtype=np.int16)
        keep = dist <= threshold
        hits = zip(q_idx[keep].tolist(), rows[keep].tolist(), dist[keep].tolist(), strict=True)
        return sorted(set(hits))


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
class SearchIndex:
    """The hash arrays of the selected lists: all a worker process needs to find hits.

    Plain numpy arrays, so worker processes share it (copy-on-write after fork)
    or receive it pickled; provenance stays with :class:`ListIndex`.
    """

    digests: dict[str, DigestIndex]
    pdq: PdqIndex
    list_names: list[str]

    def __len__(self) -> int:
        return sum(len(d) for d in self.digests.values()) + len(self.pdq)


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
        return cls(SearchIndex(digests, pdq, names), provenance)

    def __len__(self) -> int:
        return len(self.search)
