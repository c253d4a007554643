"""Scans spread over a Dask distributed cluster: the same pipeline, hashed on many machines.

The scan's :class:`~vakta.pipeline.Work` goes to every worker once.  Its
hash arrays come from the on-disk index and pickle as references to their
files (see ``PdqSegment.__reduce__``), so each worker memory-maps the index
from its own disk instead of receiving gigabytes over the network; the index
must sit at the same path on every worker (see docs/cluster.md).  Items are
grouped into work units of similar size, a bounded number in flight, and
results come back in completion order to this process, which keeps the list
store, resolves provenance and writes the reports as in a local scan.

A unit that fails (a worker killed by a hostile file, a lost connection) is
split and its items retried one by one, so only the culprit ends as an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vakta.cache import CachedTree
from vakta.items import Item
from vakta.pipeline import Hashed, Pending, Result, Work, default_workers, failed

if TYPE_CHECKING:
    from distributed import Client, Future

log = logging.getLogger(__name__)

#: A work unit closes at this many bytes of items...
UNIT_BYTES = 64 << 20
#: ...or at this many items, whichever comes first.
UNIT_ITEMS = 64
#: Units in flight per worker thread: enough to keep workers busy, bounded for memory.
UNITS_PER_THREAD = 4

Unit = list[tuple[Item, CachedTree | None]]


class ClusterError(RuntimeError):
    """The cluster cannot be reached or used; the message says what to check."""


def run_unit(work: Work, unit: Unit) -> list[list[Hashed]]:
    """On a worker: hash and match every item of one unit."""
    return [work(item, cached) for item, cached in unit]


def units(pending: Pending, max_bytes: int = UNIT_BYTES, max_items: int = UNIT_ITEMS) -> Iterator[Unit]:
    """Pending items grouped by size; a large file is a unit of its own."""
    unit: Unit = []
    size = 0
    for entry in pending:
        item = entry[0]
        if unit and (size + item.size > max_bytes or len(unit) >= max_items):
            yield unit
            unit, size = [], 0
        unit.append(entry)
        size += item.size
    if unit:
        yield unit


def connect(address: str) -> Client:
    """A client of the scheduler at ``address``, or of a new local cluster for ``local``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError("cluster scans need Dask: pip install 'vakta[cluster]'") from None
    try:
        if address == "local":
            cluster = LocalCluster(
                n_workers=default_workers(), threads_per_worker=1, processes=True, dashboard_address=None
            )
            return Client(cluster)
        return Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


@dataclass
class ClusterRunner:
    """Runs a scan's work on the workers of a Dask client (see :data:`vakta.pipeline.Runner`)."""

    client: Client
    unit_bytes: int = UNIT_BYTES
    unit_items: int = UNIT_ITEMS
    units_done: int = field(default=0, init=False)

    def __call__(self, work: Work, pending: Pending) -> Iterator[Result]:
        from distributed import as_completed

        shared = self.client.scatter(work, broadcast=True, hash=False)
        window = max(1, self._threads() * UNITS_PER_THREAD)
        source = units(pending, self.unit_bytes, self.unit_items)
        in_flight: dict[Future, Unit] = {}
        done = as_completed()
        for unit in source:
            self._submit(shared, unit, in_flight, done)
            if len(in_flight) >= window:
                break
        for future in done:
            unit = in_flight.pop(future)
            yield from self._collect(shared, future, unit, in_flight, done)
            self.units_done += 1
            nxt = next(source, None)
            if nxt is not None:
                self._submit(shared, nxt, in_flight, done)

    def close(self) -> None:
        """Disconnect, and stop the cluster if it was started for this scan (``local``)."""
        cluster = getattr(self.client, "cluster", None)
        self.client.close()
        if cluster is not None:
            cluster.close()

    def _threads(self) -> int:
        info = self.client.scheduler_info()
        return sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values()) or 1

    def _submit(self, shared: Any, unit: Unit, in_flight: dict[Future, Unit], done: Any) -> None:
        future = self.client.submit(run_unit, shared, unit, pure=False)
        in_flight[future] = unit
        done.add(future)

    def _collect(
        self, shared: Any, future: Future, unit: Unit, in_flight: dict[Future, Unit], done: Any
    ) -> Iterator[Result]:
        try:
            trees: list[list[Hashed]] = future.result()
        except Exception as exc:
            future.release()
            yield from self._retry(shared, unit, exc, in_flight, done)
            return
        future.release()
        for (item, _), tree in zip(unit, trees, strict=True):
            yield item, tree

    def _retry(
        self, shared: Any, unit: Unit, exc: Exception, in_flight: dict[Future, Unit], done: Any
    ) -> Iterator[Result]:
        if len(unit) > 1:
            log.warning("a work unit of %d items failed (%s); retrying them one by one", len(unit), exc)
            for entry in unit:
                self._submit(shared, [entry], in_flight, done)
            return
        item = unit[0][0]
        name = type(exc).__name__
        message = "a cluster worker died on this item" if name == "KilledWorker" else f"{name}: {exc}"
        yield item, [(failed(item, f"hashing failed: {message}"), [])]
