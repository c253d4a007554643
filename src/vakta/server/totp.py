"""The optional second factor: time-based one-time codes (RFC 6238, 6 digits, 30 s steps, SHA-1).

A code is accepted for its own step and one step either side (clock drift
between a phone and the server), and only for a step later than the last one
accepted for that user: a code seen over a shoulder or in a proxy log cannot
be used again, not even within its 30 s. The last accepted step is read from
the user's audit entries (logins and enrolment record the step, never the
secret or the code), so the rule holds across restarts and server processes;
callers lock the user's row first, so two logins with one code cannot both pass.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime

import pyotp
from sqlalchemy import select
from sqlalchemy.orm import Session

from vakta.server.models import AuditEntry

ISSUER = "Vakta"
INTERVAL = 30
DIGITS = 6
#: Steps accepted either side of the current one (clock drift).
DRIFT = 1
#: Audit actions whose details name the step of the code they accepted.
STEP_ACTIONS = ("session.login", "user.totp-enable")
STEP_KEY = "totp_step"


def new_secret() -> str:
    """160 random bits in base32 (RFC 4226's recommended length), as authenticator apps take them."""
    return pyotp.random_base32(32)


def uri(secret: str, username: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads (typed in, or made into a QR code elsewhere)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).provisioning_uri(
        name=username, issuer_name=ISSUER
    )


def code_at(secret: str, when: datetime) -> str:
    """The code for ``when`` (what the user's app shows then; the tests use it)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).at(when)


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The step whose code ``code`` is (within the drift), or None; compared in constant time."""
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    otp = pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL)
    current = otp.timecode(now)
    found = None
    for step in range(current - DRIFT, current + DRIFT + 1):
        if secrets.compare_digest(otp.generate_otp(step), code):
            found = step
    return found


def last_step(session: Session, username: str) -> int | None:
    """The step of the last code accepted for this user (login or enrolment), from the audit log."""
    query = (
        select(AuditEntry.details)
        .where(AuditEntry.target == f"user:{username}", AuditEntry.action.in_(STEP_ACTIONS))
        .order_by(AuditEntry.seq.desc())
        .limit(1)
    )
    details = session.execute(query).scalar_one_or_none()
    if details is None:
        return None
    step = json.loads(details).get(STEP_KEY)
    return step if isinstance(step, int) else None


def accept(session: Session, secret: str, username: str, code: str, now: datetime) -> int | None:
    """The step of a good, unused code, or None (wrong, or replayed); record it in the audit entry."""
    step = matching_step(secret, code, now)
    if step is None:
        return None
    previous = last_step(session, username)
    if previous is not None and step <= previous:
        return None
    return step
