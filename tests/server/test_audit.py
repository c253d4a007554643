"""The audit chain: intact after real work, and ``verify-audit`` names the first edited or deleted entry."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import delete, select, text, update

from vakta.server import audit
from vakta.server.db import Database
from vakta.server.models import AuditEntry, AuditHead, Role

from .conftest import Console, alert


@pytest.fixture
def worked(console: Console) -> Console:
    """A console with some history: enrolment, alerts, an incident moved on and noted."""
    _, secret = console.enrol()
    incident_id = console.submit(secret, alert(), alert(user="eve"))["results"][0]["incident_id"]
    analyst = console.as_(Role.ANALYST)
    console.client.patch(f"/api/v1/incidents/{incident_id}", json={"state": "triage"}, headers=analyst)
    console.client.post(f"/api/v1/incidents/{incident_id}/notes", json={"text": "noted"}, headers=analyst)
    return console


def _verdict(db: Database) -> audit.Verdict:
    with db.read() as session:
        return audit.verify(session)


def _entries(db: Database) -> int:
    with db.read() as session:
        return len(session.execute(select(AuditEntry.seq)).all())


def test_a_worked_console_has_an_intact_chain(worked: Console, run_cli) -> None:  # type: ignore[no-untyped-def]
    auditor = worked.as_(Role.AUDITOR)  # (making the token is audited too)
    verdict = _verdict(worked.db)
    assert verdict.intact and verdict.entries == _entries(worked.db) >= 8
    api = worked.client.get("/api/v1/audit/verify", headers=auditor).json()
    assert api["intact"] and api["head"] == verdict.head
    cli = run_cli("server", "verify-audit", "--database", worked.db.url.render_as_string(hide_password=False))
    assert cli.exit_code == 0, cli.stderr
    assert f"head {verdict.head}" in cli.stdout


def test_an_edited_entry_is_named(worked: Console, run_cli) -> None:  # type: ignore[no-untyped-def]
    with worked.db.write() as session:  # an insider softens the record, straight in the database
        session.execute(update(AuditEntry).where(AuditEntry.seq == 5).values(actor="user:someone-else"))
    assert _verdict(worked.db).problem == "audit entry 5 edited (its hash no longer matches its contents)"
    cli = run_cli("server", "verify-audit", "--database", worked.db.url.render_as_string(hide_password=False))
    assert cli.exit_code == 1
    assert "audit entry 5 edited" in cli.stderr


def test_an_edited_and_rehashed_entry_breaks_the_link(worked: Console) -> None:
    with worked.db.write() as session:
        entry = session.execute(select(AuditEntry).where(AuditEntry.seq == 3)).scalar_one()
        details = json.dumps({"forged": True})
        entry.details = details
        entry.hash = audit.entry_hash(
            entry.prev_hash, entry.seq, entry.at, entry.actor, entry.action, entry.target, details
        )
    assert _verdict(worked.db).problem == "audit entry 3 or 4 edited (entry 4 no longer links to 3)"


@pytest.mark.parametrize(
    ("seqs", "problem"),
    [
        ([2], "audit entry 2 deleted (entry 3 follows entry 1)"),
        ([1], "audit entry 1 deleted (entry 2 follows entry 0)"),
        ([3, 4], "audit entry 3 to 4 deleted (entry 5 follows entry 2)"),
    ],
)
def test_a_deleted_entry_is_named(worked: Console, seqs: list[int], problem: str) -> None:
    with worked.db.write() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq.in_(seqs)))
    assert _verdict(worked.db).problem == problem


def test_deleting_the_newest_entries_is_found_through_the_head(worked: Console, run_cli) -> None:  # type: ignore[no-untyped-def]
    last = _entries(worked.db)
    with worked.db.write() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq >= last - 1))
    assert (
        _verdict(worked.db).problem
        == f"audit entry {last - 1} to {last} deleted (the chain head records {last})"
    )
    cli = run_cli("server", "verify-audit", "--database", worked.db.url.render_as_string(hide_password=False))
    assert cli.exit_code == 1 and f"audit entry {last - 1} to {last} deleted" in cli.stderr


def test_an_edited_head_is_found(worked: Console) -> None:
    with worked.db.write() as session:
        session.execute(update(AuditHead).values(hash="f" * 64))
    assert "chain head edited" in (_verdict(worked.db).problem or "")


def test_entries_are_numbered_in_order_without_gaps(worked: Console) -> None:
    with worked.db.read() as session:
        seqs = [s for (s,) in session.execute(text("SELECT seq FROM audit_log ORDER BY seq"))]
    assert seqs == list(range(1, len(seqs) + 1))
    auditor = worked.as_(Role.AUDITOR)
    follow = worked.client.get("/api/v1/audit", params={"after": 3, "limit": 2}, headers=auditor)
    assert [e["seq"] for e in follow.json()] == [4, 5]
