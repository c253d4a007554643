"""The list index: PDQ radius search is exact, and provenance comes from the store on a match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vakta.lists.model import ListRecord
from vakta.lists.store import EntryRow, ListStore
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Matcher
from vakta.matching.search import PdqIndex
from vakta.signals.model import PdqQuery, Signals


def _flip(rng: np.random.Generator, h: np.ndarray, bits: int) -> np.ndarray:
    out = np.unpackbits(h).copy()
    out[rng.choice(256, size=bits, replace=False)] ^= 1
    return np.packbits(out)


def _dataset(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Random hashes plus clusters of near-duplicates (as real lists have), and queries near them."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    for i in range(0, n, 50):  # every 50th entry gets near-duplicates
        for j in range(1, 4):
            if i + j < n:
                hashes[i + j] = _flip(rng, hashes[i], int(rng.integers(1, 40)))
    picks = rng.choice(n, size=60, replace=False)
    queries = np.stack([_flip(rng, hashes[p], int(rng.integers(0, 48))) for p in picks])
    queries = np.concatenate([queries, rng.integers(0, 256, size=(10, 32), dtype=np.uint8)])
    return hashes, queries


def _brute(hashes: np.ndarray, queries: np.ndarray, t: int) -> set[tuple[int, int, int]]:
    bits = np.unpackbits(hashes, axis=1)
    out = set()
    for qi, q in enumerate(np.unpackbits(queries, axis=1)):
        d = (bits != q).sum(axis=1)
        out |= {(qi, int(r), int(d[r])) for r in np.flatnonzero(d <= t)}
    return out


@pytest.mark.parametrize("threshold", [0, 8, 31, 40, 70])
def test_radius_search_equals_brute_force(threshold: int) -> None:
    hashes, queries = _dataset(30_000)
    index = PdqIndex(hashes.tobytes(), np.zeros(len(hashes), np.int32))
    found = set(index.search([q.tobytes().hex() for q in queries], threshold))
    assert found == _brute(hashes, queries, threshold)
    if threshold == 31:
        assert len(found) > 30  # the test has matches to find


def test_small_index_searches_by_brute_force_correctly() -> None:
    hashes, queries = _dataset(500, seed=2)
    index = PdqIndex(hashes.tobytes(), np.zeros(len(hashes), np.int32))
    assert set(index.search([q.tobytes().hex() for q in queries], 31)) == _brute(hashes, queries, 31)


def test_store_backed_index_reports_provenance(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    pdq = rng.integers(0, 256, 32, dtype=np.uint8)
    md5 = "ab" * 16
    records = [
        ListRecord({"md5": md5, "pdq": pdq.tobytes().hex()}, "media-7", "1", 1, 90),
        ListRecord({"pdq": "00" * 32}, "low", "2", 2, 10),  # quality 10: never matched
    ]
    with ListStore(tmp_path) as store:
        store.import_records("national", records, "list.csv", "csv")
        test_row = EntryRow("builtin", "md5", bytes.fromhex("cd" * 16), "t", "test", None, "builtin", "now")
        index = ListIndex.build([test_row], store=store, store_lists=["national"])
        assert index.list_names == ["builtin", "national"]
        assert len(index.search.pdq) == 1
        near = _flip(rng, pdq, 9).tobytes().hex()
        signals = Signals("q.jpg", md5=md5, pdq_queries=[PdqQuery(near, 100, "mirror", "full")])
        matches = Matcher(index).match(signals)
        assert [(m.signal, m.distance, m.transform) for m in matches] == [
            ("md5", 0, None),
            ("pdq", 9, "mirror"),
        ]
        assert {m.meta.entry_id for m in matches} == {"media-7"}
        assert {(m.meta.list_name, m.meta.category, m.meta.source_format) for m in matches} == {
            ("national", "1", "csv")
        }
        builtin = Matcher(index).match(Signals("t.jpg", md5="cd" * 16))
        assert [(m.meta.list_name, m.meta.entry_id) for m in builtin] == [("builtin", "t")]
