"""Sends a scan's matches to its notifiers without ever slowing or stopping the scan.

Each notifier gets its own thread and queue, so a slow or dead receiver delays
only its own alerts; a failure is reported once per kind (the first time a
receiver refuses connections, answers 500...), counted every time, and the
counts are given at the end.  What is still queued when the scan ends is sent
within ``drain_seconds``; the rest is counted as failed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from vakta.findings import Finding
from vakta.notify import Alert, Notifier, NotifyError, local_host, local_user, notifier_for
from vakta.notify.storage import StorageProbe, owner

log = logging.getLogger(__name__)

#: Alerts waiting for one notifier; past this the scan does not wait, the alert counts as failed.
QUEUE_SIZE = 10_000
DRAIN_SECONDS = 60.0

Report = Callable[[str], None]


@dataclass
class Counts:
    offered: int = 0
    failed: int = 0
    #: Alerts the notifier has taken (delivered, failed, or held for a digest).
    processed: int = 0

    @property
    def sent(self) -> int:
        return self.offered - self.failed


@dataclass
class Channel:
    """One notifier, its thread, queue and counts."""

    notifier: Notifier
    report: Report
    counts: Counts = field(default_factory=Counts)
    queue: queue.Queue[Alert | None] = field(default_factory=lambda: queue.Queue(QUEUE_SIZE))
    thread: threading.Thread | None = None
    kinds_seen: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, alert: Alert) -> None:
        if self.thread is None:
            self.thread = threading.Thread(
                target=self._run, name=f"alerts {self.notifier.display}", daemon=True
            )
            self.thread.start()
        with self.lock:
            self.counts.offered += 1
        try:
            self.queue.put_nowait(alert)
        except queue.Full:
            with self.lock:
                self.counts.processed += 1
            self._failed(NotifyError("queue full", "the receiver cannot keep up", retryable=False))

    def _run(self) -> None:
        while (alert := self.queue.get()) is not None:
            self._call(partial(self.notifier.send, alert))
            with self.lock:
                self.counts.processed += 1
        self._call(self.notifier.close)  # a digest goes out now

    def _call(self, action: Callable[[], None]) -> None:
        try:
            action()
        except NotifyError as exc:
            self._failed(exc)
        except Exception as exc:  # a notifier's bug costs its alert, never the scan
            log.exception("notifier %s failed", self.notifier.display)
            self._failed(NotifyError(type(exc).__name__, str(exc), retryable=False))

    def _failed(self, exc: NotifyError) -> None:
        with self.lock:
            self.counts.failed = min(self.counts.offered, self.counts.failed + exc.alerts)
            first = exc.kind not in self.kinds_seen
            self.kinds_seen.add(exc.kind)
        if first:
            self.report(
                f"warning: alerts to {self.notifier.display} failed: {exc} "
                "(reported once; further failures of this kind are counted)"
            )

    def finish(self, deadline: float) -> None:
        """Send what is queued until ``deadline`` (monotonic time), then close the notifier."""
        if self.thread is None:
            self._call(self.notifier.close)
            return
        self.queue.put(None)
        self.thread.join(max(0.0, deadline - time.monotonic()))
        if not self.thread.is_alive():
            return
        with self.lock:
            left = self.counts.offered - self.counts.processed
            self.counts.failed = min(self.counts.offered, self.counts.failed + left)
        self.report(f"warning: alerts to {self.notifier.display}: {left} not sent within the time limit")


class Dispatcher:
    """The alerts of one scan: every matched finding goes to every notifier, in the background."""

    def __init__(
        self,
        urls: Sequence[str],
        report: Report,
        *,
        host: str | None = None,
        probe: StorageProbe | None = None,
        drain_seconds: float = DRAIN_SECONDS,
    ) -> None:
        """ValueError for a URL no notifier takes, before anything is scanned."""
        self.channels = [Channel(notifier_for(url), report) for url in urls]
        self.report = report
        self.host = host or local_host()
        self.probe = probe if probe is not None or not urls else StorageProbe()
        self.drain_seconds = drain_seconds
        self._scanning_user: str | None = None

    def __bool__(self) -> bool:
        return bool(self.channels)

    def alert_for(self, finding: Finding) -> Alert:
        path = finding.signals.path
        if self._scanning_user is None:
            self._scanning_user = local_user()
        storage = self.probe.kind(path) if self.probe is not None else "unknown"
        return Alert.from_finding(
            finding, host=self.host, user=owner(path) or self._scanning_user, storage=storage
        )

    def finding(self, finding: Finding) -> None:
        """Queue an alert for a matched finding (others are not alerts); returns at once."""
        if not self.channels or not finding.matched:
            return
        alert = self.alert_for(finding)
        for channel in self.channels:
            channel.put(alert)

    def close(self) -> list[tuple[str, Counts]]:
        """Drain and close every notifier, report sent/failed per notifier, and return the counts."""
        deadline = time.monotonic() + self.drain_seconds
        for channel in self.channels:
            channel.finish(deadline)
        for channel in self.channels:
            c = channel.counts
            self.report(f"alerts to {channel.notifier.display}: {c.sent} sent, {c.failed} failed")
        return [(channel.notifier.display, channel.counts) for channel in self.channels]
