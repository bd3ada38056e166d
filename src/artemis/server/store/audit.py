"""The audit log: one row per target a write found or made, read a page at a time.

Rules
  * An operation on an instance, server or zone (kinds `instance-operation`, `server-operation`,
    `zone-operation`) writes one row with the target's operations, sorted, before and after.
  * A write of groups, route rules, their groups, group members or logical instances writes one
    row per row it found or wrote, changed or not (unknown ids get none): `before`/`after` are
    [] (no row) or [the row as a JSON object], `detail` the JSON object of the fields written
    ({} if none), `operation` `create`, `update`, `release` or `delete` (`complete` is true for
    deletes only; a group operation's row has the operation and `complete` as given). Rows of
    groups carry the group's id, service, region, zone and name; of route rules the rule's id,
    service and name; of their groups the rule's id, service and the group's id; of a group's
    members the group's id, service, region and zone, and the member's key (`name` a tag,
    `instance_id` an instance id); of logical instances their service, instance, region, zone.
  * `audit()` reads a page and the count of matching rows in one snapshot, each filter
    equality on its column (None: the column is empty), as `wire.AuditEntry`: the columns the
    API shows (`group_id`, `route_rule_id`, `name` and `detail` are filters and records, not
    shown).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import ColumnElement, false, func, insert, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from artemis import wire
from artemis.server.store.engine import Database
from artemis.server.store.errors import StoreError, StoreValueError
from artemis.server.store.limits import MAX_AUDIT_PAGE, MAX_OFFSET, MAX_ROW_ID
from artemis.server.store.records import Context
from artemis.server.store.schema import AUDIT

__all__ = [
    "AUDIT_FILTERS",
    "KIND_GROUP",
    "KIND_GROUP_INSTANCE",
    "KIND_GROUP_OPERATION",
    "KIND_GROUP_TAG",
    "KIND_INSTANCE",
    "KIND_ROUTE_RULE",
    "KIND_ROUTE_RULE_GROUP",
    "KIND_SERVER",
    "KIND_SERVICE_INSTANCE",
    "KIND_ZONE",
    "AuditLog",
    "audit_row",
    "encode",
    "insert_audit",
]

KIND_INSTANCE: Final = "instance-operation"
KIND_SERVER: Final = "server-operation"
KIND_ZONE: Final = "zone-operation"
KIND_GROUP: Final = "group"
KIND_ROUTE_RULE: Final = "route-rule"
KIND_ROUTE_RULE_GROUP: Final = "route-rule-group"
KIND_GROUP_TAG: Final = "group-tag"
KIND_GROUP_INSTANCE: Final = "group-instance"
KIND_GROUP_OPERATION: Final = "group-operation"
KIND_SERVICE_INSTANCE: Final = "service-instance"
AUDIT_FILTERS: Final = frozenset({
    "kind", "region_id", "service_id", "instance_id", "server_id", "zone_id", "operation",
    "operator_id", "actor", "complete", "group_id", "route_rule_id", "name",
})
_INT_FILTERS: Final = frozenset({"group_id", "route_rule_id"})


def encode(operations: Sequence[str]) -> str:
    """An audit row's before or after: a JSON list."""
    return json.dumps(list(operations), ensure_ascii=False)


def _decode(column: str, value: str) -> list[str]:
    try:
        decoded = json.loads(value)
    except ValueError:
        decoded = None
    if not isinstance(decoded, list) or not all(isinstance(item, str) for item in decoded):
        raise StoreError(f"audit_log.{column} does not hold a JSON list of operations")
    return decoded


def _entry(row: RowMapping) -> wire.AuditEntry:
    return wire.AuditEntry(
        actor=row["actor"], after=_decode("after", row["after"]),
        before=_decode("before", row["before"]), complete=bool(row["complete"]),
        create_time=row["created_ms"], extensions=row["extensions"], id=row["id"],
        instance_id=row["instance_id"], kind=row["kind"], operation=row["operation"],
        operator_id=row["operator_id"], reason=row["reason"], region_id=row["region_id"],
        server_id=row["server_id"], service_id=row["service_id"], zone_id=row["zone_id"])


def _conditions(filters: Mapping[str, str | int | None]) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for name, value in filters.items():
        if name not in AUDIT_FILTERS:
            raise StoreValueError(f"the audit log cannot be filtered on {name!r}")
        wanted: type = bool if name == "complete" else int if name in _INT_FILTERS else str
        if value is not None and type(value) is not wanted:
            raise StoreValueError(f"the audit filter {name} takes {wanted.__name__} or None")
        column = AUDIT.c[name]
        if isinstance(value, int) and not isinstance(value, bool) and not (
                -MAX_ROW_ID - 1 <= value <= MAX_ROW_ID):
            conditions.append(false())  # no BIGINT holds it
            continue
        conditions.append(column.is_(None) if value is None else column == value)
    return conditions


def _row_json(row: Mapping[str, Any] | None) -> list[str]:
    """An audit row's before/after of a row: [] or [the row as JSON]."""
    if row is None:
        return []
    values = {name: bool(value) if name == "deleted" else value
              for name, value in row.items() if name != "target_key"}
    return [json.dumps(values, ensure_ascii=False, sort_keys=True)]


def audit_row(context: Context, kind: str, operation: str, before: Mapping[str, Any] | None,
              after: Mapping[str, Any] | None, written: Mapping[str, Any], *,
              service_id: str | None, region_id: str = "", zone_id: str | None = None,
              group_id: int | None = None, route_rule_id: int | None = None,
              name: str | None = None, instance_id: str | None = None,
              complete: bool | None = None) -> dict[str, Any]:
    """The audit row of a write of one row (`before`/`after` None: no row)."""
    return {
        "created_ms": context.now_ms, "actor": context.actor,
        "operator_id": context.operator_id, "kind": kind, "region_id": region_id,
        "service_id": service_id, "instance_id": instance_id, "server_id": None,
        "zone_id": zone_id, "operation": operation,
        "complete": operation == "delete" if complete is None else complete,
        "reason": context.reason,
        "extensions": context.extensions, "before": encode(_row_json(before)),
        "after": encode(_row_json(after)), "group_id": group_id,
        "route_rule_id": route_rule_id, "name": name,
        "detail": json.dumps(dict(written), ensure_ascii=False, sort_keys=True)}


async def insert_audit(connection: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await connection.execute(insert(AUDIT), rows)


class AuditLog:
    """The audit log of a database (see the module's rules)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def audit(
        self, filters: Mapping[str, str | int | None], *, offset: int = 0, limit: int = 100,
        newest_first: bool = True,
    ) -> tuple[list[wire.AuditEntry], int]:
        """One page of the audit log (at most MAX_AUDIT_PAGE rows) and how many rows match;
        each filter is equality on its column (None: the column is empty)."""
        if not 0 <= offset <= MAX_OFFSET or limit < 0:
            raise StoreValueError(f"offset must be 0 to {MAX_OFFSET} and limit at least 0")
        conditions = _conditions(filters)
        order = ((AUDIT.c.created_ms.desc(), AUDIT.c.id.desc()) if newest_first
                 else (AUDIT.c.created_ms.asc(), AUDIT.c.id.asc()))
        page = (select(AUDIT).where(*conditions).order_by(*order)
                .offset(offset).limit(min(limit, MAX_AUDIT_PAGE)))
        async with self._db.guard("audit"), self._db.snapshot() as connection:
            total = await connection.scalar(
                select(func.count()).select_from(AUDIT).where(*conditions))
            rows = (await connection.execute(page)).mappings().all()
        return [_entry(row) for row in rows], int(total or 0)
