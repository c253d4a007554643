"""URL lists: normalisation, import records and lookup of a request's URL.

A URL list is stored like a hash list (rows of the list store, with provenance):
kind ``url`` holds the normalised expression itself (so it can be exported, e.g.
as a DNS zone), ``url-md5``/``url-sha256`` hold a digest of it, as hashed lists
are distributed.  An expression is ``host[:port]/path[?query]``: scheme,
userinfo and fragment dropped, host lower-cased without trailing dots (IDNA for
non-ASCII), default ports removed, ``.``/``..`` segments resolved and
percent-encoding made uniform, so trivial respellings of a URL give the same
expression.  A request matches an entry for its URL, for any path prefix ending
in ``/`` (``host/dir/``), or for its host or a parent domain (``host/``): the
lookups Safe Browsing makes, so host and path-prefix rules need no syntax.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote, unquote, urlsplit

from vakta.lists.model import ListRecord, ParseIssue
from vakta.lists.store import EntryRow

URL_KINDS = ("url", "url-md5", "url-sha256")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_DIGESTS = {"url-md5": hashlib.md5, "url-sha256": hashlib.sha256}
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}
#: Characters kept as they are in a path or query; everything else is percent-encoded.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
#: Parent domains looked up at most (``a.b.c.d.example.com`` -> the last five labels).
_MAX_PARENTS = 5


class InvalidUrlError(ValueError):
    """Text that is not a URL with a host."""


def normalize(url: str) -> str:
    """The expression of ``url`` (see the module docstring); InvalidUrlError without a host."""
    text = url.strip()
    if not _SCHEME.match(text):
        text = "http://" + text.removeprefix("//")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidUrlError(f"not a URL: {exc}") from None
    host = _host(parts.hostname or "")
    if not host:
        raise InvalidUrlError("no host")
    scheme = parts.scheme.lower()
    where = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    query = f"?{quote(unquote(parts.query), safe=_QUERY_SAFE)}" if parts.query else ""
    return where + _path(parts.path) + query


def _host(raw: str) -> str:
    host = unquote(raw).lower().strip().rstrip(".")
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return host


def _path(raw: str) -> str:
    path = unquote(raw) or "/"
    trailing = path.endswith("/") or path.endswith("/.") or path.endswith("/..")
    path = posixpath.normpath("/" + path.lstrip("/")).replace("//", "/")
    path = path if path == "/" or not trailing else path + "/"
    return quote(path, safe=_PATH_SAFE)


def expressions(url: str) -> list[str]:
    """What to look up for a request: the URL, without its query, its path prefixes, its host and parents."""
    full = normalize(url)
    out = [full]
    bare, _, _ = full.partition("?")
    where, _, path = bare.partition("/")
    if bare != full:
        out.append(bare)
    segments = path.split("/")
    for n in range(len(segments) - 1, -1, -1):
        prefix = f"{where}/{'/'.join(segments[:n])}{'/' if n else ''}"
        if prefix not in out:
            out.append(prefix)
    host, _, _ = where.partition(":")
    labels = host.split(".")
    if not host.replace(".", "").isdigit():
        for n in range(1, min(len(labels) - 1, _MAX_PARENTS + 1)):
            out.append(".".join(labels[n:]) + "/")
    if where != host:
        out.append(host + "/")
    return out


def stored_value(kind: str, expression: str) -> bytes:
    """The store row value of an expression for a kind of URL list."""
    data = expression.encode("utf-8")
    return _DIGESTS[kind](data).digest() if kind in _DIGESTS else data


def parse_list(stream: BinaryIO, kind: str) -> Iterator[ListRecord | ParseIssue]:
    """One URL (``url``) or hex digest (``url-md5``, ``url-sha256``) a line; ``#`` starts a comment."""
    width = {"url-md5": 32, "url-sha256": 64}.get(kind)
    for number, raw in enumerate(stream, 1):
        line = raw.decode("utf-8", "replace").split("#", 1)[0].strip() if not raw.startswith(b"#") else ""
        if not line:
            continue
        if width is None:
            try:
                value = stored_value(kind, normalize(line))
            except InvalidUrlError as exc:
                yield ParseIssue(number, str(exc))
                continue
        else:
            text = line.split(",")[0].split()[0].lower()
            if len(text) != width or not all(c in "0123456789abcdef" for c in text):
                yield ParseIssue(number, f"{kind} needs {width} hex characters")
                continue
            value = bytes.fromhex(text)
        yield ListRecord({kind: value.hex()}, line=number)


@dataclass(frozen=True)
class UrlHit:
    """A request's URL found on a list: the expression that matched and the entry's provenance."""

    expression: str
    entry: EntryRow


class UrlIndex:
    """The URL entries of the detection lists, in memory (URL lists are small) for lookups off any thread."""

    def __init__(self, rows: Iterable[EntryRow]) -> None:
        self._rows: dict[tuple[str, bytes], EntryRow] = {}
        for row in rows:
            if row.kind in URL_KINDS:
                self._rows.setdefault((row.kind, row.value), row)
        self.kinds = sorted({kind for kind, _ in self._rows})

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, url: str) -> list[UrlHit]:
        """The entries ``url`` hits; an unparsable URL hits nothing."""
        try:
            candidates = expressions(url)
        except InvalidUrlError:
            return []
        hits = []
        for expression in candidates:
            for kind in self.kinds:
                row = self._rows.get((kind, stored_value(kind, expression)))
                if row is not None:
                    hits.append(UrlHit(expression, row))
        return hits


def hosts(rows: Iterable[EntryRow]) -> list[str]:
    """The hosts a plain URL list blocks whole (entries ``host/``), sorted: what DNS can block.

    Entries with a path are left out: blocking their host would block far more than the list names.
    """
    found = {
        r.value.decode("utf-8", "replace")[:-1] for r in rows if r.kind == "url" and r.value.endswith(b"/")
    }
    return sorted({h.split(":", 1)[0] for h in found if h and "/" not in h})
