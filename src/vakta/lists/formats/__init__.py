"""List file formats: each module defines one :class:`ListFormat` and registers it here.

The registry is filled from the ``vakta.list_formats`` entry points, where the
built-in formats are declared exactly as a plugin's would be.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Protocol

from vakta.lists.model import ListRecord, ParseIssue
from vakta.registry import Registry


class ListFormat(Protocol):
    """Reads (and optionally writes) one hash-list file format.

    A format whose lists are known-good by nature (NIST NSRL) may also set a
    class attribute ``known_good = True``: the command line then imports it as
    a known-good list without ``--ignore`` (see :func:`known_good`).
    """

    #: Name used on the command line (``--format NAME``).
    name: str

    def sniff(self, head: bytes, filename: str) -> bool:
        """True when the first bytes of a file (up to 64 KiB) look like this format."""
        ...

    def parse(self, stream: IO[bytes], kind: str | None) -> Iterator[ListRecord | ParseIssue]:
        """Yield records and per-line problems; never raise on bad content.

        ``kind`` is the ``--kind`` option: the hash kind of bare values.
        """
        ...

    def export(self, records: Iterable[ListRecord], out: IO[str], list_name: str) -> None:
        """Write records in this format; raise NotImplementedError if import-only."""
        ...


list_formats: Registry[ListFormat] = Registry("list_formats")

#: Order in which ``--format auto`` asks formats whether a file is theirs;
#: the most specific first, plain text last.
SNIFF_ORDER = (
    "nsrl",
    "ncmec",
    "vics",
    "hashdeep",
    "clamav",
    "checksums",
    "threatexchange",
    "vpdq",
    "csv",
    "text",
)


def detect(head: bytes, filename: str) -> ListFormat:
    """The format of a list file judged from its first bytes; plain text as the fallback."""
    names = [n for n in SNIFF_ORDER if n in list_formats.names()]
    names += [n for n in list_formats.names() if n not in names]
    for name in names:
        fmt = list_formats.get(name)
        if fmt.sniff(head, filename):
            return fmt
    return list_formats.get("text")


def known_good(fmt: ListFormat) -> bool:
    """Whether lists of this format list only known-good files (an optional attribute of a format)."""
    return bool(getattr(fmt, "known_good", False))
