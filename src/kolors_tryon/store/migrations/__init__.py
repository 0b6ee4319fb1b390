"""Alembic migrations of the job store, shipped inside the package (see store/migrate.py)."""
