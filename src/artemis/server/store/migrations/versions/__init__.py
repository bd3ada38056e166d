"""Revisions of the management store's schema, oldest first (Alembic skips this module)."""
