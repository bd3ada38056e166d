"""The receiving side of replication: peers' register, heartbeat, unregister and services.

Every node here has a peer (that never answers) and the cluster secret, and its client sends the
secret as a peer does (`make_api` below); refusals of callers that are not peers are in
test_peer_auth below and tests/adversarial/test_peers.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import pytest

from tests.server.cluster_harness import PEER_HEADERS, with_a_peer
from tests.server.conftest import MakeApi
from tests.server.harness import OK_BODY, REGION, SERVICE, Api, instance, service

REPLICATE = "/api/replication/registry"


def failure(code: str, message: str) -> dict[str, Any]:
    return {"errorCode": code, "message": message, "status": "fail"}


@pytest.fixture
def make_api(make_api: MakeApi) -> MakeApi:
    """conftest's `make_api`, for a node with a peer and the cluster secret, called as a peer."""

    async def make(**settings: Any) -> Api:
        api = await make_api(**with_a_peer(**settings))
        api.client.headers.update(PEER_HEADERS)
        return api

    return make


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


# --- who may call: the cluster credential ------------------------------------------------------

PEER_REFUSED = ("this call is for the cluster's nodes: it needs the cluster secret in "
                "x-artemis-cluster-secret")


@pytest.mark.parametrize(("headers", "reason"), [
    ({"x-artemis-cluster-secret": ""}, "missing"),
    ({"x-artemis-cluster-secret": "another-secret-0123456789"}, "wrong"),
    ({"x-artemis-cluster-secret": PEER_HEADERS["x-artemis-cluster-secret"][:-1]}, "wrong"),
    ({"authorization": f"Bearer {PEER_HEADERS['x-artemis-cluster-secret']}"}, "missing"),
])
async def test_a_caller_without_the_secret_is_refused_and_counted(
        api: Api, headers: dict[str, str], reason: str) -> None:
    """A replicated write or a copy without the cluster secret (or with another) is refused
    no-permission in the endpoint's shape, changes nothing and is counted by reason."""
    await api.call(f"{REPLICATE}/register.json", {"instances": [instance()]})
    api.client.headers.pop("x-artemis-cluster-secret")
    forged = {"instances": [instance(url="http://attacker:1/")]}
    async with api.unchanged(SERVICE):
        answers = [await api.call(f"{REPLICATE}/{op}.json", forged, headers=headers)
                   for op in ("register", "heartbeat", "unregister")]
        copies = [await api.call(f"{REPLICATE}/{path}.json", {"regionId": REGION},
                                 headers=headers) for path in ("leases", "checksums", "services")]
    refused = failure("no-permission", PEER_REFUSED)
    counted = f'artemis_peer_auth_refused_total{{reason="{reason}"}}'
    metrics = (await api.get("/metrics")).text
    assert ([{"failedInstances": None, "responseStatus": refused}] * 3,
            [{"leases": None, "responseStatus": refused},
             {"checksum": None, "responseStatus": refused, "services": None},
             {"responseStatus": refused, "services": None}],
            f"{counted} 6.0") == (
        answers, copies, next(line for line in metrics.splitlines()
                              if line.startswith(counted)))


async def test_cluster_insecure_takes_peer_calls_without_a_secret(make_api: MakeApi) -> None:
    """With cluster_insecure (next to original nodes) a call without the secret is a peer's."""
    api = await make_api(cluster_insecure=True, cluster_secret="")
    api.client.headers.pop("x-artemis-cluster-secret")
    answer = await api.call(f"{REPLICATE}/register.json", {"instances": [instance()]})
    status = (await api.get("/api/status/replication.json")).json()
    assert (OK_BODY, 1, "insecure") == (answer, api.node.registry.instance_count,
                                        status["peerAuth"])


async def test_a_peers_batch_is_held_to_the_larger_of_max_batch_and_replication_batch(
        make_api: MakeApi) -> None:
    """A replicated batch holds at most max(max_batch, replication_batch) instances: the rest is
    refused bad-request whole, as a client's batch over max_batch is."""
    api = await make_api(max_batch=2, replication_batch=3)
    three = [instance(f"10.0.0.{n}:8080") for n in range(3)]
    four = [instance(f"10.0.1.{n}:8080") for n in range(4)]
    accepted = await api.call(f"{REPLICATE}/register.json", {"instances": three})
    refused = await api.call(f"{REPLICATE}/heartbeat.json", {"instances": four})
    assert (OK_BODY, failure("bad-request", "request.instances has 4 instances; at most 3 are "
                             "accepted in one request."), 3) == (
        accepted, refused["responseStatus"], api.node.registry.instance_count)


async def test_a_peers_instances_are_validated_like_a_clients(api: Api) -> None:
    """Each replicated instance passes the client's checks (ids, region): what a client's
    register refuses, a peer's refuses alike."""
    bad = [instance("10.0.0.8:8080", regionId="FRA"), instance("a\x00b"),
           instance("10.0.0.9:8080", serviceId=" ")]
    peer = await api.call(f"{REPLICATE}/register.json", {"instances": bad})
    client = await api.call("/api/registry/register.json", {"instances": bad})
    assert (client["failedInstances"], 3, 0) == (
        peer["failedInstances"], len(peer["failedInstances"]), api.node.registry.instance_count)
