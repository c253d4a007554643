"""Delivery of queued alerts to the console: batches, retries with backoff, invalid alerts set aside.

Shared by everything that reports to a console as an enrolled agent (the
endpoint agent, the ICAP service): an alert is committed to the on-disk
:class:`~vakta.reporting.queue.AlertQueue` first, and leaves it only once the
console answered that the batch is stored; the console's idempotency keys
make a batch sent twice (a crash after sending, before forgetting) harmless.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

from vakta.reporting import client
from vakta.reporting.identity import Identity
from vakta.reporting.queue import AlertQueue

log = logging.getLogger(__name__)

#: Alerts sent in one request (the console takes up to 500).
MAX_BATCH = 500


def backoff(failures: int, first: float, most: float) -> float:
    """Seconds before the next try after ``failures`` failures in a row: doubling, jittered, capped."""
    return float(min(first * 2 ** (failures - 1), most) * random.uniform(0.8, 1.2))


class Delivery:
    """Drains ``queue`` to the console of ``identity`` until ``stop`` is set; :meth:`wake` on a new alert."""

    def __init__(
        self,
        queue: AlertQueue,
        identity: Identity,
        stop: threading.Event,
        first_backoff: float = 1.0,
        max_backoff: float = 300.0,
    ) -> None:
        self.queue = queue
        self.identity = identity
        self.stop = stop
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def loop(self) -> None:
        failures = 0
        while not self.stop.is_set():
            batch = self.queue.batch(MAX_BATCH)
            if not batch:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                self.deliver(batch)
            except client.ConsoleError as exc:
                failures += 1
                pause = backoff(failures, self.first_backoff, self.max_backoff)
                level = logging.INFO if exc.retryable else logging.ERROR
                log.log(level, "delivery of %d alerts failed (%s); again in %.1f s", len(batch), exc, pause)
                self.stop.wait(pause)
            else:
                failures = 0

    def deliver(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        """Send one batch; forget it once the console committed it. ConsoleError: retry later."""
        keys = [k for k, _ in batch]
        self.queue.attempted(keys)
        try:
            answer = client.request(
                self.identity.server, "/alerts", {"alerts": [b for _, b in batch]}, self.identity.secret
            )
        except client.ConsoleError as exc:
            if exc.status in (413, 422):
                self._deliver_singly(batch, exc)
                return
            raise
        self.queue.delivered(keys)
        log.info("delivered %d alerts (%s new)", len(keys), answer.get("new"))

    def _deliver_singly(self, batch: list[tuple[str, dict[str, Any]]], exc: client.ConsoleError) -> None:
        """The console refused the batch as invalid: find the alert(s) at fault and set them aside."""
        if len(batch) == 1:
            key = batch[0][0]
            log.error("the console refused alert %s: %s; kept aside in the queue", key, exc)
            self.queue.refuse(key, str(exc))
            return
        for item in batch:
            self.deliver([item])
