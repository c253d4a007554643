"""Password logins with the optional second factor, account lockout and a per-address limit.

What an attacker can learn from a login is kept to "it worked" or "it did not":

- every failure answers the same 401, whichever part was wrong (user name,
  password, missing or wrong code): telling "second factor required" after a
  right password would confirm the password, which is then worth trying
  elsewhere. The server log (for operators) says when a right password came
  with a wrong code, as that password should be changed;
- an unknown user name costs the same argon2 verification as a known one;
- after ``lock_after`` failures in a row an account is locked for a minute,
  doubling with each further failure up to an hour; a locked account answers
  429 with ``Retry-After`` without looking at the password, so the answer is
  the same whether it was right. Unknown user names lock the same way, so
  lockouts do not tell which names exist;
- failures from one client address drain a token bucket: a spray of a few
  passwords over many user names slows to one attempt every
  ``ADDRESS_REFILL_SECONDS`` once the burst is spent.

Unknown names and address buckets are rows of the database (``login_limits``), as
accounts' counts are: every server process (``--workers``) sees the same, so more
processes neither multiply the limits nor make an unknown name lock later than a real one.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vakta.server import audit, totp
from vakta.server.auth import check_password
from vakta.server.db import Database, insert_missing
from vakta.server.models import LoginLimit, User, utcnow

log = logging.getLogger(__name__)

#: Failed logins in a row before an account locks (``vakta server run`` default).
LOCK_AFTER = 5
#: The first lock lasts this long; each further failure doubles it, up to ``LOCK_MAX``.
LOCK_FIRST = timedelta(minutes=1)
LOCK_MAX = timedelta(hours=1)
#: Failed logins one client address may make at once, then one more per ``ADDRESS_REFILL_SECONDS``.
ADDRESS_BURST = 20.0
ADDRESS_REFILL_SECONDS = 30.0


class Refusal(StrEnum):
    WRONG = "wrong"  # 401: user name, password or code
    LOCKED = "locked"  # 429: the account (or unknown name) is locked for a while
    LIMITED = "limited"  # 429: too many failures from this client address


@dataclass(frozen=True)
class Outcome:
    """A login's result: the user on success, else why not and for how long (seconds) to wait."""

    user: User | None
    refusal: Refusal | None = None
    retry_after: int = 0


def lock_duration(failures: int, lock_after: int) -> timedelta | None:
    """How long an account with this many failures in a row stays locked (None: not locked)."""
    if failures < lock_after:
        return None
    doublings = min(failures - lock_after, 16)
    lock: timedelta = LOCK_FIRST * (1 << doublings)
    return min(lock, LOCK_MAX)


def _seconds(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))


@dataclass
class AddressLimiter:
    """Per-address buckets of failed logins: ``wait`` is 0 while attempts may go on, else seconds.

    The buckets are rows of the database (:class:`LoginLimit`), so every server process
    (``--workers``) draws on the same one.
    """

    burst: float = ADDRESS_BURST
    refill_seconds: float = ADDRESS_REFILL_SECONDS

    def _level(self, row: LoginLimit | None, now: datetime) -> float:
        if row is None:
            return self.burst
        return min(self.burst, row.level + (now - row.updated_at).total_seconds() / self.refill_seconds)

    def wait(self, db: Database, address: str) -> float:
        with db.read() as session:
            tokens = self._level(session.get(LoginLimit, _key("address", address)), utcnow())
        return 0.0 if tokens >= 1 else (1 - tokens) * self.refill_seconds

    def failed(self, db: Database, address: str) -> None:
        now = utcnow()
        with db.write() as session:
            row = _locked_row(session, _key("address", address), self.burst, now)
            row.level, row.updated_at = max(0.0, self._level(row, now) - 1), now
            # A bucket untouched this long is full again: the same as no row.
            stale = now - timedelta(seconds=self.burst * self.refill_seconds)
            session.execute(
                delete(LoginLimit).where(LoginLimit.key.like("address:%"), LoginLimit.updated_at < stale)
            )


@dataclass
class PhantomLocks:
    """Failures and locks of user names that do not exist, so they lock like real accounts.

    Kept in the database like an account's own count, so all server processes agree.
    """

    def locked_until(self, db: Database, name: str, now: datetime) -> datetime | None:
        with db.read() as session:
            row = session.get(LoginLimit, _key("name", name))
        until = row.locked_until if row is not None else None
        return until if until is not None and until > now else None

    def failed(self, db: Database, name: str, now: datetime, lock_after: int) -> tuple[int, datetime | None]:
        with db.write() as session:
            row = _locked_row(session, _key("name", name), 0.0, now)
            failures = int(row.level) + 1
            lock = lock_duration(failures, lock_after)
            until = now + lock if lock else None
            row.level, row.locked_until, row.updated_at = float(failures), until, now
        return failures, until


def _key(kind: str, value: str) -> str:
    return f"{kind}:{value}"[:320]


def _locked_row(session: Session, key: str, level: float, now: datetime) -> LoginLimit:
    """The row of ``key``, made if missing, locked for this transaction (two processes never both add it)."""
    values = {"key": key, "level": level, "updated_at": now, "locked_until": None}
    session.execute(insert_missing(session, LoginLimit, values, ["key"]))
    row = session.get(LoginLimit, key, with_for_update=True, populate_existing=True)
    assert row is not None
    return row


@dataclass
class LoginGuard:
    """The in-memory part of login protection (one per app, i.e. per server process)."""

    lock_after: int = LOCK_AFTER
    addresses: AddressLimiter = field(default_factory=AddressLimiter)
    phantoms: PhantomLocks = field(default_factory=PhantomLocks)


_guard_lock = threading.Lock()


def guard_of(state: Any, lock_after: int) -> LoginGuard:
    """The app's guard, made on first use (tests put tighter ones in ``app.state.login_guard``)."""
    with _guard_lock:
        guard = getattr(state, "login_guard", None)
        if not isinstance(guard, LoginGuard):
            guard = LoginGuard(lock_after=lock_after)
            state.login_guard = guard
    return guard


#: Called in the login's transaction once every check passed (e.g. to store the new session).
Start = Callable[[Session, User], None]


def attempt(
    db: Database,
    guard: LoginGuard,
    username: str,
    password: str,
    code: str | None,
    address: str,
    start: Start,
) -> Outcome:
    """Check one login; on success ``start`` runs in the transaction that resets the failure count."""
    wait = guard.addresses.wait(db, address)
    if wait > 0:
        log.warning("login for %r from %s refused: too many failures from this address", username, address)
        return Outcome(None, Refusal.LIMITED, max(1, math.ceil(wait)))
    now = utcnow()
    with db.read() as session:
        user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        return _unknown(db, guard, username, password, address, now)
    if user.locked_until is not None and user.locked_until > now:
        guard.addresses.failed(db, address)
        log.warning("login for %r from %s refused: account locked", username, address)
        return Outcome(None, Refusal.LOCKED, _seconds(user.locked_until, now))
    password_ok = check_password(user.password_hash, password)
    with db.write() as session:
        outcome, counted = _check(session, user.id, password_ok, code, now, guard.lock_after, start, address)
    if counted:  # after the account's transaction: SQLite has one writer at a time
        guard.addresses.failed(db, address)
    return outcome


def _check(
    session: Session,
    user_id: int,
    password_ok: bool,
    code: str | None,
    now: datetime,
    lock_after: int,
    start: Start,
    address: str,
) -> tuple[Outcome, bool]:
    """The login decided in the account row's transaction, and whether it counts against the address."""
    row = session.get(User, user_id, with_for_update=True, populate_existing=True)
    if row is None:  # deleted meanwhile
        return Outcome(None, Refusal.WRONG), False
    if row.locked_until is not None and row.locked_until > now:  # locked by a parallel attempt
        return Outcome(None, Refusal.LOCKED, _seconds(row.locked_until, now)), True
    ok, step = password_ok and row.disabled_at is None, None
    if ok:
        ok, step = _second_factor(session, row, code, now)
    if ok:
        row.failed_logins, row.locked_until = 0, None
        start(session, row)
        details = {} if step is None else {totp.STEP_KEY: step}
        audit.append(session, f"user:{row.username}", "session.login", f"user:{row.username}", details)
        return Outcome(row), False
    if password_ok and row.disabled_at is None:
        log.warning("login for %r from %s: right password, missing or wrong code", row.username, address)
    else:
        log.warning("failed login for %r from %s", row.username, address)
    _count_failure(session, row, lock_after, now)
    return Outcome(None, Refusal.WRONG), True


def _second_factor(session: Session, user: User, code: str | None, now: datetime) -> tuple[bool, int | None]:
    """(passed, the code's step); passed without a step when the user has no second factor."""
    if user.totp_enabled_at is None or user.totp_secret is None:
        return True, None
    step = totp.accept(session, user.totp_secret, user.username, code or "", now)
    return step is not None, step


def _count_failure(session: Session, user: User, lock_after: int, now: datetime) -> None:
    user.failed_logins = (user.failed_logins or 0) + 1
    target = f"user:{user.username}"
    lock = lock_duration(user.failed_logins, lock_after)
    if lock is not None:
        user.locked_until = now + lock
        _audit_lockout(session, target, user.failed_logins, user.locked_until)
    audit.append(session, target, "session.login-failed", target, {})


def _audit_lockout(session: Session, target: str, failures: int, until: datetime) -> None:
    log.warning("%s locked until %s after %d failed logins", target, until.isoformat(), failures)
    details = {"failed_logins": failures, "locked_until": until.isoformat()}
    audit.append(session, "system", "session.lockout", target, details)


def _unknown(
    db: Database, guard: LoginGuard, username: str, password: str, address: str, now: datetime
) -> Outcome:
    """A user name that does not exist: the same work, answers and audit entries as a wrong password."""
    until = guard.phantoms.locked_until(db, username, now)
    guard.addresses.failed(db, address)
    if until is not None:
        log.warning("login for %r from %s refused: account locked", username, address)
        return Outcome(None, Refusal.LOCKED, _seconds(until, now))
    check_password(None, password)  # the dummy hash: as slow as a real user's
    log.warning("failed login for %r from %s", username, address)
    failures, until = guard.phantoms.failed(db, username, now, guard.lock_after)
    target = f"user:{username}"
    with db.write() as session:
        if until is not None:
            _audit_lockout(session, target, failures, until)
        audit.append(session, target, "session.login-failed", target, {})
    return Outcome(None, Refusal.WRONG)
