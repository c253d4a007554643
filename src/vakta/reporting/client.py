"""The console's agent API over HTTP(S): enrolment, heartbeats, alert batches (standard library only)."""

from __future__ import annotations

import json
import logging
import ssl
import urllib.error
import urllib.request
from typing import Any

from vakta.notify import Alert, NotifyError, network_error

log = logging.getLogger(__name__)

API = "/api/v1"
#: The console takes at most this many matches per alert.
MAX_MATCHES = 64
TIMEOUT = 30.0


class ConsoleError(Exception):
    """A request the console did not accept; ``status`` is its HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        """No answer, a server error, or "slow down": the same request may succeed later."""
        return self.status is None or self.status >= 500 or self.status in (408, 429)


def request(
    server: str, path: str, body: dict[str, Any], secret: str, timeout: float = TIMEOUT
) -> dict[str, Any]:
    """POST ``body`` as JSON to ``server + /api/v1 + path`` with a bearer credential; the JSON answer."""
    url = server.rstrip("/") + API + path
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"}
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ssl.create_default_context()) as resp:
            answer: dict[str, Any] = json.loads(resp.read())
            return answer
    except urllib.error.HTTPError as exc:
        detail = exc.read(2000).decode("utf-8", "replace")
        raise ConsoleError(f"{path}: HTTP {exc.code}: {detail}", exc.code) from None
    except urllib.error.URLError as exc:
        raise ConsoleError(f"{path}: {_reason(exc.reason)}", None) from None
    except (OSError, ValueError) as exc:
        raise ConsoleError(f"{path}: {_reason(exc)}", None) from None


def _reason(exc: object) -> str:
    if isinstance(exc, BaseException):
        error: NotifyError = network_error(exc)
        return str(error)
    return str(exc)


def get_bundle(server: str, secret: str, version: str, timeout: float = 300.0) -> tuple[bytes, str] | None:
    """The console's signed list bundle and its signature header; None if ``version`` is still current."""
    from vakta.bundles import SIGNATURE_HEADER

    headers = {"Authorization": f"Bearer {secret}"}
    if version:
        headers["If-None-Match"] = f'"{version}"'
    req = urllib.request.Request(server.rstrip("/") + API + "/lists/bundle", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ssl.create_default_context()) as resp:
            return resp.read(), resp.headers.get(SIGNATURE_HEADER, "")
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return None
        detail = exc.read(2000).decode("utf-8", "replace")
        raise ConsoleError(f"/lists/bundle: HTTP {exc.code}: {detail}", exc.code) from None
    except urllib.error.URLError as exc:
        raise ConsoleError(f"/lists/bundle: {_reason(exc.reason)}", None) from None
    except OSError as exc:
        raise ConsoleError(f"/lists/bundle: {_reason(exc)}", None) from None


def alert_body(
    alert: Alert, key: str, matches: list[dict[str, Any]], pdq_quality: int | None = None
) -> dict[str, Any]:
    """The alert as the console's ``POST /alerts`` takes it (docs/server.md): no field it does not know."""
    return {
        "idempotency_key": key,
        "detected_at": alert.time.isoformat(),
        "user": (alert.user or "")[:255],
        "path": alert.path[:4096],
        "inside": [step[:255] for step in alert.inside[:32]],
        "storage": alert.storage,
        "size": alert.size,
        "type": alert.type,
        "md5": alert.md5,
        "sha1": alert.sha1,
        "sha256": alert.sha256,
        "pdq": alert.pdq,
        "pdq_quality": pdq_quality if alert.pdq else None,
        "deleted": alert.deleted,
        "parent_md5": alert.parent_md5,
        "matches": matches[:MAX_MATCHES],
    }
