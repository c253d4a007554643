"""Content type from the first bytes of a file, never from its name."""

from __future__ import annotations

import filetype

#: How many leading bytes detection looks at.
SNIFF_BYTES = 8192


def content_type(head: bytes) -> str:
    """MIME type of a file judged from its first bytes; ``application/octet-stream`` if unknown."""
    if not head:
        return "application/x-empty"
    kind = filetype.guess_mime(head[:SNIFF_BYTES])
    if kind:
        return str(kind)
    return "application/octet-stream"
