"""The optional TOTP second factor: enrolment, logins that need a code, replays, resets, --require-totp."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest
from conftest import RunCli
from fastapi.testclient import TestClient
from sqlalchemy import select

from vakta.server import totp
from vakta.server.app import create_app
from vakta.server.auth import CSRF_HEADER
from vakta.server.db import Database
from vakta.server.models import AuditEntry, Role, User
from vakta.server.settings import Settings

from .conftest import PASSWORD, Console


def _login(client: TestClient, username: str, password: str = PASSWORD, code: str | None = None) -> Any:
    body: dict[str, Any] = {"username": username, "password": password}
    if code is not None:
        body["totp"] = code
    return client.post("/api/v1/session", json=body)


def _session(console: Console, username: str, code: str | None = None) -> tuple[TestClient, str]:
    """A browser-like client logged in as ``username`` and its CSRF token."""
    client = TestClient(console.app)
    response = _login(client, username, code=code)
    assert response.status_code == 200, response.text
    return client, response.json()["csrf_token"]


def _user(db: Database, username: str) -> User:
    with db.read() as session:
        return session.execute(select(User).where(User.username == username)).scalar_one()


def _audit(db: Database) -> list[AuditEntry]:
    with db.read() as session:
        return list(session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars())


def _enrolled(console: Console, username: str) -> str:
    """Enrol and confirm a second factor for ``username``; its secret."""
    client, csrf = _session(console, username)
    started = client.post("/api/v1/session/totp", headers={CSRF_HEADER: csrf})
    assert started.status_code == 200, started.text
    secret: str = started.json()["secret"]
    confirmed = client.post(
        "/api/v1/session/totp/confirm",
        json={"code": totp.code_at(secret, datetime.now(UTC))},
        headers={CSRF_HEADER: csrf},
    )
    assert confirmed.status_code == 200, confirmed.text
    return secret


def _code(secret: str, steps_ahead: int = 0) -> str:
    return totp.code_at(secret, datetime.now(UTC) + timedelta(seconds=30 * steps_ahead))


def test_enrolment_needs_a_confirmed_code_and_then_logins_need_one(console: Console) -> None:
    console.user("alice", Role.ANALYST)
    client, csrf = _session(console, "alice")
    assert client.post("/api/v1/session/totp").status_code == 403  # the CSRF token is needed
    started = client.post("/api/v1/session/totp", headers={CSRF_HEADER: csrf})
    assert started.status_code == 200, started.text
    secret, uri = started.json()["secret"], started.json()["uri"]
    assert len(secret) == 32 and pyotp.parse_uri(uri).secret == secret
    assert uri.startswith("otpauth://totp/Vakta:alice?") and "issuer=Vakta" in uri
    stored = _user(console.db, "alice")
    assert stored.totp_secret == secret and stored.totp_enabled_at is None
    assert _login(TestClient(console.app), "alice").status_code == 200  # not in force before it is confirmed

    wrong = f"{(int(_code(secret)) + 1) % 1_000_000:06d}"
    refused = client.post("/api/v1/session/totp/confirm", json={"code": wrong}, headers={CSRF_HEADER: csrf})
    assert refused.status_code == 400 and _user(console.db, "alice").totp_enabled_at is None
    confirm_code = _code(secret)
    done = client.post(
        "/api/v1/session/totp/confirm", json={"code": confirm_code}, headers={CSRF_HEADER: csrf}
    )
    assert done.status_code == 200 and done.json() == {"enabled": True}
    assert _user(console.db, "alice").totp_enabled_at is not None
    again = client.post("/api/v1/session/totp", headers={CSRF_HEADER: csrf})
    assert again.status_code == 409  # replacing an enabled factor takes an admin's reset

    fresh = TestClient(console.app)
    assert _login(fresh, "alice").status_code == 401
    assert _login(fresh, "alice", code=wrong).status_code == 401
    assert _login(fresh, "alice", code=confirm_code).status_code == 401  # used for the confirmation
    good = _login(fresh, "alice", code=_code(secret, 1))
    assert good.status_code == 200, good.text
    assert fresh.get("/api/v1/session").json()["name"] == "alice"


def test_every_failure_answers_the_same_whichever_part_was_wrong(console: Console) -> None:
    console.user("alice", Role.ANALYST)
    console.user("bob", Role.ANALYST)
    secret = _enrolled(console, "alice")
    client = TestClient(console.app)
    answers = [
        _login(client, "alice", password="wrong password!!", code=_code(secret, 1)),  # right code
        _login(client, "alice"),  # right password, no code
        _login(client, "alice", code="000000" if _code(secret) != "000000" else "111111"),
        _login(client, "alice", code="not a code"),
        _login(client, "nobody"),
        _login(client, "bob", password="wrong password!!"),
    ]
    assert {a.status_code for a in answers} == {401}
    assert {a.json()["detail"] for a in answers} == {"wrong username or password, or a missing or wrong code"}
    assert {a.headers.get("retry-after") for a in answers} == {None}
    assert _user(console.db, "alice").failed_logins == 4


def test_a_code_is_accepted_once_even_within_its_step(console: Console) -> None:
    console.user("alice", Role.AUDITOR)
    secret = _enrolled(console, "alice")
    now = datetime.now(UTC)
    code, step = totp.code_at(secret, now + timedelta(seconds=30)), pyotp.TOTP(secret).timecode(now) + 1
    assert _login(TestClient(console.app), "alice", code=code).status_code == 200
    assert _login(TestClient(console.app), "alice", code=code).status_code == 401
    assert _login(TestClient(console.app), "alice", code=_code(secret, -1)).status_code == 401  # older
    entries = [e for e in _audit(console.db) if e.action == "session.login"]
    assert json.loads(entries[-1].details) == {totp.STEP_KEY: step}
    assert totp.matching_step(secret, code, now + timedelta(seconds=30)) == step
    assert totp.matching_step(secret, code, now + timedelta(seconds=120)) is None  # too far from its step


def test_two_logins_with_one_code_at_the_same_time_let_one_in(console: Console) -> None:
    console.user("alice", Role.AUDITOR)
    secret = _enrolled(console, "alice")
    code = _code(secret, 1)
    codes: list[int] = []
    barrier = threading.Barrier(4)

    def attempt() -> None:
        client = TestClient(console.app)
        barrier.wait()
        codes.append(_login(client, "alice", code=code).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(codes) == [200, 401, 401, 401]


def test_the_audit_log_records_enrolment_but_never_the_secret(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    console.user("alice", Role.ANALYST)
    caplog.set_level("DEBUG")
    secret = _enrolled(console, "alice")
    assert _login(TestClient(console.app), "alice", code=_code(secret, 1)).status_code == 200
    entries = _audit(console.db)
    actions = [e.action for e in entries]
    assert "user.totp-enrol" in actions and "user.totp-enable" in actions
    for entry in entries:
        assert secret not in entry.details and secret.lower() not in entry.details.lower()
    assert secret not in caplog.text


def test_an_admin_resets_a_second_factor_and_others_cannot(console: Console) -> None:
    console.user("alice", Role.ANALYST)
    _enrolled(console, "alice")
    user_id = _user(console.db, "alice").id
    url = f"/api/v1/users/{user_id}/totp/reset"
    assert console.client.post(url, headers=console.as_(Role.ANALYST)).status_code == 403
    assert _login(TestClient(console.app), "alice").status_code == 401
    reset = console.client.post(url, headers=console.as_(Role.ADMIN))
    assert reset.status_code == 200 and reset.json()["totp_enabled"] is False
    assert (
        console.client.post("/api/v1/users/999999/totp/reset", headers=console.as_(Role.ADMIN)).status_code
        == 404
    )
    stored = _user(console.db, "alice")
    assert stored.totp_secret is None and stored.totp_enabled_at is None
    assert _login(TestClient(console.app), "alice").status_code == 200
    entry = [e for e in _audit(console.db) if e.action == "user.totp-reset"][-1]
    assert entry.target == "user:alice" and json.loads(entry.details) == {"was_enabled": True}
    assert entry.actor.startswith("token:")


def test_the_command_line_resets_a_second_factor(
    console: Console, database_url: str, run_cli: RunCli
) -> None:
    console.user("alice", Role.ANALYST)
    _enrolled(console, "alice")
    done = run_cli("server", "user", "totp-reset", "alice", "--database", database_url)
    assert done.exit_code == 0, done.stderr
    assert _user(console.db, "alice").totp_enabled_at is None
    assert _login(TestClient(console.app), "alice").status_code == 200
    entry = [e for e in _audit(console.db) if e.action == "user.totp-reset"][-1]
    assert entry.actor == "cli"
    missing = run_cli("server", "user", "totp-reset", "nobody", "--database", database_url)
    assert missing.exit_code == 1 and "no user 'nobody'" in missing.stderr


def test_a_bearer_token_enrols_nothing(console: Console) -> None:
    response = console.client.post("/api/v1/session/totp", headers=console.as_(Role.ADMIN))
    assert response.status_code == 403


def test_required_totp_lets_a_person_without_one_only_enrol(database_url: str, db: Database) -> None:
    app = create_app(Settings(database_url=database_url, require_totp=True), db)
    with TestClient(app) as admin_client:
        console = Console(app, db, admin_client)
        console.user("alice", Role.ANALYST)
        client = TestClient(app)
        login = _login(client, "alice")
        assert login.status_code == 200 and login.json()["totp_enrolment_required"] is True
        csrf = login.json()["csrf_token"]
        refused = client.get("/api/v1/incidents")
        assert refused.status_code == 403 and "second factor" in refused.json()["detail"]
        assert client.get("/api/v1/session").status_code == 200
        ui = client.get("/ui/incidents", follow_redirects=False)
        assert ui.status_code == 303 and ui.headers["location"] == "/ui/security"
        assert console.client.get("/api/v1/incidents", headers=console.as_(Role.AUDITOR)).status_code == 200

        secret = client.post("/api/v1/session/totp", headers={CSRF_HEADER: csrf}).json()["secret"]
        confirmed = client.post(
            "/api/v1/session/totp/confirm", json={"code": _code(secret)}, headers={CSRF_HEADER: csrf}
        )
        assert confirmed.status_code == 200
        assert client.get("/api/v1/incidents").status_code == 200  # the same session, now enrolled
        again = _login(TestClient(app), "alice", code=_code(secret, 1))
        assert again.status_code == 200 and again.json()["totp_enrolment_required"] is False
        assert client.delete("/api/v1/session", headers={CSRF_HEADER: csrf}).status_code == 204
