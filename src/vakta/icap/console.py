"""ICAP alerts to the Vakta console, as an enrolled agent would send them (storage kind ``network``).

The ICAP service enrols like an endpoint agent (``vakta agent enroll --server
URL --token T`` in its home) and reports through the same offline-first path:
each alert is committed to an on-disk queue of its own before anything else
and delivered in batches with retries (:class:`~vakta.reporting.delivery.Delivery`),
so a console that is down, or a restart, loses nothing. The console names the
host after the enrolled identity (the proxy); the person is the proxy's
authenticated user, or else the client's address.
"""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from vakta.notify import Alert
from vakta.reporting import client
from vakta.reporting.delivery import Delivery
from vakta.reporting.identity import Identity, agent_folder
from vakta.reporting.queue import AlertQueue

#: The queue beside an endpoint agent's in the same home: two processes never share one.
QUEUE_FILE = "icap-queue.sqlite"
#: What a URL alert's type becomes at the console, which takes media types only.
URL_TYPE = "text/uri-list"
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9.+-]{1,60}/[A-Za-z0-9.+-]{1,60}$")


class ConsoleReporter:
    """Queues alerts on disk and delivers them to the console on a thread of its own."""

    def __init__(self, home: Path, identity: Identity) -> None:
        self.queue = AlertQueue(agent_folder(home) / QUEUE_FILE)
        self._stop = threading.Event()
        self.delivery = Delivery(self.queue, identity, self._stop)
        self._thread = threading.Thread(target=self.delivery.loop, name="vakta-icap-console", daemon=True)
        self._thread.start()

    def put(self, alert: Alert) -> None:
        body = console_body(alert)
        if self.queue.put(body["idempotency_key"], body):
            self.delivery.wake()

    def close(self, timeout: float = 10.0) -> None:
        """Stop delivering (what is left stays queued for the next start)."""
        self._stop.set()
        self.delivery.wake()
        self._thread.join(timeout)
        self.queue.close()


def console_body(alert: Alert) -> dict[str, Any]:
    """The alert as the console takes it, keyed on the alert's id: the person is the proxy user or the client."""
    kind = URL_TYPE if alert.type == "url" else alert.type
    person = replace(
        alert, user=alert.user or alert.host, type=kind if kind and _MEDIA_TYPE.match(kind) else None
    )
    matches = [
        {**m.to_dict(), "entry_id": m.entry_id or "(no id)", "transform": None, "variant": None}
        for m in alert.matches
    ]
    return client.alert_body(person, f"icap:{alert.id}", matches)
