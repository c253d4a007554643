"""What the ICAP service decides about a web response body: block (it matched a list) or pass.

A body is hashed exactly as ``vakta scan`` hashes a file (:func:`vakta.pipeline.hash_tree`:
digests, PDQ, vPDQ, and archives opened member by member) and matched with the
same :class:`~vakta.matching.matcher.Matcher`, so a list behaves the same on disk
and on the wire.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from vakta import testsignature
from vakta.containers import Limits, reader_for
from vakta.findings import Finding
from vakta.icap import codings
from vakta.icap.bodycache import BodyCache
from vakta.items import Item, display_path
from vakta.matching.knowngood import KnownGood
from vakta.matching.matcher import Matcher
from vakta.pipeline import hash_tree
from vakta.signals.hashers import hashers_for
from vakta.signals.model import HashOptions, Signals
from vakta.signals.sniff import SNIFF_BYTES, content_type

log = logging.getLogger(__name__)

#: Declared HTTP types worth hashing even when the first bytes do not say so (a type sniffing misses).
_DECLARED = ("image/", "video/")
_DECLARED_ARCHIVES = frozenset(
    {
        "application/zip",
        "application/x-zip-compressed",
        "application/x-tar",
        "application/gzip",
        "application/x-gzip",
        "application/x-7z-compressed",
        "application/vnd.rar",
        "application/x-rar-compressed",
        "application/pdf",
    }
)


@dataclass(frozen=True)
class Policy:
    """Per-body limits and what to do past them."""

    max_body_bytes: int = 64 << 20
    max_seconds: float = 30.0
    #: Block a body the limits stop from being checked (default: let it pass, and count it).
    block_unchecked: bool = False
    block_status: int = 403
    #: Bytes of bodies held at once over all connections; a body that would pass it is not held
    #: (it passes unchecked, or is blocked with ``block_unchecked``): many large bodies at once
    #: cannot exhaust memory.
    max_held_bytes: int = 1 << 30


def web_limits(seconds: float) -> Limits:
    """Container limits for one web body: ClamAV's mail-gateway scale, not the forensic defaults."""
    return Limits(
        max_depth=8,
        max_member_bytes=256 << 20,
        max_total_bytes=1 << 30,
        max_members=10_000,
        max_seconds=seconds,
    )


def wanted(declared: str | None, start: bytes | bytearray, coding: tuple[str, ...] = ()) -> bool:
    """Whether a body is an image, video or archive, by its declared type or its first bytes.

    ``start`` is the body's beginning as received (the preview), ``coding`` its
    ``Content-Encoding`` (:func:`codings.parse`). A coded body is sniffed as decoded, as
    the browser will see it (undoing the first few KB of a gzip page costs microseconds);
    one whose coding is not supported, or whose start does not decode, goes by its
    declared type only.
    """
    kind = (declared or "").split(";")[0].strip().lower()
    if kind.startswith(_DECLARED) or kind in _DECLARED_ARCHIVES:
        return True
    head = codings.head(bytes(start), coding, SNIFF_BYTES) if coding else bytes(start[:SNIFF_BYTES])
    if head is None:
        return False
    sniffed = content_type(head)
    if sniffed.startswith("audio/"):
        return False  # streamed music and podcasts would be held to their end for a cover picture
    return bool(hashers_for(sniffed)) or reader_for(sniffed) is not None


@dataclass(frozen=True)
class Examiner:
    """Hashes a body and its members and matches them; runs on the server's threads, off the event loop."""

    matcher: Matcher
    options: HashOptions
    known_good: KnownGood | None
    limits: Limits | None
    #: Signals of bodies seen before, by content (None: hash every body).
    cache: BodyCache | None = None
    #: Most bytes a body may decode to from its ``Content-Encoding`` (a compression bomb stops there).
    decoded_limit: int = 64 << 20

    def recall(self, body: bytes | bytearray, url: str) -> tuple[bytes, list[Finding] | None]:
        """The body's cache key, and its findings if it was seen under the lists in force (else None).

        Cheap (a hash of the body and a dictionary lookup): the server calls it in its event
        loop, on the body as it was received, and hands only what is not remembered to its
        hashing threads. A body seen and found clean gives no findings at all (an empty list):
        most bodies are, and naming copies of their signals after the URL would be wasted.
        """
        if self.cache is None:
            return b"", None
        key = self.cache.key(body)
        if self.cache.clean(key, self.matcher):
            return key, []
        cached = self.cache.peek(key, _name(url))
        return key, cached.findings(self.matcher) if cached is not None else None

    def __call__(
        self, body: bytes, url: str, key: bytes | None = None, coding: tuple[str, ...] = ()
    ) -> list[Finding]:
        """One finding per hashed thing (the body first, then members of an archive).

        ``coding`` is the body's ``Content-Encoding`` (:func:`codings.parse`): the body is
        hashed decoded, as the browser shows it; it is remembered by its bytes as sent.
        """
        if self.cache is None:
            return self._found(self._hashed(body, url, coding))
        key = key or self.cache.key(body)
        cached = self.cache.get(key, _name(url))
        if cached is None:
            tree = self._hashed(body, url, coding)
        else:
            remembered = cached.findings(self.matcher)
            if remembered is not None:
                return remembered
            tree = cached.tree
        found = self._found(tree)
        self.cache.put(key, tree, self.matcher, [f.matches for f in found])
        return found

    def _hashed(self, body: bytes, url: str, coding: tuple[str, ...]) -> list[Signals]:
        """The body's signals (decoded first when it has a content coding), then its members'."""
        unsupported = bool(coding) and not codings.supported(coding)
        if coding and not unsupported:
            try:
                body = codings.decode(body, coding, self.decoded_limit)
            except codings.CodingError as exc:
                path, path_b64 = display_path(_raw(url))
                return [
                    Signals(path=path, path_b64=path_b64, size=len(body), errors=[f"content coding: {exc}"])
                ]
        tree = hash_tree(_item(body, url), self.options, self.known_good, self.limits)
        if unsupported:
            tree[0].errors.append(f"content coding {', '.join(coding)} not supported: checked as sent")
        return tree

    def warm_up(self) -> bool:
        """Read the lists' arrays in and check the built-in test picture once, before the first request.

        True when the picture matched: that proves the service finds what its lists hold,
        when the built-in test list is one. The first picture a process decodes pays for
        loading the decoders and hashers (about a third of a second here), and the first
        lookups for reading in the pages of the memory-mapped lists they touch: neither
        should be a user's wait.
        """
        covered = self.matcher.index.search.prefault()
        log.info("read in %d MB of list arrays", covered >> 20)
        item = _item(testsignature.image_bytes(), "vakta-test.jpg")
        found = self._found(hash_tree(item, self.options, self.known_good, self.limits))
        return any(f.matched for f in found)

    def _found(self, tree: list[Signals]) -> list[Finding]:
        return [Finding(s, [] if s.skipped else self.matcher.match(s)) for s in tree]


def _item(body: bytes, url: str) -> Item:
    """A web body as a pipeline item, named by its URL."""
    return Item(_raw(url), size=len(body), data=body)


def _raw(url: str) -> bytes:
    return url.encode("utf-8", "surrogateescape")


def _name(url: str) -> str:
    """What a body's findings are named: its item's display path."""
    return display_path(_raw(url))[0]
