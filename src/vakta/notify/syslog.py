"""Syslog (RFC 5424) with a CEF payload, over UDP (RFC 5426), TCP (RFC 6587) or TLS (RFC 5425).

Written with the standard library's sockets: the framing is a few lines and
the standard ``logging.handlers.SysLogHandler`` speaks only the older RFC 3164
format, without TLS or octet counting.  TCP and TLS use octet-counting frames
(``LEN SP MSG``), so a message can never be split or joined by what it holds.
A stream connection is kept open between alerts and re-opened when the
receiver has closed it.  Syslog has no acknowledgement: a message written just
as the receiver drops the connection can be lost (use a webhook when delivery
must be confirmed).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC
from typing import Protocol

from vakta.notify import Event, IncidentEvent, NotifierUrl, NotifyError, network_error
from vakta.notify.cef import format_event
from vakta.notify.retry import RetryPolicy

log = logging.getLogger(__name__)

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14, "clock": 15,
    **{f"local{n}": 16 + n for n in range(8)},
}  # fmt: skip
DEFAULT_FACILITY = "auth"
#: RFC 5424 severities: a real match needs action now; the test signature is only worth noting.
SEVERITY_MATCH = 1  # alert
SEVERITY_TEST = 5  # notice
#: Incident events from the console: an escalation is critical, other changes worth noting.
SEVERITY_INCIDENT = {"escalated": 2}
SEVERITY_INCIDENT_OTHER = 5
APP_NAME = "vakta"
DEFAULT_PORTS = {"syslog+udp": 514, "syslog+tcp": 514, "syslog+tls": 6514}
DEFAULT_TIMEOUT = 5.0
#: The largest UDP payload over IPv4; a bigger message cannot be one datagram.
MAX_DATAGRAM = 65507


def _field(text: str, limit: int) -> str:
    """A header field of RFC 5424: printable US-ASCII without spaces, or the nil value ``-``."""
    cleaned = "".join(c if 33 <= ord(c) <= 126 else "_" for c in text)[:limit]
    return cleaned or "-"


def format_message(alert: Event, facility: int = FACILITIES[DEFAULT_FACILITY]) -> bytes:
    """One RFC 5424 message, CEF as MSG (UTF-8, no BOM: CEF receivers expect ``CEF:`` first)."""
    if isinstance(alert, IncidentEvent):
        severity = (
            SEVERITY_TEST if alert.test else SEVERITY_INCIDENT.get(alert.state, SEVERITY_INCIDENT_OTHER)
        )
        msgid = "incident"
    else:
        severity = SEVERITY_TEST if alert.test else SEVERITY_MATCH
        msgid = "test" if alert.test else "match"
    stamp = alert.time.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    header = " ".join(
        [
            f"<{facility * 8 + severity}>1",
            stamp,
            _field(alert.host, 255),
            APP_NAME,
            str(os.getpid()),
            msgid,
            "-",  # no structured data: everything is in the CEF payload
        ]
    )
    return f"{header} {format_event(alert)}".encode()


def frame(message: bytes) -> bytes:
    """Octet counting (RFC 6587 3.4.1, RFC 5425 4.3): the length in decimal, a space, the message."""
    return b"%d %s" % (len(message), message)


# --------------------------------------------------------------------------- transports


class Transport(Protocol):
    def send(self, message: bytes) -> None:
        """Send one message; OSError on failure (the connection is then dropped)."""
        ...

    def close(self) -> None: ...


class UdpTransport:
    """One datagram per message (RFC 5426); the socket is connected so refusals are seen."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None

    def send(self, message: bytes) -> None:
        if len(message) > MAX_DATAGRAM:
            raise NotifyError("message too large for UDP", f"{len(message)} bytes", retryable=False)
        if self.sock is None:
            self.sock = _connect(self.host, self.port, socket.SOCK_DGRAM, self.timeout)
        try:
            self.sock.send(message)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class StreamTransport:
    """TCP, or TLS when given a context: one connection kept open, octet-counted frames."""

    def __init__(self, host: str, port: int, timeout: float, context: ssl.SSLContext | None) -> None:
        self.host, self.port, self.timeout, self.context = host, port, timeout, context
        self.sock: socket.socket | None = None

    def send(self, message: bytes) -> None:
        if self.sock is not None and not _still_open(self.sock):
            log.info("syslog %s:%d closed the connection; reconnecting", self.host, self.port)
            self.close(clean=False)
        if self.sock is None:
            self.sock = self._open()
        try:
            self.sock.sendall(frame(message))
        except OSError:
            self.close(clean=False)
            raise

    def _open(self) -> socket.socket:
        sock = _connect(self.host, self.port, socket.SOCK_STREAM, self.timeout)
        if self.context is None:
            return sock
        try:
            return self.context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise

    def close(self, clean: bool = True) -> None:
        """Close the connection; ``clean`` ends TLS with close_notify (not worth waiting for on a broken one)."""
        if self.sock is None:
            return
        try:
            if clean and isinstance(self.sock, ssl.SSLSocket):
                self.sock = self.sock.unwrap()  # close_notify, so the receiver sees a clean end
        except OSError as exc:
            log.debug("TLS shutdown with %s:%d: %s", self.host, self.port, exc)
        finally:
            self.sock.close()
            self.sock = None


def _connect(host: str, port: int, kind: socket.SocketKind, timeout: float) -> socket.socket:
    """A socket connected to the first address of ``host`` that answers (IPv4 or IPv6)."""
    error: OSError | None = None
    for family, type_, proto, _, address in socket.getaddrinfo(host, port, type=kind):
        sock = socket.socket(family, type_, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error or OSError(f"no address for {host}")


def _still_open(sock: socket.socket) -> bool:
    """A syslog receiver never writes: anything readable means it closed (or broke) the connection."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


# --------------------------------------------------------------------------- notifier


@dataclass
class SyslogNotifier:
    display: str
    transport: Transport
    facility: int
    policy: RetryPolicy

    def send(self, alert: Event) -> None:
        message = format_message(alert, self.facility)
        self.policy.run(self.display, lambda: self._attempt(message))

    def _attempt(self, message: bytes) -> None:
        try:
            self.transport.send(message)
        except OSError as exc:
            raise network_error(exc) from exc

    def close(self) -> None:
        self.transport.close()


@dataclass(frozen=True)
class SyslogFactory:
    """``syslog+udp://host[:514]``, ``syslog+tcp://host[:514]``, ``syslog+tls://host[:6514]?ca=FILE``;
    options ``facility`` (default auth), ``timeout``, ``retries``, ``backoff``, and for TLS
    ``ca``, ``cert``, ``key``."""

    schemes: tuple[str, ...] = tuple(DEFAULT_PORTS)

    def create(self, url: NotifierUrl) -> SyslogNotifier:
        host = url.require_host()
        port = url.port or DEFAULT_PORTS[url.scheme]
        facility_name = (url.take("facility") or DEFAULT_FACILITY).lower()
        if facility_name not in FACILITIES:
            raise ValueError(
                f"{url.display}: unknown facility {facility_name!r} (known: {', '.join(FACILITIES)})"
            )
        timeout = url.take_number("timeout", DEFAULT_TIMEOUT, 0.1, 600)
        policy = RetryPolicy.from_url(url)
        transport: Transport
        if url.scheme == "syslog+udp":
            transport = UdpTransport(host, port, timeout)
        else:
            context = url.tls_context() if url.scheme == "syslog+tls" else None
            transport = StreamTransport(host, port, timeout, context)
        if url.path.strip("/"):
            raise ValueError(f"{url.display}: a syslog URL has no path")
        url.finish()
        return SyslogNotifier(url.display, transport, FACILITIES[facility_name], policy)


NOTIFIER = SyslogFactory()
