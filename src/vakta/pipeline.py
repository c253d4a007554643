"""The scan pipeline: sources -> items -> hashers -> signals -> matcher -> findings.

Hashing and the search for hits run in worker processes (both are CPU-bound
and the GIL would serialise them); the hash arrays reach the workers once,
shared after fork.  This process keeps the list store: it turns hits into
matches with their provenance, keeps the cache and writes the findings.
Every item ends as exactly one finding, whatever goes wrong with it: a
crashed worker, a vanished file or a hostile image is an error on that item.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from vakta.cache import CachedTree, CacheKey, SignalCache
from vakta.containers import Limits, reader_for, readers_fingerprint
from vakta.containers.expand import Expansion, member_signals
from vakta.containers.shard import Shard, shardable
from vakta.findings import Finding
from vakta.items import Item, ItemChangedError
from vakta.matching.knowngood import KnownGood
from vakta.matching.matcher import Hit, HitFinder, Matcher
from vakta.signals.compute import compute_signals, compute_signals_of_bytes
from vakta.signals.model import HashOptions, Signals
from vakta.signals.sniff import SNIFF_BYTES, content_type
from vakta.sources import source_for
from vakta.stats import ScanStats

log = logging.getLogger(__name__)


def hash_item(item: Item, options: HashOptions, known_good: KnownGood | None = None) -> Signals:
    """Read and hash one item; every failure is recorded on the returned signals."""
    path, path_b64 = item.display
    signals = Signals(path=path, path_b64=path_b64)
    if item.error or item.skip:
        signals.errors += [item.error] if item.error else []
        signals.skipped = item.skip
        return signals
    try:
        if item.data is not None:
            compute_signals_of_bytes(item.data, signals, options, known_good)
            return signals
        with item.open() as stream:
            compute_signals(stream, signals, options, known_good)
            if item.ino and item.changed_since_listing(stream):
                signals.errors.append("file changed while it was being read")
    except ItemChangedError as exc:
        signals.errors.append(str(exc))
    except OSError as exc:
        signals.errors.append(f"cannot read: {exc.strerror or exc}")
    except Exception as exc:  # never let one item end the scan
        log.exception("unexpected failure on %s", path)
        signals.errors.append(f"unexpected failure: {type(exc).__name__}: {exc}")
    return signals


def hash_tree(
    item: Item, options: HashOptions, known_good: KnownGood | None = None, limits: Limits | None = None
) -> list[Signals]:
    """The item's signals, then (unless ``limits`` is None) those of every member inside it."""
    if limits is not None and known_good is None and item.size >= OVERLAP_CONTAINER_BYTES:
        kind = _sniffed_type(item)
        if reader_for(kind) is not None:
            return _hash_container_overlapped(item, kind, options, limits)
    return _with_members(hash_item(item, options, known_good), item, options, known_good, limits)


def _with_members(
    signals: Signals, item: Item, options: HashOptions, known_good: KnownGood | None, limits: Limits | None
) -> list[Signals]:
    """``signals`` (the item's own, hashed or cached), then those of every member when it is a container to open."""
    if limits is None or signals.skipped or signals.md5 is None or reader_for(signals.type) is None:
        return [signals]
    expansion = Expansion.start(options, known_good, limits)
    return [signals, *member_signals(signals, item.open, expansion)]


#: A container at least this large is digested on its own thread while its members are hashed.
OVERLAP_CONTAINER_BYTES = 64 << 20


#: A container at least this large is split between the worker processes when its reader allows.
SHARD_BYTES = 256 << 20
#: Shares per worker: more than one lets the pool even out shares that turn out uneven (and the
#: container's own digests, one more task), at the price of one more listing each. On the
#: 2.4 GB bench image with 2 workers, 2/3/4 shares each took 39.7/39.3/35.6 s for the default
#: scan (pictures cluster, so small shares balance better) and 15.7/15.6/16.5 s for the
#: eight rotations only (each listing costs).
SHARES_PER_WORKER = 4


def _sniffed_type(item: Item) -> str | None:
    try:
        with item.open() as stream:
            return content_type(stream.read(SNIFF_BYTES))
    except OSError:
        return None  # hash_item reports it


def _hash_container_overlapped(
    item: Item, kind: str | None, options: HashOptions, limits: Limits
) -> list[Signals]:
    """A large container (a disk image) digested beside the hashing of its members: one pass less to wait for.

    The container's own digests are known only at the end, so its members'
    ``parent_md5`` is filled in then; no known-good check is involved (the
    caller sends known-good scans the plain way).
    """
    path, path_b64 = item.display
    listing = Signals(path=path, path_b64=path_b64, type=kind)
    with ThreadPoolExecutor(1, thread_name_prefix="vakta-container-digest") as pool:
        whole = pool.submit(hash_item, item, options)
        members = member_signals(listing, item.open, Expansion.start(options, None, limits))
        signals = whole.result()
    signals.errors += listing.errors
    for member in members:
        if len(member.inside) == 1:
            member.parent_md5 = signals.md5
    return [signals, *members]


#: Signals with the list entries they hit.
Hashed = tuple[Signals, list[Hit]]


@dataclass(frozen=True)
class Work:
    """What a worker needs: how to hash, what is known-good, the hash arrays, container limits."""

    options: HashOptions
    known_good: KnownGood | None
    finder: HitFinder
    #: None: containers are hashed as files, never opened.
    limits: Limits | None = None

    def __call__(self, item: Item, cached: CachedTree | None) -> list[Hashed]:
        """Signals (hashed, or from the cache) and the entries they hit: the item first, then its members."""
        if cached is None:
            tree = hash_tree(item, self.options, self.known_good, self.limits)
        else:
            # The known-good lists may have changed since: what is cached is checked again.
            for signals in [cached.signals, *(cached.members or ())]:
                self._check_known_good(signals)
            if cached.members is None or cached.signals.skipped:
                # Members not kept, or found by other readers (see Scanner._with_cached): looked for again.
                tree = _with_members(cached.signals, item, self.options, self.known_good, self.limits)
            else:
                tree = [cached.signals, *cached.members]
        return [self._found(s) for s in tree]

    def _check_known_good(self, signals: Signals) -> None:
        name = self.known_good(signals) if self.known_good else None
        if name is not None:
            signals.skipped = f"on known-good list {name!r}"
            signals.pdq_queries = []

    def _found(self, signals: Signals) -> Hashed:
        """Signals with the entries they hit (none for what was skipped)."""
        return signals, [] if signals.skipped else self.finder.find(signals)

    def digest(self, item: Item) -> Hashed:
        """The item alone (a split container's own digests), with what it hits."""
        return self._found(hash_item(item, self.options, self.known_good))

    def shard(self, item: Item, kind: str, index: int, count: int) -> ShardResult:
        """One share of a split container's members (see :mod:`vakta.containers.shard`)."""
        assert self.limits is not None, "only containers that are opened are split"
        path, path_b64 = item.display
        listing = Signals(path=path, path_b64=path_b64, type=kind)
        shard = Shard(index, count)
        expansion = Expansion.start(self.options, self.known_good, self.limits)
        groups = _top_level_groups(member_signals(listing, item.open, expansion, shard))
        if len(groups) != len(shard.positions):
            raise RuntimeError(f"{len(groups)} member groups for {len(shard.positions)} members")
        found = [[self._found(s) for s in group] for group in groups]
        return ShardResult(listing.errors, list(zip(shard.positions, found, strict=True)))


@dataclass(frozen=True)
class ShardResult:
    """What one process found in its share of a split container."""

    #: Errors on the container itself (its listing), the same in every share.
    errors: list[str]
    #: Each top-level member's listing position, with its signals and those inside it.
    groups: list[tuple[int, list[Hashed]]]


def _top_level_groups(members: list[Signals]) -> list[list[Signals]]:
    """Depth-first member signals cut into one group per top-level member."""
    groups: list[list[Signals]] = []
    for signals in members:
        if len(signals.inside) == 1 or not groups:
            groups.append([])
        groups[-1].append(signals)
    return groups


def merge_shards(digest: Hashed, shards: list[ShardResult]) -> list[Hashed]:
    """A split container's tree as one process would have made it: itself, then members in listing order."""
    signals, _ = digest
    for error in (e for shard in shards for e in shard.errors):
        if error not in signals.errors:
            signals.errors.append(error)
    if signals.skipped:  # a known-good container is not opened
        return [digest]
    groups = sorted((g for shard in shards for g in shard.groups), key=lambda g: g[0])
    tree = [digest]
    for _, group in groups:
        group[0][0].parent_md5 = signals.md5
        tree += group
    return tree


# Worker-process state, set once by the pool initializer.
_worker: Work | None = None


def _init_worker(work: Work) -> None:
    global _worker
    _worker = work


def _in_worker(item: Item, cached: CachedTree | None) -> list[Hashed]:
    assert _worker is not None, "worker used before its initializer ran"
    return _worker(item, cached)


def _digest_in_worker(item: Item) -> Hashed:
    assert _worker is not None, "worker used before its initializer ran"
    return _worker.digest(item)


def _shard_in_worker(item: Item, kind: str, index: int, count: int) -> ShardResult:
    assert _worker is not None, "worker used before its initializer ran"
    return _worker.shard(item, kind, index, count)


#: An item with the signals and hits of it and its members.
Result = tuple[Item, list[Hashed]]
#: Items (with cached signals, if any) waiting to be hashed.
Pending = Iterator[tuple[Item, CachedTree | None]]
#: Runs :class:`Work` over pending items somewhere else (a cluster), yielding results as they come.
Runner = Callable[[Work, Pending], Iterator[Result]]


def _worth_keeping(item: Item, signals: Signals, renew: set[CacheKey]) -> bool:
    """New signals, or a cached container's whose members were looked for again."""
    if not signals.cached:
        return True
    if item.cache_key in renew:
        renew.discard(item.cache_key)
        return True
    return False


@dataclass
class Scanner:
    """Scans targets and yields one finding per item, in completion order."""

    matcher: Matcher
    options: HashOptions = field(default_factory=HashOptions)
    known_good: KnownGood | None = None
    cache: SignalCache | None = None
    workers: int = 1
    follow_symlinks: bool = False
    #: Container limits; None scans archives, documents and disk images as plain files.
    limits: Limits | None = field(default_factory=Limits)
    stats: ScanStats = field(default_factory=ScanStats)
    discovered: int = 0
    #: Where hashing runs: None for this machine (``workers`` processes), else e.g. a Dask cluster.
    runner: Runner | None = None
    #: Containers at least this large, of a reader that allows it, are split between the workers.
    shard_bytes: int = SHARD_BYTES
    #: Containers split so far.
    split: int = 0

    def items(self, targets: Iterable[str]) -> Iterator[Item]:
        for target in targets:
            for item in source_for(target).items(target, self.follow_symlinks):
                self.discovered += 1
                yield item

    def scan(self, targets: Iterable[str]) -> Iterator[Finding]:
        self.stats = ScanStats()
        work = Work(self.options, self.known_good, self.matcher.finder, self.limits)
        # Containers whose cache entry has no members, or members other readers found: they are
        # opened again, and their entry is rewritten with the members found now.
        renew: set[CacheKey] = set()
        readers = readers_fingerprint()
        pending = self._with_cached(self.items(targets), renew, readers)
        if self.runner is not None:
            results = self.runner(work, pending)
        elif self.workers > 1:
            results = self._parallel(work, pending)
        else:
            results = self._serial(work, pending)
        for item, tree in results:
            signals = tree[0][0]
            if self.cache and item.cacheable and _worth_keeping(item, signals, renew):
                self.cache.put(item.cache_key, signals, self._members_to_keep(signals, tree), readers)
            for member_signals_, hits in tree:
                finding = Finding(member_signals_, self.matcher.resolve(hits))
                self.stats.add(finding)
                yield finding
        if self.cache:
            self.cache.flush()

    def _members_to_keep(self, signals: Signals, tree: list[Hashed]) -> list[Signals] | None:
        """The members to cache with a container (perhaps none); None for a file, or when they were not looked for."""
        if not self._opens(signals):
            return None
        return [member for member, _ in tree[1:]]

    def _opens(self, signals: Signals) -> bool:
        """Whether this scan opens a file of this type as a container."""
        return self.limits is not None and reader_for(signals.type) is not None

    def _with_cached(self, items: Iterator[Item], renew: set[CacheKey], readers: str) -> Pending:
        for item in items:
            cached = None
            if self.cache and item.cacheable:
                cached = self.cache.get(item.cache_key)
                if cached is not None:
                    for signals in [cached.signals, *(cached.members or ())]:
                        signals.path, signals.path_b64 = item.display
                    if self._opens(cached.signals) and (cached.members is None or cached.readers != readers):
                        cached.members = None  # looked for again, by the readers of now
                        renew.add(item.cache_key)
            yield item, cached

    def _serial(self, work: Work, pending: Pending) -> Iterator[Result]:
        for item, cached in pending:
            yield item, work(item, cached)

    def _parallel(self, work: Work, pending: Pending) -> Iterator[Result]:
        window = self.workers * 8
        in_flight: dict[Future[Any], Item | _Split] = {}
        pool = self._new_pool(work)
        try:
            exhausted = False
            while in_flight or not exhausted:
                # An item refused because the pool broke after the last wait (a worker died on
                # an item whose future has not said so yet): it is retried with the suspects.
                refused: list[Item] = []
                while not exhausted and len(in_flight) < window:
                    nxt = next(pending, None)
                    if nxt is None:
                        exhausted = True
                        break
                    item, cached = nxt
                    if item.error or item.skip:
                        yield item, work(item, None)
                        continue
                    kind = self._split_kind(item, cached)
                    try:
                        if kind is None:
                            in_flight[pool.submit(_in_worker, item, cached)] = item
                        else:
                            in_flight.update(
                                dict.fromkeys(self._submit_split(pool, item, kind), _Split(item))
                            )
                    except BrokenProcessPool:
                        refused.append(item)
                        break
                if not in_flight and not refused:
                    continue
                done = wait(in_flight, return_when=FIRST_COMPLETED)[0] if in_flight else set()
                suspects: dict[int, Item] = {id(item): item for item in refused}
                for future in done:
                    owner = in_flight.pop(future)
                    item = owner.item if isinstance(owner, _Split) else owner
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        suspects[id(item)] = item
                        continue
                    except Exception as exc:  # e.g. an unpicklable result: this item only
                        if isinstance(owner, _Split):
                            owner.failed = f"{type(exc).__name__}: {exc}"
                            result = None
                        else:
                            yield item, [(failed(item, f"hashing failed: {type(exc).__name__}: {exc}"), [])]
                            continue
                    if not isinstance(owner, _Split):
                        yield item, result
                    elif owner.add(result, in_flight):
                        if owner.failed is None:
                            yield item, owner.merged()
                        else:
                            log.warning(
                                "%s: split hashing failed (%s); hashed whole", item.display[0], owner.failed
                            )
                            tree, pool = self._isolated(work, pool, item)
                            yield item, tree
                if suspects:
                    # One item killed its worker and the pool with it: retry every
                    # item that was in flight alone, so only the culprit fails.
                    for owner in in_flight.values():
                        other = owner.item if isinstance(owner, _Split) else owner
                        suspects[id(other)] = other
                    in_flight.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = self._new_pool(work)
                    for item in suspects.values():
                        tree, pool = self._isolated(work, pool, item)
                        yield item, tree
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _split_kind(self, item: Item, cached: CachedTree | None) -> str | None:
        """The sniffed type of a container to split between the workers, or None to hash it whole.

        On 2 cores a 2.4 GB image took 38.7-39.3 s split and 43.5-45.4 s whole
        (PDQ's query variants are mostly Python, which threads cannot spread);
        with the eight rotations only, 18.7 s split and 17.3-17.8 s whole.
        """
        if self.limits is None or cached is not None or item.size < self.shard_bytes:
            return None
        kind = _sniffed_type(item)
        return kind if shardable(reader_for(kind)) else None

    def _submit_split(self, pool: ProcessPoolExecutor, item: Item, kind: str) -> list[Future[Any]]:
        """The container's own digests, and :data:`SHARES_PER_WORKER` shares of its members per worker."""
        self.split += 1
        count = SHARES_PER_WORKER * self.workers
        log.info("%s: split into %d shares for %d worker processes", item.display[0], count, self.workers)
        # The digests first: one long sequential task, which the shares then even out around
        # (queued last, it ran alone at the end while the other workers waited).
        digest = pool.submit(_digest_in_worker, item)
        return [digest, *(pool.submit(_shard_in_worker, item, kind, i, count) for i in range(count))]

    def _isolated(
        self, work: Work, pool: ProcessPoolExecutor, item: Item
    ) -> tuple[list[Hashed], ProcessPoolExecutor]:
        try:
            return pool.submit(_in_worker, item, None).result(), pool
        except BrokenProcessPool:
            pool.shutdown(wait=False, cancel_futures=True)
            return [(_crashed(item), [])], self._new_pool(work)

    def _new_pool(self, work: Work) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, initializer=_init_worker, initargs=(work,))


@dataclass
class _Split:
    """A container whose digests and shares of members are hashed by several workers at once."""

    item: Item
    digest: Hashed | None = None
    shards: list[ShardResult] = field(default_factory=list)
    #: Why a part failed: the container is then hashed again, whole, in one worker.
    failed: str | None = None

    def add(self, result: Hashed | ShardResult | None, in_flight: dict[Future[Any], Item | _Split]) -> bool:
        """Take one part's result; True when no part is left in flight."""
        if isinstance(result, ShardResult):
            self.shards.append(result)
        elif result is not None:
            self.digest = result
        return not any(owner is self for owner in in_flight.values())

    def merged(self) -> list[Hashed]:
        assert self.digest is not None
        return merge_shards(self.digest, self.shards)


def failed(item: Item, message: str) -> Signals:
    path, path_b64 = item.display
    log.error("%s: %s", path, message)
    return Signals(path=path, path_b64=path_b64, errors=[message])


def _crashed(item: Item) -> Signals:
    return failed(item, "hashing process crashed on this item")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
