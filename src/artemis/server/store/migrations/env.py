"""Alembic environment of the management store.

Run only through `ManagementStore.open()`, which passes an open SQLAlchemy connection (already in
a transaction, and holding the store's migration lock) as `config.attributes["connection"]`;
the store commits when the upgrade returns. There is no offline (SQL script) mode.
"""

from __future__ import annotations

from typing import Final

from alembic import context
from sqlalchemy.engine import Connection

VERSION_TABLE: Final = "artemis_alembic_version"


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("the management store's migrations run through ManagementStore.open()")
    context.configure(connection=connection, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
