"""The server's settings: where its database is and the few knobs an operator turns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

#: An agent silent for longer than this is shown offline (agents send a heartbeat every few minutes).
DEFAULT_OFFLINE_AFTER = timedelta(minutes=15)
#: A browser session ends this long after login, whatever its use.
DEFAULT_SESSION_LIFETIME = timedelta(hours=12)
#: Larger request bodies are refused before they are read (a batch of alerts is far smaller).
DEFAULT_MAX_BODY = 8 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    database_url: str
    offline_after: timedelta = DEFAULT_OFFLINE_AFTER
    session_lifetime: timedelta = DEFAULT_SESSION_LIFETIME
    max_body_bytes: int = DEFAULT_MAX_BODY
    #: The server's own folder (hash lists, index, signing key); None: beside a SQLite database.
    home: Path | None = None
    #: Every person must enrol a TOTP second factor; until then a session may only do that.
    require_totp: bool = False
    #: Failed logins in a row before an account locks (see ``logins``).
    login_lock_after: int = 5
    #: Where to forward alerts and incident changes (``vakta.notify`` URLs; see ``forwarding``).
    forward: tuple[str, ...] = ()
    #: The console's address as people reach it (forwarded alerts link to their incident); None: no links.
    public_url: str | None = None
