"""Vakta's on-disk hash index against python-threatexchange's PDQIndex, on the same generated data.

    python bench/index.py [N] [--baseline-n M] [--queries 10000] [--layout 11x23] [--json]

N PDQ hashes (random, plus clusters of near-duplicates as real lists have:
a fifth of the entries are 1-30 bits from another entry) and N MD5 digests
are generated (benign random data).  Every measurement that needs a clean
memory figure runs in its own subprocess.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

THRESHOLD = 31
SINGLE_SECONDS = 15.0  # time budget of each single-hash lookup loop


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _flip(rng: np.random.Generator, hashes: np.ndarray, flips: np.ndarray, exact: bool = True) -> np.ndarray:
    """Each hash with ``flips[i]`` random bits flipped (distinct bits when ``exact``; else up to that many)."""
    bits = np.unpackbits(hashes, axis=1)
    rows = np.repeat(np.arange(len(bits)), flips)
    if exact:
        order = np.argsort(rng.random(bits.shape), axis=1)
        cols = order[rows, np.concatenate([np.arange(f) for f in flips])]
    else:
        cols = rng.integers(0, 256, len(rows))
    bits[rows, cols] ^= 1
    return np.packbits(bits, axis=1)


def generate(n: int, queries: int, folder: Path, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    pdq = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    members = rng.choice(n, n // 5, replace=False)
    centres = rng.choice(n, n // 5)
    for start in range(0, len(members), 500_000):
        chunk = slice(start, start + 500_000)
        flips = rng.integers(1, 31, len(members[chunk]))
        pdq[members[chunk]] = _flip(rng, pdq[centres[chunk]], flips, exact=False)
    picks = rng.choice(n, queries, replace=False)
    q = _flip(rng, pdq[picks], rng.integers(0, 32, queries))
    np.save(folder / "pdq.npy", pdq)
    np.save(folder / "owners.npy", (np.arange(n) % 3).astype(np.int32))  # three lists
    np.save(folder / "queries.npy", q)
    np.save(folder / "md5.npy", rng.integers(0, 256, (n, 16), dtype=np.uint8))
    np.save(folder / "delta.npy", rng.integers(0, 256, (10_000, 32), dtype=np.uint8))


# --- workers (each in its own process) --------------------------------------------


def vakta_build(folder: Path, layout: str | None) -> dict[str, Any]:
    from vakta.matching.diskindex import IndexedList, write_index

    pdq = np.load(folder / "pdq.npy")
    owners = np.load(folder / "owners.npy")
    md5 = np.load(folder / "md5.npy")
    lists = [IndexedList(f"list{i}", "detect", None, 0) for i in range(3)]
    chosen = None
    if layout:
        m, b = (int(x) for x in layout.split("x"))
        chosen = (b,) * m
    started = time.perf_counter()
    index = write_index(folder / "vakta", lists, (pdq, owners), {"md5": (md5, owners)}, layout=chosen)
    seconds = time.perf_counter() - started
    os.sync()  # written pages reach the disk now, not during the query phase that follows
    files = sum(p.stat().st_size for p in (folder / "vakta" / index.base).iterdir())
    pdq_files = sum(p.stat().st_size for p in (folder / "vakta" / index.base).glob("pdq-*"))
    return {
        "build_s": seconds,
        "disk_bytes": files,
        "pdq_disk_bytes": pdq_files,
        "layout": index.pdq.segments[0].layout,
    }


def vakta_query(folder: Path) -> dict[str, Any]:
    import vakta.matching.diskindex as diskindex
    from vakta.matching.diskindex import DiskIndex

    n = len(np.load(folder / "owners.npy", mmap_mode="r"))
    queries = np.load(folder / "queries.npy")
    md5 = np.load(folder / "md5.npy", mmap_mode="r")
    hexes = [q.tobytes().hex() for q in queries]
    rss0 = _rss()
    started = time.perf_counter()
    index = DiskIndex.open(folder / "vakta")
    open_s = time.perf_counter() - started
    rss_open = _rss()
    pdq = index.pdq
    out: dict[str, Any] = {"open_s": open_s, "rss_open_per_hash": (rss_open - rss0) / n}
    # Single-hash lookups, as a scan makes them, within a time budget.
    done, found = 0, []
    started = time.perf_counter()
    while done < len(hexes) and time.perf_counter() - started < SINGLE_SECONDS:
        found += [(done, row, d) for _, row, d in pdq.search([hexes[done]], THRESHOLD)]
        done += 1
    out["single_per_s"] = done / (time.perf_counter() - started)
    out["single_queries"] = done
    out["rss_single_per_hash"] = (_rss() - rss0) / n
    best = 0.0
    for _ in range(2):  # best of two: the machine is shared
        started = time.perf_counter()
        batch = pdq.search(hexes, THRESHOLD)
        best = max(best, len(hexes) / (time.perf_counter() - started))
    out["batch_per_s"] = best
    out["rss_batch_per_hash"] = (_rss() - rss0) / n
    out["pairs"] = sorted({(q, row) for q, row, _ in batch})
    out["pairs_single"] = sorted({(q, row) for q, row, _ in found})
    # Digests: half present, half absent, batched and one by one.
    rng = np.random.default_rng(1)
    present = md5[rng.choice(len(md5), 250_000)]
    digests = [d.tobytes().hex() for d in present] + [rng.bytes(16).hex() for _ in range(250_000)]
    started = time.perf_counter()
    hits = index.digests["md5"].lookup_many(digests)
    out["digest_batch_per_s"] = len(digests) / (time.perf_counter() - started)
    out["digest_hits"] = sum(1 for h in hits if h)
    started = time.perf_counter()
    for d in digests[:50_000]:
        index.digests["md5"].lookup(d)
    out["digest_single_per_s"] = 50_000 / (time.perf_counter() - started)
    out["rss_end_per_hash"] = (_rss() - rss0) / n
    out["rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # A 10,000-hash delta: published, then visible to this (already open) reader.
    delta = np.load(folder / "delta.npy")
    started = time.perf_counter()
    diskindex.add(folder / "vakta", "list1", "pdq", delta.tobytes())
    index = index.refresh()
    seen = index.pdq.search([delta[1234].tobytes().hex()], 0)
    out["delta_visible_s"] = time.perf_counter() - started
    out["delta_found"] = bool(seen)
    # Single lookups with the delta beside the base.
    started = time.perf_counter()
    for h in hexes[:3000]:
        index.pdq.search([h], THRESHOLD)
    out["single_with_delta_per_s"] = 3000 / (time.perf_counter() - started)
    return out


def te_build(folder: Path, n: int) -> dict[str, Any]:
    import faiss
    from threatexchange.signal_type.pdq.pdq_index import PDQIndex

    faiss.omp_set_num_threads(1)
    pdq = np.load(folder / "pdq.npy", mmap_mode="r")[:n]
    owners = np.load(folder / "owners.npy", mmap_mode="r")[:n]
    rss0 = _rss()
    started = time.perf_counter()
    entries = [(h.tobytes().hex(), int(o)) for h, o in zip(pdq, owners, strict=True)]
    index = PDQIndex(entries)
    del entries
    out: dict[str, Any] = {
        "build_s": time.perf_counter() - started,
        "rss_build_per_hash": (_rss() - rss0) / n,
    }
    with open(folder / "te.pickle", "wb") as fh:
        index.serialize(fh)
    return out


def te_query(folder: Path, n: int) -> dict[str, Any]:
    import faiss
    from threatexchange.signal_type.pdq.pdq_index import PDQIndex

    faiss.omp_set_num_threads(1)
    queries = np.load(folder / "queries.npy")
    hexes = [q.tobytes().hex() for q in queries]
    rss0 = _rss()
    started = time.perf_counter()
    with open(folder / "te.pickle", "rb") as fh:
        index = PDQIndex.deserialize(fh)
    out: dict[str, Any] = {"open_s": time.perf_counter() - started, "rss_open_per_hash": (_rss() - rss0) / n}
    done = 0
    started = time.perf_counter()
    while done < len(hexes) and time.perf_counter() - started < SINGLE_SECONDS:
        index.query(hexes[done])
        done += 1
    out["single_per_s"] = done / (time.perf_counter() - started)
    out["single_queries"] = done
    started = time.perf_counter()
    batch = index.index.search_with_distance_in_result(hexes, THRESHOLD)
    out["batch_per_s"] = len(hexes) / (time.perf_counter() - started)
    out["pairs"] = sorted({(q, int(i)) for q, h in enumerate(hexes) for i, _, _ in batch[h]})
    delta = np.load(folder / "delta.npy")
    started = time.perf_counter()
    index.add_all((h.tobytes().hex(), 1) for h in delta)
    index.query(delta[1234].tobytes().hex())
    out["delta_visible_s"] = time.perf_counter() - started
    out["rss_end_per_hash"] = (_rss() - rss0) / n
    # Digests: threatexchange keeps MD5 in a dict-backed index (TrivialSignalTypeIndex).
    from threatexchange.signal_type.signal_base import TrivialSignalTypeIndex

    md5 = np.load(folder / "md5.npy", mmap_mode="r")[:n]
    digests = TrivialSignalTypeIndex[int]()
    digests.add_all((d.tobytes().hex(), 0) for d in md5)
    rng = np.random.default_rng(1)
    probe = [d.tobytes().hex() for d in md5[rng.choice(n, 25_000)]] + [
        rng.bytes(16).hex() for _ in range(25_000)
    ]
    started = time.perf_counter()
    for d in probe:
        digests.query(d)
    out["digest_single_per_s"] = len(probe) / (time.perf_counter() - started)
    return out


def truth(folder: Path, n: int) -> list[tuple[int, int]]:
    """Every (query, entry) within the threshold by exhaustive comparison (faiss's flat binary index)."""
    import faiss

    pdq = np.ascontiguousarray(np.load(folder / "pdq.npy", mmap_mode="r")[:n])
    queries = np.load(folder / "queries.npy")
    flat = faiss.IndexBinaryFlat(256)
    flat.add(pdq)
    lims, _, ids = flat.range_search(queries, THRESHOLD + 1)
    pairs = [(q, int(i)) for q in range(len(queries)) for i in ids[lims[q] : lims[q + 1]]]
    # Cross-check the flat index itself against numpy on a few queries.
    lanes = pdq.view(np.uint64)
    for q in range(0, len(queries), max(1, len(queries) // 5)):
        d = np.bitwise_count(lanes ^ queries[q : q + 1].view(np.uint64)).sum(axis=1)
        assert set(np.flatnonzero(d <= THRESHOLD).tolist()) == {i for qq, i in pairs if qq == q}
    return pairs


WORKERS = {"vakta-build", "vakta-query", "te-build", "te-query", "truth"}


def _worker(name: str, folder: Path, arg: str) -> None:
    if name == "vakta-build":
        result: Any = vakta_build(folder, arg or None)
    elif name == "vakta-query":
        result = vakta_query(folder)
    elif name == "te-build":
        result = te_build(folder, int(arg))
    elif name == "te-query":
        result = te_query(folder, int(arg))
    else:
        result = truth(folder, int(arg))
    with open(folder / f"{name}.pickle", "wb") as fh:
        pickle.dump(result, fh)


def _run(name: str, folder: Path, arg: str = "") -> Any:
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--worker", name, str(folder), arg], check=True)
    with open(folder / f"{name}.pickle", "rb") as fh:
        result = pickle.load(fh)
    print(f"  [{name} {time.perf_counter() - started:.1f} s]", file=sys.stderr)
    return result


def _recall(found: list[tuple[int, int]], expect: list[tuple[int, int]], queries: int | None = None) -> str:
    want = {p for p in expect if queries is None or p[0] < queries}
    got = {p for p in found if queries is None or p[0] < queries}
    hit = len(want & got)
    return f"{100 * hit / max(1, len(want)):.3f}% ({hit}/{len(want)} pairs, {len(got - want)} false)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("n", nargs="?", type=int, default=10_000_000)
    parser.add_argument("--baseline-n", type=int, help="entries for python-threatexchange (default: N)")
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--layout", help="PDQ words, e.g. 11x23 (default: chosen from N)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--compare-layouts",
        metavar="L,L,...",
        help="only Vakta, one build per PDQ layout (e.g. 16x16,12x21,11x23)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker[0], Path(args.worker[1]), args.worker[2])
        return
    n, te_n = args.n, args.baseline_n or args.n
    with tempfile.TemporaryDirectory(prefix="vakta-bench-index-", dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        generate(n, args.queries, folder)
        print(
            f"  [generated {n:,} PDQ + {n:,} MD5 in {time.perf_counter() - started:.1f} s]", file=sys.stderr
        )
        load = os.getloadavg()[0]
        if args.compare_layouts:
            _compare_layouts(folder, n, args.compare_layouts.split(","))
            return
        build = _run("vakta-build", folder, args.layout or "")
        query = _run("vakta-query", folder)
        expect = _run("truth", folder, str(n))
        te: dict[str, Any] = {}
        te_expect = expect
        if not args.no_baseline:
            te = _run("te-build", folder, str(te_n)) | _run("te-query", folder, str(te_n))
            if te_n != n:
                te_expect = _run("truth", folder, str(te_n))
        result = {
            "n": n,
            "baseline_n": te_n if te else None,
            "load_before": load,
            "vakta": build | query,
            "te": te,
        }
        result["vakta"]["recall"] = _recall(query["pairs"], expect)
        result["vakta"]["recall_single"] = _recall(query["pairs_single"], expect, query["single_queries"])
        if te:
            result["te"]["recall"] = _recall(te["pairs"], te_expect)
        for side in ("vakta", "te"):
            result[side].pop("pairs", None)
            result[side].pop("pairs_single", None)
        result["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(result, indent=1, default=str))
        return
    _report(result)


def _compare_layouts(folder: Path, n: int, layouts: list[str]) -> None:
    print(f"N = {n:,}; load average {os.getloadavg()[0]:.2f}")
    print(
        f"{'layout':>8}{'build s':>9}{'PDQ B/hash':>12}{'single/s':>10}{'batch/s':>10}{'resident B/hash':>17}"
    )
    for layout in layouts:
        build = _run("vakta-build", folder, layout)
        query = _run("vakta-query", folder)
        print(
            f"{layout:>8}{build['build_s']:>9.1f}{build['pdq_disk_bytes'] / n:>12.1f}{query['single_per_s']:>10,.0f}"
            f"{query['batch_per_s']:>10,.0f}{query['rss_batch_per_hash']:>17.1f}",
            flush=True,
        )
        shutil.rmtree(folder / "vakta")


def _report(r: dict[str, Any]) -> None:
    v, te = r["vakta"], r["te"]
    print(f"N = {r['n']:,} PDQ + {r['n']:,} MD5; python-threatexchange at N = {r['baseline_n'] or 0:,}")
    print(f"load average before/after: {r['load_before']:.2f} / {r['load_after']:.2f} (2 cores)")
    print(
        f"PDQ layout {len(v['layout'])} words x {v['layout'][0]} bits; index on disk {v['disk_bytes'] / r['n']:.1f} B/hash "
        f"(PDQ part {v['pdq_disk_bytes'] / r['n']:.1f} B/PDQ hash)"
    )
    rows = [
        ("build (s)", v["build_s"], te.get("build_s"), False),
        ("open (s)", v["open_s"], te.get("open_s"), False),
        ("resident after open (B/hash)", v["rss_open_per_hash"], te.get("rss_open_per_hash"), False),
        ("resident after single lookups (B/hash)", v["rss_single_per_hash"], None, False),
        ("resident after batch (B/hash)", v["rss_batch_per_hash"], te.get("rss_end_per_hash"), False),
        ("single-hash PDQ lookups/s", v["single_per_s"], te.get("single_per_s"), True),
        ("  same, 10k delta beside the base", v["single_with_delta_per_s"], None, True),
        ("batched PDQ lookups/s", v["batch_per_s"], te.get("batch_per_s"), True),
        ("10,000-hash delta visible (s)", v["delta_visible_s"], te.get("delta_visible_s"), False),
        ("MD5 lookups/s, batched", v["digest_batch_per_s"], None, True),
        ("MD5 lookups/s, one by one", v["digest_single_per_s"], te.get("digest_single_per_s"), True),
    ]
    print(f"{'':42}{'vakta':>14}{'threatexchange':>16}{'ratio':>9}")
    for label, mine, theirs, higher in rows:
        ratio = ""
        if theirs:
            ratio = f"{(mine / theirs if higher else theirs / mine):.1f}x"
        their_text = f"{theirs:,.3f}" if theirs is not None else "-"
        print(f"{label:42}{mine:>14,.3f}{their_text:>16}{ratio:>9}")
    print(f"recall vs brute force, batch ({r['n']:,}): vakta {v['recall']}")
    print(f"recall, single lookups made ({v['single_queries']:,} queries): vakta {v['recall_single']}")
    if te:
        print(f"recall vs brute force ({r['baseline_n']:,}): threatexchange {te['recall']}")
    print(
        f"delta found after publication: {v['delta_found']}; MD5 hits {v['digest_hits']:,}/500,000 (250,000 expected)"
    )
    print(
        "(ratio: how many times better Vakta is; resident = RSS growth of the process, file-backed pages included)"
    )


if __name__ == "__main__":
    main()
