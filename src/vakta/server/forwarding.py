"""SIEM and notification forwarding: the console's alerts and incident changes, sent on as they are recorded.

The forwarder follows the audit log (numbered without gaps in commit order)
from a cursor kept per destination in ``forward_cursors``. An
``incident.alerts`` entry names the alerts that arrived; each is sent as the
console stores it (host, user, path, storage, hashes, list entries, test
flag, incident, the incident's page), and an incident's change of state
(triage, escalated, closed with its resolution) as an incident event. The
notifiers are ``vakta.notify``'s (syslog with CEF, signed webhooks, e-mail),
so a console URL works as ``vakta scan --alert`` URLs do.

Delivery is at least once: the cursor moves only after the destination took
the whole batch; a failure keeps it, is recorded as ``last_error`` and retried
with exponential backoff. Every destination has its own thread, so one that
is down holds up no other, and none of them slows ingestion: they only read
committed entries. One forwarder per destination runs at a time, across
processes: on PostgreSQL the batch is sent while its cursor row is held with
``FOR UPDATE SKIP LOCKED`` (another process skips it and stands by); on
SQLite, which must not hold its single write lock during network I/O, an
exclusive file lock beside the database is held instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import parse_qsl, urlsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from vakta import notify
from vakta.notify import IncidentEvent, Notifier, NotifierUrl, NotifyError, notifier_for, storage
from vakta.server.audit import canonical_json
from vakta.server.db import Database, insert_missing
from vakta.server.models import Alert, AuditEntry, AuditHead, ForwardCursor, Incident, utcnow

log = logging.getLogger(__name__)

#: Environment variable holding forwarding URLs (separated by white space) when no ``--forward`` is given.
ENV = "VAKTA_SERVER_FORWARD"
#: Seconds between looks at the audit log when nothing is new.
POLL_SECONDS = 2.0
#: Audit entries read per batch (an ``incident.alerts`` entry names up to 500 alerts).
BATCH_ENTRIES = 50
#: First pause after a failed batch, doubled per failure up to the cap (+-20% jitter).
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
#: Actions whose entries may carry something to send; the rest are skipped by the cursor.
ACTIONS = ("incident.alerts", "incident.update")
#: Derives stable event ids: the same alert or change gets the same id on every retry and restart.
NAMESPACE = uuid.UUID("5f0f3c1e-7a52-4c57-9a0e-6b7a6b74612f")
#: The console's storage kinds as alerts name them (as ``vakta scan --alert`` does).
STORAGE = {
    "internal": storage.INTERNAL,
    "removable": storage.REMOVABLE,
    "network": storage.NETWORK,
    "cloud-sync": storage.CLOUD_SYNC,
}
#: Options that tune delivery without changing where it goes: left out of a destination's name.
TUNING = frozenset(
    {"timeout", "retries", "backoff", "ca", "cert", "key", "secret-env", "password-env", "starttls",
     "facility", "digest", "from"}
)  # fmt: skip
DEFAULT_PORTS = {
    "syslog+udp": 514, "syslog+tcp": 514, "syslog+tls": 6514, "smtp": 587, "smtps": 465, "https": 443,
    "http": 80,
}  # fmt: skip
MAX_ERROR = 1000


# --------------------------------------------------------------------------- destinations


def destination_name(url: str) -> str:
    """A stable id of where ``url`` sends, without credentials or tokens.

    ``scheme://host:port``, ``/…`` when there is a path, and a hash of the
    user, path and receiver options: tuning options (timeouts, retries, TLS
    files, secrets' variable names) can change without losing the cursor.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or DEFAULT_PORTS.get(scheme)
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in TUNING)
    identity = canonical_json([scheme, parts.username, host, port, parts.path.rstrip("/"), query])
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    shown_host = f"[{host}]" if ":" in host else host
    base = f"{scheme}://{shown_host[:90]}" + (f":{port}" if port else "")
    return base + ("/…" if parts.path.strip("/") else "") + f"#{digest}"


@dataclass(frozen=True)
class Destination:
    url: str
    name: str
    display: str

    @classmethod
    def parse(cls, url: str) -> Destination:
        """ValueError naming what is wrong with the URL (checked by the notifier that would send)."""
        notifier_for(url).close()
        return cls(url, destination_name(url), NotifierUrl.display_of(url))


def destinations(urls: Iterable[str]) -> list[Destination]:
    """Each URL checked once; the same destination named twice is forwarded to once."""
    found: dict[str, Destination] = {}
    for url in urls:
        destination = Destination.parse(url)
        found.setdefault(destination.name, destination)
    return list(found.values())


def urls_from_env() -> list[str]:
    return os.environ.get(ENV, "").split()


# --------------------------------------------------------------------------- events


def incident_url(public_url: str | None, incident_id: int) -> str | None:
    return f"{public_url.rstrip('/')}/ui/incidents/{incident_id}" if public_url else None


def alert_event(row: Alert, public_url: str | None) -> notify.Alert:
    """A stored alert as the notifiers send it: hashes, location, list entries; its id stable per alert."""
    matches = tuple(
        notify.AlertMatch(
            str(m.get("list", "")),
            m.get("entry_id"),
            m.get("category"),
            str(m.get("signal", "")),
            int(m.get("distance") or 0),
            str(m.get("list_format") or ""),
            str(m.get("imported_at") or ""),
        )
        for m in row.matches
    )
    return notify.Alert(
        host=row.host,
        user=row.user or None,
        storage=STORAGE.get(row.storage, row.storage),
        path=row.path,
        matches=matches,
        size=row.size,
        type=row.type,
        md5=row.md5,
        sha1=row.sha1,
        sha256=row.sha256,
        pdq=row.pdq,
        inside=tuple(str(step) for step in row.inside),
        parent_md5=row.parent_md5,
        deleted=row.deleted,
        time=row.detected_at,
        id=str(uuid.uuid5(NAMESPACE, f"alert/{row.agent_id}/{row.idempotency_key}")),
        incident_id=row.incident_id,
        url=incident_url(public_url, row.incident_id),
    )


def _incident_id(entry: AuditEntry) -> int | None:
    kind, _, number = entry.target.partition(":")
    return int(number) if kind == "incident" and number.isdigit() else None


def state_event(entry: AuditEntry, incident: Incident, public_url: str | None) -> IncidentEvent | None:
    """The incident event of an entry that changed an incident's state; None for other changes."""
    details = json.loads(entry.details)
    change = details.get("state") if isinstance(details, dict) else None
    if not isinstance(change, dict) or not change.get("to"):
        return None
    resolution = details.get("resolution")
    return IncidentEvent(
        id=str(uuid.uuid5(NAMESPACE, f"audit/{entry.hash}")),
        time=entry.at,
        incident_id=incident.id,
        host=incident.host,
        user=incident.user or None,
        test=incident.is_test,
        state=str(change["to"]),
        previous=str(change["from"]) if change.get("from") else None,
        resolution=str(resolution) if resolution else None,
        actor=entry.actor,
        url=incident_url(public_url, incident.id),
    )


def events_of(session: Session, entries: Sequence[AuditEntry], public_url: str | None) -> list[notify.Event]:
    """What the entries ask to send, in log order: each alert that arrived, each change of state."""
    events: list[notify.Event] = []
    for entry in entries:
        incident_id = _incident_id(entry)
        if incident_id is None:
            continue
        if entry.action == "incident.alerts":
            ids = [int(i) for i in json.loads(entry.details).get("alerts", [])]
            rows = session.execute(select(Alert).where(Alert.id.in_(ids)).order_by(Alert.id)).scalars()
            events += [alert_event(row, public_url) for row in rows]
            continue
        incident = session.get(Incident, incident_id)
        event = state_event(entry, incident, public_url) if incident is not None else None
        if event is not None:
            events.append(event)
    return events


@dataclass(frozen=True)
class Batch:
    """Entries after a cursor: the events to send and the cursor once they are sent."""

    events: list[notify.Event]
    next_seq: int
    #: More entries wait after this batch.
    more: bool


def read_batch(session: Session, after: int, limit: int, public_url: str | None) -> Batch:
    """The next batch: entries of interest after ``after``, up to ``limit``, and where the cursor goes.

    The head is read first: every entry up to it is committed (appends number
    in commit order), so when fewer than ``limit`` entries of interest come
    back the cursor may skip to the head, past entries with nothing to send.
    """
    head = session.execute(select(AuditHead.seq)).scalar_one()
    query = (
        select(AuditEntry)
        .where(AuditEntry.seq > after, AuditEntry.seq <= head, AuditEntry.action.in_(ACTIONS))
        .order_by(AuditEntry.seq)
        .limit(limit)
    )
    entries = list(session.execute(query).scalars())
    full = len(entries) == limit
    next_seq = entries[-1].seq if full else max(head, after)
    return Batch(events_of(session, entries, public_url), next_seq, full and next_seq < head)


# --------------------------------------------------------------------------- cursors


def ensure_cursor(db: Database, name: str) -> None:
    """A new destination starts at the beginning of the log: it gets the console's whole history."""
    with db.write() as session:
        values = {"name": name, "seq": 0, "sent": 0, "updated_at": utcnow()}
        session.execute(insert_missing(session, ForwardCursor, values, ["name"]))


def _record(cursor: ForwardCursor, batch: Batch, error: str | None) -> None:
    if error is not None:
        cursor.last_error = error[:MAX_ERROR]
        cursor.updated_at = utcnow()
        return
    if batch.next_seq == cursor.seq and cursor.last_error is None:
        return  # nothing new: no write
    cursor.seq = batch.next_seq
    cursor.sent += len(batch.events)
    cursor.last_error = None
    cursor.updated_at = utcnow()


@dataclass(frozen=True)
class Step:
    """One batch's outcome."""

    sent: int = 0
    error: str | None = None
    more: bool = False
    #: Another process forwards to this destination now; this one stands by.
    busy: bool = False


class FileLock:
    """An exclusive, non-blocking ``flock`` on a file, held until released (SQLite only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: IO[bytes] | None = None

    def acquire(self) -> bool:
        if self.handle is not None:
            return True
        try:
            import fcntl
        except ImportError:  # no flock (Windows): one forwarder per destination is up to the operator
            return True
        handle = open(self.path, "ab")  # noqa: SIM115 - held open as long as the lock is
        os.chmod(self.path, 0o600)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self.handle = handle
        return True

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing drops the flock
            self.handle = None


# --------------------------------------------------------------------------- the forwarder


class Forwarder:
    """Forwards the audit log to one destination, a batch per :meth:`step`."""

    def __init__(
        self,
        db: Database,
        destination: Destination,
        *,
        public_url: str | None = None,
        batch_entries: int = BATCH_ENTRIES,
    ) -> None:
        self.db = db
        self.destination = destination
        self.public_url = public_url
        self.batch_entries = batch_entries
        self.notifier: Notifier | None = None
        self.lock = self._file_lock() if db.dialect == "sqlite" else None
        ensure_cursor(db, destination.name)

    def _file_lock(self) -> FileLock:
        database = Path(str(self.db.url.database))
        digest = hashlib.sha256(self.destination.name.encode()).hexdigest()[:16]
        return FileLock(database.with_name(f"{database.name}.forward-{digest}.lock"))

    def step(self) -> Step:
        """Send the next batch, if any; the cursor moves only when the destination took all of it."""
        if self.lock is None:
            return self._step_row_locked()
        if not self.lock.acquire():
            return Step(busy=True)
        return self._step_file_locked()

    def _step_row_locked(self) -> Step:
        """PostgreSQL: the cursor row stays locked while the batch is sent; another process skips it."""
        with self.db.write() as session:
            query = select(ForwardCursor).where(ForwardCursor.name == self.destination.name)
            cursor = session.execute(
                query.with_for_update(skip_locked=True).execution_options(populate_existing=True)
            ).scalar_one_or_none()
            if cursor is None:
                return Step(busy=True)
            batch = read_batch(session, cursor.seq, self.batch_entries, self.public_url)
            error = self._send(batch.events)
            _record(cursor, batch, error)
        return self._outcome(batch, error)

    def _step_file_locked(self) -> Step:
        """SQLite: read, send, then a short write of the cursor (the file lock keeps others out)."""
        with self.db.read() as session:
            cursor = session.get(ForwardCursor, self.destination.name)
            seq = cursor.seq if cursor is not None else 0
            batch = read_batch(session, seq, self.batch_entries, self.public_url)
        if batch.next_seq == seq and not batch.events and (cursor is None or cursor.last_error is None):
            return Step()
        error = self._send(batch.events)
        with self.db.write() as session:
            row = session.get(ForwardCursor, self.destination.name, populate_existing=True)
            if row is None:
                row = ForwardCursor(name=self.destination.name, seq=seq, sent=0, updated_at=utcnow())
                session.add(row)
            _record(row, batch, error)
        return self._outcome(batch, error)

    @staticmethod
    def _outcome(batch: Batch, error: str | None) -> Step:
        if error is not None:
            return Step(error=error)
        return Step(sent=len(batch.events), more=batch.more)

    def _send(self, events: list[notify.Event]) -> str | None:
        """Every event, then close (a digest goes out, TLS ends cleanly); the error text if any failed."""
        if not events:
            return None
        if self.notifier is None:
            try:
                self.notifier = notifier_for(self.destination.url)
            except ValueError as exc:  # e.g. its secret's variable was unset meanwhile
                return str(exc)
        notifier = self.notifier
        try:
            for event in events:
                notifier.send(event)
            notifier.close()
        except NotifyError as exc:
            self._drop(notifier)
            return str(exc)
        except Exception as exc:  # a notifier's bug must not end forwarding
            log.exception("forwarding to %s failed", self.destination.display)
            self._drop(notifier)
            return f"{type(exc).__name__}: {exc}"
        return None

    def _drop(self, notifier: Notifier) -> None:
        """Release a failed notifier's connection; the next attempt starts afresh."""
        self.notifier = None
        try:
            notifier.close()
        except Exception as exc:  # already failing: only worth a debug line
            log.debug("closing %s after a failure: %s", self.destination.display, exc)

    def close(self) -> None:
        if self.notifier is not None:
            self._drop(self.notifier)
        if self.lock is not None:
            self.lock.release()

    def drain(self) -> Step:
        """Batches until the log is caught up or one fails (``vakta server forward --once``)."""
        total = 0
        while True:
            step = self.step()
            total += step.sent
            if step.error is not None or step.busy or not step.more:
                return Step(sent=total, error=step.error, busy=step.busy)

    def run(self, stop: threading.Event, poll: float, backoff: float, backoff_max: float) -> None:
        """Step until ``stop`` is set: at once while more waits, every ``poll`` seconds when caught up
        (or while another process forwards), with exponential backoff after failures."""
        failures = 0
        while not stop.is_set():
            step = self._guarded_step()
            if step.error is not None:
                failures += 1
                if failures == 1:
                    log.warning("forwarding to %s failed: %s (retrying)", self.destination.name, step.error)
                wait = min(backoff * 2 ** (failures - 1), backoff_max) * random.uniform(0.8, 1.2)
            else:
                if failures:
                    log.info(
                        "forwarding to %s works again after %d failures", self.destination.name, failures
                    )
                failures = 0
                wait = 0 if step.more else poll
            stop.wait(wait)
        self.close()

    def _guarded_step(self) -> Step:
        try:
            return self.step()
        except SQLAlchemyError as exc:  # the database is away: nothing sent, nothing moved
            return Step(error=f"database: {exc}".splitlines()[0])


class Forwarding:
    """Every destination's forwarder in a thread of its own (the server's, or ``vakta server forward``)."""

    def __init__(
        self,
        db: Database,
        targets: Sequence[Destination],
        *,
        public_url: str | None = None,
        poll: float = POLL_SECONDS,
        backoff: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self.forwarders = [Forwarder(db, d, public_url=public_url) for d in targets]
        self.poll, self.backoff, self.backoff_max = poll, backoff, backoff_max
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for forwarder in self.forwarders:
            thread = threading.Thread(
                target=forwarder.run,
                args=(self.stop_event, self.poll, self.backoff, self.backoff_max),
                name=f"forward {forwarder.destination.name}",
                daemon=True,
            )
            thread.start()
            self.threads.append(thread)
            log.info("forwarding alerts and incident changes to %s", forwarder.destination.name)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the batches in flight (each thread waits at most ``timeout`` seconds)."""
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout)
        self.threads.clear()


def start(db: Database, urls: Sequence[str], public_url: str | None) -> Forwarding | None:
    """The app's forwarding, started; None when no destination is configured."""
    if not urls:
        return None
    forwarding = Forwarding(db, destinations(urls), public_url=public_url)
    forwarding.start()
    return forwarding


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class Status:
    name: str
    seq: int
    lag: int
    sent: int
    last_error: str | None
    updated_at: str


def status(session: Session) -> tuple[int, list[Status]]:
    """The audit head and each destination's cursor, lag (entries not yet looked at), count and error."""
    head = session.execute(select(AuditHead.seq)).scalar_one()
    rows = session.execute(select(ForwardCursor).order_by(ForwardCursor.name)).scalars()
    return head, [
        Status(r.name, r.seq, max(0, head - r.seq), r.sent, r.last_error, r.updated_at.isoformat())
        for r in rows
    ]


class Gauges:
    """``vakta_forward_lag``, ``vakta_forward_sent_total`` and ``vakta_forward_failing`` per destination,
    read from the database at scrape time (whichever process forwards)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterable[Metric]:
        lag = GaugeMetricFamily(
            "vakta_forward_lag", "Audit entries not yet forwarded.", labels=["destination"]
        )
        sent = CounterMetricFamily(
            "vakta_forward_sent", "Alerts and events forwarded.", labels=["destination"]
        )
        failing = GaugeMetricFamily(
            "vakta_forward_failing", "1 while the last batch failed.", labels=["destination"]
        )
        try:
            with self.db.read() as session:
                _, rows = status(session)
        except SQLAlchemyError as exc:
            log.warning("metrics: forwarding status unavailable: %s", exc)
            return []
        for row in rows:
            lag.add_metric([row.name], row.lag)
            sent.add_metric([row.name], row.sent)
            failing.add_metric([row.name], 1 if row.last_error else 0)
        return [lag, sent, failing]
