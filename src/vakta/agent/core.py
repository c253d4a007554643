"""The running agent: files that stop changing are scanned, matches queued on disk, then delivered.

Three loops share one :class:`AlertQueue`: scanning (this thread, fed by the
watchdog observer through the debouncer), delivery (batches to the console,
retried with exponential backoff while it is away) and heartbeats.  A fourth
polls the mount table for new volumes; a fifth runs the scheduled full scans
(:mod:`vakta.agent.schedule`) in a low-priority child process.  Nothing here ever sends or copies a
file's content: alerts carry hashes, size, path, owner and list provenance.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from queue import SimpleQueue
from typing import Any

from watchdog.observers.api import BaseObserver

from vakta import __version__, bundles
from vakta.agent import listsync
from vakta.agent.watch import (
    WATCHED_EVENTS,
    ChangeHandler,
    Debouncer,
    make_observer,
    new_mounts,
    read_mount_points,
)
from vakta.cache import SignalCache
from vakta.containers import Limits
from vakta.findings import Finding
from vakta.lists.store import DETECT, IGNORE, ListStore
from vakta.matching.loading import load_index
from vakta.matching.matcher import Match, Matcher
from vakta.notify import Alert
from vakta.notify import storage as kinds
from vakta.notify.storage import StorageProbe, owner
from vakta.pipeline import Scanner
from vakta.reporting import client
from vakta.reporting.delivery import MAX_BATCH, Delivery
from vakta.reporting.identity import QUEUE_FILE, Identity, agent_folder
from vakta.reporting.queue import AlertQueue
from vakta.signals.model import HashOptions

log = logging.getLogger(__name__)

#: The console's storage kinds for :mod:`vakta.notify.storage`'s; what it cannot place counts as internal.
CONSOLE_STORAGE = {
    kinds.INTERNAL: "internal",
    kinds.REMOVABLE: "removable",
    kinds.NETWORK: "network",
    kinds.CLOUD_SYNC: "cloud-sync",
}


@dataclass
class Settings:
    """How the agent runs; the defaults suit a laptop, the tests shorten the periods."""

    paths: list[Path]
    #: Seconds a file must go without a change before it is scanned.
    quiet: float = 2.0
    heartbeat_every: float = 60.0
    mount_poll: float = 5.0
    #: How often to ask the console for a new list bundle.
    lists_every: float = 900.0
    #: First pause after a failed delivery (doubling, with jitter, up to ``max_backoff``).
    backoff: float = 1.0
    max_backoff: float = 300.0
    #: Added to the process's niceness: scanning yields the CPU to the user's work.
    nice: int = 10
    limits: Limits = field(default_factory=Limits)
    #: Seconds between scheduled full scans of the watched paths (0: none).
    full_scan_every: float = 24 * 3600.0
    #: Share of one core the full scan may use on average (its CPU time against wall time).
    scan_cpu_percent: float = 25.0
    #: The full scan's process runs at this niceness (at least; 0 leaves the agent's).
    scan_nice: int = 19


@dataclass
class Health:
    """What heartbeats report about this agent."""

    list_version: str = ""
    #: When the last scheduled full scan finished.
    last_scan_at: datetime | None = None
    #: The full scan as heartbeats report it (``scan_progress``, see :mod:`vakta.agent.schedule`).
    scan_progress: dict[str, Any] = field(default_factory=lambda: {"state": "idle"})
    #: Files scanned as they arrived (not by full scans).
    scanned: int = 0
    #: The last bundle the console sent was refused (bad signature, damaged).
    bundle_refused: bool = False


class Agent:
    """One agent process: call :meth:`run` (blocks), :meth:`stop` from a signal handler or thread."""

    def __init__(self, home: Path, identity: Identity, settings: Settings) -> None:
        self.home = home
        self.identity = identity
        self.settings = settings
        self.queue = AlertQueue(agent_folder(home) / QUEUE_FILE)
        self.debouncer = Debouncer(settings.quiet)
        self.health = Health()
        self.probe = StorageProbe()
        self._stop = threading.Event()
        self.delivery = Delivery(self.queue, identity, self._stop, settings.backoff, settings.max_backoff)
        #: Newly mounted volumes whose contents are to be scanned.
        self._volumes: SimpleQueue[str] = SimpleQueue()
        #: Set when a new list bundle is installed: the scanning thread loads it.
        self._new_lists = threading.Event()
        #: Opened by the thread that scans (the store's SQLite connection stays in one thread).
        self._store: ListStore | None = None
        self._scanner: Scanner | None = None
        self._cache: SignalCache | None = None

    # ------------------------------------------------------------------ lists

    @property
    def scanner(self) -> Scanner:
        """A one-process scanner: the built-in test list plus the console bundle in use, else the own store."""
        if self._scanner is None:
            from vakta.agent.schedule import open_scan_cache

            # The watcher fills the full scan's cache, so tomorrow's full scan does not read
            # today's downloads again; it never waits for the cache (a full scan may be writing).
            self._cache = open_scan_cache(self.home, best_effort=True)
            self._store, self._scanner, self.health.list_version = open_lists(
                self.home, self.settings.limits, self._cache
            )
        return self._scanner

    def close(self) -> None:
        """Release the list store and the queue (from the thread that scanned)."""
        self._drop_lists()
        self.queue.close()

    def _drop_lists(self) -> None:
        """Forget the loaded lists: the next scan loads the current ones."""
        if self._store is not None:
            self._store.close()
            self._store = self._scanner = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def pull_lists(self) -> str | None:
        """Fetch the console's signed bundle; a new one replaces the lists before the next scan.

        The new version, or None when unchanged; a refused bundle is logged and
        reported in the heartbeats' list version, and the lists in use stay.
        """
        try:
            version = listsync.pull(self.home, self.identity)
        except bundles.BundleError as exc:
            log.error("hash-list bundle refused: %s", exc)
            self.health.bundle_refused = True
            return None
        self.health.bundle_refused = False
        if version is not None:
            self._new_lists.set()
            self.debouncer.wake()
        return version

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """Watch, scan, deliver and report until :meth:`stop`; queued alerts stay on disk for the next run."""
        from vakta.agent.schedule import Schedule

        _lower_priority(self.settings.nice)
        self.scanner  # noqa: B018 - lists load before watching starts, in this (the scanning) thread
        schedule = Schedule(self)
        threads = [
            threading.Thread(target=self.delivery.loop, name="vakta-delivery", daemon=True),
            threading.Thread(target=self._heartbeat_loop, name="vakta-heartbeat", daemon=True),
            threading.Thread(target=self._mount_loop, name="vakta-mounts", daemon=True),
            threading.Thread(target=self._lists_loop, name="vakta-lists", daemon=True),
            threading.Thread(target=schedule.loop, name="vakta-full-scan", daemon=True),
        ]
        with self._observing() as observer:
            self._observer = observer
            for thread in threads:
                thread.start()
            log.info("agent %s watching %s", self.identity.agent_id, ", ".join(map(str, self.settings.paths)))
            try:
                self._scan_loop()
            finally:
                self._stop.set()
                self.delivery.wake()
                for thread in threads:
                    thread.join(timeout=35)
        self.close()
        log.info("agent stopped")

    def stop(self) -> None:
        self._stop.set()
        self.delivery.wake()
        self.debouncer.wake()

    def stopped(self, timeout: float = 0.0) -> bool:
        """Whether the agent is stopping, waiting up to ``timeout`` seconds for it."""
        return self._stop.wait(timeout) if timeout > 0 else self._stop.is_set()

    @contextmanager
    def _observing(self) -> Iterator[BaseObserver]:
        observer = make_observer()
        for path in self.settings.paths:
            self.watch(observer, path)
        observer.start()
        try:
            yield observer
        finally:
            observer.stop()
            observer.join(timeout=10)

    def watch(self, observer: BaseObserver, path: Path) -> bool:
        """Start watching a folder (recursively); a missing or unwatchable one is logged and skipped."""
        if not path.is_dir():
            log.info("not watching %s: no such folder", path)
            return False
        try:
            handler = ChangeHandler(self.debouncer)
            observer.schedule(handler, str(path), recursive=True, event_filter=WATCHED_EVENTS)
        except OSError as exc:
            log.warning("cannot watch %s: %s", path, exc)
            return False
        return True

    def _scan_loop(self) -> None:
        tick = min(0.25, self.settings.quiet / 4) if self.settings.quiet > 0 else 0.05
        while not self._stop.is_set():
            self.debouncer.wait(tick)
            if self._new_lists.is_set():
                self._new_lists.clear()
                self._drop_lists()
                self.scanner  # noqa: B018 - load the new lists now, not on the next file
            while not self._volumes.empty() and not self._stop.is_set():
                self.scan(self._volumes.get())
            for path in self.debouncer.due():
                if self._stop.is_set():
                    return
                if os.path.isfile(path):
                    self._scan_or_retry(path)

    # ------------------------------------------------------------------ scanning

    def _scan_or_retry(self, path: str) -> None:
        """Scan; if the agent itself failed (e.g. its disk is full), try the file again later."""
        try:
            self.scan(path)
        except Exception:
            log.exception("%s: the scan failed; trying again", path)
            self.debouncer.touch(path)

    def scan(self, target: str) -> int:
        """Scan a file or folder now; every match is queued on disk before this returns. Alerts queued."""
        queued = 0
        for finding in self.scanner.scan([target]):
            self.health.scanned += 1
            if finding.signals.errors:
                log.info("%s: %s", finding.signals.location, "; ".join(finding.signals.errors))
            if finding.matches:
                queued += self.queue_alert(*alert_for(self.identity, self.probe, finding))
        return queued

    def queue_alert(self, key: str, body: dict[str, Any]) -> int:
        """Commit one alert to the on-disk queue (once per key) and wake delivery; 1 if it is new."""
        fresh = self.queue.put(key, body)
        lists = ", ".join(sorted({str(m.get("list")) for m in body.get("matches", [])}))
        location = " > ".join([str(body.get("path")), *map(str, body.get("inside", []))])
        log.warning("match: %s (%s)%s", location, lists, "" if fresh else " (already queued)")
        if fresh:
            self.delivery.wake()
        return int(fresh)

    # ------------------------------------------------------------------ delivery

    def deliver(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        """Send one batch now (see :class:`Delivery`)."""
        self.delivery.deliver(batch)

    # ------------------------------------------------------------------ heartbeats and mounts

    def heartbeat(self) -> dict[str, Any]:
        return client.request(
            self.identity.server, "/agents/heartbeat", self.heartbeat_body(), self.identity.secret
        )

    def heartbeat_body(self) -> dict[str, Any]:
        """Version, list version (marked when a bundle was refused), last full scan and its progress,
        alerts waiting."""
        last = self.health.last_scan_at
        return {
            "version": __version__,
            "list_version": self.health.list_version
            + (" (bundle refused)" if self.health.bundle_refused else ""),
            "last_scan_at": last.isoformat() if last else None,
            "queue_length": self.queue.pending(),
            "scan_progress": dict(self.health.scan_progress),
        }

    def flush(self) -> None:
        """Deliver what is queued and report, once (after a one-off full scan); what fails stays queued."""
        self.scanner  # noqa: B018 - the list version for the heartbeat
        try:
            while batch := self.queue.batch(MAX_BATCH):
                self.deliver(batch)
            self.heartbeat()
        except client.ConsoleError as exc:
            log.warning("console not reached (%s): alerts stay queued for the agent", exc)

    def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.heartbeat()
            except client.ConsoleError as exc:
                log.info("heartbeat failed: %s", exc)
            self._stop.wait(self.settings.heartbeat_every)

    def _lists_loop(self) -> None:
        if not self.identity.bundle_key:
            log.warning("no console key pinned: lists come from the agent's own store only")
            return
        while not self._stop.is_set():
            try:
                self.pull_lists()
            except client.ConsoleError as exc:
                log.info("list bundle not fetched: %s", exc)
            self._stop.wait(self.settings.lists_every)

    def _mount_loop(self) -> None:
        known = read_mount_points()
        while not self._stop.wait(self.settings.mount_poll):
            now = read_mount_points()
            for point in new_mounts(known, now, self.settings.paths):
                self.mounted(Path(point))
            known = now

    def mounted(self, point: Path) -> None:
        """A volume appeared: watch it and scan what it already holds (at the scanning loop's pace)."""
        log.warning("new volume at %s: watching and scanning it", point)
        self.probe = StorageProbe()  # the mount table changed
        self.watch(self._observer, point)
        self._volumes.put(str(point))
        self.debouncer.wake()


def _lower_priority(nice: int) -> None:
    if nice > 0 and hasattr(os, "nice"):
        try:
            os.nice(nice)
        except OSError as exc:
            log.info("cannot lower the priority: %s", exc)


def open_lists(
    home: Path, limits: Limits, cache: SignalCache | None = None
) -> tuple[ListStore, Scanner, str]:
    """A one-process scanner on the lists in use, its store (to close) and the list version.

    The built-in test list plus the console bundle in use, else the agent's
    own store; the watcher and the full scan both scan through this.
    """
    bundle = listsync.current(home)
    lists_home = bundle[1] if bundle else home
    store = ListStore(lists_home)
    detect, ignore = store.names(DETECT), store.names(IGNORE)
    index, known_good = load_index(lists_home, store, detect, ignore)
    version = f"bundle-{bundle[0]}" if bundle else list_version(store)
    log.info("matching against %d hashes from %d lists", len(index), len(index.list_names))
    scanner = Scanner(Matcher(index), HashOptions(), known_good or None, cache, 1, False, limits)
    return store, scanner, version


def alert_for(identity: Identity, probe: StorageProbe, finding: Finding) -> tuple[str, dict[str, Any]]:
    """A matched finding as the console takes it, with its idempotency key (same for every scan of
    one file version, whether the watcher or a full scan found it)."""
    path = finding.signals.path
    storage = CONSOLE_STORAGE.get(probe.kind(path), "internal")
    alert = Alert.from_finding(finding, host=identity.hostname, user=owner(path), storage=storage)
    key = idempotency_key(identity.agent_id, finding)
    matches = [console_match(m) for m in finding.matches]
    return key, client.alert_body(alert, key, matches, finding.signals.pdq_quality)


def list_version(store: ListStore) -> str:
    """A short fingerprint of the lists in use (names, sizes, last imports), never their content."""
    infos = [(i.name, i.purpose, sorted(i.counts.items()), i.last_import) for i in store.lists()]
    digest = hashlib.sha256(json.dumps(infos, default=str).encode()).hexdigest()[:12]
    return f"store-{digest}"


def idempotency_key(agent_id: str, finding: Finding) -> str:
    """The same per file version and location: a file scanned twice (or after a crash) is one alert."""
    s = finding.signals
    try:
        stat = os.stat(s.path)
        version = f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"
    except OSError:
        version = str(s.size)
    parts = [agent_id, s.path_b64 or s.path, *s.inside, s.sha256 or s.md5 or s.pdq or "", version]
    return "a:" + hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:40]


def console_match(match: Match) -> dict[str, Any]:
    out = match.to_dict()
    out["entry_id"] = out["entry_id"] or "(no id)"
    out.setdefault("variant", None)
    out.setdefault("video", None)
    return out
