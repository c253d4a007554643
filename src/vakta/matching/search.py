"""Exact search structures over hash arrays: bucketed digests and PDQ radius search.

Hashes sit in numpy arrays, never Python objects, so millions cost seconds
to build and bytes per hash.  Each entry carries an owner number (the list,
or for video frames the known video) that the caller maps to what it means.
The arrays may be built in memory or memory-mapped from an on-disk index
(:mod:`vakta.matching.diskindex`): the same classes serve both.

An index is made of *segments* (a large base and a small delta, say), each
a self-contained structure; rows are numbered across segments.  On top of
the segments an index may drop removed rows (tombstones) and restrict hits
to chosen owners, both without copying the arrays.

PDQ search is multi-index hashing: a 256-bit hash is cut into ``m`` words of
``b`` bits, and two hashes within distance ``t`` must differ in at most
``r_i`` bits on some word ``i`` whenever ``sum(r_i + 1) > t`` (pigeonhole).
Each word has a bucket offset table (one slot per possible word value), so
probing a word for the query's value and every value within ``r_i`` bits is
two array reads, with no binary search; every candidate is then checked at
full length: exact, no entry within the threshold is missed.  The word count
and width are chosen from the number of hashes (:func:`choose_layout`, tuned
by ``bench/index.py``): 16 x 16 bits at 100,000 hashes, 11 x 23 bits at 10M.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from itertools import combinations
from math import comb
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from vakta.signals.kinds import HEX_LENGTHS

#: Reference PDQ settings: match at distance <= 31, both hashes of quality >= 50.
DEFAULT_THRESHOLD = 31
MIN_QUALITY = 50
#: Query x entry pairs compared per numpy step of a brute-force search.
_CHUNK_CELLS = 1 << 18
#: Queries probed per numpy step: few enough that the temporaries stay under glibc's
#: 128 KiB mmap threshold (larger ones are mapped and zeroed afresh at every step, which
#: halved batched speed in a fresh worker process).  From _BATCH_ONE_BY_ONE entries on,
#: queries are probed one by one (measured: chunks gain nothing there).
_QUERY_CHUNK = 4
_BATCH_ONE_BY_ONE = 2_000_000
#: Below this many entries comparing against every entry beats probing.
_BRUTE_FORCE_BELOW = 2_000
#: Bytes per PDQ hash the whole structure may take (hashes, owners, postings,
#: tables) once an index is large; small indexes may spend a few MB on tables.
_BYTES_PER_HASH = 120
_SMALL_TABLES = 16 << 20
_MAX_WORD_BITS = 26

Owners = NDArray[np.int32]
Rows = NDArray[np.int64]
Layout = tuple[int, ...]


def _plain(array: NDArray[Any]) -> NDArray[Any]:
    """A memory map as a plain ndarray view: same pages, no np.memmap overhead per operation."""
    return array.view(np.ndarray) if isinstance(array, np.memmap) else array


def _bucket_table(buckets: NDArray[np.uint64], bits: int) -> NDArray[np.int64]:
    """Start of every bucket value in ``buckets`` (sorted), plus the end: 2**bits + 1 offsets."""
    counts = np.bincount(buckets.astype(np.int64), minlength=1 << bits)
    table = np.zeros((1 << bits) + 1, dtype=np.int64)
    np.cumsum(counts, out=table[1:])
    return table


def _offset_dtype(total: int) -> type[np.unsignedinteger[Any]]:
    return np.uint32 if total < (1 << 32) else np.uint64


def _expand(lo: NDArray[Any], hi: NDArray[Any]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Every position in the ranges [lo, hi), and the number of the range each came from."""
    lo64 = lo.astype(np.int64, copy=False).ravel()
    counts = hi.astype(np.int64, copy=False).ravel() - lo64
    total = int(counts.sum())
    which = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    if total == 0:
        return np.empty(0, np.int64), which
    starts = np.cumsum(counts) - counts
    positions = np.arange(total, dtype=np.int64) - np.repeat(starts - lo64, counts)
    return positions, which


# --- digests ---------------------------------------------------------------


def _prefixes(keys: NDArray[np.uint8]) -> NDArray[np.uint64]:
    """The first 8 bytes of each key as a big-endian integer (keys are at least 16 bytes)."""
    return np.ascontiguousarray(keys[:, :8]).view(">u8").ravel().astype(np.uint64)


class DigestSegment:
    """Digests grouped by their leading bits, with a bucket table: one lookup is two reads and a compare.

    ``keys`` (n x width bytes) are ordered by their first 8 bytes; ``table``
    holds where each value of the leading ``bits`` bits starts.
    """

    def __init__(self, keys: NDArray[np.uint8], owners: Owners, table: NDArray[Any], bits: int) -> None:
        self.keys = _plain(keys)
        self.owners = _plain(owners)
        self.table = _plain(table)
        self.bits = bits
        if len(self.table) != (1 << bits) + 1 or len(self.owners) != len(self.keys):
            raise ValueError("digest segment arrays do not fit together")
        #: How to map the segment again in another process (set for memory-mapped segments).
        self.reopen: tuple[Callable[..., Any], tuple[Any, ...]] | None = None

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """Pickled as its file location when memory-mapped: a spawned worker maps it, never copies it."""
        return self.reopen or (DigestSegment, (self.keys, self.owners, self.table, self.bits))

    @classmethod
    def build(cls, width: int, keys: bytes | NDArray[np.uint8], owners: Owners) -> DigestSegment:
        array = np.frombuffer(keys, dtype=np.uint8) if isinstance(keys, bytes) else np.asarray(keys)
        array = array.reshape(-1, width)
        bits = min(24, max(1, len(array).bit_length()))
        prefixes = _prefixes(array)
        order = np.argsort(prefixes, kind="stable")
        buckets = prefixes[order] >> np.uint64(64 - bits)
        table = _bucket_table(buckets, bits).astype(_offset_dtype(len(array)))
        return cls(array[order], np.asarray(owners, dtype=np.int32)[order], table, bits)

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, queries: NDArray[np.uint8]) -> tuple[NDArray[np.int64], Rows]:
        """(query index, local row) of every key equal to a query (queries: Q x width bytes)."""
        if not len(self.keys):
            return np.empty(0, np.int64), np.empty(0, np.int64)
        buckets = (_prefixes(queries) >> np.uint64(64 - self.bits)).astype(np.int64)
        positions, qi = _expand(np.take(self.table, buckets), np.take(self.table, buckets + 1))
        same = (np.take(self.keys, positions, axis=0) == queries[qi]).all(axis=1)
        return qi[same], positions[same]

    def find_one(self, key: bytes) -> list[int]:
        """Local rows equal to one key: the scalar path, without numpy temporaries."""
        bucket = int.from_bytes(key[:8], "big") >> (64 - self.bits)
        lo, hi = int(self.table[bucket]), int(self.table[bucket + 1])
        if lo == hi:
            return []
        block = self.keys[lo:hi].tobytes()
        width = len(key)
        return [lo + i for i in range(hi - lo) if block[i * width : (i + 1) * width] == key]

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {"keys": self.keys, "owners": self.owners, "table": self.table}


class _Rows:
    """Rows numbered across segments, less tombstones, restricted to allowed owners."""

    def __init__(self, sizes: Sequence[int], removed: Rows | None, allowed: NDArray[np.bool_] | None) -> None:
        self.starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        self.removed = np.unique(removed) if removed is not None and len(removed) else None
        self.allowed = allowed
        #: Whether any row may be dropped at all (most searches: no).
        self.filters = self.removed is not None or (allowed is not None and not bool(allowed.all()))

    def keep(self, rows: Rows, owners: Owners) -> NDArray[np.bool_]:
        keep = np.ones(len(rows), dtype=bool)
        if not self.filters:
            return keep
        if self.allowed is not None:
            known = owners < len(self.allowed)
            keep &= known
            keep[known] &= self.allowed[owners[known]]
        if self.removed is not None and len(rows):
            at = np.searchsorted(self.removed, rows).clip(max=len(self.removed) - 1)
            keep &= self.removed[at] != rows
        return keep

    def extended_mask(self, owners: Owners) -> NDArray[np.bool_] | None:
        """The allowed mask grown to let ``owners`` (of a segment being added) through."""
        if self.allowed is None or not len(owners):
            return self.allowed
        top = int(owners.max()) + 1
        mask = np.zeros(max(top, len(self.allowed)), dtype=bool)
        mask[: len(self.allowed)] = self.allowed
        mask[np.unique(owners)] = True
        return mask

    def keeps(self, row: int, owner: int) -> bool:
        """:meth:`keep` for one row."""
        if self.allowed is not None and not (owner < len(self.allowed) and self.allowed[owner]):
            return False
        if self.removed is not None and len(self.removed):
            at = int(np.searchsorted(self.removed, row))
            return not (at < len(self.removed) and int(self.removed[at]) == row)
        return True

    def locate(self, row: int) -> tuple[int, int]:
        seg = int(np.searchsorted(self.starts, row, side="right")) - 1
        if not 0 <= seg < len(self.starts) - 1:
            raise IndexError(f"row {row} out of range")
        return seg, row - int(self.starts[seg])

    def live(self, owners: Sequence[Owners]) -> int:
        """Rows neither removed nor outside the allowed owners."""
        total = 0
        for own in owners:
            if self.allowed is None:
                total += len(own)
            else:
                counts = np.bincount(own, minlength=len(self.allowed))[: len(self.allowed)]
                total += int(counts[self.allowed].sum())
        if self.removed is not None:
            all_owners = [np.asarray(o) for o in owners]
            for row in self.removed.tolist():
                seg, local = self.locate(row)
                owner = int(all_owners[seg][local])
                if self.allowed is None or (owner < len(self.allowed) and self.allowed[owner]):
                    total -= 1
        return total


class _Segment(Protocol):
    """What the row bookkeeping needs of a segment: its size and each row's owner."""

    @property
    def owners(self) -> Owners: ...

    def __len__(self) -> int: ...


SegmentT = TypeVar("SegmentT", bound=_Segment)


class _Segmented(Generic[SegmentT]):
    """An index made of segments (a base and deltas): rows across them, less tombstones, owners allowed."""

    segments: list[SegmentT]
    _rows: _Rows
    _len: int | None

    def _set_segments(
        self, segments: Sequence[SegmentT], removed: Rows | None, allowed: NDArray[np.bool_] | None
    ) -> None:
        self.segments = list(segments)
        self._rows = _Rows([len(s) for s in self.segments], removed, allowed)
        self._len = None

    def __len__(self) -> int:
        if self._len is None:
            self._len = self._rows.live([s.owners for s in self.segments])
        return self._len

    @property
    def removed_rows(self) -> Rows:
        return self._rows.removed if self._rows.removed is not None else np.empty(0, np.int64)

    def owner_of(self, row: int) -> int:
        seg, local = self._rows.locate(row)
        return int(self.segments[seg].owners[local])


class DigestIndex(_Segmented[DigestSegment]):
    """Exact lookup of one digest kind: each digest with the list it belongs to."""

    def __init__(self, kind: str, keys: bytes, owners: Owners) -> None:
        self._setup(kind, [DigestSegment.build(HEX_LENGTHS[kind] // 2, keys, owners)], None, None)

    def _setup(
        self,
        kind: str,
        segments: Sequence[DigestSegment],
        removed: Rows | None,
        allowed: NDArray[np.bool_] | None,
    ) -> None:
        self.kind = kind
        self.width = HEX_LENGTHS[kind] // 2
        self._set_segments(segments, removed, allowed)

    @classmethod
    def from_segments(
        cls,
        kind: str,
        segments: Sequence[DigestSegment],
        removed: Rows | None = None,
        allowed: NDArray[np.bool_] | None = None,
    ) -> DigestIndex:
        """An index over prebuilt (e.g. memory-mapped) segments, less ``removed`` rows, owners in ``allowed``."""
        index = cls.__new__(cls)
        index._setup(kind, segments, removed, allowed)
        return index

    def extended(self, segment: DigestSegment) -> DigestIndex:
        """This index plus one more segment (e.g. in-memory entries beside a disk index), its owners allowed."""
        return DigestIndex.from_segments(
            self.kind, [*self.segments, segment], self._rows.removed, self._rows.extended_mask(segment.owners)
        )

    def restricted(self, allowed: NDArray[np.bool_] | None) -> DigestIndex:
        """The same arrays, hits limited to owners whose ``allowed`` entry is true."""
        return DigestIndex.from_segments(self.kind, self.segments, self._rows.removed, allowed)

    def find_rows(self, queries: NDArray[np.uint8]) -> tuple[NDArray[np.int64], Rows]:
        """(query index, row) of every entry equal to a query row, ignoring tombstones and owners."""
        qis = [np.empty(0, np.int64)]
        rows = [np.empty(0, np.int64)]
        for seg, segment in enumerate(self.segments):
            qi, local = segment.find(queries)
            qis.append(qi)
            rows.append(local + self._rows.starts[seg])
        return np.concatenate(qis), np.concatenate(rows)

    def find(self, queries: NDArray[np.uint8]) -> tuple[NDArray[np.int64], Owners]:
        """(query index, owner) of every entry equal to a query row (Q x width bytes), by query."""
        qis: list[NDArray[np.int64]] = []
        owners: list[Owners] = []
        for seg, segment in enumerate(self.segments):
            qi, local = segment.find(queries)
            own = segment.owners[local]
            keep = self._rows.keep(local + self._rows.starts[seg], own)
            qis.append(qi[keep])
            owners.append(own[keep])
        qi_all = np.concatenate(qis) if qis else np.empty(0, np.int64)
        own_all = np.concatenate(owners) if owners else np.empty(0, np.int32)
        order = np.argsort(qi_all, kind="stable")
        return qi_all[order], own_all[order]

    def lookup_many(self, hexdigests: Sequence[str]) -> list[list[int]]:
        """The owners (list numbers) holding each digest, in input order: the batched lookup."""
        found: list[list[int]] = [[] for _ in hexdigests]
        if not hexdigests:
            return found
        raw = np.frombuffer(bytes.fromhex("".join(hexdigests)), dtype=np.uint8).reshape(-1, self.width)
        qi, owners = self.find(raw)
        for q, owner in zip(qi.tolist(), owners.tolist(), strict=True):
            found[q].append(owner)
        return found

    def lookup(self, hexdigest: str) -> list[int]:
        """The owners (list numbers) holding this digest."""
        key = bytes.fromhex(hexdigest)
        if len(key) != self.width:
            raise ValueError(f"{self.kind} digest must be {self.width * 2} hex characters")
        owners: list[int] = []
        for seg, segment in enumerate(self.segments):
            for local in segment.find_one(key):
                owner = int(segment.owners[local])
                if self._rows.keeps(local + int(self._rows.starts[seg]), owner):
                    owners.append(owner)
        return owners


# --- PDQ --------------------------------------------------------------------


def word_starts(layout: Layout) -> list[int]:
    """Bit offsets (from the first, most significant bit) of each word: consecutive words."""
    return [sum(layout[:i]) for i in range(len(layout))]


def hash_words(raw: NDArray[np.uint8], layout: Layout) -> NDArray[np.uint32]:
    """Each hash's words (Q x m), read big-endian from the hash bytes (Q x 32), all words at once."""
    lane, left, right, width = _word_shifts(layout)
    lanes = np.zeros((len(raw), 5), dtype=np.uint64)  # a zero lane past the end: no special case
    lanes[:, :4] = np.ascontiguousarray(raw).view(">u8")
    # A word is bits [offset, offset + bits) of the 128-bit window lanes[i], lanes[i + 1].
    window = (lanes[:, lane] << left) | ((lanes[:, lane + 1] >> np.uint64(1)) >> right)
    return (window >> width).astype(np.uint32)


@lru_cache(maxsize=16)
def _word_shifts(
    layout: Layout,
) -> tuple[NDArray[np.intp], NDArray[np.uint64], NDArray[np.uint64], NDArray[np.uint64]]:
    starts = np.array(word_starts(layout), dtype=np.int64)
    offsets = starts % 64
    return (
        (starts // 64).astype(np.intp),
        offsets.astype(np.uint64),
        (63 - offsets).astype(np.uint64),
        (64 - np.array(layout, dtype=np.int64)).astype(np.uint64),
    )


def distances(hashes: NDArray[np.uint64], queries: NDArray[np.uint64]) -> NDArray[np.int16]:
    """Hamming distances of rows of 4 x 64 bits (``queries`` one row, or one per hash)."""
    return within(hashes, queries, 256)[1]


def within(
    hashes: NDArray[np.uint64], queries: NDArray[np.uint64], threshold: int
) -> tuple[NDArray[np.intp], NDArray[np.int16]]:
    """Positions of the rows within ``threshold`` of their query, and their distances."""
    counts: NDArray[np.uint8] = np.bitwise_count(hashes ^ queries)  # n x 4 bytes, each <= 64
    packed = counts.view(np.uint32).ravel()
    summed = (packed * np.uint32(0x01010101)) >> np.uint32(24)  # the byte sum, modulo 256
    keep = np.flatnonzero(summed <= threshold)
    dist: NDArray[np.int16] = summed[keep].astype(np.int16)
    dist[packed[keep] == 0x40404040] = 256  # 4 x 64 differing bits wrapped to 0
    if threshold < 256:
        keep, dist = keep[dist <= threshold], dist[dist <= threshold]
    return keep, dist


def word_radii(layout: Layout, threshold: int) -> list[int]:
    """How many bits each word is probed within (-1: not probed) so that no match is missed.

    A hash within ``threshold`` differs on some word ``i`` in at most ``r_i``
    bits as long as ``sum(r_i + 1) >= threshold + 1``; the wider words take
    the larger radii (fewer entries share a wide word's value).
    """
    q, rem = divmod(threshold + 1, len(layout))
    by_width = sorted(range(len(layout)), key=lambda w: -layout[w])
    radii = [q - 1] * len(layout)
    for w in by_width[:rem]:
        radii[w] = q
    return radii


def probe_count(layout: Layout, threshold: int) -> int:
    return sum(
        sum(comb(b, k) for k in range(r + 1))
        for b, r in zip(layout, word_radii(layout, threshold), strict=True)
    )


@lru_cache(maxsize=64)
def _masks(bits: int, radius: int) -> NDArray[np.uint32]:
    """XOR masks of every ``bits``-bit word within ``radius`` flipped bits of zero."""
    masks = [0]
    for r in range(1, radius + 1):
        masks += [sum(1 << b for b in chosen) for chosen in combinations(range(bits), r)]
    return np.array(masks, dtype=np.uint32)


def layout_cost(layout: Layout, n: int, threshold: int = DEFAULT_THRESHOLD) -> float:
    """Estimated memory reads of one query: a table read per probe, two per candidate."""
    radii = word_radii(layout, threshold)
    cost = 0.0
    for bits, r in zip(layout, radii, strict=True):
        probes = sum(comb(bits, k) for k in range(r + 1)) if r >= 0 else 0
        cost += probes * (1 + 2 * n / (1 << bits))
    return cost


def layout_bytes(layout: Layout, n: int) -> int:
    """Bytes of a PDQ segment: hashes, owners, postings, offset tables."""
    return n * (36 + 4 * len(layout)) + 4 * sum((1 << b) + 1 for b in layout)


def choose_layout(n: int, threshold: int = DEFAULT_THRESHOLD) -> Layout:
    """The word layout with the fewest expected reads per query within the memory budget."""
    best: tuple[float, Layout] | None = None
    for m in range(8, 33):
        for bits in range(8, min(256 // m, _MAX_WORD_BITS) + 1):
            layout = (bits,) * m
            tables = layout_bytes(layout, n) - layout_bytes(layout, 0) + 4 * n * m
            if layout_bytes(layout, n) > _BYTES_PER_HASH * n and tables > _SMALL_TABLES:
                continue
            cost = layout_cost(layout, n, threshold)
            if best is None or cost < best[0]:
                best = (cost, layout)
    assert best is not None
    return best[1]


class PdqSegment:
    """PDQ hashes with one bucket offset table and posting array per word (multi-index hashing).

    ``postings[w]`` lists the rows ordered by word ``w``; ``tables`` holds,
    for every word and every possible word value, where its rows start in
    the flattened postings (word ``w``'s table starts at ``bases[w]``).  A
    segment without words (``layout == ()``) is searched by brute force.
    """

    def __init__(
        self,
        hashes: NDArray[np.uint8],
        owners: Owners,
        layout: Layout = (),
        postings: NDArray[np.uint32] | None = None,
        tables: NDArray[Any] | None = None,
    ) -> None:
        self.raw = _plain(hashes).reshape(-1, 32)
        self.owners = _plain(owners)
        self.layout = tuple(layout)
        self.lanes: NDArray[np.uint64] = self.raw.view(np.uint64)  # native order: fine for distances
        self.postings = _plain(postings) if postings is not None else np.empty((0, 0), np.uint32)
        self.tables = _plain(tables) if tables is not None else np.empty(0, np.uint32)
        sizes = [(1 << b) + 1 for b in self.layout]
        self.bases = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)[:-1]
        if len(self.owners) != len(self.raw):
            raise ValueError("PDQ segment: hashes and owners differ in length")
        if self.layout and (
            self.postings.shape != (len(self.layout), len(self.raw)) or len(self.tables) != sum(sizes)
        ):
            raise ValueError("PDQ segment: postings or tables do not fit the layout")
        self._plans: dict[int, tuple[NDArray[np.intp], NDArray[np.int64], NDArray[np.int64]]] = {}
        #: How to map the segment again in another process (set for memory-mapped segments).
        self.reopen: tuple[Callable[..., Any], tuple[Any, ...]] | None = None
        self._shifts = [
            (256 - start - bits, (1 << bits) - 1)
            for start, bits in zip(word_starts(self.layout), self.layout, strict=True)
        ]
        self._pays: dict[int, bool] = {}

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """Pickled as its file location when memory-mapped: a spawned worker maps it, never copies it."""
        if self.reopen:
            return self.reopen
        arrays = (self.postings, self.tables) if self.layout else (None, None)
        return PdqSegment, (self.raw, self.owners, self.layout, *arrays)

    @classmethod
    def build(
        cls, hashes: bytes | NDArray[np.uint8], owners: Owners, layout: Layout | None = None
    ) -> PdqSegment:
        raw = np.frombuffer(hashes, dtype=np.uint8) if isinstance(hashes, bytes) else np.asarray(hashes)
        raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, 32)
        owners = np.ascontiguousarray(owners, dtype=np.int32)
        if layout is None:
            layout = choose_layout(len(raw)) if len(raw) >= _BRUTE_FORCE_BELOW else ()
        if not layout:
            return cls(raw, owners)
        words = hash_words(raw, layout)
        n = len(raw)
        total = n * len(layout)
        postings = np.empty((len(layout), n), dtype=np.uint32)
        tables = np.empty(sum((1 << b) + 1 for b in layout), dtype=_offset_dtype(total + 1))
        base = 0
        for w, bits in enumerate(layout):
            column = words[:, w]
            order = np.argsort(column, kind="stable")
            postings[w] = order
            table = _bucket_table(column[order].astype(np.uint64), bits)
            tables[base : base + (1 << bits) + 1] = table + w * n
            base += (1 << bits) + 1
        return cls(raw, owners, layout, postings, tables)

    def __len__(self) -> int:
        return len(self.raw)

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {"hashes": self.raw, "owners": self.owners, "postings": self.postings, "tables": self.tables}

    def _plan(self, threshold: int) -> tuple[NDArray[np.intp], NDArray[np.int64], NDArray[np.int64]]:
        """Per probe: its word, its XOR mask and its word's table base."""
        if threshold not in self._plans:
            words: list[NDArray[np.intp]] = []
            masks: list[NDArray[np.uint32]] = []
            for w, (bits, r) in enumerate(zip(self.layout, word_radii(self.layout, threshold), strict=True)):
                if r >= 0:
                    m = _masks(bits, r)
                    masks.append(m)
                    words.append(np.full(len(m), w, dtype=np.intp))
            word = np.concatenate(words)
            self._plans[threshold] = (word, np.concatenate(masks).astype(np.int64), self.bases[word])
        return self._plans[threshold]

    def _probing_pays(self, threshold: int) -> bool:
        if threshold not in self._pays:
            self._pays[threshold] = (
                bool(self.layout)
                and max(word_radii(self.layout, threshold)) <= 4
                and layout_cost(self.layout, len(self), threshold) < len(self) / 4
            )
        return self._pays[threshold]

    def search(
        self, raw: NDArray[np.uint8], threshold: int
    ) -> tuple[NDArray[np.int64], Rows, NDArray[np.int16]]:
        """(query index, local row, distance) of every pair within ``threshold``; may hold duplicates."""
        q64 = np.ascontiguousarray(raw).view(np.uint64)
        if not self._probing_pays(threshold):
            return self._brute_force(q64, threshold)
        if len(raw) == 1:
            return self._search_one(raw[0], q64, threshold)
        if len(self) >= _BATCH_ONE_BY_ONE:
            return self._search_each(raw, q64, threshold)
        word, masks, bases = self._plan(threshold)
        all_words = hash_words(raw, self.layout)
        out: list[tuple[NDArray[np.int64], Rows, NDArray[np.int16]]] = []
        for start in range(0, len(raw), _QUERY_CHUNK):
            qwords = all_words[start : start + _QUERY_CHUNK].astype(np.int64)
            keys = (qwords[:, word] ^ masks) + bases  # queries x probes
            positions, probe = _expand(self.tables.take(keys), self.tables.take(keys + 1))
            if not len(positions):
                continue
            rows = self.postings.ravel().take(positions).astype(np.int64)
            qi = probe // len(word) + start
            keep, dist = within(self.lanes.take(rows, axis=0), q64[qi], threshold)
            out.append((qi[keep], rows[keep], dist))
        if not out:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int16)
        return (
            np.concatenate([o[0] for o in out]),
            np.concatenate([o[1] for o in out]),
            np.concatenate([o[2] for o in out]),
        )

    def _search_each(
        self, raw: NDArray[np.uint8], q64: NDArray[np.uint64], threshold: int
    ) -> tuple[NDArray[np.int64], Rows, NDArray[np.int16]]:
        """Queries one after the other: on large segments no slower than in chunks (memory bound)."""
        found = [self._search_one(raw[i], q64[i : i + 1], threshold) for i in range(len(raw))]
        qi = np.repeat(np.arange(len(raw), dtype=np.int64), [len(f[1]) for f in found])
        return qi, np.concatenate([f[1] for f in found]), np.concatenate([f[2] for f in found])

    def _search_one(
        self, raw: NDArray[np.uint8], q64: NDArray[np.uint64], threshold: int
    ) -> tuple[NDArray[np.int64], Rows, NDArray[np.int16]]:
        """:meth:`search` for one query: its words in plain Python, no query bookkeeping."""
        word, masks, bases = self._plan(threshold)
        value = int.from_bytes(raw.tobytes(), "big")
        qwords = np.array([(value >> shift) & mask for shift, mask in self._shifts], dtype=np.int64)
        keys = (qwords[word] ^ masks) + bases
        lo = self.tables.take(keys).astype(np.int64)
        counts = self.tables.take(keys + 1) - lo
        total = int(counts.sum())
        if not total:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int16)
        positions = np.arange(total, dtype=np.int64) + np.repeat(lo - (np.cumsum(counts) - counts), counts)
        rows = self.postings.ravel().take(positions)
        keep, dist = within(self.lanes.take(rows, axis=0), q64, threshold)
        hits = rows[keep].astype(np.int64)
        return np.zeros(len(hits), np.int64), hits, dist

    def _brute_force(
        self, q: NDArray[np.uint64], threshold: int
    ) -> tuple[NDArray[np.int64], Rows, NDArray[np.int16]]:
        qis: list[NDArray[np.int64]] = []
        rows: list[Rows] = []
        dists: list[NDArray[np.int16]] = []
        step = max(1, _CHUNK_CELLS // q.shape[0])
        for start in range(0, len(self.lanes), step):
            block = self.lanes[start : start + step]
            dist = np.bitwise_count(q[:, None, :] ^ block[None, :, :]).sum(axis=2, dtype=np.int16)
            qi, r = np.nonzero(dist <= threshold)
            qis.append(qi.astype(np.int64))
            rows.append(r.astype(np.int64) + start)
            dists.append(dist[qi, r])
        if not qis:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int16)
        return np.concatenate(qis), np.concatenate(rows), np.concatenate(dists)


class PdqIndex(_Segmented[PdqSegment]):
    """Every entry within a Hamming radius of a batch of query hashes."""

    def __init__(self, hashes: bytes, owners: Owners, layout: Layout | None = None) -> None:
        self._setup([PdqSegment.build(hashes, owners, layout)], None, None)

    def _setup(
        self, segments: Sequence[PdqSegment], removed: Rows | None, allowed: NDArray[np.bool_] | None
    ) -> None:
        self._set_segments(segments, removed, allowed)

    @classmethod
    def from_segments(
        cls,
        segments: Sequence[PdqSegment],
        removed: Rows | None = None,
        allowed: NDArray[np.bool_] | None = None,
    ) -> PdqIndex:
        """An index over prebuilt (e.g. memory-mapped) segments, less ``removed`` rows, owners in ``allowed``."""
        index = cls.__new__(cls)
        index._setup(segments, removed, allowed)
        return index

    def extended(self, segment: PdqSegment) -> PdqIndex:
        """This index plus one more segment (e.g. in-memory entries beside a disk index), its owners allowed."""
        return PdqIndex.from_segments(
            [*self.segments, segment], self._rows.removed, self._rows.extended_mask(segment.owners)
        )

    def restricted(self, allowed: NDArray[np.bool_] | None) -> PdqIndex:
        """The same arrays, hits limited to owners whose ``allowed`` entry is true."""
        return PdqIndex.from_segments(self.segments, self._rows.removed, allowed)

    def entry(self, row: int) -> tuple[int, bytes]:
        """The owner (list number) and hash of an entry row."""
        seg, local = self._rows.locate(row)
        segment = self.segments[seg]
        return int(segment.owners[local]), segment.raw[local].tobytes()

    def search_raw(
        self, raw: NDArray[np.uint8], threshold: int
    ) -> tuple[NDArray[np.int64], Rows, NDArray[np.int16]]:
        """(query index, row, distance) arrays for query hashes given as Q x 32 bytes, sorted, no duplicates."""
        qis: list[NDArray[np.int64]] = []
        rows: list[Rows] = []
        dists: list[NDArray[np.int16]] = []
        for seg, segment in enumerate(self.segments):
            if not len(segment):
                continue
            qi, local, dist = segment.search(raw, threshold)
            if not len(local):
                continue
            if self._rows.filters:
                keep = self._rows.keep(local + self._rows.starts[seg], segment.owners[local])
                qi, local, dist = qi[keep], local[keep], dist[keep]
            qis.append(qi)
            rows.append(local + self._rows.starts[seg])
            dists.append(dist)
        if not qis:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int16)
        if len(qis) == 1:
            qi_all, rows_all, dist_all = qis[0], rows[0], dists[0]
        else:
            qi_all, rows_all, dist_all = np.concatenate(qis), np.concatenate(rows), np.concatenate(dists)
        # A pair found through several words is found more than once.
        key = qi_all * int(self._rows.starts[-1]) + rows_all
        _, first = np.unique(key, return_index=True)
        return qi_all[first], rows_all[first], dist_all[first]

    def search(self, queries: Sequence[str], threshold: int) -> list[tuple[int, int, int]]:
        """(query index, entry row, distance) for every pair within ``threshold``."""
        if not queries or not self.segments:
            return []
        raw = np.frombuffer(bytes.fromhex("".join(queries)), dtype=np.uint8).reshape(-1, 32)
        qi, rows, dist = self.search_raw(raw, threshold)
        return list(zip(qi.tolist(), rows.tolist(), dist.tolist(), strict=True))


def owner_mask(numbers: Iterable[int], size: int) -> NDArray[np.bool_]:
    """An ``allowed`` mask for :meth:`PdqIndex.restricted` and :meth:`DigestIndex.restricted`."""
    mask = np.zeros(size, dtype=bool)
    mask[list(numbers)] = True
    return mask
