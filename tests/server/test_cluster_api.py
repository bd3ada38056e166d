"""Cluster endpoints over HTTP and the cluster shell, in process.

The endpoints: checksums.json and leases.json (anti-entropy and bootstrap), node.json's node-id
header, the admin node-status switch and replication.json. The shell: several nodes on one fake
clock whose peers reach each other's apps through `cluster_harness.Router`; the tests drive
`poll_once`, `bootstrap_step`, `flush` and `repair` by hand, so nothing runs in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from artemis import wire
from artemis.clock import FakeClock
from artemis.core.membership import PeerSpec, parse_peers
from artemis.core.renewal import HELD_BATCH_MIN
from artemis.core.replication import PeerQueue, QueueConfig
from artemis.server.cluster import repair as repair_module
from artemis.server.cluster.links import PeerLink
from artemis.server.http import Request
from artemis.server.settings import Settings, SettingsError
from tests.server.cluster_harness import (
    CLUSTER_SECRET,
    PEER_HEADERS,
    Fault,
    Nodes,
    url,
    with_a_peer,
)
from tests.server.conftest import MakeApi
from tests.server.harness import (
    NODE_URL,
    OK_BODY,
    REGION,
    SERVICE,
    SERVICE_PATH,
    SUCCESS,
    ZONE,
    Api,
    canonical,
    checksum,
    fail,
    instance,
    lookup_answer,
    registry_fail,
    service,
)

START_MS = 1_700_000_000_000  # FakeClock's wall time when a test starts
REPLICATE = "/api/replication/registry"
CHECKSUMS = f"{REPLICATE}/checksums.json"
LEASES = f"{REPLICATE}/leases.json"
NODE_JSON = "/api/status/node.json"
ADMIN = "/api/admin/node-status.json"
REPLICATION = "/api/status/replication.json"
ADMIN_TOKEN = "s3cret"  # noqa: S105 - a test's own token, not a credential
ADMIN_REFUSED = fail("no-permission", "this switch needs the admin bearer token "
                     "(or, with no token configured, a call from 127.0.0.1)")
OTHER = instance("10.0.0.6:8080", serviceId="Other.Service")
EMPTY_CHECKSUM = "0000000000000000"
THREE_PEERS = "zone-1:http://a.test,http://b.test,http://c.test"


def region_refused(region: object) -> dict[str, str]:
    return fail("no-permission", f"regionId is not the same as the registry node. regionId: "
                f"{region}, registry node.regionId: {REGION}")


def copy(inst: dict[str, Any], age_ms: int = 0, created_ms: int = START_MS,
         owner: str | None = "127.0.0.1") -> dict[str, Any]:
    """One LeaseCopy as leases.json answers it; `owner` the client that registered it (the
    test client's address), None for a copy no client owns (absent from the JSON)."""
    owned = {} if owner is None else {"owner": owner}
    return {"ageMs": age_ms, "createdMs": created_ms, "instance": inst, **owned}


def leases_answer(*copies: dict[str, Any]) -> dict[str, Any]:
    return {"leases": list(copies), "responseStatus": SUCCESS}


def zone_json(zone: str = ZONE) -> dict[str, Any]:
    return {"metadata": None, "regionId": REGION, "zoneId": zone}


def node_status(node_url: str = NODE_URL, status: str = "up", can: bool | None = True,
                allow: bool | None = True, zone: str = ZONE) -> dict[str, Any]:
    """A ServiceNodeStatus (§3.7)."""
    return {"allowDiscoveryFromOtherZone": allow, "allowRegistryFromOtherZone": allow,
            "canServiceDiscovery": can, "canServiceRegistry": can,
            "node": {"url": node_url, "zone": zone_json(zone)}, "status": status}


def service_answer(service_id: str = SERVICE, *instances: dict[str, Any]) -> dict[str, Any]:
    """service.json's answer for a service with `instances`."""
    return {"checksum": checksum(*instances), "responseStatus": SUCCESS,
            "service": service(service_id, *instances)}


def service_body(service_id: str = SERVICE) -> dict[str, Any]:
    return {"discoveryConfig": {"discoveryData": None, "regionId": None, "serviceId": service_id,
                                "zoneId": None}, "regionId": REGION, "zoneId": ZONE}


NO_LAG = {"samples": 0, "p50Ms": 0.0, "p99Ms": 0.0, "maxMs": 0.0}
NO_REPAIR = {"rounds": 0, "inSync": 0, "services": 0, "instances": 0, "staleUnregistered": 0}


def peer(host: str, status: str = "unknown", can: bool | None = None, zone: str = ZONE,
         **counters: Any) -> dict[str, Any]:
    """One peer of `Cluster.status()`: zeros unless `counters` say otherwise."""
    polled = status != "unknown"
    return {"url": url(host), "zone": zone, "status": status, "canServiceRegistry": can,
            "canServiceDiscovery": can, "lastAnswerTime": START_MS if polled else 0,
            "lastError": "", "queued": 0, "submitted": 0, "coalesced": 0, "sent": 0,
            "retried": 0, "droppedOverflow": 0, "droppedExpired": 0, "droppedFailed": 0,
            "sendFailures": 0, "skipped": 0, "requests": 0, "backoffFailures": 0,
            "unansweredForMs": None, "lag": NO_LAG,
            "lagBuckets": lag_buckets(counters.get("lag", NO_LAG)["samples"]),
            "repair": NO_REPAIR, **counters}


def lag(samples: int) -> dict[str, Any]:
    """The lag of `samples` writes acknowledged while the fake clock stood still."""
    return {"samples": samples, "p50Ms": 0.0, "p99Ms": 0.0, "maxMs": 0.0}


def lag_buckets(samples: int) -> dict[str, Any]:
    """The same writes counted since the start: all in the first bucket (a lag of 0)."""
    return {"leMs": [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
                     5000.0], "cumulative": [samples] * 12, "count": samples, "sumMs": 0.0}


def steady(status: dict[str, Any]) -> dict[str, Any]:
    """A replication status with its volatile fields (random node id, CPU time) nulled."""
    return {**status, "nodeId": None, "cpuSeconds": None}


@pytest.fixture
async def nodes(clock: FakeClock) -> AsyncIterator[Nodes]:
    """A cluster builder on the test's clock; every client is closed at teardown."""
    async with contextlib.AsyncExitStack() as stack:
        yield Nodes(clock, stack)


@pytest.fixture
async def peer_api(make_api: MakeApi) -> Api:
    """An up node with a peer (that never answers) and the cluster secret, whose client sends
    the secret as a peer does: its checksums and leases answer."""
    api = await make_api(**with_a_peer())
    api.client.headers.update(PEER_HEADERS)
    return api


@pytest.fixture
async def peer_seeded(peer_api: Api) -> Api:
    """`peer_api` with `instance()` registered."""
    assert OK_BODY == await peer_api.register(instance())
    return peer_api


# --- checksums.json --------------------------------------------------------------------------


async def test_checksums_same_checksum_lists_no_services(peer_api: Api) -> None:
    """A caller with this node's checksum (any hex case, any region case) gets it back and
    null services; nothing changes."""
    assert OK_BODY == await peer_api.register(instance(), OTHER)
    total = checksum(instance(), OTHER)

    async with peer_api.unchanged(SERVICE, "other.service"):
        answers = [await peer_api.call(CHECKSUMS, {"checksum": total, "regionId": REGION}),
                   await peer_api.call(CHECKSUMS, {"checksum": total.upper(), "regionId": "sha"})]

    assert [{"checksum": total, "responseStatus": SUCCESS, "services": None}] * 2 == answers


@pytest.mark.parametrize("theirs", [None, "0123456789abcdef", EMPTY_CHECKSUM])
async def test_checksums_differing_lists_every_service(peer_api: Api, theirs: str | None) -> None:
    """A caller whose checksum differs or is absent gets every service's checksum (16 hex
    digits) by lower-case service id; nothing changes."""
    assert OK_BODY == await peer_api.register(instance(), OTHER)
    body = {"regionId": REGION} if theirs is None else {"checksum": theirs, "regionId": REGION}

    async with peer_api.unchanged(SERVICE, "other.service"):
        answer = await peer_api.call(CHECKSUMS, body)

    assert {"checksum": checksum(instance(), OTHER), "responseStatus": SUCCESS,
            "services": {"demo.service.v1": checksum(instance()),
                         "other.service": checksum(OTHER)}} == answer


async def test_checksums_of_an_empty_registry(peer_api: Api) -> None:
    """An empty registry's checksum is 16 zeros: equal means null services, absent means {}."""
    assert [{"checksum": EMPTY_CHECKSUM, "responseStatus": SUCCESS, "services": None},
            {"checksum": EMPTY_CHECKSUM, "responseStatus": SUCCESS, "services": {}}] == [
        await peer_api.call(CHECKSUMS, {"checksum": EMPTY_CHECKSUM, "regionId": REGION}),
        await peer_api.call(CHECKSUMS, {"regionId": REGION})]


async def test_checksums_of_another_region_is_no_permission(peer_seeded: Api) -> None:
    """A caller of another region gets `no-permission` with null payload; nothing changes."""
    async with peer_seeded.unchanged():
        answer = await peer_seeded.call(CHECKSUMS, {"checksum": EMPTY_CHECKSUM, "regionId": "FRA"})

    assert {"checksum": None, "responseStatus": region_refused("FRA"),
            "services": None} == answer


@pytest.mark.parametrize("path", [CHECKSUMS, LEASES, f"{REPLICATE}/services.json"])
async def test_missing_region_is_named_null(peer_seeded: Api, path: str) -> None:
    """A caller without regionId is refused with the original's text: `regionId: null`."""
    answer = await peer_seeded.call(path, {})

    assert region_refused("null") == answer["responseStatus"]


@pytest.mark.parametrize(("content", "message"), [
    (b"{", "request body: malformed JSON: Input data was truncated"),
    (b'{"checksum": 5, "regionId": "SHA"}',
     "request body: Expected `str | null`, got `int` - at `$.checksum`"),
    (b"[]", "request body: Expected `object`, got `array`"),
])
async def test_checksums_malformed_body_is_bad_request(peer_seeded: Api, content: bytes,
                                                       message: str) -> None:
    """A body that is not a ChecksumsRequest answers `bad-request` with null payload."""
    async with peer_seeded.unchanged():
        answer = await peer_seeded.call(CHECKSUMS, content=content)

    assert {"checksum": None, "responseStatus": fail("bad-request", message),
            "services": None} == answer


# --- leases.json -----------------------------------------------------------------------------


async def test_leases_of_every_service(peer_api: Api) -> None:
    """Without serviceIds every lease is copied: ageMs is the time since its last renewal on
    the node's clock, createdMs the wall time of its registration; nothing changes."""
    assert OK_BODY == await peer_api.register(instance())
    peer_api.clock.advance(2)
    assert OK_BODY == await peer_api.register(OTHER)
    peer_api.clock.advance(3)
    assert OK_BODY == await peer_api.heartbeat(instance())
    peer_api.clock.advance(1.5)

    async with peer_api.unchanged(SERVICE, "other.service"):
        answers = [await peer_api.call(LEASES, {"regionId": REGION}),
                   await peer_api.call(LEASES, {"regionId": REGION, "serviceIds": None})]

    assert [leases_answer(copy(instance(), 1500), copy(OTHER, 4500, START_MS + 2000))] * 2 == (
        answers)


async def test_leases_of_chosen_services(peer_api: Api) -> None:
    """serviceIds chooses the services (any case); unknown ones and [] copy nothing."""
    assert OK_BODY == await peer_api.register(instance(), OTHER)
    peer_api.clock.advance(0.25)

    assert [leases_answer(copy(OTHER, 250)), leases_answer(copy(instance(), 250)),
            leases_answer()] == [
        await peer_api.call(LEASES, {"regionId": REGION,
                                     "serviceIds": ["OTHER.service", "nobody"]}),
        await peer_api.call(LEASES, {"regionId": REGION, "serviceIds": [SERVICE.upper()]}),
        await peer_api.call(LEASES, {"regionId": REGION, "serviceIds": []})]


async def test_leases_of_another_region_is_no_permission(peer_seeded: Api) -> None:
    """A caller of another region gets `no-permission` and null leases."""
    assert {"leases": None, "responseStatus": region_refused("FRA")} == await peer_seeded.call(
        LEASES, {"regionId": "FRA"})


async def test_leases_with_too_many_service_ids_is_bad_request(peer_seeded: Api) -> None:
    """More than 100000 serviceIds answer `bad-request`; exactly 100000 are served."""
    many = [f"s{i}" for i in range(100_000)]

    assert [leases_answer(), {"leases": None, "responseStatus": fail(
        "bad-request", "serviceIds has 100001 entries; at most 100000 are accepted in one "
        "request.")}] == [
        await peer_seeded.call(LEASES, {"regionId": REGION, "serviceIds": many}),
        await peer_seeded.call(LEASES, {"regionId": REGION, "serviceIds": [*many, SERVICE]})]


async def test_leases_malformed_body_is_bad_request(peer_seeded: Api) -> None:
    """A body that is not a LeasesRequest answers `bad-request` with null leases."""
    assert {"leases": None, "responseStatus": fail(
        "bad-request", "request body: Expected `array | null`, got `str` - at `$.serviceIds`",
    )} == await peer_seeded.call(LEASES, {"regionId": REGION, "serviceIds": "demo"})


# --- node.json -------------------------------------------------------------------------------


async def test_node_json_carries_the_node_id(api: Api) -> None:
    """node.json (GET and POST) carries `x-artemis-node-id`: the node's 16-hex id (of this run)."""
    node_id = api.node.node_id
    answers = [await api.get(NODE_JSON), await api.post(NODE_JSON)]

    assert (16, [node_id] * 2, [{"nodeStatus": node_status(), "responseStatus": SUCCESS}] * 2
            ) == (len(bytes.fromhex(node_id)) * 2,
                  [r.headers.get("x-artemis-node-id") for r in answers],
                  [r.json() for r in answers])


# --- the admin node-status switch ------------------------------------------------------------


async def test_admin_get_shows_the_node_status(api: Api) -> None:
    """GET node-status.json answers the node's status like node.json."""
    response = await api.get(ADMIN)

    assert (200, {"nodeStatus": node_status(), "responseStatus": SUCCESS}) == (
        response.status_code, response.json())


async def test_admin_down_stops_serving_and_up_restores(seeded: Api) -> None:
    """Forced down (from 127.0.0.1), the node refuses lookups and registers and /health is
    503; forced up, it serves again with its registry intact."""
    down = await seeded.call(ADMIN, {"status": "down"})
    refused = [await seeded.lookup(), await seeded.register(OTHER), await seeded.get("/health")]
    up = await seeded.call(ADMIN, {"status": "up"})
    served = [await seeded.lookup(), await seeded.register(OTHER), await seeded.get("/health")]

    assert {"nodeStatus": node_status(status="down", can=False),
            "responseStatus": SUCCESS} == down
    assert [{"services": None, "responseStatus": fail(
                "service-unavailable",
                "Service discovery is not in up state. Current status: down")},
            registry_fail("service-unavailable",
                          "Serivce registry is not in up state. Current status: down"),
            (503, {"instances": 1, "status": "down"})] == [
        refused[0], refused[1], (refused[2].status_code, refused[2].json())]
    assert {"nodeStatus": node_status(), "responseStatus": SUCCESS} == up
    assert [lookup_answer(service(SERVICE, instance())), OK_BODY,
            (200, {"instances": 2, "status": "up"})] == [
        served[0], served[1], (served[2].status_code, served[2].json())]


async def test_admin_auto_without_peers_comes_back_up(api: Api) -> None:
    """`auto` from down on a node without peers is up again at once."""
    await api.call(ADMIN, {"status": "down"})

    assert {"nodeStatus": node_status(), "responseStatus": SUCCESS} == await api.call(
        ADMIN, {"status": "auto"})


async def test_admin_auto_with_peers_starts_again(make_api: MakeApi) -> None:
    """`auto` from down on a node with peers goes to starting (it bootstraps again)."""
    api = await make_api(peers=f"{NODE_URL},http://b.test")
    await api.call(ADMIN, {"status": "down"})

    assert ({"nodeStatus": node_status(status="starting", can=None), "responseStatus": SUCCESS},
            "starting") == (await api.call(ADMIN, {"status": "auto"}), api.node.state.status)


async def test_admin_auto_on_an_up_node_changes_nothing(api: Api) -> None:
    """`auto` on a node that is up leaves it up."""
    assert {"nodeStatus": node_status(), "responseStatus": SUCCESS} == await api.call(
        ADMIN, {"status": "auto"})


@pytest.mark.parametrize(("host", "token", "authorization"), [
    ("127.0.0.1", ADMIN_TOKEN, None),
    ("127.0.0.1", ADMIN_TOKEN, "Bearer wrong"),
    ("10.1.2.3", "", None),
])
async def test_admin_switch_refused(make_api: MakeApi, host: str, token: str,
                                    authorization: str | None) -> None:
    """Without the admin token (when one is set), or from afar (when none is), the switch
    answers `no-permission` with a null nodeStatus and the node stays up."""
    api = await make_api(admin_token=token, client_host=host)
    headers = {"Authorization": authorization} if authorization else None

    answer = await api.call(ADMIN, {"status": "down"}, headers=headers)

    assert ({"nodeStatus": None, "responseStatus": ADMIN_REFUSED}, "up") == (
        answer, api.node.state.status)


async def test_admin_switch_with_the_token(make_api: MakeApi) -> None:
    """With the admin token as a Bearer token the switch works from any address."""
    api = await make_api(admin_token=ADMIN_TOKEN, client_host="10.1.2.3")

    assert {"nodeStatus": node_status(status="down", can=False),
            "responseStatus": SUCCESS} == await api.call(
        ADMIN, {"status": "down"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


@pytest.mark.parametrize(("content", "message"), [
    (b'{"status": "sideways"}', "status must be up, down or auto, got 'sideways'"),
    (b'{"status": "down", "force": true}', "request body: Object contains unknown field `force`"),
    (b'{"status": ', "request body: Input data was truncated"),
    (b"{}", "request body: Object missing required field `status`"),
    (b'{"status": 1}', "request body: Expected `str`, got `int` - at `$.status`"),
])
async def test_admin_switch_bad_request(api: Api, content: bytes, message: str) -> None:
    """A switch body that is not `{"status": "up"|"down"|"auto"}` answers `bad-request` with a
    null nodeStatus and the node stays up."""
    answer = await api.call(ADMIN, content=content)

    assert ({"nodeStatus": None, "responseStatus": fail("bad-request", message)}, "up") == (
        answer, api.node.state.status)


# --- replication.json ------------------------------------------------------------------------


async def test_replication_status_without_peers(api: Api) -> None:
    """A node without peers reports a bootstrap done (a cluster of one) and no peers."""
    answer = (await api.get(REPLICATION)).json()

    assert ({"bootstrap": {"reason": "no peers: a cluster of one", "state": "done"},
             "cpuSeconds": None, "nodeId": None, "peerAuth": "none", "peers": [],
             "responseStatus": SUCCESS, "self": NODE_URL}, api.node.node_id, 0.0) == (
        steady(answer), answer["nodeId"], answer["cpuSeconds"])


async def test_replication_status_with_peers(make_api: MakeApi) -> None:
    """A starting node with peers lists each one, not yet polled (`unknown`), with every counter
    zero and every field present."""
    api = await make_api(up=False, url="http://a.test", peers=THREE_PEERS,
                         cluster_secret=CLUSTER_SECRET)

    answer = (await api.get(REPLICATION)).json()

    assert ({"bootstrap": {"state": "not started"}, "cpuSeconds": None, "nodeId": None,
             "peerAuth": "secret", "peers": [peer("b"), peer("c")], "responseStatus": SUCCESS,
             "self": "http://a.test"}, api.node.node_id) == (
        steady(answer), answer["nodeId"])


# --- polling and the cluster answers ---------------------------------------------------------

FOUR = {"a": ZONE, "b": ZONE, "c": ZONE, "d": "zone-2"}


async def polled_four(nodes: Nodes) -> Api:
    """a, b, c (zone-1) and d (zone-2): b up, c starting, d down; a has polled them once."""
    apis = await nodes.build(FOUR, starting=("c",))
    nodes.router.down.add("d.test")
    await nodes.poll("a")
    return apis["a"]


async def test_poll_records_peer_states(nodes: Nodes) -> None:
    """A poll records each peer's answer: up, starting, and `unknown` (with the error) for a
    peer that does not answer."""
    a = await polled_four(nodes)

    assert {"nodeId": None, "self": url("a"),
            "bootstrap": {"state": "done", "reason": "forced up"},  # built up, not bootstrapped
            "cpuSeconds": None, "peerAuth": "secret", "peers": [
                peer("b", "up", True), peer("c", "starting"),
                peer("d", zone="zone-2",
                     lastError="ConnectError: d.test refused the connection",
                     unansweredForMs=0)]} == (
        steady(nodes.cluster("a").status()))
    assert nodes.cluster("a").polled.is_set()
    assert (await a.get(REPLICATION)).json() == {**nodes.cluster("a").status(),
                                                 "responseStatus": SUCCESS}


async def test_cluster_answers_list_self_and_polled_peers(nodes: Nodes) -> None:
    """cluster.json and cluster/nodes.json list this node, then every peer as last polled
    (flags null while starting or unknown)."""
    a = await polled_four(nodes)
    statuses = [node_status(url("a")), node_status(url("b")),
                node_status(url("c"), "starting", None),
                node_status(url("d"), "unknown", None, None, "zone-2")]

    assert [{"nodeCount": 4, "nodesStatus": statuses, "responseStatus": SUCCESS},
            {"nodes": statuses, "responseStatus": SUCCESS}] == [
        await a.call("/api/status/cluster.json"), await a.call("/api/cluster/nodes.json")]


@pytest.mark.parametrize("kind", ["registry", "discovery"])
async def test_up_nodes_lists_only_up_nodes(nodes: Nodes, kind: str) -> None:
    """up-*-nodes.json lists this node and the peers that are up, not starting or unknown
    ones."""
    a = await polled_four(nodes)
    up = [{"url": url("a"), "zone": zone_json()}, {"url": url("b"), "zone": zone_json()}]

    assert {"nodes": up, "responseStatus": SUCCESS} == await a.call(
        f"/api/cluster/up-{kind}-nodes.json", {"regionId": REGION, "zoneId": ZONE})


async def test_a_peer_with_this_nodes_id_is_dropped(nodes: Nodes) -> None:
    """A peer URL that answers with this node's own id is this node: it leaves the links and
    does not come back when the peers are set again."""
    await nodes.build()
    nodes.router.apps["b.test"] = nodes.router.apps["a.test"]
    cluster = nodes.cluster("a")

    await cluster.poll_once()
    cluster.set_peers(parse_peers(THREE_PEERS, ZONE))

    assert ([url("c")], {url("b")}, [peer("c", "up", True)]) == (
        list(cluster.links), cluster.not_me, cluster.status()["peers"])


async def test_a_peer_that_stops_answering_loses_its_queue(nodes: Nodes) -> None:
    """When a peer stops answering its queued writes are dropped (repair catches it up later)
    and new writes are skipped for it."""
    apis = await nodes.build()
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance())
    nodes.router.down.add("c.test")

    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(OTHER)

    assert peer("c", submitted=1, droppedFailed=1, skipped=1, lastAnswerTime=START_MS,
                lastError="ConnectError: c.test refused the connection",
                unansweredForMs=0) == (
        nodes.cluster("a").status()["peers"][1])


async def test_how_long_a_peer_has_not_answered_is_kept_until_it_answers(nodes: Nodes) -> None:
    """unansweredForMs counts from the first poll a peer failed since it last answered (later
    failed polls do not restart it) and is null again once it answers."""
    await nodes.build()
    await nodes.poll("a")
    nodes.router.down.add("c.test")
    await nodes.poll("a")
    nodes.clock.advance(4)
    await nodes.poll("a")
    nodes.clock.advance(1.5)
    silent = nodes.cluster("a").status()["peers"][1]["unansweredForMs"]
    nodes.router.down.discard("c.test")
    await nodes.poll("a")

    assert (5500, None) == (silent, nodes.cluster("a").status()["peers"][1]["unansweredForMs"])


# --- replication of client writes ------------------------------------------------------------


async def test_register_is_replicated(nodes: Nodes) -> None:
    """A client's register on A is queued for B and C; flushed, it is found on both."""
    apis = await nodes.build()
    await nodes.poll("a")

    assert OK_BODY == await apis["a"].register(instance())
    queued = [len(nodes.link("a", p).queue) for p in "bc"]
    await nodes.cluster("a").flush()

    assert ([1, 1], [service_answer(SERVICE, instance())] * 2) == (
        queued, [await apis[p].call(SERVICE_PATH, service_body()) for p in "bc"])
    assert [peer(p, "up", True, submitted=1, sent=1, requests=1, lag=lag(1)) for p in "bc"] == (
        nodes.cluster("a").status()["peers"])


async def test_heartbeat_is_replicated(nodes: Nodes) -> None:
    """A client's heartbeat on A renews the lease on B and C once flushed."""
    apis = await nodes.build()
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance())
    await nodes.cluster("a").flush()
    nodes.clock.advance(15)
    before = [await apis[p].call(LEASES, {"regionId": REGION}) for p in "bc"]

    assert OK_BODY == await apis["a"].heartbeat(instance())
    await nodes.cluster("a").flush()

    assert ([leases_answer(copy(instance(), 15000))] * 2,
            [leases_answer(copy(instance(), 0))] * 2) == (
        before, [await apis[p].call(LEASES, {"regionId": REGION}) for p in "bc"])


async def test_a_heartbeat_sent_as_held_is_replicated_as_held(nodes: Nodes) -> None:
    """A heartbeat renewed on A without being decoded (its JSON is what A holds) is queued for
    B and C as that JSON, and renews the lease there once flushed."""
    apis = await nodes.build()
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance())
    await nodes.cluster("a").flush()
    nodes.clock.advance(15)
    held = canonical(instance())

    assert OK_BODY == await apis["a"].call("/api/registry/heartbeat.json",
                                           content=b'{"instances":[' + held + b"]}")
    now = nodes.clock.monotonic()
    taken = {p: nodes.link("a", p).queue.take(9, now) for p in "bc"}
    for p, tasks in taken.items():  # looked at, then put back to be sent
        nodes.link("a", p).queue.retry(tasks, now)
    await nodes.cluster("a").flush()

    key = f"{SERVICE}\x1f{instance()['instanceId']}".lower()
    assert ([[("heartbeat", msgspec.Raw(held), key)]] * 2,
            [leases_answer(copy(instance(), 0))] * 2) == (
        [[(t.operation, t.instance, t.key) for t in tasks] for tasks in taken.values()],
        [await apis[p].call(LEASES, {"regionId": REGION}) for p in "bc"])


async def test_a_peers_heartbeat_as_held_here_is_renewed_without_being_decoded(
        nodes: Nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replicated heartbeat whose JSON is what this node holds (what a peer sends: its own
    held JSON) is renewed without being decoded, whatever zone the node is in (region only);
    one that is not (an instance unknown here) takes the whole path, which registers it."""
    apis = await nodes.build({"a": ZONE, "b": "zone-2"},
                             settings={"b": {"allow_registry_from_other_zone": False}})
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance())
    await nodes.cluster("a").flush()
    nodes.clock.advance(15)
    held = canonical(instance())

    def refuse(*_: Any) -> None:
        raise AssertionError("the body was decoded")

    with monkeypatch.context() as patched:
        patched.setattr(Request, "json", refuse)
        assert OK_BODY == await apis["b"].call(f"{REPLICATE}/heartbeat.json",
                                               content=b'{"instances":[' + held + b"]}")
    assert leases_answer(copy(instance(), 0)) == await apis["b"].call(
        LEASES, {"regionId": REGION})

    assert OK_BODY == await apis["b"].call(f"{REPLICATE}/heartbeat.json",
                                           content=b'{"instances":[' + held + b","
                                           + canonical(OTHER) + b"]}")
    assert leases_answer(copy(instance(), 0), copy(OTHER, 0, START_MS + 15000, owner=None)
                         ) == await apis["b"].call(LEASES, {"regionId": REGION})


async def test_a_clients_large_batch_is_remembered_and_a_peers_is_not(nodes: Nodes) -> None:
    """A client's batch of HELD_BATCH_MIN instances sent as held to A twice: the second is
    found from its text (core/renewal.py held_again) and replicated as held all the same; B,
    which gets both as a peer's heartbeats, renews them and remembers none."""
    apis = await nodes.build()
    await nodes.poll("a")
    batch = [instance(f"10.0.3.{n + 1}:8080") for n in range(HELD_BATCH_MIN)]
    assert OK_BODY == await apis["a"].register(*batch)
    await nodes.cluster("a").flush()
    body = b'{"instances":[' + b",".join(canonical(i) for i in batch) + b"]}"
    for _ in range(2):
        nodes.clock.advance(5)
        assert OK_BODY == await apis["a"].call("/api/registry/heartbeat.json", content=body)
        await nodes.cluster("a").flush()
    a, b = apis["a"].node.registry, apis["b"].node.registry
    assert ((1, 1), (0, 0)) == ((len(a.held_batches), a.held_batches.hits),
                                (len(b.held_batches), b.held_batches.hits))
    assert leases_answer(*(copy(i, 0) for i in batch)) == await apis["b"].call(
        LEASES, {"regionId": REGION})


async def test_a_starting_node_leaves_a_peers_heartbeat_of_an_unknown_instance_to_its_copy(
        nodes: Nodes) -> None:
    """While a node is starting (it copies a peer's registry), a replicated heartbeat of an
    instance it does not hold succeeds and registers nothing: the copy brings the instance with
    its lease's age. Once the node is up, the same heartbeat registers it (a lost register
    heals)."""
    apis = await nodes.build(starting=("a",))
    beat = b'{"instances":[' + canonical(OTHER) + b"]}"

    assert OK_BODY == await apis["a"].call(f"{REPLICATE}/heartbeat.json", content=beat)
    assert (leases_answer(), "starting") == (
        await apis["a"].call(LEASES, {"regionId": REGION}), apis["a"].node.state.status)

    await nodes.poll("a")
    assert await nodes.cluster("a").bootstrap_step(0.0)
    assert OK_BODY == await apis["a"].call(f"{REPLICATE}/heartbeat.json", content=beat)
    assert leases_answer(copy(OTHER, 0, owner=None)) == await apis["a"].call(
        LEASES, {"regionId": REGION})


async def test_unregister_is_replicated(nodes: Nodes) -> None:
    """A client's unregister on A removes the instance from B and C once flushed."""
    apis = await nodes.build()
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance(), OTHER)
    await nodes.cluster("a").flush()

    assert OK_BODY == await apis["a"].unregister(instance())
    await nodes.cluster("a").flush()

    assert [[service_answer(SERVICE), service_answer("other.service", OTHER)]] * 2 == [
        [await apis[p].call(SERVICE_PATH, service_body(s)) for s in (SERVICE, "other.service")]
        for p in "bc"]


async def test_replicated_writes_are_not_replicated_again(nodes: Nodes) -> None:
    """A write B received from A is not queued by B for anyone; B's own client writes are."""
    apis = await nodes.build()
    await nodes.poll()
    assert OK_BODY == await apis["a"].register(instance())
    await nodes.cluster("a").flush()

    received = [(len(nodes.link("b", p).queue), nodes.link("b", p).queue.stats.submitted)
                for p in "ac"]
    assert OK_BODY == await apis["b"].register(OTHER)

    assert ([(0, 0), (0, 0)], [(1, 1), (1, 1)]) == (
        received, [(len(nodes.link("b", p).queue), nodes.link("b", p).queue.stats.submitted)
                   for p in "ac"])


async def test_writes_are_skipped_for_a_peer_that_does_not_answer(nodes: Nodes) -> None:
    """A write while C does not answer (polled `unknown`) is queued for B only and counted as
    skipped for C; C never gets it."""
    apis = await nodes.build()
    nodes.router.down.add("c.test")
    await nodes.poll("a")

    assert OK_BODY == await apis["a"].register(instance(), OTHER)
    await nodes.cluster("a").flush()

    assert ([peer("b", "up", True, submitted=2, sent=2, requests=1, lag=lag(2)),
             peer("c", skipped=2, lastError="ConnectError: c.test refused the connection",
                  unansweredForMs=0)],
            [service_answer(SERVICE, instance()), service_answer(SERVICE)]) == (
        nodes.cluster("a").status()["peers"],
        [await apis[p].call(SERVICE_PATH, service_body()) for p in "bc"])


async def test_writes_are_queued_for_a_starting_peer(nodes: Nodes) -> None:
    """A starting peer takes replication (so it misses nothing while it copies)."""
    apis = await nodes.build(starting=("c",))
    await nodes.poll("a")

    assert OK_BODY == await apis["a"].register(instance())
    await nodes.cluster("a").flush()

    assert (1, leases_answer(copy(instance()))) == (
        nodes.link("a", "c").queue.stats.sent, await apis["c"].call(LEASES, {"regionId": REGION}))


async def test_a_replicated_register_carries_owners_checked_as_values(nodes: Nodes) -> None:
    """`owners` beside `instances`: one each, printable, at most 256 characters, else the whole
    request is `bad-request` and nothing is registered; a valid one owns the copy."""
    apis = await nodes.build({"a": ZONE, "b": ZONE})
    register = f"{REPLICATE}/register.json"
    answers = [await apis["b"].call(register, {"instances": [instance()], "owners": owners})
               for owners in (["team-a", "extra"], ["team\u0007a"], ["x" * 257])]
    refused = [a["responseStatus"]["errorCode"] for a in answers]
    held_before = await apis["b"].call(LEASES, {"regionId": REGION})
    ok = await apis["b"].call(register, {"instances": [instance(), OTHER],
                                         "owners": ["team-a", None]})
    assert (["bad-request"] * 3, leases_answer(), OK_BODY) == (refused, held_before, ok)
    copies = (await apis["b"].call(LEASES, {"regionId": REGION}))["leases"]
    assert [("10.0.0.5:8080", "team-a"), ("10.0.0.6:8080", None)] == sorted(
        (c["instance"]["instanceId"], c.get("owner")) for c in copies)


# --- bootstrap -------------------------------------------------------------------------------


async def test_bootstrap_copies_from_an_up_peer_of_the_same_zone(nodes: Nodes) -> None:
    """A starting node copies the leases of an up peer of its own zone before one of another
    zone listed first, keeping their age and creation time, and is then up."""
    apis = await nodes.build({"b": "zone-2", "a": ZONE, "c": ZONE}, starting=("a",))
    assert OK_BODY == await apis["b"].call(f"{REPLICATE}/register.json", {"instances": [OTHER]})
    assert OK_BODY == await apis["c"].call(f"{REPLICATE}/register.json",
                                           {"instances": [instance()]})
    nodes.clock.advance(2)
    await nodes.poll("a")

    done = await nodes.cluster("a").bootstrap_step(0.5)

    assert (True, "up", {"state": "done", "reason": "copied 1 instances from http://c.test",
                         "source": url("c"), "instances": 1, "seconds": 0.0}) == (
        done, apis["a"].node.state.status, nodes.cluster("a").bootstrap)
    assert leases_answer(copy(instance(), 2000, owner=None)) == await apis["a"].call(
        LEASES, {"regionId": REGION})
    assert [("c.test", LEASES)] == [c for c in nodes.router.calls if c[1] == LEASES]


async def test_bootstrap_falls_back_to_another_up_peer(nodes: Nodes) -> None:
    """When the copy from the same-zone peer fails, the other zone's up peer is copied."""
    apis = await nodes.build({"b": "zone-2", "a": ZONE, "c": ZONE}, starting=("a",))
    assert OK_BODY == await apis["b"].call(f"{REPLICATE}/register.json", {"instances": [OTHER]})
    nodes.router.faults["c.test"] = lambda r: (httpx.Response(500, text="Internal Server Error")
                                               if r.url.path in (CHECKSUMS, LEASES) else None)
    await nodes.poll("a")

    done = await nodes.cluster("a").bootstrap_step(0.0)

    assert (True, {"state": "done", "reason": "copied 1 instances from http://b.test",
                   "source": url("b"), "instances": 1, "seconds": 0.0},
            leases_answer(copy(OTHER, owner=None))) == (
        done, nodes.cluster("a").bootstrap,
        await apis["a"].call(LEASES, {"regionId": REGION}))


def fleet(services: int) -> list[dict[str, Any]]:
    """An instance in each of `services` services."""
    return [instance(f"10.0.1.{n}:8080", serviceId=f"paged.service.{n}")
            for n in range(services)]


async def test_bootstrap_copies_a_registry_a_page_of_services_at_a_time(
        nodes: Nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy asks for the peer's services (checksums.json), then their leases a page of
    _COPY_SERVICES services a request, and ends with the peer's registry."""
    monkeypatch.setattr(repair_module, "_COPY_SERVICES", 2)
    apis = await nodes.build(starting=("a",))
    assert OK_BODY == await apis["b"].call(f"{REPLICATE}/register.json",
                                           {"instances": fleet(5)})
    asked: list[list[str]] = []

    def record(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == LEASES:
            asked.append(sorted(msgspec.json.decode(request.content)["serviceIds"]))
        return None  # let it through

    nodes.router.faults["b.test"] = record
    await nodes.poll("a")

    done = await nodes.cluster("a").bootstrap_step(0.0)

    assert (True, "copied 5 instances from http://b.test", 3,
            sorted(f"paged.service.{n}" for n in range(5))) == (
        done, nodes.cluster("a").bootstrap["reason"], len(asked),
        sorted(key for page in asked for key in page))
    assert [2, 2, 1] == [len(page) for page in asked]
    assert (await apis["b"].call(LEASES, {"regionId": REGION})) == await apis["a"].call(
        LEASES, {"regionId": REGION})
    assert apis["b"].node.registry.checksum == apis["a"].node.registry.checksum


async def test_a_copy_whose_page_fails_is_tried_again_and_keeps_what_it_merged(
        nodes: Nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page that fails ends the copy as failed (the node stays starting and tries again);
    the pages merged before it stay, and the next attempt copies the rest."""
    monkeypatch.setattr(repair_module, "_COPY_SERVICES", 2)
    apis = await nodes.build(starting=("a", "c"))  # b is the only up peer
    assert OK_BODY == await apis["b"].call(f"{REPLICATE}/register.json",
                                           {"instances": fleet(5)})
    pages = 0

    def second_page_fails(request: httpx.Request) -> httpx.Response | None:
        nonlocal pages
        if request.url.path == LEASES:
            pages += 1
            if pages == 2:
                return httpx.Response(500, text="Internal Server Error")
        return None

    nodes.router.faults["b.test"] = second_page_fails
    await nodes.poll("a")

    failed = (await nodes.cluster("a").bootstrap_step(0.0), apis["a"].node.state.status,
              apis["a"].node.registry.instance_count)
    assert (False, "starting", 2) == failed
    assert (True, "up", 5) == (await nodes.cluster("a").bootstrap_step(1.0),
                               apis["a"].node.state.status,
                               apis["a"].node.registry.instance_count)
    assert apis["b"].node.registry.checksum == apis["a"].node.registry.checksum


async def test_a_copy_whose_page_holds_a_copy_that_does_not_decode_fails_cleanly(
        nodes: Nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page whose copies are found but one does not decode fails the copy when that chunk is
    merged (the next page, asked for meanwhile, is let go); the node stays starting."""
    monkeypatch.setattr(repair_module, "_COPY_SERVICES", 1)
    apis = await nodes.build(starting=("a", "c"))
    assert OK_BODY == await apis["b"].call(f"{REPLICATE}/register.json",
                                           {"instances": fleet(3)})
    bad = ('{"leases":[{"ageMs":"soon","createdMs":1,"instance":{}}],"responseStatus":'
           '{"errorCode":"success","message":"","status":"success"}}')
    nodes.router.faults["b.test"] = lambda r: (httpx.Response(200, text=bad)
                                               if r.url.path == LEASES else None)
    await nodes.poll("a")

    assert (False, "starting", 0) == (await nodes.cluster("a").bootstrap_step(0.0),
                                      apis["a"].node.state.status,
                                      apis["a"].node.registry.instance_count)


async def test_a_copy_reads_a_leases_answer_not_written_as_our_nodes_write_it(
        nodes: Nodes) -> None:
    """A page whose answer is valid JSON in another form (spaces, keys in another order) is
    read whole, leniently, and copied all the same."""
    apis = await nodes.build(starting=("a",))
    assert OK_BODY == await apis["b"].call(f"{REPLICATE}/register.json",
                                           {"instances": fleet(3)})
    answer = await apis["b"].call(LEASES, {"regionId": REGION})
    spaced = json.dumps({"responseStatus": answer["responseStatus"],
                         "leases": answer["leases"]}, indent=1)
    nodes.router.faults["b.test"] = lambda r: (httpx.Response(200, text=spaced)
                                               if r.url.path == LEASES else None)
    await nodes.poll("a")

    assert (True, "copied 3 instances from http://b.test") == (
        await nodes.cluster("a").bootstrap_step(0.0), nodes.cluster("a").bootstrap["reason"])
    assert apis["b"].node.registry.checksum == apis["a"].node.registry.checksum


async def test_bootstrap_retries_when_every_up_peer_fails(nodes: Nodes) -> None:
    """When every up peer's copy fails the node stays starting and says it will try again."""
    apis = await nodes.build(starting=("a", "c"))
    assert OK_BODY == await apis["b"].call(f"{REPLICATE}/register.json", {"instances": [OTHER]})
    nodes.router.faults["b.test"] = lambda r: (httpx.Response(500, text="Internal Server Error")
                                               if r.url.path == LEASES else None)
    await nodes.poll("a")

    assert (False, "starting", {"state": "every up peer failed; trying again"}) == (
        await nodes.cluster("a").bootstrap_step(30.0), apis["a"].node.state.status,
        nodes.cluster("a").bootstrap)


async def test_bootstrap_of_a_new_cluster(nodes: Nodes) -> None:
    """When every peer answered and none is up (all starting together), the node comes up."""
    apis = await nodes.build(starting=("a", "b", "c"))
    await nodes.poll("a")

    assert (True, "up", {"state": "done", "reason": "no peer is up and all 2 answered "
                         "(2 starting): a new cluster", "waited": 0.0}) == (
        await nodes.cluster("a").bootstrap_step(0.0), apis["a"].node.state.status,
        nodes.cluster("a").bootstrap)


async def test_bootstrap_waits_for_an_unknown_peer_until_the_timeout(nodes: Nodes) -> None:
    """With a peer not answering and none up, the node waits until bootstrap_timeout, then comes
    up empty."""
    apis = await nodes.build(starting=("a", "b"), settings={"a": {"bootstrap_timeout": 10.0}})
    nodes.router.down.add("c.test")
    await nodes.poll("a")
    cluster = nodes.cluster("a")

    waiting = (await cluster.bootstrap_step(9.9), apis["a"].node.state.status,
               cluster.bootstrap)
    assert (False, "starting", {"state": "waiting for peers to answer"}) == waiting
    assert (True, "up", {"state": "done", "reason": "no peer up after 10 s (1 of 2 "
                         "unreachable): starting empty", "waited": 10.0}) == (
        await cluster.bootstrap_step(10.0), apis["a"].node.state.status, cluster.bootstrap)


# --- repair ----------------------------------------------------------------------------------


async def test_repair_imports_what_only_the_peer_has(nodes: Nodes) -> None:
    """An instance only B holds (received by B's replication endpoint) is copied by A's repair
    with B's lease; the next round finds them in sync."""
    apis = await nodes.build()
    await nodes.poll("a")
    assert OK_BODY == await apis["b"].call(f"{REPLICATE}/register.json",
                                           {"instances": [instance()]})
    nodes.clock.advance(3)
    link = nodes.link("a", "b")

    changed = await nodes.cluster("a").repair(link)
    again = await nodes.cluster("a").repair(link)

    assert (1, 0) == (changed, again)
    assert [leases_answer(copy(instance(), 3000, owner=None))] * 2 == [
        await apis[p].call(LEASES, {"regionId": REGION}) for p in "ab"]
    assert peer("b", "up", True, repair={"rounds": 2, "inSync": 1, "services": 1,
                                         "instances": 1, "staleUnregistered": 0}) == (
        nodes.cluster("a").status()["peers"][0])


async def test_a_difference_that_settles_before_the_recheck_is_not_repaired(
        nodes: Nodes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A register on A not yet replicated makes the totals differ; it reaches B while A waits to
    ask again, so the round finds them in sync and fetches nothing."""
    apis = await nodes.build()
    await nodes.poll("a")
    cluster = nodes.cluster("a")
    assert OK_BODY == await apis["a"].register(instance())
    sleep = asyncio.sleep

    async def flushing(delay: float) -> None:
        if delay == repair_module.RECHECK_DELAY:
            await cluster.flush()  # the write in flight arrives meanwhile
        await sleep(0)

    monkeypatch.setattr(repair_module.asyncio, "sleep", flushing)
    changed = await cluster.repair(nodes.link("a", "b"))

    assert (0, {"rounds": 1, "inSync": 1, "services": 0, "instances": 0,
                "staleUnregistered": 0}) == (changed, cluster.status()["peers"][0]["repair"])


async def test_repair_restores_a_lease_this_node_lost(nodes: Nodes) -> None:
    """A lease that expired on A while B kept it renewed comes back from B with B's renewal."""
    apis = await nodes.build()
    await nodes.poll("a")
    for p in "ab":
        assert OK_BODY == await apis[p].call(f"{REPLICATE}/register.json",
                                             {"instances": [instance()]})
    nodes.clock.advance(15)
    assert OK_BODY == await apis["b"].call(f"{REPLICATE}/heartbeat.json",
                                           {"instances": [instance()]})
    apis["a"].sweep(10)
    lost = await apis["a"].call(LEASES, {"regionId": REGION})

    changed = await nodes.cluster("a").repair(nodes.link("a", "b"))

    assert (leases_answer(), 1, [leases_answer(copy(instance(), 10000, owner=None))] * 2) == (
        lost, changed, [await apis[p].call(LEASES, {"regionId": REGION}) for p in "ab"])


async def test_repair_unregisters_at_the_peer_what_this_node_unregistered(nodes: Nodes) -> None:
    """An instance A unregistered while B did not answer is not copied back from B: A queues
    the unregister for B, and a flush removes it there."""
    apis = await nodes.build()
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance())
    await nodes.cluster("a").flush()
    nodes.router.down.add("b.test")
    await nodes.poll("a")
    nodes.clock.advance(1)
    assert OK_BODY == await apis["a"].unregister(instance())
    await nodes.cluster("a").flush()
    nodes.router.down.clear()
    await nodes.poll("a")
    link = nodes.link("a", "b")

    changed = await nodes.cluster("a").repair(link)
    queued = len(link.queue)
    still_there = await apis["b"].call(SERVICE_PATH, service_body())
    await nodes.cluster("a").flush()

    assert (0, 1, service_answer(SERVICE, instance()), service_answer(SERVICE)) == (
        changed, queued, still_there, await apis["b"].call(SERVICE_PATH, service_body()))
    assert (0, peer("b", "up", True, submitted=2, sent=2, requests=2, lag=lag(2), skipped=1,
                    lastAnswerTime=START_MS + 1000, repair={"rounds": 2, "inSync": 1, "services": 1,
                                             "instances": 0, "staleUnregistered": 1})) == (
        await nodes.cluster("a").repair(link), nodes.cluster("a").status()["peers"][0])


# --- failing peers ---------------------------------------------------------------------------


def failing(times: int, answer: httpx.Response | None = None) -> Fault:
    """A fault answering the first `times` replication requests with `answer` (a 500 with a
    text body unless given), then letting requests through."""
    left = [times]

    def fault(request: httpx.Request) -> httpx.Response | None:
        if not request.url.path.startswith(REPLICATE) or left[0] <= 0:
            return None
        left[0] -= 1
        return answer or httpx.Response(500, text="Internal Server Error")

    return fault


async def test_a_peer_failing_with_500_is_retried(nodes: Nodes) -> None:
    """A task whose request fails with a 500 (a body that is not JSON) goes back to the queue
    and is sent again until it is delivered; the success resets the peer's backoff."""
    apis = await nodes.build()
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance())
    nodes.router.faults["b.test"] = failing(2)

    await nodes.cluster("a").flush()

    assert (peer("b", "up", True, submitted=1, sent=1, retried=2, sendFailures=2, requests=3,
                 lag=lag(1), lastError="DecodeError: malformed JSON: JSON is malformed: invalid "
                 "character (byte 0)"), service_answer(SERVICE, instance())) == (
        nodes.cluster("a").status()["peers"][0],
        await apis["b"].call(SERVICE_PATH, service_body()))


async def test_a_peer_refusing_connections_is_retried_until_the_attempts_are_spent(
        nodes: Nodes) -> None:
    """A peer that answered a poll but then refuses connections gets each task
    replication_retries times; then the task is dropped; every failure backs the peer off."""
    apis = await nodes.build(settings={"a": {"replication_retries": 3}})
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance())
    nodes.router.down.add("b.test")

    await nodes.cluster("a").flush()

    assert peer("b", "up", True, submitted=1, retried=2, droppedFailed=1, sendFailures=3,
                requests=3, backoffFailures=3,
                lastError="ConnectError: b.test refused the connection") == (
        nodes.cluster("a").status()["peers"][0])


async def test_a_rate_limited_peer_is_retried(nodes: Nodes) -> None:
    """A peer answering `rate-limited` gets the task again (then it is dropped when its
    attempts are spent), and is backed off."""
    apis = await nodes.build(settings={"a": {"replication_retries": 3},
                                       "b": {"rate_limits": {"replication.register": 0}}})
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance())

    await nodes.cluster("a").flush()

    assert (peer("b", "up", True, submitted=1, retried=2, droppedFailed=1, sendFailures=3,
                 requests=3, backoffFailures=3, lastError="rate-limited: Request is rate "
                 "limited."), 0) == (
        nodes.cluster("a").status()["peers"][0], apis["b"].node.registry.instance_count)


async def test_a_rate_limited_peer_that_recovers_gets_the_write(nodes: Nodes) -> None:
    """A rate-limited answer is retried and the next accepted attempt delivers the write."""
    apis = await nodes.build()
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance())
    limited = httpx.Response(200, json=registry_fail("rate-limited", "Request is rate limited."))
    nodes.router.faults["b.test"] = failing(1, limited)

    await nodes.cluster("a").flush()

    assert (1, 1, 0, service_answer(SERVICE, instance())) == (
        nodes.link("a", "b").queue.stats.retried, nodes.link("a", "b").queue.stats.sent,
        nodes.link("a", "b").queue.failures,
        await apis["b"].call(SERVICE_PATH, service_body()))


async def test_a_bad_request_answer_is_dropped(nodes: Nodes) -> None:
    """A peer answering the whole request `bad-request` gets no retry: every task is dropped
    and the peer is not backed off."""
    apis = await nodes.build()
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance(), OTHER)
    refused = httpx.Response(200, json=registry_fail("bad-request", "no such shape"))
    nodes.router.faults["b.test"] = failing(5, refused)

    await nodes.cluster("a").flush()

    assert (peer("b", "up", True, submitted=2, droppedFailed=2, requests=1,
                 lastError="bad-request: no such shape"), 0) == (
        nodes.cluster("a").status()["peers"][0], apis["b"].node.registry.instance_count)


async def test_a_no_permission_answer_is_dropped(nodes: Nodes) -> None:
    """A peer answering the whole request `no-permission` gets no retry: the task is dropped."""
    apis = await nodes.build()
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance())
    refused = httpx.Response(200, json=registry_fail("no-permission", "not yours"))
    nodes.router.faults["b.test"] = failing(5, refused)

    await nodes.cluster("a").flush()

    assert peer("b", "up", True, submitted=1, droppedFailed=1, requests=1,
                lastError="no-permission: not yours") == nodes.cluster("a").status()["peers"][0]


async def test_instances_a_peer_refuses_are_dropped(nodes: Nodes) -> None:
    """Instances a peer refuses one by one (`no-permission`: it is of another region) are
    dropped; the others of the batch count as sent."""
    apis = await nodes.build(settings={"b": {"region": "FRA"}})
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance(), OTHER)

    await nodes.cluster("a").flush()

    assert peer("b", "up", True, submitted=2, droppedFailed=2, requests=1) == (
        nodes.cluster("a").status()["peers"][0])


async def test_large_batches_are_sent_gzipped(nodes: Nodes) -> None:
    """A batch of 64 KiB or more is sent gzipped and arrives whole."""
    apis = await nodes.build()
    await nodes.poll("a")
    many = [instance(f"10.0.{i // 250}.{i % 250}:8080", metadata={"blob": "x" * 200})
            for i in range(300)]
    assert OK_BODY == await apis["a"].register(*many)
    encodings: list[str | None] = []

    def spy(request: httpx.Request) -> None:
        encodings.append(request.headers.get("content-encoding"))

    nodes.router.faults["b.test"] = spy
    await nodes.cluster("a").flush()

    assert (["gzip"], service_answer(SERVICE, *many)) == (
        encodings, await apis["b"].call(SERVICE_PATH, service_body()))


async def test_batches_are_at_most_replication_batch(nodes: Nodes) -> None:
    """A flush sends at most replication_batch instances per request."""
    apis = await nodes.build(settings={"a": {"replication_batch": 2}})
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(*(instance(f"10.0.0.{i}:80") for i in range(5)))

    await nodes.cluster("a").flush()

    assert (3, 5, 5) == (nodes.link("a", "b").requests, nodes.link("a", "b").queue.stats.sent,
                         apis["b"].node.registry.instance_count)


# --- rate limits and wire shapes of the new endpoints ----------------------------------------


async def test_checksums_and_leases_are_rate_limited(make_api: MakeApi) -> None:
    """The replication limiter refuses checksums and leases with their null payloads."""
    api = await make_api(**with_a_peer(rate_limits={"replication.checksums": 0,
                                                     "replication.leases": 0}))
    api.client.headers.update(PEER_HEADERS)
    limited = fail("rate-limited", "Request is rate limited.")

    assert [{"checksum": None, "responseStatus": limited, "services": None},
            {"leases": None, "responseStatus": limited}] == [
        await api.call(CHECKSUMS, {"regionId": REGION}),
        await api.call(LEASES, {"regionId": REGION})]


async def test_answers_match_their_wire_shapes(nodes: Nodes) -> None:
    """checksums, leases and replication.json answers decode strictly (every field, no extra)
    as ChecksumsResponse, LeasesResponse and ReplicationStatusResponse."""
    apis = await nodes.build()
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance())
    await nodes.cluster("a").flush()
    await nodes.cluster("a").repair(nodes.link("a", "b"))
    a = apis["a"]
    answers = [(await a.post(CHECKSUMS, {"regionId": REGION}), wire.ChecksumsResponse),
               (await a.post(LEASES, {"regionId": REGION}), wire.LeasesResponse),
               (await a.get(REPLICATION), wire.ReplicationStatusResponse)]

    decoded = [msgspec.to_builtins(msgspec.json.decode(r.content, type=kind))
               for r, kind in answers]

    assert [r.json() for r, _ in answers] == decoded


# --- more of the shell's rules ---------------------------------------------------------------


async def test_a_register_and_unregister_queued_together_reach_the_peer_as_one(
        nodes: Nodes) -> None:
    """Writes of one instance coalesce in the queue: a register then an unregister is sent as
    the unregister alone, and a heartbeat never replaces a queued register."""
    apis = await nodes.build()
    await nodes.poll("a")
    a = apis["a"]
    assert [OK_BODY] * 4 == [await a.register(instance()), await a.unregister(instance()),
                             await a.register(OTHER), await a.heartbeat(OTHER)]
    tasks = {t.instance.instance_id: t.operation
             for t in nodes.link("a", "b").queue.take(10, nodes.clock.monotonic())}

    assert ({"10.0.0.5:8080": "unregister", "10.0.0.6:8080": "register"}, 4, 2) == (
        tasks, nodes.link("a", "b").queue.stats.submitted,
        nodes.link("a", "b").queue.stats.coalesced)


async def test_writes_are_skipped_for_a_peer_forced_down(nodes: Nodes) -> None:
    """A peer an operator forced down is polled `down` (serving nothing) and gets no writes."""
    apis = await nodes.build()
    assert "down" == (await apis["b"].call(ADMIN, {"status": "down"}))["nodeStatus"]["status"]
    await nodes.poll("a")

    assert OK_BODY == await apis["a"].register(instance())

    assert peer("b", "down", False, skipped=1) == nodes.cluster("a").status()["peers"][0]
    assert {"nodes": [{"url": url("a"), "zone": zone_json()},
                      {"url": url("c"), "zone": zone_json()}],
            "responseStatus": SUCCESS} == await apis["a"].call(
        "/api/cluster/up-registry-nodes.json", {"regionId": REGION, "zoneId": ZONE})


async def test_up_nodes_honour_the_peers_other_zone_flags(nodes: Nodes) -> None:
    """A peer refusing other zones is listed only to clients of its own zone."""
    apis = await nodes.build({"a": ZONE, "d": "zone-2"}, settings={
        "d": {"allow_registry_from_other_zone": False,
              "allow_discovery_from_other_zone": False}})
    await nodes.poll("a")
    a_node = {"url": url("a"), "zone": zone_json()}
    d_node = {"url": url("d"), "zone": zone_json("zone-2")}
    path = "/api/cluster/up-registry-nodes.json"

    assert [{"nodes": [a_node], "responseStatus": SUCCESS},
            {"nodes": [a_node, d_node], "responseStatus": SUCCESS}] == [
        await apis["a"].call(path, {"regionId": REGION, "zoneId": ZONE}),
        await apis["a"].call(path, {"regionId": REGION, "zoneId": "zone-2"})]


async def test_a_node_forced_down_then_auto_bootstraps_again(nodes: Nodes) -> None:
    """A clustered node forced down and then `auto` starts again and copies what it missed from
    an up peer."""
    apis = await nodes.build()
    await apis["a"].call(ADMIN, {"status": "down"})
    assert OK_BODY == await apis["b"].call(f"{REPLICATE}/register.json",
                                           {"instances": [instance()]})
    await apis["a"].call(ADMIN, {"status": "auto"})
    await nodes.poll("a")

    assert (True, "up", {"state": "done", "reason": "copied 1 instances from http://b.test",
                         "source": url("b"), "instances": 1, "seconds": 0.0},
            lookup_answer(service(SERVICE, instance()))) == (
        await nodes.cluster("a").bootstrap_step(0.0), apis["a"].node.state.status,
        nodes.cluster("a").bootstrap, await apis["a"].lookup())


async def test_repair_of_a_peer_of_another_region_fails(nodes: Nodes) -> None:
    """A peer refusing the checksum comparison (another region) makes repair raise, and no
    round is counted."""
    await nodes.build(settings={"b": {"region": "FRA"}})
    await nodes.poll("a")

    with pytest.raises(ValueError, match=r"^checksums: no-permission$"):
        await nodes.cluster("a").repair(nodes.link("a", "b"))
    assert NO_REPAIR == nodes.cluster("a").status()["peers"][0]["repair"]


async def test_a_node_with_dns_peers_copies_before_coming_up(nodes: Nodes) -> None:
    """A starting node whose peers come from DNS copies an up peer's registry before it is up
    (it does not come up alone before the name is resolved)."""
    apis = await nodes.build({"a": ZONE, "b": ZONE}, starting=("a",),
                             settings={"a": {"peers": "", "peers_dns": "peers.test:80"}})
    assert OK_BODY == await apis["b"].call(f"{REPLICATE}/register.json",
                                           {"instances": [instance()]})
    nodes.router.apps["10.0.0.2"] = nodes.router.apps["b.test"]
    cluster = nodes.cluster("a")

    async def resolve(name: str, port: int) -> list[str]:
        return ["10.0.0.2"]

    assert cluster.dns is not None
    cluster.dns.resolve = resolve
    running = asyncio.create_task(cluster.run())
    try:
        for _ in range(1000):  # loop turns, not time: everything here is in process
            if cluster.bootstrap.get("state") == "done":
                break
            await asyncio.sleep(0)
        outcome = (apis["a"].node.state.status, apis["a"].node.registry.instance_count)
    finally:
        running.cancel()
        await cluster.close()
        await asyncio.gather(running, *(link.sender for link in cluster.links.values()
                                        if link.sender is not None), return_exceptions=True)

    assert ("up", 1) == outcome


async def test_replication_batches_are_not_held_to_the_client_max_batch(nodes: Nodes) -> None:
    """Nodes sharing a max_batch smaller than replication_batch still replicate every write:
    a batch a peer sends is not refused by the limit on a client's batch."""
    apis = await nodes.build(settings={h: {"max_batch": 1} for h in "abc"})
    await nodes.poll("a")
    assert [OK_BODY] * 2 == [await apis["a"].register(instance()),
                             await apis["a"].register(OTHER)]

    await nodes.cluster("a").flush()

    assert (0, 2) == (nodes.link("a", "b").queue.stats.dropped_failed,
                      apis["b"].node.registry.instance_count)


# --- metrics -----------------------------------------------------------------------------------


async def test_replication_metrics_per_peer(nodes: Nodes) -> None:
    """/metrics of a node with peers gives each peer's status, queue, counters and repairs."""
    apis = await nodes.build()
    await nodes.poll("a")
    nodes.router.down.add("c.test")
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance(), OTHER)
    await nodes.cluster("a").flush()

    text = (await apis["a"].get("/metrics")).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples
               if s.name.startswith(("artemis_peer", "artemis_replication",
                                     "artemis_anti_entropy"))
               and "quantile" not in s.labels}
    b, c = (("peer", url("b")),), (("peer", url("c")),)
    expected = {}
    for peer, up, sent, skipped in ((b, 1.0, 2.0, 0.0), (c, 0.0, 0.0, 2.0)):
        expected.update({
            ("artemis_peer_up", peer): up, ("artemis_replication_queue_depth", peer): 0.0,
            ("artemis_replication_sent_total", peer): sent,
            ("artemis_replication_coalesced_total", peer): 0.0,
            ("artemis_replication_retried_total", peer): 0.0,
            ("artemis_replication_skipped_total", peer): skipped,
            ("artemis_replication_send_failures_total", peer): 0.0,
            ("artemis_anti_entropy_repaired_instances_total", peer): 0.0,
            ("artemis_anti_entropy_rounds_total", peer): 0.0,
            **{("artemis_replication_dropped_total", (("peer", peer[0][1]), ("reason", r))): 0.0
               for r in ("expired", "failed", "overflow")},
            # every acknowledged write by its lag (0 on the fake clock: all in the first bucket)
            **{("artemis_replication_ack_seconds_bucket", (("le", le), ("peer", peer[0][1]))):
               sent for le in ("0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
                               "0.25", "0.5", "1.0", "2.5", "5.0", "+Inf")},
            ("artemis_replication_ack_seconds_count", peer): sent,
            ("artemis_replication_ack_seconds_sum", peer): 0.0,
        })
    cpu = samples.pop(("artemis_replication_cpu_seconds_total", ()))
    expected.update({("artemis_peer_auth_refused_total", (("reason", reason),)): 0.0
                     for reason in ("alone", "missing", "wrong")})
    assert (expected, True) == (samples, cpu >= 0.0)


def test_each_acknowledged_write_is_counted_by_its_lag() -> None:
    """A write counts in the first bucket whose bound it does not exceed (a bound is
    inclusive, as Prometheus' `le`); one later than every bound counts only in the total."""
    link = PeerLink(PeerSpec("zone-1", url("b")), PeerQueue(QueueConfig()))
    link.acknowledged(100.0, [100.0, 99.9995, 99.9])  # lags 0, 0.5 ms, 100 ms
    link.acknowledged(200.0, [199.7, 190.0])  # 300 ms, 10 s
    link.acknowledged(300.0, [299.0, 299.999])  # out of order (a retried write): 1 s, 1 ms
    assert {"leMs": [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
                     5000.0], "cumulative": [3, 3, 3, 3, 3, 3, 4, 4, 5, 6, 6, 6], "count": 7,
            "sumMs": 11401.5} == link.lag_buckets()
    assert 7 == len(link.lag)


# --- the cluster credential --------------------------------------------------------------------


async def test_every_call_to_a_peer_carries_the_cluster_secret(nodes: Nodes) -> None:
    """Status polls, replicated writes, bootstrap copies and repair checksums all carry the
    cluster secret (and the node's id)."""
    apis = await nodes.build(starting=("a",))
    seen: list[tuple[str, str | None, str | None]] = []

    def record(request: httpx.Request) -> httpx.Response | None:
        seen.append((request.url.path, request.headers.get("x-artemis-cluster-secret"),
                     request.headers.get("x-artemis-node-id")))
        return None  # let it through

    assert OK_BODY == await apis["b"].call(f"{REPLICATE}/register.json", {"instances": [OTHER]})
    nodes.router.faults["b.test"] = record
    await nodes.poll("a")
    assert await nodes.cluster("a").bootstrap_step(0.0)
    assert OK_BODY == await apis["a"].register(instance())
    await nodes.cluster("a").flush()
    await nodes.cluster("a").repair(nodes.link("a", "b"))
    paths = {path for path, _, _ in seen}
    assert ({"/api/status/node.json", "/api/replication/registry/leases.json",
             "/api/replication/registry/register.json",
             "/api/replication/registry/checksums.json"}, {CLUSTER_SECRET},
            {apis["a"].node.node_id}) == (
        paths, {secret for _, secret, _ in seen}, {node for _, _, node in seen})


async def test_a_peer_with_another_secret_gets_nothing(nodes: Nodes) -> None:
    """A node whose secret differs is refused by its peers: its writes are dropped
    (no-permission is not retried), its repairs fail, and nothing reaches them."""
    apis = await nodes.build(settings={"a": {"cluster_secret": "another-secret-0123456789"}})
    await nodes.poll("a")
    assert OK_BODY == await apis["a"].register(instance())
    await nodes.cluster("a").flush()
    with pytest.raises(ValueError, match="checksums: no-permission"):
        await nodes.cluster("a").repair(nodes.link("a", "b"))
    assert (0, 1, "no-permission: this call is for the cluster's nodes: it needs the cluster "
            "secret in x-artemis-cluster-secret") == (
        apis["b"].node.registry.instance_count,
        nodes.cluster("a").status()["peers"][0]["droppedFailed"], nodes.link("a", "b").last_error)


async def test_a_node_alone_refuses_every_peer_call(api: Api) -> None:
    """A node without peers accepts no replication write or copy, even with a secret it was
    given: no-permission, nothing changes, counted as `alone`."""
    alone = fail("no-permission", "this node has no peers: it accepts no replication, "
                 "bootstrap or repair calls")
    async with api.unchanged():
        answers = [await api.call(f"{REPLICATE}/{op}.json", {"instances": [instance()]},
                                  headers=PEER_HEADERS)
                   for op in ("register", "heartbeat", "unregister")]
        copy_answer = await api.call(LEASES, {"regionId": REGION}, headers=PEER_HEADERS)
    metrics = (await api.get("/metrics")).text
    assert ([{"failedInstances": None, "responseStatus": alone}] * 3,
            {"leases": None, "responseStatus": alone}, 0,
            'artemis_peer_auth_refused_total{reason="alone"} 4.0') == (
        answers, copy_answer, api.node.registry.instance_count,
        next(line for line in metrics.splitlines()
             if line.startswith('artemis_peer_auth_refused_total{reason="alone"')))


@pytest.mark.parametrize(("settings", "problem"), [
    ({"peers": THREE_PEERS}, "a node with peers needs the cluster secret: set --cluster-secret"),
    ({"peers_dns": "peers.test:80"}, "a node with peers needs the cluster secret"),
    ({"peers": THREE_PEERS, "cluster_secret": "x" * 15}, "must be at least 16 characters"),
    ({"cluster_secret": "sixteen chars ok"}, "must be visible ASCII characters only"),
])
def test_the_cluster_secret_is_checked_at_start(settings: dict[str, Any], problem: str) -> None:
    """Peers need a secret (or cluster_insecure); a secret is 16 visible ASCII characters or
    more; the message never quotes it."""
    with pytest.raises(SettingsError, match=problem) as raised:
        Settings.load(None, {}, settings)
    message = str(raised.value)
    assert [False, False] == ["x" * 15 in message, "sixteen" in message]


def test_cluster_insecure_or_a_secret_lets_a_node_with_peers_start() -> None:
    """With cluster_insecure, or a good secret, the settings load; the secret is masked."""
    insecure = Settings.load(None, {}, {"peers": THREE_PEERS, "cluster_insecure": True})
    secret = Settings.load(None, {"ARTEMIS_CLUSTER_SECRET": CLUSTER_SECRET}, {"peers": THREE_PEERS})
    assert (True, CLUSTER_SECRET, "***") == (
        insecure.cluster_insecure, secret.cluster_secret, secret.public()["cluster_secret"])
