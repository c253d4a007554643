"""The audit log: append-only, hash-chained, so an edited or deleted entry is found by ``verify``.

Each entry's hash covers its number, time, actor, action, target, details and
the previous entry's hash. Appending locks the single ``audit_head`` row for
the rest of the transaction, so entries are numbered without gaps in commit
order: a forwarder (e.g. to a SIEM) can follow the log by number without
missing one. The head can be recorded elsewhere (``verify-audit`` prints it):
someone able to rewrite the whole database could otherwise rebuild a
consistent chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vakta.server.models import AuditEntry, AuditHead, utcnow

GENESIS = "0" * 64
_HEAD_ID = 1


def canonical_json(value: Any) -> str:
    """The one serialisation hashes are taken over: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(
    prev_hash: str, seq: int, at: datetime, actor: str, action: str, target: str, details: str
) -> str:
    body = {
        "prev": prev_hash,
        "seq": seq,
        "at": at.isoformat(),
        "actor": actor,
        "action": action,
        "target": target,
        "details": details,
    }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def append(session: Session, actor: str, action: str, target: str, details: dict[str, Any]) -> AuditEntry:
    """Add an entry in the caller's transaction (it is kept only if that commits).

    Call it last in a transaction: the head row stays locked until commit.
    """
    head = session.execute(select(AuditHead).where(AuditHead.id == _HEAD_ID).with_for_update()).scalar_one()
    at = utcnow()
    text = canonical_json(details)
    seq = head.seq + 1
    digest = entry_hash(head.hash, seq, at, actor, action, target, text)
    entry = AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        target=target,
        details=text,
        prev_hash=head.hash,
        hash=digest,
    )
    session.add(entry)
    head.seq, head.hash = seq, digest
    session.flush()
    return entry


def entry_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": json.loads(entry.details),
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


@dataclass(frozen=True)
class Verdict:
    """What ``verify`` found: entries checked, the head hash, and the first problem (None: intact)."""

    entries: int
    head: str
    problem: str | None

    @property
    def intact(self) -> bool:
        return self.problem is None


def verify(session: Session) -> Verdict:
    """Walk the whole chain in order and name the first entry that was edited or deleted."""
    head = session.execute(select(AuditHead).where(AuditHead.id == _HEAD_ID)).scalar_one()
    count, prev_seq, prev_hash = 0, 0, GENESIS
    for entry in _entries(session):
        problem = _check(entry, prev_seq, prev_hash)
        if problem:
            return Verdict(count, head.hash, problem)
        count, prev_seq, prev_hash = count + 1, entry.seq, entry.hash
    if head.seq > prev_seq:
        first = prev_seq + 1
        gone = f"{first}" if head.seq == first else f"{first} to {head.seq}"
        return Verdict(count, head.hash, f"audit entry {gone} deleted (the chain head records {head.seq})")
    if head.seq != prev_seq or head.hash != prev_hash:
        return Verdict(count, head.hash, f"audit chain head edited: it does not match entry {prev_seq}")
    return Verdict(count, head.hash, None)


def _entries(session: Session) -> Iterator[AuditEntry]:
    result = session.execute(select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=1000))
    yield from result.scalars()


def _check(entry: AuditEntry, prev_seq: int, prev_hash: str) -> str | None:
    if entry.seq != prev_seq + 1:
        missing = prev_seq + 1
        gone = f"{missing}" if entry.seq == missing + 1 else f"{missing} to {entry.seq - 1}"
        return f"audit entry {gone} deleted (entry {entry.seq} follows entry {prev_seq})"
    recomputed = entry_hash(
        entry.prev_hash, entry.seq, entry.at, entry.actor, entry.action, entry.target, entry.details
    )
    if recomputed != entry.hash:
        return f"audit entry {entry.seq} edited (its hash no longer matches its contents)"
    if entry.prev_hash != prev_hash:
        if prev_seq == 0:
            return f"audit entry {entry.seq} edited (the first entry must link to the genesis hash)"
        return (
            f"audit entry {prev_seq} or {entry.seq} edited (entry {entry.seq} no longer links to {prev_seq})"
        )
    return None
