"""Pull-outs (§4.5): the operations in force on instances, servers and zones.

Rules
  * Keys are compared exactly as given: the API lower-cases region, service, instance, zone and
    server ids before calling the store (ids are case-insensitive, §3.1), and the store keeps
    what it is given. A target's row is unique on (target_key of its ids, operation).
  * Every operate_* call is one transaction: bump the version, read the target's operations,
    add (complete=False, pull-out) or remove (complete=True, pull-in) one, and append an audit
    row with the operations before and after. The version goes up by exactly 1 per call,
    whether or not anything changed, since the audit row is a write too.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from artemis.server.store.audit import KIND_INSTANCE, KIND_SERVER, KIND_ZONE, encode
from artemis.server.store.engine import Database
from artemis.server.store.errors import StoreValueError
from artemis.server.store.limits import MAX_ID, MAX_NAME
from artemis.server.store.records import Context
from artemis.server.store.schema import AUDIT, INSTANCE_OPS, SERVER_OPS, ZONE_OPS, target_key
from artemis.server.store.validation import check_context, check_text

__all__ = ["PullOuts"]


@dataclass(frozen=True, slots=True)
class _Target:
    """What an operation applies to: its kind, its table and its ids (column -> value)."""

    kind: str
    table: Table
    ids: dict[str, str]


class PullOuts:
    """The operations in force on instances, servers and zones of a database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def operate_instance(
        self, region: str, service: str, instance: str, operation: str, complete: bool, *,
        actor: str, operator_id: str, reason: str | None = None, extensions: str = "{}",
        now_ms: int,
    ) -> bool:
        """Pull an instance out (complete=False) or back in (True); whether anything changed."""
        target = _Target(KIND_INSTANCE, INSTANCE_OPS,
                         {"region_id": region, "service_id": service, "instance_id": instance})
        context = Context(actor, operator_id, reason, extensions, now_ms)
        return await self._operate(target, operation, complete, context)

    async def operate_server(
        self, region: str, server: str, operation: str, complete: bool, *,
        actor: str, operator_id: str, reason: str | None = None, extensions: str = "{}",
        now_ms: int,
    ) -> bool:
        """Pull a server (every instance on that IP or host) out or back in."""
        target = _Target(KIND_SERVER, SERVER_OPS, {"region_id": region, "server_id": server})
        context = Context(actor, operator_id, reason, extensions, now_ms)
        return await self._operate(target, operation, complete, context)

    async def operate_zone(
        self, region: str, service: str, zone: str, operation: str, complete: bool, *,
        actor: str, operator_id: str, reason: str | None = None, extensions: str = "{}",
        now_ms: int,
    ) -> bool:
        """Pull a service's instances in one zone out or back in."""
        target = _Target(KIND_ZONE, ZONE_OPS,
                         {"region_id": region, "service_id": service, "zone_id": zone})
        context = Context(actor, operator_id, reason, extensions, now_ms)
        return await self._operate(target, operation, complete, context)

    async def _operate(self, target: _Target, operation: str, complete: bool,
                       context: Context) -> bool:
        for column, value in target.ids.items():
            check_text(column, value, MAX_ID)
        check_text("operation", operation, MAX_NAME)
        check_context(context)
        if type(complete) is not bool or type(context.now_ms) is not int:
            raise StoreValueError("complete must be a bool and now_ms an int")
        table = target.table
        key = target_key(*target.ids.values())

        async def write(connection: AsyncConnection) -> bool:
            found = await connection.execute(
                select(table.c.operation).where(table.c.target_key == key))
            before = sorted(row[0] for row in found)
            changed = (operation in before) == complete
            if changed and complete:
                await connection.execute(delete(table).where(
                    table.c.target_key == key, table.c.operation == operation))
            elif changed:
                await connection.execute(insert(table).values(
                    target_key=key, **target.ids, operation=operation,
                    operator_id=context.operator_id, created_ms=context.now_ms))
            after = sorted(set(before) - {operation} if complete else {*before, operation})
            await connection.execute(insert(AUDIT).values(
                created_ms=context.now_ms, actor=context.actor,
                operator_id=context.operator_id, kind=target.kind, **target.ids,
                operation=operation, complete=complete, reason=context.reason,
                extensions=context.extensions, before=encode(before), after=encode(after)))
            return changed

        return await self._db.write(f"{target.kind} {operation}", write)
