"""One module per schema revision (``alembic revision --autogenerate`` writes new ones)."""
