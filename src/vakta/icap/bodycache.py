"""Signals of recently checked bodies, by content: a body seen before is matched without hashing it again.

Behind a company's proxy the same pictures come by again and again (logos,
icons, the day's news photos), and decoding and PDQ-hashing a large picture
costs tens of milliseconds a time. What is kept is a body's signals (digests,
PDQ and its query hashes: no content), keyed on a cryptographic hash of it, for at most
``entries`` bodies, least recently used first out. The matches are kept beside
them with the matcher that found them, and used only while that matcher is the
one in force: lists opened anew match cached bodies at once. (Matching a
picture's eight PDQ queries against a list of a million entries costs about as
much as hashing a small one, on every request for it.) Signals that carry an
error (a time limit, a decoder failure) are not kept: the next copy gets a
fresh try.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from vakta.findings import Finding
from vakta.matching.matcher import Match
from vakta.signals.model import Signals


def _key_function() -> Callable[[bytes | bytearray], bytes]:
    try:
        from blake3 import blake3
    except ImportError:
        return lambda body: hashlib.sha256(body).digest()
    return lambda body: blake3(body).digest()


_digest = _key_function()

#: Bodies remembered by default (a body's signals take a few KB at most).
DEFAULT_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class Cached:
    """A body's signals (and its members'), and the matches of each as ``matcher`` found them."""

    tree: list[Signals]
    matcher: object
    matches: list[list[Match]]

    def findings(self, matcher: object) -> list[Finding] | None:
        """The findings with the kept matches if ``matcher`` is the one that found them, else None (match again)."""
        if matcher is not self.matcher:
            return None
        return [Finding(s, list(m)) for s, m in zip(self.tree, self.matches, strict=True)]


class BodyCache:
    """A thread-safe LRU of body hash -> the signals of the body and of what is inside it, with their matches."""

    def __init__(self, entries: int = DEFAULT_ENTRIES) -> None:
        self.entries = entries
        self.hits = 0
        self.misses = 0
        self._trees: OrderedDict[bytes, Cached] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(body: bytes | bytearray) -> bytes:
        """The body's BLAKE3 (SHA-256 without the ``icap`` extra): collision-resistant, so no
        crafted body can take a listed one's place; BLAKE3 is three times as fast here."""
        return _digest(body)

    def get(self, key: bytes, path: str) -> Cached | None:
        """The cached entry with copies of its signals named after ``path`` (this response's URL), or None."""
        return self._lookup(key, path, count_miss=True)

    def peek(self, key: bytes, path: str) -> Cached | None:
        """:meth:`get` whose miss is not counted (a :meth:`get` follows it)."""
        return self._lookup(key, path, count_miss=False)

    def clean(self, key: bytes, matcher: object) -> bool:
        """Whether the body was seen and ``matcher`` matched nothing in it: a pass, with no findings to name."""
        with self._lock:
            entry = self._trees.get(key)
            if entry is None or entry.matcher is not matcher or any(entry.matches):
                return False
            self._trees.move_to_end(key)
            self.hits += 1
        return True

    def _lookup(self, key: bytes, path: str, count_miss: bool) -> Cached | None:
        with self._lock:
            entry = self._trees.get(key)
            if entry is None:
                self.misses += count_miss
                return None
            self._trees.move_to_end(key)
            self.hits += 1
        tree = [dataclasses.replace(s, path=path, path_b64=None, errors=[]) for s in entry.tree]
        return Cached(tree, entry.matcher, entry.matches)

    def put(self, key: bytes, tree: list[Signals], matcher: object, matches: list[list[Match]]) -> None:
        if self.entries <= 0 or any(s.errors for s in tree):
            return
        with self._lock:
            self._trees[key] = Cached(tree, matcher, matches)
            self._trees.move_to_end(key)
            while len(self._trees) > self.entries:
                self._trees.popitem(last=False)
