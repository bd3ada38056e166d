"""Groups and route rules through the management API in process (§4.7): the writes and reads of
groups, route rules and their groups, create-route-rule, what discovery and push show of them,
the audit log, tokens, a node or database that cannot take writes, and bad input.

Nodes run on a fake clock with a SQLite management database (the `managed` fixture, or
`make_managed` here for other settings); no background loop runs, so a write is applied by the
node that took it (as the API does). Push sessions are driven through the node's PushServer with
an in-memory socket (test_management_api's `Managed`); every wait polls with a deadline.
"""

# STYLE.md has tests read `assert expected == actual`.

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from artemis.clock import FakeClock
from artemis.server.store import ManagementStore
from tests.server.conftest import MANAGEMENT_TOKEN, make_parts
from tests.server.harness import (
    LOOKUP,
    OK_BODY,
    REGION,
    SERVICE,
    SERVICE_PATH,
    SERVICES,
    SUCCESS,
    ZONE,
    Api,
    checksum,
    fail,
    instance,
)
from tests.server.test_management_api import (
    ADMIN,
    AUDIT,
    INJECTIONS,
    NODE_STATUS,
    OK,
    READ_SECRET,
    START_MS,
    TOKENS,
    WRITE_SECRET,
    Managed,
    closed_port,
    until,
)

G = "/api/management/group"
INSERT_GROUPS = f"{G}/insert-groups.json"
UPDATE_GROUPS = f"{G}/update-groups.json"
DELETE_GROUPS = f"{G}/delete-groups.json"
GET_GROUPS = f"{G}/get-groups.json"
ALL_GROUPS = f"{G}/get-all-groups.json"
INSERT_RULES = f"{G}/insert-route-rules.json"
UPDATE_RULES = f"{G}/update-route-rules.json"
DELETE_RULES = f"{G}/delete-route-rules.json"
GET_RULES = f"{G}/get-route-rules.json"
ALL_RULES = f"{G}/get-all-route-rules.json"
CREATE_RULE = f"{G}/create-route-rule.json"
INSERT_LINKS = f"{G}/insert-route-rule-groups.json"
UPDATE_LINKS = f"{G}/update-route-rule-groups.json"
RELEASE_LINKS = f"{G}/release-route-rule-groups.json"
DELETE_LINKS = f"{G}/delete-route-rule-groups.json"
GET_LINKS = f"{G}/get-route-rule-groups.json"
ALL_LINKS = f"{G}/get-all-route-rule-groups.json"

SHA = REGION.lower()
OTHER = "other.service.v1"
STRATEGY = "weighted-round-robin"

# The payload fields each endpoint answers null when it fails.
NULLS: dict[str, dict[str, Any]] = {
    INSERT_GROUPS: {}, UPDATE_GROUPS: {}, DELETE_GROUPS: {}, GET_GROUPS: {"groups": None},
    ALL_GROUPS: {"groups": None}, INSERT_RULES: {}, UPDATE_RULES: {}, DELETE_RULES: {},
    GET_RULES: {"routeRules": None}, ALL_RULES: {"routeRules": None}, CREATE_RULE: {},
    INSERT_LINKS: {}, UPDATE_LINKS: {}, RELEASE_LINKS: {}, DELETE_LINKS: {},
    GET_LINKS: {"routeRuleGroups": None}, ALL_LINKS: {"routeRuleGroups": None},
}
WRITES = [INSERT_GROUPS, UPDATE_GROUPS, DELETE_GROUPS, INSERT_RULES, UPDATE_RULES, DELETE_RULES,
          CREATE_RULE, INSERT_LINKS, UPDATE_LINKS, RELEASE_LINKS, DELETE_LINKS]
READS = [path for path in NULLS if path not in WRITES]
ALL_READS = [ALL_GROUPS, ALL_RULES, ALL_LINKS]


# --- requests and expected answers -----------------------------------------------------------


def group(name: str, zone: str = ZONE, service_id: str = SERVICE, *, region: str = REGION,
          status: str = "active", **fields: Any) -> dict[str, Any]:
    """A Group as a request names one."""
    return {"name": name, "regionId": region, "serviceId": service_id, "status": status,
            "zoneId": zone, **fields}


def group_out(group_id: int, name: str, zone: str = ZONE, service_id: str = SERVICE, *,
              status: str = "active", app: str | None = None,
              description: str | None = None) -> dict[str, Any]:
    """A Group as the API answers one (keys lower-case)."""
    return {"appId": app, "description": description, "groupId": group_id,
            "groupKey": f"{service_id}/{SHA}/{zone}/{name}", "metadata": None, "name": name,
            "regionId": SHA, "serviceId": service_id, "status": status, "zoneId": zone}


def rule(name: str, service_id: str = SERVICE, *, status: str = "active",
         **fields: Any) -> dict[str, Any]:
    return {"name": name, "serviceId": service_id, "status": status, **fields}


def rule_out(rule_id: int, name: str, service_id: str = SERVICE, *, status: str = "active",
             strategy: str = STRATEGY, description: str | None = None) -> dict[str, Any]:
    return {"description": description, "name": name, "routeRuleId": rule_id,
            "serviceId": service_id, "status": status, "strategy": strategy}


def link(rule_id: int, group_id: int, weight: int | None = None) -> dict[str, Any]:
    """A route rule group of a request (the staged weight, if any)."""
    body: dict[str, Any] = {"groupId": group_id, "routeRuleId": rule_id}
    if weight is not None:
        body["unreleasedWeight"] = weight
    return body


def link_out(link_id: int, rule_id: int, group_id: int, unreleased: int | None,
             weight: int | None = None) -> dict[str, Any]:
    return {"groupId": group_id, "routeRuleGroupId": link_id, "routeRuleId": rule_id,
            "unreleasedWeight": unreleased, "weight": weight}


def groups_answer(*groups: dict[str, Any]) -> dict[str, Any]:
    return {"groups": list(groups), "responseStatus": SUCCESS}


def rules_answer(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"responseStatus": SUCCESS, "routeRules": list(rules)}


def links_answer(*links: dict[str, Any]) -> dict[str, Any]:
    return {"responseStatus": SUCCESS, "routeRuleGroups": list(links)}


def write(key: str, items: list[Any], operator: str = "alice", **extra: Any) -> dict[str, Any]:
    """A write body: `items` under `key`, with the operator."""
    return {key: items, "operatorId": operator, **extra}


def create(rule_body: dict[str, Any], *groups: dict[str, Any],
           operator: str = "alice") -> dict[str, Any]:
    """A create-route-rule.json body; each group carries its `weight`."""
    return {"groups": list(groups), "operatorId": operator, "routeRule": rule_body}


def shown_group(key: str, weight: int) -> dict[str, Any]:
    """A group of a route rule as discovery shows it."""
    return {"groupKey": key, "instanceIds": None, "instances": None, "metadata": None,
            "weight": weight}


def shown_rule(name: str, *groups: dict[str, Any], strategy: str = STRATEGY) -> dict[str, Any]:
    return {"groups": list(groups), "routeId": name, "strategy": strategy}


def key(name: str, zone: str = ZONE, service_id: str = SERVICE) -> str:
    return f"{service_id}/{SHA}/{zone}/{name}"


def ruled(service_id: str, rules: list[dict[str, Any]],
          *instances: dict[str, Any]) -> dict[str, Any]:
    """A Service as discovery answers it, with its route rules."""
    return {"instances": list(instances), "logicInstances": [], "metadata": None,
            "routeRules": rules, "serviceId": service_id}


def config(service_id: str = SERVICE) -> dict[str, Any]:
    return {"discoveryData": None, "regionId": None, "serviceId": service_id, "zoneId": None}


async def service_json(api: Api, service_id: str = SERVICE) -> Any:
    return await api.call(SERVICE_PATH, {"discoveryConfig": config(service_id),
                                         "regionId": REGION})


async def discovery(api: Api, service_id: str = SERVICE) -> tuple[int, Any, Any, Any]:
    """A new snapshot's version, and service.json, lookup.json and services.json."""
    version = await api.snapshot()
    return (version, await service_json(api, service_id),
            await api.call(LOOKUP, {"discoveryConfigs": [config(service_id)],
                                    "regionId": REGION, "zoneId": ZONE}),
            await api.call(SERVICES))


async def assert_discovery(api: Api, rules: list[dict[str, Any]],
                           *instances: dict[str, Any]) -> None:
    """service, lookup and services (SERVICE alone registered, with `instances`) show `rules`."""
    version, *answers = await discovery(api)
    served = ruled(SERVICE, rules, *instances)
    assert [{"checksum": checksum(*instances), "responseStatus": SUCCESS, "service": served},
            {"responseStatus": SUCCESS, "services": [served]},
            {"checksum": checksum(*instances), "responseStatus": SUCCESS, "services": [served],
             "version": version}] == answers


def row(values: dict[str, Any]) -> list[str]:
    """An audit entry's before/after of a group, rule or link: the row as JSON."""
    return [json.dumps(values, ensure_ascii=False, sort_keys=True)]


def group_row(group_id: int, name: str, zone: str = ZONE, service_id: str = SERVICE, *,
              app: str | None = None, description: str | None = None, status: str = "active",
              deleted: bool = False, created: int = START_MS,
              updated: int | None = None) -> list[str]:
    return row({"app_id": app, "created_ms": created, "deleted": deleted,
                "description": description, "id": group_id, "name": name, "region_id": SHA,
                "service_id": service_id, "status": status,
                "updated_ms": created if updated is None else updated, "zone_id": zone})


def rule_row(rule_id: int, name: str, service_id: str = SERVICE, *, status: str = "active",
             strategy: str = STRATEGY, description: str | None = None, deleted: bool = False,
             created: int = START_MS, updated: int | None = None) -> list[str]:
    return row({"created_ms": created, "deleted": deleted, "description": description,
                "id": rule_id, "name": name, "service_id": service_id, "status": status,
                "strategy": strategy, "updated_ms": created if updated is None else updated})


def link_row(link_id: int, rule_id: int, group_id: int, unreleased: int | None,
             weight: int | None = None) -> list[str]:
    return row({"group_id": group_id, "id": link_id, "route_rule_id": rule_id,
                "unreleased_weight": unreleased, "weight": weight})


def entry(id: int, kind: str, operation: str, before: list[str], after: list[str], *,
          created: int = START_MS, actor: str = "admin", operator: str = "alice",
          service_id: str = SERVICE, region: str = "", zone: str | None = None,
          reason: str | None = None, extensions: str = "{}") -> dict[str, Any]:
    """One audit log entry of a group, route rule or route rule group."""
    return {"actor": actor, "after": after, "before": before,
            "complete": operation == "delete", "createTime": created, "extensions": extensions,
            "id": id, "instanceId": None, "kind": kind, "operation": operation,
            "operatorId": operator, "reason": reason, "regionId": region, "serverId": None,
            "serviceId": service_id, "zoneId": zone}


def group_entry(id: int, operation: str, before: list[str], after: list[str],
                zone: str = ZONE, **fields: Any) -> dict[str, Any]:
    return entry(id, "group", operation, before, after, region=SHA, zone=zone, **fields)


def logs(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"logs": list(entries), "responseStatus": SUCCESS, "total": len(entries)}


def failure(path: str, code: str, message: str) -> dict[str, Any]:
    """The failed answer of an endpoint: its payload null, and the status."""
    return {**NULLS[path], "responseStatus": fail(code, message)}


def valid_body(path: str) -> dict[str, Any]:
    """A valid body for each endpoint (writes name group 1 and rule 1 where they need ids)."""
    return {
        INSERT_GROUPS: write("groups", [group("blue")]),
        UPDATE_GROUPS: write("groups", [group("blue")]),
        DELETE_GROUPS: write("groupIds", [1]),
        INSERT_RULES: write("routeRules", [rule("split")]),
        UPDATE_RULES: write("routeRules", [rule("split")]),
        DELETE_RULES: write("routeRuleIds", [1]),
        CREATE_RULE: create(rule("split"), group("blue", weight=10)),
        INSERT_LINKS: write("routeRuleGroups", [link(1, 1, 10)]),
        UPDATE_LINKS: write("routeRuleGroups", [link(1, 1, 10)]),
        RELEASE_LINKS: write("routeRuleGroups", [link(1, 1)]),
        DELETE_LINKS: write("routeRuleGroupIds", [1]),
    }.get(path, {})


async def audit_total(api: Api) -> int:
    answer = await api.call(AUDIT, {}, headers={"authorization": ADMIN})
    return int(answer["total"])


async def state(api: Api) -> tuple[Any, ...]:
    """Every get-all-* answer and the audit log's size: what a refused write must not change."""
    headers = {"authorization": ADMIN}
    return (*[await api.call(path, {}, headers=headers) for path in ALL_READS],
            await audit_total(api))


async def split(api: Api, blue: int = 90, green: int = 10) -> None:
    """Create rule `split` (1) of SERVICE with groups blue (1, zone-1) and green (2, zone-2)."""
    assert OK == await api.call(CREATE_RULE, create(
        rule("split"), group("blue", weight=blue), group("green", "zone-2", weight=green)))


async def release(api: Api, *pairs: tuple[int, int]) -> None:
    assert OK == await api.call(RELEASE_LINKS, write(
        "routeRuleGroups", [link(r, g) for r, g in pairs]))


# --- nodes with other settings ------------------------------------------------------------------

MakeManaged = Callable[..., Awaitable[Managed]]


@pytest.fixture
async def make_managed(clock: FakeClock, tmp_path: Path) -> AsyncIterator[MakeManaged]:
    """Build an up node with a SQLite management database, its data loaded, and `settings`
    (admin token MANAGEMENT_TOKEN unless given); its Api's client sends `authorization`."""
    async with contextlib.AsyncExitStack() as stack:
        built: list[Managed] = []

        async def make(authorization: str | None = ADMIN, **settings: Any) -> Managed:
            settings = {"database": f"sqlite:///{tmp_path}/g{len(built)}.db",
                        "admin_token": MANAGEMENT_TOKEN, **settings}
            parts = make_parts(clock, **settings)
            management = parts.management
            assert management is not None
            await management.store.open()
            stack.push_async_callback(management.close)
            await management.reload()
            parts.node.release("management")
            managed = Managed(parts, clock, stack)
            managed.api = await managed.caller(authorization)
            built.append(managed)
            return managed

        yield make
        for managed in built:  # the clients go away; every session's handler must end
            for ws in managed.sockets:
                ws.incoming.put_nowait(None)
            results = await asyncio.wait_for(
                asyncio.gather(*managed.tasks, return_exceptions=True), 3.0)
            assert [None] * len(managed.tasks) == results


# --- 1. groups ----------------------------------------------------------------------------------


async def test_insert_groups_adds_them(managed: Api) -> None:
    """insert-groups adds each group; get-groups and get-all-groups list them by id."""
    api = managed
    assert OK == await api.call(INSERT_GROUPS, write("groups", [
        group("blue", appId="billing", description="the blue one"),
        group("green", "zone-2", status="inactive")]))

    expected = groups_answer(group_out(1, "blue", app="billing", description="the blue one"),
                             group_out(2, "green", "zone-2", status="inactive"))
    assert [expected, expected] == [await api.call(GET_GROUPS, {}),
                                    await api.call(ALL_GROUPS, {})]


async def test_group_keys_are_lower_case_and_joined_in_the_group_key(managed: Api) -> None:
    """Keys are lower-cased (appId, description kept); groupKey is service/region/zone/name."""
    api = managed
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group(
        " Blue ", "Zone-1", "Demo.Service.V1", region="sha", status="ACTIVE", appId="Billing",
        description="Mixed Case")]))
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("BLUE")]))

    assert groups_answer(group_out(1, "blue", app="Billing", description="Mixed Case")) == (
        await api.call(ALL_GROUPS))
    assert "demo.service.v1/sha/zone-1/blue" == (await api.call(GET_GROUPS, {}))["groups"][0][
        "groupKey"]


async def test_a_second_insert_of_a_group_changes_nothing(managed: Api) -> None:
    """A second insert of the same key succeeds and leaves the group as it was."""
    api = managed
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("blue", appId="a")]))
    api.clock.advance(1)
    assert OK == await api.call(INSERT_GROUPS, write("groups", [
        group("blue", status="inactive", appId="b", description="new")]))

    assert groups_answer(group_out(1, "blue", app="a")) == await api.call(GET_GROUPS, {})


async def test_insert_revives_a_deleted_group_unchanged(managed: Api) -> None:
    """insert-groups of a deleted group's key revives it, same id and fields, not the new ones."""
    api = managed
    assert OK == await api.call(INSERT_GROUPS, write("groups", [
        group("blue", appId="a", description="old")]))
    assert OK == await api.call(DELETE_GROUPS, write("groupIds", [1]))
    assert groups_answer() == await api.call(ALL_GROUPS)
    assert OK == await api.call(INSERT_GROUPS, write("groups", [
        group("blue", status="inactive", appId="b", description="new")]))

    expected = groups_answer(group_out(1, "blue", app="a", description="old"))
    assert [expected, expected] == [await api.call(GET_GROUPS, {}),
                                    await api.call(ALL_GROUPS)]


async def test_update_groups_changes_app_description_and_status(managed: Api) -> None:
    """update-groups takes appId, description and status, revives deleted and inserts missing."""
    api = managed
    assert OK == await api.call(INSERT_GROUPS, write("groups", [
        group("blue", appId="a", description="old"), group("green")]))
    assert OK == await api.call(DELETE_GROUPS, write("groupIds", [2]))
    assert OK == await api.call(UPDATE_GROUPS, write("groups", [
        group("blue", status="inactive", appId="b", description="new"),
        group("green", appId="g"), group("red", "zone-3")]))

    assert groups_answer(group_out(1, "blue", status="inactive", app="b", description="new"),
                         group_out(2, "green", app="g"), group_out(3, "red", "zone-3")) == (
        await api.call(GET_GROUPS, {}))


async def test_update_groups_without_app_or_description_clears_them(managed: Api) -> None:
    """update-groups writes every field it names: appId or description left out is null."""
    api = managed
    assert OK == await api.call(INSERT_GROUPS, write("groups", [
        group("blue", appId="a", description="old")]))
    assert OK == await api.call(UPDATE_GROUPS, write("groups", [group("blue")]))

    assert groups_answer(group_out(1, "blue")) == await api.call(ALL_GROUPS)


async def test_delete_groups_soft_deletes_them(managed: Api) -> None:
    """delete-groups takes groups out of get-groups and get-all-groups; unknown ids are ignored."""
    api = managed
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("blue"), group("green")]))
    assert OK == await api.call(DELETE_GROUPS, write("groupIds", [1, 1, 99]))

    assert [groups_answer(group_out(2, "green"))] * 2 + [groups_answer()] == [
        await api.call(GET_GROUPS, {}), await api.call(ALL_GROUPS),
        await api.call(GET_GROUPS, {"groupId": 1})]


@pytest.fixture
async def grouped(managed: Api) -> Api:
    """Four groups: 1 blue (zone-1, app billing), 2 green (zone-2, inactive), 3 blue of OTHER
    (zone-1, app billing), 4 red (zone-2)."""
    assert OK == await managed.call(INSERT_GROUPS, write("groups", [
        group("blue", appId="billing"), group("green", "zone-2", status="inactive"),
        group("blue", service_id=OTHER, appId="billing"), group("red", "zone-2")]))
    return managed


GROUPS = {1: group_out(1, "blue", app="billing"),
          2: group_out(2, "green", "zone-2", status="inactive"),
          3: group_out(3, "blue", service_id=OTHER, app="billing"),
          4: group_out(4, "red", "zone-2")}
GROUP_FILTERS: list[tuple[dict[str, Any], list[int]]] = [
    ({}, [1, 2, 3, 4]),
    ({"groupId": 3}, [3]),
    ({"groupId": 99}, []),
    ({"serviceId": "Demo.Service.V1"}, [1, 2, 4]),
    ({"regionId": "SHA"}, [1, 2, 3, 4]),
    ({"zoneId": "ZONE-2"}, [2, 4]),
    ({"name": "Blue"}, [1, 3]),
    ({"appId": "billing"}, [1, 3]),
    ({"status": "Inactive"}, [2]),
    ({"status": "active"}, [1, 3, 4]),
    ({"serviceId": OTHER, "name": "blue"}, [3]),
    ({"serviceId": " ", "name": None}, [1, 2, 3, 4]),
]


async def test_get_groups_filters(grouped: Api) -> None:
    """get-groups filters on each field alone or ANDed, keys without case; blank ones ignored."""
    expected = [groups_answer(*(GROUPS[i] for i in ids)) for _, ids in GROUP_FILTERS]
    assert expected == [await grouped.call(GET_GROUPS, body) for body, _ in GROUP_FILTERS]


async def test_get_groups_finds_a_mixed_case_app_id(managed: Api) -> None:
    """get-groups by appId finds a group whose appId has capitals (appId is stored as given)."""
    assert OK == await managed.call(INSERT_GROUPS, write("groups", [
        group("blue", appId="Billing-App")]))

    assert groups_answer(group_out(1, "blue", app="Billing-App")) == await managed.call(
        GET_GROUPS, {"appId": "Billing-App"})


async def test_get_all_groups_of_another_region_lists_nothing(grouped: Api) -> None:
    """get-all-groups (GET or POST) of another region lists nothing; of this one, every group."""
    api = grouped
    everything = groups_answer(*GROUPS.values())
    answers = [(await api.get(ALL_GROUPS, {"regionId": "FRA"})).json(),
               await api.call(ALL_GROUPS, {"regionId": "FRA"}),
               (await api.get(ALL_GROUPS, {"regionId": "Sha"})).json(),
               (await api.get(ALL_GROUPS)).json(),
               await api.call(ALL_GROUPS, {"regionId": "sha"})]
    assert [groups_answer()] * 2 + [everything] * 3 == answers


# --- 2. route rules -----------------------------------------------------------------------------


async def test_insert_route_rules_adds_them_with_the_default_strategy(managed: Api) -> None:
    """insert-route-rules adds rules, keys lower-case, strategy weighted-round-robin by default."""
    api = managed
    assert OK == await api.call(INSERT_RULES, write("routeRules", [
        rule("Split", "Demo.Service.V1", description="Canary"),
        rule("other", status="INACTIVE", strategy="custom")]))

    expected = rules_answer(rule_out(1, "split", description="Canary"),
                            rule_out(2, "other", status="inactive", strategy="custom"))
    assert [expected, expected] == [await api.call(GET_RULES, {}), await api.call(ALL_RULES)]


async def test_a_second_insert_of_a_rule_changes_nothing_and_revives_a_deleted_one(
        managed: Api) -> None:
    """A second insert of a rule changes nothing; of a deleted rule it revives it unchanged."""
    api = managed
    assert OK == await api.call(INSERT_RULES, write("routeRules", [
        rule("split", description="old"), rule("gone", strategy="s")]))
    assert OK == await api.call(DELETE_RULES, write("routeRuleIds", [2]))
    assert rules_answer(rule_out(1, "split", description="old")) == await api.call(ALL_RULES)
    again = [rule(name, status="inactive", description="new", strategy="x")
             for name in ("SPLIT", "gone")]
    assert OK == await api.call(INSERT_RULES, write("routeRules", again))

    assert rules_answer(rule_out(1, "split", description="old"),
                        rule_out(2, "gone", strategy="s")) == await api.call(GET_RULES, {})


async def test_update_route_rules_changes_description_status_and_strategy(
        managed: Api) -> None:
    """update-route-rules takes description, status, strategy (default if left out); revives."""
    api = managed
    assert OK == await api.call(INSERT_RULES, write("routeRules", [
        rule("split", description="old", strategy="custom"), rule("gone")]))
    assert OK == await api.call(DELETE_RULES, write("routeRuleIds", [2]))
    assert OK == await api.call(UPDATE_RULES, write("routeRules", [
        rule("split", status="inactive", description="new"),
        rule("gone", strategy="other")]))

    assert rules_answer(rule_out(1, "split", status="inactive", description="new"),
                        rule_out(2, "gone", strategy="other")) == await api.call(ALL_RULES)


async def test_delete_route_rules_soft_deletes_them(managed: Api) -> None:
    """delete-route-rules takes rules out of both reads; unknown ids are ignored."""
    api = managed
    assert OK == await api.call(INSERT_RULES, write("routeRules", [rule("a"), rule("b")]))
    assert OK == await api.call(DELETE_RULES, write("routeRuleIds", [2, 7]))

    assert [rules_answer(rule_out(1, "a"))] * 2 + [rules_answer()] == [
        await api.call(GET_RULES, {}), await api.call(ALL_RULES),
        await api.call(GET_RULES, {"routeRuleId": 2})]


RULES = {1: rule_out(1, "split"), 2: rule_out(2, "off", status="inactive"),
         3: rule_out(3, "split", OTHER)}
RULE_FILTERS: list[tuple[dict[str, Any], list[int]]] = [
    ({}, [1, 2, 3]),
    ({"routeRuleId": 2}, [2]),
    ({"routeRuleId": -1}, []),
    ({"serviceId": "OTHER.service.v1"}, [3]),
    ({"name": "SPLIT"}, [1, 3]),
    ({"status": "inactive"}, [2]),
    ({"serviceId": SERVICE, "status": "active"}, [1]),
    ({"name": "", "serviceId": None}, [1, 2, 3]),
]


async def test_get_route_rules_filters(managed: Api) -> None:
    """get-route-rules filters on each field alone and on several ANDed; blank ones ignored."""
    api = managed
    assert OK == await api.call(INSERT_RULES, write("routeRules", [
        rule("split"), rule("off", status="inactive"), rule("split", OTHER)]))

    expected = [rules_answer(*(RULES[i] for i in ids)) for _, ids in RULE_FILTERS]
    assert expected == [await api.call(GET_RULES, body) for body, _ in RULE_FILTERS]


async def test_get_all_route_rules_of_another_region_lists_nothing(managed: Api) -> None:
    """get-all-route-rules of another region (GET or POST) lists nothing."""
    api = managed
    assert OK == await api.call(INSERT_RULES, write("routeRules", [rule("split")]))

    assert [rules_answer(), rules_answer(), rules_answer(rule_out(1, "split"))] == [
        (await api.get(ALL_RULES, {"regionId": "FRA"})).json(),
        await api.call(ALL_RULES, {"regionId": "fra"}),
        (await api.get(ALL_RULES, {"regionId": REGION})).json()]


# --- 3. route rule groups -----------------------------------------------------------------------


@pytest.fixture
async def linked(managed: Api) -> Api:
    """Rule 1 `split` of SERVICE, groups 1 blue and 2 green, no links yet."""
    assert OK == await managed.call(INSERT_GROUPS, write("groups", [
        group("blue"), group("green", "zone-2")]))
    assert OK == await managed.call(INSERT_RULES, write("routeRules", [rule("split")]))
    return managed


async def test_insert_route_rule_groups_stages_the_weight_only(linked: Api) -> None:
    """insert-route-rule-groups stages unreleasedWeight (or `weight`); the weight stays null."""
    api = linked
    assert OK == await api.call(INSERT_LINKS, write("routeRuleGroups", [
        link(1, 1, 30), {"groupId": 2, "routeRuleId": 1, "weight": 70}]))

    expected = links_answer(link_out(1, 1, 1, 30), link_out(2, 1, 2, 70))
    assert [expected, expected] == [await api.call(GET_LINKS, {}), await api.call(ALL_LINKS)]


async def test_update_route_rule_groups_stages_a_new_weight(linked: Api) -> None:
    """update (or insert) of an existing link stages a new weight and keeps the released one."""
    api = linked
    assert OK == await api.call(INSERT_LINKS, write("routeRuleGroups", [link(1, 1, 30)]))
    await release(api, (1, 1))
    assert OK == await api.call(UPDATE_LINKS, write("routeRuleGroups", [link(1, 1, 60)]))
    assert links_answer(link_out(1, 1, 1, 60, 30)) == await api.call(ALL_LINKS)
    assert OK == await api.call(INSERT_LINKS, write("routeRuleGroups", [link(1, 1, 0)]))

    assert links_answer(link_out(1, 1, 1, 0, 30)) == await api.call(GET_LINKS, {})


async def test_release_copies_the_staged_weight_to_the_weight(linked: Api) -> None:
    """release-route-rule-groups makes each named link's staged weight its weight, no other."""
    api = linked
    assert OK == await api.call(INSERT_LINKS, write("routeRuleGroups", [
        link(1, 1, 30), link(1, 2, 70)]))
    await release(api, (1, 2))

    assert links_answer(link_out(1, 1, 1, 30), link_out(2, 1, 2, 70, 70)) == (
        await api.call(ALL_LINKS))


async def test_delete_route_rule_groups_removes_them(linked: Api) -> None:
    """delete-route-rule-groups removes links for good; unknown ids are ignored."""
    api = linked
    assert OK == await api.call(INSERT_LINKS, write("routeRuleGroups", [
        link(1, 1, 30), link(1, 2, 70)]))
    assert OK == await api.call(DELETE_LINKS, write("routeRuleGroupIds", [1, 5]))

    assert [links_answer(link_out(2, 1, 2, 70))] * 2 + [links_answer()] == [
        await api.call(GET_LINKS, {}), await api.call(ALL_LINKS),
        await api.call(GET_LINKS, {"routeRuleGroupId": 1})]


async def test_get_route_rule_groups_filters_and_get_all(linked: Api) -> None:
    """get-route-rule-groups filters on each id alone or ANDed; get-all lists all, or none."""
    api = linked
    assert OK == await api.call(INSERT_RULES, write("routeRules", [rule("second")]))
    assert OK == await api.call(INSERT_LINKS, write("routeRuleGroups", [
        link(1, 1, 1), link(1, 2, 2), link(2, 1, 3)]))
    links = {1: link_out(1, 1, 1, 1), 2: link_out(2, 1, 2, 2), 3: link_out(3, 2, 1, 3)}
    filters: list[tuple[dict[str, Any], list[int]]] = [
        ({}, [1, 2, 3]), ({"routeRuleGroupId": 2}, [2]), ({"routeRuleId": 1}, [1, 2]),
        ({"groupId": 1}, [1, 3]), ({"routeRuleId": 2, "groupId": 1}, [3]),
        ({"routeRuleId": 2, "groupId": 2}, [])]

    assert [links_answer(*(links[i] for i in ids)) for _, ids in filters] == [
        await api.call(GET_LINKS, body) for body, _ in filters]
    assert [links_answer(*links.values()), links_answer(), links_answer()] == [
        (await api.get(ALL_LINKS)).json(), (await api.get(ALL_LINKS, {"regionId": "FRA"})).json(),
        await api.call(ALL_LINKS, {"regionId": "FRA"})]


async def test_links_of_deleted_groups_and_rules_leave_get_all_but_not_get(linked: Api) -> None:
    """Links of deleted groups or rules stay in get-route-rule-groups but leave get-all-*."""
    api = linked
    assert OK == await api.call(INSERT_RULES, write("routeRules", [rule("second")]))
    assert OK == await api.call(INSERT_LINKS, write("routeRuleGroups", [
        link(1, 1, 1), link(1, 2, 2), link(2, 1, 3)]))
    assert OK == await api.call(DELETE_GROUPS, write("groupIds", [2]))
    assert OK == await api.call(DELETE_RULES, write("routeRuleIds", [2]))

    assert (links_answer(link_out(1, 1, 1, 1)),
            links_answer(link_out(1, 1, 1, 1), link_out(2, 1, 2, 2), link_out(3, 2, 1, 3))) == (
        await api.call(ALL_LINKS), await api.call(GET_LINKS, {}))


# --- 4. discovery -------------------------------------------------------------------------------


async def test_discovery_carries_the_route_rules_exactly(managed: Api) -> None:
    """Discovery lists active rules by name, active groups by key, released weight (5 if none)."""
    api = managed
    assert OK_BODY == await api.register(instance())
    assert OK == await api.call(CREATE_RULE, create(
        rule("zeta"), group("b-group", "zone-2", weight=20), group("a-group", weight=30),
        group("off", status="inactive", weight=50)))
    assert OK == await api.call(CREATE_RULE, create(
        rule("alpha", strategy="custom"), group("a-group", weight=40)))
    assert OK == await api.call(CREATE_RULE, create(
        rule("lonely"), group("off", status="inactive", weight=1)))
    assert OK == await api.call(CREATE_RULE, create(
        rule("sleeping", status="inactive"), group("a-group", weight=1)))
    assert OK == await api.call(CREATE_RULE, create(
        rule("theirs", OTHER), group("a-group", service_id=OTHER, weight=1)))
    assert rules_answer(
        rule_out(1, "zeta"), rule_out(2, "alpha", strategy="custom"), rule_out(3, "lonely"),
        rule_out(4, "sleeping", status="inactive"), rule_out(5, "theirs", OTHER)) == (
        await api.call(ALL_RULES))

    await assert_discovery(api, [
        shown_rule("alpha", shown_group(key("a-group"), 5), strategy="custom"),
        shown_rule("zeta", shown_group(key("a-group"), 5),
                   shown_group(key("b-group", "zone-2"), 5))], instance())

    await release(api, (1, 1), (1, 2), (1, 3), (2, 2), (3, 3), (4, 2))
    await assert_discovery(api, [
        shown_rule("alpha", shown_group(key("a-group"), 40), strategy="custom"),
        shown_rule("zeta", shown_group(key("a-group"), 30),
                   shown_group(key("b-group", "zone-2"), 20))], instance())


async def test_released_weights_of_zero_and_the_maximum_are_shown_as_they_are(
        linked: Api) -> None:
    """Released weights 0 and 10000 are shown as they are (only none is 5)."""
    api = linked
    assert OK_BODY == await api.register(instance())
    assert OK == await api.call(INSERT_LINKS, write("routeRuleGroups", [
        link(1, 1, 0), link(1, 2, 10_000)]))
    await release(api, (1, 1), (1, 2))

    await assert_discovery(api, [shown_rule("split", shown_group(key("blue"), 0),
                                            shown_group(key("green", "zone-2"), 10_000))],
                           instance())


async def test_a_service_without_instances_shows_no_rules(managed: Api) -> None:
    """A service with rules but no instance shows no rules and no error; rules follow instances."""
    api = managed
    await split(api)
    nothing = ruled(SERVICE, [])
    absent = [{"checksum": checksum(), "responseStatus": SUCCESS, "service": nothing},
              {"responseStatus": SUCCESS, "services": [nothing]}]
    version, *answers = await discovery(api)
    assert [*absent, {"checksum": checksum(), "responseStatus": SUCCESS, "services": [],
                      "version": version}] == answers

    assert OK_BODY == await api.register(instance())
    await assert_discovery(api, [shown_rule("split", shown_group(key("blue"), 5),
                                            shown_group(key("green", "zone-2"), 5))],
                           instance())

    assert OK_BODY == await api.unregister(instance())
    version, *answers = await discovery(api)
    assert [*absent, {"checksum": checksum(), "responseStatus": SUCCESS, "services": [],
                      "version": version}] == answers


async def test_an_inactive_group_or_rule_leaves_the_answer(managed: Api) -> None:
    """An inactive group leaves its rules; an inactive rule, or one with no active group, leaves."""
    api = managed
    assert OK_BODY == await api.register(instance())
    await split(api)
    await release(api, (1, 1), (1, 2))

    assert OK == await api.call(UPDATE_GROUPS, write("groups", [
        group("green", "zone-2", status="inactive")]))
    only_blue = [shown_rule("split", shown_group(key("blue"), 90))]
    await assert_discovery(api, only_blue, instance())

    assert OK == await api.call(UPDATE_GROUPS, write("groups", [
        group("blue", status="inactive")]))
    await assert_discovery(api, [], instance())

    assert OK == await api.call(UPDATE_GROUPS, write("groups", [group("blue")]))
    assert OK == await api.call(UPDATE_RULES, write("routeRules", [
        rule("split", status="inactive")]))
    await assert_discovery(api, [], instance())

    assert OK == await api.call(UPDATE_RULES, write("routeRules", [rule("split")]))
    await assert_discovery(api, only_blue, instance())


async def test_deleting_a_group_removes_it_from_its_rules(managed: Api) -> None:
    """A deleted group, link or rule leaves the answer; a revived group is back with its weight."""
    api = managed
    assert OK_BODY == await api.register(instance())
    await split(api)
    await release(api, (1, 1), (1, 2))

    assert OK == await api.call(DELETE_GROUPS, write("groupIds", [1]))
    await assert_discovery(api, [shown_rule("split", shown_group(key("green", "zone-2"), 10))],
                           instance())

    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("blue")]))
    await assert_discovery(api, [shown_rule("split", shown_group(key("blue"), 90),
                                            shown_group(key("green", "zone-2"), 10))],
                           instance())

    assert OK == await api.call(DELETE_LINKS, write("routeRuleGroupIds", [2]))
    await assert_discovery(api, [shown_rule("split", shown_group(key("blue"), 90))],
                           instance())

    assert OK == await api.call(DELETE_RULES, write("routeRuleIds", [1]))
    await assert_discovery(api, [], instance())


async def test_rules_show_under_the_service_id_as_registered_and_asked(managed: Api) -> None:
    """Rules show for the service however its instances or the request spell its id."""
    api = managed
    upper = instance(serviceId="Demo.Service.V1")
    assert OK_BODY == await api.register(upper)
    await split(api)

    rules = [shown_rule("split", shown_group(key("blue"), 5),
                        shown_group(key("green", "zone-2"), 5))]
    assert [{"checksum": checksum(upper), "responseStatus": SUCCESS,
             "service": ruled(name, rules, upper)} for name in (SERVICE, "DEMO.SERVICE.V1")] == [
        await service_json(api, name) for name in (SERVICE, "DEMO.SERVICE.V1")]


# --- 5. create-route-rule -----------------------------------------------------------------------


async def test_create_route_rule_writes_rule_groups_and_staged_weights(managed: Api) -> None:
    """create-route-rule writes rule, groups and staged weights: 5 until release, then given."""
    api = managed
    assert OK_BODY == await api.register(instance())
    assert OK == await api.call(CREATE_RULE, create(
        rule("Split", "Demo.Service.V1", description="Blue/green"),
        group("Blue", appId="app", weight=90),
        group("green", "Zone-2", "DEMO.service.v1", description="g", weight=10)))

    assert (groups_answer(group_out(1, "blue", app="app"),
                          group_out(2, "green", "zone-2", description="g")),
            rules_answer(rule_out(1, "split", description="Blue/green")),
            links_answer(link_out(1, 1, 1, 90), link_out(2, 1, 2, 10))) == (
        await api.call(ALL_GROUPS), await api.call(ALL_RULES), await api.call(ALL_LINKS))
    await assert_discovery(api, [shown_rule("split", shown_group(key("blue"), 5),
                                            shown_group(key("green", "zone-2"), 5))],
                           instance())

    await release(api, (1, 1), (1, 2))
    await assert_discovery(api, [shown_rule("split", shown_group(key("blue"), 90),
                                            shown_group(key("green", "zone-2"), 10))],
                           instance())


async def test_create_route_rule_again_stages_new_weights_on_the_same_rows(
        managed: Api) -> None:
    """create-route-rule again keeps the rows and stages the new weights on the same links."""
    api = managed
    await split(api)
    await release(api, (1, 1), (1, 2))
    await split(api, 50, 50)

    assert (groups_answer(group_out(1, "blue"), group_out(2, "green", "zone-2")),
            rules_answer(rule_out(1, "split")),
            links_answer(link_out(1, 1, 1, 50, 90), link_out(2, 1, 2, 50, 10))) == (
        await api.call(ALL_GROUPS), await api.call(ALL_RULES), await api.call(ALL_LINKS))


async def test_create_route_rule_with_a_group_of_another_service_writes_nothing(
        managed: Api) -> None:
    """create-route-rule with a group of another service is bad-request and writes nothing."""
    api = managed
    before = await state(api)

    answer = await api.call(CREATE_RULE, create(
        rule("split"), group("blue", weight=90), group("red", service_id=OTHER, weight=10)))
    assert failure(CREATE_RULE, "bad-request", "group 'red' is of service "
                   "'other.service.v1', not of the route rule's 'demo.service.v1'.") == answer
    assert before == await state(api)
    assert (groups_answer(), rules_answer()) == (await api.call(GET_GROUPS, {}),
                                                 await api.call(GET_RULES, {}))


# --- 6. push ------------------------------------------------------------------------------------


async def test_a_subscriber_gets_a_reload_when_its_route_rules_change(
        make_managed: MakeManaged) -> None:
    """A subscriber gets a `reload` when its shown rules change, and nothing for other writes."""
    node = await make_managed()
    api = node.api
    assert OK_BODY == await api.register(instance(), instance(serviceId=OTHER))
    await split(api)  # revision 3: a reload of the new rule (weights 5)
    ws = await node.subscribe()
    theirs = await node.subscribe(OTHER)
    api.clock.advance(1)
    assert OK == await api.call(UPDATE_GROUPS, write("groups", [
        group("blue", description="nothing shown changes")]))
    api.clock.advance(1)
    await release(api, (1, 1), (1, 2))
    await until(lambda: len(ws.sent) >= 1, "one frame")

    reload = {"groupId": None, "healthCheckUrl": None, "instanceId": "reload", "ip": "0.0.0.0",
              "machineName": None, "metadata": None, "port": 0, "protocol": None,
              "regionId": None, "serviceId": SERVICE, "status": None,
              "url": "http://serviceId/reload", "zoneId": None}
    assert [{"changeTime": START_MS + 2000, "changeType": "reload", "instance": reload,
             "revision": node.token(4)}] == ws.frames()
    assert OK_BODY == await api.register(instance("10.0.0.9:8080", serviceId=OTHER))
    await until(lambda: len(theirs.sent) >= 1, "the other service's frame")
    assert ["new"] == [frame["changeType"] for frame in theirs.frames()]


# --- 7. the audit log ---------------------------------------------------------------------------


async def test_every_group_and_rule_write_is_audited(managed: Api) -> None:
    """Each write is audited by kind with actor, operatorId, reason and the row before/after."""
    api = managed
    second, third = START_MS + 1000, START_MS + 2000
    context = {"reason": "canary", "extensions": '{"ticket":"OPS-7"}'}
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("blue", appId="a")],
                                                     **context))
    assert OK == await api.call(INSERT_RULES, write("routeRules", [rule("split")], "bob"))
    assert OK == await api.call(INSERT_LINKS, write("routeRuleGroups", [link(1, 1, 30)]))
    api.clock.advance(1)
    assert OK == await api.call(UPDATE_GROUPS, write("groups", [group("blue", appId="b")]))
    assert OK == await api.call(UPDATE_RULES, write("routeRules", [
        rule("split", description="d")]))
    assert OK == await api.call(UPDATE_LINKS, write("routeRuleGroups", [link(1, 1, 40)]))
    assert OK == await api.call(RELEASE_LINKS, write("routeRuleGroups", [link(1, 1)]))
    api.clock.advance(1)
    assert OK == await api.call(DELETE_LINKS, write("routeRuleGroupIds", [1]))
    assert OK == await api.call(DELETE_RULES, write("routeRuleIds", [1]))
    assert OK == await api.call(DELETE_GROUPS, write("groupIds", [1], "carol"))

    g1 = group_row(1, "blue", app="a")
    g2 = group_row(1, "blue", app="b", updated=second)
    r1 = rule_row(1, "split")
    r2 = rule_row(1, "split", description="d", updated=second)
    expected = [
        group_entry(10, "delete", g2, group_row(1, "blue", app="b", deleted=True,
                                                updated=third),
                    created=third, operator="carol"),
        entry(9, "route-rule", "delete", r2,
              rule_row(1, "split", description="d", deleted=True, updated=third),
              created=third),
        entry(8, "route-rule-group", "delete", link_row(1, 1, 1, 40, 40), [], created=third),
        entry(7, "route-rule-group", "release", link_row(1, 1, 1, 40),
              link_row(1, 1, 1, 40, 40), created=second),
        entry(6, "route-rule-group", "update", link_row(1, 1, 1, 30),
              link_row(1, 1, 1, 40), created=second),
        entry(5, "route-rule", "update", r1, r2, created=second),
        group_entry(4, "update", g1, g2, created=second),
        entry(3, "route-rule-group", "create", [], link_row(1, 1, 1, 30)),
        entry(2, "route-rule", "create", [], r1, operator="bob"),
        group_entry(1, "create", [], g1, **context),
    ]
    assert logs(*expected) == await api.call(AUDIT, {})


async def test_create_route_rule_is_audited_row_by_row(managed: Api) -> None:
    """create-route-rule writes one audit entry for the rule, each group and each link."""
    api = managed
    await split(api)

    assert logs(
        entry(5, "route-rule-group", "create", [], link_row(2, 1, 2, 10)),
        entry(4, "route-rule-group", "create", [], link_row(1, 1, 1, 90)),
        group_entry(3, "create", [], group_row(2, "green", "zone-2"), zone="zone-2"),
        group_entry(2, "create", [], group_row(1, "blue")),
        entry(1, "route-rule", "create", [], rule_row(1, "split")),
    ) == await api.call(AUDIT, {})


async def test_the_audit_actor_is_the_tokens_name(make_managed: MakeManaged) -> None:
    """The audit's actor is the writing token's name (`admin`, or the name in `tokens`)."""
    node = await make_managed(tokens=TOKENS)
    ops = await node.caller(f"Bearer {WRITE_SECRET}")
    assert OK == await ops.call(INSERT_RULES, write("routeRules", [rule("split")], "dave"))
    assert OK == await node.api.call(DELETE_RULES, write("routeRuleIds", [1]))

    assert logs(entry(2, "route-rule", "delete", rule_row(1, "split"),
                      rule_row(1, "split", deleted=True)),
                entry(1, "route-rule", "create", [], rule_row(1, "split"), actor="ops",
                      operator="dave")) == await node.api.call(AUDIT, {})


# --- 8. tokens, a node not up, a database that does not answer ---------------------------------


async def test_writes_without_the_write_role_are_refused(make_managed: MakeManaged) -> None:
    """A group or rule write without a write-role token is no-permission and writes nothing."""
    node = await make_managed(tokens=TOKENS)
    before = await state(node.api)
    refused = {path: failure(path, "no-permission",
                             "this call needs a bearer token with the write role")
               for path in WRITES}

    for authorization in (None, "Bearer wrong-token-0123456789", f"Bearer {READ_SECRET}"):
        caller = await node.caller(authorization)
        assert refused == {path: await caller.call(path, valid_body(path)) for path in WRITES}
    assert before == await state(node.api)


async def test_reads_without_a_read_token_are_refused(make_managed: MakeManaged) -> None:
    """A read without a read-role token is no-permission, payload null (GET forms too)."""
    node = await make_managed(tokens=TOKENS)
    refused = {path: failure(path, "no-permission",
                             "this call needs a bearer token with the read role")
               for path in READS}

    for authorization in (None, "Bearer wrong-token-0123456789"):
        caller = await node.caller(authorization)
        assert refused == {path: await caller.call(path, {}) for path in READS}
        assert [refused[path] for path in ALL_READS] == [
            (await caller.get(path)).json() for path in ALL_READS]


async def test_a_read_token_reads_but_does_not_write(make_managed: MakeManaged) -> None:
    """A read-role token reads groups, rules and links, and cannot write them."""
    node = await make_managed(tokens=TOKENS)
    await split(node.api)
    reader = await node.caller(f"Bearer {READ_SECRET}")

    assert [groups_answer(group_out(1, "blue"), group_out(2, "green", "zone-2")),
            rules_answer(rule_out(1, "split")),
            links_answer(link_out(1, 1, 1, 90), link_out(2, 1, 2, 10))] * 2 == [
        *[await reader.call(path, {}) for path in (GET_GROUPS, GET_RULES, GET_LINKS)],
        *[await reader.call(path) for path in ALL_READS]]
    assert failure(RELEASE_LINKS, "no-permission",
                   "this call needs a bearer token with the write role") == (
        await reader.call(RELEASE_LINKS, valid_body(RELEASE_LINKS)))


async def test_a_node_forced_down_refuses_writes_and_still_reads(managed: Api) -> None:
    """A node forced down refuses writes service-unavailable, writes nothing, still reads."""
    api = managed
    await split(api)
    before = await state(api)
    assert "down" == (await api.call(NODE_STATUS, {"status": "down"}))["nodeStatus"]["status"]

    answers = {path: await api.call(path, valid_body(path)) for path in WRITES}
    assert {path: failure(path, "service-unavailable",
                          "Serivce is not in up state. Current status: down")
            for path in WRITES} == answers
    assert before == await state(api)
    assert groups_answer(group_out(1, "blue"), group_out(2, "green", "zone-2")) == (
        await api.call(GET_GROUPS, {}))


async def test_a_node_forced_down_checks_the_body_first(managed: Api) -> None:
    """On a node not up a bad write body is bad-request: the body is checked first."""
    await managed.call(NODE_STATUS, {"status": "down"})

    assert failure(INSERT_GROUPS, "bad-request", "groups is null or empty.") == (
        await managed.call(INSERT_GROUPS, write("groups", [])))


async def test_an_unreachable_database_makes_every_call_unavailable(managed: Api) -> None:
    """With the database unreachable every call is service-unavailable; discovery keeps rules."""
    api = managed
    assert OK_BODY == await api.register(instance())
    await split(api)
    management = api.parts.management
    assert management is not None
    await management.store.close()
    management.store = ManagementStore(f"mysql://root@127.0.0.1:{closed_port()}/x",
                                       timeout=0.5)
    await management.reload()

    answers = {path: await api.call(path, valid_body(path)) for path in NULLS}
    assert {path: failure(path, "service-unavailable", "the management database does not "
                          "answer; discovery goes on with the last data loaded")
            for path in NULLS} == answers
    rules = [shown_rule("split", shown_group(key("blue"), 5),
                        shown_group(key("green", "zone-2"), 5))]
    assert {"checksum": checksum(instance()), "responseStatus": SUCCESS,
            "service": ruled(SERVICE, rules, instance())} == await service_json(api)


async def test_a_node_without_a_database_answers_service_unavailable(api: Api) -> None:
    """Without a database every group and rule endpoint is service-unavailable."""
    answers = {path: await api.call(path, valid_body(path), headers={"authorization": ADMIN})
               for path in NULLS}

    assert {path: failure(path, "service-unavailable",
                          "management is not configured on this node (no database)")
            for path in NULLS} == answers


# --- 9. bad input -------------------------------------------------------------------------------

LONG_ID = "x" * 257
BAD_WRITES: list[tuple[str, dict[str, Any], str]] = [
    # lists: null, empty, too long, wrong type
    (INSERT_GROUPS, {"operatorId": "alice"}, "groups is null or empty."),
    (INSERT_GROUPS, write("groups", []), "groups is null or empty."),
    (UPDATE_GROUPS, write("groups", [group(f"g{n}") for n in range(1001)]),
     "groups has more than 1000 entries."),
    (INSERT_GROUPS, write("groups", "blue"),  # type: ignore[arg-type]
     "request body: Expected `array | null`, got `str` - at `$.groups`"),
    (DELETE_GROUPS, write("groupIds", []), "groupIds is null or empty."),
    (DELETE_RULES, {"operatorId": "alice"}, "routeRuleIds is null or empty."),
    (DELETE_LINKS, write("routeRuleGroupIds", list(range(1, 1002))),
     "routeRuleGroupIds has more than 1000 entries."),
    (INSERT_RULES, write("routeRules", []), "routeRules is null or empty."),
    (UPDATE_RULES, write("routeRules", [rule(f"r{n}") for n in range(1001)]),
     "routeRules has more than 1000 entries."),
    (INSERT_LINKS, write("routeRuleGroups", []), "routeRuleGroups is null or empty."),
    (RELEASE_LINKS, {"operatorId": "alice"}, "routeRuleGroups is null or empty."),
    (CREATE_RULE, create(rule("split")), "groups is null or empty."),
    (CREATE_RULE, {"groups": [group("blue", weight=1)], "operatorId": "alice"},
     "a route rule is null."),
    # missing or blank fields
    (INSERT_GROUPS, write("groups", [None]),
     "request body: Expected `object`, got `null` - at `$.groups[0]`"),
    (INSERT_GROUPS, write("groups", [group("blue"), {"name": "x", "status": "active"}]),
     "serviceId is null or empty."),
    (INSERT_GROUPS, write("groups", [group("blue", region=" ")]), "regionId is null or empty."),
    (INSERT_GROUPS, write("groups", [group("blue", zone="")]), "zoneId is null or empty."),
    (INSERT_GROUPS, write("groups", [group("  ")]), "name is null or empty."),
    (UPDATE_GROUPS, write("groups", [{**group("blue"), "status": None}]),
     "status is null or empty."),
    (INSERT_GROUPS, {"groups": [group("blue")]}, "operatorId is null or empty."),
    (INSERT_RULES, write("routeRules", [rule("\t")]), "name is null or empty."),
    (INSERT_RULES, write("routeRules", [{"name": "split", "status": "active"}]),
     "serviceId is null or empty."),
    (UPDATE_RULES, write("routeRules", [rule("split", strategy=" ")]),
     "strategy is null or empty."),
    (INSERT_LINKS, write("routeRuleGroups", [{"groupId": 1, "unreleasedWeight": 1}]),
     "routeRuleId must be a positive id, got None."),
    (INSERT_LINKS, write("routeRuleGroups", [link(1, 1)]),
     "weight must be from 0 to 10000, got None."),
    (RELEASE_LINKS, write("routeRuleGroups", [{"routeRuleId": 1}]),
     "groupId must be a positive id, got None."),
    (CREATE_RULE, create(rule("split"), group("blue")),
     "weight must be from 0 to 10000, got None."),
    (CREATE_RULE, create(rule("split"), None),  # type: ignore[arg-type]
     "request body: Expected `object`, got `null` - at `$.groups[0]`"),
    # bad status, weights, ids
    (INSERT_GROUPS, write("groups", [group("blue", status="paused")]),
     "status must be active or inactive, got 'paused'."),
    (INSERT_RULES, write("routeRules", [rule("split", status="deleted")]),
     "status must be active or inactive, got 'deleted'."),
    (CREATE_RULE, create(rule("split", status="on"), group("blue", weight=1)),
     "status must be active or inactive, got 'on'."),
    (INSERT_LINKS, write("routeRuleGroups", [link(1, 1, -1)]),
     "weight must be from 0 to 10000, got -1."),
    (UPDATE_LINKS, write("routeRuleGroups", [link(1, 1, 10_001)]),
     "weight must be from 0 to 10000, got 10001."),
    (CREATE_RULE, create(rule("split"), group("blue", weight=-1)),
     "weight must be from 0 to 10000, got -1."),
    (CREATE_RULE, create(rule("split"), group("blue", weight=10_001)),
     "weight must be from 0 to 10000, got 10001."),
    (DELETE_GROUPS, write("groupIds", [1, 0]), "groupId must be a positive id, got 0."),
    (DELETE_RULES, write("routeRuleIds", [-3]), "routeRuleId must be a positive id, got -3."),
    (DELETE_LINKS, write("routeRuleGroupIds", [0]),
     "routeRuleGroupId must be a positive id, got 0."),
    (INSERT_LINKS, write("routeRuleGroups", [link(0, 1, 5)]),
     "routeRuleId must be a positive id, got 0."),
    (RELEASE_LINKS, write("routeRuleGroups", [link(1, -1)]),
     "groupId must be a positive id, got -1."),
    # wrong types
    (INSERT_GROUPS, write("groups", [group(5)]),  # type: ignore[arg-type]
     "request body: Expected `str | null`, got `int` - at `$.groups[0].name`"),
    (DELETE_GROUPS, write("groupIds", ["1"]),
     "request body: Expected `int`, got `str` - at `$.groupIds[0]`"),
    (DELETE_RULES, write("routeRuleIds", [1.5]),
     "request body: Expected `int`, got `float` - at `$.routeRuleIds[0]`"),
    (INSERT_LINKS, write("routeRuleGroups", [{**link(1, 1), "unreleasedWeight": True}]),
     "request body: Expected `int | null`, got `bool` - at "
     "`$.routeRuleGroups[0].unreleasedWeight`"),
    (CREATE_RULE, create(rule("split"), group("blue", weight="5")),
     "request body: Expected `int | null`, got `str` - at `$.groups[0].weight`"),
    (INSERT_RULES, write("routeRules", [rule("split")], operator=7),  # type: ignore[arg-type]
     "request body: Expected `str | null`, got `int` - at `$.operatorId`"),
    # lengths, control characters, regions
    (INSERT_GROUPS, write("groups", [group("blue", service_id=LONG_ID)]),
     "serviceId is longer than 256 characters."),
    (INSERT_GROUPS, write("groups", [group("blue", LONG_ID)]),
     "zoneId is longer than 256 characters."),
    (INSERT_GROUPS, write("groups", [group(LONG_ID)]), "name is longer than 256 characters."),
    (INSERT_GROUPS, write("groups", [group("blue", appId=LONG_ID)]),
     "appId is longer than 256 characters."),
    (UPDATE_GROUPS, write("groups", [group("blue", description="d" * 1025)]),
     "description is longer than 1024 characters."),
    (INSERT_RULES, write("routeRules", [rule(LONG_ID)]), "name is longer than 256 characters."),
    (INSERT_RULES, write("routeRules", [rule("split", LONG_ID)]),
     "serviceId is longer than 256 characters."),
    (UPDATE_RULES, write("routeRules", [rule("split", description="d" * 1025)]),
     "description is longer than 1024 characters."),
    (INSERT_RULES, write("routeRules", [rule("split", strategy="s" * 65)]),
     "strategy is longer than 64 characters."),
    (CREATE_RULE, create(rule("split"), group("blue", description="d" * 1025, weight=1)),
     "description is longer than 1024 characters."),
    (INSERT_GROUPS, write("groups", [group("a\nb")]), "name contains control characters."),
    (INSERT_GROUPS, write("groups", [group("blue", description="a\x00b")]),
     "description contains a NUL character"),
    (INSERT_GROUPS, write("groups", [group("blue", region="FRA")]),
     "regionId 'FRA' is not this node's region 'SHA'."),
    (CREATE_RULE, create(rule("split"), group("blue", region="FRA", weight=1)),
     "regionId 'FRA' is not this node's region 'SHA'."),
    (INSERT_GROUPS, write("groups", [group("blue")], operator="o" * 129),
     "operatorId is longer than 128 characters."),
    (INSERT_RULES, write("routeRules", [rule("split")], extensions="{"),
     "extensions is not JSON text."),
    (DELETE_LINKS, write("routeRuleGroupIds", [1], reason="r" * 1025),
     "reason is longer than 1024 characters."),
]


@pytest.fixture
async def established(managed: Api) -> Api:
    """Rule 1 split with groups 1 blue and 2 green (weights 90/10 released), registered."""
    assert OK_BODY == await managed.register(instance())
    await split(managed)
    await release(managed, (1, 1), (1, 2))
    return managed


async def test_bad_writes_are_refused_and_change_nothing(established: Api) -> None:
    """A bad write (any item, any field) is bad-request with the reason, and writes nothing."""
    api = established
    before = (await state(api), await service_json(api))

    answers = [await api.call(path, body) for path, body, _ in BAD_WRITES]
    assert [failure(path, "bad-request", message) for path, _, message in BAD_WRITES] == answers
    assert before == (await state(api), await service_json(api))


async def test_malformed_json_is_refused(established: Api) -> None:
    """A write or read whose body is not a JSON object of the right shape is bad-request."""
    api = established
    before = await state(api)
    contents = [b"{bad", b"\xff\xfe", b'{"groups": [', b"null", b"[]", b'"text"']

    answers = {(path, content): (await api.post(path, content=content)).json()[
        "responseStatus"]["errorCode"] for content in contents for path in NULLS}
    assert dict.fromkeys(answers, "bad-request") == answers
    assert before == await state(api)


async def test_an_empty_body_is_refused_by_every_write(established: Api) -> None:
    """An empty write body is read as `{}`: bad-request naming the missing list."""
    api = established
    missing = {INSERT_GROUPS: "groups", UPDATE_GROUPS: "groups", DELETE_GROUPS: "groupIds",
               INSERT_RULES: "routeRules", UPDATE_RULES: "routeRules",
               DELETE_RULES: "routeRuleIds", INSERT_LINKS: "routeRuleGroups",
               UPDATE_LINKS: "routeRuleGroups", RELEASE_LINKS: "routeRuleGroups",
               DELETE_LINKS: "routeRuleGroupIds"}

    assert {path: failure(path, "bad-request", f"{name} is null or empty.")
            for path, name in missing.items()} | {
        CREATE_RULE: failure(CREATE_RULE, "bad-request", "a route rule is null.")} == {
        path: (await api.post(path, content=b"")).json() for path in WRITES}


async def test_values_of_exactly_the_limits_are_taken(managed: Api) -> None:
    """Ids of 256, descriptions of 1024, 1000 items and weights 0 and 10000 are taken."""
    api = managed
    service_id, name, description = "S" * 256, "n" * 256, "d" * 1024
    assert OK == await api.call(INSERT_GROUPS, write("groups", [
        group(name, "z" * 256, service_id, appId="a" * 256, description=description)]))
    assert OK == await api.call(INSERT_GROUPS, write("groups", [
        group(f"g{n}", "z" * 256, service_id) for n in range(1000)]))
    assert OK == await api.call(INSERT_RULES, write("routeRules", [
        rule(name, service_id, description=description, strategy="s" * 64)]))
    assert OK == await api.call(INSERT_LINKS, write("routeRuleGroups", [
        link(1, 1, 0), link(1, 2, 10_000)]))

    assert (group_out(1, name, "z" * 256, "s" * 256, app="a" * 256, description=description),
            1001, rules_answer(rule_out(1, name, "s" * 256, description=description,
                                        strategy="s" * 64)),
            links_answer(link_out(1, 1, 1, 0), link_out(2, 1, 2, 10_000))) == (
        (await api.call(GET_GROUPS, {"groupId": 1}))["groups"][0],
        len((await api.call(ALL_GROUPS))["groups"]), await api.call(ALL_RULES),
        await api.call(ALL_LINKS))


@pytest.mark.parametrize("text", INJECTIONS)
async def test_sql_injection_text_is_stored_verbatim(managed: Api, text: str) -> None:
    """SQL in names and descriptions is stored verbatim (keys lower-cased) and found by filters."""
    api = managed
    lower = text.lower()
    assert OK == await api.call(CREATE_RULE, create(
        rule(text, text, description=text, strategy=text),
        group(text, text, text, appId=text, description=text, weight=7), operator=text))
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("blue")]))

    assert (groups_answer(group_out(1, lower, lower, lower, app=text, description=text)),
            rules_answer(rule_out(1, lower, lower, description=text, strategy=text)),
            links_answer(link_out(1, 1, 1, 7)), 3) == (
        await api.call(GET_GROUPS, {"name": text, "zoneId": text, "serviceId": text}),
        await api.call(GET_RULES, {"name": text, "serviceId": text}),
        await api.call(ALL_LINKS), (await api.call(AUDIT, {"operatorId": text}))["total"])
    assert groups_answer(group_out(1, lower, lower, lower, app=text, description=text),
                         group_out(2, "blue")) == await api.call(ALL_GROUPS)


BAD_READS: list[tuple[str, dict[str, Any], str]] = [
    (GET_GROUPS, {"status": "paused"}, "status must be active or inactive, got 'paused'."),
    (GET_GROUPS, {"regionId": "FRA"}, "regionId 'FRA' is not this node's region 'SHA'."),
    (GET_GROUPS, {"serviceId": LONG_ID}, "serviceId is longer than 256 characters."),
    (GET_GROUPS, {"name": "a\tb"}, "name contains control characters."),
    (GET_GROUPS, {"groupId": "1"},
     "request body: Expected `int | null`, got `str` - at `$.groupId`"),
    (GET_RULES, {"status": "gone"}, "status must be active or inactive, got 'gone'."),
    (GET_RULES, {"name": LONG_ID}, "name is longer than 256 characters."),
    (GET_LINKS, {"routeRuleId": 1.5},
     "request body: Expected `int | null`, got `float` - at `$.routeRuleId`"),
    (ALL_GROUPS, {"regionId": 5},
     "request body: Expected `str | null`, got `int` - at `$.regionId`"),
]


async def test_bad_reads_are_refused(managed: Api) -> None:
    """A read with a bad filter (status, region, length, type) is bad-request."""
    answers = [await managed.call(path, body) for path, body, _ in BAD_READS]

    assert [failure(path, "bad-request", message) for path, _, message in BAD_READS] == answers


UNKNOWN_LINKS: list[tuple[str, dict[str, Any], str]] = [
    (INSERT_LINKS, link(9, 1, 5), "route rule 9 does not exist or is deleted"),
    (UPDATE_LINKS, link(1, 9, 5), "group 9 does not exist or is deleted"),
    (INSERT_LINKS, link(1, 3, 5), "group 3 does not exist or is deleted"),  # deleted
    (UPDATE_LINKS, link(2, 1, 5), "route rule 2 does not exist or is deleted"),  # deleted
    (INSERT_LINKS, link(2**63, 1, 5),
     "route rule 9223372036854775808 does not exist or is deleted"),
]


async def test_unknown_ids_in_route_rule_groups_are_refused(established: Api) -> None:
    """Linking an unknown or deleted rule or group is bad-request naming it; nothing written."""
    api = established
    assert OK == await api.call(INSERT_GROUPS, write("groups", [group("gone")]))
    assert OK == await api.call(DELETE_GROUPS, write("groupIds", [3]))
    assert OK == await api.call(INSERT_RULES, write("routeRules", [rule("gone")]))
    assert OK == await api.call(DELETE_RULES, write("routeRuleIds", [2]))
    before = (await state(api), await api.call(GET_LINKS, {}))

    answers = [await api.call(path, write("routeRuleGroups", [link(1, 1, 55), bad]))
               for path, bad, _ in UNKNOWN_LINKS]
    assert [failure(path, "bad-request", message) for path, _, message in UNKNOWN_LINKS] == (
        answers)
    assert before == (await state(api), await api.call(GET_LINKS, {}))


async def test_releasing_an_unknown_link_is_refused(established: Api) -> None:
    """Releasing a rule/group pair with no link is bad-request and releases nothing."""
    api = established
    assert OK == await api.call(UPDATE_LINKS, write("routeRuleGroups", [link(1, 1, 55)]))
    before = await state(api)

    answer = await api.call(RELEASE_LINKS, write("routeRuleGroups", [link(1, 1), link(9, 9)]))
    assert ("bad-request", before) == (answer["responseStatus"]["errorCode"], await state(api))


async def test_a_group_of_another_service_cannot_join_a_rule(established: Api) -> None:
    """Linking a group of another service to a rule is bad-request and writes nothing."""
    api = established
    assert OK == await api.call(INSERT_GROUPS, write("groups", [
        group("red", service_id=OTHER)]))
    before = (await state(api), await service_json(api))

    answer = await api.call(INSERT_LINKS, write("routeRuleGroups", [link(1, 3, 50)]))
    await api.call(RELEASE_LINKS, write("routeRuleGroups", [link(1, 3)]))
    assert ("bad-request", before) == (answer["responseStatus"]["errorCode"],
                                       (await state(api), await service_json(api)))
