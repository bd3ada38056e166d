"""A group's members (§4.7, §7.3): its tags, its explicit instances (canary's members) and the
operations in force on it.

Rules
  * Each member is unique on (group_id, its text) by target_key(str(group_id), text), and is
    deleted for good. Every write that names a group needs it to exist and not be deleted
    (StoreValueError naming the id otherwise, nothing written).
  * Audit rows as for groups (one per member found or written, changed or not; see audit.py),
    kinds `group-tag` (operation create/update/delete, `name` the tag), `group-instance`
    (create/delete, `instance_id`) and `group-operation` (`operation` the group's operation
    and `complete` as given, like the operate_* kinds).
  * `load()` shows the members of groups not deleted; the reads (`group_tags()` ...) show every
    row. Text filters and deletes by text compare exactly on every backend.
  * Explicit instances are read as `wire.GroupInstance`; tags and operations as the store's
    GroupTag and GroupOperation (the API shows them gathered by group).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Table, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from artemis import wire
from artemis.server.store.audit import (
    KIND_GROUP_INSTANCE,
    KIND_GROUP_OPERATION,
    KIND_GROUP_TAG,
    audit_row,
    insert_audit,
)
from artemis.server.store.engine import Database
from artemis.server.store.errors import StoreValueError
from artemis.server.store.limits import MAX_ID, MAX_NAME, MAX_ROW_ID, MAX_TAG_VALUE
from artemis.server.store.queries import (
    Changes,
    chunks,
    delete_rows,
    exact,
    inserted_id,
    read,
    rows_by_id,
)
from artemis.server.store.records import Context, GroupOperation, GroupTag
from artemis.server.store.schema import (
    GROUP_INSTANCES,
    GROUP_OPERATIONS,
    GROUP_TAGS,
    GROUPS,
    target_key,
)
from artemis.server.store.validation import (
    check_ids,
    check_members,
    check_optional,
    check_row_id,
    write_context,
)

__all__ = ["GroupMembers", "group_instance_of", "live_members", "operation_of", "tag_of"]


@dataclass(frozen=True, slots=True)
class _Member:
    """A kind of a group's member: its table, its text key (hashed with the group id into
    target_key), the fields an upsert rewrites, and the audit column that names the key (None:
    the audit row's `operation`)."""

    kind: str
    table: Table
    key: str
    limit: int
    fields: tuple[str, ...]
    audit_column: str | None

    def check(self, items: Iterable[object], size: int) -> list[dict[str, Any]]:
        return check_members(self.kind.replace("-", " "), self.key, self.limit, items, size)


_TAG: Final = _Member(KIND_GROUP_TAG, GROUP_TAGS, "tag", MAX_ID, ("value",), "name")
_GROUP_INSTANCE: Final = _Member(KIND_GROUP_INSTANCE, GROUP_INSTANCES, "instance_id", MAX_ID,
                                 (), "instance_id")
_GROUP_OPERATION: Final = _Member(KIND_GROUP_OPERATION, GROUP_OPERATIONS, "operation",
                                  MAX_NAME, (), None)
_GROUP_INSTANCE_FILTERS: Final = {"group_id": "group_id", "instance_id": "instance_id"}


def tag_of(row: Mapping[Any, Any]) -> GroupTag:
    return GroupTag(row["id"], row["group_id"], row["tag"], row["value"])


def group_instance_of(row: Mapping[Any, Any]) -> wire.GroupInstance:
    return wire.GroupInstance(group_id=row["group_id"], id=row["id"],
                              instance_id=row["instance_id"])


def operation_of(row: Mapping[Any, Any]) -> GroupOperation:
    return GroupOperation(row["id"], row["group_id"], row["operation"])


def _member_key(member: _Member, item: Mapping[str, Any]) -> str:
    return target_key(str(item["group_id"]), item[member.key])


def _member_audit(member: _Member, context: Context, operation: str,
                  before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
                  written: Mapping[str, Any], group_id: int, key: str,
                  groups: Mapping[int, Mapping[str, Any]], complete: bool | None = None,
                  ) -> dict[str, Any]:
    """The audit row of a write of a group's member; `groups` has the group's row (its
    service, region and zone) unless the group is gone."""
    group: Mapping[str, Any] = groups.get(group_id, {})
    return audit_row(context, member.kind, operation, before, after, written,
                     service_id=group.get("service_id"), region_id=group.get("region_id", ""),
                     zone_id=group.get("zone_id"), group_id=group_id, complete=complete,
                     name=key if member.audit_column == "name" else None,
                     instance_id=key if member.audit_column == "instance_id" else None)


async def _groups_by_id(connection: AsyncConnection, group_ids: Iterable[int], *,
                        live: bool) -> dict[int, dict[str, Any]]:
    """The groups of the given ids by id (deleted ones too unless `live`); with `live`, a
    StoreValueError names the first id of no group or of a deleted one."""
    ids = list(dict.fromkeys(group_ids))
    in_range = [row_id for row_id in ids if -MAX_ROW_ID - 1 <= row_id <= MAX_ROW_ID]
    where = [GROUPS.c.deleted.is_(False)] if live else []
    found = await rows_by_id(connection, GROUPS, in_range, *where)
    if live:
        for row_id in ids:
            if row_id not in found:
                raise StoreValueError(f"group {row_id} does not exist or is deleted")
    return found


async def _members_by_key(connection: AsyncConnection, member: _Member,
                          keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    table = member.table
    found: dict[str, dict[str, Any]] = {}
    for chunk in chunks(list(dict.fromkeys(keys))):
        rows = await connection.execute(select(table).where(table.c.target_key.in_(chunk)))
        found.update((row["target_key"], dict(row)) for row in rows.mappings())
    return found


async def _put_members(connection: AsyncConnection, member: _Member,
                       items: Sequence[dict[str, Any]]) -> Changes:
    """Insert each missing member and give the others the new fields (tags: the value);
    (before, after, fields written) of each item, in order."""
    table = member.table
    keys = [_member_key(member, item) for item in items]
    current = await _members_by_key(connection, member, keys)
    done: Changes = []
    for key, item in zip(keys, items, strict=True):
        before = current.get(key)
        written: dict[str, Any]
        if before is None:
            written = dict(item)
            inserted = await connection.execute(insert(table).values(target_key=key, **written))
            after = {"id": inserted_id(inserted), "target_key": key, **written}
        else:
            written = {name: item[name] for name in member.fields if before[name] != item[name]}
            after = before
            if written:
                await connection.execute(
                    update(table).where(table.c.id == before["id"]).values(**written))
                after = {**before, **written}
        current[key] = after
        done.append((before, after, written))
    return done


async def live_members(connection: AsyncConnection, table: Table) -> list[RowMapping]:
    """Every row of a member table whose group is not deleted, by id."""
    rows = await connection.execute(
        select(table).join(GROUPS, GROUPS.c.id == table.c.group_id)
        .where(GROUPS.c.deleted.is_(False)).order_by(table.c.id))
    return list(rows.mappings())


class GroupMembers:
    """The tags, explicit instances and operations of the groups of a database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert_group_tags(
        self, items: Sequence[tuple[int, str, str]], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> list[GroupTag]:
        """Give each (group_id, tag, value) its value, inserting the missing tags. Each group
        must exist and not be deleted. The tags after the write, one per item, in order."""
        tags = _TAG.check(items, 3)
        context = write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> list[GroupTag]:
            groups = await _groups_by_id(connection, (tag["group_id"] for tag in tags),
                                         live=True)
            done = await _put_members(connection, _TAG, tags)
            await insert_audit(connection, [
                _member_audit(_TAG, context, "create" if before is None else "update", before,
                              after, written, after["group_id"], after["tag"], groups)
                for before, after, written in done])
            return [tag_of(after) for _, after, _ in done]

        return await self._db.write("upsert group tags", write)

    async def delete_group_tags(
        self, group_id: int | None, tag: str | None, value: str | None, *, actor: str,
        operator_id: str, reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Delete (for good) every tag that matches each argument given (None: any): of the
        group (which must exist and not be deleted), with the tag, with the value. At least
        one must be given. How many tags were deleted."""
        if group_id is None and tag is None and value is None:
            raise StoreValueError("deleting every tag is refused: give a group, tag or value")
        if group_id is not None:
            check_row_id("group_id", group_id)
        check_optional("tag", tag, MAX_ID)
        check_optional("value", value, MAX_TAG_VALUE)
        context = write_context(actor, operator_id, reason, extensions, now_ms)
        filters = {"group_id": group_id, "tag": tag, "value": value}
        columns = {name: name for name in filters}
        where = [GROUP_TAGS.c[name] == wanted for name, wanted in filters.items()
                 if wanted is not None]

        async def write(connection: AsyncConnection) -> int:
            if group_id is not None:
                await _groups_by_id(connection, [group_id], live=True)
            rows = await connection.execute(
                select(GROUP_TAGS).where(*where).order_by(GROUP_TAGS.c.id))
            found = exact(rows.mappings(), columns, filters)
            groups = await _groups_by_id(connection, (row["group_id"] for row in found),
                                         live=False)
            await delete_rows(connection, GROUP_TAGS, [row["id"] for row in found])
            await insert_audit(connection, [
                _member_audit(_TAG, context, "delete", row, None, {}, row["group_id"],
                              row["tag"], groups) for row in found])
            return len(found)

        return await self._db.write("delete group tags", write)

    async def group_tags(self, group_id: int | None) -> list[GroupTag]:
        """The tags of a group (None: of every group; deleted groups' too), by id."""
        filters = {} if group_id is None else {"group_id": group_id}
        rows = await read(self._db, "group tags", GROUP_TAGS, {"group_id": "group_id"},
                          filters)
        return [tag_of(row) for row in rows]

    async def insert_group_instances(
        self, items: Sequence[tuple[int, str]], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> list[wire.GroupInstance]:
        """Insert each missing (group_id, instance_id); the present ones stay as they are. Each
        group must exist and not be deleted. The rows, one per item, in order."""
        members = _GROUP_INSTANCE.check(items, 2)
        context = write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> list[wire.GroupInstance]:
            groups = await _groups_by_id(connection, (item["group_id"] for item in members),
                                         live=True)
            done = await _put_members(connection, _GROUP_INSTANCE, members)
            await insert_audit(connection, [
                _member_audit(_GROUP_INSTANCE, context, "create", before, after, written,
                              after["group_id"], after["instance_id"], groups)
                for before, after, written in done])
            return [group_instance_of(after) for _, after, _ in done]

        return await self._db.write("insert group instances", write)

    async def delete_group_instances(
        self, group_instance_ids: Sequence[int], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Delete group instances by id (for good); unknown ids are ignored. How many were
        deleted."""
        ids = check_ids("group_instance_id", group_instance_ids)
        context = write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> int:
            found = await rows_by_id(connection, GROUP_INSTANCES, ids)
            gone = [found[row_id] for row_id in ids if row_id in found]
            groups = await _groups_by_id(connection, (row["group_id"] for row in gone),
                                         live=False)
            await delete_rows(connection, GROUP_INSTANCES, [row["id"] for row in gone])
            await insert_audit(connection, [
                _member_audit(_GROUP_INSTANCE, context, "delete", row, None, {},
                              row["group_id"], row["instance_id"], groups) for row in gone])
            return len(gone)

        return await self._db.write("delete group instances", write)

    async def group_instances(self, filters: Mapping[str, str | int | None],
                              ) -> list[wire.GroupInstance]:
        """Every group instance (deleted groups' too) that matches every filter (group_id,
        instance_id: equality), by id."""
        rows = await read(self._db, "group instances", GROUP_INSTANCES,
                          _GROUP_INSTANCE_FILTERS, filters)
        return [group_instance_of(row) for row in rows]

    async def set_group_instances(
        self, group_id: int, instance_ids: Sequence[str], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> tuple[int, int]:
        """Make the group's instances exactly `instance_ids` (canary): delete the others and
        insert the missing ones (audit rows: each deleted, then each id given, once, in
        order). The group must exist and not be deleted. How many were added and how many
        removed."""
        check_row_id("group_id", group_id)
        if isinstance(instance_ids, str):
            raise StoreValueError("instance_ids must be a sequence of instance ids, not text")
        members = _GROUP_INSTANCE.check(((group_id, instance_id)
                                         for instance_id in instance_ids), 2)
        members = list({item["instance_id"]: item for item in members}.values())  # each once
        wanted = {item["instance_id"] for item in members}
        context = write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> tuple[int, int]:
            groups = await _groups_by_id(connection, [group_id], live=True)
            rows = await connection.execute(select(GROUP_INSTANCES).where(
                GROUP_INSTANCES.c.group_id == group_id).order_by(GROUP_INSTANCES.c.id))
            gone = [dict(row) for row in rows.mappings() if row["instance_id"] not in wanted]
            await delete_rows(connection, GROUP_INSTANCES, [row["id"] for row in gone])
            done = await _put_members(connection, _GROUP_INSTANCE, members)
            audits = [_member_audit(_GROUP_INSTANCE, context, "delete", row, None, {},
                                    group_id, row["instance_id"], groups) for row in gone]
            audits += [_member_audit(_GROUP_INSTANCE, context, "create", before, after,
                                     written, group_id, after["instance_id"], groups)
                       for before, after, written in done]
            await insert_audit(connection, audits)
            return sum(1 for before, _, _ in done if before is None), len(gone)

        return await self._db.write("set group instances", write)

    async def operate_group_operations(
        self, items: Sequence[tuple[int, str]], complete: bool, *, actor: str,
        operator_id: str, reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Put each (group_id, operation) in force (complete=False; present ones stay) or end
        it (complete=True; missing ones are ignored). Each group must exist and not be
        deleted. How many operations were added or ended."""
        if type(complete) is not bool:
            raise StoreValueError("complete must be a bool")
        operations = _GROUP_OPERATION.check(items, 2)
        context = write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> int:
            groups = await _groups_by_id(
                connection, (item["group_id"] for item in operations), live=True)
            done: list[tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any]]]
            if not complete:
                done = list(await _put_members(connection, _GROUP_OPERATION, operations))
            else:
                current: dict[str, dict[str, Any] | None] = dict(await _members_by_key(
                    connection, _GROUP_OPERATION,
                    (_member_key(_GROUP_OPERATION, item) for item in operations)))
                done, gone = [], []
                for item in operations:
                    key = _member_key(_GROUP_OPERATION, item)
                    before = current.get(key)
                    if before is not None:
                        gone.append(before["id"])
                        current[key] = None
                    done.append((before, None, {}))
                await delete_rows(connection, GROUP_OPERATIONS, gone)
            audits = []
            for item, (before, after, written) in zip(operations, done, strict=True):
                audits.append(_member_audit(
                    _GROUP_OPERATION, context, item["operation"], before, after, written,
                    item["group_id"], item["operation"], groups, complete=complete))
            await insert_audit(connection, audits)
            return sum(1 for before, after, _ in done if (before is None) != (after is None))

        return await self._db.write("operate group operations", write)

    async def group_operations(self, group_id: int | None) -> list[GroupOperation]:
        """The operations in force on a group (None: on every group; deleted groups' too), by
        id."""
        filters = {} if group_id is None else {"group_id": group_id}
        rows = await read(self._db, "group operations", GROUP_OPERATIONS,
                          {"group_id": "group_id"}, filters)
        return [operation_of(row) for row in rows]
