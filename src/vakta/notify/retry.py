"""Retries with exponential backoff, shared by the notifiers.

A receiver that is down would otherwise cost every alert the full series of
attempts; once one alert has used them all, the next ones get a single try
until a delivery succeeds again (a simple circuit breaker), so a scan's
alerts to a dead SIEM fail fast instead of piling up behind sleeps.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from vakta.notify import NotifierUrl, NotifyError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Default attempts after the first one, and the first pause (doubling each time).
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.5
MAX_PAUSE = 30.0


@dataclass
class RetryPolicy:
    """Try up to ``1 + retries`` times, pausing ``backoff``, 2x, 4x... seconds (with jitter) between."""

    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    sleep: Callable[[float], None] = time.sleep
    #: Set after an alert used up its retries; cleared by the next success.
    failing: bool = field(default=False, init=False)

    @classmethod
    def from_url(cls, url: NotifierUrl) -> RetryPolicy:
        """``?retries=N`` (0-10) and ``?backoff=SECONDS`` (0-60) from a notifier URL."""
        retries = int(url.take_number("retries", DEFAULT_RETRIES, 0, 10))
        return cls(retries, url.take_number("backoff", DEFAULT_BACKOFF, 0, 60))

    def pause(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        base = min(self.backoff * 2 ** (attempt - 1), MAX_PAUSE)
        return float(base * random.uniform(0.8, 1.2))

    def run(self, what: str, action: Callable[[], T]) -> T:
        """``action()``, again after a pause while it raises a retryable :class:`NotifyError`."""
        attempts = 1 if self.failing else 1 + self.retries
        for attempt in range(1, attempts + 1):
            try:
                result = action()
            except NotifyError as exc:
                if not exc.retryable or attempt == attempts:
                    self.failing = exc.retryable
                    raise
                pause = self.pause(attempt)
                log.info("%s: %s; attempt %d of %d in %.1f s", what, exc, attempt + 1, attempts, pause)
                self.sleep(pause)
            else:
                self.failing = False
                return result
        raise AssertionError("unreachable: the last attempt returns or raises")
