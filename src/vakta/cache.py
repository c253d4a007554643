"""Scan cache: signals keyed on (device, inode, size, mtime, ctime), so unchanged files are not re-read.

The change time is in the key because tools that restore a file's mtime
(``cp -p``, ``touch -r``, archive extractors) cannot restore its ctime.

The key also holds the hashing options' fingerprint: changing how Vakta hashes
invalidates old entries instead of reusing signals computed another way.

A container's members are kept with it when they are few (a JPEG's EXIF
thumbnail, a song's cover, a small archive), so an unchanged one is not opened
again. The entry records which container readers found them (names and
versions): a file whose entry has no members, or members found by other
readers (an older Vakta, a plugin added), is opened once more and its entry
rewritten.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vakta.signals.model import PdqQuery, Signals
from vakta.signals.pdq import TRANSFORMS

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS signals_v2 (
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    options TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (dev, ino, size, mtime_ns, ctime_ns, options)
) WITHOUT ROWID
"""


#: A file's identity in the cache: (device, inode, size, mtime_ns, ctime_ns).
CacheKey = tuple[int, int, int, int, int]

#: Most members kept with a container's entry; a container with more is not cached.
MAX_CACHED_MEMBERS = 32


@dataclass(slots=True)
class CachedTree:
    """A file's signals from the cache, and its members' (None: not kept, to be looked for again)."""

    signals: Signals
    members: list[Signals] | None = None
    #: The container readers that found the members (see ``readers_fingerprint``), if kept.
    readers: str | None = None


class SignalCache:
    """Signals of files by their stat key, in one SQLite file (WAL: readers never wait for a writer).

    ``best_effort`` is for a writer that shares the file with a longer-running one
    (the agent's watcher beside its full scan): it never waits for the write lock,
    and a write that finds it taken is dropped (counted in ``dropped``), as the
    cache only saves work.
    """

    def __init__(self, path: Path, options_fingerprint: str, best_effort: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=0.0 if best_effort else 5.0)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute(_SCHEMA)
        self._options = options_fingerprint
        self._pending = 0
        self._best_effort = best_effort
        self.dropped = 0

    def get(self, key: CacheKey) -> CachedTree | None:
        """The file's signals and members as kept; their ``path`` is empty (the caller knows it now)."""
        row = self._db.execute(
            "SELECT data FROM signals_v2 WHERE dev = ? AND ino = ? AND size = ? AND mtime_ns = ?"
            " AND ctime_ns = ? AND options = ?",
            (*key, self._options),
        ).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        members, readers = data.pop("members", None), data.pop("readers", None)
        return CachedTree(
            _signals(data), None if members is None else [_signals(m) for m in members], readers
        )

    def put(
        self, key: CacheKey, signals: Signals, members: Sequence[Signals] | None = None, readers: str = ""
    ) -> None:
        """Keep a file's signals, and with ``members`` (a container's, perhaps none, found by ``readers``) theirs."""
        everything = [signals, *(members or ())]
        if any(s.errors or s.skipped for s in everything):
            return  # only complete results are worth keeping
        if members is not None and len(members) > MAX_CACHED_MEMBERS:
            return
        data = _data(signals)
        if members is not None:
            data["members"] = [_data(m) for m in members]
            data["readers"] = readers
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO signals_v2 VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*key, self._options, json.dumps(data, separators=(",", ":"))),
            )
        except sqlite3.OperationalError as exc:
            self._drop(exc, self._pending + 1)
            return
        self._pending += 1
        if self._pending >= 500:
            self.flush()

    def flush(self) -> None:
        try:
            self._db.commit()
        except sqlite3.OperationalError as exc:
            self._drop(exc, self._pending)
        self._pending = 0

    def _drop(self, exc: sqlite3.OperationalError, writes: int) -> None:
        """A best-effort writer gives up ``writes`` writes when the file is busy; any other raises."""
        if not self._best_effort or "locked" not in str(exc):
            raise exc
        self._db.rollback()
        self.dropped += writes
        self._pending = 0
        log.debug("scan cache busy: %s (%d writes dropped so far)", exc, self.dropped)

    def close(self) -> None:
        self.flush()
        self._db.close()


def _data(signals: Signals) -> dict[str, Any]:
    """What is kept of one item's signals: no path (a file may be renamed), queries packed."""
    data = signals.to_cache()
    data.update(path="", path_b64=None, cached=False, pdq_queries=[])
    data["queries"] = _pack_queries(signals.pdq_queries)
    return data


def _signals(data: dict[str, Any]) -> Signals:
    data["pdq_queries"] = _unpack_queries(data.pop("queries", None))
    signals = Signals.from_cache(data)
    signals.cached = True
    return signals


def _pack_queries(queries: list[PdqQuery]) -> dict[str, Any]:
    """Query hashes in 35 bytes each (hash, quality, transform, variant) instead of ~120 of JSON.

    A scan looks up dozens of variants per image; kept as JSON they would make
    the cache of a million files ten gigabytes.
    """
    variants = list(dict.fromkeys(q.variant for q in queries))
    packed = b"".join(
        bytes.fromhex(q.hex) + bytes((q.quality, TRANSFORMS.index(q.transform), variants.index(q.variant)))
        for q in queries
    )
    return {"variants": variants, "packed": base64.b64encode(packed).decode("ascii")}


def _unpack_queries(data: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not data:
        return []
    raw = base64.b64decode(data["packed"])
    variants = data["variants"]
    return [
        {
            "hex": raw[i : i + 32].hex(),
            "quality": raw[i + 32],
            "transform": TRANSFORMS[raw[i + 33]],
            "variant": variants[raw[i + 34]],
        }
        for i in range(0, len(raw), 35)
    ]
