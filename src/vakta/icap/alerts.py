"""Alerts of the ICAP service: a match seen on the wire, with who fetched it, never the content."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path

from vakta.findings import Finding
from vakta.icap.console import ConsoleReporter
from vakta.icap.urls import UrlHit
from vakta.notify import Alert, AlertMatch
from vakta.notify.dispatch import Dispatcher

log = logging.getLogger(__name__)


class AlertSink:
    """Sends each match to the console and the ``--alert`` notifiers (storage kind ``network``).

    With neither, each alert is appended to a JSONL log instead.
    """

    def __init__(
        self,
        log_path: Path | None,
        dispatcher: Dispatcher | None = None,
        console: ConsoleReporter | None = None,
    ) -> None:
        self.log_path = log_path
        self.dispatcher = dispatcher
        self.console = console
        self._lock = threading.Lock()

    def matched(self, findings: list[Finding], client: str | None, user: str | None) -> list[Alert]:
        """The alerts for the matched findings, already queued or written."""
        alerts = [
            Alert.from_finding(f, host=client or "unknown", user=user, storage="network")
            for f in findings
            if f.matched
        ]
        self._send(alerts)
        return alerts

    def url_listed(self, url: str, hits: list[UrlHit], client: str | None, user: str | None) -> Alert:
        """The alert for a request to a listed URL: the URL, the matched expression's digests, the entries."""
        matches = tuple(
            AlertMatch(h.entry.list_name, h.entry.entry_id, h.entry.category, h.entry.kind, 0,
                       h.entry.source_format, h.entry.imported_at)
            for h in hits
        )  # fmt: skip
        text = hits[0].expression.encode("utf-8")
        alert = Alert(
            client or "unknown", user, "network", url, matches, type="url",
            md5=hashlib.md5(text).hexdigest(), sha256=hashlib.sha256(text).hexdigest(),
        )  # fmt: skip
        self._send([alert])
        return alert

    def _send(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            if self.console:
                self.console.put(alert)
            if self.dispatcher:
                for channel in self.dispatcher.channels:
                    channel.put(alert)
            if not (self.console or self.dispatcher):
                self._append(alert)

    def _append(self, alert: Alert) -> None:
        if self.log_path is None:
            return
        line = json.dumps(alert.to_dict(), ensure_ascii=False) + "\n"
        try:
            with self._lock, self.log_path.open("a", encoding="utf-8") as out:
                out.write(line)
        except OSError as exc:
            log.error("cannot write the alert log %s: %s", self.log_path, exc)

    def close(self) -> None:
        if self.dispatcher:
            self.dispatcher.close()
        if self.console:
            self.console.close()
