"""Group tags, explicit group members, group operations, logical instances and canary through
the management API in process (§4.7, §4.9, §7.1 rule 4, §7.3, §7.5): the writes and reads,
what discovery (service.json, lookup.json) and push show of them, instance-down, the audit log,
tokens, a node that cannot take writes, and bad input.

Nodes run on a fake clock with a SQLite management database (the `managed` fixture, or `nodes`,
test_groups_api's `make_managed`, for other settings); no background loop runs, so a write is
applied by the node that took it (as the API does). Push sessions are driven through the node's
PushServer with an in-memory socket; every wait polls with a deadline.
"""

# STYLE.md has tests read `assert expected == actual`.

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.server.harness import (
    OK_BODY,
    REGION,
    SERVICE,
    SUCCESS,
    ZONE,
    Api,
    checksum,
    fail,
    instance,
)
from tests.server.test_groups_api import (
    ALL_GROUPS,
    ALL_LINKS,
    ALL_RULES,
    DELETE_GROUPS,
    GET_GROUPS,
    INSERT_GROUPS,
    OTHER,
    SHA,
    MakeManaged,
    entry,
    group,
    group_entry,
    group_out,
    group_row,
    groups_answer,
    key,
    link_out,
    link_row,
    links_answer,
    logs,
    make_managed,  # noqa: F401 - the fixture
    release,
    row,
    rule_out,
    rule_row,
    rules_answer,
    service_json,
    shown_rule,
    split,
    write,
)
from tests.server.test_management_api import (
    ADMIN,
    AUDIT,
    INSTANCE_DOWN,
    NODE_STATUS,
    OK,
    OPERATE_INSTANCE,
    OPERATE_SERVER,
    OPERATE_ZONES,
    READ_SECRET,
    START_MS,
    TOKENS,
    ikey,
    operate,
    operate_server,
    operate_zones,
    skey,
    until,
    zkey,
)

G = "/api/management/group"
INSERT_TAGS = f"{G}/insert-group-tags.json"
UPDATE_TAGS = f"{G}/update-group-tags.json"
DELETE_TAGS = f"{G}/delete-group-tags.json"
GET_TAGS = f"{G}/get-group-tags.json"
ALL_TAGS = f"{G}/get-all-group-tags.json"
INSERT_MEMBERS = f"{G}/insert-group-instances.json"
DELETE_MEMBERS = f"{G}/delete-group-instances.json"
GET_MEMBERS = f"{G}/get-group-instances.json"
OPERATE_GROUPS = f"{G}/operate-group-operations.json"
OPERATE_GROUP = f"{G}/operate-group-operation.json"
GET_GROUP_OPS = f"{G}/get-group-operations.json"
ALL_GROUP_OPS = f"{G}/get-all-group-operations.json"
INSERT_LOGICAL = f"{G}/insert-service-instances.json"
DELETE_LOGICAL = f"{G}/delete-service-instances.json"
GET_LOGICAL = f"{G}/get-service-instances.json"
CANARY = "/api/management/canary/update-canary-ips.json"
CANARY_RULE = "canary-route-rule"

# The payload fields each endpoint answers null when it fails.
NULLS: dict[str, dict[str, Any]] = {
    INSERT_TAGS: {}, UPDATE_TAGS: {}, DELETE_TAGS: {}, GET_TAGS: {"groupTags": None},
    ALL_TAGS: {"allGroupTags": None}, INSERT_MEMBERS: {}, DELETE_MEMBERS: {},
    GET_MEMBERS: {"groupInstances": None}, OPERATE_GROUPS: {}, OPERATE_GROUP: {},
    GET_GROUP_OPS: {"groupOperations": None}, ALL_GROUP_OPS: {"allGroupOperations": None},
    INSERT_LOGICAL: {}, DELETE_LOGICAL: {}, GET_LOGICAL: {"serviceInstances": None}, CANARY: {},
}
WRITES = [INSERT_TAGS, UPDATE_TAGS, DELETE_TAGS, INSERT_MEMBERS, DELETE_MEMBERS, OPERATE_GROUPS,
          OPERATE_GROUP, INSERT_LOGICAL, DELETE_LOGICAL, CANARY]
READS = [path for path in NULLS if path not in WRITES]
ALL_READS = [ALL_TAGS, ALL_GROUP_OPS]


# --- requests and expected answers -----------------------------------------------------------


def tags(group_id: int, **values: str) -> dict[str, Any]:
    """One entry of groupTagsList, and a GroupTags as the API answers one."""
    return {"groupId": group_id, "tags": values}


def tags_answer(found: dict[str, Any] | None) -> dict[str, Any]:
    return {"groupTags": found, "responseStatus": SUCCESS}


def all_tags_answer(*found: dict[str, Any]) -> dict[str, Any]:
    return {"allGroupTags": list(found), "responseStatus": SUCCESS}


def member(group_id: int, instance_id: str) -> dict[str, Any]:
    return {"groupId": group_id, "instanceId": instance_id}


def member_out(member_id: int, group_id: int, instance_id: str) -> dict[str, Any]:
    return {"groupId": group_id, "id": member_id, "instanceId": instance_id}


def members_answer(*found: dict[str, Any]) -> dict[str, Any]:
    return {"groupInstances": list(found), "responseStatus": SUCCESS}


def group_ops(group_id: int, *operations: str) -> dict[str, Any]:
    """One entry of groupOperationsList, and a GroupOperations as the API answers one."""
    return {"groupId": group_id, "operations": list(operations)}


def operate_groups(*entries: dict[str, Any], complete: bool = False,
                   **extra: Any) -> dict[str, Any]:
    return {**write("groupOperationsList", list(entries)), "operationComplete": complete,
            **extra}


def group_ops_answer(found: dict[str, Any] | None) -> dict[str, Any]:
    return {"groupOperations": found, "responseStatus": SUCCESS}


def all_group_ops_answer(*found: dict[str, Any]) -> dict[str, Any]:
    return {"allGroupOperations": list(found), "responseStatus": SUCCESS}


def logical(instance_id: str = "logic-1", service_id: str | None = SERVICE,
            **fields: Any) -> dict[str, Any]:
    """A logical instance as insert-service-instances takes one."""
    return {"instanceId": instance_id, "regionId": REGION, "serviceId": service_id,
            "url": f"http://{instance_id}.example/api", **fields}


def logical_shown(instance_id: str = "logic-1", service_id: str = SERVICE,
                  **fields: Any) -> dict[str, Any]:
    """A logical instance as discovery shows it: an Instance, status up, region lower-case."""
    return {"groupId": None, "healthCheckUrl": None, "instanceId": instance_id, "ip": None,
            "machineName": None, "metadata": None, "port": 0, "protocol": None,
            "regionId": SHA, "serviceId": service_id, "status": "up",
            "url": f"http://{instance_id}.example/api", "zoneId": None, **fields}


def logical_out(row_id: int, instance_id: str = "logic-1", service_id: str = SERVICE,
                **fields: Any) -> dict[str, Any]:
    """A logical instance as get-service-instances answers one (its id, no status)."""
    shown = logical_shown(instance_id, service_id, **fields)
    del shown["status"]
    return {"description": None, "id": row_id, **shown}


def logical_answer(*found: dict[str, Any]) -> dict[str, Any]:
    return {"responseStatus": SUCCESS, "serviceInstances": list(found)}


def canary(app: str, *ips: str, service_id: str = SERVICE, **extra: Any) -> dict[str, Any]:
    return {"appId": app, "canaryIps": list(ips), "operatorId": "alice",
            "serviceId": service_id, **extra}


def shown_group(group_key: str, weight: int, *, metadata: dict[str, str] | None = None,
                ids: list[str] | None = None) -> dict[str, Any]:
    """A group of a route rule as discovery shows it, with its tags and explicit members."""
    return {"groupKey": group_key, "instanceIds": ids, "instances": None, "metadata": metadata,
            "weight": weight}


def served(*instances: dict[str, Any], rules: list[dict[str, Any]] | None = None,
           logic: list[dict[str, Any]] | None = None,
           service_id: str = SERVICE) -> tuple[dict[str, Any], dict[str, Any]]:
    """service.json's and lookup.json's answers for a service showing `instances`."""
    shown = {"instances": list(instances), "logicInstances": logic or [], "metadata": None,
             "routeRules": rules or [], "serviceId": service_id}
    return ({"checksum": checksum(*instances), "responseStatus": SUCCESS, "service": shown},
            {"responseStatus": SUCCESS, "services": [shown]})


async def answers(api: Api, service_id: str = SERVICE) -> tuple[Any, Any]:
    """What service.json and lookup.json answer for `service_id`."""
    return await service_json(api, service_id), await api.lookup(service_id)


def failure(path: str, code: str, message: str) -> dict[str, Any]:
    """The failed answer of an endpoint: its payload null, and the status."""
    return {**NULLS[path], "responseStatus": fail(code, message)}


def valid_body(path: str) -> dict[str, Any]:
    """A valid body for each endpoint (writes name group 1 where they need an id)."""
    return {
        INSERT_TAGS: write("groupTagsList", [tags(1, idc="a")]),
        UPDATE_TAGS: write("groupTagsList", [tags(1, idc="a")]),
        DELETE_TAGS: {"groupId": 1, "operatorId": "alice"},
        INSERT_MEMBERS: write("groupInstances", [member(1, "10.0.0.5:8080")]),
        DELETE_MEMBERS: write("groupInstanceIds", [1]),
        OPERATE_GROUPS: operate_groups(group_ops(1, "deploy")),
        OPERATE_GROUP: {**group("blue"), "operation": "deploy", "operationComplete": False,
                        "operatorId": "alice"},
        INSERT_LOGICAL: write("serviceInstances", [logical()]),
        DELETE_LOGICAL: write("serviceInstanceIds", [1]),
        CANARY: canary("billing", "10.0.0.5:8080"),
        GET_TAGS: {"groupId": 1}, GET_GROUP_OPS: {"groupId": 1},
    }.get(path, {})


async def state(api: Api) -> tuple[Any, ...]:
    """Every read of groups and their members, the audit log's size and the store's version:
    what a refused write must not change."""
    headers = {"authorization": ADMIN}
    reads = [(ALL_TAGS, {}), (ALL_GROUP_OPS, {}), (GET_MEMBERS, {}), (GET_LOGICAL, {}),
             (ALL_GROUPS, {}), (ALL_RULES, {}), (ALL_LINKS, {}), (AUDIT, {"limit": 1000})]
    assert api.parts.management is not None
    store = api.parts.management.store
    return (*[await api.call(path, body, headers=headers) for path, body in reads],
            await store.version())


@pytest.fixture
def nodes(make_managed: MakeManaged) -> MakeManaged:  # noqa: F811 - test_groups_api's fixture
    """Build an up node with a SQLite management database (test_groups_api's make_managed)."""
    return make_managed


RELOAD: dict[str, Any] = {
    "groupId": None, "healthCheckUrl": None, "instanceId": "reload", "ip": "0.0.0.0",
    "machineName": None, "metadata": None, "port": 0, "protocol": None, "regionId": None,
    "serviceId": SERVICE, "status": None, "url": "http://serviceId/reload", "zoneId": None}


def frame(kind: str, seconds: int, inst: dict[str, Any], revision: str) -> dict[str, Any]:
    """One pushed InstanceChange, `seconds` after the test's start."""
    return {"changeTime": START_MS + seconds * 1000, "changeType": kind, "instance": inst,
            "revision": revision}


# --- 1. group tags ------------------------------------------------------------------------------


@pytest.fixture
async def three_groups(managed: Api) -> Api:
    """Groups 1 blue (zone-1), 2 green (zone-2) and 3 red (zone-1) of SERVICE, no tags."""
    assert OK == await managed.call(INSERT_GROUPS, write("groups", [
        group("blue"), group("green", "zone-2"), group("red")]))
    return managed


async def test_insert_group_tags_sets_each_groups_tags(three_groups: Api) -> None:
    """insert-group-tags sets tags per group; get-group-tags one group's (null when none)."""
    api = three_groups
    assert OK == await api.call(INSERT_TAGS, write("groupTagsList", [
        tags(1, idc="sha-a", Env="prod"), tags(2, idc="")]))

    one, two = tags(1, Env="prod", idc="sha-a"), tags(2, idc="")
    assert [tags_answer(one), tags_answer(two), tags_answer(None), all_tags_answer(one, two)] == [
        *[await api.call(GET_TAGS, {"groupId": i}) for i in (1, 2, 3)],
        await api.call(ALL_TAGS, {})]


async def test_update_group_tags_changes_values_and_adds_tags(three_groups: Api) -> None:
    """update (or insert) of present tags takes the new values, adds new tags, keeps the rest."""
    api = three_groups
    assert OK == await api.call(INSERT_TAGS, write("groupTagsList", [tags(1, idc="a", env="x")]))
    assert OK == await api.call(UPDATE_TAGS, write("groupTagsList", [tags(1, idc="b", team="t")]))
    assert tags_answer(tags(1, env="x", idc="b", team="t")) == await api.call(
        GET_TAGS, {"groupId": 1})
    assert OK == await api.call(INSERT_TAGS, write("groupTagsList", [tags(1, env="y")]))

    assert all_tags_answer(tags(1, env="y", idc="b", team="t")) == await api.call(ALL_TAGS)


async def test_get_all_group_tags_of_another_region_is_empty(three_groups: Api) -> None:
    """get-all-group-tags (GET or POST) of another region lists nothing; of this one, all."""
    api = three_groups
    assert OK == await api.call(INSERT_TAGS, write("groupTagsList", [
        tags(3, idc="c"), tags(1, idc="a")]))

    every = all_tags_answer(tags(1, idc="a"), tags(3, idc="c"))
    assert [all_tags_answer(), all_tags_answer(), every, every, every] == [
        (await api.get(ALL_TAGS, {"regionId": "FRA"})).json(),
        await api.call(ALL_TAGS, {"regionId": "fra"}),
        (await api.get(ALL_TAGS, {"regionId": "Sha"})).json(), (await api.get(ALL_TAGS)).json(),
        await api.call(ALL_TAGS, {"regionId": REGION})]


async def test_group_tags_are_the_groups_metadata_in_its_route_rules(managed: Api) -> None:
    """A linked group's tags are its `metadata` in the rule (staged or released weights)."""
    api = managed
    assert OK_BODY == await api.register(instance())
    await split(api)
    assert OK == await api.call(INSERT_TAGS, write("groupTagsList", [
        tags(1, idc="sha-a", env="prod")]))
    staged = [shown_rule("split", shown_group(key("blue"), 5, metadata={"env": "prod",
                                                                          "idc": "sha-a"}),
                         shown_group(key("green", "zone-2"), 5))]
    assert served(instance(), rules=staged) == await answers(api)

    await release(api, (1, 1), (1, 2))
    assert OK == await api.call(UPDATE_TAGS, write("groupTagsList", [
        tags(1, env="test"), tags(2, idc="sha-b")]))
    released = [shown_rule("split", shown_group(key("blue"), 90, metadata={"env": "test",
                                                                             "idc": "sha-a"}),
                           shown_group(key("green", "zone-2"), 10, metadata={"idc": "sha-b"}))]
    assert served(instance(), rules=released) == await answers(api)

    assert OK == await api.call(DELETE_TAGS, {"groupId": 1, "operatorId": "alice"})
    cleared = [shown_rule("split", shown_group(key("blue"), 90),
                          shown_group(key("green", "zone-2"), 10, metadata={"idc": "sha-b"}))]
    assert served(instance(), rules=cleared) == await answers(api)


@pytest.fixture
async def tagged(three_groups: Api) -> Api:
    """Group 1 {idc: a, env: prod, team: x}, group 2 {idc: a, env: test}, group 3 {team: a}."""
    assert OK == await three_groups.call(INSERT_TAGS, write("groupTagsList", [
        tags(1, idc="a", env="prod", team="x"), tags(2, idc="a", env="test"), tags(3, team="a")]))
    return three_groups


async def test_delete_group_tags_by_tag(tagged: Api) -> None:
    """delete-group-tags with a tag alone deletes that tag in every group."""
    assert OK == await tagged.call(DELETE_TAGS, {"tag": "env", "operatorId": "alice"})

    assert all_tags_answer(tags(1, idc="a", team="x"), tags(2, idc="a"), tags(3, team="a")) == (
        await tagged.call(ALL_TAGS))


async def test_delete_group_tags_by_value(tagged: Api) -> None:
    """delete-group-tags with a value alone deletes every tag of that value, whatever its name."""
    assert OK == await tagged.call(DELETE_TAGS, {"value": "a", "operatorId": "alice"})

    assert all_tags_answer(tags(1, env="prod", team="x"), tags(2, env="test")) == (
        await tagged.call(ALL_TAGS))


async def test_delete_group_tags_by_group_and_combined(tagged: Api) -> None:
    """delete-group-tags by group deletes its tags; given together, the arguments are ANDed."""
    api = tagged
    assert OK == await api.call(DELETE_TAGS, {"groupId": 1, "tag": "idc", "value": "a",
                                              "operatorId": "alice"})
    assert OK == await api.call(DELETE_TAGS, {"groupId": 2, "tag": "env", "value": "prod",
                                              "operatorId": "alice"})  # no such tag: nothing
    assert all_tags_answer(tags(1, env="prod", team="x"), tags(2, idc="a", env="test"),
                           tags(3, team="a")) == await api.call(ALL_TAGS)
    assert OK == await api.call(DELETE_TAGS, {"groupId": 2, "operatorId": "alice"})

    assert [all_tags_answer(tags(1, env="prod", team="x"), tags(3, team="a")),
            tags_answer(None)] == [await api.call(ALL_TAGS), await api.call(GET_TAGS,
                                                                           {"groupId": 2})]


async def test_delete_group_tags_without_group_tag_or_value_is_refused(tagged: Api) -> None:
    """delete-group-tags naming no group, tag or value is bad-request and deletes nothing."""
    api = tagged
    before = await state(api)
    message = "groupId, tag or value is needed: deleting every tag is refused."

    assert [failure(DELETE_TAGS, "bad-request", message)] * 2 == [
        await api.call(DELETE_TAGS, {"operatorId": "alice"}),
        await api.call(DELETE_TAGS, {"tag": "", "value": "", "operatorId": "alice"})]
    assert before == await state(api)


UNKNOWN_GROUP_WRITES: list[tuple[str, dict[str, Any], int]] = [
    (INSERT_TAGS, write("groupTagsList", [tags(1, idc="new"), tags(99, idc="x")]), 99),
    (UPDATE_TAGS, write("groupTagsList", [tags(1, idc="new"), tags(4, idc="x")]), 4),  # deleted
    (DELETE_TAGS, {"groupId": 99, "operatorId": "alice"}, 99),
    (INSERT_MEMBERS, write("groupInstances", [member(1, "new:1"), member(99, "x:1")]), 99),
    (OPERATE_GROUPS, operate_groups(group_ops(1, "deploy"), group_ops(99, "deploy")), 99),
    (OPERATE_GROUPS, operate_groups(group_ops(4, "deploy"), complete=True), 4),  # deleted
]


async def test_writes_naming_an_unknown_or_deleted_group_are_refused(tagged: Api) -> None:
    """A write naming a group that does not exist (or is deleted) is bad-request, nothing
    written (not the other items, not the audit, not the version)."""
    api = tagged
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("gone")]))
    assert OK == await api.call(DELETE_GROUPS, write("groupIds", [4]))
    before = await state(api)

    found = [await api.call(path, body) for path, body, _ in UNKNOWN_GROUP_WRITES]
    assert [failure(path, "bad-request", f"group {missing} does not exist or is deleted")
            for path, _, missing in UNKNOWN_GROUP_WRITES] == found
    assert before == await state(api)


async def test_more_than_64_tags_are_refused(three_groups: Api) -> None:
    """A group's entry with 65 tags is bad-request and writes nothing; 64 are taken."""
    api = three_groups
    before = await state(api)
    many = {f"t{n:02}": str(n) for n in range(65)}

    assert failure(INSERT_TAGS, "bad-request", "tags has more than 64 entries.") == (
        await api.call(INSERT_TAGS, write("groupTagsList", [{"groupId": 1, "tags": many}])))
    assert before == await state(api)
    del many["t64"]
    assert OK == await api.call(UPDATE_TAGS, write("groupTagsList", [
        {"groupId": 1, "tags": many}]))
    assert tags_answer(tags(1, **many)) == await api.call(GET_TAGS, {"groupId": 1})


# --- 2. explicit members ------------------------------------------------------------------------


async def test_insert_group_instances_and_get_them_by_filter(three_groups: Api) -> None:
    """insert-group-instances adds members; get-group-instances filters by group and instance."""
    api = three_groups
    assert OK == await api.call(INSERT_MEMBERS, write("groupInstances", [
        member(1, "10.0.0.6:8080"), member(1, "10.0.0.5:8080"), member(2, "10.0.0.5:8080")]))
    rows = {1: member_out(1, 1, "10.0.0.6:8080"), 2: member_out(2, 1, "10.0.0.5:8080"),
            3: member_out(3, 2, "10.0.0.5:8080")}
    filters: list[tuple[dict[str, Any], list[int]]] = [
        ({}, [1, 2, 3]), ({"groupId": 1}, [1, 2]), ({"instanceId": "10.0.0.5:8080"}, [2, 3]),
        ({"groupId": 2, "instanceId": " 10.0.0.5:8080 "}, [3]), ({"groupId": 3}, []),
        ({"groupId": 2, "instanceId": "10.0.0.6:8080"}, []), ({"instanceId": ""}, [1, 2, 3])]

    assert [members_answer(*(rows[i] for i in ids)) for _, ids in filters] == [
        await api.call(GET_MEMBERS, body) for body, _ in filters]


async def test_members_are_the_groups_sorted_instance_ids_in_route_rules(managed: Api) -> None:
    """A linked group's explicit members are its `instanceIds`, sorted; null without any."""
    api = managed
    assert OK_BODY == await api.register(instance())
    await split(api)
    assert OK == await api.call(INSERT_MEMBERS, write("groupInstances", [
        member(1, "10.0.0.9:8080"), member(1, "10.0.0.10:8080"), member(1, "a-host:1")]))

    assert served(instance(), rules=[shown_rule(
        "split", shown_group(key("blue"), 5, ids=["10.0.0.10:8080", "10.0.0.9:8080", "a-host:1"]),
        shown_group(key("green", "zone-2"), 5))]) == await answers(api)


async def test_a_duplicate_member_changes_nothing(three_groups: Api) -> None:
    """Inserting a present member again (or twice in one call) keeps one row, same id."""
    api = three_groups
    assert OK == await api.call(INSERT_MEMBERS, write("groupInstances", [
        member(1, "a:1"), member(1, "a:1")]))
    assert OK == await api.call(INSERT_MEMBERS, write("groupInstances", [
        member(1, "b:1"), member(1, "a:1")]))

    assert members_answer(member_out(1, 1, "a:1"), member_out(2, 1, "b:1")) == (
        await api.call(GET_MEMBERS, {}))


async def test_delete_group_instances_removes_members(managed: Api) -> None:
    """delete-group-instances removes members by id (unknown ids ignored); the rule follows."""
    api = managed
    assert OK_BODY == await api.register(instance())
    await split(api)
    assert OK == await api.call(INSERT_MEMBERS, write("groupInstances", [
        member(1, "a:1"), member(1, "b:1"), member(2, "c:1")]))
    assert OK == await api.call(DELETE_MEMBERS, write("groupInstanceIds", [1, 3, 99]))

    assert members_answer(member_out(2, 1, "b:1")) == await api.call(GET_MEMBERS, {})
    assert served(instance(), rules=[shown_rule(
        "split", shown_group(key("blue"), 5, ids=["b:1"]),
        shown_group(key("green", "zone-2"), 5))]) == await answers(api)


async def test_a_subscriber_gets_a_reload_for_tags_and_members_only_when_shown_ones_change(
        nodes: MakeManaged) -> None:
    """Tags and members of a shown group push a `reload`; a duplicate member pushes nothing."""
    node = await nodes()
    api = node.api
    assert OK_BODY == await api.register(instance())
    await split(api)
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("unlinked")]))
    ws = await node.subscribe()
    api.clock.advance(1)
    assert OK == await api.call(INSERT_TAGS, write("groupTagsList", [tags(1, idc="a")]))
    api.clock.advance(1)
    assert OK == await api.call(INSERT_MEMBERS, write("groupInstances", [member(2, "x:1")]))
    api.clock.advance(1)
    assert OK == await api.call(INSERT_MEMBERS, write("groupInstances", [member(2, "x:1")]))
    assert OK == await api.call(INSERT_TAGS, write("groupTagsList", [tags(3, idc="a")]))
    assert OK == await api.call(INSERT_MEMBERS, write("groupInstances", [member(3, "y:1")]))
    api.clock.advance(1)
    assert OK == await api.call(DELETE_TAGS, {"groupId": 1, "operatorId": "alice"})
    await until(lambda: len(ws.sent) >= 3, "three frames")

    assert [frame("reload", 1, RELOAD, node.token(3)), frame("reload", 2, RELOAD, node.token(4)),
            frame("reload", 4, RELOAD, node.token(5))] == ws.frames()


# --- 3. group operations ------------------------------------------------------------------------


async def test_a_group_operation_hides_the_groups_instances_and_no_others(managed: Api) -> None:
    """A group in operation hides its service's instances of its zone whose groupId is its
    name (any case), not other groups, zones or services; completing it shows them again."""
    api = managed
    a = instance("10.0.0.5:8080", groupId="blue")
    b = instance("10.0.0.6:8080")
    c = instance("10.0.0.7:8080", groupId="blue", zoneId="zone-2")
    d = instance("10.0.0.8:8080", groupId="BLUE")
    e = instance("10.0.0.9:8080", groupId="green")
    theirs = instance("10.0.0.5:9090", groupId="blue", serviceId=OTHER)
    assert OK_BODY == await api.register(a, b, c, d, e, theirs)
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("Blue")]))
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(group_ops(1, "deploy")))

    assert (served(b, c, e), served(theirs, service_id=OTHER)) == (
        await answers(api), await answers(api, OTHER))
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(group_ops(1, "deploy"),
                                                               complete=True))
    assert (served(a, b, c, d, e), served(theirs, service_id=OTHER)) == (
        await answers(api), await answers(api, OTHER))


async def test_a_default_group_operation_hides_instances_without_a_group(managed: Api) -> None:
    """An operation on a group named `default` hides the zone's instances with no groupId (null
    or empty) or groupId `default`, and not those of a named group."""
    api = managed
    none, empty = instance("10.0.0.5:8080"), instance("10.0.0.6:8080", groupId="")
    named, default = (instance("10.0.0.7:8080", groupId="blue"),
                      instance("10.0.0.8:8080", groupId="Default"))
    elsewhere = instance("10.0.0.9:8080", zoneId="zone-2")
    assert OK_BODY == await api.register(none, empty, named, default, elsewhere)
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("default")]))
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(group_ops(1, "deploy")))

    assert served(named, elsewhere) == await answers(api)
    assert [{"down": value, "responseStatus": SUCCESS} for value in (True, True, False, True)
            ] == [await api.call(INSTANCE_DOWN, {"instance": i})
                  for i in (none, empty, named, default)]


async def test_a_blank_group_id_is_in_the_default_group(managed: Api) -> None:
    """An instance whose groupId is blank belongs to `default`: its operation hides it."""
    api = managed
    blank = instance("10.0.0.5:8080", groupId="  ")
    assert OK_BODY == await api.register(blank)
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("default")]))
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(group_ops(1, "deploy")))

    assert (served(), {"down": True, "responseStatus": SUCCESS}) == (
        (await answers(api)), await api.call(INSTANCE_DOWN, {"instance": blank}))


async def test_instance_down_says_down_for_a_group_pulled_instance(managed: Api) -> None:
    """instance-down is true for an instance of a group in operation, registered or not."""
    api = managed
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("blue")]))
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(group_ops(1, "deploy")))
    asked = [instance(groupId="blue"), instance(groupId="BLUE"), instance(groupId="green"),
             instance(groupId="blue", zoneId="zone-2"), instance()]

    assert [{"down": value, "responseStatus": SUCCESS} for value in (True, True, False, False,
                                                                     False)] == [
        await api.call(INSTANCE_DOWN, {"instance": i}) for i in asked]
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(group_ops(1, "deploy"),
                                                               complete=True))
    assert {"down": False, "responseStatus": SUCCESS} == await api.call(
        INSTANCE_DOWN, {"instance": asked[0]})


async def test_an_instance_registering_into_a_group_in_operation_stays_hidden(
        managed: Api) -> None:
    """An instance that registers into a group in operation is hidden from its registration."""
    api = managed
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("blue")]))
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(group_ops(1, "deploy")))
    assert OK_BODY == await api.register(instance(groupId="blue"), instance("10.0.0.6:8080"))

    assert served(instance("10.0.0.6:8080")) == await answers(api)


async def test_a_group_is_back_only_when_every_operation_is_complete(managed: Api) -> None:
    """A group under two operations shows its instances again only when both are complete."""
    api = managed
    assert OK_BODY == await api.register(instance(groupId="blue"))
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("blue")]))
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(group_ops(1, "deploy", "drill")))
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(group_ops(1, "deploy"),
                                                               complete=True))

    assert (served(), group_ops_answer(group_ops(1, "drill"))) == (
        await answers(api), await api.call(GET_GROUP_OPS, {"groupId": 1}))
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(group_ops(1, "drill"),
                                                               complete=True))
    assert (served(instance(groupId="blue")), group_ops_answer(None)) == (
        await answers(api), await api.call(GET_GROUP_OPS, {"groupId": 1}))


async def test_a_subscriber_gets_deletes_then_news_for_a_group_operation(
        nodes: MakeManaged) -> None:
    """A push subscriber gets a `delete` per hidden instance, then a `new` per one shown again."""
    node = await nodes()
    api = node.api
    a, b = instance(groupId="blue"), instance("10.0.0.6:8080", groupId="blue")
    assert OK_BODY == await api.register(a, b, instance("10.0.0.7:8080"))
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("blue")]))
    ws = await node.subscribe()
    api.clock.advance(1)
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(group_ops(1, "deploy")))
    api.clock.advance(1)
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(group_ops(1, "deploy"),
                                                               complete=True))
    await until(lambda: len(ws.sent) >= 4, "four frames")

    assert [frame("delete", 1, a, node.token(4)), frame("delete", 1, b, node.token(5)),
            frame("new", 2, a, node.token(6)), frame("new", 2, b, node.token(7))] == ws.frames()


async def test_get_group_operations_and_get_all(three_groups: Api) -> None:
    """get-group-operations lists one group's operations sorted (null when none); get-all lists
    every group's, none for another region; an entry with no operations takes `operation`."""
    api = three_groups
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(
        group_ops(3, "maintenance", "deploy"), group_ops(1), operation="drill"))
    every = all_group_ops_answer(group_ops(1, "drill"), group_ops(3, "deploy", "maintenance"))

    assert [group_ops_answer(group_ops(3, "deploy", "maintenance")), group_ops_answer(None),
            every, every, all_group_ops_answer(), all_group_ops_answer()] == [
        await api.call(GET_GROUP_OPS, {"groupId": 3}), await api.call(GET_GROUP_OPS,
                                                                      {"groupId": 2}),
        await api.call(ALL_GROUP_OPS, {}), (await api.get(ALL_GROUP_OPS)).json(),
        await api.call(ALL_GROUP_OPS, {"regionId": "FRA"}),
        (await api.get(ALL_GROUP_OPS, {"regionId": "fra"})).json()]


async def test_operate_group_operation_makes_the_group_if_missing(managed: Api) -> None:
    """operate-group-operation names a group by its fields: made if missing, then operated."""
    api = managed
    assert OK_BODY == await api.register(instance(groupId="blue"), instance("10.0.0.6:8080"))
    body = {**group("Blue", appId="billing"), "operation": "deploy", "operationComplete": False,
            "operatorId": "alice"}
    assert OK == await api.call(OPERATE_GROUP, body)

    assert (groups_answer(group_out(1, "blue", app="billing")),
            group_ops_answer(group_ops(1, "deploy")), served(instance("10.0.0.6:8080"))) == (
        await api.call(GET_GROUPS, {}), await api.call(GET_GROUP_OPS, {"groupId": 1}),
        await answers(api))
    assert OK == await api.call(OPERATE_GROUP, {**body, "appId": "other",
                                                "operationComplete": True})
    assert (groups_answer(group_out(1, "blue", app="billing")), group_ops_answer(None),
            served(instance(groupId="blue"), instance("10.0.0.6:8080"))) == (
        await api.call(GET_GROUPS, {}), await api.call(GET_GROUP_OPS, {"groupId": 1}),
        await answers(api))


# --- 4. logical instances -----------------------------------------------------------------------

FULL_LOGICAL: dict[str, Any] = {
    "description": "an external endpoint", "groupId": "Blue", "healthCheckUrl": "http://h/health",
    "ip": "10.9.9.9", "machineName": "ext-1", "metadata": {"k": "v", "Owner": "team-b"},
    "port": 8443, "protocol": "https", "zoneId": "Zone-2"}


async def test_logical_instances_show_in_logic_instances(managed: Api) -> None:
    """Logical instances are the service's `logicInstances`, by instance id, status up, their
    fields as given (ids and region lower-case, no description); get-service-instances lists
    them by row id."""
    api = managed
    assert OK_BODY == await api.register(instance())
    assert OK == await api.call(INSERT_LOGICAL, write("serviceInstances", [
        logical("Logic-2", "Demo.Service.V1", **FULL_LOGICAL), logical("logic-1")]))

    shown_fields = {k: v for k, v in FULL_LOGICAL.items() if k != "description"}
    assert served(instance(), logic=[logical_shown("logic-1"),
                                     logical_shown("logic-2", url="http://Logic-2.example/api",
                                                   **shown_fields)]) == await answers(api)
    assert logical_answer(
        logical_out(1, "logic-2", url="http://Logic-2.example/api", **FULL_LOGICAL),
        logical_out(2, "logic-1")) == await api.call(GET_LOGICAL, {})


async def test_logical_instances_are_answered_only_with_a_registered_instance(
        managed: Api) -> None:
    """A service with logical instances but none registered answers no logicInstances."""
    api = managed
    assert OK == await api.call(INSERT_LOGICAL, write("serviceInstances", [logical()]))
    assert served() == await answers(api)

    assert OK_BODY == await api.register(instance())
    assert served(instance(), logic=[logical_shown()]) == await answers(api)
    assert OK_BODY == await api.unregister(instance())
    assert served() == await answers(api)


async def test_insert_again_replaces_a_logical_instance(managed: Api) -> None:
    """insert-service-instances of a present (serviceId, instanceId), any case, rewrites every
    field: those left out become null; the row keeps its id."""
    api = managed
    assert OK_BODY == await api.register(instance())
    assert OK == await api.call(INSERT_LOGICAL, write("serviceInstances", [
        logical(**FULL_LOGICAL)]))
    assert OK == await api.call(INSERT_LOGICAL, write("serviceInstances", [
        logical("LOGIC-1", "DEMO.service.v1", url="http://new/api", port=81)]))

    assert served(instance(), logic=[logical_shown(url="http://new/api", port=81)]) == (
        await answers(api))
    assert logical_answer(logical_out(1, url="http://new/api", port=81)) == await api.call(
        GET_LOGICAL, {})


async def test_delete_service_instances_removes_them(managed: Api) -> None:
    """delete-service-instances removes logical instances by id; unknown ids are ignored."""
    api = managed
    assert OK_BODY == await api.register(instance())
    assert OK == await api.call(INSERT_LOGICAL, write("serviceInstances", [
        logical("logic-1"), logical("logic-2")]))
    assert OK == await api.call(DELETE_LOGICAL, write("serviceInstanceIds", [1, 99]))

    assert (served(instance(), logic=[logical_shown("logic-2")]),
            logical_answer(logical_out(2, "logic-2"))) == (
        await answers(api), await api.call(GET_LOGICAL, {}))


async def test_get_service_instances_filters(managed: Api) -> None:
    """get-service-instances filters by serviceId and instanceId (any case), ANDed."""
    api = managed
    assert OK == await api.call(INSERT_LOGICAL, write("serviceInstances", [
        logical("a"), logical("b"), logical("a", OTHER)]))
    rows = {1: logical_out(1, "a"), 2: logical_out(2, "b"), 3: logical_out(3, "a", OTHER)}
    filters: list[tuple[dict[str, Any], list[int]]] = [
        ({}, [1, 2, 3]), ({"serviceId": "DEMO.Service.v1"}, [1, 2]), ({"instanceId": "A"}, [1, 3]),
        ({"serviceId": OTHER, "instanceId": "a"}, [3]), ({"serviceId": OTHER, "instanceId": "b"},
                                                         []),
        ({"serviceId": " ", "instanceId": None}, [1, 2, 3])]

    assert [logical_answer(*(rows[i] for i in ids)) for _, ids in filters] == [
        await api.call(GET_LOGICAL, body) for body, _ in filters]


async def _instance_op(api: Api, complete: bool) -> None:
    assert OK == await api.call(OPERATE_INSTANCE, operate(ikey("LOGIC-1"), complete=complete))


async def _server_op(api: Api, complete: bool) -> None:
    assert OK == await api.call(OPERATE_SERVER, operate_server(skey("10.9.9.9"),
                                                               complete=complete))


async def _zone_op(api: Api, complete: bool) -> None:
    assert OK == await api.call(OPERATE_ZONES, operate_zones(zkey("zone-2"), complete=complete))


async def _group_op(api: Api, complete: bool) -> None:
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("blue", "zone-2")]))
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(group_ops(1, "pullout"),
                                                               complete=complete))


PULL_OUTS: dict[str, Callable[[Api, bool], Awaitable[None]]] = {
    "instance": _instance_op, "server": _server_op, "zone": _zone_op, "group": _group_op}


@pytest.mark.parametrize("kind", list(PULL_OUTS))
async def test_a_pulled_out_logical_instance_leaves_logic_instances(managed: Api,
                                                                    kind: str) -> None:
    """A logical instance pulled out by its id, its ip, its zone or its group leaves
    `logicInstances` (the other stays) and is back when the operation completes."""
    api = managed
    assert OK_BODY == await api.register(instance())
    fields = {"groupId": "Blue", "ip": "10.9.9.9", "zoneId": "Zone-2"}
    assert OK == await api.call(INSERT_LOGICAL, write("serviceInstances", [
        logical(**fields), logical("logic-2")]))
    await PULL_OUTS[kind](api, False)
    assert served(instance(), logic=[logical_shown("logic-2")]) == await answers(api)

    await PULL_OUTS[kind](api, True)
    assert served(instance(), logic=[logical_shown(**fields), logical_shown("logic-2")]) == (
        await answers(api))


async def test_a_subscriber_gets_a_reload_when_logic_instances_change(
        nodes: MakeManaged) -> None:
    """Adding, pulling out, pulling in and deleting a shown logical instance each push a
    `reload`; logical instances of another service push nothing to this one."""
    node = await nodes()
    api = node.api
    assert OK_BODY == await api.register(instance())
    ws = await node.subscribe()
    api.clock.advance(1)
    assert OK == await api.call(INSERT_LOGICAL, write("serviceInstances", [logical()]))
    api.clock.advance(1)
    assert OK == await api.call(OPERATE_INSTANCE, operate(ikey("logic-1")))
    api.clock.advance(1)
    assert OK == await api.call(OPERATE_INSTANCE, operate(ikey("logic-1"), complete=True))
    api.clock.advance(1)
    assert OK == await api.call(INSERT_LOGICAL, write("serviceInstances", [
        logical("logic-9", OTHER)]))
    assert OK == await api.call(DELETE_LOGICAL, write("serviceInstanceIds", [1]))
    await until(lambda: len(ws.sent) >= 4, "four frames")

    assert [frame("reload", n, RELOAD, node.token(n + 1)) for n in (1, 2, 3, 4)] == ws.frames()


LONG_METADATA = {f"k{n}": "v" for n in range(65)}
BAD_LOGICAL: list[tuple[dict[str, Any], str]] = [
    (logical(url="ext.example/api"), "url is not an absolute URL: 'ext.example/api'."),
    (logical(url="http://"), "url is not an absolute URL: 'http://'."),
    (logical(url=None), "url is null or empty."),
    (logical(url="http://" + "u" * 506), "url is longer than 512 characters."),
    (logical(port=65536), "port 65536 is out of range 0-65535."),
    (logical(port=-1), "port -1 is out of range 0-65535."),
    (logical(metadata=LONG_METADATA),
     "metadata has more than 64 entries or an entry over 1024 characters."),
    (logical(metadata={"k": "v" * 1025}),
     "metadata has more than 64 entries or an entry over 1024 characters."),
    (logical(instance_id=" "), "instanceId is null or empty."),
    (logical(service_id=None), "serviceId is null or empty."),
    (logical(regionId="FRA"), "regionId 'FRA' is not this node's region 'SHA'."),
]


async def test_bad_logical_instances_are_refused(managed: Api) -> None:
    """A bad logical instance (url, port, metadata, ids, region) is bad-request, none written."""
    api = managed
    before = await state(api)

    found = [await api.call(INSERT_LOGICAL, write("serviceInstances", [logical("good"), bad]))
             for bad, _ in BAD_LOGICAL]
    assert [failure(INSERT_LOGICAL, "bad-request", message) for _, message in BAD_LOGICAL] == (
        found)
    assert before == await state(api)


async def test_logical_instances_of_exactly_the_limits_are_taken(managed: Api) -> None:
    """Ports 0 and 65535 and 64 metadata entries of 1024 characters are taken."""
    api = managed
    metadata = {f"{n:02}" + "k" * 1022: "v" * 1024 for n in range(64)}
    assert OK == await api.call(INSERT_LOGICAL, write("serviceInstances", [
        logical("a", port=0, metadata=metadata), logical("b", port=65535)]))

    assert logical_answer(logical_out(1, "a", metadata=metadata),
                          logical_out(2, "b", port=65535)) == await api.call(GET_LOGICAL, {})


# --- 5. canary ----------------------------------------------------------------------------------


async def test_update_canary_ips_makes_the_canary_rule_group_and_members(managed: Api) -> None:
    """update-canary-ips makes `canary-route-rule` (active, weighted-round-robin), the group
    zone `canary` named after the appId (lower-case), staged weight 5, members = canaryIps."""
    api = managed
    assert OK_BODY == await api.register(instance())
    assert OK == await api.call(CANARY, canary("Billing-App", "10.0.0.6:8080", "10.0.0.5:8080",
                                               "10.0.0.6:8080", service_id="Demo.Service.V1"))

    assert (rules_answer(rule_out(1, CANARY_RULE)),
            groups_answer(group_out(1, "billing-app", "canary", app="billing-app")),
            links_answer(link_out(1, 1, 1, 5)),
            members_answer(member_out(1, 1, "10.0.0.5:8080"), member_out(2, 1, "10.0.0.6:8080"))
            ) == (await api.call(ALL_RULES), await api.call(ALL_GROUPS),
                  await api.call(ALL_LINKS), await api.call(GET_MEMBERS, {}))
    assert served(instance(), rules=[shown_rule(CANARY_RULE, shown_group(
        key("billing-app", "canary"), 5, ids=["10.0.0.5:8080", "10.0.0.6:8080"]))]) == (
        await answers(api))


async def test_update_canary_ips_again_replaces_the_members_exactly(managed: Api) -> None:
    """A second call makes the members exactly the new list (same rule, group and link); an
    empty list clears them."""
    api = managed
    assert OK_BODY == await api.register(instance())
    assert OK == await api.call(CANARY, canary("billing", "a:1", "b:1"))
    assert OK == await api.call(CANARY, canary("BILLING", "c:1", "b:1"))

    same = (rules_answer(rule_out(1, CANARY_RULE)),
            groups_answer(group_out(1, "billing", "canary", app="billing")),
            links_answer(link_out(1, 1, 1, 5)))
    assert (*same, members_answer(member_out(2, 1, "b:1"), member_out(3, 1, "c:1"))) == (
        await api.call(ALL_RULES), await api.call(ALL_GROUPS), await api.call(ALL_LINKS),
        await api.call(GET_MEMBERS, {}))
    assert served(instance(), rules=[shown_rule(CANARY_RULE, shown_group(
        key("billing", "canary"), 5, ids=["b:1", "c:1"]))]) == await answers(api)

    assert OK == await api.call(CANARY, canary("billing"))
    assert (*same, members_answer()) == (
        await api.call(ALL_RULES), await api.call(ALL_GROUPS), await api.call(ALL_LINKS),
        await api.call(GET_MEMBERS, {}))
    assert served(instance(), rules=[shown_rule(CANARY_RULE, shown_group(
        key("billing", "canary"), 5))]) == await answers(api)


def member_entry(id: int, operation: str, before: list[str], after: list[str],
                 instance_id: str, zone: str = "canary", **fields: Any) -> dict[str, Any]:
    """The audit entry of an explicit member's write."""
    return {**entry(id, "group-instance", operation, before, after, region=SHA, zone=zone,
                    **fields), "instanceId": instance_id}


def member_row(member_id: int, group_id: int, instance_id: str) -> list[str]:
    return row({"group_id": group_id, "id": member_id, "instance_id": instance_id})


async def test_update_canary_ips_is_audited(managed: Api) -> None:
    """update-canary-ips audits the rule, the group, the link and each member added/removed."""
    api = managed
    context: dict[str, Any] = {"reason": "canary", "extensions": '{"ticket":"OPS-9"}'}
    assert OK == await api.call(CANARY, canary("billing", "b:1", "a:1", **context))
    api.clock.advance(1)
    assert OK == await api.call(CANARY, canary("billing", "b:1", "c:1", operatorId="bob"))

    second = START_MS + 1000
    rule_now, group_now = rule_row(1, CANARY_RULE), group_row(1, "billing", "canary",
                                                               app="billing")
    assert logs(
        member_entry(10, "create", [], member_row(3, 1, "c:1"), "c:1", created=second,
                     operator="bob"),
        member_entry(9, "create", member_row(2, 1, "b:1"), member_row(2, 1, "b:1"), "b:1",
                     created=second, operator="bob"),
        member_entry(8, "delete", member_row(1, 1, "a:1"), [], "a:1", created=second,
                     operator="bob"),
        group_entry(7, "create", group_now, group_now, "canary", created=second, operator="bob"),
        entry(6, "route-rule", "create", rule_now, rule_now, created=second, operator="bob"),
        member_entry(5, "create", [], member_row(2, 1, "b:1"), "b:1", **context),
        member_entry(4, "create", [], member_row(1, 1, "a:1"), "a:1", **context),
        entry(3, "route-rule-group", "create", [], link_row(1, 1, 1, 5), **context),
        group_entry(2, "create", [], group_now, "canary", **context),
        entry(1, "route-rule", "create", [], rule_now, **context),
    ) == await api.call(AUDIT, {})


def logical_row(row_id: int, instance_id: str = "logic-1", *, created: int = START_MS,
                updated: int = START_MS, **fields: Any) -> list[str]:
    """An audit entry's before/after of a logical instance: its row as JSON."""
    return row({"created_ms": created, "description": None, "group_id": None,
                "health_check_url": None, "id": row_id, "instance_id": instance_id, "ip": None,
                "machine_name": None, "metadata": None, "port": 0, "protocol": None,
                "region_id": SHA, "service_id": SERVICE, "updated_ms": updated,
                "url": f"http://{instance_id}.example/api", "zone_id": None, **fields})


async def test_every_member_write_is_audited(managed: Api) -> None:
    """Tags, members, group operations and logical instances are audited row by row, with the
    group's service, region and zone (the instance's for logical instances)."""
    api = managed
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("blue")]))
    assert OK == await api.call(INSERT_TAGS, write("groupTagsList", [tags(1, idc="a")]))
    assert OK == await api.call(UPDATE_TAGS, write("groupTagsList", [tags(1, idc="b")],
                                                   reason="move"))
    assert OK == await api.call(INSERT_MEMBERS, write("groupInstances", [member(1, "x:1")]))
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(group_ops(1, "deploy")))
    assert OK == await api.call(OPERATE_GROUPS, operate_groups(group_ops(1, "deploy"),
                                                               complete=True))
    assert OK == await api.call(INSERT_LOGICAL, write("serviceInstances", [
        logical(zoneId="Zone-2", metadata={"k": "v"})]))
    api.clock.advance(1)
    assert OK == await api.call(INSERT_LOGICAL, write("serviceInstances", [logical(port=81)]))
    assert OK == await api.call(DELETE_LOGICAL, write("serviceInstanceIds", [1], "bob"))
    assert OK == await api.call(DELETE_MEMBERS, write("groupInstanceIds", [1]))
    assert OK == await api.call(DELETE_TAGS, {"tag": "idc", "operatorId": "carol"})

    second = START_MS + 1000
    tag_a, tag_b = (row({"group_id": 1, "id": 1, "tag": "idc", "value": value})
                    for value in ("a", "b"))
    deploy = row({"group_id": 1, "id": 1, "operation": "deploy"})
    first_row = logical_row(1, zone_id="Zone-2", metadata={"k": "v"})
    second_row = logical_row(1, port=81, updated=second)

    def tag_entry(id: int, operation: str, before: list[str], after: list[str],
                  **fields: Any) -> dict[str, Any]:
        return entry(id, "group-tag", operation, before, after, region=SHA, zone=ZONE,
                     **fields)

    def logical_entry(id: int, operation: str, before: list[str], after: list[str], *,
                      zone: str | None, **fields: Any) -> dict[str, Any]:
        return {**entry(id, "service-instance", operation, before, after, region=SHA, zone=zone,
                        **fields), "instanceId": "logic-1"}

    assert logs(
        tag_entry(11, "delete", tag_b, [], created=second, operator="carol"),
        member_entry(10, "delete", member_row(1, 1, "x:1"), [], "x:1", zone=ZONE,
                     created=second),
        logical_entry(9, "delete", second_row, [], zone=None, created=second, operator="bob"),
        logical_entry(8, "update", first_row, second_row, zone=None, created=second),
        logical_entry(7, "create", [], first_row, zone="Zone-2"),
        {**entry(6, "group-operation", "deploy", deploy, [], region=SHA, zone=ZONE),
         "complete": True},
        entry(5, "group-operation", "deploy", [], deploy, region=SHA, zone=ZONE),
        member_entry(4, "create", [], member_row(1, 1, "x:1"), "x:1", zone=ZONE),
        tag_entry(3, "update", tag_a, tag_b, reason="move"),
        tag_entry(2, "create", [], tag_a),
        group_entry(1, "create", [], group_row(1, "blue")),
    ) == await api.call(AUDIT, {})


BAD_CANARY: list[tuple[dict[str, Any], str]] = [
    ({"appId": "billing", "canaryIps": ["a:1"], "operatorId": "alice"},
     "serviceId is null or empty."),
    (canary("billing", "a:1", service_id=" "), "serviceId is null or empty."),
    ({"canaryIps": ["a:1"], "operatorId": "alice", "serviceId": SERVICE},
     "appId is null or empty."),
    (canary("", "a:1"), "appId is null or empty."),
    ({"appId": "billing", "operatorId": "alice", "serviceId": SERVICE}, "canaryIps is null."),
    (canary("billing", "a:1", " "), "canaryIps[] is null or empty."),
    (canary("billing", "a:1", operatorId=None), "operatorId is null or empty."),
    (canary("billing", *[f"h{n}:1" for n in range(1001)]),
     "canaryIps has more than 1000 entries."),
]


async def test_bad_canary_requests_are_refused(managed: Api) -> None:
    """update-canary-ips without serviceId, appId, canaryIps or operatorId is bad-request and
    writes nothing."""
    api = managed
    before = await state(api)

    found = [await api.call(CANARY, body) for body, _ in BAD_CANARY]
    assert [failure(CANARY, "bad-request", message) for _, message in BAD_CANARY] == found
    assert before == await state(api)


# --- 6. bad input of the other writes ------------------------------------------------------------

LONG_ID = "x" * 257
BAD_WRITES: list[tuple[str, dict[str, Any], str]] = [
    (INSERT_TAGS, write("groupTagsList", []), "groupTagsList is null or empty."),
    (UPDATE_TAGS, {"operatorId": "alice"}, "groupTagsList is null or empty."),
    (INSERT_TAGS, write("groupTagsList", [{"groupId": 1}]), "tags is null or empty."),
    (INSERT_TAGS, write("groupTagsList", [tags(1)]), "tags is null or empty."),
    (INSERT_TAGS, write("groupTagsList", [{"tags": {"a": "b"}}]),
     "groupId must be a positive id, got None."),
    (UPDATE_TAGS, write("groupTagsList", [tags(0, a="b")]),
     "groupId must be a positive id, got 0."),
    (INSERT_TAGS, write("groupTagsList", [{"groupId": 1, "tags": {" ": "b"}}]),
     "tag is null or empty."),
    (INSERT_TAGS, write("groupTagsList", [{"groupId": 1, "tags": {LONG_ID: "b"}}]),
     "tag is longer than 256 characters."),
    (INSERT_TAGS, write("groupTagsList", [tags(1, a="v" * 1025)]),
     "value is longer than 1024 characters."),
    (INSERT_TAGS, write("groupTagsList", [{"groupId": 1, "tags": {"a": 1}}]),
     "request body: Expected `str`, got `int` - at `$.groupTagsList[0].tags[...]`"),
    (INSERT_TAGS, {"groupTagsList": [tags(1, a="b")]}, "operatorId is null or empty."),
    (DELETE_TAGS, {"groupId": 0, "operatorId": "alice"}, "groupId must be a positive id, got 0."),
    (DELETE_TAGS, {"groupId": 1}, "operatorId is null or empty."),
    (DELETE_TAGS, {"tag": LONG_ID, "operatorId": "alice"}, "tag is longer than 256 characters."),
    (INSERT_MEMBERS, write("groupInstances", []), "groupInstances is null or empty."),
    (INSERT_MEMBERS, write("groupInstances", [member(1, " ")]), "instanceId is null or empty."),
    (INSERT_MEMBERS, write("groupInstances", [member(-1, "a:1")]),
     "groupId must be a positive id, got -1."),
    (INSERT_MEMBERS, write("groupInstances", [member(1, LONG_ID)]),
     "instanceId is longer than 256 characters."),
    (INSERT_MEMBERS, write("groupInstances", [member(1, f"a:{n}") for n in range(1001)]),
     "groupInstances has more than 1000 entries."),
    (DELETE_MEMBERS, write("groupInstanceIds", []), "groupInstanceIds is null or empty."),
    (DELETE_MEMBERS, write("groupInstanceIds", [0]),
     "groupInstanceId must be a positive id, got 0."),
    (OPERATE_GROUPS, operate_groups(), "groupOperationsList is null or empty."),
    (OPERATE_GROUPS, operate_groups(group_ops(1)), "operations is null or empty."),
    (OPERATE_GROUPS, operate_groups(group_ops(1, " ")), "operation is null or empty."),
    (OPERATE_GROUPS, operate_groups(group_ops(1, "o" * 129)),
     "operation is longer than 128 characters."),
    (OPERATE_GROUPS, operate_groups(group_ops(0, "deploy")),
     "groupId must be a positive id, got 0."),
    (OPERATE_GROUP, {**group("blue"), "operatorId": "alice"}, "operation is null or empty."),
    (OPERATE_GROUP, {**group("blue", region="FRA"), "operation": "deploy",
                     "operatorId": "alice"}, "regionId 'FRA' is not this node's region 'SHA'."),
    (OPERATE_GROUP, {"name": "blue", "operation": "deploy", "operatorId": "alice",
                     "regionId": REGION, "zoneId": ZONE}, "serviceId is null or empty."),
    (OPERATE_GROUP, {**group("blue", status="paused"), "operation": "deploy",
                     "operatorId": "alice"}, "status must be active or inactive, got 'paused'."),
    (INSERT_LOGICAL, write("serviceInstances", []), "serviceInstances is null or empty."),
    (DELETE_LOGICAL, write("serviceInstanceIds", [0]),
     "serviceInstanceId must be a positive id, got 0."),
    (DELETE_LOGICAL, {"operatorId": "alice"}, "serviceInstanceIds is null or empty."),
    # what the database cannot hold, and ids no row can have
    (INSERT_TAGS, write("groupTagsList", [tags(1, idc="a\x00b")]),
     "value contains a NUL character"),
    (INSERT_LOGICAL, write("serviceInstances", [logical(metadata={"k": "a\x00"})]),
     "a metadata value contains a NUL character"),
    (INSERT_LOGICAL, write("serviceInstances", [logical(port=True)]),
     "request body: Expected `int`, got `bool` - at `$.serviceInstances[0].port`"),
    (INSERT_TAGS, write("groupTagsList", [tags(2**63, idc="a")]),
     "group 9223372036854775808 does not exist or is deleted"),
    (OPERATE_GROUPS, operate_groups(group_ops(2**63, "deploy")),
     "group 9223372036854775808 does not exist or is deleted"),
]


async def test_bad_writes_are_refused_and_change_nothing(tagged: Api) -> None:
    """A bad write of tags, members, group operations or logical instances is bad-request with
    the reason, and writes nothing."""
    api = tagged
    assert OK == await api.call(INSERT_MEMBERS, write("groupInstances", [member(1, "a:1")]))
    before = await state(api)

    found = [await api.call(path, body) for path, body, _ in BAD_WRITES]
    assert [failure(path, "bad-request", message) for path, _, message in BAD_WRITES] == found
    assert before == await state(api)


BAD_READS: list[tuple[str, dict[str, Any], str]] = [
    (GET_TAGS, {}, "groupId must be a positive id, got None."),
    (GET_TAGS, {"groupId": 0}, "groupId must be a positive id, got 0."),
    (GET_GROUP_OPS, {}, "groupId must be a positive id, got None."),
    (GET_MEMBERS, {"instanceId": LONG_ID}, "instanceId is longer than 256 characters."),
    (GET_MEMBERS, {"groupId": "1"},
     "request body: Expected `int | null`, got `str` - at `$.groupId`"),
    (GET_LOGICAL, {"serviceId": LONG_ID}, "serviceId is longer than 256 characters."),
    (ALL_TAGS, {"regionId": 5}, "request body: Expected `str | null`, got `int` - at `$.regionId`"),
]


async def test_bad_reads_are_refused(managed: Api) -> None:
    """A read with a missing or bad filter is bad-request, its payload null."""
    found = [await managed.call(path, body) for path, body, _ in BAD_READS]

    assert [failure(path, "bad-request", message) for path, _, message in BAD_READS] == found


# --- 7. tokens and a node not up ----------------------------------------------------------------


async def test_writes_without_the_write_role_are_refused(nodes: MakeManaged) -> None:
    """Each write here without a write-role token is no-permission and writes nothing."""
    node = await nodes(tokens=TOKENS)
    assert OK == await node.api.call(INSERT_GROUPS, write("groups", [group("blue")]))
    before = await state(node.api)
    refused = {path: failure(path, "no-permission",
                             "this call needs a bearer token with the write role")
               for path in WRITES}

    for authorization in (None, "Bearer wrong-token-0123456789", f"Bearer {READ_SECRET}"):
        caller = await node.caller(authorization)
        assert refused == {path: await caller.call(path, valid_body(path)) for path in WRITES}
    assert before == await state(node.api)


async def test_reads_without_a_read_token_are_refused(nodes: MakeManaged) -> None:
    """Each read here without a read-role token is no-permission, payload null (GET too)."""
    node = await nodes(tokens=TOKENS)
    refused = {path: failure(path, "no-permission",
                             "this call needs a bearer token with the read role")
               for path in READS}

    for authorization in (None, "Bearer wrong-token-0123456789"):
        caller = await node.caller(authorization)
        assert refused == {path: await caller.call(path, valid_body(path)) for path in READS}
        assert [refused[path] for path in ALL_READS] == [
            (await caller.get(path)).json() for path in ALL_READS]


async def test_a_read_token_reads(nodes: MakeManaged) -> None:
    """A read-role token reads tags, members, operations and logical instances."""
    node = await nodes(tokens=TOKENS)
    api = node.api
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("blue")]))
    for path in (INSERT_TAGS, INSERT_MEMBERS, OPERATE_GROUPS, INSERT_LOGICAL):
        assert OK == await api.call(path, valid_body(path))
    reader = await node.caller(f"Bearer {READ_SECRET}")

    assert {GET_TAGS: tags_answer(tags(1, idc="a")), ALL_TAGS: all_tags_answer(tags(1, idc="a")),
            GET_MEMBERS: members_answer(member_out(1, 1, "10.0.0.5:8080")),
            GET_GROUP_OPS: group_ops_answer(group_ops(1, "deploy")),
            ALL_GROUP_OPS: all_group_ops_answer(group_ops(1, "deploy")),
            GET_LOGICAL: logical_answer(logical_out(1))} == {
        path: await reader.call(path, valid_body(path)) for path in READS}


async def test_a_node_forced_down_refuses_writes_and_still_reads(managed: Api) -> None:
    """A node forced down refuses each write here service-unavailable, writes nothing, reads."""
    api = managed
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("blue")]))
    assert OK == await api.call(INSERT_TAGS, valid_body(INSERT_TAGS))
    before = await state(api)
    assert "down" == (await api.call(NODE_STATUS, {"status": "down"}))["nodeStatus"]["status"]

    assert {path: failure(path, "service-unavailable",
                          "Serivce is not in up state. Current status: down")
            for path in WRITES} == {path: await api.call(path, valid_body(path))
                                    for path in WRITES}
    assert before == await state(api)
    assert tags_answer(tags(1, idc="a")) == await api.call(GET_TAGS, {"groupId": 1})


async def test_a_node_without_a_database_answers_service_unavailable(api: Api) -> None:
    """Without a database every endpoint here is service-unavailable."""
    found = {path: await api.call(path, valid_body(path), headers={"authorization": ADMIN})
             for path in NULLS}

    assert {path: failure(path, "service-unavailable",
                          "management is not configured on this node (no database)")
            for path in NULLS} == found


async def test_per_kind_logs_list_only_their_kind_and_filter_by_group(managed: Api) -> None:
    """group-logs, route-rule-logs and the other per-kind logs list only their kind's entries;
    groupId and name filter them."""
    api = managed
    group_path = "/api/management/group"
    blue = {"serviceId": "svc", "regionId": REGION, "zoneId": "z1", "name": "blue",
            "status": "active"}
    await api.call(f"{group_path}/insert-groups.json",
                   {"groups": [blue, {**blue, "name": "green"}], "operatorId": "ops"})
    await api.call(f"{group_path}/insert-route-rules.json", {"routeRules": [
        {"serviceId": "svc", "name": "split", "status": "active"}], "operatorId": "ops"})
    await api.call(f"{group_path}/insert-group-tags.json", {"groupTagsList": [
        {"groupId": 2, "tags": {"idc": "a"}}], "operatorId": "ops"})

    def kinds(answer: Any) -> list[tuple[str, str]]:
        return [(e["kind"], e["operation"]) for e in answer["logs"]]

    log = "/api/management/log"
    assert ([("group", "create"), ("group", "create")], [("route-rule", "create")],
            [("group-tag", "create")], [("group-tag", "create")], [], [("group", "create")]) == (
        kinds(await api.call(f"{log}/group-logs.json", {})),
        kinds(await api.call(f"{log}/route-rule-logs.json", {})),
        kinds(await api.call(f"{log}/group-tag-logs.json", {"groupId": 2})),
        kinds(await api.call(f"{log}/group-tag-logs.json", {"name": "idc"})),
        kinds(await api.call(f"{log}/group-tag-logs.json", {"groupId": 1})),
        kinds(await api.call(f"{log}/group-logs.json", {"name": "green"})))
