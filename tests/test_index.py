"""The list index: PDQ radius search is exact, and provenance comes from the store on a match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pdq_data import flip_bits, near_duplicate_set

from vakta.lists.model import ListRecord
from vakta.lists.store import EntryRow, ListStore
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Matcher
from vakta.matching.search import PdqIndex
from vakta.signals.model import PdqQuery, Signals

_flip = flip_bits


def _dataset(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Random hashes plus clusters of near-duplicates, and queries near them (plus random ones)."""
    return near_duplicate_set(n, seed, every=50, cluster=4, spread=40, picks=60, query_spread=48, randoms=10)


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
