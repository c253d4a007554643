"""The on-disk index: exact PDQ radius search, digests, deltas, atomic switches, damage detection."""

from __future__ import annotations

import json
import mmap
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pdq_data import flip_bits, near_duplicate_set

from vakta.lists.model import ListRecord
from vakta.lists.store import ListStore
from vakta.matching import diskindex, search
from vakta.matching.diskindex import DiskIndex, IndexFormatError
from vakta.matching.index import ListIndex
from vakta.matching.search import DigestSegment, PdqIndex, PdqSegment, choose_layout, hash_words, word_radii

_flip = flip_bits


def _dataset(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Random hashes plus clusters of near-duplicates, and queries near them (plus random ones)."""
    return near_duplicate_set(n, seed, every=40, cluster=5, spread=36, picks=80, query_spread=41, randoms=8)


def _distances(hashes: np.ndarray, queries: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(hashes, axis=1)
    return np.stack([(bits != q).sum(axis=1) for q in np.unpackbits(queries, axis=1)])


def _pairs(dist: np.ndarray, t: int) -> set[tuple[int, int, int]]:
    qi, rows = np.nonzero(dist <= t)
    return {(int(q), int(r), int(dist[q, r])) for q, r in zip(qi, rows, strict=True)}


@pytest.mark.parametrize(
    "layout", [(23,) * 11, (16,) * 16, (19,) * 13, (12,) * 21, (21, 22, 20, 25, 23, 21, 24, 22, 21, 20)]
)
def test_every_threshold_equals_brute_force(layout: tuple[int, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    # Probe whenever the radii are small, even where brute force would be cheaper at this size.
    monkeypatch.setattr(PdqSegment, "_probing_pays", lambda self, t: max(word_radii(self.layout, t)) <= 3)
    hashes, queries = _dataset(12_000)
    index = PdqIndex(hashes.tobytes(), np.zeros(len(hashes), np.int32), layout=layout)
    dist = _distances(hashes, queries)
    hexes = [q.tobytes().hex() for q in queries]
    for t in [*range(32), 40, 64]:
        assert set(index.search(hexes, t)) == _pairs(dist, t), t
    monkeypatch.setattr(search, "_BATCH_ONE_BY_ONE", 0)  # large indexes take queries one by one
    assert set(index.search(hexes, 31)) == _pairs(dist, 31)
    for t in (0, 9, 31):  # one query at a time takes its own path
        for qi in range(0, len(hexes), 7):
            found = {(qi, row, d) for _, row, d in index.search([hexes[qi]], t)}
            assert {(0, row, d) for _, row, d in found} == _pairs(dist[qi : qi + 1], t), (t, qi)
    assert len(_pairs(dist, 31)) > 80  # clusters give several matches per query


def test_words_and_radii() -> None:
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 256, (20, 32), dtype=np.uint8)
    bits = np.unpackbits(raw, axis=1)
    layout = (23,) * 11
    words = hash_words(raw, layout)
    for w in range(11):
        expect = bits[:, 23 * w : 23 * (w + 1)].astype(np.int64) @ (1 << np.arange(22, -1, -1))
        assert (words[:, w] == expect).all()
    for t in range(64):  # pigeonhole: the radii always cover the threshold
        assert sum(r + 1 for r in word_radii(layout, t)) >= t + 1
    assert choose_layout(10_000_000) == (23,) * 11


def _store(home: Path, n: int = 6_000) -> tuple[ListStore, np.ndarray]:
    hashes, _ = _dataset(n, seed=3)
    store = ListStore(home)
    half = n // 2
    for name, part in (("alpha", hashes[:half]), ("beta", hashes[half:])):
        records = [
            ListRecord(
                {"pdq": h.tobytes().hex(), "md5": f"{i:032x}", "sha1": f"{i:040x}"}, f"{name}-{i}", "1", i, 90
            )
            for i, h in enumerate(part)
        ]
        store.import_records(name, records, f"{name}.csv", "csv")
    # One digest and one PDQ hash on both lists; a low-quality hash never indexed.
    store.import_records(
        "beta",
        [ListRecord({"md5": f"{1:032x}"}, "shared"), ListRecord({"pdq": "ab" * 32}, "low", pdq_quality=10)],
        "b.csv",
        "csv",
    )
    return store, hashes


def _hits(
    index: DiskIndex, hexes: list[str], t: int = 31, lists: list[str] | None = None
) -> set[tuple[int, str, str, int]]:
    """(query, list name, hash hex, distance): independent of row numbering."""
    _, pdq = index.restricted(lists)
    out = set()
    for qi, row, dist in pdq.search(hexes, t):
        owner, value = pdq.entry(row)
        out.add((qi, index.list_names[owner], value.hex(), dist))
    return out


def test_build_from_store_searches_exactly_and_restricts_lists(tmp_path: Path) -> None:
    store, hashes = _store(tmp_path)
    index = diskindex.build(store, tmp_path / "index")
    assert index.list_names == ["alpha", "beta"]
    assert len(index.pdq) == len(hashes)  # the low-quality hash is left out
    _, queries = _dataset(len(hashes), seed=3)
    hexes = [q.tobytes().hex() for q in queries]
    dist = _distances(hashes, queries)
    half = len(hashes) // 2
    expect = {
        (q, "alpha" if r < half else "beta", hashes[r].tobytes().hex(), d) for q, r, d in _pairs(dist, 31)
    }
    assert _hits(index, hexes) == expect
    assert _hits(index, hexes, lists=["beta"]) == {e for e in expect if e[1] == "beta"}
    digests, _ = index.restricted()
    assert sorted(digests["md5"].lookup(f"{1:032x}")) == [0, 1]
    assert digests["md5"].lookup_many([f"{7:032x}", "ff" * 16, f"{1:032x}"]) == [[0, 1], [], [0, 1]]
    assert digests["sha1"].lookup(f"{half - 1:040x}") == [0, 1]
    only_beta, _ = index.restricted(["beta"])
    assert only_beta["md5"].lookup(f"{1:032x}") == [1]
    with pytest.raises(KeyError):
        index.restricted(["nope"])
    # In-memory entries (the built-in test list) as one more list beside the disk index.
    extra = PdqSegment.build(hashes[:1], np.array([2], np.int32))
    beside = index.restricted(["beta"])[1].extended(extra)
    assert [(q, r) for q, r, _ in beside.search([hashes[0].tobytes().hex()], 0)] == [(0, len(hashes))]
    assert beside.entry(len(hashes)) == (2, hashes[0].tobytes())
    only_beta_md5 = index.restricted(["beta"])[0]["md5"]
    more = only_beta_md5.extended(DigestSegment.build(16, bytes.fromhex("ee" * 16), np.array([2], np.int32)))
    assert more.lookup("ee" * 16) == [2]
    assert more.lookup(f"{1:032x}") == only_beta_md5.lookup(f"{1:032x}") == [1]
    assert not index.stale(store)


def test_fresh_process_opens_the_index_by_memory_map(tmp_path: Path) -> None:
    store, hashes = _store(tmp_path, 3_000)
    diskindex.build(store, tmp_path / "index")
    query = _flip(np.random.default_rng(9), hashes[17], 12).tobytes().hex()
    code = (
        "import json, sys, numpy as np; from pathlib import Path; from vakta.matching.diskindex import DiskIndex\n"
        "ix = DiskIndex.open(Path(sys.argv[1]))\n"
        "assert isinstance(ix.pdq.segments[0].postings.base, np.memmap) or ix.pdq.segments[0].layout == ()\n"
        "hits = [(q, ix.pdq.entry(r)[1].hex(), d) for q, r, d in ix.pdq.search([sys.argv[2]], 31)]\n"
        "print(json.dumps({'hits': hits, 'md5': ix.digests['md5'].lookup('0' * 31 + '5')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "index"), query],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    assert [0, hashes[17].tobytes().hex(), 12] in result["hits"]
    assert result["md5"] == [0, 1]


def _mapped(array: object) -> bool:
    while array is not None:
        if isinstance(array, (np.memmap, mmap.mmap)):
            return True
        array = getattr(array, "base", None)
    return False


def test_prefault_reads_every_mapped_array(tmp_path: Path) -> None:
    """A service reads the lists in at start (``SearchIndex.prefault``): every array, mapped ones included."""
    store, hashes = _store(tmp_path, 3_000)
    disk = diskindex.build(store, tmp_path / "index")
    found = ListIndex.from_disk(disk, store, disk.list_names).search
    segments = [s for d in found.digests.values() for s in d.segments] + list(found.pdq.segments)
    arrays = [a for s in segments for a in s.arrays().values()]
    assert sum(_mapped(a) for a in arrays) >= 5  # PDQ hashes, owners, postings, tables; digests
    assert found.prefault() == sum(a.nbytes for a in arrays) > len(hashes) * 32


def test_pickled_index_maps_its_files_again(tmp_path: Path) -> None:
    """A worker started by spawn/forkserver receives file locations, not copies of the arrays."""
    store, hashes = _store(tmp_path, 3_000)
    index = diskindex.build(store, tmp_path / "index")
    digests, pdq = index.restricted(["beta"])
    data = pickle.dumps((digests, pdq))
    assert len(data) < 20_000
    digests2, pdq2 = pickle.loads(data)
    assert _mapped(pdq2.segments[0].raw) and _mapped(digests2["md5"].segments[0].keys)
    hexes = [h.tobytes().hex() for h in hashes[::30]]
    assert pdq2.search(hexes, 31) == pdq.search(hexes, 31) != []
    assert digests2["md5"].lookup(f"{1:032x}") == [1]
    in_memory = PdqIndex(hashes.tobytes(), np.zeros(len(hashes), np.int32))
    assert pickle.loads(pickle.dumps(in_memory)).search(hexes, 31) == in_memory.search(hexes, 31)


def test_delta_add_remove_update_and_compaction(tmp_path: Path) -> None:
    store, hashes = _store(tmp_path, 3_000)
    root = tmp_path / "index"
    old = diskindex.build(store, root)
    rng = np.random.default_rng(11)
    new = rng.integers(0, 256, (500, 32), dtype=np.uint8)
    report = diskindex.add(root, "alpha", "pdq", new.tobytes())
    assert report.added == {"pdq": 500} and report.seconds < 5
    assert old.refresh() is not old
    index = DiskIndex.open(root)
    probe = [_flip(rng, new[3], 5).tobytes().hex(), hashes[10].tobytes().hex()]
    assert (0, "alpha", new[3].tobytes().hex(), 5) in _hits(index, probe)
    # Remove one base entry and one delta entry.
    diskindex.remove(root, "alpha", "pdq", hashes[10].tobytes() + new[3].tobytes())
    diskindex.add(root, "alpha", "md5", bytes.fromhex("cc" * 16) * 2)
    assert diskindex.add(root, "alpha", "md5", bytes.fromhex("cc" * 16)).added == {}  # already there
    assert diskindex.add(root, "beta", "pdq", hashes[-1].tobytes()).added == {}
    diskindex.remove(root, "beta", "md5", bytes.fromhex(f"{1:032x}"))
    index = DiskIndex.open(root)
    found = _hits(index, probe, t=0)
    assert not any(h[2] in (new[3].tobytes().hex(), hashes[10].tobytes().hex()) for h in found)
    assert index.digests["md5"].lookup("cc" * 16) == [0]
    assert index.digests["md5"].lookup(f"{1:032x}") == [0]
    before = _hits(index, [h.tobytes().hex() for h in hashes[::97]])
    compacted = diskindex.compact(root)
    assert compacted.delta is None and len(compacted.pdq) == len(index.pdq)
    assert _hits(compacted, [h.tobytes().hex() for h in hashes[::97]]) == before
    assert compacted.digests["md5"].lookup("cc" * 16) == [0]
    # The store changes: a new import into beta, a new list, a removed list.
    extra = rng.integers(0, 256, (200, 32), dtype=np.uint8)
    store.import_records(
        "beta", [ListRecord({"pdq": h.tobytes().hex()}, pdq_quality=80) for h in extra], "d.csv", "csv"
    )
    store.import_records("gamma", [ListRecord({"sha256": "dd" * 32})], "g.csv", "csv")
    store.remove("alpha")
    assert compacted.stale(store)
    report = diskindex.update(store, root)
    assert report.added == {"pdq": 200, "sha256": 1} and report.lists_removed == ["alpha"]
    assert report.lists_added == ["gamma"]
    index = DiskIndex.open(root)
    assert not index.stale(store)
    assert index.names() == ["beta", "gamma"]
    assert index.list_names == ["", "beta", "gamma"]
    assert (0, "beta", extra[0].tobytes().hex(), 0) in _hits(index, [extra[0].tobytes().hex()])
    assert _hits(index, [hashes[5].tobytes().hex()], t=0) == set()  # alpha's entries are gone
    assert index.digests["sha256"].lookup("dd" * 32) == [index.numbers(["gamma"])[0]]
    assert diskindex.update(store, root).changed is False


def test_open_index_survives_switches_and_pruning(tmp_path: Path) -> None:
    store, hashes = _store(tmp_path, 3_000)
    root = tmp_path / "index"
    first = diskindex.build(store, root)
    queries = [h.tobytes().hex() for h in hashes[::50]]
    before = _hits(first, queries)
    rng = np.random.default_rng(4)
    for _ in range(4):  # several generations: the first one's folder is pruned meanwhile
        diskindex.add(root, "alpha", "pdq", rng.integers(0, 256, (50, 32), dtype=np.uint8).tobytes())
    diskindex.compact(root)
    assert not (root / first.base).exists()
    assert _hits(first, queries) == before  # still mapped, still right
    assert not first.is_current()
    assert len(first.refresh().pdq) == len(first.pdq) + 200
    assert not list(root.glob(".*"))  # no temporary folders left behind


def test_missing_or_damaged_index_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "index"
    with pytest.raises(IndexFormatError, match="CURRENT is missing"):
        DiskIndex.open(root)
    store, _ = _store(tmp_path, 2_500)
    index = diskindex.build(store, root)
    folder = root / index.base
    hashes_file = folder / "pdq-hashes.npy"
    data = hashes_file.read_bytes()
    hashes_file.write_bytes(data[:-64])
    with pytest.raises(IndexFormatError, match="damaged"):
        DiskIndex.open(root)
    hashes_file.write_bytes(b"garbage" + data[7:])
    with pytest.raises(IndexFormatError, match="damaged"):
        DiskIndex.open(root)
    hashes_file.unlink()
    with pytest.raises(IndexFormatError, match="missing"):
        DiskIndex.open(root)
    # An index of another format version is refused; update() rebuilds it.
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps(manifest | {"format": 99}))
    with pytest.raises(IndexFormatError, match="format 99"):
        DiskIndex.open(root)
    assert diskindex.update(store, root).compacted
    assert len(DiskIndex.open(root).pdq) == 2_500


def test_small_segments_search_by_brute_force() -> None:
    hashes, queries = _dataset(500, seed=2)
    segment = PdqSegment.build(hashes, np.zeros(len(hashes), np.int32))
    assert segment.layout == ()
    index = PdqIndex.from_segments([segment])
    assert set(index.search([q.tobytes().hex() for q in queries], 31)) == _pairs(
        _distances(hashes, queries), 31
    )


def test_a_large_delta_is_compacted_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, hashes = _store(tmp_path, 3_000)
    root = tmp_path / "index"
    diskindex.build(store, root)
    monkeypatch.setattr(diskindex, "_DELTA_MIN", 100)
    monkeypatch.setattr(diskindex, "_DELTA_SHARE", 0.01)
    new = np.random.default_rng(11).integers(0, 256, (400, 32), dtype=np.uint8)

    report = diskindex.add(root, "alpha", "pdq", new.tobytes())

    assert report.added == {"pdq": 400} and report.compacting and not report.compacted
    during = DiskIndex.open(root)  # visible at once, from the delta, while the merge runs
    assert _hits(during, [new[7].tobytes().hex()], t=0) == {(0, "alpha", new[7].tobytes().hex(), 0)}
    assert diskindex.wait_for_compaction(root, timeout=120), (root / diskindex.COMPACTION_LOG).read_text()
    after = DiskIndex.open(root)
    assert after.delta is None and after.base != during.base
    assert len(after.pdq) == len(hashes) + 400
    probe = [h.tobytes().hex() for h in (*new[::50], *hashes[::300])]
    assert _hits(after, probe) == _hits(during, probe)


def test_compaction_never_loses_a_change_made_while_it_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = _store(tmp_path, 2_000)
    root = tmp_path / "index"
    diskindex.build(store, root)
    diskindex.add(root, "alpha", "md5", bytes.fromhex("aa" * 16))
    real = diskindex._write_compacted
    calls = []

    def racing(index: DiskIndex) -> str:
        if not calls:  # a writer publishes a new delta while the first merge is being written
            diskindex.add(root, "beta", "md5", bytes.fromhex("bb" * 16))
        calls.append(index.delta)
        return real(index)

    monkeypatch.setattr(diskindex, "_write_compacted", racing)
    compacted = diskindex.compact(root)

    assert len(calls) == 2 and calls[0] != calls[1]  # the stale merge was thrown away and redone
    assert compacted.delta is None
    assert compacted.digests["md5"].lookup("aa" * 16) == [0]
    assert compacted.digests["md5"].lookup("bb" * 16) == [1]
    assert not diskindex.compaction_running(root)


def test_withdrawals_reach_the_index_from_the_store_journal(tmp_path: Path) -> None:
    """A list feed's deletions are journalled with the import: the index forgets them on its next update,
    even when nothing else told it (a process killed between the import and the index update)."""
    md5 = [f"{n:032x}" for n in range(1, 6)]
    root = tmp_path / "index"
    with ListStore(tmp_path) as store:
        store.import_records(
            "feed", [ListRecord({"md5": h}, f"id{n}") for n, h in enumerate(md5)], "a", "ncmec"
        )
        store.import_records("other", [ListRecord({"md5": md5[0]}, "x")], "o", "csv")
        diskindex.build(store, root)
        deletions = [
            ListRecord({}, "id0", removed=True),
            ListRecord({"md5": md5[1]}, removed=True),
            ListRecord({}, "id2", removed=True),
            ListRecord({"md5": md5[2]}, "id2-again"),  # withdrawn, then listed again in the same file
        ]
        store.import_records("feed", deletions, "b", "ncmec")
        report = diskindex.update(store, root)
    index = DiskIndex.open(root)
    feed, other = index.numbers(["feed", "other"])
    assert report.removed == {"md5": 3} and report.added == {"md5": 1}
    assert index.digests["md5"].lookup(md5[0]) == [other]  # another list's copy stays
    assert index.digests["md5"].lookup(md5[1]) == []
    assert index.digests["md5"].lookup(md5[2]) == [feed]
    assert index.digests["md5"].lookup(md5[3]) == [feed]
    assert diskindex.compact(root).digests["md5"].lookup(md5[1]) == []
