"""Webhooks: an HTTPS POST of the alert as JSON, signed with HMAC-SHA256.

The signature (``X-Vakta-Signature: sha256=<hex>``, as GitHub signs its
webhooks) is over the raw body, and the body carries ``sent_at``, the same
Unix time as the ``X-Vakta-Timestamp`` header, so the time a receiver checks
against replay is itself signed; ``id`` stays the same across retries, so a
receiver can drop a duplicate.  Retries (with backoff) follow 5xx answers,
timeouts and connection failures, never a 4xx: a request the receiver refused
will be refused again.  Redirects are not followed (a signed alert is not sent
on to wherever a server points).  The standard library's urllib is enough,
and it honours ``HTTPS_PROXY``/``NO_PROXY``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from vakta import __version__
from vakta.notify import Event, IncidentEvent, NotifierUrl, NotifyError, network_error
from vakta.notify.retry import RetryPolicy

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Vakta-Signature"
TIMESTAMP_HEADER = "X-Vakta-Timestamp"
ALERT_ID_HEADER = "X-Vakta-Alert-Id"
#: ``alert``, or the incident event's kind (``incident.escalated``...) from the console's forwarding.
EVENT_HEADER = "X-Vakta-Event"
DEFAULT_TIMEOUT = 10.0
#: Vakta's own options, taken out of the URL before it is requested; the rest go to the receiver.
OPTIONS = ("secret-env", "ca", "cert", "key", "timeout", "retries", "backoff")
#: At most this much of an answer is read (and a reason shown), whatever a server sends.
MAX_ANSWER = 65536
MAX_REASON = 200


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, signature: str) -> bool:
    """What a receiver does (see docs/alerts.md): compare in constant time."""
    return hmac.compare_digest(sign(secret, body), signature)


def body_for(alert: Event, sent_at: int) -> bytes:
    """The JSON body: the alert's fields and ``sent_at`` (Unix seconds, also in the timestamp header)."""
    return json.dumps({**alert.to_dict(), "sent_at": sent_at}, ensure_ascii=False).encode()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx answer becomes an error instead of a request somewhere else."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _short(text: object) -> str:
    """A server's reason phrase, cut and stripped of control characters before it is shown."""
    clean = "".join(c if c.isprintable() else "?" for c in str(text))
    return clean[:MAX_REASON]


def status_error(code: int, reason: object) -> NotifyError:
    """An HTTP answer other than 2xx: 5xx may pass, anything else will be the same next time."""
    kind = f"HTTP {code}"
    if 500 <= code < 600:
        return NotifyError(kind, _short(reason), retryable=True)
    if 300 <= code < 400:
        return NotifyError(kind, "redirects are not followed; use the final URL", retryable=False)
    return NotifyError(kind, _short(reason), retryable=False)


@dataclass
class WebhookNotifier:
    display: str
    target: str
    secret: bytes
    timeout: float
    policy: RetryPolicy
    opener: urllib.request.OpenerDirector

    def send(self, alert: Event) -> None:
        self.policy.run(self.display, lambda: self._post(alert))

    def _post(self, alert: Event) -> None:
        """One attempt, signed afresh: a retry carries its own time."""
        sent_at = int(time.time())
        body = body_for(alert, sent_at)
        request = urllib.request.Request(
            self.target,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "User-Agent": f"vakta/{__version__}",
                TIMESTAMP_HEADER: str(sent_at),
                SIGNATURE_HEADER: sign(self.secret, body),
                ALERT_ID_HEADER: alert.id,
                EVENT_HEADER: alert.event if isinstance(alert, IncidentEvent) else "alert",
            },
        )
        try:
            with self.opener.open(request, timeout=self.timeout) as answer:
                answer.read(MAX_ANSWER)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise status_error(exc.code, exc.reason) from None
        except urllib.error.URLError as exc:
            reason = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
            raise network_error(reason) from exc
        except http.client.HTTPException as exc:
            raise NotifyError("bad HTTP answer", _short(exc) or type(exc).__name__, retryable=True) from exc
        except OSError as exc:
            raise network_error(exc) from exc

    def close(self) -> None:
        """Nothing is held between alerts: each is its own request."""


def _target(url: NotifierUrl) -> str:
    """The URL to request: Vakta's options and any fragment taken out, the receiver's own query kept."""
    parts = urlsplit(url.raw)
    query = "&".join(
        p for p in parts.query.split("&") if p and unquote_plus(p.split("=", 1)[0]) not in OPTIONS
    )
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


@dataclass(frozen=True)
class WebhookFactory:
    """``https://host/path?secret-env=VAR`` (``http://`` for a local relay); options ``timeout``,
    ``retries``, ``backoff``, ``ca``, ``cert``, ``key``; other query parameters go to the receiver."""

    schemes: tuple[str, ...] = ("https", "http")

    def create(self, url: NotifierUrl) -> WebhookNotifier:
        url.require_host()
        secret = url.take_secret("secret-env", required=True)
        assert secret is not None
        timeout = url.take_number("timeout", DEFAULT_TIMEOUT, 0.1, 600)
        policy = RetryPolicy.from_url(url)
        context = url.tls_context() if url.scheme == "https" else None
        if context is None:
            for name in ("ca", "cert", "key"):
                if url.take(name) is not None:
                    raise ValueError(f"{url.display}: ?{name}= needs https://")
            log.warning("alerts to %s travel unencrypted (http://)", url.display)
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirects())
        return WebhookNotifier(url.display, _target(url), secret.encode(), timeout, policy, opener)


NOTIFIER = WebhookFactory()
