"""What a container reader gives out, read whole: the tests of the readers compare it with what went in."""

from __future__ import annotations

import io
from typing import Any


def read_members(reader: Any, data: bytes) -> dict[str, bytes | str]:
    """Each member of the container ``data`` by name: its bytes, or its error when it cannot be read."""
    found: dict[str, bytes | str] = {}
    for member in reader.members(io.BytesIO(data)):
        if member.open is None:
            found[member.name] = member.error or ""
        else:
            with member.open() as stream:
                found[member.name] = stream.read()
    return found
