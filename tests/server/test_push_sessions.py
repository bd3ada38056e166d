"""The WebSocket endpoints in process: push sessions, heartbeat frames, close codes (§4.11).

The sockets are `FakeWebSocket`s of this file; the handlers of the PushServer the composition
root built run as tasks; session ages are the node's fake clock; tests wait for what they expect
with a deadline, never a fixed sleep.
"""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

import artemis.core.service_state as service_state
import artemis.server.push as push_module
from artemis import wire
from artemis.clock import FakeClock
from artemis.core.versions import ChangeLog
from artemis.server.compose import build
from artemis.server.node import Node
from artemis.server.push import PushServer
from artemis.server.settings import Settings
from tests.server.harness import (
    HEARTBEAT,
    NOT_EXISTING,
    OK_BODY,
    RATE_LIMITED,
    REGION,
    SERVICE,
    ZONE,
    fail,
    failed,
    instance,
    partial,
    registry_fail,
)

DISCOVERY = "/ws/discovery/instance-change"
ALL_CHANGES = "/ws/discovery/all-instance-change"
HEARTBEAT_WS = "/ws/registry/heartbeat"
CONNECTIONS = "/api/status/message/connections.json"
OTHER = "other.service.v1"


# --- the fake socket and the waiting helpers ---------------------------------------------------

class FakeWebSocket:
    """A WebSocket as the server sees one: messages in from a queue, texts out to a list.

    `receive()` answers None once the socket is closed or when None is pushed (the client went
    away). A `stuck` socket's send never returns, as over a connection nobody reads."""

    def __init__(self, *, stuck: bool = False, headers: dict[str, str] | None = None) -> None:
        self.headers = headers or {}  # of the upgrade request, lower-case names
        self.incoming: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.sent: list[str] = []
        self.attempted: list[str] = []  # every send started, finished or not
        self.code: int | None = None
        self.stuck = stuck

    async def receive(self) -> str | bytes | None:
        if self.code is not None:
            return None
        message = await self.incoming.get()
        return None if self.code is not None else message

    async def send(self, text: str) -> None:
        if self.code is not None:
            raise ConnectionError("the WebSocket is closed")
        self.attempted.append(text)
        if self.stuck:
            await asyncio.Event().wait()
        self.sent.append(text)

    def start_send(self, text: str) -> asyncio.Future[None]:
        if self.code is not None:
            raise ConnectionError("the WebSocket is closed")
        return asyncio.ensure_future(self.send(text))

    def close(self, code: int) -> None:
        if self.code is None:
            self.code = code
            self.incoming.put_nowait(None)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def push(self, message: str | bytes | None) -> None:
        self.incoming.put_nowait(message)

    def frames(self) -> list[Any]:
        return [json.loads(text) for text in self.sent]


async def until(predicate: Callable[[], bool], what: str, within: float = 3.0,
                handler: asyncio.Task[None] | None = None) -> None:
    """Wait until `predicate()` holds, polling every 10 ms; fail after `within` seconds, or
    as soon as `handler` (a session's handler task) ends without it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if handler is not None and handler.done():
            handler.result()  # its exception, if it failed
            raise AssertionError(f"the session ended before {what}")
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# --- expected frames, written from §3.5 and the push module's rules -----------------------------

def push_frame(kind: str, change_time: int, inst: dict[str, Any], token: str) -> str:
    """One pushed InstanceChange with its revision token, exactly as sent."""
    return json.dumps({"changeTime": change_time, "changeType": kind, "instance": inst,
                       "revision": token}, separators=(",", ":"))


def reload_frame(service_id: str, change_time: int, token: str) -> str:
    reload = {"groupId": None, "healthCheckUrl": None, "instanceId": "reload", "ip": "0.0.0.0",
              "machineName": None, "metadata": None, "port": 0, "protocol": None,
              "regionId": None, "serviceId": service_id, "status": None,
              "url": "http://serviceId/reload", "zoneId": None}
    return push_frame("reload", change_time, reload, token)


def error(code: str, message: str, close: int | None = None) -> dict[str, Any]:
    """An error frame: a ResponseStatus alone; before a close, its message names the code."""
    if close is not None:
        message = f"{message} (session closed, code {close})"
    return {"responseStatus": fail(code, message)}


def subscription(service_id: str = SERVICE, region: str | None = REGION,
                 revision: str | None = None) -> str:
    """A DiscoveryConfig frame as the Java SDK sends it, plus the optional revision token."""
    body: dict[str, Any] = {"discoveryData": None, "regionId": region, "serviceId": service_id,
                            "zoneId": ZONE}
    if revision is not None:
        body["revision"] = revision
    return json.dumps(body)


def heartbeat_frame(*instances: dict[str, Any]) -> str:
    return json.dumps({"instances": list(instances)})


# --- the server of a test --------------------------------------------------------------------

class Server:
    """A node on a fake clock, its app with the PushServer `compose.build` made, an httpx client,
    and the handler tasks of the test's sockets."""

    def __init__(self, node: Node, client: httpx.AsyncClient, push: PushServer) -> None:
        self.node = node
        self.clock: FakeClock = node.clock  # type: ignore[assignment]
        self.client = client
        self.push = push
        self.tasks: list[asyncio.Task[None]] = []
        self.sockets: list[FakeWebSocket] = []
        self.surfaced: set[asyncio.Task[None]] = set()  # handlers whose failure a test saw

    def connect(self, path: str, ws: FakeWebSocket | None = None) -> FakeWebSocket:
        """Open a session on `path`: its handler runs as a task until the socket ends."""
        ws = ws or FakeWebSocket()
        handler = {DISCOVERY: self.push.discovery, ALL_CHANGES: self.push.all_changes,
                   HEARTBEAT_WS: self.push.heartbeat}[path]
        self.tasks.append(asyncio.create_task(handler(ws, "127.0.0.1:1")))
        self.sockets.append(ws)
        return ws

    def handler(self, ws: FakeWebSocket) -> asyncio.Task[None]:
        """The handler task of `ws`; its failure, once a test waits on it, is the test's."""
        task = self.tasks[self.sockets.index(ws)]
        self.surfaced.add(task)
        return task

    async def subscribe(self, ws: FakeWebSocket, service_id: str = SERVICE,
                        revision: str | None = None) -> None:
        """Subscribe and wait until the subscription took effect."""
        before = self.push.hub.subscribers(service_id)
        ws.push(subscription(service_id, revision=revision))
        await until(lambda: self.push.hub.subscribers(service_id) > before,
                    f"the subscription to {service_id}", handler=self.handler(ws))

    async def answers(self, ws: FakeWebSocket, count: int) -> None:
        """Wait until `ws` was sent `count` frames."""
        await until(lambda: len(ws.sent) >= count, f"{count} frames", handler=self.handler(ws))

    async def sessions(self, count: int) -> None:
        await until(lambda: len(self.push.sessions) == count, f"{count} sessions")

    async def register(self, *instances: dict[str, Any]) -> Any:
        """Register through register.json."""
        response = await self.client.post("/api/registry/register.json",
                                          json={"instances": list(instances)})
        return response.json()

    def publish_register(self, *instances: dict[str, Any]) -> None:
        """Register straight in the registry and hand the changes to the subscribers."""
        decoded = [wire.decode(json.dumps(i).encode(), wire.Instance) for i in instances]
        result = self.node.registry.register(decoded, self.clock.monotonic(),
                                             self.clock.wall_ms())
        self.node.publish(result.changes)

    def token(self, revision: int) -> str:
        return f"{self.push.hub.run_id}.{revision}"

    async def idle(self, ws: FakeWebSocket, frames: int) -> None:
        """Wait until `ws` got `frames` frames and its session has nothing queued."""
        def done() -> bool:
            queues = [s.push.waiting for s in self.push.sessions if s.ws is ws and s.push]
            return len(ws.sent) >= frames and not any(queues)

        await until(done, f"{frames} frames", handler=self.handler(ws))

    async def ended(self, ws: FakeWebSocket) -> None:
        """Wait until the handler of `ws` returned."""
        await asyncio.wait_for(asyncio.shield(self.handler(ws)), 3.0)


MakeServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def make_server() -> AsyncIterator[MakeServer]:
    """Build a `Server` with `Settings(**settings)` (region SHA, zone zone-1); at teardown every
    socket still open goes away and every handler must return."""
    servers: list[Server] = []
    async with contextlib.AsyncExitStack() as stack:

        async def make(*, up: bool = True, **settings: Any) -> Server:
            parts = build(Settings(**{"region": REGION, "zone": ZONE, **settings}), FakeClock())
            if up:
                parts.node.mark_up()
            client = await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=parts.app), base_url="http://testserver"))
            server = Server(parts.node, client, parts.push)
            servers.append(server)
            return server

        yield make
        for server in servers:
            for ws in server.sockets:
                ws.push(None)
            results = await asyncio.wait_for(
                asyncio.gather(*server.tasks, return_exceptions=True), 3.0)
            unseen = [result for task, result in zip(server.tasks, results, strict=True)
                      if result is not None and task not in server.surfaced]
            assert [] == unseen


@pytest.fixture
async def server(make_server: MakeServer) -> Server:
    """An up node with default settings."""
    return await make_server()


# --- push --------------------------------------------------------------------------------------

async def test_subscriber_is_sent_the_new_frame_of_a_registration(server: Server) -> None:
    """After subscribing, a register through register.json reaches the session as one `new`
    frame: the InstanceChange with the revision token."""
    ws = server.connect(DISCOVERY)
    await server.subscribe(ws)
    assert OK_BODY == await server.register(instance())
    await server.idle(ws, 1)
    expected = [push_frame("new", server.clock.wall_ms(), instance(), server.token(1))]
    assert expected == ws.sent


async def test_subscriber_gets_only_its_services_in_revision_order(server: Server) -> None:
    """Changes published by the node reach a discovery session for its services only, in order;
    an all-changes session gets every one."""
    mine, everything = server.connect(DISCOVERY), server.connect(ALL_CHANGES)
    await server.subscribe(mine)
    await server.sessions(2)
    wall = server.clock.wall_ms()
    server.publish_register(instance("10.0.0.1:80"), instance("10.0.0.2:80", serviceId=OTHER))
    server.publish_register(instance("10.0.0.3:80"))
    await server.idle(mine, 2)
    await server.idle(everything, 3)
    first, other, third = (push_frame("new", wall, instance("10.0.0.1:80"), server.token(1)),
                           push_frame("new", wall, instance("10.0.0.2:80", serviceId=OTHER),
                                      server.token(2)),
                           push_frame("new", wall, instance("10.0.0.3:80"), server.token(3)))
    assert ([first, third], [first, other, third]) == (mine.sent, everything.sent)


async def test_fan_out_is_started_in_steps_and_each_session_gets_its_frames_in_order(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no time per step, each step of the sending starts one session's send and gives the
    loop back: 200 sessions woken by one change take 200 steps, and every session still gets
    both changes, in order, one send under way at a time."""
    monkeypatch.setattr(push_module, "SEND_STEP", 0.0)
    steps = 0
    flush = server.push._flush

    def counted() -> None:
        nonlocal steps
        steps += 1
        flush()

    monkeypatch.setattr(server.push, "_flush", counted)
    sockets = [server.connect(ALL_CHANGES) for _ in range(200)]
    await server.sessions(200)
    wall = server.clock.wall_ms()
    server.publish_register(instance("10.0.0.1:80"))
    server.publish_register(instance("10.0.0.2:80"))
    for ws in sockets:
        await server.idle(ws, 2)
    expected = [push_frame("new", wall, instance("10.0.0.1:80"), server.token(1)),
                push_frame("new", wall, instance("10.0.0.2:80"), server.token(2))]
    assert ([expected] * 200, [expected] * 200, True) == (
        [ws.sent for ws in sockets], [ws.attempted for ws in sockets], steps >= 200)


async def test_unregister_is_pushed_as_delete(server: Server) -> None:
    """An unregister through unregister.json reaches the subscriber as a `delete` frame."""
    ws = server.connect(DISCOVERY)
    await server.register(instance())
    await server.subscribe(ws)
    server.clock.advance(1.0)
    await server.client.post("/api/registry/unregister.json", json={"instances": [instance()]})
    await server.idle(ws, 1)
    assert [push_frame("delete", server.clock.wall_ms(), instance(), server.token(2))] == ws.sent


async def test_subscription_with_a_token_replays_what_was_missed(server: Server) -> None:
    """A subscription carrying the last token seen is sent the service's later changes."""
    wall = server.clock.wall_ms()
    server.publish_register(instance("10.0.0.1:80"))
    server.publish_register(instance("10.0.0.2:80", serviceId=OTHER))
    server.publish_register(instance("10.0.0.3:80"))
    ws = server.connect(DISCOVERY)
    await server.subscribe(ws, revision=server.token(1))
    await server.idle(ws, 1)
    assert [push_frame("new", wall, instance("10.0.0.3:80"), server.token(3))] == ws.sent


@pytest.mark.parametrize("token", ["0123456789abcdef.1", "garbage", "RUN.\u00b2"],
                         ids=["other run", "garbage", "superscript digit"])
async def test_subscription_with_an_unusable_token_is_sent_a_reload(server: Server,
                                                                    token: str) -> None:
    """A token of another run or one not understood gets a reload of the service, and the
    session goes on."""
    server.publish_register(instance())
    ws = server.connect(DISCOVERY)
    await server.subscribe(ws, revision=token.replace("RUN", server.push.hub.run_id))
    await server.idle(ws, 1)
    server.publish_register(instance("10.0.0.9:80"))
    await server.idle(ws, 2)
    wall = server.clock.wall_ms()
    expected = [reload_frame(SERVICE, wall, server.token(1)),
                push_frame("new", wall, instance("10.0.0.9:80"), server.token(2))]
    assert expected == ws.sent


async def test_all_changes_session_resumes_from_a_token(server: Server) -> None:
    """An all-changes session sent a frame with `revision` is sent every change after it."""
    wall = server.clock.wall_ms()
    server.publish_register(instance("10.0.0.1:80"))
    server.publish_register(instance("10.0.0.2:80", serviceId=OTHER))
    ws = server.connect(ALL_CHANGES)
    ws.push(json.dumps({"revision": server.token(1)}))
    await server.idle(ws, 1)
    other = instance("10.0.0.2:80", serviceId=OTHER)
    assert [push_frame("new", wall, other, server.token(2))] == ws.sent


async def test_resume_is_replayed_in_steps_with_live_changes_in_order(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replay read one log entry per step, with a change of its service registered between
    two steps, sends every change of the service after the token once, in revision order,
    then live ones; the other service's changes are not sent. (The service's state keeps only
    its last change, so the resume reads the log.)"""
    monkeypatch.setattr(service_state, "RECENT", 1)
    hub = server.push.hub
    hub.replay_chunk = 1
    wall = server.clock.wall_ms()
    for n in range(1, 5):
        server.publish_register(instance(f"10.0.0.{n}:80",
                                         serviceId=SERVICE if n % 2 else OTHER))
    steps: list[int] = []
    replay = hub.replay

    def step(*args: Any) -> int:
        if len(steps) == 1:  # after the first step: a live change of the replayed service
            server.publish_register(instance("10.0.0.5:80"))
        steps.append(replay(*args))
        return steps[-1]

    hub.replay = step  # type: ignore[method-assign]
    ws = server.connect(DISCOVERY)
    await server.subscribe(ws, revision=server.token(0))
    await until(lambda: hub.sessions[1].replay is None, "the replay's end")
    server.publish_register(instance("10.0.0.6:80"))
    await server.idle(ws, 4)
    expected = ([push_frame("new", wall, instance(f"10.0.0.{n}:80"), server.token(n))
                 for n in (1, 3, 5, 6)], [1, 0, 1, 0, 1, 0])
    assert expected == (ws.sent, steps)


async def test_subscription_to_a_service_unchanged_since_its_token_reads_no_log(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A token not older than the service's latest change is answered without reading the
    change log (however long it is), and later changes come live."""
    wall = server.clock.wall_ms()
    server.publish_register(instance("10.0.0.1:80"))
    for n in range(2, 6):
        server.publish_register(instance(f"10.0.0.{n}:80", serviceId=OTHER))

    def unreadable(*args: Any) -> None:
        raise AssertionError("the change log was read")

    monkeypatch.setattr(ChangeLog, "since", unreadable)
    ws = server.connect(DISCOVERY)
    await server.subscribe(ws, revision=server.token(1))
    monkeypatch.undo()
    server.publish_register(instance("10.0.0.6:80"))
    await server.idle(ws, 1)
    assert [push_frame("new", wall, instance("10.0.0.6:80"), server.token(6))] == ws.sent


async def test_closed_session_leaves_the_hub(server: Server) -> None:
    """When the client goes away its session ends: no subscription, no session, no sender."""
    ws = server.connect(DISCOVERY)
    await server.subscribe(ws)
    ws.push(None)
    await server.ended(ws)
    server.publish_register(instance())
    assert (0, set(), {}, []) == (server.push.hub.subscribers(SERVICE), server.push.sessions,
                                  server.push.hub.sessions, ws.sent)


# --- subscription errors -------------------------------------------------------------------

LONG = "s" * 257


@pytest.mark.parametrize(("frame", "expected"), [
    ('{"serviceId": ', None),  # malformed JSON: the message is the decoder's, see below
    ('{"serviceId": 5}', None),
    ("{}", error("bad-request", "subscription frame: serviceId is null or blank")),
    (subscription("   "), error("bad-request", "subscription frame: serviceId is null or blank")),
    (subscription(""), error("bad-request", "subscription frame: serviceId is null or blank")),
    (subscription(LONG), error("bad-request", "subscription frame: serviceId is longer than "
                                              "256 characters or has control characters")),
    (subscription("svc\x01"), error("bad-request", "subscription frame: serviceId is longer "
                                                   "than 256 characters or has control "
                                                   "characters")),
    (subscription(region="NTG"), error(
        "no-permission", "regionId is not the same as the discovery node. regionId: NTG, "
                         "discovery node.regionId: SHA")),
], ids=["malformed", "wrong type", "no serviceId", "blank", "empty", "too long", "control",
        "other region"])
async def test_bad_subscription_gets_an_error_frame_and_the_session_goes_on(
        server: Server, frame: str, expected: dict[str, Any] | None) -> None:
    """A subscription that cannot be taken is answered by an error frame; a valid one after it
    still works."""
    if expected is None:
        with pytest.raises(wire.DecodeError) as problem:
            wire.decode(frame.encode(), wire.Subscription)
        expected = error("bad-request", f"subscription frame: {problem.value}")
    ws = server.connect(DISCOVERY)
    ws.push(frame)
    await server.answers(ws, 1)
    await server.subscribe(ws)
    server.publish_register(instance())
    await server.idle(ws, 2)
    assert ([expected, json.loads(push_frame("new", server.clock.wall_ms(), instance(),
                                             server.token(1)))], None) == (ws.frames(), ws.code)


async def test_region_and_service_id_are_compared_without_case(server: Server) -> None:
    """A subscription naming the region "sha" and the service in capitals is taken."""
    ws = server.connect(DISCOVERY)
    ws.push(subscription(SERVICE.upper(), region="sha"))
    await until(lambda: server.push.hub.subscribers(SERVICE) == 1, "the subscription")
    server.publish_register(instance())
    await server.idle(ws, 1)
    assert [push_frame("new", server.clock.wall_ms(), instance(), server.token(1))] == ws.sent


async def test_subscriptions_past_the_limit_get_an_error_frame(make_server: MakeServer) -> None:
    """With ws_max_subscriptions 1 a second service is refused with an error frame, and the
    first subscription keeps working."""
    server = await make_server(ws_max_subscriptions=1)
    ws = server.connect(DISCOVERY)
    await server.subscribe(ws)
    ws.push(subscription(OTHER))
    await server.answers(ws, 1)
    server.publish_register(instance(), instance("10.0.0.2:80", serviceId=OTHER))
    await server.idle(ws, 2)
    expected = [error("bad-request", "a session subscribes to at most 1 services"),
                json.loads(push_frame("new", server.clock.wall_ms(), instance(),
                                      server.token(1)))]
    assert (expected, None) == (ws.frames(), ws.code)


# --- frames the server does not take ---------------------------------------------------------

@pytest.mark.parametrize("path", [DISCOVERY, ALL_CHANGES, HEARTBEAT_WS])
async def test_binary_frame_gets_an_error_frame_then_close_1003(server: Server,
                                                                path: str) -> None:
    """A binary frame is answered by a bad-request error frame, then the session is closed
    with 1003."""
    ws = server.connect(path)
    ws.push(b'{"serviceId": "x"}')
    await server.ended(ws)
    await until(lambda: ws.code is not None, "the close")
    expected = ([error("bad-request", "binary frames are not understood; send JSON text "
                                      "frames", 1003)], 1003)
    assert expected == (ws.frames(), ws.code)


@pytest.mark.parametrize("path", [DISCOVERY, ALL_CHANGES, HEARTBEAT_WS])
async def test_oversized_frame_gets_an_error_frame_then_close_1009(make_server: MakeServer,
                                                                   path: str) -> None:
    """A frame over ws_max_frame_bytes is answered by an error frame naming the sizes, then
    the session is closed with 1009."""
    server = await make_server(ws_max_frame_bytes=1024)
    ws = server.connect(path)
    ws.push(" " * 1025)
    await server.ended(ws)
    await until(lambda: ws.code is not None, "the close")
    expected = ([error("bad-request", "a frame of 1025 characters is over the limit of 1024",
                       1009)], 1009)
    assert expected == (ws.frames(), ws.code)


async def test_frame_of_exactly_the_limit_is_read(make_server: MakeServer) -> None:
    """A subscription frame of exactly ws_max_frame_bytes characters is taken."""
    server = await make_server(ws_max_frame_bytes=1024)
    ws = server.connect(DISCOVERY)
    frame = subscription()
    ws.push(frame + " " * (1024 - len(frame)))
    await until(lambda: server.push.hub.subscribers(SERVICE) == 1, "the subscription")
    assert ([], None) == (ws.sent, ws.code)


# --- heartbeat -------------------------------------------------------------------------------

async def test_heartbeat_frames_are_answered_like_heartbeat_json(server: Server) -> None:
    """Each heartbeat frame gets one answer, the same as heartbeat.json gives: data-not-found
    before the register, success after."""
    ws = server.connect(HEARTBEAT_WS)
    body = heartbeat_frame(instance())
    unknown = partial(failed(instance(), "data-not-found", NOT_EXISTING))
    over_http = (await server.client.post(HEARTBEAT, content=body)).json()
    ws.push(body)
    await server.answers(ws, 1)
    assert OK_BODY == await server.register(instance())
    ws.push(body)
    await server.answers(ws, 2)
    assert ([unknown, OK_BODY], unknown) == (ws.frames(), over_http)


async def test_heartbeat_frame_renews_the_lease(server: Server) -> None:
    """A heartbeat frame renews the lease: the instance outlives its first 20 s."""
    await server.register(instance())
    ws = server.connect(HEARTBEAT_WS)
    server.clock.advance(15.0)
    ws.push(heartbeat_frame(instance()))
    await server.answers(ws, 1)
    server.clock.advance(15.0)
    server.node.sweep_once()
    assert ([OK_BODY], 1) == (ws.frames(), server.node.registry.instance_count)


@pytest.mark.parametrize("body", ['{"instances": [', "[1, 2]", '{"instances": 7}'],
                         ids=["malformed", "array", "wrong type"])
async def test_unreadable_heartbeat_frame_gets_bad_request(server: Server, body: str) -> None:
    """A frame that is not a HeartbeatRequest is answered bad-request, naming the frame where
    heartbeat.json names the request body, and the session goes on."""
    ws = server.connect(HEARTBEAT_WS)
    over_http = (await server.client.post(HEARTBEAT, content=body)).json()
    ws.push(body)
    ws.push(heartbeat_frame(instance()))
    await server.answers(ws, 2)
    message = over_http["responseStatus"]["message"]
    expected = [registry_fail("bad-request", message.replace("request body: ",
                                                             "heartbeat frame: ", 1)),
                partial(failed(instance(), "data-not-found", NOT_EXISTING))]
    assert (True, expected) == (message.startswith("request body: "), ws.frames())


@pytest.mark.parametrize("body", ["{}", '{"instances": []}', '{"instances": null}'])
async def test_heartbeat_frame_without_instances_gets_bad_request(server: Server,
                                                                  body: str) -> None:
    """A heartbeat frame with no instances is answered exactly as heartbeat.json answers it."""
    ws = server.connect(HEARTBEAT_WS)
    over_http = (await server.client.post(HEARTBEAT, content=body)).json()
    ws.push(body)
    await server.answers(ws, 1)
    expected = registry_fail("bad-request", "request.instances is null or empty.")
    assert ([expected], expected) == (ws.frames(), over_http)


async def test_heartbeat_frames_are_rate_limited(make_server: MakeServer) -> None:
    """The heartbeat limit counts frames as it counts heartbeat.json calls: the third of a
    limit of 2 is rate-limited."""
    server = await make_server(rate_limits={"registry.heartbeat": 2})
    await server.register(instance())
    ws = server.connect(HEARTBEAT_WS)
    for _ in range(3):
        ws.push(heartbeat_frame(instance()))
    await server.answers(ws, 3)
    assert [OK_BODY, OK_BODY, {"failedInstances": None, "responseStatus": RATE_LIMITED}] == (
        ws.frames())


async def test_heartbeat_frame_on_a_node_not_up(make_server: MakeServer) -> None:
    """A node still starting answers a heartbeat frame service-unavailable."""
    server = await make_server(up=False)
    ws = server.connect(HEARTBEAT_WS)
    ws.push(heartbeat_frame(instance()))
    await server.answers(ws, 1)
    assert [registry_fail("service-unavailable", "Serivce registry is not in up state. "
                          "Current status: starting")] == ws.frames()


# --- limits and slow sessions ------------------------------------------------------------------

async def test_sessions_past_the_limit_are_refused_with_1013(make_server: MakeServer) -> None:
    """With ws_max_sessions 2 a third session gets an error frame and close 1013; the two
    others go on, and a place freed is taken again."""
    server = await make_server(ws_max_sessions=2)
    subscriber, beat = server.connect(DISCOVERY), server.connect(HEARTBEAT_WS)
    await server.subscribe(subscriber)
    await server.sessions(2)
    refused = server.connect(ALL_CHANGES)
    await server.ended(refused)
    await until(lambda: refused.code is not None, "the close")
    server.publish_register(instance())
    beat.push(heartbeat_frame(instance()))
    await server.idle(subscriber, 1)
    await server.answers(beat, 1)
    beat.push(None)
    await server.ended(beat)
    again = server.connect(HEARTBEAT_WS)
    again.push(heartbeat_frame(instance()))
    await server.answers(again, 1)
    expected = ([error("service-unavailable", "this node already holds 2 WebSocket sessions, "
                                              "its limit; try another node or later", 1013)], 1013,
                [push_frame("new", server.clock.wall_ms(), instance(), server.token(1))],
                [OK_BODY], [OK_BODY], None)
    assert expected == (refused.frames(), refused.code, subscriber.sent, beat.frames(),
                        again.frames(), subscriber.code)


async def test_slow_subscriber_is_closed_4008_and_a_fast_one_gets_everything(
        make_server: MakeServer) -> None:
    """A session whose send never finishes falls behind: once even one reload per service does
    not fit in ws_send_queue it is closed with 4008; a fast session gets every frame."""
    server = await make_server(ws_send_queue=2)
    slow, fast = FakeWebSocket(stuck=True), FakeWebSocket()
    server.connect(ALL_CHANGES, slow)
    server.connect(ALL_CHANGES, fast)
    await server.sessions(2)
    wall = server.clock.wall_ms()
    expected = []
    for n, name in enumerate(["a", "b", "c", "d", "e", "f"], 1):
        inst = instance(f"10.0.0.{n}:80", serviceId=f"svc-{name}")
        server.publish_register(inst)
        expected.append(push_frame("new", wall, inst, server.token(n)))
        await server.idle(fast, n)
    await server.ended(slow)
    assert ((4008, expected[:1], []), (None, expected), 1) == (
        (slow.code, slow.attempted, slow.sent), (fast.code, fast.sent),
        server.push.closed_too_slow)


async def test_replay_that_does_not_fit_closes_4008_after_an_error_frame(
        make_server: MakeServer) -> None:
    """An all-changes session asking for more services' changes than its queue holds is sent
    a too-slow error frame and closed with 4008."""
    server = await make_server(ws_send_queue=2)
    for n, name in enumerate(["a", "b", "c"], 1):
        server.publish_register(instance(f"10.0.0.{n}:80", serviceId=f"svc-{name}"))
    ws = server.connect(ALL_CHANGES)
    ws.push(json.dumps({"revision": server.token(0)}))
    await server.ended(ws)
    expected = ([error("too-slow", "too slow: the changes it asked to be replayed do not fit",
                       4008)], 4008)
    assert expected == (ws.frames(), ws.code)


async def test_full_queue_of_one_service_becomes_a_reload(make_server: MakeServer) -> None:
    """A subscriber stuck in a send while its service changes more than ws_send_queue times is
    sent, once unstuck, a reload of the service and what followed it, not closed."""
    server = await make_server(ws_send_queue=2)
    ws = FakeWebSocket()
    gate = asyncio.Event()
    original_send = ws.send

    async def send(text: str) -> None:
        await gate.wait()
        await original_send(text)

    ws.send = send  # type: ignore[method-assign]
    server.connect(DISCOVERY, ws)
    await server.subscribe(ws)
    wall = server.clock.wall_ms()
    server.publish_register(instance("10.0.0.1:80"))
    await until(lambda: not server.push.hub.sessions[1].queue, "the first send to start")
    for n in range(2, 6):
        server.publish_register(instance(f"10.0.0.{n}:80"))
    gate.set()
    await server.idle(ws, 3)
    expected = [push_frame("new", wall, instance("10.0.0.1:80"), server.token(1)),
                reload_frame(SERVICE, wall, server.token(4)),
                push_frame("new", wall, instance("10.0.0.5:80"), server.token(5))]
    assert (expected, None, 2) == (ws.sent, ws.code, server.push.hub.sessions[1].dropped)


async def test_queue_past_ws_send_queue_bytes_becomes_a_reload(make_server: MakeServer) -> None:
    """A subscriber stuck in a send while frames past ws_send_queue_bytes (far below
    ws_send_queue) arrive is sent, once unstuck, a reload of the service and what followed it."""
    server = await make_server(ws_send_queue_bytes=16_384)
    ws = FakeWebSocket()
    gate = asyncio.Event()
    original_send = ws.send

    async def send(text: str) -> None:
        await gate.wait()
        await original_send(text)

    ws.send = send  # type: ignore[method-assign]
    server.connect(DISCOVERY, ws)
    await server.subscribe(ws)
    wall = server.clock.wall_ms()
    server.publish_register(instance("10.0.1.100:80"))
    await until(lambda: not server.push.hub.sessions[1].waiting, "the first send to start")
    size = len(push_frame("new", wall, instance("10.0.1.101:80"), server.token(2)))
    fit = 16_384 // size  # frames that fit; one more turns them into a reload
    for n in range(101, 101 + fit + 1):
        server.publish_register(instance(f"10.0.1.{n}:80"))
    gate.set()
    await server.idle(ws, 3)
    last = 2 + fit
    expected = [push_frame("new", wall, instance("10.0.1.100:80"), server.token(1)),
                reload_frame(SERVICE, wall, server.token(last - 1)),
                push_frame("new", wall, instance(f"10.0.1.{100 + last - 1}:80"),
                           server.token(last))]
    assert (expected, None, fit - 1) == (ws.sent, ws.code, server.push.hub.sessions[1].dropped)


# --- housekeeping ----------------------------------------------------------------------------

async def test_sweep_closes_sessions_past_their_age_with_1000(make_server: MakeServer) -> None:
    """sweep() closes every session (push and heartbeat) ws_session_ttl after it opened, with
    1000 and no error frame; younger ones stay."""
    server = await make_server(ws_session_ttl=60.0)
    old_push, old_beat = server.connect(DISCOVERY), server.connect(HEARTBEAT_WS)
    await server.sessions(2)
    server.clock.advance(30.0)
    young = server.connect(ALL_CHANGES)
    await server.sessions(3)
    server.clock.advance(29.5)
    server.push.sweep()
    codes_before = (old_push.code, old_beat.code, young.code)
    server.clock.advance(0.5)
    server.push.sweep()
    await server.sessions(1)
    assert ((None, None, None), (1000, 1000, None), [], []) == (
        codes_before, (old_push.code, old_beat.code, young.code), old_push.sent, old_beat.sent)


async def test_sweep_closes_a_sender_stuck_past_the_send_timeout_with_4008(
        make_server: MakeServer) -> None:
    """sweep() closes a session whose send has taken ws_send_timeout with 4008, and leaves a
    session that keeps up alone."""
    server = await make_server(ws_send_timeout=2.0)
    stuck, fine = FakeWebSocket(stuck=True), FakeWebSocket()
    server.connect(ALL_CHANGES, stuck)
    server.connect(ALL_CHANGES, fine)
    await server.sessions(2)
    server.publish_register(instance())
    await until(lambda: len(stuck.attempted) == 1, "the stuck send")
    await server.idle(fine, 1)
    server.clock.advance(1.5)
    server.push.sweep()
    code_before = stuck.code
    server.clock.advance(0.5)
    server.push.sweep()
    await server.ended(stuck)
    assert (None, 4008, None, 1) == (code_before, stuck.code, fine.code,
                                     server.push.closed_too_slow)


async def test_close_all_closes_every_session_with_1001(server: Server) -> None:
    """close_all() (the node stopping) closes push and heartbeat sessions with 1001; every
    handler returns."""
    sockets = [server.connect(DISCOVERY), server.connect(ALL_CHANGES),
               server.connect(HEARTBEAT_WS)]
    await server.sessions(3)
    await server.push.close_all()
    for ws in sockets:
        await server.ended(ws)
    assert ([1001, 1001, 1001], [[], [], []], set()) == (
        [ws.code for ws in sockets], [ws.sent for ws in sockets], server.push.sessions)


@pytest.mark.parametrize(("coalesce_ms", "frames"), [(0, [1, 2, 3, 4, 5]), (50, [5])])
async def test_coalescing_batches_a_burst(make_server: MakeServer, coalesce_ms: int,
                                          frames: list[int]) -> None:
    """With ws_coalesce_ms a burst of five registers of one instance is sent as its last
    change only; without it, as five frames."""
    server = await make_server(ws_coalesce_ms=coalesce_ms)
    ws = server.connect(DISCOVERY)
    await server.subscribe(ws)
    wall = server.clock.wall_ms()
    for port in range(1, 6):
        server.publish_register(instance(port=port))
    await server.idle(ws, len(frames))
    expected = [push_frame("new", wall, instance(port=n), server.token(n)) for n in frames]
    assert expected == ws.sent


async def test_connections_json_counts_the_sessions(server: Server) -> None:
    """connections.json counts heartbeat sessions as registry and push sessions as discovery,
    as strings, and follows sessions that end."""

    async def counts() -> Any:
        return (await server.client.get(CONNECTIONS)).json()

    empty = await counts()
    sockets = [server.connect(DISCOVERY), server.connect(DISCOVERY), server.connect(ALL_CHANGES),
               server.connect(HEARTBEAT_WS)]
    await server.sessions(4)
    full = await counts()
    sockets[0].push(None)
    sockets[3].push(None)
    await server.sessions(2)
    assert ({"discovery": "0", "registry": "0"}, {"discovery": "3", "registry": "1"},
            {"discovery": "2", "registry": "0"}) == (empty, full, await counts())
