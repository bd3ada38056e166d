"""Group tags, explicit group members, group operations and logical instances in the management
store (§4.7, §7.3, §7.5; migration 0003), on SQLite always and on MariaDB/MySQL and PostgreSQL
when ARTEMIS_TEST_MYSQL_URL / ARTEMIS_TEST_POSTGRES_URL name a server (one fresh database per
test, as in test_store.py)."""

# STYLE.md has tests read `assert expected == actual`.

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from artemis import wire
from artemis.server.store import (
    KIND_GROUP,
    KIND_GROUP_INSTANCE,
    KIND_GROUP_OPERATION,
    KIND_GROUP_TAG,
    KIND_SERVICE_INSTANCE,
    GroupOperation,
    GroupSpec,
    GroupTag,
    ManagementData,
    ManagementStore,
    ServiceInstanceSpec,
    StoreError,
    StoreUnavailable,
    StoreValueError,
    target_key,
)
from tests.server.test_store import (
    CONTEXT,
    INJECTIONS,
    MYSQL_ENV,
    POSTGRES_ENV,
    TABLES,
    _server,
    engine,
    fresh_database,
    scalars,
    table_names,
)
from tests.server.test_store_groups import (
    G1,
    G2,
    R1,
    Group,
    _decoded,
    audit_rows,
    column_names,
    columns,
    execute,
    group,
    insert_rows,
    link,
    migrate,
    rule,
)

NEW_TABLES = ["service_group_instance", "service_group_operation", "service_group_tag",
              "service_instance"]
R0002_TABLES = sorted(set(TABLES) - set(NEW_TABLES))
COUNTED = ["service_group", *NEW_TABLES, "audit_log"]
S1 = ServiceInstanceSpec(
    "svc", "logic-1", "http://10.0.0.1:8080/api", ip="10.0.0.1", machine_name="host-1",
    metadata={"dc": "sha", "tier": "gold"}, port=8080, protocol="http", region_id="sha",
    zone_id="zone-1", group_id="blue", health_check_url="http://10.0.0.1:8080/health",
    description="a logical one")
S2 = ServiceInstanceSpec("svc", "logic-2", "http://10.0.0.2/", region_id="sha")


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


async def counts(url: str) -> dict[str, int]:
    """How many rows the groups, the four member tables and the audit log hold."""
    found = {}
    for name in COUNTED:
        # the names are this test's own constants
        [found[name]] = await scalars(url, f"SELECT COUNT(*) FROM {name}")  # noqa: S608
    return found


async def two_groups(store: ManagementStore) -> tuple[Group, Group]:
    """Version 1: groups 1 (G1) and 2 (G2), written at 1 (audit rows 1 and 2)."""
    g1, g2 = await store.upsert_groups([G1, G2], update=False, **CONTEXT, now_ms=1)
    return g1, g2


GroupInstance = wire.GroupInstance
ServiceInstance = wire.ServiceInstance


def logical(id: int, spec: ServiceInstanceSpec) -> ServiceInstance:
    return ServiceInstance(id=id, **asdict(spec))


def member(id: int, group_id: int, instance_id: str) -> GroupInstance:
    return GroupInstance(group_id=group_id, id=id, instance_id=instance_id)


async def audited(url: str, **filters: Any) -> list[dict[str, Any]]:
    """The audit rows, oldest first, with before/after (times aside) and detail decoded."""
    return [{
        "id": e["id"], "kind": e["kind"], "operation": e["operation"],
        "complete": bool(e["complete"]), "region_id": e["region_id"],
        "service_id": e["service_id"], "zone_id": e["zone_id"],
        "instance_id": e["instance_id"], "group_id": e["group_id"], "name": e["name"],
        "before": [_decoded(item) for item in json.loads(e["before"])],
        "after": [_decoded(item) for item in json.loads(e["after"])],
        "detail": None if e["detail"] is None else json.loads(e["detail"]),
    } for e in await audit_rows(url, **filters)]


Member = GroupTag | GroupInstance | GroupOperation


def member_audit(id: int, kind: str, operation: str, owner: Group, before: Member | None,
                 after: Member | None, detail: dict[str, Any], *, name: str | None = None,
                 instance_id: str | None = None, complete: bool | None = None,
                 ) -> dict[str, Any]:
    return {
        "id": id, "kind": kind, "operation": operation,
        "complete": operation == "delete" if complete is None else complete,
        "region_id": owner.region_id, "service_id": owner.service_id, "zone_id": owner.zone_id,
        "instance_id": instance_id, "group_id": owner.group_id, "name": name,
        "before": [] if before is None else [columns(before)],
        "after": [] if after is None else [columns(after)], "detail": detail}


def tag_audit(id: int, operation: str, owner: Group, before: GroupTag | None,
              after: GroupTag | None, detail: dict[str, Any]) -> dict[str, Any]:
    tag = after or before
    assert tag is not None
    return member_audit(id, KIND_GROUP_TAG, operation, owner, before, after, detail,
                        name=tag.tag)


def instance_audit(id: int, operation: str, owner: Group, before: GroupInstance | None,
                   after: GroupInstance | None, detail: dict[str, Any]) -> dict[str, Any]:
    member = after or before
    assert member is not None
    return member_audit(id, KIND_GROUP_INSTANCE, operation, owner, before, after, detail,
                        instance_id=member.instance_id)


def operation_audit(id: int, operation: str, complete: bool, owner: Group,
                    before: GroupOperation | None, after: GroupOperation | None,
                    detail: dict[str, Any]) -> dict[str, Any]:
    return member_audit(id, KIND_GROUP_OPERATION, operation, owner, before, after, detail,
                        complete=complete)


def logical_audit(id: int, operation: str, before: ServiceInstance | None,
                  after: ServiceInstance | None, detail: dict[str, Any]) -> dict[str, Any]:
    row = after or before
    assert row is not None
    return {
        "id": id, "kind": KIND_SERVICE_INSTANCE, "operation": operation,
        "complete": operation == "delete", "region_id": row.region_id,
        "service_id": row.service_id, "zone_id": row.zone_id, "instance_id": row.instance_id,
        "group_id": None, "name": None,
        "before": [] if before is None else [columns(before)],
        "after": [] if after is None else [columns(after)], "detail": detail}


def inserted(member: Member) -> dict[str, Any]:
    """The detail of a member's insert: its columns but the id."""
    values = columns(member)
    del values["id"]
    return values


# -- migrations -----------------------------------------------------------------------------


async def test_an_empty_database_gets_the_members_schema(db_url: str) -> None:
    """open() on an empty database migrates to 0003: every table with its columns, nothing in
    them, and load() and the reads have no members and no logical instances."""
    async with ManagementStore(db_url) as store:
        data = await store.load()
        assert ((), (), (), ()) == (data.group_tags, data.group_instances,
                                    data.group_operations, data.service_instances)
        assert ([], [], [], [], []) == (
            await store.group_tags(None), await store.group_instances({}),
            await store.group_operations(None), await store.service_instances({}),
            await store.group_tags(1))
    assert TABLES == await table_names(db_url)
    assert ["0003"] == await scalars(db_url, "SELECT version_num FROM artemis_alembic_version")
    assert dict.fromkeys(COUNTED, 0) == await counts(db_url)
    expected_columns = {
        "service_group_tag": ["id", "target_key", "group_id", "tag", "value"],
        "service_group_instance": ["id", "target_key", "group_id", "instance_id"],
        "service_group_operation": ["id", "target_key", "group_id", "operation"],
        "service_instance": [
            "id", "target_key", "service_id", "instance_id", "ip", "machine_name", "metadata",
            "port", "protocol", "region_id", "zone_id", "group_id", "health_check_url", "url",
            "description", "created_ms", "updated_ms"],
    }
    for name, names in expected_columns.items():
        assert names == await column_names(db_url, name), name


async def test_an_r0002_database_is_upgraded_and_keeps_its_data(db_url: str) -> None:
    """A database an older node left at 0002 (with its version, a group, a route rule, a link
    and audit rows) is upgraded by open(): the old data reads as before, and the old group
    takes tags, members and operations at once."""
    await migrate(db_url, "0002")
    assert R0002_TABLES == await table_names(db_url)
    await execute(db_url, "UPDATE artemis_meta SET version = 7")
    await insert_rows(db_url, "service_group", {
        "target_key": target_key("svc", "sha", "zone-1", "blue"), "service_id": "svc",
        "region_id": "sha", "zone_id": "zone-1", "name": "blue", "app_id": "app",
        "description": "the blue one", "status": "active", "deleted": False, "created_ms": 5,
        "updated_ms": 5})
    await insert_rows(db_url, "service_route_rule", {
        "target_key": target_key("svc", "split"), "service_id": "svc", "name": "split",
        "description": "canary split", "status": "active", "strategy": "weighted-round-robin",
        "deleted": False, "created_ms": 5, "updated_ms": 5})
    await insert_rows(db_url, "service_route_rule_group", {
        "route_rule_id": 1, "group_id": 1, "weight": 3, "unreleased_weight": 4})
    await insert_rows(db_url, "audit_log", {
        "created_ms": 5, "actor": "token-ops", "operator_id": "alice", "kind": KIND_GROUP,
        "region_id": "sha", "service_id": "svc", "instance_id": None, "server_id": None,
        "zone_id": "zone-1", "operation": "create", "complete": False, "reason": "deploy",
        "extensions": "{}", "before": "[]", "after": "[]", "group_id": 1,
        "route_rule_id": None, "name": "blue", "detail": "{}"})
    async with ManagementStore(db_url) as store:
        old_group, old_rule = group(1, G1), rule(1, R1)
        old_link = link(1, 1, 1, 3, 4)
        assert ManagementData(frozenset(), frozenset(), frozenset(), 7, (old_group,),
                              (old_rule,), (old_link,)) == await store.load()
        old_entry = wire.AuditEntry(
            id=1, create_time=5, actor="token-ops", operator_id="alice", kind=KIND_GROUP,
            region_id="sha", service_id="svc", instance_id=None, server_id=None,
            zone_id="zone-1", operation="create", complete=False, reason="deploy",
            extensions="{}", before=[], after=[])
        assert ([old_entry], 1) == await store.audit({})
        assert [GroupTag(1, 1, "env", "prod")] == await store.upsert_group_tags(
            [(1, "env", "prod")], **CONTEXT, now_ms=9)
        assert (1, 0) == await store.set_group_instances(1, ["i1"], **CONTEXT, now_ms=10)
        assert 1 == await store.operate_group_operations([(1, "pull-out")], False, **CONTEXT,
                                                         now_ms=11)
        data = await store.load()
        assert (10, (old_group,), (old_link,), (GroupTag(1, 1, "env", "prod"),),
                (member(1, 1, "i1"),), (GroupOperation(1, 1, "pull-out"),)) == (
            data.version, data.groups, data.route_rule_groups, data.group_tags,
            data.group_instances, data.group_operations)
        assert (4, old_entry) == ((await store.audit({}))[1],
                                  (await store.audit({}, newest_first=False))[0][0])
    assert TABLES == await table_names(db_url)
    assert ["0003"] == await scalars(db_url, "SELECT version_num FROM artemis_alembic_version")


async def test_a_downgrade_drops_the_members_and_keeps_the_rest(db_url: str) -> None:
    """Downgrading to 0002 drops the four tables and keeps the groups and every audit row;
    opening again upgrades to no members on the same groups."""
    async with ManagementStore(db_url) as store:
        g1, g2 = await two_groups(store)
        await store.upsert_group_tags([(1, "env", "prod")], **CONTEXT, now_ms=2)
        await store.insert_group_instances([(2, "i1")], **CONTEXT, now_ms=3)
        await store.operate_group_operations([(1, "pull-out")], False, **CONTEXT, now_ms=4)
        await store.upsert_service_instances([S1], **CONTEXT, now_ms=5)
    await migrate(db_url, "0002", up=False)
    assert R0002_TABLES == await table_names(db_url)
    assert ["0002"] == await scalars(db_url, "SELECT version_num FROM artemis_alembic_version")
    assert [6] == await scalars(db_url, "SELECT COUNT(*) FROM audit_log")
    async with ManagementStore(db_url) as store:
        data = await store.load()
        assert (5, (g1, g2), (), (), (), ()) == (
            data.version, data.groups, data.group_tags, data.group_instances,
            data.group_operations, data.service_instances)
        assert 6 == (await store.audit({}))[1]
    assert TABLES == await table_names(db_url)


# -- group tags -----------------------------------------------------------------------------


async def test_upserting_group_tags(store: ManagementStore, db_url: str) -> None:
    """New tags get ids; an existing (group, tag) gets the new value (unchanged values stay);
    one version per call and one audit row per item; group_tags() and load() read them."""
    g1, g2 = await two_groups(store)
    written = await store.upsert_group_tags(
        [(1, "env", "prod"), (2, "env", "test"), (1, "owner", "ops")], **CONTEXT, now_ms=2)
    t1, t2, t3 = GroupTag(1, 1, "env", "prod"), GroupTag(2, 2, "env", "test"), GroupTag(
        3, 1, "owner", "ops")
    assert [t1, t2, t3] == written
    assert 2 == await store.version()
    t1b, t2b = GroupTag(1, 1, "env", "staging"), GroupTag(2, 2, "env", "test ")
    assert [t1, t1b, t2b] == await store.upsert_group_tags(
        [(1, "env", "prod"), (1, "env", "staging"), (2, "env", "test ")], **CONTEXT, now_ms=3)
    assert 3 == await store.version()
    assert ([t1b, t2b, t3], [t1b, t3], [t2b], [], []) == (
        await store.group_tags(None), await store.group_tags(1), await store.group_tags(2),
        await store.group_tags(99), await store.group_tags(2**64))
    assert (t1b, t2b, t3) == (await store.load()).group_tags
    assert [
        tag_audit(3, "create", g1, None, t1, inserted(t1)),
        tag_audit(4, "create", g2, None, t2, inserted(t2)),
        tag_audit(5, "create", g1, None, t3, inserted(t3)),
        tag_audit(6, "update", g1, t1, t1, {}),
        tag_audit(7, "update", g1, t1, t1b, {"value": "staging"}),
        tag_audit(8, "update", g2, t2, t2b, {"value": "test "}),
    ] == (await audited(db_url))[2:]
    entries, _ = await store.audit({"kind": KIND_GROUP_TAG, "name": "owner"})
    assert ([5], "token-ops", "alice", "deploy", '{"ticket":"OPS-1"}', 2) == (
        [e.id for e in entries], entries[0].actor, entries[0].operator_id, entries[0].reason,
        entries[0].extensions, entries[0].create_time)
    for bad in ("1", True, 1.0):
        with pytest.raises(StoreValueError):
            await store.group_tags(bad)  # type: ignore[arg-type]


async def test_deleting_group_tags(store: ManagementStore, db_url: str) -> None:
    """delete_group_tags deletes every tag that matches each argument given, exactly (a
    trailing space is another value), counts them, and audits each."""
    g1, g2 = await two_groups(store)
    tags = await store.upsert_group_tags(
        [(1, "env", "prod"), (1, "owner", "ops"), (2, "env", "prod"), (2, "owner", "dev"),
         (2, "zone", "prod ")], **CONTEXT, now_ms=2)
    calls: list[tuple[tuple[int | None, str | None, str | None], int, list[GroupTag]]] = [
        ((None, None, "prod"), 2, [tags[1], tags[3], tags[4]]),
        ((2, "owner", None), 1, [tags[1], tags[4]]),
        ((1, "owner", "dev"), 0, [tags[1], tags[4]]),
        ((None, "Owner", None), 0, [tags[1], tags[4]]),
        ((None, "owner", None), 1, [tags[4]]),
        ((1, None, None), 0, [tags[4]]),
        ((2, None, None), 1, []),
    ]
    for t, (arguments, deleted, left) in enumerate(calls, 3):
        assert deleted == await store.delete_group_tags(*arguments, **CONTEXT, now_ms=t)
        assert left == await store.group_tags(None), arguments
    assert 9 == await store.version()
    assert () == (await store.load()).group_tags
    assert [
        tag_audit(8, "delete", g1, tags[0], None, {}),
        tag_audit(9, "delete", g2, tags[2], None, {}),
        tag_audit(10, "delete", g2, tags[3], None, {}),
        tag_audit(11, "delete", g1, tags[1], None, {}),
        tag_audit(12, "delete", g2, tags[4], None, {}),
    ] == await audited(db_url, operation="delete")


async def test_tags_of_deleted_groups_are_deleted_by_tag_and_value(
        store: ManagementStore) -> None:
    """A delete by tag or value reaches the tags of deleted groups too (they are hidden, not
    gone); naming a deleted group is refused."""
    await two_groups(store)
    await store.upsert_group_tags([(1, "env", "prod"), (2, "env", "prod")], **CONTEXT,
                                  now_ms=2)
    await store.delete_groups([2], **CONTEXT, now_ms=3)
    assert (GroupTag(1, 1, "env", "prod"),) == (await store.load()).group_tags
    with pytest.raises(StoreValueError, match="group 2 does not exist or is deleted"):
        await store.delete_group_tags(2, None, None, **CONTEXT, now_ms=4)
    assert 2 == await store.delete_group_tags(None, "env", "prod", **CONTEXT, now_ms=5)
    assert [] == await store.group_tags(None)
    assert 4 == await store.version()


# -- explicit group members -----------------------------------------------------------------


async def test_inserting_and_deleting_group_instances(store: ManagementStore, db_url: str) -> None:
    """insert_group_instances inserts the missing members and keeps the present ones (each
    audited); delete_group_instances deletes by id for good and counts; unknown ids are
    ignored."""
    g1, g2 = await two_groups(store)
    i1, i2, i3 = member(1, 1, "i1"), member(2, 1, "i2"), member(3, 2, "i1")
    assert [i1, i2, i3, i1] == await store.insert_group_instances(
        [(1, "i1"), (1, "i2"), (2, "i1"), (1, "i1")], **CONTEXT, now_ms=2)
    i4 = member(4, 1, "i3")
    assert [i2, i4] == await store.insert_group_instances([(1, "i2"), (1, "i3")], **CONTEXT,
                                                          now_ms=3)
    assert ([i1, i2, i3, i4], (i1, i2, i3, i4)) == (
        await store.group_instances({}), (await store.load()).group_instances)
    assert 1 == await store.delete_group_instances([2, 2, 99, 2**64], **CONTEXT, now_ms=4)
    assert 0 == await store.delete_group_instances([2], **CONTEXT, now_ms=5)
    assert 0 == await store.delete_group_instances([], **CONTEXT, now_ms=6)
    assert ([i1, i3, i4], 6) == (await store.group_instances({}), await store.version())
    assert [
        instance_audit(3, "create", g1, None, i1, inserted(i1)),
        instance_audit(4, "create", g1, None, i2, inserted(i2)),
        instance_audit(5, "create", g2, None, i3, inserted(i3)),
        instance_audit(6, "create", g1, i1, i1, {}),
        instance_audit(7, "create", g1, i2, i2, {}),
        instance_audit(8, "create", g1, None, i4, inserted(i4)),
        instance_audit(9, "delete", g1, i2, None, {}),
    ] == (await audited(db_url))[2:]
    entries, total = await store.audit({"kind": KIND_GROUP_INSTANCE, "instance_id": "i1"})
    assert ([6, 5, 3], 3) == ([e.id for e in entries], total)


async def test_group_instance_filters(store: ManagementStore) -> None:
    """group_instances() filters on group_id and instance_id, exactly; a bad filter is a
    StoreValueError."""
    await two_groups(store)
    i1, i2, i3, i4 = await store.insert_group_instances(
        [(1, "i1"), (1, "i1 "), (2, "i1"), (2, "I1")], **CONTEXT, now_ms=2)
    cases: list[tuple[dict[str, Any], list[GroupInstance]]] = [
        ({}, [i1, i2, i3, i4]), ({"group_id": 1}, [i1, i2]), ({"instance_id": "i1"}, [i1, i3]),
        ({"instance_id": "i1 "}, [i2]), ({"instance_id": "I1"}, [i4]),
        ({"group_id": 2, "instance_id": "i1"}, [i3]), ({"group_id": 2**64}, []),
        ({"instance_id": "i9"}, []),
    ]
    for filters, expected in cases:
        assert expected == await store.group_instances(filters), filters
    for bad in ({"id": 1}, {"group_id": "1"}, {"group_id": True}, {"instance_id": 1},
                {"instance_id": "x\x00"}):
        with pytest.raises(StoreValueError):
            await store.group_instances(bad)


async def test_set_group_instances_makes_the_set_exact(store: ManagementStore, db_url: str) -> None:
    """set_group_instances deletes the group's other members and inserts the missing ones (the
    present keep their ids), counts both, never touches another group, and audits each
    deleted member, then each id given once."""
    g1, _ = await two_groups(store)
    a, b, c, other = await store.insert_group_instances(
        [(1, "a"), (1, "b"), (1, "c"), (2, "a")], **CONTEXT, now_ms=2)
    assert (2, 2) == await store.set_group_instances(1, ["b", "d", "d", "e"], **CONTEXT,
                                                     now_ms=3)
    d, e = member(5, 1, "d"), member(6, 1, "e")
    assert ([b, d, e], [other]) == (await store.group_instances({"group_id": 1}),
                                    await store.group_instances({"group_id": 2}))
    assert [
        instance_audit(7, "delete", g1, a, None, {}),
        instance_audit(8, "delete", g1, c, None, {}),
        instance_audit(9, "create", g1, b, b, {}),
        instance_audit(10, "create", g1, None, d, inserted(d)),
        instance_audit(11, "create", g1, None, e, inserted(e)),
    ] == (await audited(db_url))[6:]
    assert (0, 0) == await store.set_group_instances(1, ("e", "b", "d"), **CONTEXT, now_ms=4)
    assert [b, d, e] == await store.group_instances({"group_id": 1})
    assert (2, 2) == await store.set_group_instances(1, ["b", "b ", "B"], **CONTEXT, now_ms=5)
    assert ["b", "b ", "B"] == [m.instance_id
                                for m in await store.group_instances({"group_id": 1})]
    assert (0, 3) == await store.set_group_instances(1, [], **CONTEXT, now_ms=6)
    assert ([], [other], (other,)) == (
        await store.group_instances({"group_id": 1}), await store.group_instances({}),
        (await store.load()).group_instances)
    assert 6 == await store.version()


# -- group operations -----------------------------------------------------------------------


async def test_operating_group_operations(store: ManagementStore, db_url: str) -> None:
    """complete=False puts operations in force (present ones stay), complete=True ends them
    (missing ones are ignored); the count is of rows added or ended; every item is audited
    with the operation's name and `complete`, like the other operation kinds."""
    g1, g2 = await two_groups(store)
    assert 3 == await store.operate_group_operations(
        [(1, "pull-out"), (1, "pull-out"), (2, "pull-out"), (1, "deploy")], False, **CONTEXT,
        now_ms=2)
    o1, o2, o3 = (GroupOperation(1, 1, "pull-out"), GroupOperation(2, 2, "pull-out"),
                  GroupOperation(3, 1, "deploy"))
    assert 0 == await store.operate_group_operations([(1, "pull-out")], False, **CONTEXT,
                                                     now_ms=3)
    assert ([o1, o2, o3], [o1, o3], [], (o1, o2, o3)) == (
        await store.group_operations(None), await store.group_operations(1),
        await store.group_operations(2**64), (await store.load()).group_operations)
    assert 1 == await store.operate_group_operations(
        [(1, "pull-out"), (1, "pull-out"), (1, "missing")], True, **CONTEXT, now_ms=4)
    assert ([o3], [o2, o3], 4) == (await store.group_operations(1),
                                   await store.group_operations(None), await store.version())
    assert [
        operation_audit(3, "pull-out", False, g1, None, o1, inserted(o1)),
        operation_audit(4, "pull-out", False, g1, o1, o1, {}),
        operation_audit(5, "pull-out", False, g2, None, o2, inserted(o2)),
        operation_audit(6, "deploy", False, g1, None, o3, inserted(o3)),
        operation_audit(7, "pull-out", False, g1, o1, o1, {}),
        operation_audit(8, "pull-out", True, g1, o1, None, {}),
        operation_audit(9, "pull-out", True, g1, None, None, {}),
        operation_audit(10, "missing", True, g1, None, None, {}),
    ] == (await audited(db_url))[2:]
    entries, total = await store.audit({"kind": KIND_GROUP_OPERATION, "group_id": 1,
                                        "complete": True})
    assert ([10, 9, 8], 3) == ([e.id for e in entries], total)
    with pytest.raises(StoreValueError):
        await store.group_operations("1")  # type: ignore[arg-type]


# -- logical instances ----------------------------------------------------------------------


async def test_service_instances_insert_update_and_delete(
        store: ManagementStore, db_url: str) -> None:
    """upsert_service_instances inserts by (service, instance) and rewrites every field of an
    existing one (updated_ms moves only when a field changed); deletes are for good; metadata
    is stored as a JSON object."""
    written = await store.upsert_service_instances([S1, S2], **CONTEXT, now_ms=1)
    l1, l2 = logical(1, S1), logical(2, S2)
    assert [l1, l2] == written
    assert ['{"dc":"sha","tier":"gold"}', None] == await scalars(
        db_url, "SELECT metadata FROM service_instance ORDER BY id")
    changed = replace(S1, url="https://10.0.0.9/", ip=None, machine_name="host-9",
                      metadata=None, port=9090, protocol="https", region_id="fra",
                      zone_id=None, group_id="green", health_check_url=None, description=None)
    l1b = logical(1, changed)
    assert [l1b] == await store.upsert_service_instances([changed], **CONTEXT, now_ms=2)
    assert [l1b, l2] == await store.upsert_service_instances([changed, S2], **CONTEXT,
                                                             now_ms=3)
    with_metadata = replace(S2, metadata={})
    l2b = logical(2, with_metadata)
    assert [l2b] == await store.upsert_service_instances([with_metadata], **CONTEXT, now_ms=4)
    assert ([l1b, l2b], (l1b, l2b)) == (await store.service_instances({}),
                                       (await store.load()).service_instances)
    assert 1 == await store.delete_service_instances([1, 1, 99, 2**64], **CONTEXT, now_ms=5)
    assert 0 == await store.delete_service_instances([1], **CONTEXT, now_ms=6)
    assert ([l2b], 6) == (await store.service_instances({}), await store.version())
    assert [
        logical_audit(1, "create", None, l1, asdict(S1)),
        logical_audit(2, "create", None, l2, asdict(S2)),
        logical_audit(3, "update", l1, l1b, {
            "url": "https://10.0.0.9/", "ip": None, "machine_name": "host-9", "metadata": None,
            "port": 9090, "protocol": "https", "region_id": "fra", "zone_id": None,
            "group_id": "green", "health_check_url": None, "description": None}),
        logical_audit(4, "update", l1b, l1b, {}),
        logical_audit(5, "update", l2, l2, {}),
        logical_audit(6, "update", l2, l2b, {"metadata": {}}),
        logical_audit(7, "delete", l1b, None, {}),
    ] == await audited(db_url)


async def test_service_instance_filters(store: ManagementStore) -> None:
    """service_instances() filters on service_id and instance_id, exactly."""
    specs = [S1, S2, replace(S2, service_id="other"), replace(S2, instance_id="logic-2 ")]
    l1, l2, l3, l4 = await store.upsert_service_instances(specs, **CONTEXT, now_ms=1)
    cases: list[tuple[dict[str, Any], list[ServiceInstance]]] = [
        ({}, [l1, l2, l3, l4]), ({"service_id": "svc"}, [l1, l2, l4]),
        ({"instance_id": "logic-2"}, [l2, l3]), ({"instance_id": "logic-2 "}, [l4]),
        ({"service_id": "other", "instance_id": "logic-2"}, [l3]), ({"service_id": "SVC"}, []),
    ]
    for filters, expected in cases:
        assert expected == await store.service_instances(filters), filters
    for bad in ({"url": "x"}, {"service_id": 1}, {"service_instance_id": 1}):
        with pytest.raises(StoreValueError):
            await store.service_instances(bad)


async def test_longest_values_fit(store: ManagementStore) -> None:
    """Values as long as their columns fit on every backend, 4-byte characters included."""
    await two_groups(store)
    tag, value = "t" * 255 + "🚀", "v" * 1023 + "🚀"
    assert [GroupTag(1, 1, tag, value)] == await store.upsert_group_tags(
        [(1, tag, value)], **CONTEXT, now_ms=2)
    assert [member(1, 1, "i" * 256)] == await store.insert_group_instances(
        [(1, "i" * 256)], **CONTEXT, now_ms=3)
    assert 1 == await store.operate_group_operations([(1, "o" * 128)], False, **CONTEXT,
                                                     now_ms=4)
    longest = ServiceInstanceSpec(
        "s" * 256, "i" * 256, "u" * 512, ip="p" * 256, machine_name="m" * 256,
        metadata={f"{n:04d}" + "k" * 1020: "v" * 1023 + "é" for n in range(64)}, port=65535,
        protocol="h" * 16, region_id="r" * 256, zone_id="z" * 256, group_id="g" * 256,
        health_check_url="c" * 512, description="d" * 1024)
    assert [logical(1, longest)] == await store.upsert_service_instances(
        [longest], **CONTEXT, now_ms=5)
    data = await store.load()
    assert (1, 1, 1, [logical(1, longest)]) == (
        len(data.group_tags), len(data.group_instances), len(data.group_operations),
        list(data.service_instances))


# -- refusals -------------------------------------------------------------------------------


async def test_refused_writes_write_nothing(store: ManagementStore, db_url: str) -> None:
    """Missing or deleted groups, bad tuples, text that does not fit, bad metadata and ports
    are StoreValueErrors naming the problem; the version, the tables and the audit log stay
    as they were."""
    await two_groups(store)
    await store.delete_groups([2], **CONTEXT, now_ms=2)
    await store.upsert_group_tags([(1, "env", "prod")], **CONTEXT, now_ms=3)
    await store.insert_group_instances([(1, "i1")], **CONTEXT, now_ms=4)
    await store.operate_group_operations([(1, "pull-out")], False, **CONTEXT, now_ms=5)
    await store.upsert_service_instances([S1], **CONTEXT, now_ms=6)
    before = (await store.load(), await counts(db_url), await audited(db_url))
    ctx = {**CONTEXT, "now_ms": 9}
    many = {f"k{n}": "v" for n in range(65)}
    cases: list[tuple[Any, str]] = [
        (lambda: store.upsert_group_tags([(1, "a", "b"), (9, "a", "b")], **ctx),
         "group 9 does not exist or is deleted"),
        (lambda: store.upsert_group_tags([(2, "a", "b")], **ctx), "group 2 .*deleted"),
        (lambda: store.upsert_group_tags([(2**64, "a", "b")], **ctx), f"group {2**64}"),
        (lambda: store.upsert_group_tags([(1, "a")], **ctx), "group tag must be a tuple of 3"),
        (lambda: store.upsert_group_tags([[1, "a", "b"]], **ctx), "tuple of 3"),
        (lambda: store.upsert_group_tags([("1", "a", "b")], **ctx), "group_id must be an int"),
        (lambda: store.upsert_group_tags([(True, "a", "b")], **ctx), "group_id must be an int"),
        (lambda: store.upsert_group_tags([(1, "t" * 257, "b")], **ctx),
         "tag is longer than 256"),
        (lambda: store.upsert_group_tags([(1, "a", "v" * 1025)], **ctx),
         "value is longer than 1024"),
        (lambda: store.upsert_group_tags([(1, "a", None)], **ctx), "value must be text"),
        (lambda: store.upsert_group_tags([(1, "a\x00", "b")], **ctx), "NUL"),
        (lambda: store.upsert_group_tags([(1, "a", "b\ud800")], **ctx), "not valid Unicode"),
        (lambda: store.delete_group_tags(None, None, None, **ctx),
         "deleting every tag is refused"),
        (lambda: store.delete_group_tags(9, None, None, **ctx), "group 9"),
        (lambda: store.delete_group_tags(2, "env", None, **ctx), "group 2"),
        (lambda: store.delete_group_tags("1", None, None, **ctx), "group_id must be an int"),
        (lambda: store.delete_group_tags(1, "t" * 257, None, **ctx), "tag is longer"),
        (lambda: store.delete_group_tags(None, None, 1, **ctx), "value must be text"),
        (lambda: store.insert_group_instances([(1, "i2"), (9, "i1")], **ctx), "group 9"),
        (lambda: store.insert_group_instances([(2, "i2")], **ctx), "group 2"),
        (lambda: store.insert_group_instances([(1, "i" * 257)], **ctx),
         "instance_id is longer than 256"),
        (lambda: store.insert_group_instances([(1, "i1", "x")], **ctx),
         "group instance must be a tuple of 2"),
        (lambda: store.delete_group_instances(["1"], **ctx),
         "group_instance_id must be an int"),
        (lambda: store.set_group_instances(2, ["i1"], **ctx), "group 2 .*deleted"),
        (lambda: store.set_group_instances(9, [], **ctx), "group 9"),
        (lambda: store.set_group_instances("1", [], **ctx), "group_id must be an int"),
        (lambda: store.set_group_instances(1, "i1", **ctx), "not text"),
        (lambda: store.set_group_instances(1, ["i2", None], **ctx), "instance_id must be text"),
        (lambda: store.operate_group_operations([(2, "op")], False, **ctx), "group 2"),
        (lambda: store.operate_group_operations([(1, "pull-out"), (9, "op")], True, **ctx),
         "group 9"),
        (lambda: store.operate_group_operations([(1, "o" * 129)], False, **ctx),
         "operation is longer than 128"),
        (lambda: store.operate_group_operations([(1, "op")], None, **ctx),
         "complete must be a bool"),
        (lambda: store.operate_group_operations([(1, "op")], 1, **ctx),
         "complete must be a bool"),
        (lambda: store.upsert_service_instances([S2, replace(S1, port=65536)], **ctx), "port"),
        (lambda: store.upsert_service_instances([replace(S1, port=-1)], **ctx), "port"),
        (lambda: store.upsert_service_instances([replace(S1, port=True)], **ctx), "port"),
        (lambda: store.upsert_service_instances([replace(S1, port="80")], **ctx), "port"),
        (lambda: store.upsert_service_instances([replace(S1, url=None)], **ctx),
         "url must be text"),
        (lambda: store.upsert_service_instances([replace(S1, url="u" * 513)], **ctx),
         "url is longer than 512"),
        (lambda: store.upsert_service_instances([replace(S1, health_check_url="u" * 513)],
                                                **ctx), "health_check_url is longer than 512"),
        (lambda: store.upsert_service_instances([replace(S1, protocol="p" * 17)], **ctx),
         "protocol is longer than 16"),
        (lambda: store.upsert_service_instances([replace(S1, region_id=None)], **ctx),
         "region_id must be text"),
        (lambda: store.upsert_service_instances([replace(S1, ip="i" * 257)], **ctx),
         "ip is longer than 256"),
        (lambda: store.upsert_service_instances([replace(S1, description="d" * 1025)], **ctx),
         "description is longer than 1024"),
        (lambda: store.upsert_service_instances([replace(S1, instance_id="i\x00")], **ctx),
         "NUL"),
        (lambda: store.upsert_service_instances([replace(S1, metadata=many)], **ctx),
         "more than 64 entries"),
        (lambda: store.upsert_service_instances([replace(S1, metadata={"k": "v" * 1025})],
                                                **ctx), "metadata value is longer than 1024"),
        (lambda: store.upsert_service_instances([replace(S1, metadata={"k" * 1025: "v"})],
                                                **ctx), "metadata key is longer than 1024"),
        (lambda: store.upsert_service_instances([replace(S1, metadata={"k": 1})], **ctx),
         "metadata value must be text"),
        (lambda: store.upsert_service_instances([replace(S1, metadata={1: "v"})], **ctx),
         "metadata key must be text"),
        (lambda: store.upsert_service_instances([replace(S1, metadata=["a"])], **ctx),
         "metadata must be a mapping"),
        (lambda: store.upsert_service_instances([G1], **ctx), "ServiceInstanceSpec"),
        (lambda: store.delete_service_instances([1.0], **ctx),
         "service_instance_id must be an int"),
        (lambda: store.upsert_group_tags([(1, "a", "b")], **{**ctx, "actor": "a" * 129}),
         "actor"),
        (lambda: store.insert_group_instances([(1, "i2")], **{**ctx, "now_ms": 1.5}), "now_ms"),
        (lambda: store.set_group_instances(1, [], **{**ctx, "reason": "r" * 1025}), "reason"),
    ]
    for call, message in cases:
        with pytest.raises(StoreValueError, match=message):
            await call()
    assert before == (await store.load(), await counts(db_url), await audited(db_url))


async def test_a_failing_write_leaves_nothing(store: ManagementStore, db_url: str) -> None:
    """When the database fails after the members were written (here: the audit log is gone),
    nothing of the call stays: set_group_instances's deletes and inserts are rolled back with
    the version."""
    await two_groups(store)
    await store.insert_group_instances([(1, "a"), (1, "b")], **CONTEXT, now_ms=2)
    await execute(db_url, "DROP TABLE audit_log")
    with pytest.raises(StoreError) as raised:
        await store.set_group_instances(1, ["b", "c"], **CONTEXT, now_ms=3)
    assert not isinstance(raised.value, StoreValueError)
    with pytest.raises(StoreError):
        await store.upsert_service_instances([S1], **CONTEXT, now_ms=4)
    assert ([2], ["a", "b"], [0]) == (
        await scalars(db_url, "SELECT version FROM artemis_meta"),
        await scalars(db_url, "SELECT instance_id FROM service_group_instance ORDER BY id"),
        await scalars(db_url, "SELECT COUNT(*) FROM service_instance"))


async def test_a_write_blocked_by_a_lock_gives_up_within_the_timeout(db_url: str) -> None:
    """While another transaction holds the version row, a member write fails with
    StoreUnavailable within the timeout and leaves nothing."""
    async with ManagementStore(db_url, timeout=0.5) as store:
        await two_groups(store)
        blocker = engine(db_url)
        try:
            async with blocker.connect() as connection:
                transaction = await connection.begin()
                await connection.execute(text("UPDATE artemis_meta SET version = version + 100"))
                with pytest.raises(StoreUnavailable):
                    await store.set_group_instances(1, ["a"], **CONTEXT, now_ms=2)
                await transaction.rollback()
        finally:
            await blocker.dispose()
        assert (1, []) == (await store.version(), await store.group_instances({}))
        assert (1, 0) == await store.set_group_instances(1, ["a"], **CONTEXT, now_ms=3)


# -- everything together --------------------------------------------------------------------


async def test_load_hides_the_members_of_deleted_groups(store: ManagementStore) -> None:
    """load() shows the tags, members and operations of groups not deleted (and every logical
    instance); the reads show them all; reviving a group brings its members back."""
    g1, _ = await two_groups(store)
    t1, t2 = await store.upsert_group_tags([(1, "env", "prod"), (2, "env", "test")], **CONTEXT,
                                           now_ms=2)
    m1, m2 = await store.insert_group_instances([(1, "i1"), (2, "i2")], **CONTEXT, now_ms=3)
    await store.operate_group_operations([(1, "pull-out"), (2, "pull-out")], False, **CONTEXT,
                                         now_ms=4)
    o1, o2 = await store.group_operations(None)
    [l2] = await store.upsert_service_instances([S2], **CONTEXT, now_ms=5)
    await store.delete_groups([2], **CONTEXT, now_ms=6)
    data = await store.load()
    assert ((g1,), (t1,), (m1,), (o1,), (l2,)) == (
        data.groups, data.group_tags, data.group_instances, data.group_operations,
        data.service_instances)
    assert ([t1, t2], [m1, m2], [o1, o2]) == (
        await store.group_tags(None), await store.group_instances({}),
        await store.group_operations(None))
    await store.upsert_groups([G2], update=False, **CONTEXT, now_ms=7)
    data = await store.load()
    assert ((t1, t2), (m1, m2), (o1, o2), 7) == (
        data.group_tags, data.group_instances, data.group_operations, data.version)


async def test_load_returns_everything_in_one_snapshot(store: ManagementStore) -> None:
    """After a mix of every kind of write, load() returns all of it, consistent with the reads
    and the version (one per call)."""
    await store.operate_instance("sha", "svc", "i1", "pullout", False, **CONTEXT, now_ms=1)
    rule_1, groups = await store.create_route_rule(R1, [(G1, 1), (G2, 2)], **CONTEXT, now_ms=2)
    tags = await store.upsert_group_tags([(1, "env", "prod")], **CONTEXT, now_ms=3)
    await store.set_group_instances(2, ["i1", "i2"], **CONTEXT, now_ms=4)
    await store.operate_group_operations([(2, "pull-out")], False, **CONTEXT, now_ms=5)
    logicals = await store.upsert_service_instances([S1, S2], **CONTEXT, now_ms=6)
    await store.release_route_rule_groups([(1, 1)], **CONTEXT, now_ms=7)
    expected = ManagementData(
        frozenset({("sha", "svc", "i1", "pullout")}), frozenset(), frozenset(), 7,
        tuple(groups), (rule_1,),
        (link(1, 1, 1, 1, 1), link(2, 1, 2, None, 2)), tuple(tags),
        (member(1, 2, "i1"), member(2, 2, "i2")),
        (GroupOperation(1, 2, "pull-out"),), tuple(logicals))
    assert expected == await store.load()
    assert (list(expected.group_tags), list(expected.group_instances),
            list(expected.group_operations), list(expected.service_instances)) == (
        await store.group_tags(None), await store.group_instances({}),
        await store.group_operations(None), await store.service_instances({}))
    kinds = {}
    for kind in (KIND_GROUP_TAG, KIND_GROUP_INSTANCE, KIND_GROUP_OPERATION,
                 KIND_SERVICE_INSTANCE):
        kinds[kind] = (await store.audit({"kind": kind}, limit=0))[1]
    assert {KIND_GROUP_TAG: 1, KIND_GROUP_INSTANCE: 2, KIND_GROUP_OPERATION: 1,
            KIND_SERVICE_INSTANCE: 2} == kinds
    assert 13 == (await store.audit({}, limit=0))[1]


async def test_injection_strings_are_just_data(store: ManagementStore, db_url: str) -> None:
    """Quotes, comments and wildcards in every text field of tags, members, operations and
    logical instances are stored, found, deleted and read back as they were; no table goes
    anywhere."""
    groups = await store.upsert_groups([GroupSpec(evil, evil, evil, evil) for evil in INJECTIONS],
                                       update=False, **CONTEXT, now_ms=1)
    ctx = {"actor": "a", "operator_id": "o", "reason": INJECTIONS[0],
           "extensions": INJECTIONS[1]}
    pairs = [(g.group_id, evil) for g, evil in zip(groups, INJECTIONS, strict=True)]
    tags = await store.upsert_group_tags([(n, evil, evil) for n, evil in pairs], **ctx, now_ms=2)
    assert [GroupTag(n, n, evil, evil) for n, evil in pairs] == tags
    members = await store.insert_group_instances(pairs, **ctx, now_ms=3)
    assert [member(n, n, evil) for n, evil in pairs] == members
    assert len(INJECTIONS) == await store.operate_group_operations(pairs, False, **ctx,
                                                                   now_ms=4)
    specs = [ServiceInstanceSpec(
        evil, evil, evil, ip=evil, machine_name=evil, metadata={evil: evil}, protocol=evil[:16],
        region_id=evil, zone_id=evil, group_id=evil, health_check_url=evil, description=evil)
        for evil in INJECTIONS]
    logicals = await store.upsert_service_instances(specs, **ctx, now_ms=5)
    assert [logical(n, spec) for n, spec in enumerate(specs, 1)] == logicals
    data = await store.load()
    assert (tuple(tags), tuple(members), tuple(logicals),
            [(o.group_id, o.operation) for o in data.group_operations]) == (
        data.group_tags, data.group_instances, data.service_instances, pairs)
    for n, evil in pairs:
        assert [members[n - 1]] == await store.group_instances({"instance_id": evil})
        assert [logicals[n - 1]] == await store.service_instances(
            {"service_id": evil, "instance_id": evil})
        entries, total = await store.audit({"kind": KIND_GROUP_TAG, "name": evil})
        assert (1, [columns(tags[n - 1])]) == (total, [json.loads(i) for i in entries[0].after])
        assert 1 == await store.delete_group_tags(None, evil, evil, **ctx, now_ms=6)
    assert ([], TABLES) == (await store.group_tags(None), await table_names(db_url))


async def test_concurrent_identical_writes_make_one_row(
        store: ManagementStore, db_url: str) -> None:
    """Eight nodes writing the same member, operation or logical instance at once: one row of
    each, one version and one audit row per call, and the operation counted once."""
    await two_groups(store)
    results = await asyncio.gather(
        *(store.insert_group_instances([(1, "i1")], **CONTEXT, now_ms=t) for t in range(8)),
        *(store.upsert_service_instances([S1], **CONTEXT, now_ms=1) for _ in range(8)))
    added = await asyncio.gather(*(store.operate_group_operations(
        [(1, "pull-out")], False, **CONTEXT, now_ms=t) for t in range(8)))
    assert ([member(1, 1, "i1")], [logical(1, S1)], [GroupOperation(1, 1, "pull-out")],
            1, 1) == (
        await store.group_instances({}), await store.service_instances({}),
        await store.group_operations(None), len({tuple(r) for r in results[:8]}), sum(added))
    rows = await audited(db_url)
    firsts = sorted(row["kind"] for row in rows if row["before"] == [])
    assert (25, 26, sorted([KIND_GROUP, KIND_GROUP, KIND_GROUP_INSTANCE, KIND_SERVICE_INSTANCE,
                            KIND_GROUP_OPERATION])) == (await store.version(), len(rows), firsts)
