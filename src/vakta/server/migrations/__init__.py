"""Alembic migrations of the console's schema, applied by ``Database.migrate`` at start."""
