"""Alembic migrations of the StrataLab store (run on every server start)."""
