"""One registry: a Eureka instance is an instance of the node's registry, in process: found by
Artemis discovery, with the same leases and expiry, self-preservation, push, management
pull-outs and replication to peers."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from artemis.clock import FakeClock
from artemis.core.versions import Change
from tests.eureka.harness import APP, ID, JSON, info, register
from tests.server.cluster_harness import Nodes
from tests.server.conftest import managed as managed
from tests.server.harness import LOOKUP, REGION, SUCCESS, ZONE, Api

EUREKA_INSTANCE = {
    "groupId": None, "healthCheckUrl": "http://web-1:8080/health", "instanceId": ID,
    "ip": "10.0.0.5", "machineName": "web-1",
    "metadata": {"owner": "team-a", "eureka.vipAddress": "orders",
                 "eureka.secureVipAddress": "orders", "eureka.port": "8080",
                 "eureka.portEnabled": "true", "eureka.securePort": "443",
                 "eureka.securePortEnabled": "false", "eureka.homePageUrl": "http://web-1:8080/",
                 "eureka.statusPageUrl": "http://web-1:8080/info",
                 "eureka.renewalIntervalInSecs": "10", "eureka.lastDirtyTimestamp": "1000",
                 "artemis.lease_ttl": "30"},
    "port": 8080, "protocol": "http", "regionId": REGION, "serviceId": APP, "status": "up",
    "url": "http://10.0.0.5:8080", "zoneId": ZONE,
}
THIRTY = {"renewalIntervalInSecs": 10, "durationInSecs": 30}


async def lookup(api: Api, service_id: str = "orders") -> list[Any]:
    """The instances lookup.json answers for `service_id`."""
    answer = await api.call(LOOKUP, {"discoveryConfigs": [{"serviceId": service_id}],
                                     "regionId": REGION, "zoneId": ZONE})
    assert SUCCESS == answer["responseStatus"]
    return list(answer["services"][0]["instances"])


async def eureka_ids(api: Api) -> list[str]:
    answer = (await api.client.get("/eureka/apps", headers=JSON)).json()
    return [i["instanceId"] for app in answer["applications"]["application"]
            for i in app["instance"]]


async def test_an_eureka_registration_is_found_by_artemis_lookup(api: Api) -> None:
    """lookup.json (any case of the app name) answers the Eureka instance as an Artemis
    Instance."""
    await register(api, info(leaseInfo=THIRTY))

    assert [EUREKA_INSTANCE] == await lookup(api)


async def test_the_lease_the_client_states_expires_the_instance(api: Api) -> None:
    """durationInSecs 30 (not the node's 20 s lease): there at 29 s, gone at 31 s, for Eureka
    and Artemis alike."""
    await register(api, info(leaseInfo=THIRTY))

    api.sweep(29)
    there = (await lookup(api), await eureka_ids(api))
    api.sweep(2)
    api.clock.advance(1)  # past the kept full fetch's floor

    assert ((1, [ID]), ([], [])) == ((len(there[0]), there[1]),
                                     (await lookup(api), await eureka_ids(api)))


async def test_self_preservation_holds_eureka_leases_too(api: Api) -> None:
    """Eureka renewals count as renewals: when 60 clients fall silent at once the node holds
    their expired leases, as it holds Artemis ones."""
    ids = [f"h{i}:orders:8080" for i in range(60)]
    for instance_id in ids:
        await register(api, info(instance_id, leaseInfo=THIRTY))
    api.clock.advance(1)
    for instance_id in ids:
        assert 200 == (await api.client.put(f"/eureka/apps/{APP}/{instance_id}")).status_code
    api.node.registry.check_safety(api.clock.monotonic())

    api.clock.advance(31)
    api.node.registry.check_safety(api.clock.monotonic())
    api.node.sweep_once()

    assert (False, 60) == (api.node.registry.safe.is_safe,
                           len(api.node.registry.service(APP).leases))  # type: ignore[union-attr]


async def test_changes_are_published_to_push(api: Api) -> None:
    """Register, override and cancel through Eureka publish the registry's changes (what push
    and metrics get)."""
    published: list[Sequence[Change]] = []
    api.node.subscribe(published.append)

    await register(api)
    await api.client.put(f"/eureka/apps/{APP}/{ID}/status", params={"value": "OUT_OF_SERVICE"})
    await api.client.put(f"/eureka/apps/{APP}/{ID}")
    await api.client.delete(f"/eureka/apps/{APP}/{ID}")

    assert [["new"], ["new"], ["delete"]] == [[c.kind for c in batch] for batch in published]


async def test_a_pulled_out_instance_is_hidden_from_eureka(managed: Api) -> None:
    """A management pull-out hides the instance (as from Artemis discovery): not in the full
    fetch, the application or by id, DELETED in the delta; its lease still renews."""
    api = managed
    await register(api)
    await register(api, info("web-2:orders:8080"))

    await api.call("/api/management/operate-instance.json", {
        "instanceKey": {"instanceId": ID, "regionId": REGION, "serviceId": APP},
        "operation": "pullout", "operationComplete": False, "operatorId": "alice"})
    api.clock.advance(1)

    delta = (await api.client.get("/eureka/apps/delta", headers=JSON)).json()
    assert (["web-2:orders:8080"], 404, 404, 200, [("web-1:orders:8080", "DELETED")]) == (
        await eureka_ids(api),
        (await api.client.get(f"/eureka/apps/{APP}/{ID}")).status_code,
        (await api.client.get(f"/eureka/instances/{ID}")).status_code,
        (await api.client.put(f"/eureka/apps/{APP}/{ID}")).status_code,
        [(i["instanceId"], i["actionType"])
         for i in delta["applications"]["application"][0]["instance"]
         if i["instanceId"] == ID])


@pytest.fixture
async def nodes(clock: FakeClock) -> AsyncIterator[Nodes]:
    async with contextlib.AsyncExitStack() as stack:
        yield Nodes(clock, stack)


async def test_eureka_writes_are_replicated_to_peers(nodes: Nodes) -> None:
    """A Eureka register, renew and cancel on A reach B: B answers the instance through Eureka
    and Artemis, renewed, then gone."""
    apis = await nodes.build({"a": ZONE, "b": ZONE})
    await nodes.poll("a")
    a, b = apis["a"], apis["b"]

    await register(a, info(leaseInfo=THIRTY))
    await nodes.cluster("a").flush()
    copied = [EUREKA_INSTANCE] == await lookup(b)
    nodes.clock.advance(20)
    await a.client.put(f"/eureka/apps/{APP}/{ID}")
    await nodes.cluster("a").flush()
    b.sweep(15)  # 35 s after registering: alive only if the renewal reached B
    renewed = await eureka_ids(b)
    await a.client.delete(f"/eureka/apps/{APP}/{ID}")
    await nodes.cluster("a").flush()

    assert (True, [ID], []) == (copied, renewed, await lookup(b))
