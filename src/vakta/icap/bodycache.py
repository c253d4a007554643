"""Signals of recently checked bodies, by content: a body seen before is matched without hashing it again.

Behind a company's proxy the same pictures come by again and again (logos,
icons, the day's news photos), and decoding and PDQ-hashing a large picture
costs tens of milliseconds a time. What is kept is a body's signals (digests,
PDQ and its query hashes: no content), keyed on its SHA-256, for at most
``entries`` bodies, least recently used first out. Matching is always redone
against the lists in force, so a list update applies to cached bodies at once.
Signals that carry an error (a time limit, a decoder failure) are not kept:
the next copy gets a fresh try.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict

from vakta.signals.model import Signals

#: Bodies remembered by default (a body's signals take a few KB at most).
DEFAULT_ENTRIES = 4096


class BodyCache:
    """A thread-safe LRU of body SHA-256 -> the signals of the body and of what is inside it."""

    def __init__(self, entries: int = DEFAULT_ENTRIES) -> None:
        self.entries = entries
        self.hits = 0
        self.misses = 0
        self._trees: OrderedDict[bytes, list[Signals]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(body: bytes) -> bytes:
        return hashlib.sha256(body).digest()

    def get(self, key: bytes, path: str) -> list[Signals] | None:
        """Copies of the cached signals, named after ``path`` (the URL of this response), or None."""
        with self._lock:
            tree = self._trees.get(key)
            if tree is None:
                self.misses += 1
                return None
            self._trees.move_to_end(key)
            self.hits += 1
        return [dataclasses.replace(s, path=path, path_b64=None, errors=[]) for s in tree]

    def put(self, key: bytes, tree: list[Signals]) -> None:
        if self.entries <= 0 or any(s.errors for s in tree):
            return
        with self._lock:
            self._trees[key] = tree
            self._trees.move_to_end(key)
            while len(self._trees) > self.entries:
                self._trees.popitem(last=False)
