"""DiscoveryClient against nodes in this process (InProcessTransport: lookups over HTTP, push over
the WebSocket, no sockets) and against the scripted fake transport, where frames and answers
arrive exactly when a test says.

Push and polling run in the client's background task, on a fake clock of the client's own
(`client.clock`): reconnects, polls and the safety-net lookup happen when a test advances it.
Tests wait for what they expect with a deadline (`eventually`), for an event a listener sets, or
until the client's task sleeps on its clock again (`clock.asleep`); none sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from artemis import wire
from artemis.client import (
    ClientClosed,
    DiscoveryClient,
    InProcessTransport,
    Instance,
    NoPermission,
    NoServerAvailable,
    RegistryClient,
    Service,
    TransportError,
)
from artemis.clock import FakeClock
from tests.client.conftest import (
    REGION,
    SERVICE,
    FakeSocket,
    FakeTransport,
    InProcessNode,
    Routed,
    close_within,
    eventually,
    filled,
    ids,
    instance,
    lookup_answer,
    nodes_answer,
    pushed,
    service,
)

T = TypeVar("T")
Keep = Callable[[T], T]
LOOKUP = "/api/discovery/lookup.json"
UP_NODES = "/api/cluster/up-discovery-nodes.json"
PUSH = "/ws/discovery/instance-change"
FAKE = "http://fake"
QUIET = 3600.0  # an interval no test waits for
RECONNECT = 2.0  # reconnect_interval of the tests of reconnects (on the fake clock)
POLL = 10.0  # poll_interval of the tests of polling (on the fake clock)


def discovery(transport: Any, keep: Keep[Any], seeds: str | list[str] = "http://in-process",
              **options: Any) -> DiscoveryClient:
    """A client on a FakeClock of its own (`client.clock`)."""
    options = {"region": REGION, "poll_interval": QUIET, "clock": FakeClock(), **options}
    return keep(DiscoveryClient(seeds, transport=transport, **options))


def clock_of(client: DiscoveryClient) -> FakeClock:
    assert isinstance(client.clock, FakeClock)
    return client.clock


async def reconnect(client: DiscoveryClient) -> None:
    """Once the client waits to try push again, let `reconnect_interval` pass."""
    clock = clock_of(client)
    await clock.asleep(within=client.reconnect_interval)
    clock.advance(client.reconnect_interval)


class Calls:
    """A listener that records (change_type, Service) and can be awaited for a count."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Service]] = []

    def __call__(self, kind: str, svc: Service) -> None:
        self.calls.append((kind, svc))

    def kinds(self) -> list[tuple[str, list[str]]]:
        return [(kind, ids(svc)) for kind, svc in self.calls]


def subscription(service_id: str = SERVICE, revision: str | None = None) -> str:
    return wire.encode(wire.Subscription(service_id=service_id, revision=revision)).decode()


def fake(*, websockets: bool = True, lookups: list[bytes] | None = None,
         default: bytes | None = None) -> FakeTransport:
    """A fake node: up-discovery-nodes lists FAKE, lookups answer from `lookups` then
    `default`."""
    transport = FakeTransport(websockets=websockets)
    transport.default(UP_NODES, nodes_answer(FAKE))
    transport.on(LOOKUP, *(lookups or []))
    if default is not None:
        transport.default(LOOKUP, default)
    return transport


async def socket_ready(transport: FakeTransport, count: int = 1) -> FakeSocket:
    """The `count`-th push socket, once the client has sent its subscriptions on it."""
    return await eventually(
        lambda: len(transport.sockets) >= count and transport.sockets[count - 1].sent
        and transport.sockets[count - 1], f"push socket {count} subscribed")


# --- lookups and the cache ----------------------------------------------------------------------

async def test_get_service_answers_the_nodes_instances(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """get_service() returns the service as the node has it."""
    in_process.add(instance("a"), instance("b"))
    client = discovery(transport, clients)
    expected = service(filled(instance("a")), filled(instance("b")))
    assert expected == await client.get_service(SERVICE)


async def test_get_service_asks_the_node_only_the_first_time(
        in_process: InProcessNode, clients: Keep[Any]) -> None:
    """Later calls (whatever the case of the id) answer from the cache, without a lookup."""
    in_process.add(instance("a"))
    transport = clients(Routed(in_process))
    client = discovery(transport, clients, use_push=False)
    first = await client.get_service(SERVICE)
    second = await client.get_service(SERVICE.upper())
    lookups = [p for _, p in transport.calls if p == LOOKUP]
    assert (first, [LOOKUP], 1) == (second, lookups, client.stats["lookups"])


async def test_cached_is_none_until_fetched(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """cached() asks nothing: None before the first get_service, the service after."""
    in_process.add(instance("a"))
    client = discovery(transport, clients)
    before = client.cached(SERVICE)
    fetched = await client.get_service(SERVICE)
    assert (None, fetched, fetched) == (before, client.cached(SERVICE),
                                        client.cached(SERVICE.upper()))


async def test_service_without_instances_is_cached_empty(
        transport: InProcessTransport, clients: Keep[Any]) -> None:
    """A service nobody registered is an empty service, cached like any other."""
    client = discovery(transport, clients)
    assert (service(), service()) == (await client.get_service(SERVICE),
                                      client.cached(SERVICE))


async def test_instances_lists_the_services_instances(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """instances() is the instance list of get_service()."""
    in_process.add(instance("a"))
    client = discovery(transport, clients)
    assert [filled(instance("a"))] == await client.instances(SERVICE)


async def test_lookup_request_has_the_sdks_shape(clients: Keep[Any]) -> None:
    """The lookup has the Java SDK's shape: region and zone on the request, not the config."""
    transport = clients(fake(websockets=False, lookups=[lookup_answer(service())]))
    client = discovery(transport, clients, FAKE, zone="zone-1")
    await client.get_service(SERVICE)
    expected = (b'{"discoveryConfigs":[{"discoveryData":null,"regionId":null,'
                b'"serviceId":"demo.service.v1","zoneId":null}],"regionId":"SHA",'
                b'"zoneId":"zone-1"}')
    assert [(FAKE, LOOKUP, expected)] == [c for c in transport.calls if c[1] == LOOKUP][:1]


async def test_closed_client_refuses_get_service(transport: InProcessTransport,
                                                 clients: Keep[Any]) -> None:
    """After close(), get_service raises ClientClosed."""
    client = discovery(transport, clients)
    await client.close()
    with pytest.raises(ClientClosed):
        await client.get_service(SERVICE)


# --- push ---------------------------------------------------------------------------------------

async def test_push_updates_the_cache_after_register_and_unregister(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """Registrations and unregistrations by another client reach the cache by push."""
    registry = clients(RegistryClient("http://in-process", region=REGION, transport=transport,
                                      heartbeat_interval=QUIET))
    client = discovery(transport, clients)
    await registry.register(instance("a"))
    await client.get_service(SERVICE)
    await eventually(lambda: client.push_connected, "push connected")
    await registry.register(instance("b"))
    await eventually(lambda: ids(client.cached(SERVICE)) == ["a", "b"], "b pushed")
    await registry.unregister(instance("a"))
    await eventually(lambda: ids(client.cached(SERVICE)) == ["b"], "a's delete pushed")
    assert (service(filled(instance("b"))), 0) == (client.cached(SERVICE), client.stats["polls"])


async def test_listeners_get_change_type_and_service(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """Listeners are called with (change_type, Service) after each change of the cache."""
    in_process.add(instance("a"))
    client = discovery(transport, clients)
    await client.get_service(SERVICE)
    await eventually(lambda: client.push_connected, "push connected")
    calls = Calls()
    client.add_listener(SERVICE, calls)
    in_process.add(instance("b"))
    await eventually(lambda: len(calls.calls) == 1, "listener told of b")
    in_process.lose(instance("a"))
    await eventually(lambda: len(calls.calls) == 2, "listener told of a's delete")
    a, b = filled(instance("a")), filled(instance("b"))
    assert [("new", service(a, b)), ("delete", service(b))] == calls.calls


async def test_listener_added_before_the_first_lookup_hears_the_reload(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """The first lookup of a service is a `reload` for the listeners already there."""
    in_process.add(instance("a"))
    client = discovery(transport, clients)
    calls = Calls()
    client.add_listener(SERVICE, calls)
    await client.get_service(SERVICE)
    assert [("reload", service(filled(instance("a"))))] == calls.calls


async def test_a_listener_that_raises_does_not_stop_the_others(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any],
        caplog: pytest.LogCaptureFixture) -> None:
    """An exception in one listener is logged; the listeners after it are still called."""
    client = discovery(transport, clients)
    await client.get_service(SERVICE)
    await eventually(lambda: client.push_connected, "push connected")
    first, last = Calls(), Calls()

    def broken(kind: str, svc: Service) -> None:
        raise RuntimeError("listener bug")

    for listener in (first, broken, last):
        client.add_listener(SERVICE, listener)
    in_process.add(instance("a"))
    await eventually(lambda: last.calls, "the last listener called")
    in_process.add(instance("b"))
    await eventually(lambda: len(last.calls) == 2, "the last listener called again")
    logged = [r.getMessage() for r in caplog.records if r.name == "artemis.client.discovery"]
    heard = [("new", ["a"]), ("new", ["a", "b"])]
    assert (heard, heard, ["a service listener failed"] * 2) == (first.kinds(), last.kinds(),
                                                                 logged)


async def test_reload_frame_looks_the_service_up_again(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """A pushed `reload` makes the client look the service up (and tell its listeners)."""
    client = discovery(transport, clients)
    await client.get_service(SERVICE)
    await eventually(lambda: client.push_connected, "push connected")
    calls = Calls()
    client.add_listener(SERVICE, calls)
    registry, clock = in_process.registry, in_process.clock
    registry.register([filled(instance("quiet"))], clock.monotonic(), clock.wall_ms())  # unpushed
    in_process.node.publish([registry.reload(SERVICE, clock.wall_ms())])
    await eventually(lambda: calls.calls, "reload heard")
    assert [("reload", service(filled(instance("quiet"))))] == calls.calls


async def test_resume_after_the_node_closed_push_gets_what_was_missed(
        in_process: InProcessNode, clients: Keep[Any]) -> None:
    """After the node closes push, resuming by revision brings the missed changes, no lookup."""
    inner = clients(InProcessTransport(in_process.app))
    gate = Gate(inner)
    client = discovery(gate, clients, reconnect_interval=RECONNECT)
    in_process.add(instance("a"))
    await client.get_service(SERVICE)
    await eventually(lambda: client.push_connected, "push connected")
    in_process.add(instance("b"))  # a frame with a revision to resume from
    await eventually(lambda: ids(client.cached(SERVICE)) == ["a", "b"], "b pushed")
    gate.closed()
    in_process.push_server().close_sessions()  # the node closes every push session
    await reconnect(client)
    await eventually(lambda: gate.waiting, "the client trying to reconnect")
    lookups = client.stats["lookups"]
    in_process.add(instance("c"))
    in_process.lose(instance("a"))
    gate.open()
    await eventually(lambda: ids(client.cached(SERVICE)) == ["b", "c"], "missed changes")
    assert (lookups, 2) == (client.stats["lookups"], client.stats["reconnects"])


async def test_push_sessions_the_node_closed_are_released(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """A push session the node closed is over on both sides: only the new one is left."""
    client = discovery(transport, clients, reconnect_interval=RECONNECT)
    await client.get_service(SERVICE)
    await eventually(lambda: client.push_connected, "push connected")
    in_process.push_server().close_sessions()
    await reconnect(client)
    await eventually(lambda: client.stats["reconnects"] == 2 and client.push_connected,
                     "reconnected")
    sessions = await eventually(
        lambda: in_process.push_sessions()["discovery"] == 1 and in_process.push_sessions(),
        "one push session left on the node", deadline=1.0)
    assert {"registry": 0, "discovery": 1} == sessions


async def test_close_releases_the_push_session_on_the_node(
        in_process: InProcessNode, transport: InProcessTransport) -> None:
    """close() ends the push session: the node holds none afterwards."""
    client = DiscoveryClient("http://in-process", region=REGION, transport=transport)
    await client.get_service(SERVICE)
    await eventually(lambda: client.push_connected, "push connected")
    assert await close_within(client)
    await eventually(lambda: in_process.push_sessions()["discovery"] == 0, "session released")


# --- polling and outages ------------------------------------------------------------------------

async def test_without_push_the_cache_is_polled(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """use_push=False: every poll_interval the cached services are looked up again."""
    client = discovery(transport, clients, use_push=False, poll_interval=POLL)
    clock = clock_of(client)
    await client.get_service(SERVICE)
    await clock.asleep()  # the background task waits for the next poll
    in_process.add(instance("a"))
    before = ids(client.cached(SERVICE))
    clock.advance(POLL)
    await clock.asleep()  # the poll is over
    assert ([], ["a"], False, 0) == (before, ids(client.cached(SERVICE)), client.push_connected,
                                     in_process.push_sessions()["discovery"])


async def test_while_push_cannot_be_had_the_cache_is_polled(
        in_process: InProcessNode, clients: Keep[Any]) -> None:
    """When the push socket cannot be opened, lookups keep the cache current."""
    transport = clients(NoPush(InProcessTransport(in_process.app)))
    client = discovery(transport, clients, reconnect_interval=RECONNECT, poll_interval=POLL)
    await client.get_service(SERVICE)
    in_process.add(instance("a"))
    for _ in range(round(POLL / RECONNECT)):
        await reconnect(client)
    await clock_of(client).asleep()
    assert (["a"], False, 0, 6) == (ids(client.cached(SERVICE)), client.push_connected,
                                    client.stats["reconnects"], transport.attempts)


async def test_while_push_is_down_polls_follow_poll_interval_not_reconnects(
        in_process: InProcessNode, clients: Keep[Any]) -> None:
    """While push is down, lookups follow poll_interval, not every reconnect attempt."""
    transport = clients(NoPush(InProcessTransport(in_process.app)))
    client = discovery(transport, clients, reconnect_interval=1.0, poll_interval=60.0)
    await client.get_service(SERVICE)
    for _ in range(10):
        await reconnect(client)
    await clock_of(client).asleep()
    ten = (transport.attempts, client.stats["polls"])
    for _ in range(60):
        await reconnect(client)
    await clock_of(client).asleep()
    # one poll in the first seconds (the cache is older than poll_interval), then one a minute
    assert ((11, 1), (71, 2)) == (ten, (transport.attempts, client.stats["polls"]))


async def test_lookup_refused_by_the_node_raises_its_error(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """A node that refuses the lookup (another region) raises NoPermission; nothing is cached."""
    client = discovery(transport, clients, region="FRA")
    with pytest.raises(NoPermission):
        await client.get_service(SERVICE)
    assert client.cached(SERVICE) is None


async def test_last_known_instances_are_served_while_no_node_answers(
        in_process: InProcessNode, clients: Keep[Any]) -> None:
    """With no node answering, the cache serves and is never emptied; unfetched raises."""
    in_process.add(instance("a"))
    transport = clients(Routed(in_process))
    client = discovery(transport, clients, retries=1, reconnect_interval=1.0, poll_interval=1.0)
    known = await client.get_service(SERVICE)
    transport.offline.add(in_process.url)
    await client._drop_ws()  # the push socket goes with the node
    polls = client.stats["polls"]
    for _ in range(3):
        await reconnect(client)
    await clock_of(client).asleep(within=1.0)
    assert client.stats["polls"] >= polls + 3
    with pytest.raises(NoServerAvailable):
        await client.get_service("never.fetched")
    assert (known, known) == (await client.get_service(SERVICE), client.cached(SERVICE))


async def test_while_push_is_connected_a_safety_net_looks_up_every_six_polls(
        in_process: InProcessNode, transport: InProcessTransport, clients: Keep[Any]) -> None:
    """With push connected, every cached service is looked up every poll_interval * 6."""
    client = discovery(transport, clients, poll_interval=POLL)
    clock = clock_of(client)
    await client.get_service(SERVICE)
    await eventually(lambda: client.push_connected, "push connected")
    await clock.asleep(within=POLL * 6)
    lookups = client.stats["lookups"]
    in_process.registry.register([filled(instance("quiet"))], in_process.clock.monotonic(),
                                 in_process.clock.wall_ms())  # not pushed
    clock.advance(POLL * 6 - 0.1)
    early = clock.sleepers  # the safety net still waits
    clock.advance(0.1)
    await clock.asleep(within=POLL * 6)  # the lookup is over: the next wait began
    assert ([1000.0 + POLL * 6], lookups + 1, ["quiet"], [1000.0 + POLL * 12]) == (
        early, client.stats["lookups"], ids(client.cached(SERVICE)), clock.sleepers)


# --- frames, exactly (fake transport) -----------------------------------------------------------

async def test_subscribes_then_applies_frames_in_order(clients: Keep[Any]) -> None:
    """One subscription per service; new/change/delete frames applied, each change heard once."""
    a, b = filled(instance("a")), filled(instance("b"))
    a2 = filled(instance("a", status="down"))
    transport = clients(fake(lookups=[lookup_answer(service(a))], default=lookup_answer(
        service(a))))
    client = discovery(transport, clients, FAKE)
    calls = Calls()
    client.add_listener(SERVICE, calls)
    await client.get_service(SERVICE)
    socket = await socket_ready(transport)
    for kind, item, revision in (("new", b, "r.1"), ("change", a2, "r.2"), ("new", b, "r.3"),
                                 ("delete", b, "r.4"), ("delete", b, "r.5")):
        socket.feed(pushed(kind, item, revision))
    await eventually(lambda: client.stats["frames"] == 5, "five frames read")
    expected = ([subscription()], [("reload", service(a)), ("new", service(a, b)),
                                   ("change", service(a2, b)), ("delete", service(a2))])
    assert expected == (socket.sent, calls.calls)


async def test_frames_that_are_not_changes_are_ignored(clients: Keep[Any]) -> None:
    """Error frames, unknown change types, other services and garbage change nothing."""
    a = filled(instance("a"))
    transport = clients(fake(default=lookup_answer(service(a))))
    client = discovery(transport, clients, FAKE)
    calls = Calls()
    await client.get_service(SERVICE)
    client.add_listener(SERVICE, calls)
    socket = await socket_ready(transport)
    for text in ('{"responseStatus":{"errorCode":"bad-request","message":"x","status":"fail"}}',
                 "not json",
                 pushed("rename", filled(instance("z")), "r.1"),
                 pushed("new", filled(instance("o", service_id="other")), "r.2"),
                 pushed("new", filled(instance("last")), "r.3")):
        socket.feed(text)
    await eventually(lambda: calls.calls, "the last frame applied")
    assert [("new", service(a, filled(instance("last"))))] == calls.calls


async def test_frames_of_a_service_in_another_case_are_applied(clients: Keep[Any]) -> None:
    """Pushed instances find their service whatever the case of its id."""
    transport = clients(fake(default=lookup_answer(service(service_id="Demo.Service.V1"))))
    client = discovery(transport, clients, FAKE)
    await client.get_service("Demo.Service.V1")
    socket = await socket_ready(transport)
    socket.feed(pushed("new", filled(instance("a")), "r.1"))
    await eventually(lambda: ids(client.cached(SERVICE)) == ["a"], "frame applied")


async def test_resubscribes_with_the_last_revision_after_a_drop(clients: Keep[Any]) -> None:
    """After a drop, each service is subscribed again with the last revision applied."""
    a = filled(instance("a"))
    transport = clients(fake(default=lookup_answer(service(a))))
    client = discovery(transport, clients, FAKE, reconnect_interval=RECONNECT)
    await client.get_service(SERVICE)
    await client.get_service("other")
    first = await socket_ready(transport)
    first.feed(pushed("new", filled(instance("b")), "run.7"))
    await eventually(lambda: client.stats["frames"] == 1, "frame read")
    first.drop()
    await reconnect(client)
    second = await socket_ready(transport, 2)
    await eventually(lambda: len(second.sent) == 2, "both services subscribed again")
    expected = ([subscription(), subscription("other")],
                [subscription(revision="run.7"), subscription("other")])
    assert expected == (first.sent, second.sent)


async def test_frames_during_a_lookup_are_applied_after_it(clients: Keep[Any]) -> None:
    """A frame that arrives during a lookup is applied after the lookup's answer."""
    a, b = filled(instance("a")), filled(instance("b"))
    transport = clients(fake(default=lookup_answer(service(a))))
    client = discovery(transport, clients, FAKE)
    await client.get_service(SERVICE)
    socket = await socket_ready(transport)
    await eventually(lambda: len(transport.paths()) >= 3, "the lookup after subscribing")
    held = Held(lookup_answer(service(a)))
    transport.on(LOOKUP, held)
    socket.feed(pushed("reload", Instance(service_id=SERVICE, instance_id="reload"), "r.1"))
    await held.started.wait()
    socket.feed(pushed("new", b, "r.2"))
    await eventually(lambda: client.stats["frames"] == 2, "both frames read")
    held.release.set()
    await eventually(lambda: ids(client.cached(SERVICE)) == ["a", "b"], "b applied")


async def test_frames_during_a_failed_lookup_are_not_lost(clients: Keep[Any]) -> None:
    """Frames that arrive during a lookup that then fails are still applied, not dropped."""
    a, b = filled(instance("a")), filled(instance("b"))
    transport = clients(fake(default=lookup_answer(service(a))))
    client = discovery(transport, clients, FAKE, retries=1)
    await client.get_service(SERVICE)
    socket = await socket_ready(transport)
    await eventually(lambda: len(transport.paths()) >= 3, "the lookup after subscribing")
    held = Held(TransportError("node went away"))
    transport.on(LOOKUP, held)
    socket.feed(pushed("reload", Instance(service_id=SERVICE, instance_id="reload"), "r.1"))
    await held.started.wait()
    socket.feed(pushed("new", b, "r.2"))
    await eventually(lambda: client.stats["frames"] == 2, "both frames read")
    held.release.set()
    await eventually(lambda: held.done, "the lookup failed")
    socket.feed(pushed("new", filled(instance("c")), "r.3"))  # after the failed lookup
    await eventually(lambda: client.stats["frames"] == 3, "the third frame read")
    assert ["a", "b", "c"] == ids(client.cached(SERVICE))


async def test_close_returns_when_a_frame_arrives_as_it_closes(clients: Keep[Any]) -> None:
    """close() ends the push task even when a frame is delivered in the same instant."""
    transport = clients(fake(default=lookup_answer(service())))
    client = DiscoveryClient(FAKE, region=REGION, transport=transport)
    await client.get_service(SERVICE)
    socket = await socket_ready(transport)
    await eventually(lambda: len(transport.paths()) >= 3, "the lookup after subscribing")
    socket.feed(pushed("new", filled(instance("a")), "r.1"))
    assert await close_within(client, 1.0)


async def test_close_returns_after_a_registry_closed_just_before(
        in_process: InProcessNode, transport: InProcessTransport) -> None:
    """Closing registry then discovery at once (deletes being pushed): both closes return."""
    registry = RegistryClient("http://in-process", region=REGION, transport=transport,
                              heartbeat_interval=QUIET)
    client = DiscoveryClient("http://in-process", region=REGION, transport=transport)
    await registry.register(instance("a"))
    await client.get_service(SERVICE)
    await eventually(lambda: client.push_connected, "push connected")
    assert (True, True) == (await close_within(registry), await close_within(client, 1.0))


# --- the in-process transport's sockets ---------------------------------------------------------

async def test_in_process_recv_raises_once_the_socket_is_closed(
        transport: InProcessTransport) -> None:
    """A waiting recv() on an in-process socket raises TransportError once it is closed."""
    ws = await transport.connect("http://in-process", PUSH)
    waiting = asyncio.ensure_future(ws.recv())
    await asyncio.sleep(0)  # let recv() start waiting
    await ws.close()
    done, _ = await asyncio.wait({waiting}, timeout=1.0)
    if not done:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    assert [TransportError] == [type(t.exception()) for t in done]


# --- helpers ------------------------------------------------------------------------------------

class Held:
    """A scripted answer that waits for `release` before answering (or raising) `answer`."""

    def __init__(self, answer: bytes | Exception) -> None:
        self.answer = answer
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.done = False

    async def __call__(self, url: str, path: str, body: bytes) -> bytes:
        self.started.set()
        await self.release.wait()
        self.done = True
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class Gate:
    """A transport whose WebSocket connects wait while the gate is closed (HTTP goes on)."""

    def __init__(self, inner: InProcessTransport) -> None:
        self.inner = inner
        self._open = asyncio.Event()
        self._open.set()
        self.waiting = False

    def closed(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def post(self, base_url: str, path: str, body: bytes) -> bytes:
        return await self.inner.post(base_url, path, body)

    async def connect(self, base_url: str, path: str) -> Any:
        self.waiting = not self._open.is_set()
        await self._open.wait()
        self.waiting = False
        return await self.inner.connect(base_url, path)

    async def aclose(self) -> None:
        await self.inner.aclose()


class NoPush(Gate):
    """A transport that answers HTTP and refuses every WebSocket (counting the attempts)."""

    attempts = 0

    async def connect(self, base_url: str, path: str) -> Any:
        self.attempts += 1
        raise TransportError(f"{base_url}: WebSocket refused")
