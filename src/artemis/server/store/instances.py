"""Logical instances (§7.5): instances operators define, shown in discovery's `logicInstances`.

Rules
  * A logical instance is unique on (service, instance) by target_key, written whole
    (`upsert_service_instances` inserts or rewrites every field) and deleted for good; its
    `metadata` is a JSON object of text.
  * Each write appends one audit row per instance found or written, changed or not (kind
    `service-instance`, operation create/update/delete, with the instance's service, instance,
    region and zone; see audit.py).
  * Rows are read as `wire.ServiceInstance` (`metadata` a new dict of each read, or None).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from artemis import wire
from artemis.server.store.audit import KIND_SERVICE_INSTANCE, audit_row, insert_audit
from artemis.server.store.engine import Database
from artemis.server.store.errors import StoreError
from artemis.server.store.queries import (
    Changes,
    chunks,
    delete_rows,
    inserted_id,
    read,
    rows_by_id,
)
from artemis.server.store.records import (
    SERVICE_INSTANCE_FIELDS,
    SERVICE_INSTANCE_KEYS,
    Context,
    ServiceInstanceSpec,
)
from artemis.server.store.schema import SERVICE_INSTANCES, target_key
from artemis.server.store.validation import check_ids, check_service_instance, write_context

__all__ = ["LogicalInstances", "instance_row", "service_instance_of"]

_FILTERS: Final = {"service_id": "service_id", "instance_id": "instance_id"}


def _decode_metadata(value: str | None) -> dict[str, str] | None:
    if value is None:
        return None
    try:
        decoded = json.loads(value)
    except ValueError:
        decoded = None
    if not isinstance(decoded, dict) or not all(
            isinstance(key, str) and isinstance(item, str) for key, item in decoded.items()):
        raise StoreError("service_instance.metadata does not hold a JSON object of text")
    return decoded


def _encode_metadata(metadata: Mapping[str, str]) -> str:
    return json.dumps(dict(metadata), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def instance_row(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A row of service_instance with its metadata decoded."""
    values = dict(row)
    values["metadata"] = _decode_metadata(values["metadata"])
    return values


def _stored(values: Mapping[str, Any]) -> dict[str, Any]:
    """Columns of service_instance to write: the metadata as JSON text."""
    stored = dict(values)
    if stored.get("metadata") is not None:
        stored["metadata"] = _encode_metadata(stored["metadata"])
    return stored


def service_instance_of(row: Mapping[Any, Any]) -> wire.ServiceInstance:
    """A logical instance of a row whose metadata is decoded already (see instance_row)."""
    metadata = row["metadata"]
    return wire.ServiceInstance(
        description=row["description"], group_id=row["group_id"],
        health_check_url=row["health_check_url"], id=row["id"],
        instance_id=row["instance_id"], ip=row["ip"], machine_name=row["machine_name"],
        metadata=None if metadata is None else dict(metadata), port=row["port"],
        protocol=row["protocol"], region_id=row["region_id"], service_id=row["service_id"],
        url=row["url"], zone_id=row["zone_id"])


def _audit(context: Context, operation: str, before: Mapping[str, Any] | None,
           after: Mapping[str, Any] | None, written: Mapping[str, Any]) -> dict[str, Any]:
    row: Mapping[str, Any] = after or before or {}
    return audit_row(context, KIND_SERVICE_INSTANCE, operation, before, after, written,
                     service_id=row["service_id"], instance_id=row["instance_id"],
                     region_id=row["region_id"], zone_id=row["zone_id"])


async def _put(connection: AsyncConnection, items: Sequence[dict[str, Any]], now_ms: int,
               ) -> Changes:
    """Insert each missing logical instance and rewrite the fields that differ of the others;
    (before, after, fields written) of each item, in order."""
    table = SERVICE_INSTANCES
    keys = [target_key(*(item[name] for name in SERVICE_INSTANCE_KEYS)) for item in items]
    current: dict[str, dict[str, Any]] = {}
    for chunk in chunks(list(dict.fromkeys(keys))):
        rows = await connection.execute(select(table).where(table.c.target_key.in_(chunk)))
        current.update((row["target_key"], instance_row(row)) for row in rows.mappings())
    done: Changes = []
    for key, item in zip(keys, items, strict=True):
        before = current.get(key)
        written: dict[str, Any]
        if before is None:
            written = dict(item)
            inserted = await connection.execute(insert(table).values(
                target_key=key, **_stored(written), created_ms=now_ms, updated_ms=now_ms))
            after = {"id": inserted_id(inserted), "target_key": key, **written,
                     "created_ms": now_ms, "updated_ms": now_ms}
        else:
            written = {name: item[name] for name in SERVICE_INSTANCE_FIELDS
                       if before[name] != item[name]}
            after = before
            if written:
                await connection.execute(update(table).where(table.c.id == before["id"])
                                         .values(**_stored(written), updated_ms=now_ms))
                after = {**before, **written, "updated_ms": now_ms}
        current[key] = after
        done.append((before, after, written))
    return done


class LogicalInstances:
    """The logical instances of a database (see the module's rules)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert_service_instances(
        self, items: Sequence[ServiceInstanceSpec], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> list[wire.ServiceInstance]:
        """Insert each logical instance missing by its key (service, instance) and give the
        existing ones every field of the spec. The rows after the write, one per spec, in
        order."""
        specs = [check_service_instance(spec) for spec in items]
        context = write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> list[wire.ServiceInstance]:
            done = await _put(connection, specs, now_ms)
            await insert_audit(connection, [
                _audit(context, "create" if before is None else "update", before, after,
                       written) for before, after, written in done])
            return [service_instance_of(after) for _, after, _ in done]

        return await self._db.write("upsert service instances", write)

    async def delete_service_instances(
        self, service_instance_ids: Sequence[int], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Delete logical instances by id (for good); unknown ids are ignored. How many were
        deleted."""
        ids = check_ids("service_instance_id", service_instance_ids)
        context = write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> int:
            found = await rows_by_id(connection, SERVICE_INSTANCES, ids)
            gone = [instance_row(found[row_id]) for row_id in ids if row_id in found]
            await delete_rows(connection, SERVICE_INSTANCES, [row["id"] for row in gone])
            await insert_audit(connection, [
                _audit(context, "delete", row, None, {}) for row in gone])
            return len(gone)

        return await self._db.write("delete service instances", write)

    async def service_instances(self, filters: Mapping[str, str | int | None],
                                ) -> list[wire.ServiceInstance]:
        """The logical instances that match every filter (service_id, instance_id: equality),
        by id."""
        rows = await read(self._db, "service instances", SERVICE_INSTANCES, _FILTERS, filters)
        return [service_instance_of(instance_row(row)) for row in rows]
