"""Exact search structures over hash arrays: sorted digests and PDQ radius search.

Hashes sit in numpy arrays, never Python objects, so millions cost seconds
to build and bytes per hash.  Each entry carries an owner number (the list,
or for video frames the known video) that the caller maps to what it means.

PDQ search is multi-index hashing: a 256-bit hash is cut into 16 words of 16
bits, and two hashes within distance ``t`` must agree to within ``t // 16``
bits on at least one word (pigeonhole).  Probing each word's sorted column
for the query word and its near neighbours yields every candidate, which is
then checked at full length: exact, no entry within the threshold is missed.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
from numpy.typing import NDArray

from vakta.signals.kinds import HEX_LENGTHS

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
        """The owners (list numbers) holding this digest."""
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
        """The owner (list number) and hash of an entry row."""
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
