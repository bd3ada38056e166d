"""The console's JSON endpoints, in process on a fake clock: the overview, services by prefix a
page at a time, one service with its instances, and what a token may do."""

from __future__ import annotations

from typing import Any, Final

import pytest

from artemis.core.lease import SafeChecker, SafeCheckerConfig
from artemis.server.api.console import _safety
from artemis.server.settings import Settings
from tests.server.cluster_harness import with_a_peer
from tests.server.conftest import MANAGEMENT_TOKEN, MakeApi, api, clock, make_api, managed
from tests.server.harness import REGION, SERVICE, SUCCESS, ZONE, Api, fail, instance

__all__ = ["api", "clock", "make_api", "managed"]  # the fixtures, used here

OVERVIEW: Final = "/api/console/overview.json"
SERVICES: Final = "/api/console/services.json"
ONE: Final = "/api/console/service.json"
WHOAMI: Final = "/api/console/whoami.json"
READ_TOKEN: Final = "console-reader-secret-0123456789"  # noqa: S105 - a test secret
WRITE_TOKEN: Final = "console-writer-secret-0123456789"  # noqa: S105 - a test secret


async def answer(api: Api, path: str, params: Any = None, token: str | None = None) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else None
    response = await api.client.get(api.prefix + path, params=params, headers=headers)
    assert (200, "application/json") == (response.status_code,
                                         response.headers["content-type"])
    return response.json()


# --- overview ------------------------------------------------------------------------------


async def test_overview_of_a_node_alone(api: Api) -> None:
    """A node without peers or database: itself up, its counts, self-preservation with its
    reason, no management, no refusal."""
    await api.register(instance(), instance("10.0.0.6:8080"),
                       instance("10.0.0.7:8080", serviceId="other"))
    api.clock.advance(1.0)

    found = await answer(api, OVERVIEW)

    undecided = {"enabled": True, "holding": False, "reason": "not holding: the peak of 0 "
                 "renewals is below 50, too few to decide", "renewals": 0, "peak": 0,
                 "percentage": 85, "minCount": 50}
    assert {
        "node": {"url": "http://127.0.0.1:8080", "nodeId": api.node.node_id, "region": REGION,
                 "zone": ZONE, "status": "up", "servesRegistry": True, "servesDiscovery": True,
                 "uptimeSeconds": 1.0, "version": found["node"]["version"]},
        "peers": [], "bootstrap": None, "instances": 3, "visibleInstances": 3, "services": 2,
        "revision": 3,
        "selfPreservation": {**undecided, "windowSeconds": 10.0, "leases": 3},
        "legacySelfPreservation": {**undecided, "windowSeconds": 60.0, "leases": 0},
        "management": {"enabled": False, "available": False, "version": None, "lastError": "",
                       "lastLoadTime": 0, "pulledOut": {}, "hiddenInstances": 0},
        "rateLimited": {}, "rateLimitedTotal": 0,
        "loopLag": {"samples": 0, "p50Ms": 0.0, "p99Ms": 0.0, "maxMs": 0.0},
        "push": {"registry": 0, "discovery": 0},
        "serverTime": api.clock.wall_ms(), "responseStatus": SUCCESS,
    } == found


async def test_overview_lists_each_peer_as_last_polled(make_api: MakeApi) -> None:
    """A starting node with a peer: the peer `unknown` until it answers a poll, its queue and
    counters zero, the bootstrap not started."""
    api = await make_api(up=False, **with_a_peer())

    found = await answer(api, OVERVIEW)

    assert ("starting", [{
        "url": "http://b.test", "zone": ZONE, "status": "unknown", "servesRegistry": None,
        "servesDiscovery": None, "lastAnswerTime": 0, "lastError": "", "queued": 0, "sent": 0,
        "retried": 0, "lagP99Ms": 0.0, "lagSamples": 0, "droppedOverflow": 0,
        "droppedExpired": 0, "droppedFailed": 0}], {"state": "not started"}) == (
        found["node"]["status"], found["peers"], found["bootstrap"])


async def test_overview_is_built_at_most_twice_a_second(api: Api) -> None:
    """Callers within half a second share one answer; after it, the next shows what changed."""
    first = await answer(api, OVERVIEW)
    await api.register(instance())
    api.clock.advance(0.4)
    shared = await answer(api, OVERVIEW)
    api.clock.advance(0.1)
    fresh = await answer(api, OVERVIEW)

    assert (0, 0, 1) == (first["instances"], shared["instances"], fresh["instances"])


async def test_overview_counts_refusals_by_limit(make_api: MakeApi) -> None:
    """Rate-limit refusals are listed by limiter and operation, with their total."""
    api = await make_api(rate_limits={"status": 1})
    for _ in range(3):
        await api.post("/api/status/cluster.json")

    found = await answer(api, OVERVIEW)

    assert ({"status.get-cluster": 2}, 2) == (found["rateLimited"], found["rateLimitedTotal"])


def test_self_preservation_reasons_name_the_numbers() -> None:
    """The reason says whether expired leases are held, and why, with the counts."""
    settings = Settings()
    checker = SafeChecker(SafeCheckerConfig(window=10.0, max_count_threshold=50))
    checker.renewed(0.0, 100)
    checker.check(1.0)  # the peak: 100 renewals
    normal = _safety(checker, 1.0, 10.0, 100, settings).reason
    checker.check(12.0)  # the window moved on: no renewal in it
    holding = _safety(checker, 12.0, 10.0, 100, settings).reason
    checker.set_enabled(False)
    off = _safety(checker, 12.0, 10.0, 100, settings).reason

    assert ["not holding: 100 renewals in the last 10 s, at least 85 % of the peak of 100",
            "holding expired leases: 0 renewals in the last 10 s, below 85 % of the peak "
            "of 100",
            "switched off: expired leases are removed whatever the renewals"] == [
        normal, holding, off]


# --- services ------------------------------------------------------------------------------


async def test_services_by_prefix_a_page_at_a_time(api: Api) -> None:
    """Services in id order, filtered by prefix (any case), paged by offset and limit."""
    ids = [f"Orders.v{n}" for n in range(7)] + ["payments", "orders-legacy"]
    for service_id in ids:
        await api.register(instance(serviceId=service_id))

    page = await answer(api, SERVICES, {"prefix": "orders.", "offset": 2, "limit": 3})
    everything = await answer(api, SERVICES)
    past = await answer(api, SERVICES, {"prefix": "ORDERS.", "offset": 6, "limit": 3})

    assert {"prefix": "orders.", "offset": 2, "limit": 3, "total": 7, "registryServices": 9,
            "services": [{"serviceId": f"Orders.v{n}", "instances": 1, "visible": 1}
                         for n in (2, 3, 4)], "responseStatus": SUCCESS} == page
    assert (["orders-legacy", "Orders.v0", "Orders.v1", "Orders.v2", "Orders.v3", "Orders.v4",
             "Orders.v5", "Orders.v6", "payments"], 9) == (
        [s["serviceId"] for s in everything["services"]], everything["total"])
    assert (7, ["Orders.v6"]) == (past["total"], [s["serviceId"] for s in past["services"]])


async def test_services_follow_registrations_and_removals(api: Api) -> None:
    """A service registered or emptied since the last search is found or gone in the next."""
    await api.register(instance(serviceId="a.one"), instance(serviceId="a.two"))
    before = await answer(api, SERVICES, {"prefix": "a."})
    await api.unregister(instance(serviceId="a.one"))
    await api.register(instance(serviceId="a.three"))
    after = await answer(api, SERVICES, {"prefix": "a."})

    assert (["a.one", "a.two"], ["a.three", "a.two"]) == (
        [s["serviceId"] for s in before["services"]],
        [s["serviceId"] for s in after["services"]])


@pytest.mark.parametrize(("params", "message"), [
    ({"limit": "0"}, "limit must be from 1 to 500, got 0"),
    ({"limit": "501"}, "limit must be from 1 to 500, got 501"),
    ({"offset": "-1"}, "offset must be from 0 to 10000000, got -1"),
    ({"offset": "x"}, "offset must be a whole number, got 'x'"),
    ({"prefix": "a\x00"}, "prefix is longer than 256 characters or has control characters"),
])
async def test_services_refuse_bad_paging(api: Api, params: dict[str, str],
                                          message: str) -> None:
    """Paging out of bounds is `bad-request`, naming the parameter; the answer is bare."""
    assert {"responseStatus": fail("bad-request", message)} == await answer(api, SERVICES,
                                                                           params)


# --- one service -----------------------------------------------------------------------------


async def test_a_service_with_a_page_of_its_instances(api: Api) -> None:
    """Instances in id order with their leases, zone counts, route rules and the push token
    to resume from; a filter narrows by id or ip."""
    await api.register(instance("10.0.0.6:8080"), instance("10.0.0.5:8080", zoneId="zone-2"))
    api.clock.advance(3.0)

    found = await answer(api, ONE, {"serviceId": SERVICE.upper(), "limit": 1})
    filtered = await answer(api, ONE, {"serviceId": SERVICE, "filter": "0.0.6"})

    revision = f"{api.parts.push.hub.run_id}.2"
    assert {
        "serviceId": SERVICE, "exists": True,
        "instances": [{
            "instanceId": "10.0.0.5:8080", "ip": "10.0.0.5", "port": 8080,
            "url": "http://10.0.0.5:8080/api", "healthCheckUrl": "http://10.0.0.5:8080/health",
            "zoneId": "zone-2", "groupId": None, "status": "up", "machineName": "web-5",
            "protocol": "http", "metadata": {"owner": "team-a"}, "pulledOut": False,
            "leaseRemainingMs": 17000, "ttlMs": 20000, "renewedMsAgo": 3000,
            "registeredTime": api.clock.wall_ms() - 3000, "legacy": False,
            "operations": None}],
        "total": 2, "matching": 2, "visible": 2, "offset": 0, "limit": 1, "filter": "",
        "zones": {"zone-1": 1, "zone-2": 1}, "routeRules": [], "logicInstances": 0,
        "management": None, "pushRevision": revision, "serverTime": api.clock.wall_ms(),
        "responseStatus": SUCCESS,
    } == found
    assert (["10.0.0.6:8080"], 1, "0.0.6") == (
        [i["instanceId"] for i in filtered["instances"]], filtered["matching"],
        filtered["filter"])


async def test_an_unknown_service_is_empty_not_an_error(api: Api) -> None:
    """A service with no instance answers `exists` false, with the token to follow it from."""
    found = await answer(api, ONE, {"serviceId": "nobody"})

    assert (False, [], f"{api.parts.push.hub.run_id}.0") == (
        found["exists"], found["instances"], found["pushRevision"])


async def test_a_service_needs_its_id(api: Api) -> None:
    """No serviceId: `bad-request`."""
    assert {"responseStatus": fail("bad-request", "serviceId is missing")} == await answer(
        api, ONE)


async def test_management_readers_see_operations_groups_and_rules(managed: Api) -> None:
    """With the read role, a pulled-out instance shows its operations (instance, server,
    zone), and the service its groups and route rules with released and staged weights;
    without it, only that the instance is pulled out."""
    api = managed
    await api.register(instance(), instance("10.0.0.6:8080", groupId="blue"))
    key = {"regionId": REGION, "serviceId": SERVICE, "instanceId": "10.0.0.5:8080"}
    for path, body in (
            ("/api/management/operate-instance.json", {"instanceKey": key,
                                                       "operation": "pull-out"}),
            ("/api/management/operate-server.json", {"serverKey": {
                "regionId": REGION, "serverId": "10.0.0.5"}, "operation": "repair"}),
            ("/api/management/group/create-route-rule.json", {
                "routeRule": {"serviceId": SERVICE, "name": "split", "status": "active"},
                "groups": [{"serviceId": SERVICE, "regionId": REGION, "zoneId": ZONE,
                            "name": "blue", "status": "active", "weight": 30}]})):
        status = (await api.call(path, {**body, "operatorId": "ops"}))["responseStatus"]
        assert SUCCESS == status, path

    reader = await answer(api, ONE, {"serviceId": SERVICE}, MANAGEMENT_TOKEN)
    del api.client.headers["authorization"]
    anyone = await answer(api, ONE, {"serviceId": SERVICE})

    groups = reader["management"]["groups"]
    assert [{"groupId": groups[0]["groupId"], "name": "blue", "zoneId": ZONE, "appId": None,
             "status": "active", "description": None, "tags": None, "members": None,
             "operations": None}] == groups
    assert [{"routeRuleId": reader["management"]["routeRules"][0]["routeRuleId"],
             "name": "split", "status": "active", "strategy": "weighted-round-robin",
             "description": None, "groups": [{
                 "routeRuleGroupId": reader["management"]["routeRules"][0]["groups"][0][
                     "routeRuleGroupId"],
                 "groupId": groups[0]["groupId"], "weight": None, "unreleasedWeight": 30}]}
            ] == reader["management"]["routeRules"]
    assert ([(True, {"instance": ["pull-out"], "server": ["repair"]}), (False, {})],
            [(True, None), (False, None)], None) == (
        [(i["pulledOut"], i["operations"]) for i in reader["instances"]],
        [(i["pulledOut"], i["operations"]) for i in anyone["instances"]],
        anyone["management"])


# --- the caller ----------------------------------------------------------------------------


@pytest.mark.parametrize(("token", "open_reads", "expected"), [
    (None, False, (None, False, [])),
    ("not-one-of-the-node-tokens-000", False, (None, False, [])),
    (READ_TOKEN, False, ("viewer", True, ["read"])),
    (WRITE_TOKEN, False, ("ops", True, ["read", "write"])),
    (MANAGEMENT_TOKEN, False, ("admin", True, ["admin", "read", "write"])),
    (None, True, (None, False, ["read"])),
], ids=["none", "unknown", "read", "write", "admin", "open-reads"])
async def test_whoami_names_the_token_and_its_roles(
        make_api: MakeApi, token: str | None, open_reads: bool,
        expected: tuple[str | None, bool, list[str]]) -> None:
    """The token's name and the management roles it has (admin: the admin token); nothing
    about a token the node does not know, nor about the caller's address."""
    api = await make_api(client_host="10.9.9.9", admin_token=MANAGEMENT_TOKEN,
                         management_open_reads=open_reads,
                         tokens=f"viewer:read:{READ_TOKEN},ops:write:{WRITE_TOKEN}")

    found = await answer(api, WHOAMI, token=token)

    assert {"token": expected[0], "known": expected[1], "roles": expected[2],
            "openReads": open_reads, "management": False, "region": REGION,
            "responseStatus": SUCCESS} == found
