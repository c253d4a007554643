"""The hash kinds a list can hold, and validation of their textual form."""

from __future__ import annotations

import string

#: Hex length of each hash kind.  64 is ambiguous (SHA-256 or PDQ).
HEX_LENGTHS: dict[str, int] = {"md5": 32, "sha1": 40, "sha256": 64, "pdq": 64}
DIGEST_KINDS = ("md5", "sha1", "sha256")
_HEX = frozenset(string.hexdigits)


class InvalidHashError(ValueError):
    """A hash string that is not valid for its kind."""


def normalize(kind: str, value: str) -> str:
    """Return ``value`` as lower-case hex after checking it fits ``kind``."""
    if kind not in HEX_LENGTHS:
        raise InvalidHashError(f"unknown hash kind {kind!r} (known: {', '.join(HEX_LENGTHS)})")
    text = value.strip().lower()
    want = HEX_LENGTHS[kind]
    if len(text) != want:
        raise InvalidHashError(f"{kind} hash must be {want} hex characters, got {len(text)}")
    if not _HEX.issuperset(text):
        raise InvalidHashError(f"{kind} hash contains non-hex characters")
    return text


def infer_kind(value: str) -> str | None:
    """The kind a bare hex string must be, or None where its length is ambiguous or unknown."""
    matches = [k for k, n in HEX_LENGTHS.items() if n == len(value.strip())]
    return matches[0] if len(matches) == 1 else None


def parse_query(text: str) -> tuple[tuple[str, ...], str]:
    """The kinds a hash given on its own may be, and its normalised value.

    ``kind:value`` (``pdq:``, ``md5:``...) names the kind; otherwise the length
    decides, and 64 hex characters, which SHA-256 and PDQ share, are both.
    Raises :class:`InvalidHashError` with the reason when the text is no hash.
    """
    text = text.strip()
    prefix, sep, rest = text.partition(":")
    if sep:
        kind = prefix.strip().lower()
        return (kind,), normalize(kind, rest)
    candidates = tuple(k for k, n in HEX_LENGTHS.items() if n == len(text))
    if not candidates:
        raise InvalidHashError(
            f"not a hash: {len(text)} characters (MD5 has 32, SHA-1 40, SHA-256 and PDQ 64); "
            "or give its kind as kind:value"
        )
    return candidates, normalize(candidates[0], text)
