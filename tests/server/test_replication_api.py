"""The receiving side of replication: peers' register, heartbeat, unregister and services."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

from tests.server.conftest import MakeApi
from tests.server.harness import OK_BODY, REGION, SERVICE, Api, instance, service

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


# --- caps and large answers ---------------------------------------------------------------------


async def test_a_peers_register_meets_the_node_caps_not_the_per_client_ones(
        make_api: MakeApi) -> None:
    """Replicated registers count against max_instances (refused with rate-limited past it) but
    never against max_instances_per_client: peers are not clients."""
    api: Api = await make_api(max_instances=3, max_instances_per_client=1)
    many = [instance(f"10.0.0.{n}:8080") for n in range(1, 5)]
    answer = await api.call(f"{REPLICATE}/register.json", {"instances": many})
    reason = "this node holds its maximum of 3 instances (max_instances); try again later."
    assert ([{"errorCode": "rate-limited", "errorMessage": f"sha/zone-1/demo.service.v1/"
              f"10.0.0.4:8080: {reason}", "instance": many[3]}], 3,
            {"max_instances": 1}) == (answer["failedInstances"],
                                      api.node.registry.instance_count,
                                      api.node.registry.refused)


def _fleet(count: int) -> list[dict[str, Any]]:
    """`count` instances: most in one large service (it spans several steps), some alone."""
    return [instance(f"10.{n // 250}.{n % 250}.1:8080",
                     serviceId=SERVICE if n % 10 else f"single.{n}") for n in range(count)]


async def test_large_answers_are_built_in_steps_and_stay_exact(api: Api) -> None:
    """services, checksums and leases of a registry larger than one step (a service of 4,050
    instances spans three) list every service and instance once, as one piece would."""
    fleet = _fleet(4500)
    for start in range(0, len(fleet), 1000):
        await api.call(f"{REPLICATE}/register.json", {"instances": fleet[start:start + 1000]})
    raw = await api.call(f"{REPLICATE}/services.json", {"regionId": REGION})
    sums = await api.call(f"{REPLICATE}/checksums.json", {"regionId": REGION})
    leases = await api.call(f"{REPLICATE}/leases.json", {"regionId": REGION})
    by_service: dict[str, list[str]] = {}
    for inst in fleet:
        by_service.setdefault(inst["serviceId"], []).append(inst["instanceId"])
    registry = api.node.registry
    assert (by_service, {k: f"{v:016x}" for k, v in registry.checksums().items()},
            f"{registry.checksum:016x}", sorted(i["instanceId"] for i in fleet)) == (
        {s["serviceId"]: [i["instanceId"] for i in s["instances"]] for s in raw["services"]},
        sums["services"], sums["checksum"],
        sorted(copy["instance"]["instanceId"] for copy in leases["leases"]))
    assert ([service(SERVICE, *[i for i in fleet if i["serviceId"] == SERVICE])],
            [0] * len(fleet)) == (
        [s for s in raw["services"] if s["serviceId"] == SERVICE],
        [copy["ageMs"] for copy in leases["leases"]])


async def test_concurrent_requests_for_one_large_answer_share_its_build(api: Api) -> None:
    """Large answers are built one at a time: requests for the whole leases that arrive while
    another build runs wait, share one build and get the same answer (counted as shared)."""
    fleet = _fleet(2500)
    await api.call(f"{REPLICATE}/register.json", {"instances": fleet})
    node = api.node
    gate = asyncio.Event()

    def other_build() -> Generator[None, None, str]:
        while not gate.is_set():  # holds the node's one build until the requests are in
            yield
        return "done"

    other = asyncio.ensure_future(node.build_shared(("other",), other_build, "other"))
    requests = [asyncio.ensure_future(api.call(f"{REPLICATE}/leases.json",
                                               {"regionId": REGION})) for _ in range(4)]
    for _ in range(10_000):
        if node.shared_builds.get("leases") == 3:
            break
        await asyncio.sleep(0)
    waiting = [r.done() for r in requests]
    gate.set()
    answers = await asyncio.gather(*requests)
    assert ("done", [False] * 4, {"leases": 3}, [answers[0]] * 4, 2500) == (
        await other, waiting, node.shared_builds, answers, len(answers[0]["leases"]))
