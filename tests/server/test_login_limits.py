"""Failed logins: lockout that grows, no oracle while locked, unknown names, the per-address limit."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import timedelta
from typing import Any

import argon2
import pytest
from conftest import RunCli
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from vakta.server import auth, logins
from vakta.server.db import Database
from vakta.server.logins import AddressLimiter, LoginGuard, lock_duration
from vakta.server.models import AuditEntry, Role, User, utcnow

from .conftest import PASSWORD, Console

WRONG = "wrong password!!"


def _login(client: TestClient, username: str, password: str = PASSWORD) -> Any:
    return client.post("/api/v1/session", json={"username": username, "password": password})


def _user(db: Database, username: str) -> User:
    with db.read() as session:
        return session.execute(select(User).where(User.username == username)).scalar_one()


def _actions(db: Database) -> list[tuple[str, str, dict[str, Any]]]:
    with db.read() as session:
        rows = session.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()
        return [(e.action, e.target, json.loads(e.details)) for e in rows]


def _fail(client: TestClient, username: str, times: int) -> None:
    for _ in range(times):
        assert _login(client, username, WRONG).status_code == 401


def test_lock_durations_double_from_a_minute_to_an_hour() -> None:
    assert [lock_duration(n, 5) for n in range(5)] == [None] * 5
    minutes = [lock_duration(n, 5) for n in range(5, 13)]
    assert minutes == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32, 60, 60)]
    assert lock_duration(10_000, 5) == timedelta(hours=1)
    assert lock_duration(3, 3) == timedelta(minutes=1)


def test_five_failures_lock_the_account_whatever_the_password(console: Console) -> None:
    console.user("alice", Role.ANALYST)
    client = TestClient(console.app)
    _fail(client, "alice", 5)
    stored = _user(console.db, "alice")
    assert stored.failed_logins == 5 and stored.locked_until is not None
    assert timedelta(seconds=50) < stored.locked_until - utcnow() <= timedelta(seconds=60)
    right, wrong = _login(client, "alice"), _login(client, "alice", WRONG)
    for answer in (right, wrong):
        assert answer.status_code == 429
        assert 50 <= int(answer.headers["retry-after"]) <= 60
    assert right.json() == wrong.json()
    assert "vakta_session" not in client.cookies
    lockouts = [a for a in _actions(console.db) if a[0] == "session.lockout"]
    assert len(lockouts) == 1 and lockouts[0][1] == "user:alice"
    assert lockouts[0][2]["failed_logins"] == 5 and "locked_until" in lockouts[0][2]
    assert _user(console.db, "alice").failed_logins == 5  # attempts while locked are not counted

    # The lock expires; one more failure locks for twice as long, a good login resets everything.
    _expire_lock(console.db, "alice")
    _fail(client, "alice", 1)
    stored = _user(console.db, "alice")
    assert stored.failed_logins == 6 and stored.locked_until is not None
    assert timedelta(seconds=110) < stored.locked_until - utcnow() <= timedelta(seconds=120)
    _expire_lock(console.db, "alice")
    assert _login(client, "alice").status_code == 200
    stored = _user(console.db, "alice")
    assert stored.failed_logins == 0 and stored.locked_until is None


def _expire_lock(db: Database, username: str) -> None:
    with db.write() as session:
        session.execute(
            update(User).where(User.username == username).values(locked_until=utcnow() - timedelta(seconds=1))
        )


def test_a_good_login_resets_the_count(console: Console) -> None:
    console.user("alice", Role.ANALYST)
    client = TestClient(console.app)
    _fail(client, "alice", 4)
    assert _login(client, "alice").status_code == 200
    _fail(client, "alice", 4)
    assert _login(client, "alice").status_code == 200
    assert not [a for a in _actions(console.db) if a[0] == "session.lockout"]


def test_a_disabled_user_fails_like_a_wrong_password(console: Console) -> None:
    console.user("alice", Role.ANALYST)
    with console.db.write() as session:
        session.execute(update(User).where(User.username == "alice").values(disabled_at=utcnow()))
    client = TestClient(console.app)
    assert _login(client, "alice").json() == _login(client, "alice", WRONG).json()
    assert _login(client, "alice").status_code == 401


def test_unknown_names_lock_like_real_ones(console: Console) -> None:
    console.user("alice", Role.ANALYST)
    client = TestClient(console.app)
    _fail(client, "alice", 5)
    _fail(client, "ghost", 5)
    real, unknown = _login(client, "alice"), _login(client, "ghost")
    assert real.status_code == unknown.status_code == 429
    assert re.sub(r"\d+", "N", real.text) == re.sub(r"\d+", "N", unknown.text)
    assert 30 <= int(real.headers["retry-after"]) <= int(unknown.headers["retry-after"]) <= 60
    targets = {a[1] for a in _actions(console.db) if a[0] == "session.lockout"}
    assert targets == {"user:alice", "user:ghost"}


class CountingHasher:
    """The argon2 hasher, counting verifications (one per login that is not refused up front)."""

    def __init__(self, inner: argon2.PasswordHasher) -> None:
        self.inner = inner
        self.verified: list[str] = []

    def verify(self, stored: str, password: str) -> bool:
        self.verified.append(stored)
        return self.inner.verify(stored, password)

    def hash(self, password: str) -> str:
        return self.inner.hash(password)


def test_unknown_names_cost_the_same_argon2_verification(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    console.user("alice", Role.ANALYST)
    counting = CountingHasher(auth._hasher)
    monkeypatch.setattr(auth, "_hasher", counting)
    client = TestClient(console.app)
    assert _login(client, "alice", WRONG).status_code == 401
    assert _login(client, "nobody", WRONG).status_code == 401
    known, unknown = counting.verified
    assert known == _user(console.db, "alice").password_hash and unknown == auth._DUMMY_HASH
    assert argon2.extract_parameters(known) == argon2.extract_parameters(unknown)
    # Measured: both take the time of one argon2id verification (within a generous margin).
    started = time.perf_counter()
    for _ in range(3):
        _login(client, "alice", WRONG)
    known_time = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(3):
        _login(client, "nobody2", WRONG)
    unknown_time = time.perf_counter() - started
    assert 0.4 < unknown_time / known_time < 2.5, (known_time, unknown_time)


def test_failures_from_one_address_are_limited_across_names(console: Console) -> None:
    console.user("alice", Role.ANALYST)
    console.app.state.login_guard = LoginGuard(addresses=AddressLimiter(burst=3, refill_seconds=60))
    sprayer = TestClient(console.app, client=("192.0.2.7", 40000))
    for name in ("alice", "bob", "carol"):
        assert _login(sprayer, name, WRONG).status_code == 401
    limited = _login(sprayer, "alice")  # even the right password waits
    assert limited.status_code == 429 and "address" in limited.json()["detail"]
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert _user(console.db, "alice").failed_logins == 1  # refused before it reached the account
    elsewhere = TestClient(console.app, client=("198.51.100.9", 40000))
    assert _login(elsewhere, "alice").status_code == 200


def test_the_address_bucket_refills(console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    """Driven by a fixed clock: a slow machine must not refill the bucket between two calls."""
    now = utcnow()
    monkeypatch.setattr(logins, "utcnow", lambda: now)
    limiter = AddressLimiter(burst=2, refill_seconds=60)
    limiter.failed(console.db, "a")
    limiter.failed(console.db, "a")
    assert limiter.wait(console.db, "a") == pytest.approx(60) and limiter.wait(console.db, "b") == 0
    now += timedelta(seconds=30)
    assert limiter.wait(console.db, "a") == pytest.approx(30)
    now += timedelta(seconds=31)
    assert limiter.wait(console.db, "a") == 0


def test_limits_hold_across_server_processes(console: Console) -> None:
    """Two workers (two guards) on one database: one address bucket, one count per unknown name."""
    console.user("alice", Role.ANALYST)
    first = LoginGuard(lock_after=3, addresses=AddressLimiter(burst=4, refill_seconds=60))
    second = LoginGuard(lock_after=3, addresses=AddressLimiter(burst=4, refill_seconds=60))

    def attempt(guard: LoginGuard, name: str, address: str) -> logins.Outcome:
        return logins.attempt(console.db, guard, name, WRONG, None, address, lambda session, user: None)

    for guard in (first, second, first):  # an unknown name, its guesses spread over the workers
        assert attempt(guard, "nobody", "192.0.2.1").refusal == logins.Refusal.WRONG
    for guard in (second, first):  # locked for both, as alice would be after three
        assert attempt(guard, "nobody", "192.0.2.2").refusal == logins.Refusal.LOCKED
    assert attempt(second, "alice", "192.0.2.1").refusal == logins.Refusal.WRONG  # the fourth from .1
    limited = attempt(first, "alice", "192.0.2.1")
    assert limited.refusal == logins.Refusal.LIMITED and limited.retry_after >= 1


def test_good_logins_do_not_drain_the_address_bucket(console: Console) -> None:
    console.user("alice", Role.ANALYST)
    console.app.state.login_guard = LoginGuard(addresses=AddressLimiter(burst=2, refill_seconds=60))
    client = TestClient(console.app)
    for _ in range(4):
        assert _login(client, "alice").status_code == 200


def test_an_admin_unlocks_an_account_from_the_api_and_the_command_line(
    console: Console, database_url: str, run_cli: RunCli
) -> None:
    console.user("alice", Role.ANALYST)
    client = TestClient(console.app)
    _fail(client, "alice", 5)
    user_id = _user(console.db, "alice").id
    listed = console.client.get("/api/v1/users", headers=console.as_(Role.ADMIN)).json()
    alice = next(u for u in listed if u["username"] == "alice")
    assert alice["failed_logins"] == 5 and alice["locked_until"] is not None
    assert (
        console.client.post(f"/api/v1/users/{user_id}/unlock", headers=console.as_(Role.ANALYST)).status_code
        == 403
    )
    unlocked = console.client.post(f"/api/v1/users/{user_id}/unlock", headers=console.as_(Role.ADMIN))
    assert unlocked.status_code == 200 and unlocked.json()["locked_until"] is None
    assert _login(client, "alice").status_code == 200

    _fail(client, "alice", 5)
    done = run_cli("server", "user", "unlock", "alice", "--database", database_url)
    assert done.exit_code == 0, done.stderr
    assert _login(client, "alice").status_code == 200
    assert [a[0] for a in _actions(console.db)].count("user.unlock") == 2


def test_the_lock_threshold_is_a_setting(console: Console) -> None:
    console.user("alice", Role.ANALYST)
    console.app.state.login_guard = LoginGuard(lock_after=2)
    client = TestClient(console.app)
    _fail(client, "alice", 2)
    assert _login(client, "alice").status_code == 429
    assert logins.LOCK_AFTER == 5


def test_parallel_guesses_stop_at_the_lock(console: Console) -> None:
    console.user("alice", Role.ANALYST)
    console.app.state.login_guard = LoginGuard(lock_after=3)
    barrier = threading.Barrier(8)
    codes: list[int] = []

    def guess(n: int) -> None:
        client = TestClient(console.app)
        barrier.wait()
        codes.append(_login(client, "alice", f"{WRONG}{n}").status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    # Guesses that were checked before the lock count; the account's row lock stops the rest.
    assert sorted(codes) == [401] * 3 + [429] * 5
    assert _user(console.db, "alice").failed_logins == 3
