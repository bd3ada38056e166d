"""The schema the shipped migrations make equals the tables store/schema.py declares, on SQLite
always and on MariaDB/MySQL and PostgreSQL when ARTEMIS_TEST_MYSQL_URL /
ARTEMIS_TEST_POSTGRES_URL name a server (one fresh database per test, as in test_store.py)."""

# STYLE.md has tests read `assert expected == actual`.

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Boolean, Column
from sqlalchemy.engine import Connection

from artemis.server.store.engine import migration_config
from artemis.server.store.schema import METADATA
from tests.server.test_store import db_url, engine

__all__ = ["db_url"]  # the fixture, of every backend
VERSION_TABLE = "artemis_alembic_version"  # Alembic's own (migrations/env.py)


def _boolean_defaults(_context: Any, _inspected: Any, declared: Column[Any],
                      inspected_default: str | None, *_rest: Any) -> bool | None:
    """Whether a boolean column's default differs (MySQL keeps `false` as TINYINT 0; every
    boolean default here is false); None: Alembic compares the others."""
    if isinstance(declared.type, Boolean):
        return (inspected_default or "").strip("'\"").lower() not in ("0", "false")
    return None


def _differences(connection: Connection) -> list[Any]:
    command.upgrade(migration_config(connection), "head")
    context = MigrationContext.configure(connection, opts={
        "compare_type": True, "compare_server_default": _boolean_defaults,
        "include_name": lambda name, kind, _parent: not (kind == "table"
                                                         and name == VERSION_TABLE)})
    return list(compare_metadata(context, METADATA))


async def test_the_migrated_schema_is_the_declared_one(db_url: str) -> None:
    """Migrating an empty database to head leaves exactly the declared tables, columns, types,
    nullability, keys and indexes: autogenerate finds nothing to change."""
    db = engine(db_url)
    try:
        async with db.begin() as connection:
            found = await connection.run_sync(_differences)
    finally:
        await db.dispose()
    assert [] == found
