"""Alembic's entry point: migrate over the connection ``Database.migrate`` hands in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from vakta.server.models import Base


def run() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("migrations run through vakta.server.db.Database.migrate (no offline mode)")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
