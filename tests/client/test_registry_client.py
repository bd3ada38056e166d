"""RegistryClient against nodes in this process (InProcessTransport: HTTP and WebSockets through
the app's ASGI face, no sockets) on a fake clock, and against the scripted fake transport.

The node's loops do not run: leases move only when a test advances the node's clock and sweeps.
The client runs on a fake clock of its own (`client.clock`): its background rounds run when a
test advances that clock, and its waits between tries pass when a test drives it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from artemis import wire
from artemis.client import (
    BadRequest,
    ClientClosed,
    InProcessTransport,
    Instance,
    NoPermission,
    NoServerAvailable,
    RegistryClient,
    TransportError,
)
from artemis.clock import FakeClock
from artemis.core.node_status import DOWN
from tests.client.conftest import (
    REGION,
    ZONE,
    FakeTransport,
    InProcessNode,
    Routed,
    eventually,
    filled,
    instance,
    instances_answer,
    nodes_answer,
    prefer,
)

T = TypeVar("T")
Keep = Callable[[T], T]
REGISTER = "/api/registry/register.json"
HEARTBEAT = "/api/registry/heartbeat.json"
UNREGISTER = "/api/registry/unregister.json"
HEARTBEAT_WS = "/ws/registry/heartbeat"
UP_NODES = "/api/cluster/up-registry-nodes.json"
QUIET = 3600.0  # a heartbeat interval no test waits for: rounds are run by heartbeat_once()
INTERVAL = 5.0  # the heartbeat interval of the tests of background rounds (on the fake clock)


def registry(transport: Any, keep: Keep[Any], seeds: str | list[str] = "http://in-process",
             **options: Any) -> RegistryClient:
    """A client on a FakeClock of its own (`client.clock`)."""
    options = {"region": REGION, "heartbeat_interval": QUIET, "clock": FakeClock(), **options}
    return keep(RegistryClient(seeds, transport=transport, **options))


def clock_of(client: RegistryClient) -> FakeClock:
    assert isinstance(client.clock, FakeClock)
    return client.clock


def lease_renewed(node: InProcessNode, item: Instance) -> float:
    return node.registry.service(item.service_id).leases[item.instance_id.lower()].renewed


# --- register and unregister --------------------------------------------------------------------

async def test_register_puts_the_instance_on_the_node(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """register() registers at once; the node and the client both hold the instance."""
    client = registry(transport, clients)
    await client.register(instance("a"), instance("b"))
    expected = [filled(instance("a")), filled(instance("b"))]
    assert (expected, expected) == (in_process.registered(), client.instances)


async def test_register_fills_region_and_zone_only_where_missing(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """The client's region and zone fill instances that do not name them, and only those."""
    client = registry(transport, clients, zone=ZONE)
    await client.register(instance("a"), instance("b", zone_id="zone-9"))
    expected = [filled(instance("a", zone_id=ZONE)), filled(instance("b", zone_id="zone-9"))]
    assert expected == in_process.registered()


async def test_register_of_an_invalid_instance_raises_bad_request_and_keeps_nothing(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """An instance the node refuses (no url) raises BadRequest; neither side keeps it."""
    client = registry(transport, clients)
    with pytest.raises(BadRequest) as raised:
        await client.register(Instance(service_id="svc", instance_id="no-url"))
    assert ("bad-request", [], [], []) == (raised.value.code, client.instances, client.frames(),
                                           in_process.registered())


async def test_register_batch_with_one_refused_instance_keeps_none(
        transport: InProcessTransport, clients: Keep[Any]) -> None:
    """When any instance of a batch is refused, the client keeps none of the batch."""
    client = registry(transport, clients)
    with pytest.raises(BadRequest):
        await client.register(instance("good"), Instance(service_id="svc", instance_id="bad"))
    assert ([], []) == (client.instances, client.frames())


async def test_register_in_another_region_raises_no_permission(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """An instance of another region is refused no-permission."""
    client = registry(transport, clients)
    with pytest.raises(NoPermission):
        await client.register(instance("a", region_id="FRA"))
    assert ([], []) == (client.instances, in_process.registered())


async def test_unregister_removes_from_node_and_from_heartbeats(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """unregister() removes the instance on the node and stops heartbeating it."""
    client = registry(transport, clients)
    await client.register(instance("a"), instance("b"))
    await client.unregister(instance("a"))
    await client.heartbeat_once()
    expected = [filled(instance("b"))]
    assert (expected, expected, 1) == (in_process.registered(), client.instances,
                                       client.stats["heartbeats"])


async def test_close_unregisters_everything(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """close() unregisters every kept instance and forgets them; closing again does nothing."""
    client = registry(transport, clients)
    await client.register(instance("a"), instance("b", service_id="other"))
    await client.close()
    await client.close()
    assert ([], []) == (in_process.registered(), client.instances)


async def test_closed_client_refuses_work(transport: InProcessTransport,
                                          clients: Keep[Any]) -> None:
    """After close(), register, unregister and start raise ClientClosed."""
    client = registry(transport, clients)
    await client.close()
    refused = []
    for attempt in (client.register(instance("a")), client.unregister(instance("a")),
                    client.start()):
        try:
            await attempt
        except ClientClosed:
            refused.append(True)
    assert [True, True, True] == refused


async def test_close_leaves_an_injected_transport_open(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """A transport handed to the client belongs to the caller: close() does not close it."""
    client = registry(transport, clients)
    await client.register(instance("a"))
    await client.close()
    again = registry(transport, clients)
    await again.register(instance("b"))
    assert [filled(instance("b"))] == in_process.registered()


async def test_context_manager_starts_and_closes(
        in_process: InProcessNode, transport: InProcessTransport) -> None:
    """`async with` starts the client and leaving the block unregisters."""
    async with RegistryClient("http://in-process", region=REGION, transport=transport,
                              heartbeat_interval=QUIET) as client:
        await client.register(instance("a"))
        inside = in_process.registered()
    assert ([filled(instance("a"))], []) == (inside, in_process.registered())


# --- heartbeats ---------------------------------------------------------------------------------

async def test_heartbeat_once_renews_the_lease_over_the_websocket(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """One round renews every lease at the node's current time, over the heartbeat socket."""
    client = registry(transport, clients)
    await client.register(instance("a"), instance("b"))
    before = lease_renewed(in_process, instance("a"))
    in_process.clock.advance(7.5)
    await client.heartbeat_once()
    renewed = [lease_renewed(in_process, instance(i)) for i in ("a", "b")]
    expected = ([before + 7.5] * 2, 1, {"heartbeats": 2, "frames": 1, "reregistered": 0,
                                        "errors": 0, "websocket_failures": 0})
    assert expected == (renewed, in_process.push_server().heartbeat_frames, client.stats)


async def test_heartbeat_without_websocket_uses_heartbeat_json(
        in_process: InProcessNode, clients: Keep[Any]) -> None:
    """use_websocket=False heartbeats over heartbeat.json and opens no socket."""
    transport = clients(Routed(in_process))
    client = registry(transport, clients, use_websocket=False)
    await client.register(instance("a"))
    in_process.clock.advance(3.0)
    await client.heartbeat_once()
    expected = ([UP_NODES, REGISTER, HEARTBEAT], 1000.0 + 3.0, 0)
    assert expected == ([p for _, p in transport.calls], lease_renewed(in_process, instance("a")),
                        in_process.push_server().heartbeat_frames)


async def test_heartbeat_with_nothing_registered_sends_nothing(
        in_process: InProcessNode, clients: Keep[Any]) -> None:
    """A round with no kept instance asks nothing of any node."""
    transport = clients(Routed(in_process))
    client = registry(transport, clients)
    await client.heartbeat_once()
    assert ([], 0) == (transport.calls, client.stats["frames"])


@pytest.mark.parametrize("use_websocket", [True, False])
async def test_instances_the_node_lost_are_registered_again(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any],
        use_websocket: bool) -> None:
    """Instances the node lost (data-not-found) are registered again by the same round."""
    client = registry(transport, clients, use_websocket=use_websocket)
    await client.register(instance("a"), instance("b"), instance("c"))
    in_process.lose(instance("a"), instance("c"))
    await client.heartbeat_once()
    expected = ([filled(instance(i)) for i in "abc"], 2)
    assert expected == (in_process.registered(), client.stats["reregistered"])


async def test_instances_whose_lease_expired_are_registered_again(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """An instance whose lease expired on the node is registered again by the next round."""
    client = registry(transport, clients)
    await client.register(instance("a"))
    in_process.clock.advance(21.0)  # past the 20 s lease
    in_process.node.sweep_once()
    gone = in_process.registered()
    await client.heartbeat_once()
    assert ([], [filled(instance("a"))], 1) == (gone, in_process.registered(),
                                                 client.stats["reregistered"])


async def test_only_data_not_found_and_unknown_are_registered_again(clients: Keep[Any]) -> None:
    """Only data-not-found and unknown heartbeat failures are registered again, in one call."""
    a, b, c = filled(instance("a")), filled(instance("b")), filled(instance("c"))
    failed = [wire.FailedInstance(error_code="data-not-found", error_message="lost", instance=a),
              wire.FailedInstance(error_code="unknown", error_message="?", instance=b),
              wire.FailedInstance(error_code="no-permission", error_message="no", instance=c)]
    transport = FakeTransport()
    transport.on(UP_NODES, nodes_answer("http://fake"))
    transport.on(REGISTER, instances_answer(), instances_answer())
    transport.on(HEARTBEAT, instances_answer("partial_fail", state="partial_fail", failed=failed))
    transport.default(UNREGISTER, instances_answer())
    client = registry(transport, clients, "http://fake")
    await client.register(instance("a"), instance("b"), instance("c"))
    await client.heartbeat_once()
    expected = [
        ("http://fake", UP_NODES, b'{"regionId":"SHA","zoneId":null}'),
        ("http://fake", REGISTER, wire.encode(wire.InstancesRequest(instances=[a, b, c]))),
        ("http://fake", HEARTBEAT, b'{"instances":[' + b",".join(map(wire.encode, (a, b, c)))
         + b"]}"),
        ("http://fake", REGISTER, wire.encode(wire.InstancesRequest(instances=[a, b]))),
    ]
    assert (expected, 2) == (transport.calls, client.stats["reregistered"])


async def test_frames_are_encoded_once_and_split_by_frame_size(
        transport: InProcessTransport, clients: Keep[Any]) -> None:
    """frames() is built once per change of the set, in frames of at most frame_size."""
    client = registry(transport, clients, frame_size=2)
    await client.register(instance("a"), instance("b"), instance("c"))
    first, again = client.frames(), client.frames()
    a, b, c, d = (wire.encode(filled(instance(i))) for i in "abcd")
    built = [b'{"instances":[' + a + b"," + b + b"]}", b'{"instances":[' + c + b"]}"]
    await client.register(instance("d"))
    rebuilt = client.frames()
    expected = (built, True, [built[0], b'{"instances":[' + c + b"," + d + b"]}"])
    assert expected == (first, first is again, rebuilt)


async def test_every_frame_of_a_round_is_sent(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """A round sends every frame: five instances in frames of two are three frames."""
    client = registry(transport, clients, frame_size=2)
    await client.register(*[instance(f"i{n}") for n in range(5)])
    in_process.clock.advance(1.0)
    await client.heartbeat_once()
    renewed = {lease.renewed for lease in in_process.registry.leases()}
    assert ({1001.0}, 3, 5) == (renewed, in_process.push_server().heartbeat_frames,
                                client.stats["heartbeats"])


async def test_heartbeats_run_in_the_background(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """After register(), one round goes every heartbeat_interval without being asked, and none
    before the interval is over."""
    client = registry(transport, clients, heartbeat_interval=INTERVAL)
    clock = clock_of(client)
    await client.register(instance("a"))
    server = in_process.push_server()
    await clock.asleep()  # the background task waits for its first round
    clock.advance(INTERVAL - 0.1)
    early = (server.heartbeat_frames, clock.sleepers)
    clock.advance(0.1)
    seen = []
    for _ in range(3):
        await clock.asleep()  # the round is over: the task waits for the next one
        seen.append(server.heartbeat_frames)
        clock.advance(INTERVAL)
    await clock.asleep()
    seen.append(server.heartbeat_frames)
    assert ((0, [1000.0 + INTERVAL]), [1, 2, 3, 4], [INTERVAL] * 5, 0) == (
        early, seen, clock.slept, client.stats["errors"])


async def test_background_heartbeats_survive_errors_and_heal(clients: Keep[Any]) -> None:
    """Failed background rounds are counted, and the next good round heals the node."""
    node = InProcessNode()
    transport = clients(Routed(node))
    client = registry(transport, clients, heartbeat_interval=INTERVAL, retries=1)
    clock = clock_of(client)
    await client.register(instance("a"))
    transport.offline.add(node.url)
    node.lose(instance("a"))
    for _ in range(2):
        await clock.asleep()
        clock.advance(INTERVAL)
    await clock.asleep()
    failed = (client.stats["errors"], node.registered())
    transport.offline.clear()
    clock.advance(INTERVAL)
    await clock.asleep()
    assert ((2, []), 2, [filled(instance("a"))], 1) == (
        failed, client.stats["errors"], node.registered(), client.stats["reregistered"])


async def test_a_round_that_falls_behind_does_not_burst_to_catch_up(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """After a pause longer than several intervals, one round runs, then the interval again."""
    client = registry(transport, clients, heartbeat_interval=INTERVAL)
    clock = clock_of(client)
    await client.register(instance("a"))
    await clock.asleep()
    clock.advance(INTERVAL * 3.5)  # the loop was held up for three and a half intervals
    await clock.asleep()
    assert (1, [INTERVAL, INTERVAL], [1000.0 + INTERVAL * 4.5]) == (
        in_process.push_server().heartbeat_frames, clock.slept, clock.sleepers)


async def test_repr_shows_state(transport: InProcessTransport, clients: Keep[Any]) -> None:
    """The repr shows the instance count, the servers and the stats."""
    client = registry(transport, clients)
    await client.register(instance("a"))
    assert (f"RegistryClient(instances=1, server={client.caller.servers!r}, "
            f"stats={client.stats})") == repr(client)


# --- more than one node -------------------------------------------------------------------------

async def test_unreachable_node_moves_heartbeats_and_instances_to_another(
        clients: Keep[Any]) -> None:
    """An unreachable node is left: the round goes to another, which gets the instances."""
    a, b = InProcessNode("http://a"), InProcessNode("http://b")
    transport = clients(Routed(a, b))
    client = registry(transport, clients, ["http://a", "http://b"], retries=2)
    prefer(client, "http://a", "http://b")
    await client.register(instance("x"), instance("y"))
    await client.heartbeat_once()  # the heartbeat socket to A is open now
    transport.offline.add("http://a")
    await transport.transports["http://a"].aclose()  # A goes away with its sockets
    await client.heartbeat_once()
    expected = ("http://b", [filled(instance("x")), filled(instance("y"))])
    assert expected == (client.caller.servers.current(), b.registered())


async def test_node_answering_service_unavailable_on_the_websocket_is_left(
        clients: Keep[Any]) -> None:
    """A node answering service-unavailable on the heartbeat socket is left for another."""
    a, b = InProcessNode("http://a"), InProcessNode("http://b")
    transport = clients(Routed(a, b))
    client = registry(transport, clients, ["http://a", "http://b"], retries=2)
    prefer(client, "http://a", "http://b")
    await client.register(instance("x"))
    a.node.state = a.node.state.move(DOWN)
    for _ in range(3):
        await client.heartbeat_once()
    assert ("http://b", [filled(instance("x"))]) == (client.caller.servers.current(),
                                                     b.registered())


async def test_node_answering_service_unavailable_over_http_is_left(
        clients: Keep[Any]) -> None:
    """Without WebSocket the same holds through heartbeat.json (the caller's failover)."""
    a, b = InProcessNode("http://a"), InProcessNode("http://b")
    transport = clients(Routed(a, b))
    client = registry(transport, clients, ["http://a", "http://b"], retries=2,
                      use_websocket=False)
    prefer(client, "http://a", "http://b")
    await client.register(instance("x"))
    a.node.state = a.node.state.move(DOWN)
    clock = clock_of(client)
    await clock.drive(client.heartbeat_once())  # the wait before the try on B passes at once
    backoffs = [d for d in clock.slept if d != QUIET]  # QUIET: the background task's wait
    assert ("http://b", [filled(instance("x"))], 1, 1000.0 + sum(backoffs)) == (
        client.caller.servers.current(), b.registered(), len(backoffs), clock.monotonic())


async def test_register_when_no_node_answers_raises_no_server_available(
        clients: Keep[Any]) -> None:
    """register() with every node unreachable raises NoServerAvailable and keeps nothing."""
    transport = FakeTransport()
    transport.default(UP_NODES, TransportError("refused"))
    transport.default(REGISTER, TransportError("refused"))
    client = registry(transport, clients, "http://nowhere", retries=1)
    with pytest.raises(NoServerAvailable):
        await client.register(instance("a"))
    assert [] == client.instances


async def test_own_transport_is_closed_with_the_client() -> None:
    """A client that made its own (network) transport closes it on close()."""
    client = RegistryClient("http://127.0.0.1:9", region=REGION)
    await client.close()
    assert client.transport._http.is_closed  # type: ignore[attr-defined]


async def test_stats_count_websocket_failures_and_fall_back(clients: Keep[Any]) -> None:
    """When the heartbeat socket cannot be opened, the round goes over heartbeat.json."""
    transport = FakeTransport()
    transport.on(UP_NODES, nodes_answer("http://fake"))
    transport.on(REGISTER, instances_answer())
    transport.on(HEARTBEAT, instances_answer())
    transport.default(UNREGISTER, instances_answer())
    client = registry(transport, clients, "http://fake")
    await client.register(instance("a"))
    await client.heartbeat_once()
    assert ([UP_NODES, REGISTER, HEARTBEAT], 1) == (transport.paths(),
                                                    client.stats["websocket_failures"])


async def test_sockets_are_closed_with_the_client(in_process: InProcessNode,
                                                  transport: InProcessTransport) -> None:
    """close() closes the heartbeat socket: the node holds no session afterwards."""
    client = RegistryClient("http://in-process", region=REGION, transport=transport,
                            heartbeat_interval=QUIET)
    await client.register(instance("a"))
    await client.heartbeat_once()
    during = in_process.push_sessions()
    await client.close()
    after = await eventually(lambda: in_process.push_sessions()["registry"] == 0 and
                             in_process.push_sessions(), "heartbeat session closed")
    assert ({"registry": 1, "discovery": 0}, {"registry": 0, "discovery": 0}) == (during, after)
