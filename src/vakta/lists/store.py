"""The local hash-list store: one SQLite file under the Vakta home folder.

Each hash is a row keyed on (list, kind, value), so re-importing a list or a
daily delta merges duplicates instead of growing the store.  A known video's
vPDQ frames are kept per video (two videos may share a frame, e.g. a black
one, and must each keep it), keyed on a fingerprint of the frames so that a
re-imported video merges too.  Every row points
at the import it came from, which records the source format and time: that is
the provenance a finding reports.

An import may also withdraw entries (records marked ``removed``, e.g. NCMEC's
deleted entries).  Duplicates are merged, so a hash listed under two entry ids
is stored once, under the first: withdrawing that entry withdraws the hash.
"""

from __future__ import annotations

import logging
import sqlite3
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

from vakta.lists.model import ListRecord, video_fingerprint
from vakta.signals.model import VideoFrame

log = logging.getLogger(__name__)

DETECT = "detect"
IGNORE = "ignore"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lists (
    id INTEGER PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    purpose TEXT NOT NULL CHECK (purpose IN ('detect', 'ignore')),
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS imports (
    id INTEGER PRIMARY KEY,
    list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    format TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    records INTEGER NOT NULL DEFAULT 0,
    added INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    invalid INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS entries (
    list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    value BLOB NOT NULL,
    entry_id TEXT,
    category TEXT,
    quality INTEGER,
    import_id INTEGER NOT NULL REFERENCES imports(id),
    PRIMARY KEY (list_id, kind, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS videos (
    id INTEGER PRIMARY KEY,
    list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    fingerprint BLOB NOT NULL,
    entry_id TEXT,
    category TEXT,
    frames INTEGER NOT NULL,
    seconds REAL NOT NULL,
    import_id INTEGER NOT NULL REFERENCES imports(id),
    UNIQUE (list_id, fingerprint)
);
CREATE TABLE IF NOT EXISTS video_frames (
    video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    frame INTEGER NOT NULL,
    quality INTEGER NOT NULL,
    value BLOB NOT NULL,
    timestamp REAL NOT NULL,
    PRIMARY KEY (video_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS withdrawals (
    list_id INTEGER NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    import_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS withdrawals_by_import ON withdrawals (list_id, import_id, kind);
"""

#: The kind under which a known video is counted, matched and reported.
VIDEO_KIND = "vpdq"

# Rows are staged in a temporary table, then merged in key order: SQLite sorts
# in C, and ordered inserts into the B-tree are twice as fast as random ones
# (1,000,000 MD5s: 4 s instead of 8 s).
# ``seq`` is the record's position in the file, which orders additions and removals.
_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS staging (
    seq INTEGER, list_id INTEGER, kind TEXT, value BLOB, entry_id TEXT, category TEXT, quality INTEGER,
    import_id INTEGER
)
"""
_REMOVALS = (
    "CREATE TEMP TABLE IF NOT EXISTS removals (seq INTEGER, kind TEXT, value BLOB, entry_id TEXT)",
    "CREATE INDEX IF NOT EXISTS temp.removals_hash ON removals (kind, value, seq)",
    "CREATE INDEX IF NOT EXISTS temp.removals_entry ON removals (entry_id, seq)",
)
_COLUMNS = "list_id, kind, value, entry_id, category, quality, import_id"
_UPSERT = f"""
INSERT INTO entries ({_COLUMNS})
SELECT {_COLUMNS} FROM staging WHERE {{keep}} ORDER BY list_id, kind, value
ON CONFLICT (list_id, kind, value) DO UPDATE SET
    entry_id = COALESCE(entries.entry_id, excluded.entry_id),
    category = COALESCE(entries.category, excluded.category),
    quality = COALESCE(entries.quality, excluded.quality)
"""
#: A staged row that a removal later in the same file withdraws.
_WITHDRAWN = (
    "EXISTS (SELECT 1 FROM removals r WHERE r.kind = staging.kind AND r.value = staging.value "
    "AND r.seq > staging.seq) OR EXISTS (SELECT 1 FROM removals r WHERE r.entry_id = staging.entry_id "
    "AND r.seq > staging.seq)"
)
#: Stored entries of a list (``list_id = ?``) that the staged removals name, by hash or by entry id.
_REMOVED_BY = (
    "(kind, value) IN (SELECT kind, value FROM removals WHERE kind IS NOT NULL)",
    "entry_id IN (SELECT entry_id FROM removals WHERE entry_id IS NOT NULL)",
)

_BATCH = 50_000


class StoreError(Exception):
    """A request the store cannot carry out (unknown list, purpose clash, unusable folder...)."""


class EmptyImportError(StoreError):
    """The file held no valid record; nothing was stored (no empty list is left behind)."""


@dataclass(slots=True)
class ImportReport:
    """What one import did; ``invalid`` is filled by the caller from the parser's issues."""

    list_name: str
    format: str
    records: int = 0
    added: int = 0
    duplicates: int = 0
    invalid: int = 0
    #: Known videos (vPDQ) read; each counts as one hash in ``added``/``duplicates``.
    videos: int = 0
    #: Stored hashes and known videos that removal records withdrew.
    removed: int = 0
    #: The withdrawn hashes' raw values by kind, concatenated: what the on-disk index must forget.
    removed_hashes: dict[str, bytearray] = field(default_factory=dict)


@dataclass(slots=True)
class ListInfo:
    name: str
    purpose: str
    created_at: str
    counts: dict[str, int] = field(default_factory=dict)
    imports: int = 0
    last_import: str | None = None
    builtin: bool = False

    @property
    def size(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class EntryRow:
    """One stored hash with its provenance, as the matcher and exporters read it."""

    list_name: str
    kind: str
    value: bytes
    entry_id: str | None
    category: str | None
    quality: int | None
    source_format: str
    imported_at: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ListStore:
    """Hash lists kept in ``<home>/lists.sqlite``."""

    def __init__(self, home: Path) -> None:
        self.path = home / "lists.sqlite"
        try:
            home.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise StoreError(f"cannot open the list store {self.path}: {reason}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ListStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _list_id(self, name: str) -> tuple[int, str] | None:
        row = self._db.execute("SELECT id, purpose FROM lists WHERE name = ?", (name,)).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def import_records(
        self, name: str, records: Iterable[ListRecord], source: str, fmt: str, purpose: str = DETECT
    ) -> ImportReport:
        """Add records to list ``name`` (created if new) in one transaction; ``removed`` ones withdraw.

        A removal withdraws what the list held before the file and what the
        file added before it, not what the file adds after it: records apply
        in file order, as a feed of updates is meant to be read.
        """
        report = ImportReport(name, fmt)
        with self._db:
            list_id = self._list_for_import(name, purpose)
            cur = self._db.execute(
                "INSERT INTO imports (list_id, source, format, imported_at) VALUES (?, ?, ?, ?)",
                (list_id, source, fmt, _now()),
            )
            import_id = int(cur.lastrowid or 0)
            before = self._count(list_id)
            rows = 0
            for statement in (_STAGE, *_REMOVALS, "DELETE FROM staging", "DELETE FROM removals"):
                self._db.execute(statement)

            def add_video(record: ListRecord) -> None:
                self._add_video(list_id, import_id, record)

            def remove(seq: int, record: ListRecord) -> None:
                report.removed += self._stage_removal(list_id, seq, record)

            staged = _rows(records, list_id, import_id, report, add_video, remove)
            for batch in _batched(staged, _BATCH):
                self._db.executemany("INSERT INTO staging VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
                rows += len(batch)
            withdrawn = self._merge(list_id, import_id, report)
            self._db.execute("DELETE FROM staging")
            self._db.execute("DELETE FROM removals")
            if report.records == 0:
                raise EmptyImportError("no valid records in the file; nothing imported")
            report.added = self._count(list_id) - before + report.removed
            report.duplicates = rows - withdrawn + report.videos - report.added
            self._db.execute(
                "UPDATE imports SET records = ?, added = ?, duplicates = ? WHERE id = ?",
                (report.records, report.added, report.duplicates, import_id),
            )
        return report

    def _list_for_import(self, name: str, purpose: str) -> int:
        """The id of list ``name``, created if new; a list of the other purpose is refused."""
        found = self._list_id(name)
        if found and found[1] != purpose:
            raise StoreError(
                f"list {name!r} exists as a {found[1]} list; remove it first to import it as {purpose}"
            )
        if found is not None:
            return found[0]
        cur = self._db.execute(
            "INSERT INTO lists (name, purpose, created_at) VALUES (?, ?, ?)", (name, purpose, _now())
        )
        return int(cur.lastrowid or 0)

    def _stage_removal(self, list_id: int, seq: int, record: ListRecord) -> int:
        """Note a removal's hashes and entry id for :meth:`_merge`; drop its known videos now.

        Videos are stored as they are read, so they are withdrawn in file
        order at once.  Returns the number of videos withdrawn.
        """
        rows: list[tuple[object, ...]] = [(seq, k, bytes.fromhex(v), None) for k, v in record.hashes.items()]
        gone = 0
        if record.frames:
            gone += self._db.execute(
                "DELETE FROM videos WHERE list_id = ? AND fingerprint = ?",
                (list_id, video_fingerprint(record.frames)),
            ).rowcount
        if record.entry_id is not None:
            rows.append((seq, None, None, record.entry_id))
            gone += self._db.execute(
                "DELETE FROM videos WHERE list_id = ? AND entry_id = ?", (list_id, record.entry_id)
            ).rowcount
        self._db.executemany("INSERT INTO removals VALUES (?, ?, ?, ?)", rows)
        return gone

    def _merge(self, list_id: int, import_id: int, report: ImportReport) -> int:
        """Withdraw the stored entries the removals name, then upsert the staged rows no later removal withdrew.

        Returns the number of staged rows withdrawn.  A list's entry ids carry
        no index, so removal by id costs one pass over the list: done once per
        import, not per removal.  Withdrawn hashes are journalled with the
        import, in the same transaction, so the on-disk index forgets them at
        its next update whatever happens to this process.
        """
        if self._db.execute("SELECT NOT EXISTS (SELECT 1 FROM removals)").fetchone()[0]:
            self._db.execute(_UPSERT.format(keep="true"))
            return 0
        for where in _REMOVED_BY:
            for kind, value in self._db.execute(
                f"SELECT kind, value FROM entries WHERE list_id = ? AND {where}", (list_id,)
            ):
                report.removed_hashes.setdefault(kind, bytearray()).extend(value)
                report.removed += 1
            self._db.execute(
                f"INSERT INTO withdrawals SELECT list_id, ?, kind, value FROM entries WHERE list_id = ? AND {where}",
                (import_id, list_id),
            )
            self._db.execute(f"DELETE FROM entries WHERE list_id = ? AND {where}", (list_id,))
        withdrawn = int(self._db.execute(f"SELECT COUNT(*) FROM staging WHERE {_WITHDRAWN}").fetchone()[0])
        self._db.execute(_UPSERT.format(keep=f"NOT ({_WITHDRAWN})"))
        return withdrawn

    def finish_import(self, report: ImportReport) -> None:
        """Record what is known only once the file was read: invalid lines and the format found."""
        with self._db:
            self._db.execute(
                "UPDATE imports SET invalid = ?, format = ? WHERE id = (SELECT MAX(i.id) FROM imports i "
                "JOIN lists l ON l.id = i.list_id WHERE l.name = ?)",
                (report.invalid, report.format, report.list_name),
            )

    def _add_video(self, list_id: int, import_id: int, record: ListRecord) -> None:
        """Store one known video and its frames, unless the list already has the same frames."""
        fingerprint = video_fingerprint(record.frames)
        seconds = max(frame.timestamp for frame in record.frames)
        cur = self._db.execute(
            "INSERT INTO videos (list_id, fingerprint, entry_id, category, frames, seconds, import_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (list_id, fingerprint) DO NOTHING",
            (list_id, fingerprint, record.entry_id, record.category, len(record.frames), seconds, import_id),
        )
        if cur.rowcount != 1:
            return
        video_id = cur.lastrowid
        self._db.executemany(
            "INSERT INTO video_frames VALUES (?, ?, ?, ?, ?, ?)",
            (
                (video_id, seq, f.frame, f.quality, bytes.fromhex(f.pdq), f.timestamp)
                for seq, f in enumerate(record.frames)
            ),
        )

    def _count(self, list_id: int) -> int:
        """Hashes plus known videos in a list."""
        return int(
            self._db.execute(
                "SELECT (SELECT COUNT(*) FROM entries WHERE list_id = ?) "
                "+ (SELECT COUNT(*) FROM videos WHERE list_id = ?)",
                (list_id, list_id),
            ).fetchone()[0]
        )

    def remove(self, name: str) -> None:
        found = self._list_id(name)
        if found is None:
            raise StoreError(f"no list named {name!r}")
        with self._db:
            self._db.execute("DELETE FROM entries WHERE list_id = ?", (found[0],))
            self._db.execute("DELETE FROM videos WHERE list_id = ?", (found[0],))
            self._db.execute("DELETE FROM imports WHERE list_id = ?", (found[0],))
            self._db.execute("DELETE FROM lists WHERE id = ?", (found[0],))

    def lists(self) -> list[ListInfo]:
        infos: dict[str, ListInfo] = {}
        for name, purpose, created in self._db.execute(
            "SELECT name, purpose, created_at FROM lists ORDER BY name"
        ):
            infos[name] = ListInfo(name, purpose, created)
        for name, kind, count in self._db.execute(
            "SELECT l.name, e.kind, COUNT(*) FROM entries e JOIN lists l ON l.id = e.list_id "
            "GROUP BY l.name, e.kind"
        ):
            infos[name].counts[kind] = int(count)
        for name, count in self._db.execute(
            "SELECT l.name, COUNT(*) FROM videos v JOIN lists l ON l.id = v.list_id GROUP BY l.name"
        ):
            infos[name].counts[VIDEO_KIND] = int(count)
        for name, count, last in self._db.execute(
            "SELECT l.name, COUNT(*), MAX(i.imported_at) FROM imports i JOIN lists l ON l.id = i.list_id "
            "GROUP BY l.name"
        ):
            infos[name].imports = int(count)
            infos[name].last_import = last
        return list(infos.values())

    def names(self, purpose: str | None = None) -> list[str]:
        """List names (of one purpose), without counting entries as :meth:`lists` does."""
        rows = self._db.execute(
            "SELECT name FROM lists WHERE ? IS NULL OR purpose = ? ORDER BY name", (purpose, purpose)
        )
        return [str(name) for (name,) in rows]

    def entries(self, names: Iterable[str]) -> Iterator[EntryRow]:
        """All hashes of the named lists with their provenance."""
        for name in names:
            if self._list_id(name) is None:
                raise StoreError(f"no list named {name!r}")
            yield from (
                EntryRow(name, kind, bytes(value), eid, cat, quality, fmt, at)
                for kind, value, eid, cat, quality, fmt, at in self._db.execute(
                    "SELECT e.kind, e.value, e.entry_id, e.category, e.quality, i.format, i.imported_at "
                    "FROM entries e JOIN lists l ON l.id = e.list_id JOIN imports i ON i.id = e.import_id "
                    "WHERE l.name = ? ORDER BY e.entry_id, e.kind",
                    (name,),
                )
            )

    def hash_values(self, name: str, kind: str, min_quality: int | None = None) -> bytes:
        """Every ``kind`` hash of list ``name``, concatenated: loads millions in about a second.

        PDQ hashes whose recorded quality is below ``min_quality`` are left out.
        """
        found = self._list_id(name)
        if found is None:
            raise StoreError(f"no list named {name!r}")
        return self.hash_values_since(found[0], kind, 0, min_quality)

    def list_states(self) -> list[tuple[int, str, str, str, int]]:
        """(id, name, purpose, created at, last import id) of every list: what an on-disk index compares against.

        SQLite may give a removed list's id (and its imports' ids) to the next
        new one; the creation time tells the two apart.
        """
        rows = self._db.execute(
            "SELECT l.id, l.name, l.purpose, l.created_at, COALESCE(MAX(i.id), 0) FROM lists l "
            "LEFT JOIN imports i ON i.list_id = l.id GROUP BY l.id ORDER BY l.id"
        )
        return [(int(i), str(n), str(p), str(c), int(last)) for i, n, p, c, last in rows]

    def hash_values_since(
        self, list_id: int, kind: str, after_import: int, min_quality: int | None = None
    ) -> bytes:
        """Like :meth:`hash_values`, by list id, only hashes first stored by an import after ``after_import``.

        A hash merged into a list keeps the import that first brought it, so
        this is exactly what a list gained since that import.
        """
        sql = "SELECT value FROM entries WHERE list_id = ? AND kind = ? AND import_id > ?"
        args: tuple[object, ...] = (list_id, kind, after_import)
        if min_quality is not None:
            sql += " AND (quality IS NULL OR quality >= ?)"
            args += (min_quality,)
        return b"".join(v for (v,) in self._db.execute(sql, args))

    def withdrawn_since(self, list_id: int, kind: str, after_import: int) -> bytes:
        """Hashes of one kind that imports after ``after_import`` withdrew from the list (concatenated)."""
        sql = "SELECT value FROM withdrawals WHERE list_id = ? AND import_id > ? AND kind = ?"
        return b"".join(v for (v,) in self._db.execute(sql, (list_id, after_import, kind)))

    def provenance(self, name: str, kind: str, value: bytes) -> EntryRow | None:
        """One hash's (or known video's) entry id, category and import, looked up only when it matched."""
        if kind == VIDEO_KIND:
            row = self._db.execute(
                "SELECT v.entry_id, v.category, NULL, i.format, i.imported_at "
                "FROM videos v JOIN lists l ON l.id = v.list_id JOIN imports i ON i.id = v.import_id "
                "WHERE l.name = ? AND v.fingerprint = ?",
                (name, value),
            ).fetchone()
        else:
            row = self._db.execute(
                "SELECT e.entry_id, e.category, e.quality, i.format, i.imported_at "
                "FROM entries e JOIN lists l ON l.id = e.list_id JOIN imports i ON i.id = e.import_id "
                "WHERE l.name = ? AND e.kind = ? AND e.value = ?",
                (name, kind, value),
            ).fetchone()
        if row is None:
            return None
        eid, cat, quality, fmt, at = row
        return EntryRow(name, kind, value, eid, cat, quality, fmt, at)

    def records(self, name: str) -> Iterator[ListRecord]:
        """The list regrouped into records: hashes sharing an entry id form one record."""
        current: ListRecord | None = None
        for row in self.entries([name]):
            value = row.value.hex()
            if current is not None and row.entry_id is not None and row.entry_id == current.entry_id:
                current.hashes[row.kind] = value
                continue
            if current is not None:
                yield current
            current = ListRecord({row.kind: value}, row.entry_id, row.category, 0, row.quality)
        if current is not None:
            yield current
        yield from self.video_records(name)

    def video_records(self, name: str) -> Iterator[ListRecord]:
        """The known videos of a list, each with its frames in their original order."""
        videos = self._db.execute(
            "SELECT v.id, v.entry_id, v.category FROM videos v JOIN lists l ON l.id = v.list_id "
            "WHERE l.name = ? ORDER BY v.id",
            (name,),
        ).fetchall()
        for video_id, entry_id, category in videos:
            frames = tuple(
                VideoFrame(frame, timestamp, bytes(value).hex(), quality)
                for frame, quality, value, timestamp in self._db.execute(
                    "SELECT frame, quality, value, timestamp FROM video_frames WHERE video_id = ? ORDER BY seq",
                    (video_id,),
                )
            )
            yield ListRecord({}, entry_id, category, frames=frames)

    def video_frames(self, name: str, min_quality: int) -> tuple[list[bytes], bytes, bytes, bytes]:
        """The frames of list ``name``'s videos that can match, for the index.

        Returns the videos' fingerprints, then for each frame of quality >=
        ``min_quality``, in video and file order: its video's position in that
        list (int32), its hash, and its timestamp (float64), each concatenated.
        """
        found = self._list_id(name)
        if found is None:
            raise StoreError(f"no list named {name!r}")
        ids = [
            (int(vid), bytes(fp))
            for vid, fp in self._db.execute(
                "SELECT id, fingerprint FROM videos WHERE list_id = ? ORDER BY id", (found[0],)
            )
        ]
        position = {vid: n for n, (vid, _) in enumerate(ids)}
        owners, stamps = array("i"), array("d")
        values = bytearray()
        for vid, value, stamp in self._db.execute(
            "SELECT f.video_id, f.value, f.timestamp FROM video_frames f JOIN videos v ON v.id = f.video_id "
            "WHERE v.list_id = ? AND f.quality >= ? ORDER BY f.video_id, f.seq",
            (found[0], min_quality),
        ):
            owners.append(position[vid])
            values += value
            stamps.append(stamp)
        return [fp for _, fp in ids], owners.tobytes(), bytes(values), stamps.tobytes()


def _rows(
    records: Iterable[ListRecord],
    list_id: int,
    import_id: int,
    report: ImportReport,
    add_video: Callable[[ListRecord], None],
    remove: Callable[[int, ListRecord], None],
) -> Iterator[tuple[object, ...]]:
    """Staging rows of the records; a video's frames go to ``add_video``, removals to ``remove``, as they come."""
    for seq, record in enumerate(records):
        report.records += 1
        if record.removed:
            remove(seq, record)
            continue
        if record.frames:
            report.videos += 1
            add_video(record)
        for kind, value in record.hashes.items():
            quality = record.pdq_quality if kind == "pdq" else None
            yield (
                seq,
                list_id,
                kind,
                bytes.fromhex(value),
                record.entry_id,
                record.category,
                quality,
                import_id,
            )


def _batched(rows: Iterator[tuple[object, ...]], size: int) -> Iterator[list[tuple[object, ...]]]:
    while batch := list(islice(rows, size)):
        yield batch
