"""E-mail through SMTP: one plain-text message per alert, or one digest at the end of a scan.

The standard library's smtplib does STARTTLS, implicit TLS and login.  A
message holds hashes, sizes, paths and list provenance, never the file, and
says so; a password is never sent in clear (login needs STARTTLS or ``smtps``).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from vakta.notify import Alert, Event, IncidentEvent, NotifierUrl, NotifyError, local_host, network_error
from vakta.notify.retry import RetryPolicy

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
DEFAULT_TIMEOUT = 30.0
#: A digest is sent once it holds this many alerts, and with the rest at the end.
DIGEST_MAX = 500
_YES = {"1", "yes", "true", "on"}
_NO = {"0", "no", "false", "off"}


def _text(value: object) -> str:
    """A value as one safe line: control characters (a newline in a path...) written as escapes."""
    text = "-" if value is None or value == "" else str(value)
    return "".join(c if c.isprintable() or c == " " else ascii(c)[1:-1] for c in text)


def alert_text(alert: Alert) -> str:
    """One alert as plain text: every hash, the location chain and each list entry."""
    rows = [
        ("Time (UTC)", alert.time.isoformat(timespec="seconds")),
        ("Host", alert.host),
        ("User", alert.user),
        ("Storage", alert.storage),
        ("Location", alert.location),
        ("Deleted file", "yes" if alert.deleted else None),
        ("Size (bytes)", alert.size),
        ("Type", alert.type),
        ("MD5", alert.md5),
        ("SHA-1", alert.sha1),
        ("SHA-256", alert.sha256),
        ("PDQ", alert.pdq),
        ("Alert id", alert.id),
        ("Incident", alert.incident_id),
        ("Console", alert.url),
    ]
    lines = [f"{name + ':':<14}{_text(value)}" for name, value in rows if value is not None]
    lines.append("Matches:")
    lines += [
        f"  - list {_text(name)}, entry {_text(entry)}, category {_text(category)}: matched by "
        + ", ".join(_text(m.signal) + (f" (distance {m.distance})" if m.distance else "") for m in matches)
        + f"; list imported {_text(matches[0].imported_at)}"
        for (name, entry, category), matches in alert.entries().items()
    ]
    if alert.test:
        lines.insert(0, "TEST: the built-in harmless test signature matched; no real material is involved.")
    return "\n".join(lines)


def event_text(event: IncidentEvent) -> str:
    """An incident's change of state as plain text."""
    rows = [
        ("Time (UTC)", event.time.isoformat(timespec="seconds")),
        ("Incident", event.incident_id),
        ("State", f"{event.previous or '-'} -> {event.state}"),
        ("Resolution", event.resolution),
        ("Host", event.host),
        ("User", event.user),
        ("By", event.actor),
        ("Console", event.url),
        ("Event id", event.id),
    ]
    lines = [f"{name + ':':<14}{_text(value)}" for name, value in rows if value is not None]
    if event.test:
        lines.insert(
            0, "TEST: an incident of the built-in harmless test signature; no real material is involved."
        )
    return "\n".join(lines)


def _section(event: Event) -> str:
    return event_text(event) if isinstance(event, IncidentEvent) else alert_text(event)


def _subject_text(text: str) -> str:
    return " ".join(_text(text).split())[:120]


def subject(alerts: list[Event]) -> str:
    test = all(a.test for a in alerts)
    tag = "[Vakta TEST]" if test else "[Vakta]"
    hosts = ", ".join(dict.fromkeys(a.host for a in alerts))
    if any(isinstance(a, IncidentEvent) for a in alerts):
        first = alerts[0]
        if len(alerts) == 1 and isinstance(first, IncidentEvent):
            return _subject_text(f"{tag} Incident {first.incident_id} {first.state} on {hosts}")
        return _subject_text(f"{tag} {len(alerts)} alerts and incident changes on {hosts}")
    if len(alerts) == 1 and isinstance(alerts[0], Alert):
        what = "Test signature matched" if test else "Hash-list match"
        lists = ", ".join(dict.fromkeys(m.list for m in alerts[0].matches))
        return _subject_text(f"{tag} {what} on {hosts} (list {lists})")
    return _subject_text(f"{tag} {len(alerts)} hash-list matches on {hosts}")


def compose(alerts: list[Event], sender: str, recipients: list[str]) -> EmailMessage:
    """The message: plain text, every alert in full, and a reminder of what it never carries."""
    message = EmailMessage()
    message["Subject"] = subject(alerts)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1] or None)
    if any(isinstance(a, IncidentEvent) for a in alerts):
        intro = "The Vakta console reports alerts and changes to incidents."
    elif len(alerts) > 1:
        intro = "Vakta found files that match hash lists."
    else:
        intro = "Vakta found a file that matches a hash list."
    note = (
        "This message holds hashes, sizes, paths and list provenance only. The file was not "
        "attached, copied or displayed; follow your organisation's procedure and do not open it."
    )
    sections = [_section(a) for a in alerts]
    message.set_content(f"{intro}\n{note}\n\n" + "\n\n".join(sections) + "\n")
    return message


def smtp_error(exc: Exception, alerts: int) -> NotifyError:
    """An smtplib failure as a :class:`NotifyError`: 4xx answers and lost connections may pass, 5xx will not."""
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return NotifyError("not supported by the server", str(exc), retryable=False, alerts=alerts)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return NotifyError("login refused", _reply(exc), retryable=exc.smtp_code < 500, alerts=alerts)
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{a}: {c}" for a, (c, _) in exc.recipients.items())
        return NotifyError("recipients refused", detail, retryable=all(c < 500 for c in codes), alerts=alerts)
    if isinstance(exc, smtplib.SMTPResponseException):
        kind = f"SMTP {exc.smtp_code}"
        return NotifyError(kind, _reply(exc), retryable=exc.smtp_code < 500, alerts=alerts)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return NotifyError("connection lost", str(exc), retryable=True, alerts=alerts)
    if isinstance(exc, OSError):
        return network_error(exc, alerts)
    return NotifyError(type(exc).__name__, str(exc), retryable=False, alerts=alerts)


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = (
        exc.smtp_error.decode("utf-8", "replace")
        if isinstance(exc.smtp_error, bytes)
        else str(exc.smtp_error)
    )
    return _text(text)[:200]


@dataclass
class EmailNotifier:
    display: str
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    context: ssl.SSLContext
    user: str | None
    password: str | None
    sender: str
    recipients: list[str]
    timeout: float
    digest: bool
    policy: RetryPolicy
    pending: list[Event] = field(default_factory=list)

    def send(self, alert: Event) -> None:
        if not self.digest:
            self._deliver([alert])
            return
        self.pending.append(alert)
        if len(self.pending) >= DIGEST_MAX:
            self._flush()

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        alerts, self.pending = self.pending, []
        if alerts:
            self._deliver(alerts)

    def _deliver(self, alerts: list[Event]) -> None:
        message = compose(alerts, self.sender, self.recipients)
        self.policy.run(self.display, lambda: self._attempt(message, len(alerts)))

    def _attempt(self, message: EmailMessage, alerts: int) -> None:
        try:
            with self._connect() as smtp:
                if self.user is not None:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(message, self.sender, self.recipients)
        except (smtplib.SMTPException, OSError) as exc:
            raise smtp_error(exc, alerts) from exc

    def _connect(self) -> smtplib.SMTP:
        if self.implicit_tls:
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.context)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=self.context)
                smtp.ehlo()
        except BaseException:
            smtp.close()
            raise
        return smtp


def _flag(url: NotifierUrl, name: str, default: bool) -> bool:
    value = url.take(name)
    if value is None:
        return default
    if value.lower() in _YES | _NO:
        return value.lower() in _YES
    raise ValueError(f"{url.display}: ?{name}= takes yes or no, not {value!r}")


def _address(url: NotifierUrl, text: str) -> str:
    """A bare address (``a@example.org``), checked by the standard library's parser."""
    try:
        return str(Address(addr_spec=text))
    except (ValueError, IndexError, MessageError) as exc:
        raise ValueError(f"{url.display}: {text!r} is not an e-mail address ({exc})") from None


@dataclass(frozen=True)
class EmailFactory:
    """``smtp://[user@]host[:587]?to=ADDR&from=ADDR&password-env=VAR`` (STARTTLS, required unless
    ``starttls=no``), ``smtps://...:465`` (implicit TLS); options ``digest=yes``, ``timeout``,
    ``retries``, ``backoff``, ``ca``, ``cert``, ``key``."""

    schemes: tuple[str, ...] = tuple(DEFAULT_PORTS)

    def create(self, url: NotifierUrl) -> EmailNotifier:
        host = url.require_host()
        implicit_tls = url.scheme == "smtps"
        starttls = _flag(url, "starttls", True) if not implicit_tls else False
        recipients = [_address(url, a) for a in url.take_all("to")]
        if not recipients:
            raise ValueError(f"{url.display}: add ?to=ADDRESS (repeatable, or comma-separated)")
        sender = _address(url, url.take("from") or f"vakta@{local_host()}")
        password = url.take_secret("password-env", required=url.user is not None)
        if password is not None and url.user is None:
            raise ValueError(f"{url.display}: ?password-env= needs a user name: smtp://USER@host")
        if url.user is not None and not (implicit_tls or starttls):
            raise ValueError(
                f"{url.display}: a login needs TLS (smtps://, or STARTTLS): not sending a password in clear"
            )
        digest = _flag(url, "digest", False)
        timeout = url.take_number("timeout", DEFAULT_TIMEOUT, 0.1, 600)
        policy = RetryPolicy.from_url(url)
        context = url.tls_context()
        if url.path.strip("/"):
            raise ValueError(f"{url.display}: an SMTP URL has no path")
        url.finish()
        return EmailNotifier(
            url.display, host, url.port or DEFAULT_PORTS[url.scheme], implicit_tls, starttls, context,
            url.user, password, sender, recipients, timeout, digest, policy,
        )  # fmt: skip


NOTIFIER = EmailFactory()
