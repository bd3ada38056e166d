"""Alembic migrations of the management store, shipped inside the package.

`ManagementStore.open()` runs them (`alembic.command.upgrade` to head) with a `Config` built in
code: no alembic.ini is needed. A new revision is a new module in `versions/` (copy the newest one:
`revision` is the next number, `down_revision` the newest's); revisions only add, never edit a
released one. The version table is `artemis_alembic_version`, so another application's Alembic
history in the same schema is left alone.
"""
