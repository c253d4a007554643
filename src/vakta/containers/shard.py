"""Splitting one large container's members between worker processes.

One disk image is one item; hashed by one process, it would use one core
while the others wait (the GIL serialises the member threads' Python work).
A reader whose listing is cheap and whose members read independently of each
other (``shardable = True``: disk images, ZIP) lets every worker process list
the same container and hash only its share of the top-level members, chosen
by the same deterministic rule in each process, so no member is hashed twice
or missed, and none of their bytes cross a process boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vakta.containers import ContainerReader, Member

#: A member's weight beyond its bytes: opening, sniffing and decoding a small
#: picture costs as much as digesting about this many bytes.
MEMBER_WEIGHT = 1 << 20


def shardable(reader: ContainerReader | None) -> bool:
    """True if ``reader``'s containers may be split between processes (a plugin opts in)."""
    return bool(getattr(reader, "shardable", False))


@dataclass(slots=True)
class Shard:
    """Which top-level members one of ``count`` processes hashes, and their listing positions.

    Each member goes to the share with the least weight so far (bytes plus
    :data:`MEMBER_WEIGHT`), ties to the lowest index: every process computes
    the same split from the same listing.
    """

    index: int
    count: int
    #: Listing positions of the members this share took, in order.
    positions: list[int] = field(default_factory=list)
    _loads: list[int] = field(default_factory=list)
    _listed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count}")
        self._loads = [0] * self.count

    def owns(self, member: Member) -> bool:
        """Whether this share hashes ``member`` (called once per member, in listing order)."""
        position, self._listed = self._listed, self._listed + 1
        share = min(range(self.count), key=self._loads.__getitem__)
        self._loads[share] += MEMBER_WEIGHT + ((member.size or 0) if member.open else 0)
        if share != self.index:
            return False
        self.positions.append(position)
        return True
