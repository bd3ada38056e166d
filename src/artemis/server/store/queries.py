"""The SQL every concept of the store shares: ids in chunks, equality filters matched exactly,
rows by id, an insert's id.

Text filters compare exactly on every backend: the rows the database finds are matched again
in Python (MariaDB's collation ignores trailing spaces when it compares).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeAlias, TypeVar

from sqlalchemy import BigInteger, ColumnElement, Table, delete, false, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncConnection

from artemis.server.store.engine import Database
from artemis.server.store.errors import StoreError, StoreValueError
from artemis.server.store.limits import MAX_EXTENSIONS, MAX_ROW_ID
from artemis.server.store.validation import check_text

__all__ = ["Changes", "chunks", "conditions", "delete_rows", "exact", "inserted_id",
           "read", "rows_by_id"]

# (before, after, the fields written) of each row a write found or made, in order
Changes: TypeAlias = list[tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]]
_CHUNK: Final = 500  # ids per IN (...) list
_T = TypeVar("_T")


def chunks(values: Sequence[_T]) -> Iterable[Sequence[_T]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def conditions(table: Table, columns: Mapping[str, str], what: str,
               filters: Mapping[str, str | int | None]) -> list[ColumnElement[bool]]:
    """Equality conditions on `table` (None: the column is empty) of a `what` read; `columns`
    maps each filter's name to its column."""
    found: list[ColumnElement[bool]] = []
    for name, value in filters.items():
        if name not in columns:
            raise StoreValueError(f"{what} cannot be filtered on {name!r}")
        column = table.c[columns[name]]
        if value is None:
            found.append(column.is_(None))
        elif isinstance(column.type, BigInteger):
            if type(value) is not int:
                raise StoreValueError(f"the {what} filter {name} takes int or None")
            in_range = -MAX_ROW_ID - 1 <= value <= MAX_ROW_ID
            found.append(column == value if in_range else false())
        else:
            if type(value) is not str:
                raise StoreValueError(f"the {what} filter {name} takes str or None")
            check_text(name, value, MAX_EXTENSIONS)
            found.append(column == value)
    return found


def exact(rows: Iterable[Mapping[Any, Any]], columns: Mapping[str, str],
          filters: Mapping[str, object]) -> list[dict[str, Any]]:
    """The rows whose text columns equal the text filters exactly."""
    wanted = {columns[name]: value for name, value in filters.items() if isinstance(value, str)}
    return [dict(row) for row in rows
            if all(row[column] == value for column, value in wanted.items())]


def inserted_id(result: CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    if key is None or key[0] is None:
        raise StoreError("the database did not say the id of an inserted row")
    return int(key[0])


async def rows_by_id(connection: AsyncConnection, table: Table, ids: Sequence[int],
                     *where: ColumnElement[bool]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {}
    for chunk in chunks(ids):
        rows = await connection.execute(select(table).where(table.c.id.in_(chunk), *where))
        found.update((row["id"], dict(row)) for row in rows.mappings())
    return found


async def delete_rows(connection: AsyncConnection, table: Table, ids: Sequence[int]) -> None:
    for chunk in chunks(ids):
        await connection.execute(delete(table).where(table.c.id.in_(chunk)))


async def read(db: Database, what: str, table: Table, columns: Mapping[str, str],
               filters: Mapping[str, str | int | None]) -> list[dict[str, Any]]:
    """The rows of `table` that match every filter exactly (see `conditions`), by id, read in
    one snapshot of `db`."""
    where = conditions(table, columns, what, filters)
    async with db.guard(what), db.snapshot() as connection:
        rows = await connection.execute(select(table).where(*where).order_by(table.c.id))
        return exact(rows.mappings(), columns, filters)
