"""Push and heartbeats over real WebSockets, against a real `artemis server` on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.process.conftest import RunningNode, StartNode

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets")

SUCCESS = {"errorCode": "success", "message": "", "status": "success"}
PARTIAL = {"errorCode": "partial_fail", "message": "", "status": "partial_fail"}


def instance(i: int = 5, service: str = "demo.service.v1", **extra: Any) -> dict[str, Any]:
    """An instance as the Java SDK sends it: every key, nulls written."""
    return {"groupId": None, "healthCheckUrl": None, "instanceId": f"10.0.0.{i}:8080",
            "ip": f"10.0.0.{i}", "machineName": None, "metadata": None, "port": 8080,
            "protocol": "http", "regionId": "SHA", "serviceId": service, "status": "up",
            "url": f"http://10.0.0.{i}:8080/api", "zoneId": "zone-1", **extra}


def ws_url(node: RunningNode, path: str) -> str:
    return node.url.replace("http://", "ws://") + path


async def next_frame(ws: ClientConnection, wait: float = 5.0) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), wait))
    return frame


async def drain_until_closed(ws: ClientConnection, wait: float) -> list[str]:
    """Every frame left on `ws` until the node closes it."""
    frames = []
    try:
        while True:
            frames.append(str(await asyncio.wait_for(ws.recv(), wait)))
    except websockets.ConnectionClosed:
        return frames


async def subscribe(node: RunningNode, service: str = "demo.service.v1",
                    revision: str | None = None, **options: Any) -> ClientConnection:
    ws = await websockets.connect(ws_url(node, "/ws/discovery/instance-change"), **options)
    frame: dict[str, Any] = {"discoveryData": None, "regionId": None, "serviceId": service,
                             "zoneId": None}
    if revision is not None:
        frame["revision"] = revision
    await ws.send(json.dumps(frame))
    return ws


async def post(node: RunningNode, path: str, body: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=node.url, timeout=5) as client:
        answer: dict[str, Any] = (await client.post(path, json=body)).json()
    return answer


async def get(node: RunningNode, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=node.url, timeout=5) as client:
        answer: dict[str, Any] = (await client.get(path)).json()
    return answer


async def until(probe: Any, deadline: float, what: str) -> Any:
    """Await `probe()` until it returns something truthy; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline}s waiting for {what}")
        await asyncio.sleep(0.02)


def change(kind: str, data: dict[str, Any], frame: dict[str, Any]) -> dict[str, Any]:
    """The frame expected for `data`, with the frame's own time and revision."""
    return {"changeTime": frame["changeTime"], "changeType": kind, "instance": data,
            "revision": frame["revision"]}


async def test_register_and_unregister_are_pushed(start_node: StartNode) -> None:
    """A subscriber gets `new` when an instance registers and `delete` when it unregisters."""
    node = start_node()
    async with await subscribe(node) as ws:
        assert {"failedInstances": None, "responseStatus": SUCCESS} == await post(
            node, "/api/registry/register.json", {"instances": [instance()]})
        new = await next_frame(ws)
        await post(node, "/api/registry/unregister.json", {"instances": [instance()]})
        gone = await next_frame(ws)
    assert [change("new", instance(), new), change("delete", instance(), gone)] == [new, gone]


async def test_lease_expiry_is_pushed_as_delete(start_node: StartNode) -> None:
    """An instance that stops heartbeating is pushed as `delete` about one TTL later."""
    node = start_node("--lease-ttl", "1", "--no-self-preservation")
    async with await subscribe(node) as ws:
        await post(node, "/api/registry/register.json", {"instances": [instance()]})
        new = await next_frame(ws)
        started = time.monotonic()
        gone = await next_frame(ws, wait=5)
        waited = time.monotonic() - started
    assert (["new", "delete"], True) == ([new["changeType"], gone["changeType"]],
                                         0.8 <= waited <= 2.5)


async def test_resubscribe_with_a_revision_gets_exactly_the_missed_changes(
        start_node: StartNode) -> None:
    """A subscriber that reconnects with the last revision it saw is sent exactly the changes
    it missed, in order, and then live changes."""
    node = start_node()
    async with await subscribe(node) as ws:
        await post(node, "/api/registry/register.json", {"instances": [instance(1)]})
        seen = await next_frame(ws)
    await post(node, "/api/registry/register.json", {"instances": [instance(2)]})
    await post(node, "/api/registry/register.json",
               {"instances": [instance(3, service="other.service")]})
    await post(node, "/api/registry/unregister.json", {"instances": [instance(1)]})
    async with await subscribe(node, revision=seen["revision"]) as ws:
        missed = [await next_frame(ws), await next_frame(ws)]
        await post(node, "/api/registry/register.json", {"instances": [instance(4)]})
        live = await next_frame(ws)
    assert ([("new", "10.0.0.2:8080"), ("delete", "10.0.0.1:8080"), ("new", "10.0.0.4:8080")],
            True) == ([(f["changeType"], f["instance"]["instanceId"]) for f in [*missed, live]],
                      _revisions(seen, *missed, live) == sorted(_revisions(seen, *missed, live)))


def _revisions(*frames: dict[str, Any]) -> list[int]:
    return [int(f["revision"].rsplit(".", 1)[1]) for f in frames]


async def test_resubscribe_with_an_unknown_revision_gets_a_reload(start_node: StartNode) -> None:
    """A revision from another run of the node is answered with a reload of the service."""
    node = start_node()
    async with await subscribe(node, revision="0123456789abcdef.42") as ws:
        reload = await next_frame(ws)
    assert {"changeTime": reload["changeTime"], "changeType": "reload", "instance": {
        "groupId": None, "healthCheckUrl": None, "instanceId": "reload", "ip": "0.0.0.0",
        "machineName": None, "metadata": None, "port": 0, "protocol": None, "regionId": None,
        "serviceId": "demo.service.v1", "status": None, "url": "http://serviceId/reload",
        "zoneId": None}, "revision": reload["revision"]} == reload


async def test_slow_subscriber_is_dropped_while_a_fast_one_gets_everything(
        start_node: StartNode) -> None:
    """A subscriber that stops reading is closed as too slow (4008); a fast subscriber of the
    same service receives every change, in order."""
    node = start_node("--ws-send-queue", "500", "--ws-send-timeout", "1")
    fat = {f"k{i}": "x" * 1000 for i in range(16)}  # 16 KB frames fill socket buffers fast
    total = 2000
    slow = await subscribe(node, max_queue=1)  # never read: the client stops reading soon
    fast = await subscribe(node)
    received: list[str] = []

    async def read_fast() -> None:
        while len(received) < total:
            received.append((await next_frame(fast, wait=10))["instance"]["instanceId"])

    reader = asyncio.create_task(read_fast())
    for first in range(0, total, 100):
        await post(node, "/api/registry/register.json",
                   {"instances": [instance(i, metadata=fat) for i in range(first, first + 100)]})
    await asyncio.wait_for(reader, 30)

    async def slow_closed() -> bool:
        stats = await get(node, "/api/status/runtime.json")
        return bool(stats["push"]["closedTooSlow"] == 1)

    await until(slow_closed, 10, "the slow subscriber to be closed")
    left = await drain_until_closed(slow, 10)
    sessions = await get(node, "/api/status/message/connections.json")
    await fast.close()
    assert ([f"10.0.0.{i}:8080" for i in range(total)], True, {"discovery": "1",
                                                              "registry": "0"}) == (
        received, len(left) < total, sessions)


async def test_heartbeat_frames_renew_leases(start_node: StartNode) -> None:
    """Heartbeat frames keep a 1 s lease alive for 3 s; unknown instances come back
    data-not-found, one answer per frame."""
    node = start_node("--lease-ttl", "1", "--no-self-preservation")
    async with websockets.connect(ws_url(node, "/ws/registry/heartbeat")) as hb:
        await hb.send(json.dumps({"instances": [instance()]}))
        unknown = json.loads(await hb.recv())
        await post(node, "/api/registry/register.json", {"instances": [instance()]})
        end = time.monotonic() + 3
        answers = []
        while time.monotonic() < end:
            await hb.send(json.dumps({"instances": [instance()]}))
            answers.append(json.loads(await hb.recv()))
            await asyncio.sleep(0.2)
        lookup = await post(node, "/api/discovery/lookup.json", {
            "discoveryConfigs": [{"serviceId": "demo.service.v1"}], "regionId": "SHA"})
    assert ({"failedInstances": [{
        "errorCode": "data-not-found",
        "errorMessage": "sha/zone-1/demo.service.v1/10.0.0.5:8080: Instance is not exising! "
                        "Need re-register.",
        "instance": instance()}], "responseStatus": PARTIAL},
        [{"failedInstances": None, "responseStatus": SUCCESS}] * len(answers),
        [instance()]) == (unknown, answers, lookup["services"][0]["instances"])


async def test_java_sdk_sequence(start_node: StartNode) -> None:
    """The Java SDK's whole sequence (§13): up-registry-nodes, unregister, heartbeat frames,
    register on data-not-found, up-discovery-nodes, lookup, subscribe with null region: the
    instance is discoverable and its changes are pushed."""
    node = start_node()
    scope = {"regionId": "SHA", "zoneId": "zone-1"}
    nodes = await post(node, "/api/cluster/up-registry-nodes.json", scope)
    url = nodes["nodes"][0]["url"]
    assert node.url == url
    await post(node, "/api/registry/unregister.json", {"instances": [instance()]})
    async with websockets.connect(url.replace("http://", "ws://") + "/ws/registry/heartbeat") as hb:
        await hb.send(json.dumps({"instances": [instance()]}))
        first = json.loads(await hb.recv())
        failed = [f["instance"] for f in first["failedInstances"]
                  if f["errorCode"] in ("data-not-found", "unknown")]
        registered = await post(node, "/api/registry/register.json", {"instances": failed})
        await hb.send(json.dumps({"instances": [instance()]}))
        second = json.loads(await hb.recv())
        discovery = await post(node, "/api/cluster/up-discovery-nodes.json", scope)
        lookup = await post(node, "/api/discovery/lookup.json", {
            "discoveryConfigs": [{"discoveryData": None, "regionId": None,
                                  "serviceId": "demo.service.v1", "zoneId": None}], **scope})
        async with await subscribe(node) as ws:
            await post(node, "/api/registry/register.json", {"instances": [instance(6)]})
            pushed = await next_frame(ws)
    assert ([instance()], {"failedInstances": None, "responseStatus": SUCCESS},
            {"failedInstances": None, "responseStatus": SUCCESS}, [url],
            [instance()], change("new", instance(6), pushed)) == (
        failed, registered, second, [n["url"] for n in discovery["nodes"]],
        lookup["services"][0]["instances"], pushed)


async def test_all_instance_change_gets_every_service(start_node: StartNode) -> None:
    """The all-instance-change endpoint pushes the changes of every service."""
    node = start_node()
    async with websockets.connect(ws_url(node, "/ws/discovery/all-instance-change")) as ws:
        await ws.send("{}")  # ignored, as the original ignores it
        await post(node, "/api/registry/register.json",
                   {"instances": [instance(1, service="a"), instance(2, service="b")]})
        frames = [await next_frame(ws), await next_frame(ws)]
    assert [("new", "a"), ("new", "b")] == [(f["changeType"], f["instance"]["serviceId"])
                                            for f in frames]


async def test_shutdown_closes_sessions_with_going_away(start_node: StartNode) -> None:
    """SIGTERM closes open WebSocket sessions with 1001 and the process exits 0."""
    node = start_node()
    ws = await subscribe(node)
    await post(node, "/api/registry/register.json", {"instances": [instance()]})
    await next_frame(ws)
    loop = asyncio.get_running_loop()
    stopping = loop.run_in_executor(None, node.signal, 15)
    left = await drain_until_closed(ws, 10)
    assert ([], 0) == (left, await stopping)
