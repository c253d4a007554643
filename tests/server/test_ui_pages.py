"""The users, lists and security pages of the web UI (TestClient with a logged-in session)."""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from vakta import bundles
from vakta.server import totp
from vakta.server.app import create_app
from vakta.server.auth import CSRF_HEADER
from vakta.server.db import Database
from vakta.server.models import AuditEntry, Role, User, utcnow
from vakta.server.settings import Settings

from .conftest import PASSWORD, Console

CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


@pytest.fixture
def ui(database_url: str, db: Database, tmp_path: Path) -> Iterator[Console]:
    """The console in process with its own folder (lists and signing key under ``tmp_path``)."""
    app = create_app(Settings(database_url=database_url, home=tmp_path / "server"), db)
    with TestClient(app) as client:
        yield Console(app, db, client)


def _csrf(page: str) -> str:
    match = CSRF.search(page)
    assert match, "no CSRF field on the page"
    return match.group(1)


def _log_in(console: Console, username: str, code: str = "", password: str = PASSWORD) -> Any:
    client = TestClient(console.app)
    form = client.get("/ui/login")
    data = {"csrf_token": _csrf(form.text), "username": username, "password": password, "totp": code}
    return client, client.post("/ui/login", data=data, follow_redirects=False)


def _browser(console: Console, username: str, role: Role | None) -> tuple[TestClient, str]:
    """A logged-in browser-like client and its session's CSRF token (``role``: make the user first)."""
    if role is not None:
        console.user(username, role)
    client, done = _log_in(console, username)
    assert done.status_code == 303, done.text
    page = client.get("/ui/security")
    return client, _csrf(page.text)


def _user(db: Database, username: str) -> User:
    with db.read() as session:
        return session.execute(select(User).where(User.username == username)).scalar_one()


def _actions(db: Database) -> list[tuple[str, str, dict[str, Any]]]:
    with db.read() as session:
        rows = session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()
        return [(e.action, e.target, json.loads(e.details)) for e in rows]


def _row(page: str, user_id: int) -> str:
    match = re.search(rf'<tr id="user-{user_id}">(.*?)</tr>', page, re.S)
    assert match, f"no row for user {user_id}"
    return match.group(1)


def test_the_users_page_is_for_admins_and_shows_each_account(ui: Console) -> None:
    admin, _ = _browser(ui, "root", Role.ADMIN)
    ui.user("alice", Role.AUDITOR)
    with ui.db.write() as session:
        session.execute(
            update(User)
            .where(User.username == "alice")
            .values(
                totp_enabled_at=utcnow(), totp_secret="A" * 32, locked_until=utcnow() + timedelta(minutes=5)
            )
        )
    page = admin.get("/ui/users")
    assert page.status_code == 200 and 'href="/ui/users"' in page.text
    row = _row(page.text, _user(ui.db, "alice").id)
    assert "alice" in row and "auditor" in row and "TOTP on" in row and "locked" in row
    assert "A" * 32 not in page.text  # a secret is never shown to anyone else
    root_row = _row(page.text, _user(ui.db, "root").id)
    assert "TOTP on" not in root_row and "Disable" not in root_row  # no disabling oneself here

    analyst, _ = _browser(ui, "bob", Role.ANALYST)
    assert analyst.get("/ui/users").status_code == 403
    assert 'href="/ui/users"' not in analyst.get("/ui/").text


def test_an_admin_creates_a_user_from_the_page(ui: Console) -> None:
    admin, csrf = _browser(ui, "root", Role.ADMIN)
    form = {"csrf_token": csrf, "username": "carol", "password": PASSWORD, "role": "analyst"}
    assert admin.post("/ui/users", data={**form, "csrf_token": "forged"}).status_code == 403
    short = admin.post("/ui/users", data={**form, "password": "short"})
    assert short.status_code == 409 and "12 characters" in short.text
    bad_role = admin.post("/ui/users", data={**form, "role": "agent-enrolment"})
    assert bad_role.status_code in (409, 422)
    done = admin.post("/ui/users", data=form, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/ui/users?done=created"
    assert _user(ui.db, "carol").role == "analyst"
    assert admin.post("/ui/users", data=form).status_code == 409  # exists already
    assert ("user.create", "user:carol", {"role": "analyst"}) in _actions(ui.db)


def test_disabling_a_user_ends_their_sessions_and_revokes_their_tokens(ui: Console) -> None:
    admin, csrf = _browser(ui, "root", Role.ADMIN)
    carol, carol_csrf = _browser(ui, "carol", Role.ADMIN)
    made = carol.post("/api/v1/tokens", json={"role": "auditor"}, headers={CSRF_HEADER: carol_csrf})
    assert made.status_code == 201
    token = made.json()["token"]
    assert ui.client.get("/api/v1/incidents", headers=ui.headers(token)).status_code == 200
    carol_id = _user(ui.db, "carol").id

    refused = admin.post(f"/ui/users/{_user(ui.db, 'root').id}/disable", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "yourself" in refused.text
    done = admin.post(
        f"/ui/users/{carol_id}/disable",
        data={"csrf_token": csrf, "revoke_tokens": "1"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/ui/users?done=disabled"
    assert carol.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"
    assert ui.client.get("/api/v1/incidents", headers=ui.headers(token)).status_code == 401
    assert _log_in(ui, "carol")[1].status_code == 401
    assert "disabled" in _row(admin.get("/ui/users").text, carol_id)
    disabled = [a for a in _actions(ui.db) if a[0] == "user.disable"]
    assert disabled == [("user.disable", "user:carol", {"sessions_ended": 1, "tokens_revoked": 1})]

    enabled = admin.post(f"/ui/users/{carol_id}/enable", data={"csrf_token": csrf}, follow_redirects=False)
    assert enabled.status_code == 303
    assert _log_in(ui, "carol")[1].status_code == 303
    assert (
        carol.get("/ui/", follow_redirects=False).headers["location"] == "/ui/login"
    )  # old session stays ended
    assert ui.client.get("/api/v1/incidents", headers=ui.headers(token)).status_code == 401


def test_disabling_through_the_api_may_keep_tokens(ui: Console) -> None:
    carol, carol_csrf = _browser(ui, "carol", Role.ADMIN)
    token = carol.post("/api/v1/tokens", json={"role": "auditor"}, headers={CSRF_HEADER: carol_csrf}).json()[
        "token"
    ]
    carol_id = _user(ui.db, "carol").id
    url = f"/api/v1/users/{carol_id}/disable"
    assert ui.client.post(url, json={}, headers=ui.as_(Role.ANALYST)).status_code == 403
    done = ui.client.post(url, json={"revoke_tokens": False}, headers=ui.as_(Role.ADMIN))
    assert (
        done.status_code == 200 and done.json()["sessions_ended"] == 1 and done.json()["tokens_revoked"] == 0
    )
    assert ui.client.get("/api/v1/incidents", headers=ui.headers(token)).status_code == 200
    assert carol.get("/api/v1/session").status_code == 401
    assert (
        ui.client.post("/api/v1/users/999999/disable", json={}, headers=ui.as_(Role.ADMIN)).status_code == 404
    )


def test_an_admin_resets_a_second_factor_and_unlocks_from_the_page(ui: Console) -> None:
    admin, csrf = _browser(ui, "root", Role.ADMIN)
    ui.user("alice", Role.ANALYST)
    alice_id = _user(ui.db, "alice").id
    with ui.db.write() as session:
        session.execute(
            update(User)
            .where(User.id == alice_id)
            .values(totp_enabled_at=utcnow(), totp_secret=totp.new_secret(), failed_logins=7)
        )
    reset = admin.post(f"/ui/users/{alice_id}/totp/reset", data={"csrf_token": csrf}, follow_redirects=False)
    assert reset.status_code == 303 and reset.headers["location"] == "/ui/users?done=totp-reset"
    assert _user(ui.db, "alice").totp_enabled_at is None
    unlocked = admin.post(f"/ui/users/{alice_id}/unlock", data={"csrf_token": csrf}, follow_redirects=False)
    assert unlocked.status_code == 303 and _user(ui.db, "alice").failed_logins == 0
    assert "second factor was removed" in admin.get("/ui/users?done=totp-reset").text
    assert admin.post("/ui/users/999999/unlock", data={"csrf_token": csrf}).status_code == 404


def test_the_lists_page_shows_counts_version_and_key_never_a_hash(ui: Console) -> None:
    hashes = [hashlib.md5(f"benign {n}".encode()).hexdigest() for n in range(3)]
    imported = ui.client.put(
        "/api/v1/lists/partner?format=text&kind=md5",
        content="\n".join(hashes).encode(),
        headers=ui.as_(Role.ADMIN),
    )
    assert imported.status_code == 200, imported.text
    auditor, _ = _browser(ui, "audrey", Role.AUDITOR)
    page = auditor.get("/ui/lists")
    assert page.status_code == 200
    listing = ui.client.get("/api/v1/lists", headers=ui.as_(Role.AUDITOR)).json()
    public = bundles.parse_public_key(listing["public_key"])
    assert bundles.fingerprint(public) in page.text
    assert f'id="bundle-version">{listing["version"]}<' in page.text
    row = re.search(r"<td>partner</td>(.*?)</tr>", page.text, re.S)
    assert row and "detect" in row.group(1) and '<td class="num">3</td>' in row.group(1)
    for value in hashes:
        assert value not in page.text and value.upper() not in page.text
    assert 'href="/ui/lists"' in page.text


def test_a_person_enrols_a_second_factor_on_the_security_page(ui: Console) -> None:
    client, csrf = _browser(ui, "alice", Role.ANALYST)
    page = client.get("/ui/security")
    assert page.status_code == 200 and "Second factor (TOTP): off" in page.text
    assert client.post("/ui/security/totp", data={"csrf_token": "forged"}).status_code == 403
    started = client.post("/ui/security/totp", data={"csrf_token": csrf})
    assert started.status_code == 200 and started.url.path == "/ui/security"
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', started.text)
    uri = re.search(r'id="totp-uri">([^<]+)<', started.text)
    assert secret and uri and _user(ui.db, "alice").totp_secret == secret.group(1)
    assert html.unescape(uri.group(1)).startswith("otpauth://totp/Vakta:alice?secret=" + secret.group(1))
    wrong = client.post("/ui/security/totp/confirm", data={"csrf_token": csrf, "code": "12345x"})
    assert wrong.status_code == 400 and _user(ui.db, "alice").totp_enabled_at is None
    code = totp.code_at(secret.group(1), datetime.now(UTC))
    done = client.post("/ui/security/totp/confirm", data={"csrf_token": csrf, "code": code})
    assert done.status_code == 200 and "Your second factor is enabled" in done.text
    assert secret.group(1) not in done.text  # shown only while enrolling

    # The login form now needs the code: the same answer without it as for a wrong password.
    _, without = _log_in(ui, "alice")
    assert without.status_code == 401 and "wrong username or password" in without.text
    _, wrong_password = _log_in(ui, "alice", password="not the password")
    assert wrong_password.text.count("wrong username") == without.text.count("wrong username")
    later = totp.code_at(secret.group(1), datetime.now(UTC) + timedelta(seconds=30))
    browser, with_code = _log_in(ui, "alice", code=later)
    assert with_code.status_code == 303 and with_code.headers["location"] == "/ui/"
    assert "alice (analyst)" in browser.get("/ui/").text


def test_the_login_page_has_a_code_field_and_shows_a_lockout(ui: Console) -> None:
    ui.user("alice", Role.ANALYST)
    form = TestClient(ui.app).get("/ui/login")
    assert 'name="totp"' in form.text and 'autocomplete="one-time-code"' in form.text
    for _ in range(5):
        assert _log_in(ui, "alice", password="wrong password!!")[1].status_code == 401
    _, locked = _log_in(ui, "alice")
    assert locked.status_code == 429 and "too many failed logins" in locked.text
    assert "vakta_session" not in locked.cookies


def test_a_required_second_factor_sends_people_to_the_security_page(
    database_url: str, db: Database, tmp_path: Path
) -> None:
    app = create_app(Settings(database_url=database_url, home=tmp_path / "server", require_totp=True), db)
    with TestClient(app) as client:
        console = Console(app, db, client)
        console.user("alice", Role.ANALYST)
        browser, done = _log_in(console, "alice")
        assert done.status_code == 303
        for path in ("/ui/", "/ui/incidents", "/ui/lists"):
            moved = browser.get(path, follow_redirects=False)
            assert moved.status_code == 303 and moved.headers["location"] == "/ui/security", path
        page = browser.get("/ui/security")
        assert page.status_code == 200 and "requires a second factor" in page.text
        csrf = _csrf(page.text)
        started = browser.post("/ui/security/totp", data={"csrf_token": csrf})
        secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', started.text)
        assert secret
        code = totp.code_at(secret.group(1), datetime.now(UTC))
        assert (
            browser.post("/ui/security/totp/confirm", data={"csrf_token": csrf, "code": code}).status_code
            == 200
        )
        assert browser.get("/ui/incidents").status_code == 200
        out = browser.post("/ui/logout", data={"csrf_token": csrf}, follow_redirects=False)
        assert out.headers["location"] == "/ui/login"


def test_the_new_pages_need_a_session(ui: Console) -> None:
    anonymous = TestClient(ui.app)
    for path in ("/ui/users", "/ui/lists", "/ui/security"):
        response = anonymous.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/ui/login", path
    for path in ("/ui/users", "/ui/users/1/disable", "/ui/security/totp", "/ui/security/totp/confirm"):
        refused = anonymous.post(path, data={"csrf_token": "x"}, follow_redirects=False)
        assert refused.headers["location"] == "/ui/login", path
    page = _browser(ui, "root", Role.ADMIN)[0].get("/ui/users")
    assert "default-src 'none'" in page.headers["content-security-policy"]
