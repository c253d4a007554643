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
  the same whether it was right. Unknown user names lock the same way (in
  memory), so lockouts do not tell which names exist;
- failures from one client address drain a token bucket (in memory, per
  server process): a spray of a few passwords over many user names slows to
  one attempt every ``ADDRESS_REFILL_SECONDS`` once the burst is spent.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vakta.server import audit, totp
from vakta.server.auth import check_password
from vakta.server.db import Database
from vakta.server.models import User, utcnow

log = logging.getLogger(__name__)

#: Failed logins in a row before an account locks (``vakta server run`` default).
LOCK_AFTER = 5
#: The first lock lasts this long; each further failure doubles it, up to ``LOCK_MAX``.
LOCK_FIRST = timedelta(minutes=1)
LOCK_MAX = timedelta(hours=1)
#: Failed logins one client address may make at once, then one more per ``ADDRESS_REFILL_SECONDS``.
ADDRESS_BURST = 20.0
ADDRESS_REFILL_SECONDS = 30.0
#: Addresses and unknown user names remembered (the oldest are forgotten first).
MEMORY_LIMIT = 10_000


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
    """Per-address buckets of failed logins: ``wait`` is 0 while attempts may go on, else seconds."""

    burst: float = ADDRESS_BURST
    refill_seconds: float = ADDRESS_REFILL_SECONDS
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _level(self, address: str, now: float) -> float:
        tokens, last = self._buckets.get(address, (self.burst, now))
        return min(self.burst, tokens + (now - last) / self.refill_seconds)

    def wait(self, address: str) -> float:
        now = time.monotonic()
        with self._lock:
            tokens = self._level(address, now)
        return 0.0 if tokens >= 1 else (1 - tokens) * self.refill_seconds

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._buckets[address] = (max(0.0, self._level(address, now) - 1), now)
            self._buckets.move_to_end(address)
            while len(self._buckets) > MEMORY_LIMIT:
                self._buckets.popitem(last=False)


@dataclass
class PhantomLocks:
    """Failures and locks of user names that do not exist, so they lock like real accounts."""

    _names: OrderedDict[str, tuple[int, datetime | None]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def locked_until(self, name: str, now: datetime) -> datetime | None:
        with self._lock:
            _, until = self._names.get(name, (0, None))
        return until if until is not None and until > now else None

    def failed(self, name: str, now: datetime, lock_after: int) -> tuple[int, datetime | None]:
        with self._lock:
            failures = self._names.get(name, (0, None))[0] + 1
            lock = lock_duration(failures, lock_after)
            until = now + lock if lock else None
            self._names[name] = (failures, until)
            self._names.move_to_end(name)
            while len(self._names) > MEMORY_LIMIT:
                self._names.popitem(last=False)
        return failures, until


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
    wait = guard.addresses.wait(address)
    if wait > 0:
        log.warning("login for %r from %s refused: too many failures from this address", username, address)
        return Outcome(None, Refusal.LIMITED, max(1, math.ceil(wait)))
    now = utcnow()
    with db.read() as session:
        user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        return _unknown(db, guard, username, password, address, now)
    if user.locked_until is not None and user.locked_until > now:
        guard.addresses.failed(address)
        log.warning("login for %r from %s refused: account locked", username, address)
        return Outcome(None, Refusal.LOCKED, _seconds(user.locked_until, now))
    password_ok = check_password(user.password_hash, password)
    with db.write() as session:
        row = session.get(User, user.id, with_for_update=True, populate_existing=True)
        if row is None:  # deleted meanwhile
            return Outcome(None, Refusal.WRONG)
        if row.locked_until is not None and row.locked_until > now:  # locked by a parallel attempt
            guard.addresses.failed(address)
            return Outcome(None, Refusal.LOCKED, _seconds(row.locked_until, now))
        ok, step = password_ok and row.disabled_at is None, None
        if ok:
            ok, step = _second_factor(session, row, code, now)
        if ok:
            row.failed_logins, row.locked_until = 0, None
            start(session, row)
            details = {} if step is None else {totp.STEP_KEY: step}
            audit.append(session, f"user:{row.username}", "session.login", f"user:{row.username}", details)
            return Outcome(row)
        if password_ok and row.disabled_at is None:
            log.warning("login for %r from %s: right password, missing or wrong code", username, address)
        else:
            log.warning("failed login for %r from %s", username, address)
        _count_failure(session, row, guard.lock_after, now)
    guard.addresses.failed(address)
    return Outcome(None, Refusal.WRONG)


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
    until = guard.phantoms.locked_until(username, now)
    guard.addresses.failed(address)
    if until is not None:
        log.warning("login for %r from %s refused: account locked", username, address)
        return Outcome(None, Refusal.LOCKED, _seconds(until, now))
    check_password(None, password)  # the dummy hash: as slow as a real user's
    log.warning("failed login for %r from %s", username, address)
    failures, until = guard.phantoms.failed(username, now, guard.lock_after)
    target = f"user:{username}"
    with db.write() as session:
        if until is not None:
            _audit_lockout(session, target, failures, until)
        audit.append(session, target, "session.login-failed", target, {})
    return Outcome(None, Refusal.WRONG)
