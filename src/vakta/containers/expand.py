"""Open containers recursively and hash every member, each with its location chain.

Every member becomes one :class:`~vakta.signals.model.Signals`, in depth-first
order, whatever goes wrong: an unreadable member, a limit reached or a reader
failing on damaged bytes is an error on that member (or on the container,
when it stops the listing) and the rest goes on.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from vakta.containers import Budget, LimitedStream, LimitExceeded, Limits, Member, reader_for
from vakta.signals.compute import KnownGoodCheck, compute_signals
from vakta.signals.model import HashOptions, Signals

log = logging.getLogger(__name__)

Opener = Callable[[], BinaryIO]


@dataclass(slots=True)
class Expansion:
    """The settings and the shared budget of one top-level item's expansion."""

    options: HashOptions
    known_good: KnownGoodCheck | None
    budget: Budget

    @classmethod
    def start(cls, options: HashOptions, known_good: KnownGoodCheck | None, limits: Limits) -> Expansion:
        return cls(options, known_good, Budget(limits))


def member_signals(parent: Signals, open_parent: Opener, expansion: Expansion) -> list[Signals]:
    """Signals of every member below ``parent`` (not ``parent`` itself); errors land on ``parent``."""
    out: list[Signals] = []
    _expand(parent, open_parent, expansion, frozenset(), out)
    return out


def _expand(
    parent: Signals, open_parent: Opener, expansion: Expansion, ancestors: frozenset[str], out: list[Signals]
) -> None:
    if reader_for(parent.type) is None:
        return
    try:
        with open_parent() as stream:
            _list_members(parent, _seekable(stream, expansion.options), expansion, ancestors, out)
    except LimitExceeded as exc:
        parent.errors.append(str(exc))
    except OSError as exc:
        parent.errors.append(f"cannot open as a container: {exc.strerror or exc}")


def _list_members(
    parent: Signals, stream: BinaryIO, expansion: Expansion, ancestors: frozenset[str], out: list[Signals]
) -> None:
    reader = reader_for(parent.type)
    if reader is None:
        return
    limits = expansion.budget.limits
    if len(parent.inside) >= limits.max_depth:
        parent.errors.append(f"nested deeper than {limits.max_depth} levels (--max-depth): not opened")
        return
    if parent.sha256 and parent.sha256 in ancestors:
        parent.errors.append("contains itself (a recursive archive): not opened again")
        return
    inner = ancestors | {parent.sha256 or ""}
    try:
        for member in reader.members(stream):
            expansion.budget.count_member()
            _hash_member(parent, member, expansion, inner, out)
    except LimitExceeded as exc:
        parent.errors.append(str(exc))
    except ValueError as exc:
        parent.errors.append(f"{reader.name}: {exc}")
    except Exception as exc:  # a reader bug or damaged bytes must cost only this container
        log.exception("%s reader failed on %s", reader.name, parent.location)
        parent.errors.append(f"{reader.name} reader failed: {type(exc).__name__}: {exc}")


def _hash_member(
    parent: Signals, member: Member, expansion: Expansion, ancestors: frozenset[str], out: list[Signals]
) -> None:
    signals = Signals(
        path=parent.path,
        path_b64=parent.path_b64,
        inside=[*parent.inside, member.name],
        deleted=member.deleted,
        parent_md5=parent.md5,
    )
    out.append(signals)
    if member.error or member.open is None:
        signals.errors.append(member.error or "member cannot be read")
        return
    budget = expansion.budget

    def open_member() -> BinaryIO:
        assert member.open is not None
        return LimitedStream(member.open(), member, budget)  # type: ignore[return-value]

    try:
        with open_member() as stream:
            compute_signals(stream, signals, expansion.options, expansion.known_good)
    except LimitExceeded as exc:
        _clear_partial(signals)
        signals.errors.append(str(exc))
        return
    except OSError as exc:
        signals.errors.append(f"cannot read member: {exc.strerror or exc}")
        return
    except (ValueError, EOFError) as exc:  # corrupt compressed data, CRC mismatch, truncation
        _clear_partial(signals)
        signals.errors.append(f"cannot read member: {exc}")
        return
    if member.size is not None and signals.size is not None and signals.size != member.size:
        signals.errors.append(f"container says {member.size:,} bytes, member has {signals.size:,}")
    if not signals.skipped:
        _expand(signals, open_member, expansion, ancestors, out)


def _clear_partial(signals: Signals) -> None:
    """Digests of a member read only in part describe no file: drop them."""
    signals.md5 = signals.sha1 = signals.sha256 = None
    signals.size = None


def _seekable(stream: BinaryIO, options: HashOptions) -> BinaryIO:
    """Container readers need to seek; a stream that cannot is held in memory up to the decode limit."""
    if stream.seekable():
        return stream
    data = stream.read(options.max_decode_bytes + 1)
    if len(data) > options.max_decode_bytes:
        raise LimitExceeded(
            f"nested container over {options.max_decode_bytes:,} bytes in a stream that cannot seek: not opened"
        )
    return io.BytesIO(data)
