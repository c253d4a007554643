"""A URL list's hosts as a DNS Response Policy Zone, so BIND or Unbound block them at name resolution."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO

from vakta.icap.urls import hosts
from vakta.lists.store import EntryRow

#: ``CNAME .`` is RPZ's NXDOMAIN action: the name does not resolve.
ZONE_HEAD = """\
; Response policy zone of the Vakta URL list {name!r}: each host (and its subdomains) answers NXDOMAIN.
$TTL 300
@ IN SOA localhost. hostmaster.localhost. ( {serial} 3600 600 86400 300 )
@ IN NS localhost.
"""


def write_zone(rows: Iterable[EntryRow], out: IO[str], name: str) -> int:
    """Write the zone of the rows' whole-host entries; the number of hosts (0: nothing was written)."""
    found = hosts(rows)
    if not found:
        return 0
    out.write(ZONE_HEAD.format(name=name, serial=datetime.now(UTC).strftime("%Y%m%d%H")))
    for host in found:
        out.write(f"{host} CNAME .\n*.{host} CNAME .\n")
    return len(found)
