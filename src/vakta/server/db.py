"""The database: an engine for SQLite (default, under the Vakta home) or PostgreSQL, sessions, migrations.

Write transactions on SQLite begin with ``BEGIN IMMEDIATE``: writers queue
for the lock up front instead of failing half-way with "database is locked",
and WAL lets readers go on meanwhile. ``synchronous=FULL`` makes a committed
(acknowledged) alert survive a power cut, not only a killed process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Insert, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

#: The database file under the Vakta home when no ``--database`` is given.
DEFAULT_FILE = Path("server") / "console.db"
#: How long a SQLite writer waits for the lock before giving up (ms).
SQLITE_BUSY_MS = 60_000
#: Serialises schema migrations of servers starting at the same time (PostgreSQL advisory lock).
MIGRATION_LOCK = 0x76616B7461
_WRITE = "vakta_write"


class DatabaseError(Exception):
    """The database URL is not usable (unknown kind, unreachable folder)."""


def default_url(home: Path) -> str:
    return f"sqlite:///{home / DEFAULT_FILE}"


def normalise_url(url: str) -> URL:
    """``postgresql://`` and ``postgres://`` mean psycopg 3; ``sqlite:///`` a file (created with its folder)."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError with the URL's text
        raise DatabaseError(f"not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise DatabaseError("SQLite needs a file (sqlite:///path/console.db), not memory")
        return parsed.set(drivername="sqlite+pysqlite")
    raise DatabaseError(f"unsupported database {backend!r}: use sqlite:///FILE or postgresql://...")


class Database:
    """An engine and its two kinds of session: ``read()`` and ``write()`` (committed on exit)."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.dialect = self.url.get_backend_name()
        self.engine = self._engine()
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False)

    def _engine(self) -> Engine:
        if self.dialect != "sqlite":
            return create_engine(self.url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        path = Path(str(self.url.database))
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise DatabaseError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
        engine = create_engine(self.url, pool_size=8, max_overflow=16, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction committed when the block ends without error, rolled back otherwise."""
        with self._writer.begin() as session:
            yield session

    def migrate(self) -> None:
        """Bring the schema to the newest revision shipped in ``vakta.server.migrations``."""
        with self.engine.execution_options(**{_WRITE: True}).begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            command.upgrade(alembic_config(conn), "head")
        if self.dialect == "sqlite":
            os.chmod(str(self.url.database), 0o600)

    def schema_is_current(self) -> bool:
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_heads()
        head = ScriptDirectory.from_config(alembic_config(None)).get_heads()
        return set(current) == set(head)

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(connection: Connection | None) -> Config:
    """Alembic's settings in code: no alembic.ini is needed where Vakta is installed."""
    config = Config()
    config.set_main_option("script_location", str(files("vakta.server") / "migrations"))
    config.attributes["connection"] = connection
    return config


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see _sqlite_begin)
    for pragma in (
        "journal_mode=WAL",
        "synchronous=FULL",
        "foreign_keys=ON",
        f"busy_timeout={SQLITE_BUSY_MS}",
    ):
        dbapi_connection.execute(f"PRAGMA {pragma}")


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")


def insert_missing(session: Session, model: Any, values: Any, keys: list[str]) -> Insert:
    """``INSERT ... ON CONFLICT (keys) DO NOTHING`` in the session's dialect: rows already there stay as they are."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model).values(values).on_conflict_do_nothing(index_elements=keys)
    if dialect == "sqlite":
        return sqlite.insert(model).values(values).on_conflict_do_nothing(index_elements=keys)
    raise RuntimeError(f"no idempotent insert for {dialect}")
