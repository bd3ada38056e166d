"""Groups and route rules in the management store (§4.7), on SQLite always and on MariaDB/MySQL
and PostgreSQL when ARTEMIS_TEST_MYSQL_URL / ARTEMIS_TEST_POSTGRES_URL name a server (one fresh
database per test, as in test_store.py)."""

# STYLE.md has tests read `assert expected == actual`.

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import asdict, is_dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import column, inspect, table, text
from sqlalchemy.engine import Connection

from artemis import wire
from artemis.server.store import (
    KIND_GROUP,
    KIND_INSTANCE,
    KIND_ROUTE_RULE,
    KIND_ROUTE_RULE_GROUP,
    GroupSpec,
    ManagementData,
    ManagementStore,
    RouteRuleSpec,
    StoreError,
    StoreUnavailable,
    StoreValueError,
)
from tests.server.test_store import (
    CONTEXT,
    INJECTIONS,
    MYSQL_ENV,
    POSTGRES_ENV,
    _server,
    engine,
    fresh_database,
    scalars,
    table_names,
)

OLD_TABLES = ["artemis_alembic_version", "artemis_meta", "audit_log", "instance_operation",
              "server_operation", "zone_operation"]
TABLES = sorted([*OLD_TABLES, "service_group", "service_route_rule",
                 "service_route_rule_group", "service_group_tag", "service_group_instance",
                 "service_group_operation", "service_instance"])
NEW_AUDIT_COLUMNS = ["group_id", "route_rule_id", "name", "detail"]
EMPTY = ManagementData(frozenset(), frozenset(), frozenset(), 0)
G1 = GroupSpec("svc", "sha", "zone-1", "blue", app_id="app", description="the blue one")
G2 = GroupSpec("svc", "sha", "zone-2", "green")
R1 = RouteRuleSpec("svc", "split", description="canary split")


@pytest.fixture(params=["sqlite", "mysql", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The plain URL of an empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'management.db'}"
        return
    variable, what = ((MYSQL_ENV, "MariaDB/MySQL") if request.param == "mysql"
                      else (POSTGRES_ENV, "PostgreSQL"))
    async with fresh_database(_server(variable, what)) as url:
        yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[ManagementStore]:
    async with ManagementStore(db_url) as opened:
        yield opened


# -- helpers --------------------------------------------------------------------------------


def _alembic(connection: Connection, revision: str, up: bool) -> None:
    config = Config()
    migrations = resources.files("artemis.server.store") / "migrations"
    config.set_main_option("script_location", str(migrations))
    config.attributes["connection"] = connection
    (command.upgrade if up else command.downgrade)(config, revision)


async def migrate(url: str, revision: str, *, up: bool = True) -> None:
    """Run the shipped migrations up (or down) to `revision`, as an older node would have."""
    db = engine(url)
    try:
        async with db.begin() as connection:
            await connection.run_sync(_alembic, revision, up)
    finally:
        await db.dispose()


async def column_names(url: str, table: str) -> list[str]:
    db = engine(url)
    try:
        async with db.connect() as connection:
            columns = await connection.run_sync(lambda sync: inspect(sync).get_columns(table))
    finally:
        await db.dispose()
    return [found["name"] for found in columns]


async def execute(url: str, *statements: str) -> None:
    db = engine(url)
    try:
        async with db.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await db.dispose()


async def insert_rows(url: str, name: str, *rows: dict[str, Any]) -> None:
    """Insert rows as an older node would have, through a table of only the columns named."""
    db = engine(url)
    try:
        async with db.begin() as connection:
            target = table(name, *(column(key) for key in rows[0]))
            await connection.execute(target.insert(), list(rows))
    finally:
        await db.dispose()


async def counts(url: str) -> dict[str, int]:
    """How many rows each table of groups and route rules, and the audit log, holds."""
    found = {}
    for name in ("service_group", "service_route_rule", "service_route_rule_group",
                 "audit_log"):
        # the names are this test's own constants
        [found[name]] = await scalars(url, f"SELECT COUNT(*) FROM {name}")  # noqa: S608
    return found


Group = wire.Group
RouteRule = wire.ServiceRouteRule
RouteRuleGroup = wire.RouteRuleGroup
_IDS = {"group_id": Group, "route_rule_id": RouteRule, "route_rule_group_id": RouteRuleGroup}
TIMES = ("created_ms", "updated_ms")


def group(id: int, spec: GroupSpec) -> Group:
    return Group(group_id=id, group_key=f"{spec.service_id}/{spec.region_id}/{spec.zone_id}/"
                                        f"{spec.name}", **asdict(spec))


def rule(id: int, spec: RouteRuleSpec) -> RouteRule:
    return RouteRule(route_rule_id=id, **asdict(spec))


def link(id: int, route_rule_id: int, group_id: int, weight: int | None,
         unreleased_weight: int | None) -> RouteRuleGroup:
    return RouteRuleGroup(group_id=group_id, route_rule_group_id=id,
                          route_rule_id=route_rule_id, unreleased_weight=unreleased_weight,
                          weight=weight)


def columns(row: Any) -> dict[str, Any]:
    """A row the store read, as the columns of its table (times aside): the wire types name
    the id after the row's kind and add what is not a column (a group's key and metadata)."""
    if is_dataclass(row):
        return asdict(row)  # type: ignore[arg-type]
    values = msgspec.structs.asdict(row)
    for name, kind in _IDS.items():
        if type(row) is kind:
            values["id"] = values.pop(name)
    if type(row) is Group:
        del values["group_key"], values["metadata"]
    return values


def state(row: Any, deleted: bool | None = False) -> dict[str, Any]:
    """A row as the audit log shows it in before/after, times aside (links have no
    `deleted`)."""
    values = columns(row)
    if deleted is not None:
        values["deleted"] = deleted
    return values


async def audit_rows(url: str, **filters: Any) -> list[dict[str, Any]]:
    """The audit log's rows, oldest first, read behind the store (the columns the API does not
    show too), each filter equality on its column."""
    where = " AND ".join(f"{name} = :{name}" for name in filters) or "1 = 1"
    db = engine(url)
    try:
        async with db.connect() as connection:
            rows = await connection.execute(text(
                f"SELECT * FROM audit_log WHERE {where} ORDER BY created_ms, id"),  # noqa: S608
                filters)
            return [dict(row) for row in rows.mappings()]
    finally:
        await db.dispose()


def _decoded(item: str) -> dict[str, Any]:
    values = json.loads(item)
    for name in TIMES:
        values.pop(name, None)
    return values  # type: ignore[no-any-return]


async def audited(url: str, **filters: Any) -> list[dict[str, Any]]:
    """The audit rows, oldest first, with before/after (times aside) and detail decoded."""
    return [{
        "id": e["id"], "kind": e["kind"], "operation": e["operation"],
        "complete": bool(e["complete"]), "region_id": e["region_id"],
        "service_id": e["service_id"], "zone_id": e["zone_id"], "group_id": e["group_id"],
        "route_rule_id": e["route_rule_id"], "name": e["name"],
        "before": [_decoded(item) for item in json.loads(e["before"])],
        "after": [_decoded(item) for item in json.loads(e["after"])],
        "detail": None if e["detail"] is None else json.loads(e["detail"]),
    } for e in await audit_rows(url, **filters)]


def group_audit(id: int, operation: str, before: Group | None, after: Group,
                detail: dict[str, Any], *, deleted_before: bool = False,
                deleted_after: bool = False) -> dict[str, Any]:
    return {
        "id": id, "kind": KIND_GROUP, "operation": operation,
        "complete": operation == "delete", "region_id": after.region_id,
        "service_id": after.service_id, "zone_id": after.zone_id, "group_id": after.group_id,
        "route_rule_id": None, "name": after.name,
        "before": [] if before is None else [state(before, deleted_before)],
        "after": [state(after, deleted_after)], "detail": detail}


def rule_audit(id: int, operation: str, before: RouteRule | None, after: RouteRule,
               detail: dict[str, Any], *, deleted_before: bool = False,
               deleted_after: bool = False) -> dict[str, Any]:
    return {
        "id": id, "kind": KIND_ROUTE_RULE, "operation": operation,
        "complete": operation == "delete", "region_id": "", "service_id": after.service_id,
        "zone_id": None, "group_id": None, "route_rule_id": after.route_rule_id, "name": after.name,
        "before": [] if before is None else [state(before, deleted_before)],
        "after": [state(after, deleted_after)], "detail": detail}


def link_audit(id: int, operation: str, before: RouteRuleGroup | None,
               after: RouteRuleGroup | None, detail: dict[str, Any],
               service: str = "svc") -> dict[str, Any]:
    link = after if after is not None else before
    assert link is not None
    return {
        "id": id, "kind": KIND_ROUTE_RULE_GROUP, "operation": operation,
        "complete": operation == "delete", "region_id": "", "service_id": service,
        "zone_id": None, "group_id": link.group_id, "route_rule_id": link.route_rule_id,
        "name": None, "before": [] if before is None else [state(before, None)],
        "after": [] if after is None else [state(after, None)], "detail": detail}


def inserted(link: RouteRuleGroup) -> dict[str, Any]:
    """The detail of a link's insert: its columns but the id."""
    values = columns(link)
    del values["id"]
    return values


async def rule_with_groups(store: ManagementStore) -> tuple[RouteRule, Group, Group]:
    """Version 2: rule 1 (R1) and groups 1 (G1) and 2 (G2), written at 1 and 2."""
    [r1] = await store.upsert_route_rules([R1], update=False, **CONTEXT, now_ms=1)
    g1, g2 = await store.upsert_groups([G1, G2], update=False, **CONTEXT, now_ms=2)
    return r1, g1, g2


# -- migrations -----------------------------------------------------------------------------


async def test_an_empty_database_gets_the_groups_schema(db_url: str) -> None:
    """open() on an empty database migrates to 0002: every table, the audit columns, nothing in
    them, and load() has no groups, rules or links."""
    async with ManagementStore(db_url) as store:
        data = await store.load()
        assert (EMPTY, (), (), ()) == (
            data, data.groups, data.route_rules, data.route_rule_groups)
        assert [] == await store.groups({})
        assert [] == await store.route_rules({})
        assert [] == await store.route_rule_groups({})
    assert TABLES == await table_names(db_url)
    assert NEW_AUDIT_COLUMNS == (await column_names(db_url, "audit_log"))[-4:]
    assert ["0003"] == await scalars(db_url, "SELECT version_num FROM artemis_alembic_version")


async def test_an_r0001_database_is_upgraded_and_keeps_its_data(db_url: str) -> None:
    """A database an older node left at 0001 (with its version, operations and audit log) is
    upgraded by open(): the old data reads as before, and groups can be written at once."""
    await migrate(db_url, "0001")
    assert OLD_TABLES == await table_names(db_url)
    await execute(
        db_url, "UPDATE artemis_meta SET version = 7",
        "INSERT INTO instance_operation (target_key, region_id, service_id, instance_id, "
        "operation, operator_id, created_ms) VALUES ('k', 'sha', 'svc', 'i1', 'pullout', "
        "'alice', 5)")
    await insert_rows(db_url, "audit_log", {
        "created_ms": 5, "actor": "token-ops", "operator_id": "alice", "kind": KIND_INSTANCE,
        "region_id": "sha", "service_id": "svc", "instance_id": "i1", "operation": "pullout",
        "complete": False, "reason": "deploy", "extensions": "{}", "before": "[]",
        "after": '["pullout"]'})
    async with ManagementStore(db_url) as store:
        assert ManagementData(frozenset({("sha", "svc", "i1", "pullout")}), frozenset(),
                              frozenset(), 7) == await store.load()
        old = wire.AuditEntry(id=1, create_time=5, actor="token-ops", operator_id="alice",
                         kind=KIND_INSTANCE, region_id="sha", service_id="svc",
                         instance_id="i1", server_id=None, zone_id=None, operation="pullout",
                         complete=False, reason="deploy", extensions="{}", before=[],
                         after=["pullout"])
        assert ([old], 1) == await store.audit({})
        assert [group(1, G1)] == await store.upsert_groups([G1], update=False, **CONTEXT,
                                                              now_ms=9)
        assert 8 == await store.version()
    assert TABLES == await table_names(db_url)
    assert ["0003"] == await scalars(db_url, "SELECT version_num FROM artemis_alembic_version")


async def test_a_downgrade_drops_groups_and_keeps_the_rest(db_url: str) -> None:
    """Downgrading to 0001 drops the three tables and the audit columns, keeps the operations
    and the audit rows; opening again upgrades to an empty set of groups."""
    async with ManagementStore(db_url) as store:
        await store.operate_zone("sha", "svc", "z1", "pullout", False, **CONTEXT, now_ms=1)
        await rule_with_groups(store)
    await migrate(db_url, "0001", up=False)
    assert OLD_TABLES == await table_names(db_url)
    assert not set(NEW_AUDIT_COLUMNS) & set(await column_names(db_url, "audit_log"))
    assert [4] == await scalars(db_url, "SELECT COUNT(*) FROM audit_log")
    async with ManagementStore(db_url) as store:
        data = await store.load()
        assert (frozenset({("sha", "svc", "z1", "pullout")}), 3, ()) == (
            data.zone_ops, data.version, data.groups)
        assert 4 == (await store.audit({}))[1]
    assert TABLES == await table_names(db_url)


# -- groups ---------------------------------------------------------------------------------


async def test_inserting_groups(store: ManagementStore, db_url: str) -> None:
    """New groups get ids and times, one version for the call and one audit row each, and read
    back through groups() and load()."""
    written = await store.upsert_groups([G1, G2], update=False, **CONTEXT, now_ms=10)
    expected = [group(1, G1), group(2, G2)]
    assert expected == written
    assert 1 == await store.version()
    assert expected == await store.groups({})
    assert tuple(expected) == (await store.load()).groups
    assert [
        group_audit(1, "create", None, expected[0], {**asdict(G1), "deleted": False}),
        group_audit(2, "create", None, expected[1], {**asdict(G2), "deleted": False}),
    ] == await audited(db_url)
    entries, _ = await store.audit({"group_id": 1})
    assert ("token-ops", "alice", "deploy", '{"ticket":"OPS-1"}', None, None) == (
        entries[0].actor, entries[0].operator_id, entries[0].reason, entries[0].extensions,
        entries[0].instance_id, entries[0].server_id)


async def test_insert_keeps_an_existing_group_and_update_rewrites_it(
        store: ManagementStore, db_url: str) -> None:
    """On a group that exists, update=False changes nothing (still audited), update=True writes
    the new app_id, description and status; the key never changes."""
    [first] = await store.upsert_groups([G1], update=False, **CONTEXT, now_ms=1)
    changed = replace(G1, app_id=None, description="now inactive", status="inactive")
    assert [first] == await store.upsert_groups([changed], update=False, **CONTEXT, now_ms=2)
    updated = group(1, changed)
    assert [updated] == await store.upsert_groups([changed], update=True, **CONTEXT, now_ms=3)
    assert [updated] == await store.upsert_groups([changed], update=True, **CONTEXT, now_ms=4)
    assert 4 == await store.version()
    assert [updated] == await store.groups({})
    assert [
        group_audit(1, "create", None, first, {**asdict(G1), "deleted": False}),
        group_audit(2, "create", first, first, {}),
        group_audit(3, "update", first, updated,
                    {"app_id": None, "description": "now inactive", "status": "inactive"}),
        group_audit(4, "update", updated, updated, {}),
    ] == await audited(db_url)
    times = [(state["created_ms"], state["updated_ms"]) for row in await audit_rows(db_url)
             for state in map(json.loads, json.loads(row["after"]))]
    assert [(1, 1), (1, 1), (1, 3), (1, 3)] == times  # the audit keeps the rows' times


async def test_deleting_groups_is_soft_and_insert_revives_them(
        store: ManagementStore, db_url: str) -> None:
    """delete_groups marks groups deleted (unknown ids ignored) and counts those it changed;
    deleted groups are hidden; an insert revives the same row with its old fields, an update
    with the new ones."""
    g1, g2 = await store.upsert_groups([G1, G2], update=False, **CONTEXT, now_ms=1)
    assert 1 == await store.delete_groups([1, 99, 1, 2**70], **CONTEXT, now_ms=2)
    assert 0 == await store.delete_groups([1], **CONTEXT, now_ms=3)
    assert ([g2], (g2,)) == (await store.groups({}), (await store.load()).groups)
    assert [] == await store.groups({"group_id": 1})
    revived = group(1, G1)
    assert [revived] == await store.upsert_groups(
        [replace(G1, status="inactive")], update=False, **CONTEXT, now_ms=4)
    assert 1 == await store.delete_groups([1], **CONTEXT, now_ms=5)
    updated = group(1, replace(G1, description=None))
    assert [updated] == await store.upsert_groups(
        [replace(G1, description=None)], update=True, **CONTEXT, now_ms=6)
    assert 6 == await store.version()
    assert [updated, g2] == await store.groups({})
    deleted_at_2, deleted_at_5 = group(1, G1), group(1, G1)
    assert [
        group_audit(3, "delete", g1, deleted_at_2, {"deleted": True}, deleted_after=True),
        group_audit(4, "delete", deleted_at_2, deleted_at_2, {}, deleted_before=True,
                    deleted_after=True),
        group_audit(5, "create", deleted_at_2, revived, {"deleted": False},
                    deleted_before=True),
        group_audit(6, "delete", revived, deleted_at_5, {"deleted": True}, deleted_after=True),
        group_audit(7, "update", deleted_at_5, updated, {"deleted": False, "description": None},
                    deleted_before=True),
    ] == (await audited(db_url))[2:]


async def test_group_filters(store: ManagementStore) -> None:
    """Each filter is equality on its column (None: empty), they combine, deleted groups never
    match; an unknown filter or a value of the wrong type is a StoreValueError."""
    g3_spec = GroupSpec("other", "fra", "zone-1", "blue", app_id="app", status="inactive")
    g1, g2, g3 = await store.upsert_groups([G1, G2, g3_spec], update=False, **CONTEXT, now_ms=1)
    cases: list[tuple[dict[str, Any], list[Group]]] = [
        ({}, [g1, g2, g3]),
        ({"group_id": 2}, [g2]),
        ({"group_id": 2**64}, []),
        ({"service_id": "svc"}, [g1, g2]),
        ({"region_id": "fra"}, [g3]),
        ({"zone_id": "zone-1"}, [g1, g3]),
        ({"name": "blue"}, [g1, g3]),
        ({"app_id": "app"}, [g1, g3]),
        ({"app_id": None}, [g2]),
        ({"status": "inactive"}, [g3]),
        ({"status": "active", "name": "blue"}, [g1]),
        ({"name": "Blue"}, []),
    ]
    for filters, expected in cases:
        assert expected == await store.groups(filters), filters
    for bad in ({"description": "x"}, {"group_id": "1"}, {"group_id": True}, {"name": 1},
                {"name": "x\x00"}):
        with pytest.raises(StoreValueError):
            await store.groups(bad)


async def test_keys_are_exact_and_long_keys_fit(store: ManagementStore) -> None:
    """Case, accents, trailing spaces and 4-byte characters make different groups on every
    backend (the API lower-cases keys first); 256-character keys and 1024-character
    descriptions fit."""
    names = ["Blue", "blue", "blué", "blue ", "🚀"]
    specs = [replace(G1, name=name) for name in names]
    longest = "k" * 256
    specs.append(GroupSpec(longest, longest, longest, longest, app_id=longest,
                           description="d" * 1024, status="inactive"))
    written = await store.upsert_groups(specs, update=False, **CONTEXT, now_ms=1)
    assert [group(n, spec) for n, spec in enumerate(specs, 1)] == written
    assert written == await store.upsert_groups(specs, update=False, **CONTEXT, now_ms=2)
    assert tuple(written) == (await store.load()).groups
    rules = [RouteRuleSpec("svc", name) for name in names]
    assert [rule(n, spec) for n, spec in enumerate(rules, 1)] == (
        await store.upsert_route_rules(rules, update=False, **CONTEXT, now_ms=3))


# -- route rules ----------------------------------------------------------------------------


async def test_route_rules_insert_update_delete_and_revive(
        store: ManagementStore, db_url: str) -> None:
    """Route rules follow the groups' semantics: insert keeps, update rewrites description,
    status and strategy, delete is soft, insert revives; the strategy defaults to
    weighted-round-robin."""
    plain = RouteRuleSpec("svc", "plain")
    r1, r2 = await store.upsert_route_rules([R1, plain], update=False, **CONTEXT, now_ms=1)
    assert [rule(1, R1), rule(2, plain)] == [r1, r2]
    assert "weighted-round-robin" == r2.strategy
    changed = RouteRuleSpec("svc", "split", None, "inactive", "random")
    assert [r1] == await store.upsert_route_rules([changed], update=False, **CONTEXT, now_ms=2)
    updated = rule(1, changed)
    assert [updated] == await store.upsert_route_rules([changed], update=True, **CONTEXT,
                                                       now_ms=3)
    assert 1 == await store.delete_route_rules([2, 3, 2], **CONTEXT, now_ms=4)
    assert ([updated], (updated,)) == (await store.route_rules({}),
                                       (await store.load()).route_rules)
    revived = rule(2, plain)
    assert [revived] == await store.upsert_route_rules([plain], update=False, **CONTEXT,
                                                       now_ms=5)
    assert 5 == await store.version()
    deleted = rule(2, plain)
    assert [
        rule_audit(1, "create", None, r1, {**asdict(R1), "deleted": False}),
        rule_audit(2, "create", None, r2, {**asdict(plain), "deleted": False}),
        rule_audit(3, "create", r1, r1, {}),
        rule_audit(4, "update", r1, updated,
                   {"description": None, "status": "inactive", "strategy": "random"}),
        rule_audit(5, "delete", r2, deleted, {"deleted": True}, deleted_after=True),
        rule_audit(6, "create", deleted, revived, {"deleted": False}, deleted_before=True),
    ] == await audited(db_url)


async def test_route_rule_filters(store: ManagementStore) -> None:
    """route_rules() filters on route_rule_id, service_id, name and status."""
    specs = [R1, RouteRuleSpec("svc", "other", status="inactive"), RouteRuleSpec("b", "split")]
    r1, r2, r3 = await store.upsert_route_rules(specs, update=False, **CONTEXT, now_ms=1)
    cases: list[tuple[dict[str, Any], list[RouteRule]]] = [
        ({}, [r1, r2, r3]), ({"route_rule_id": 3}, [r3]), ({"service_id": "svc"}, [r1, r2]),
        ({"name": "split"}, [r1, r3]), ({"status": "inactive"}, [r2]),
        ({"service_id": "b", "name": "split"}, [r3]), ({"route_rule_id": -(2**70)}, []),
    ]
    for filters, expected in cases:
        assert expected == await store.route_rules(filters), filters
    for bad in ({"strategy": "random"}, {"route_rule_id": 1.0}, {"group_id": 1}):
        with pytest.raises(StoreValueError):
            await store.route_rules(bad)


# -- route rule groups ----------------------------------------------------------------------


async def test_links_stage_weights_and_release_copies_them(
        store: ManagementStore, db_url: str) -> None:
    """upsert_route_rule_groups stages unreleased weights (inserting links with no weight);
    release makes them the weight and counts the links it changed; a pair without a link is
    refused and releases nothing."""
    _, g1, g2 = await rule_with_groups(store)
    staged = [link(1, 1, 1, None, 5), link(2, 1, 2, None, 0)]
    assert staged == await store.upsert_route_rule_groups([(1, 1, 5), (1, 2, 0)], **CONTEXT,
                                                          now_ms=3)
    with pytest.raises(StoreValueError) as refused:
        await store.release_route_rule_groups([(1, 1), (1, 2), (1, 3), (9, 9)], **CONTEXT,
                                              now_ms=4)
    assert ("route rule 1 has no group 3", staged, 3) == (
        str(refused.value), await store.route_rule_groups({}), await store.version())
    assert 2 == await store.release_route_rule_groups([(1, 1), (1, 2)], **CONTEXT, now_ms=4)
    released = [link(1, 1, 1, 5, 5), link(2, 1, 2, 0, 0)]
    assert released == await store.route_rule_groups({})
    restaged = link(1, 1, 1, 5, 7)
    assert [restaged] == await store.upsert_route_rule_groups([(1, 1, 7)], **CONTEXT, now_ms=5)
    assert 1 == await store.release_route_rule_groups([(1, 1), (1, 2)], **CONTEXT, now_ms=6)
    final = [link(1, 1, 1, 7, 7), released[1]]
    assert (final, tuple(final)) == (await store.route_rule_groups({}),
                                     (await store.load()).route_rule_groups)
    assert 6 == await store.version()
    assert [
        link_audit(4, "create", None, staged[0], inserted(staged[0])),
        link_audit(5, "create", None, staged[1], inserted(staged[1])),
        link_audit(6, "release", staged[0], released[0], {"weight": 5}),
        link_audit(7, "release", staged[1], released[1], {"weight": 0}),
        link_audit(8, "update", released[0], restaged, {"unreleased_weight": 7}),
        link_audit(9, "release", restaged, final[0], {"weight": 7}),
        link_audit(10, "release", released[1], released[1], {}),
    ] == (await audited(db_url))[3:]
    assert (g1, g2) == (await store.load()).groups


async def test_deleting_links_is_for_good(store: ManagementStore, db_url: str) -> None:
    """delete_route_rule_groups removes links by id and counts them; unknown ids are ignored."""
    await rule_with_groups(store)
    staged = await store.upsert_route_rule_groups([(1, 1, 5), (1, 2, 3)], **CONTEXT, now_ms=3)
    assert 1 == await store.delete_route_rule_groups([2, 2, 3, 2**64], **CONTEXT, now_ms=4)
    assert 0 == await store.delete_route_rule_groups([2], **CONTEXT, now_ms=5)
    assert [staged[0]] == await store.route_rule_groups({})
    assert 5 == await store.version()
    assert [link_audit(6, "delete", staged[1], None, {})] == (await audited(db_url))[5:]


async def test_link_filters(store: ManagementStore) -> None:
    """route_rule_groups() filters on route_rule_group_id, route_rule_id and group_id."""
    await rule_with_groups(store)
    await store.upsert_route_rules([RouteRuleSpec("svc", "two")], update=False, **CONTEXT,
                                   now_ms=3)
    links = await store.upsert_route_rule_groups([(1, 1, 1), (1, 2, 2), (2, 2, 3)], **CONTEXT,
                                                 now_ms=4)
    cases: list[tuple[dict[str, Any], list[RouteRuleGroup]]] = [
        ({}, links), ({"route_rule_group_id": 2}, [links[1]]),
        ({"route_rule_id": 1}, links[:2]), ({"group_id": 2}, links[1:]),
        ({"route_rule_id": 2, "group_id": 2}, [links[2]]), ({"group_id": 2**63}, []),
    ]
    for filters, expected in cases:
        assert expected == await store.route_rule_groups(filters), filters
    for bad in ({"weight": 1}, {"group_id": "1"}):
        with pytest.raises(StoreValueError):
            await store.route_rule_groups(bad)


async def test_load_hides_links_of_deleted_rules_and_groups(store: ManagementStore) -> None:
    """load() lists the links whose rule and group are both live; route_rule_groups() lists
    every link; reviving brings a link back."""
    await rule_with_groups(store)
    await store.upsert_route_rules([RouteRuleSpec("svc", "two")], update=False, **CONTEXT,
                                   now_ms=3)
    links = await store.upsert_route_rule_groups([(1, 1, 1), (1, 2, 2), (2, 1, 3)], **CONTEXT,
                                                 now_ms=4)
    await store.delete_groups([2], **CONTEXT, now_ms=5)
    await store.delete_route_rules([2], **CONTEXT, now_ms=6)
    data = await store.load()
    assert ((links[0],), [1], [1], links) == (
        data.route_rule_groups, [g.group_id for g in data.groups],
        [r.route_rule_id for r in data.route_rules],
        await store.route_rule_groups({}))
    await store.upsert_groups([G2], update=False, **CONTEXT, now_ms=7)
    assert (links[0], links[1]) == (await store.load()).route_rule_groups


# -- refusals -------------------------------------------------------------------------------


async def test_refused_writes_write_nothing(store: ManagementStore, db_url: str) -> None:
    """Missing or deleted ids, bad weights, bad statuses and text that does not fit are
    StoreValueErrors naming the problem; the version, the tables and the audit log stay as
    they were."""
    await rule_with_groups(store)
    await store.upsert_route_rule_groups([(1, 1, 5)], **CONTEXT, now_ms=3)
    await store.delete_groups([2], **CONTEXT, now_ms=4)
    before = (await store.load(), await counts(db_url), await audited(db_url))
    ctx = {**CONTEXT, "now_ms": 9}
    cases: list[tuple[Any, str]] = [
        (lambda: store.upsert_route_rule_groups([(1, 1, 6), (7, 1, 1)], **ctx), "route rule 7"),
        (lambda: store.upsert_route_rule_groups([(1, 1, 6), (1, 8, 1)], **ctx), "group 8"),
        (lambda: store.upsert_route_rule_groups([(1, 2, 1)], **ctx), "group 2 .*deleted"),
        (lambda: store.upsert_route_rule_groups([(2**64, 1, 1)], **ctx), f"route rule {2**64}"),
        (lambda: store.upsert_route_rule_groups([(1, 1, -1)], **ctx), "weight"),
        (lambda: store.upsert_route_rule_groups([(1, 1, 10_001)], **ctx), "weight"),
        (lambda: store.upsert_route_rule_groups([(1, 1, None)], **ctx), "weight"),
        (lambda: store.upsert_route_rule_groups([(1, 1, True)], **ctx), "weight"),
        (lambda: store.upsert_route_rule_groups([(1, 1)], **ctx), "tuple of 3"),
        (lambda: store.upsert_route_rule_groups([("1", 1, 1)], **ctx),
         "route_rule_id must be an int"),
        (lambda: store.release_route_rule_groups([(1, True)], **ctx), "group_id must be an int"),
        (lambda: store.delete_groups(["1"], **ctx), "group_id must be an int"),
        (lambda: store.delete_route_rules([1.5], **ctx), "route_rule_id must be an int"),
        (lambda: store.delete_route_rule_groups([None], **ctx), "route_rule_group_id"),
        (lambda: store.upsert_groups([G1, replace(G2, status="Active")], update=True, **ctx),
         "status must be active or inactive"),
        (lambda: store.upsert_groups([replace(G1, status="enabled")], update=False, **ctx),
         "status"),
        (lambda: store.upsert_groups([replace(G1, status="s" * 33)], update=False, **ctx),
         "status is longer than 32"),
        (lambda: store.upsert_groups([replace(G1, name="n" * 257)], update=False, **ctx),
         "name is longer than 256"),
        (lambda: store.upsert_groups([replace(G1, app_id="a" * 257)], update=False, **ctx),
         "app_id"),
        (lambda: store.upsert_groups([replace(G1, description="d" * 1025)], update=False, **ctx),
         "description is longer than 1024"),
        (lambda: store.upsert_groups([replace(G1, zone_id="z\x00")], update=False, **ctx), "NUL"),
        (lambda: store.upsert_groups([G1], update=1, **ctx), "update must be a bool"),
        (lambda: store.upsert_groups([R1], update=False, **ctx), "GroupSpec"),
        (lambda: store.upsert_route_rules([replace(R1, strategy="s" * 65)], update=True, **ctx),
         "strategy is longer than 64"),
        (lambda: store.upsert_route_rules([replace(R1, status="INACTIVE")], update=True, **ctx),
         "status"),
        (lambda: store.upsert_route_rules([replace(R1, name="r\ud800")], update=True, **ctx),
         "not valid Unicode"),
        (lambda: store.upsert_groups([G1], update=False, **{**ctx, "actor": "a" * 129}), "actor"),
        (lambda: store.delete_groups([1], **{**ctx, "now_ms": 1.5}), "now_ms"),
    ]
    for call, message in cases:
        with pytest.raises(StoreValueError, match=message):
            await call()
    assert before == (await store.load(), await counts(db_url), await audited(db_url))


async def test_create_route_rule(store: ManagementStore, db_url: str) -> None:
    """create_route_rule writes the rule, its groups and their links with unreleased weights in
    one call (one version); on existing rows it revives them and restages the weights."""
    rule_1, groups = await store.create_route_rule(R1, [(G1, 5), (G2, 0)], **CONTEXT, now_ms=1)
    expected_rule, expected_groups = rule(1, R1), [group(1, G1), group(2, G2)]
    assert (expected_rule, expected_groups) == (rule_1, groups)
    staged = [link(1, 1, 1, None, 5), link(2, 1, 2, None, 0)]
    data = await store.load()
    assert (1, (expected_rule,), tuple(expected_groups), tuple(staged)) == (
        data.version, data.route_rules, data.groups, data.route_rule_groups)
    assert [
        rule_audit(1, "create", None, expected_rule, {**asdict(R1), "deleted": False}),
        group_audit(2, "create", None, expected_groups[0], {**asdict(G1), "deleted": False}),
        group_audit(3, "create", None, expected_groups[1], {**asdict(G2), "deleted": False}),
        link_audit(4, "create", None, staged[0], inserted(staged[0])),
        link_audit(5, "create", None, staged[1], inserted(staged[1])),
    ] == await audited(db_url)

    await store.release_route_rule_groups([(1, 1)], **CONTEXT, now_ms=2)
    await store.delete_route_rules([1], **CONTEXT, now_ms=3)
    await store.delete_groups([1], **CONTEXT, now_ms=4)
    changed = replace(R1, status="inactive")
    again, members = await store.create_route_rule(changed, [(G1, 9)], **CONTEXT, now_ms=5)
    assert (rule(1, R1), [group(1, G1)]) == (again, members)
    assert [link(1, 1, 1, 5, 9), staged[1]] == await store.route_rule_groups({})
    assert 5 == await store.version()


async def test_create_route_rule_refusals_write_nothing(
        store: ManagementStore, db_url: str) -> None:
    """A bad group, weight or service anywhere in create_route_rule is a StoreValueError and
    nothing of the call is written."""
    ctx = {**CONTEXT, "now_ms": 1}
    cases: list[tuple[Any, str]] = [
        (lambda: store.create_route_rule(R1, [(G1, 5), (replace(G2, status="on"), 5)], **ctx),
         "status"),
        (lambda: store.create_route_rule(R1, [(G1, 5), (G2, -1)], **ctx), "weight"),
        (lambda: store.create_route_rule(R1, [(G1, 5), (replace(G2, service_id="x"), 1)], **ctx),
         "not of the route rule's service"),
        (lambda: store.create_route_rule(replace(R1, status="x"), [(G1, 5)], **ctx), "status"),
        (lambda: store.create_route_rule(R1, [G1], **ctx), "GroupSpec, weight"),
    ]
    for call, message in cases:
        with pytest.raises(StoreValueError, match=message):
            await call()
    assert (EMPTY, {"service_group": 0, "service_route_rule": 0, "service_route_rule_group": 0,
                    "audit_log": 0}) == (await store.load(), await counts(db_url))


async def test_create_route_rule_is_one_transaction(store: ManagementStore, db_url: str) -> None:
    """When the database fails after the rule and the groups were written (here: the links'
    table is gone), nothing of the call stays: no rule, no group, no audit row, no version."""
    await execute(db_url, "DROP TABLE service_route_rule_group")
    with pytest.raises(StoreError) as raised:
        await store.create_route_rule(R1, [(G1, 5), (G2, 1)], **CONTEXT, now_ms=1)
    assert not isinstance(raised.value, StoreValueError)
    assert ([0], [0], [0], [0]) == (
        await scalars(db_url, "SELECT version FROM artemis_meta"),
        await scalars(db_url, "SELECT COUNT(*) FROM service_route_rule"),
        await scalars(db_url, "SELECT COUNT(*) FROM service_group"),
        await scalars(db_url, "SELECT COUNT(*) FROM audit_log"))


# -- everything together --------------------------------------------------------------------


async def test_load_returns_everything_in_one_snapshot(store: ManagementStore) -> None:
    """After a mix of operations, groups, rules and links, load() returns all of it, consistent
    with the reads and the version (one per call)."""
    await store.operate_instance("sha", "svc", "i1", "pullout", False, **CONTEXT, now_ms=1)
    rule_1, groups = await store.create_route_rule(R1, [(G1, 1), (G2, 2)], **CONTEXT, now_ms=2)
    await store.operate_server("sha", "10.0.0.1", "pullout", False, **CONTEXT, now_ms=3)
    await store.release_route_rule_groups([(1, 1), (1, 2)], **CONTEXT, now_ms=4)
    await store.operate_zone("sha", "svc", "zone-1", "pullout", False, **CONTEXT, now_ms=5)
    expected = ManagementData(
        frozenset({("sha", "svc", "i1", "pullout")}), frozenset({("sha", "10.0.0.1", "pullout")}),
        frozenset({("sha", "svc", "zone-1", "pullout")}), 5, tuple(groups), (rule_1,),
        (link(1, 1, 1, 1, 1), link(2, 1, 2, 2, 2)))
    assert expected == await store.load()
    assert (list(expected.groups), list(expected.route_rules),
            list(expected.route_rule_groups)) == (
        await store.groups({}), await store.route_rules({}), await store.route_rule_groups({}))
    assert (10, 2) == ((await store.audit({}, limit=0))[1],
                       (await store.audit({"kind": KIND_GROUP}, limit=0))[1])


async def test_audit_filters_on_groups_and_rules(store: ManagementStore, db_url: str) -> None:
    """The audit log filters on group_id, route_rule_id and name too; old kinds have them
    empty."""
    await store.operate_instance("sha", "svc", "i1", "pullout", False, **CONTEXT, now_ms=1)
    await store.create_route_rule(R1, [(G1, 1), (G2, 2)], **CONTEXT, now_ms=2)
    cases: list[tuple[dict[str, Any], list[int]]] = [
        ({"group_id": 1}, [5, 3]), ({"route_rule_id": 1}, [6, 5, 2]),
        ({"name": "split"}, [2]), ({"name": "blue"}, [3]), ({"group_id": None}, [2, 1]),
        ({"kind": KIND_ROUTE_RULE_GROUP, "group_id": 2}, [6]), ({"group_id": 2**63}, []),
    ]
    for filters, expected in cases:
        entries, total = await store.audit(filters)
        assert (expected, len(expected)) == ([e.id for e in entries], total), filters
    for bad in ({"group_id": "1"}, {"route_rule_id": True}, {"name": 1}):
        with pytest.raises(StoreValueError):
            await store.audit(bad)
    [row] = await audit_rows(db_url, kind=KIND_INSTANCE)
    assert (None, None, None, None, '["pullout"]') == (
        row["group_id"], row["route_rule_id"], row["name"], row["detail"], row["after"])


async def test_injection_strings_are_just_data(store: ManagementStore, db_url: str) -> None:
    """Quotes, comments and wildcards in every text field of groups and rules are stored,
    found and read back as they were; no table goes anywhere."""
    groups = [GroupSpec(evil, evil, evil, evil, evil, evil) for evil in INJECTIONS]
    rules = [RouteRuleSpec(evil, evil, evil, "inactive", evil) for evil in INJECTIONS]
    ctx = {"actor": "a", "operator_id": "o", "reason": INJECTIONS[0],
           "extensions": INJECTIONS[1]}
    written = await store.upsert_groups(groups, update=True, **ctx, now_ms=1)
    assert [group(n, spec) for n, spec in enumerate(groups, 1)] == written
    written_rules = await store.upsert_route_rules(rules, update=True, **ctx, now_ms=2)
    assert [rule(n, spec) for n, spec in enumerate(rules, 1)] == written_rules
    for n, evil in enumerate(INJECTIONS):
        filters = dict.fromkeys(("service_id", "region_id", "zone_id", "name", "app_id"), evil)
        assert [written[n]] == await store.groups(filters)
        assert [written_rules[n]] == await store.route_rules({"service_id": evil,
                                                              "name": evil})
        entries, total = await store.audit({"name": evil, "kind": KIND_GROUP})
        assert (1, [state(written[n]) | {"created_ms": 1, "updated_ms": 1}]) == (
            total, [json.loads(item) for item in entries[0].after])
    assert (tuple(written), tuple(written_rules)) == (
        (await store.load()).groups, (await store.load()).route_rules)
    assert TABLES == await table_names(db_url)


async def test_concurrent_identical_inserts_make_one_group(
        store: ManagementStore, db_url: str) -> None:
    """Eight nodes inserting the same group at once: one row, eight versions, eight audit rows
    (one with no row before)."""
    results = await asyncio.gather(*(
        store.upsert_groups([G1], update=False, **CONTEXT, now_ms=t) for t in range(8)))
    assert 1 == len({tuple(result) for result in results})
    assert [results[0][0]] == await store.groups({})
    rows = await audited(db_url)
    assert (8, 8, 1) == (await store.version(), len(rows),
                         sum(1 for row in rows if row["before"] == []))


async def test_a_write_blocked_by_a_lock_gives_up_within_the_timeout(db_url: str) -> None:
    """While another transaction holds the version row, a group write fails with
    StoreUnavailable within the timeout and leaves nothing."""
    async with ManagementStore(db_url, timeout=0.5) as store:
        blocker = engine(db_url)
        try:
            async with blocker.connect() as connection:
                transaction = await connection.begin()
                await connection.execute(text("UPDATE artemis_meta SET version = version + 100"))
                with pytest.raises(StoreUnavailable):
                    await store.create_route_rule(R1, [(G1, 1)], **CONTEXT, now_ms=1)
                await transaction.rollback()
        finally:
            await blocker.dispose()
        assert EMPTY == await store.load()
        assert [group(1, G1)] == await store.upsert_groups([G1], update=False, **CONTEXT,
                                                              now_ms=2)
