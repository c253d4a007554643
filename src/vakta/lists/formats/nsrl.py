"""NIST NSRL RDSv3: the Reference Data Set of known software files, a SQLite database.

RDSv3 (2022 on) ships as SQLite, not text.  Its ``FILE`` table holds one row
per file of a package: ``sha256``, ``sha1``, ``md5``, ``crc32`` (upper-case
hex), ``file_name``, ``file_size``, ``package_id``, with a primary key over
all of them; the database also has ``PKG``, ``MFG``, ``OS``, ``VERSION`` and
views such as ``DISTINCT_HASH``, which Vakta does not need.  Every NSRL file
is known software, so the list is a known-good one: imported with
``--ignore``, and the command line imports it that way by itself.

A modern RDS holds hundreds of millions of rows (one per file and package,
about 74 million distinct SHA-256).  Rows are read through a cursor, never
all at once; where the primary key's index can deliver them sorted by hash
(a covering index scan, no sort), consecutive rows of the same file are
skipped, so each file is read once without remembering any hash.  The store
merges whatever duplicates remain.  ``file_size`` is not read: the store
keeps no sizes.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import IO

from vakta.lists.model import ListRecord, ParseIssue
from vakta.signals import kinds

SQLITE_MAGIC = b"SQLite format 3\x00"
#: The hash columns of ``FILE`` Vakta reads, in the order of RDSv3's primary key.
HASH_COLUMNS = ("sha256", "sha1", "md5")


@contextmanager
def database_path(stream: IO[bytes]) -> Iterator[Path]:
    """A path SQLite can open for the database ``stream`` reads.

    SQLite reads pages at offsets of its own choosing through its own file
    handle, so it cannot read a Python stream.  A stream of a real file (the
    command line opens files by path) gives that file, checked to be the same
    one; anything else (a pipe, bytes in memory) is first copied to a
    temporary file, removed afterwards.
    """
    name = getattr(stream, "name", None)
    if isinstance(name, str) and _same_file(stream, name):
        yield Path(name)
        return
    with tempfile.NamedTemporaryFile(prefix="vakta-nsrl-", suffix=".sqlite") as spool:
        shutil.copyfileobj(stream, spool)
        spool.flush()
        yield Path(spool.name)


def _same_file(stream: IO[bytes], name: str) -> bool:
    try:
        return os.path.samestat(os.fstat(stream.fileno()), os.stat(name))
    except (OSError, ValueError):  # no descriptor (in memory), closed, or the name is gone
        return False


def open_read_only(path: Path) -> sqlite3.Connection:
    """The database opened read-only: an import never writes to the reference set."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def hash_columns(db: sqlite3.Connection) -> list[str] | str:
    """The ``FILE`` table's hash columns (as the table spells them), or why there are none."""
    present = {str(row[1]).lower(): str(row[1]) for row in db.execute('PRAGMA table_info("FILE")')}
    if not present:
        return "no FILE table: not an NSRL RDSv3 database"
    found = [present[c] for c in HASH_COLUMNS if c in present]
    return found or "the FILE table has no sha256, sha1 or md5 column"


def row_query(db: sqlite3.Connection, columns: Sequence[str]) -> str:
    """The query reading the columns, sorted where the table's index makes that free (no sort step)."""
    select = ", ".join(f'"{c}"' for c in columns)
    ordered = f'SELECT {select} FROM "FILE" ORDER BY {select}'
    plan = " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {ordered}"))
    return f'SELECT {select} FROM "FILE"' if "TEMP B-TREE" in plan.upper() else ordered


def row_records(db: sqlite3.Connection, columns: Sequence[str]) -> Iterator[ListRecord | ParseIssue]:
    """A record per distinct run of rows; ``line`` is the row's position in the scan.

    Flat on purpose: tens of millions of rows pass here, and only a row that
    is not three good hashes takes the slower path that explains why.
    """
    kinds_of = [c.lower() for c in columns]
    previous: tuple[object, ...] | None = None
    for number, row in enumerate(db.execute(row_query(db, columns)), 1):
        if row == previous:
            continue
        previous = row
        try:
            hashes = {
                k: kinds.normalize(k, v) for k, v in zip(kinds_of, row, strict=True) if isinstance(v, str)
            }
        except kinds.InvalidHashError:
            hashes = {}
        if len(hashes) == len(kinds_of):
            yield ListRecord(hashes, None, None, number)
        else:
            yield from row_record(number, kinds_of, row)


def row_record(
    number: int, kinds_of: Sequence[str], row: Sequence[object]
) -> Iterator[ListRecord | ParseIssue]:
    """One ``FILE`` row as a record, with an issue per unusable hash."""
    hashes: dict[str, str] = {}
    for kind, value in zip(kinds_of, row, strict=True):
        if not isinstance(value, str):
            yield ParseIssue(number, f"row {number}: {kind} is not text")
            continue
        try:
            hashes[kind] = kinds.normalize(kind, value)
        except kinds.InvalidHashError as exc:
            yield ParseIssue(number, f"row {number}: {exc}")
    if hashes:
        yield ListRecord(hashes, None, None, number)


class NsrlFormat:
    """NIST NSRL RDSv3 SQLite (``FILE`` table): known software, a known-good list."""

    name: str = "nsrl"
    #: Imported as a known-good (``--ignore``) list unless told otherwise: NSRL lists no bad file.
    known_good: bool = True

    def sniff(self, head: bytes, filename: str) -> bool:
        """True for a SQLite database (its 16-byte header)."""
        return head.startswith(SQLITE_MAGIC)

    def parse(self, stream: IO[bytes], kind: str | None) -> Iterator[ListRecord | ParseIssue]:
        """Yield one record per file row; an unusable database is one issue (the rows read so far stay)."""
        try:
            with database_path(stream) as path, closing(open_read_only(path)) as db:
                columns = hash_columns(db)
                if isinstance(columns, str):
                    yield ParseIssue(0, columns)
                    return
                yield from row_records(db, columns)
        except sqlite3.Error as exc:
            yield ParseIssue(0, f"not a readable SQLite database: {exc}")
        except OSError as exc:
            yield ParseIssue(0, f"cannot read the database: {exc.strerror or exc}")

    def export(self, records: Iterable[ListRecord], out: IO[str], list_name: str) -> None:
        """Not supported: the RDS is NIST's to publish; export known-good lists as CSV or hashdeep."""
        raise NotImplementedError("nsrl is import-only; export the list as csv or hashdeep")


FORMAT = NsrlFormat()
