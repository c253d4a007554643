"""The offline-first alert queue: every alert is on disk before anything else is done with it.

SQLite in WAL mode with ``synchronous=FULL``: an alert whose insert returned
survives a killed agent and a power cut.  Each alert carries an idempotency
key; the console stores an (agent, key) pair once, so an alert sent again
after a crash between delivery and deletion is not a duplicate there.  An
alert the console refuses as invalid (HTTP 422) is set aside, never dropped.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    queued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    refused TEXT
)
"""


class AlertQueue:
    """Alerts waiting for the console, oldest first; safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fresh = not path.exists()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if fresh:
            path.chmod(0o600)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def put(self, key: str, body: dict[str, Any]) -> bool:
        """Store an alert (committed when this returns); False if that key is already queued."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO alerts (key, body, queued_at) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING",
                (key, json.dumps(body, separators=(",", ":")), time.time()),
            )
            return cursor.rowcount == 1

    def batch(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """The oldest ``limit`` alerts still to be delivered: (key, body)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, body FROM alerts WHERE refused IS NULL ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [(key, json.loads(body)) for key, body in rows]

    def delivered(self, keys: list[str]) -> None:
        """The console committed these: forget them."""
        with self._lock:
            self._db.executemany("DELETE FROM alerts WHERE key = ?", [(k,) for k in keys])

    def attempted(self, keys: list[str]) -> None:
        with self._lock:
            self._db.executemany(
                "UPDATE alerts SET attempts = attempts + 1 WHERE key = ?", [(k,) for k in keys]
            )

    def refuse(self, key: str, reason: str) -> None:
        """The console refused this alert as invalid: keep it aside (for support), stop sending it."""
        with self._lock:
            self._db.execute("UPDATE alerts SET refused = ? WHERE key = ?", (reason[:2000], key))

    def pending(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM alerts WHERE refused IS NULL").fetchone()
        return int(row[0])

    def refused(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT count(*) FROM alerts WHERE refused IS NOT NULL").fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
