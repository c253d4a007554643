"""Known-good lists (``--ignore``, NSRL): files whose digests are on one are skipped before any decode."""

from __future__ import annotations

from vakta.matching.search import DigestIndex
from vakta.signals.model import Signals


class KnownGood:
    """Digests on known-good lists, and the name of the list a file's digest is on."""

    def __init__(self, digests: dict[str, DigestIndex], list_names: list[str]) -> None:
        self._digests = digests
        self._names = list_names

    def __bool__(self) -> bool:
        return any(len(d) for d in self._digests.values())

    def __call__(self, signals: Signals) -> str | None:
        for kind, index in self._digests.items():
            value = getattr(signals, kind, None)
            owners = index.lookup(value) if value else []
            if owners:
                return self._names[owners[0]]
        return None
