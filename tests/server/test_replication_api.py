"""The receiving side of replication: peers' register, heartbeat, unregister and services."""

from __future__ import annotations

from typing import Any

from tests.server.conftest import MakeApi
from tests.server.harness import OK_BODY, REGION, SERVICE, Api, instance

REPLICATE = "/api/replication/registry"


def failure(code: str, message: str) -> dict[str, Any]:
    return {"errorCode": code, "message": message, "status": "fail"}


async def test_accepted_while_the_node_is_starting(make_api: MakeApi) -> None:
    """A peer's register is taken while the node is starting; a client's is refused."""
    api: Api = await make_api(up=False)
    client = await api.call("/api/registry/register.json", {"instances": [instance()]})
    peer = await api.call(f"{REPLICATE}/register.json", {"instances": [instance()]})
    assert ("service-unavailable", OK_BODY, 1) == (
        client["responseStatus"]["errorCode"], peer, api.node.registry.instance_count)


async def test_zones_are_not_checked(make_api: MakeApi) -> None:
    """A node refusing other zones takes them from a peer (region is still checked)."""
    api: Api = await make_api(allow_registry_from_other_zone=False)
    elsewhere = instance("10.0.0.9:8080", zoneId="zone-9")
    client = await api.call("/api/registry/register.json", {"instances": [elsewhere]})
    peer = await api.call(f"{REPLICATE}/register.json", {"instances": [elsewhere]})
    other_region = await api.call(f"{REPLICATE}/register.json",
                                  {"instances": [instance(regionId="FRA")]})
    assert ("no-permission", OK_BODY, "no-permission") == (
        client["failedInstances"][0]["errorCode"], peer,
        other_region["failedInstances"][0]["errorCode"])


async def test_heartbeat_of_an_unknown_instance_registers_it(api: Api) -> None:
    """A lost register heals: a peer's heartbeat for an instance the node lacks registers it,
    and the change is recorded like any registration."""
    answer = await api.call(f"{REPLICATE}/heartbeat.json", {"instances": [instance()]})
    lookup = await api.lookup(SERVICE)
    assert (OK_BODY, [instance()], ["new"]) == (
        answer, lookup["services"][0]["instances"],
        [c.kind for c in api.node.registry.log.since(0) or []])


async def test_unregister_from_a_peer_removes(api: Api) -> None:
    """A peer's unregister removes the instance."""
    await api.register(instance())
    answer = await api.call(f"{REPLICATE}/unregister.json", {"instances": [instance()]})
    assert (OK_BODY, 0) == (answer, api.node.registry.instance_count)


async def test_services_is_the_raw_registry(api: Api) -> None:
    """services.json lists every service with its instances; other regions are refused and the
    GET form needs regionId."""
    await api.register(instance(), instance("10.0.0.6:8080", serviceId="other"))
    post = await api.call(f"{REPLICATE}/services.json", {"regionId": REGION.lower()})
    get = (await api.get(f"{REPLICATE}/services.json", {"regionId": REGION})).json()
    refused = await api.call(f"{REPLICATE}/services.json", {"regionId": "FRA"})
    missing = (await api.get(f"{REPLICATE}/services.json")).json()
    assert ({"demo.service.v1": ["10.0.0.5:8080"], "other": ["10.0.0.6:8080"]}, post,
            failure("no-permission", "regionId is not the same as the registry node. regionId: "
                    "FRA, registry node.regionId: SHA"),
            failure("bad-request", "regionId is required.")) == (
        {s["serviceId"]: [i["instanceId"] for i in s["instances"]] for s in post["services"]},
        get, refused["responseStatus"], missing["responseStatus"])


async def test_replication_has_its_own_rate_limit(make_api: MakeApi) -> None:
    """The replication limiter refuses past its limit and the refused call changes nothing."""
    api: Api = await make_api(rate_limits={"replication.register": 1})
    first = await api.call(f"{REPLICATE}/register.json", {"instances": [instance()]})
    second = await api.call(f"{REPLICATE}/register.json",
                            {"instances": [instance("10.0.0.6:8080")]})
    assert (OK_BODY, {"failedInstances": None,
                      "responseStatus": failure("rate-limited", "Request is rate limited.")},
            1) == (first, second, api.node.registry.instance_count)
