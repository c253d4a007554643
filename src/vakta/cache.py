"""Scan cache: signals keyed on (device, inode, size, mtime, ctime), so unchanged files are not re-read.

The change time is in the key because tools that restore a file's mtime
(``cp -p``, ``touch -r``, archive extractors) cannot restore its ctime.

The key also holds the hashing options' fingerprint: changing how Vakta hashes
invalidates old entries instead of reusing signals computed another way.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from vakta.signals.model import Signals

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signals_v2 (
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    options TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (dev, ino, size, mtime_ns, ctime_ns, options)
) WITHOUT ROWID
"""


class SignalCache:
    def __init__(self, path: Path, options_fingerprint: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute(_SCHEMA)
        self._options = options_fingerprint
        self._pending = 0

    def get(self, key: tuple[int, int, int, int, int]) -> Signals | None:
        row = self._db.execute(
            "SELECT data FROM signals_v2 WHERE dev = ? AND ino = ? AND size = ? AND mtime_ns = ?"
            " AND ctime_ns = ? AND options = ?",
            (*key, self._options),
        ).fetchone()
        if row is None:
            return None
        signals = Signals.from_cache(json.loads(row[0]))
        signals.cached = True
        return signals

    def put(self, key: tuple[int, int, int, int, int], signals: Signals) -> None:
        if signals.errors or signals.skipped:
            return  # only complete results are worth keeping
        data = signals.to_cache()
        data.update(path="", path_b64=None, cached=False)
        self._db.execute(
            "INSERT OR REPLACE INTO signals_v2 VALUES (?, ?, ?, ?, ?, ?, ?)",
            (*key, self._options, json.dumps(data, separators=(",", ":"))),
        )
        self._pending += 1
        if self._pending >= 500:
            self.flush()

    def flush(self) -> None:
        self._db.commit()
        self._pending = 0

    def close(self) -> None:
        self.flush()
        self._db.close()
