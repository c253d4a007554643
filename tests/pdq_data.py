"""Synthetic PDQ hash sets for index tests: random hashes with clusters of near-duplicates, as real lists have."""

from __future__ import annotations

import numpy as np


def flip_bits(rng: np.random.Generator, h: np.ndarray, bits: int) -> np.ndarray:
    """``h`` (32 bytes) with ``bits`` distinct bits flipped."""
    out = np.unpackbits(h).copy()
    out[rng.choice(256, size=bits, replace=False)] ^= 1
    return np.packbits(out)


def near_duplicate_set(
    n: int, seed: int, every: int, cluster: int, spread: int, picks: int, query_spread: int, randoms: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` hashes (every ``every``-th followed by ``cluster - 1`` copies up to ``spread`` bits off)
    and queries: ``picks`` entries moved by up to ``query_spread`` bits, then ``randoms`` random hashes."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    for i in range(0, n, every):
        for j in range(1, cluster):
            if i + j < n:
                hashes[i + j] = flip_bits(rng, hashes[i], int(rng.integers(1, spread)))
    chosen = rng.choice(n, size=picks, replace=False)
    queries = np.stack([flip_bits(rng, hashes[p], int(rng.integers(0, query_spread))) for p in chosen])
    return hashes, np.concatenate([queries, rng.integers(0, 256, size=(randoms, 32), dtype=np.uint8)])
