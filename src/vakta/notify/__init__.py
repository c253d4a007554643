"""Alert notifiers: tell a SIEM, a web service or people, as each match is found.

An :class:`Alert` is what a match becomes on its way out: hashes, size, the
location chain, the list entries it matched and where the file was (host,
owner, storage kind), never any content.  Each notifier delivers alerts to one
kind of receiver (syslog with CEF, webhook, e-mail) and is picked by the
scheme of its URL; a third-party notifier registers through the
``vakta.notifiers`` entry-point group, as the built-ins do.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from vakta import __version__, testsignature
from vakta.findings import Finding
from vakta.registry import Registry

log = logging.getLogger(__name__)

#: The ``version`` of the alert's JSON form; raised when a field changes meaning.
ALERT_SCHEMA = 1


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True, slots=True)
class AlertMatch:
    """One list entry a file matched, with its provenance."""

    list: str
    entry_id: str | None
    category: str | None
    signal: str
    distance: int
    list_format: str
    imported_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "list": self.list,
            "entry_id": self.entry_id,
            "category": self.category,
            "signal": self.signal,
            "distance": self.distance,
            "list_format": self.list_format,
            "imported_at": self.imported_at,
        }


@dataclass(frozen=True, slots=True)
class Alert:
    """A match as it leaves the machine: hashes, size, location and list provenance, never content."""

    host: str
    user: str | None
    storage: str
    path: str
    matches: tuple[AlertMatch, ...]
    size: int | None = None
    type: str | None = None
    md5: str | None = None
    sha1: str | None = None
    sha256: str | None = None
    pdq: str | None = None
    inside: tuple[str, ...] = ()
    parent_md5: str | None = None
    deleted: bool = False
    path_b64: str | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: Unique per alert and kept across retries, so a receiver can drop duplicates.
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: Set by the console's forwarding: the incident holding the alert, and its page in the console.
    incident_id: int | None = None
    url: str | None = None

    @classmethod
    def from_finding(
        cls, finding: Finding, *, host: str, user: str | None, storage: str, time: datetime | None = None
    ) -> Alert:
        s = finding.signals
        matches = tuple(
            AlertMatch(
                m.meta.list_name,
                m.meta.entry_id,
                m.meta.category,
                m.signal,
                m.distance,
                m.meta.source_format,
                m.meta.imported_at,
            )
            for m in finding.matches
        )
        return cls(
            host, user, storage, s.path, matches, s.size, s.type, s.md5, s.sha1, s.sha256, s.pdq,
            tuple(s.inside), s.parent_md5, s.deleted, s.path_b64, time or datetime.now(UTC),
        )  # fmt: skip

    @property
    def test(self) -> bool:
        """Only the built-in test signature matched: proof the integration works, not an incident."""
        return bool(self.matches) and all(m.list == testsignature.LIST_NAME for m in self.matches)

    def entries(self) -> dict[tuple[str, str | None, str | None], list[AlertMatch]]:
        """Matches grouped by list entry (list, entry id, category): one entry is often matched by
        several signals at once (MD5, SHA-1, SHA-256, PDQ)."""
        grouped: dict[tuple[str, str | None, str | None], list[AlertMatch]] = {}
        for m in self.matches:
            grouped.setdefault((m.list, m.entry_id, m.category), []).append(m)
        return grouped

    @property
    def location(self) -> str:
        """The full chain, e.g. ``disk.E01 > partition 2 (NTFS) > /a.zip > b.jpg``."""
        return " > ".join([self.path, *self.inside])

    @property
    def name(self) -> str:
        """The last name in the chain: the matched file's own name."""
        last = self.inside[-1] if self.inside else self.path
        return last.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or last

    def to_dict(self) -> dict[str, Any]:
        """The alert's JSON form (webhooks; the console takes the same)."""
        out: dict[str, Any] = {
            "version": ALERT_SCHEMA,
            "id": self.id,
            "time": self.time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "test": self.test,
            "host": self.host,
            "user": self.user,
            "storage": self.storage,
            "path": self.path,
            "location": self.location,
            "inside": list(self.inside),
            "parent_md5": self.parent_md5,
            "deleted": self.deleted,
        }
        if self.path_b64:
            out["path_b64"] = self.path_b64
        for key in ("size", "type", "md5", "sha1", "sha256", "pdq"):
            out[key] = getattr(self, key)
        out["matches"] = [m.to_dict() for m in self.matches]
        if self.incident_id is not None:
            out["incident"] = self.incident_id
        if self.url is not None:
            out["url"] = self.url
        out["tool"] = f"vakta {__version__}"
        return out


@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """A console incident changed state (escalated, closed with a resolution...): who, when, never content."""

    id: str
    time: datetime
    incident_id: int
    host: str
    user: str | None
    test: bool
    state: str
    previous: str | None
    resolution: str | None
    actor: str
    url: str | None = None

    @property
    def event(self) -> str:
        """The event's kind, e.g. ``incident.escalated`` (the CEF class id and syslog MSGID say the same)."""
        return f"incident.{self.state}"

    def to_dict(self) -> dict[str, Any]:
        """The event's JSON form (webhooks); ``event`` tells it from an alert, which has none."""
        return {
            "version": ALERT_SCHEMA,
            "event": self.event,
            "id": self.id,
            "time": self.time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "test": self.test,
            "incident": self.incident_id,
            "host": self.host,
            "user": self.user,
            "state": self.state,
            "previous_state": self.previous,
            "resolution": self.resolution,
            "actor": self.actor,
            "url": self.url,
            "tool": f"vakta {__version__}",
        }


#: What a notifier delivers: a match, or (from the console) an incident's change of state.
Event = Alert | IncidentEvent


def signature_alert(host: str | None = None, user: str | None = None) -> Alert:
    """The alert a scan sends when it finds the built-in test picture, for ``vakta alert-test``."""
    record = testsignature.records()[0]
    match = AlertMatch(
        testsignature.LIST_NAME,
        record.entry_id,
        record.category,
        "md5",
        0,
        testsignature.LIST_FORMAT,
        testsignature.LIST_DATE,
    )
    return Alert(
        host or local_host(),
        user or local_user(),
        "test",
        "vakta-test.jpg",
        (match,),
        len(testsignature.image_bytes()),
        "image/jpeg",
        md5=record.hashes.get("md5"),
        sha1=record.hashes.get("sha1"),
        sha256=record.hashes.get("sha256"),
        pdq=record.hashes.get("pdq"),
    )


def local_host() -> str:
    return socket.gethostname() or "localhost"


def local_user() -> str:
    """The account running Vakta; its uid where the system has no name for it (containers)."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


# --------------------------------------------------------------------------- errors


class NotifyError(Exception):
    """An alert (or ``alerts`` of them, for a digest) could not be delivered.

    ``kind`` is short and stable ("connection refused", "HTTP 500"), so a
    failure repeated for every alert is reported once; ``retryable`` says
    whether trying again may help.
    """

    def __init__(self, kind: str, detail: str = "", *, retryable: bool, alerts: int = 1) -> None:
        super().__init__(f"{kind}: {detail}" if detail and detail != kind else kind)
        self.kind = kind
        self.retryable = retryable
        self.alerts = alerts


def network_error(exc: BaseException, alerts: int = 1) -> NotifyError:
    """A socket, DNS or TLS failure as a :class:`NotifyError`: retryable unless it is configuration."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return NotifyError(
            "TLS certificate not trusted", exc.verify_message or str(exc), retryable=False, alerts=alerts
        )
    if isinstance(exc, ssl.SSLError):
        return NotifyError("TLS error", exc.reason or str(exc), retryable=True, alerts=alerts)
    if isinstance(exc, socket.gaierror):
        return NotifyError("host not found", str(exc), retryable=True, alerts=alerts)
    if isinstance(exc, TimeoutError | socket.timeout):
        return NotifyError("timed out", str(exc) or "no answer in time", retryable=True, alerts=alerts)
    if isinstance(exc, ConnectionRefusedError):
        return NotifyError("connection refused", str(exc), retryable=True, alerts=alerts)
    if isinstance(exc, ConnectionError):
        return NotifyError("connection lost", str(exc), retryable=True, alerts=alerts)
    if isinstance(exc, OSError):
        return NotifyError(exc.strerror or type(exc).__name__, str(exc), retryable=True, alerts=alerts)
    return NotifyError(type(exc).__name__, str(exc), retryable=False, alerts=alerts)


# --------------------------------------------------------------------------- URLs


class NotifierUrl:
    """A notifier URL, its options taken one by one so that a misspelt option is an error.

    Secrets never appear in it: ``secret-env`` / ``password-env`` name
    environment variables, and a password in the URL itself is refused,
    because URLs land in shell history, process lists and logs.
    """

    def __init__(self, url: str) -> None:
        self.raw = url
        parts = urlsplit(url)
        self.scheme = parts.scheme.lower()
        if parts.password is not None:
            raise ValueError(
                f"{self.display_of(url)}: no password in the URL; name an environment variable "
                "holding it with ?password-env=VAR (or ?secret-env=VAR for a webhook)"
            )
        try:
            self.port = parts.port
        except ValueError:
            raise ValueError(f"{self.display_of(url)}: the port is not a number") from None
        self.host = parts.hostname or ""
        self.user = unquote(parts.username) if parts.username is not None else None
        self.path = parts.path
        self.query = parts.query
        self.params = parse_qs(parts.query, keep_blank_values=True)
        self.display = self.display_of(url)

    @staticmethod
    def display_of(url: str) -> str:
        """The URL as shown in messages: no password, path or query (a webhook's path or query is
        often its token); ``/…`` marks a path left out."""
        parts = urlsplit(url)
        host = parts.netloc.rsplit("@", 1)[-1]
        user = f"{parts.username}@" if parts.username else ""
        tail = "/…" if parts.path.strip("/") else ""
        return f"{parts.scheme}://{user}{host}{tail}"

    def take(self, name: str, default: str | None = None) -> str | None:
        """An option's value (its last occurrence), removed from the options left."""
        values = self.params.pop(name, None)
        return values[-1] if values else default

    def take_all(self, name: str) -> list[str]:
        """Every value of a repeatable option, commas splitting values too."""
        return [v.strip() for value in self.params.pop(name, []) for v in value.split(",") if v.strip()]

    def take_number(self, name: str, default: float, low: float, high: float) -> float:
        text = self.take(name)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{self.display}: ?{name}= must be a number, not {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"{self.display}: ?{name}= must be between {low:g} and {high:g}")
        return value

    def take_secret(self, name: str, *, required: bool) -> str | None:
        """The secret held by the environment variable the ``name`` option names."""
        variable = self.take(name)
        if variable is None:
            if required:
                raise ValueError(
                    f"{self.display}: add ?{name}=VAR, naming an environment variable that holds the secret"
                )
            return None
        value = os.environ.get(variable)
        if not value:
            raise ValueError(f"{self.display}: environment variable {variable} (?{name}=) is not set")
        return value

    def tls_context(self) -> ssl.SSLContext:
        """Certificate checks against the system's CAs, or ``?ca=FILE``; ``?cert=`` ``&key=`` for mutual TLS."""
        ca = self.take("ca")
        cert, key = self.take("cert"), self.take("key")
        try:
            context = ssl.create_default_context(cafile=ca)
            if cert:
                context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"{self.display}: cannot load the TLS files: {exc}") from None
        if key and not cert:
            raise ValueError(f"{self.display}: ?key= needs ?cert=")
        return context

    def finish(self) -> None:
        """Refuse options nobody took: a typo must not silently change what is sent."""
        if self.params:
            names = ", ".join(sorted(self.params))
            raise ValueError(f"{self.display}: unknown option(s) {names}")

    def require_host(self) -> str:
        if not self.host:
            raise ValueError(f"{self.display}: the URL names no host")
        return self.host


# --------------------------------------------------------------------------- notifiers


class Notifier(Protocol):
    """Delivers alerts to one receiver.  Used from one thread at a time."""

    #: The URL as it may be shown: no secrets, no path.
    display: str

    def send(self, alert: Event) -> None:
        """Deliver (or, for a digest, queue) one alert or incident event, retrying per policy;
        :class:`NotifyError` if it failed."""
        ...

    def close(self) -> None:
        """Deliver what is queued and release connections; :class:`NotifyError` if queued alerts failed."""
        ...


class NotifierFactory(Protocol):
    """A kind of notifier: the URL schemes it takes and how it is made from such a URL."""

    schemes: tuple[str, ...]

    def create(self, url: NotifierUrl) -> Notifier:
        """A notifier for ``url``; ValueError naming what is wrong with the URL."""
        ...


notifiers: Registry[NotifierFactory] = Registry("notifiers")


def notifier_for(url: str) -> Notifier:
    """The notifier a URL asks for, picked by its scheme; ValueError if none takes it or it is malformed."""
    parsed = NotifierUrl(url)
    for _, factory in notifiers:
        if parsed.scheme in factory.schemes:
            return factory.create(parsed)
    known = ", ".join(sorted(f"{s}://" for _, factory in notifiers for s in factory.schemes))
    raise ValueError(f"{parsed.display}: no notifier for {parsed.scheme or 'this'}:// (known: {known})")


def send_test_alert(urls: Sequence[str]) -> list[tuple[str, str | None]]:
    """Send the test-signature alert to each URL now: (URL as shown, error or None) for each."""
    results: list[tuple[str, str | None]] = []
    alert = signature_alert()
    for url in urls:
        display = NotifierUrl.display_of(url)
        try:
            notifier = notifier_for(url)
            display = notifier.display
            _send_and_close(notifier, alert)
        except ValueError as exc:
            results.append((display, str(exc)))
        except NotifyError as exc:
            results.append((display, f"{display}: {exc}"))
        else:
            results.append((display, None))
    return results


def _send_and_close(notifier: Notifier, alert: Alert) -> None:
    """Send one alert and close; a failure to close after a failed send is logged, the send's error raised."""
    try:
        notifier.send(alert)
    except NotifyError:
        try:
            notifier.close()
        except NotifyError as exc:
            log.warning("%s: closing after a failed send: %s", notifier.display, exc)
        raise
    notifier.close()
