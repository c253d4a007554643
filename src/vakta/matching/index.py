"""In-memory indexes over the selected lists: exact digests and PDQ radius search.

Digests sit in sorted fixed-width numpy arrays (binary search); PDQ hashes in
an ``N x 4`` uint64 array searched by brute force with popcount, which is exact
by construction: no entry within the threshold can be missed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vakta.lists.store import EntryRow
from vakta.signals.kinds import DIGEST_KINDS, HEX_LENGTHS

#: Reference PDQ settings: match at distance <= 31, both hashes of quality >= 50.
DEFAULT_THRESHOLD = 31
MIN_QUALITY = 50
#: Query x entry pairs compared per numpy step (bounds memory to a few MB).
_CHUNK_CELLS = 1 << 18


@dataclass(frozen=True, slots=True)
class EntryMeta:
    """Provenance of one list entry, carried into every finding it causes."""

    list_name: str
    entry_id: str | None
    category: str | None
    source_format: str
    imported_at: str


class DigestIndex:
    """Exact lookup of one digest kind."""

    def __init__(self, kind: str, values: Sequence[bytes], metas: Sequence[EntryMeta]) -> None:
        self.kind = kind
        width = HEX_LENGTHS[kind] // 2
        keys = np.array(values, dtype=f"S{width}") if values else np.empty(0, dtype=f"S{width}")
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._metas = [metas[i] for i in order]

    def __len__(self) -> int:
        return len(self._metas)

    def lookup(self, hexdigest: str) -> list[EntryMeta]:
        key = np.array([bytes.fromhex(hexdigest)], dtype=self._keys.dtype)
        lo = int(np.searchsorted(self._keys, key[0], side="left"))
        hi = int(np.searchsorted(self._keys, key[0], side="right"))
        return self._metas[lo:hi]


class PdqIndex:
    """Every entry within a Hamming radius of a batch of query hashes."""

    def __init__(self, values: Sequence[bytes], metas: Sequence[EntryMeta]) -> None:
        raw = np.frombuffer(b"".join(values), dtype=np.uint8) if values else np.empty(0, np.uint8)
        self._hashes: NDArray[np.uint64] = raw.reshape(-1, 32).copy().view(">u8").astype(np.uint64)
        self._metas = list(metas)

    def __len__(self) -> int:
        return len(self._metas)

    def meta(self, row: int) -> EntryMeta:
        return self._metas[row]

    def search(self, queries: Sequence[str], threshold: int) -> list[tuple[int, int, int]]:
        """(query index, entry row, distance) for every pair within ``threshold``."""
        if not queries or not self._metas:
            return []
        q = np.frombuffer(b"".join(bytes.fromhex(h) for h in queries), dtype=">u8").astype(np.uint64)
        q = q.reshape(-1, 4)
        hits: list[tuple[int, int, int]] = []
        step = max(1, _CHUNK_CELLS // q.shape[0])
        for start in range(0, len(self._hashes), step):
            block = self._hashes[start : start + step]
            dist = np.bitwise_count(q[:, None, :] ^ block[None, :, :]).sum(axis=2, dtype=np.int16)
            qi, rows = np.nonzero(dist <= threshold)
            hits.extend(zip(qi.tolist(), (rows + start).tolist(), dist[qi, rows].tolist(), strict=True))
        return hits


@dataclass
class ListIndex:
    """All indexes of the selected lists, built once per scan."""

    digests: dict[str, DigestIndex]
    pdq: PdqIndex
    list_names: list[str]

    @classmethod
    def build(cls, rows: Iterable[EntryRow], min_quality: int = MIN_QUALITY) -> ListIndex:
        values: dict[str, list[bytes]] = {k: [] for k in (*DIGEST_KINDS, "pdq")}
        metas: dict[str, list[EntryMeta]] = {k: [] for k in values}
        names: list[str] = []
        for row in rows:
            if row.list_name not in names:
                names.append(row.list_name)
            if row.kind == "pdq" and row.quality is not None and row.quality < min_quality:
                continue  # the reference never matches low-quality hashes
            if row.kind not in values:
                continue
            values[row.kind].append(row.value)
            metas[row.kind].append(
                EntryMeta(row.list_name, row.entry_id, row.category, row.source_format, row.imported_at)
            )
        digests = {k: DigestIndex(k, values[k], metas[k]) for k in DIGEST_KINDS}
        return cls(digests, PdqIndex(values["pdq"], metas["pdq"]), names)

    def __len__(self) -> int:
        return sum(len(d) for d in self.digests.values()) + len(self.pdq)
