"""Groups and route rules (§4.7), and the groups of each route rule with their weights.

Rules
  * A group is unique on (service, region, zone, name), a route rule on (service, name), both
    by a target_key hash (so keys compare exactly on every backend); a route rule's groups are
    links (rule id, group id) with a released `weight` and a staged `unreleased_weight`.
  * `upsert_*` inserts a missing row; an existing one is revived (deleted=false) and, with
    `update=True`, gets the new fields. `delete_*` of groups and rules is soft (deleted=true),
    of links hard. Each write call is one transaction that bumps the version once and appends
    one audit row per entity it found or wrote (see audit.py; operation `create` for an upsert
    with update=False, create_route_rule and a new link, `update` for update=True and a link's
    new staged weight, `release`, `delete`). A call that refuses an argument (a missing or
    deleted id, a weight out of bounds, a status other than active/inactive) writes nothing,
    not even the version.
  * Rows are read as `wire.Group` (its `groupKey` service/region/zone/name),
    `wire.ServiceRouteRule` and `wire.RouteRuleGroup`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from artemis import wire
from artemis.server.store.audit import (
    KIND_GROUP,
    KIND_ROUTE_RULE,
    KIND_ROUTE_RULE_GROUP,
    audit_row,
    insert_audit,
)
from artemis.server.store.engine import Database
from artemis.server.store.errors import StoreValueError
from artemis.server.store.queries import (
    Changes,
    chunks,
    conditions,
    inserted_id,
    rows_by_id,
)
from artemis.server.store.records import (
    GROUP_KEYS,
    RULE_KEYS,
    Context,
    GroupSpec,
    RouteRuleSpec,
)
from artemis.server.store.schema import GROUPS, LINKS, RULES, target_key
from artemis.server.store.validation import (
    check_group,
    check_ids,
    check_pairs,
    check_rule,
    check_weight,
    write_context,
)

__all__ = ["GroupsAndRules", "group_of", "link_of", "rule_of"]


@dataclass(frozen=True, slots=True)
class _Entity:
    """A kind of row written by `upsert_*`: its table, key columns (hashed into target_key),
    the fields an update rewrites, the audit column that names the row's id, and the filters
    of its reads (name -> column)."""

    kind: str
    table: Table
    keys: tuple[str, ...]
    fields: tuple[str, ...]
    audit_id: str
    filters: dict[str, str]


_GROUP: Final = _Entity(
    KIND_GROUP, GROUPS, GROUP_KEYS, ("app_id", "description", "status"), "group_id",
    {"group_id": "id", **{name: name for name in (
        "service_id", "region_id", "zone_id", "name", "app_id", "status")}})
_RULE: Final = _Entity(
    KIND_ROUTE_RULE, RULES, RULE_KEYS, ("description", "status", "strategy"),
    "route_rule_id", {"route_rule_id": "id", "service_id": "service_id", "name": "name",
                      "status": "status"})
_LINK_FILTERS: Final = {"route_rule_group_id": "id", "route_rule_id": "route_rule_id",
                        "group_id": "group_id"}


def group_of(row: Mapping[Any, Any]) -> wire.Group:
    return wire.Group(
        app_id=row["app_id"], description=row["description"], group_id=row["id"],
        group_key=f"{row['service_id']}/{row['region_id']}/{row['zone_id']}/{row['name']}",
        name=row["name"], region_id=row["region_id"], service_id=row["service_id"],
        status=row["status"], zone_id=row["zone_id"])


def rule_of(row: Mapping[Any, Any]) -> wire.ServiceRouteRule:
    return wire.ServiceRouteRule(
        description=row["description"], name=row["name"], route_rule_id=row["id"],
        service_id=row["service_id"], status=row["status"], strategy=row["strategy"])


def link_of(row: Mapping[Any, Any]) -> wire.RouteRuleGroup:
    return wire.RouteRuleGroup(
        group_id=row["group_id"], route_rule_group_id=row["id"],
        route_rule_id=row["route_rule_id"], unreleased_weight=row["unreleased_weight"],
        weight=row["weight"])


def _entity_audit(entity: _Entity, context: Context, operation: str,
                  before: Mapping[str, Any] | None, after: Mapping[str, Any],
                  written: Mapping[str, Any]) -> dict[str, Any]:
    ids = {entity.audit_id: after["id"]}
    if entity is _GROUP:
        ids |= {"region_id": after["region_id"], "zone_id": after["zone_id"]}
    return audit_row(context, entity.kind, operation, before, after, written,
                     service_id=after["service_id"], name=after["name"], **ids)


def _link_audit(context: Context, operation: str, before: Mapping[str, Any] | None,
                after: Mapping[str, Any] | None, written: Mapping[str, Any],
                service_id: str | None) -> dict[str, Any]:
    row: Mapping[str, Any] = after or before or {}
    return audit_row(context, KIND_ROUTE_RULE_GROUP, operation, before, after, written,
                     service_id=service_id, group_id=row["group_id"],
                     route_rule_id=row["route_rule_id"])


async def _upsert(connection: AsyncConnection, entity: _Entity, items: Sequence[dict[str, Any]],
                  update_fields: bool, now_ms: int) -> Changes:
    """Insert each missing row, revive each deleted one and, with `update_fields`, write the
    new fields of the rest; (before, after, fields written) of each item, in order."""
    table = entity.table
    keys = [target_key(*(item[name] for name in entity.keys)) for item in items]
    current: dict[str, dict[str, Any]] = {}
    for chunk in chunks(list(dict.fromkeys(keys))):
        rows = await connection.execute(select(table).where(table.c.target_key.in_(chunk)))
        current.update((row["target_key"], dict(row)) for row in rows.mappings())
    done: Changes = []
    for key, item in zip(keys, items, strict=True):
        before = current.get(key)
        if before is None:
            written = {**item, "deleted": False}
            inserted = await connection.execute(insert(table).values(
                target_key=key, **written, created_ms=now_ms, updated_ms=now_ms))
            after = {"id": inserted_id(inserted), "target_key": key, **written,
                     "created_ms": now_ms, "updated_ms": now_ms}
        else:
            written = {"deleted": False} if before["deleted"] else {}
            if update_fields:
                written |= {name: item[name] for name in entity.fields
                            if before[name] != item[name]}
            after = before
            if written:
                await connection.execute(update(table).where(table.c.id == before["id"])
                                         .values(**written, updated_ms=now_ms))
                after = {**before, **written, "updated_ms": now_ms}
        current[key] = after
        done.append((before, after, written))
    return done


async def _links(connection: AsyncConnection, rule_ids: Iterable[int],
                 ) -> dict[tuple[int, int], dict[str, Any]]:
    """Every link of the given route rules, by (route_rule_id, group_id)."""
    found: dict[tuple[int, int], dict[str, Any]] = {}
    for chunk in chunks(list(dict.fromkeys(rule_ids))):
        rows = await connection.execute(select(LINKS).where(LINKS.c.route_rule_id.in_(chunk)))
        found.update(((row["route_rule_id"], row["group_id"]), dict(row))
                     for row in rows.mappings())
    return found


async def _set_links(connection: AsyncConnection, items: Sequence[tuple[int, int, int]],
                     ) -> Changes:
    """Set each link's unreleased weight, inserting the missing ones (weight None);
    (before, after, fields written) of each item, in order."""
    current = await _links(connection, (rule_id for rule_id, _, _ in items))
    done: Changes = []
    for rule_id, group_id, weight in items:
        before = current.get((rule_id, group_id))
        written: dict[str, Any]
        if before is None:
            written = {"route_rule_id": rule_id, "group_id": group_id, "weight": None,
                       "unreleased_weight": weight}
            inserted = await connection.execute(insert(LINKS).values(**written))
            after = {"id": inserted_id(inserted), **written}
        elif before["unreleased_weight"] != weight:
            written = {"unreleased_weight": weight}
            await connection.execute(
                update(LINKS).where(LINKS.c.id == before["id"]).values(**written))
            after = {**before, **written}
        else:
            written, after = {}, before
        current[(rule_id, group_id)] = after
        done.append((before, after, written))
    return done


async def _rule_services(connection: AsyncConnection, rule_ids: Iterable[int]) -> dict[int, str]:
    """The service of each route rule (deleted or not), by id."""
    rows = await rows_by_id(connection, RULES, list(dict.fromkeys(rule_ids)))
    return {row_id: row["service_id"] for row_id, row in rows.items()}


async def _live_targets(connection: AsyncConnection,
                        links: Sequence[tuple[Any, ...]]) -> dict[int, str]:
    """The service of each link's route rule; StoreValueError names the first rule or group
    that does not exist or is deleted, or a group of another service than its rule's."""
    rule_ids = check_ids("route_rule_id", (link[0] for link in links))
    group_ids = check_ids("group_id", (link[1] for link in links))
    rules = await rows_by_id(connection, RULES, rule_ids, RULES.c.deleted.is_(False))
    groups = await rows_by_id(connection, GROUPS, group_ids, GROUPS.c.deleted.is_(False))
    for link in links:
        if link[0] not in rules:
            raise StoreValueError(f"route rule {link[0]} does not exist or is deleted")
        if link[1] not in groups:
            raise StoreValueError(f"group {link[1]} does not exist or is deleted")
        rule_service, group_service = rules[link[0]]["service_id"], groups[link[1]]["service_id"]
        if rule_service != group_service:
            raise StoreValueError(f"group {link[1]} is of service {group_service!r}, not of "
                                  f"route rule {link[0]}'s {rule_service!r}")
    return {row_id: row["service_id"] for row_id, row in rules.items()}


class GroupsAndRules:
    """The groups, route rules and route rule groups of a database (see the module's rules)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert_groups(
        self, groups: Sequence[GroupSpec], *, update: bool, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> list[wire.Group]:
        """Insert each group missing by its key (service, region, zone, name); revive each
        deleted one and, with `update`, give the existing ones the new app_id, description and
        status. The rows after the write, one per spec, in order."""
        items = [check_group(spec) for spec in groups]
        return [group_of(row) for row in await self._upsert_entities(
            _GROUP, items, update, write_context(actor, operator_id, reason, extensions, now_ms))]

    async def delete_groups(
        self, group_ids: Sequence[int], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Mark groups deleted (their links stay, hidden from `load()`); unknown ids are
        ignored. How many groups were not deleted before."""
        ids = check_ids("group_id", group_ids)
        return await self._soft_delete(
            _GROUP, ids, write_context(actor, operator_id, reason, extensions, now_ms))

    async def groups(self, filters: Mapping[str, str | int | None]) -> list[wire.Group]:
        """The groups not deleted that match every filter (group_id, service_id, region_id,
        zone_id, name, app_id, status: equality; None: the column is empty), by id."""
        return [group_of(row) for row in await self._read(_GROUP, filters)]

    async def upsert_route_rules(
        self, rules: Sequence[RouteRuleSpec], *, update: bool, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> list[wire.ServiceRouteRule]:
        """Insert each route rule missing by its key (service, name); revive each deleted one
        and, with `update`, give the existing ones the new description, status and strategy.
        The rows after the write, one per spec, in order."""
        items = [check_rule(spec) for spec in rules]
        return [rule_of(row) for row in await self._upsert_entities(
            _RULE, items, update, write_context(actor, operator_id, reason, extensions, now_ms))]

    async def delete_route_rules(
        self, route_rule_ids: Sequence[int], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Mark route rules deleted (their links stay, hidden from `load()`); unknown ids are
        ignored. How many rules were not deleted before."""
        ids = check_ids("route_rule_id", route_rule_ids)
        return await self._soft_delete(
            _RULE, ids, write_context(actor, operator_id, reason, extensions, now_ms))

    async def route_rules(self, filters: Mapping[str, str | int | None],
                          ) -> list[wire.ServiceRouteRule]:
        """The route rules not deleted that match every filter (route_rule_id, service_id,
        name, status), by id."""
        return [rule_of(row) for row in await self._read(_RULE, filters)]

    async def upsert_route_rule_groups(
        self, items: Sequence[tuple[int, int, int]], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> list[wire.RouteRuleGroup]:
        """Set the unreleased weight of each (route_rule_id, group_id, weight), inserting the
        missing links (released weight None). Each rule and group must exist and not be
        deleted, each weight be within bounds: otherwise StoreValueError and nothing is
        written. The links after the write, one per item, in order."""
        links = check_pairs(items, 3)
        context = write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> list[wire.RouteRuleGroup]:
            services = await _live_targets(connection, links)
            done = await _set_links(connection, links)
            await insert_audit(connection, [
                _link_audit(context, "create" if before is None else "update", before, after,
                            written, services[after["route_rule_id"]])
                for before, after, written in done])
            return [link_of(after) for _, after, _ in done]

        return await self._db.write("upsert route rule groups", write)

    async def release_route_rule_groups(
        self, items: Sequence[tuple[int, int]], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Make the unreleased weight of each link (route_rule_id, group_id) its weight; a pair
        without a link is refused (StoreValueError, nothing written). How many weights
        changed."""
        pairs = check_pairs(items, 2)
        context = write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> int:
            current = await _links(connection, (rule_id for rule_id, _ in pairs))
            services = await _rule_services(connection, (rule_id for rule_id, _ in current))
            audits, changed = [], 0
            for rule_id, group_id in pairs:
                if (rule_id, group_id) not in current:
                    raise StoreValueError(f"route rule {rule_id} has no group {group_id}")
            for rule_id, group_id in pairs:
                before = current[(rule_id, group_id)]
                written: dict[str, Any] = {}
                if before["weight"] != before["unreleased_weight"]:
                    written = {"weight": before["unreleased_weight"]}
                    await connection.execute(
                        update(LINKS).where(LINKS.c.id == before["id"]).values(**written))
                    changed += 1
                after = current[(rule_id, group_id)] = {**before, **written}
                audits.append(_link_audit(context, "release", before, after, written,
                                          services.get(rule_id)))
            await insert_audit(connection, audits)
            return changed

        return await self._db.write("release route rule groups", write)

    async def delete_route_rule_groups(
        self, route_rule_group_ids: Sequence[int], *, actor: str, operator_id: str,
        reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> int:
        """Delete links by id (for good); unknown ids are ignored. How many were deleted."""
        ids = check_ids("route_rule_group_id", route_rule_group_ids)
        context = write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection) -> int:
            found = await rows_by_id(connection, LINKS, ids)
            services = await _rule_services(
                connection, (row["route_rule_id"] for row in found.values()))
            gone = [row_id for row_id in ids if row_id in found]
            for chunk in chunks(gone):
                await connection.execute(delete(LINKS).where(LINKS.c.id.in_(chunk)))
            await insert_audit(connection, [
                _link_audit(context, "delete", found[row_id], None, {},
                            services.get(found[row_id]["route_rule_id"]))
                for row_id in gone])
            return len(gone)

        return await self._db.write("delete route rule groups", write)

    async def route_rule_groups(self, filters: Mapping[str, int | None],
                                ) -> list[wire.RouteRuleGroup]:
        """Every link (deleted rules and groups included) that matches every filter
        (route_rule_group_id, route_rule_id, group_id), by id."""
        where = conditions(LINKS, _LINK_FILTERS, "route rule groups", filters)
        async with self._db.guard("route rule groups"), self._db.snapshot() as connection:
            rows = await connection.execute(select(LINKS).where(*where).order_by(LINKS.c.id))
            return [link_of(row) for row in rows.mappings()]

    async def create_route_rule(
        self, rule: RouteRuleSpec, groups: Sequence[tuple[GroupSpec, int]], *, actor: str,
        operator_id: str, reason: str | None = None, extensions: str = "{}", now_ms: int,
    ) -> tuple[wire.ServiceRouteRule, list[wire.Group]]:
        """In one transaction: insert or revive the rule, insert or revive each group (of the
        rule's service), and set each link's unreleased weight. The rule and the groups (one
        per item, in order) after the write."""
        rule_item = check_rule(rule)
        group_items: list[dict[str, Any]] = []
        weights: list[int] = []
        for entry in groups:
            if not isinstance(entry, tuple) or len(entry) != 2:
                raise StoreValueError("a group of a route rule must be a (GroupSpec, weight)")
            group_items.append(check_group(entry[0]))
            weights.append(check_weight(entry[1]))
            if group_items[-1]["service_id"] != rule_item["service_id"]:
                raise StoreValueError(
                    f"group {group_items[-1]['name']!r} is not of the route rule's service")
        context = write_context(actor, operator_id, reason, extensions, now_ms)

        async def write(connection: AsyncConnection,
                        ) -> tuple[wire.ServiceRouteRule, list[wire.Group]]:
            [(before, after, written)] = await _upsert(connection, _RULE, [rule_item], False,
                                                       now_ms)
            audits = [_entity_audit(_RULE, context, "create", before, after, written)]
            members = await _upsert(connection, _GROUP, group_items, False, now_ms)
            audits += [_entity_audit(_GROUP, context, "create", *member) for member in members]
            links = await _set_links(connection, [
                (after["id"], member["id"], weight)
                for (_, member, _), weight in zip(members, weights, strict=True)])
            audits += [_link_audit(context, "create" if link_before is None else "update",
                                   link_before, link_after, link_written, after["service_id"])
                       for link_before, link_after, link_written in links]
            await insert_audit(connection, audits)
            return rule_of(after), [group_of(member) for _, member, _ in members]

        return await self._db.write("create route rule", write)

    async def _read(self, entity: _Entity,
                    filters: Mapping[str, str | int | None]) -> list[RowMapping]:
        table = entity.table
        where = conditions(table, entity.filters, f"{entity.kind}s", filters)
        async with self._db.guard(f"{entity.kind}s"), self._db.snapshot() as connection:
            rows = await connection.execute(select(table).where(
                *where, table.c.deleted.is_(False)).order_by(table.c.id))
            return list(rows.mappings())

    async def _upsert_entities(self, entity: _Entity, items: list[dict[str, Any]],
                               update_fields: bool, context: Context) -> list[dict[str, Any]]:
        if type(update_fields) is not bool:
            raise StoreValueError("update must be a bool")
        operation = "update" if update_fields else "create"

        async def write(connection: AsyncConnection) -> list[dict[str, Any]]:
            done = await _upsert(connection, entity, items, update_fields, context.now_ms)
            await insert_audit(connection, [
                _entity_audit(entity, context, operation, *item) for item in done])
            return [after for _, after, _ in done]

        return await self._db.write(f"upsert {entity.kind}s", write)

    async def _soft_delete(self, entity: _Entity, ids: list[int], context: Context) -> int:
        table = entity.table

        async def write(connection: AsyncConnection) -> int:
            found = await rows_by_id(connection, table, ids)
            live = [row_id for row_id in ids if row_id in found and not found[row_id]["deleted"]]
            for chunk in chunks(live):
                await connection.execute(update(table).where(table.c.id.in_(chunk)).values(
                    deleted=True, updated_ms=context.now_ms))
            audits = []
            for row_id in ids:
                before = found.get(row_id)
                if before is None:
                    continue
                written = {} if before["deleted"] else {"deleted": True}
                after = {**before, **written, "updated_ms": context.now_ms} if written else before
                audits.append(_entity_audit(entity, context, "delete", before, after, written))
            await insert_audit(connection, audits)
            return len(live)

        return await self._db.write(f"delete {entity.kind}s", write)
