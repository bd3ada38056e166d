"""Push queues under hostile traffic: no burst of changes or resume frame freezes the node.

A real `artemis server` with one subscriber to all changes takes one register of 5,000 instances
in 5,000 services (five times what a push queue holds), and a resume frame with an old revision
against a change log of 45,000 changes. Each queue overflow costs the same per change however far
behind the session is, and a replay reads the log in bounded steps, so the node keeps answering
throughout: the event loop is never late by more than a loose bound, every instance stays
registered, and the subscribers that cannot keep up are closed as too slow.
"""

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
from tests.process.conftest import start_node as start_node  # the fixture, here too

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets")

SERVICES = 5_000  # one register request (max_batch), five times ws_send_queue
LAG_BOUND_MS = 2_000.0  # loose: the fixed node is late by tens of ms, the old one by seconds
ANSWER_DEADLINE = 10.0  # seconds any one request may take here
SUCCESS = {"errorCode": "success", "message": "", "status": "success"}


def instance(i: int, port: int = 8080) -> dict[str, Any]:
    return {"groupId": None, "healthCheckUrl": None, "instanceId": f"10.0.{i // 256}.{i % 256}",
            "ip": f"10.0.{i // 256}.{i % 256}", "machineName": None, "metadata": None,
            "port": port, "protocol": "http", "regionId": "SHA", "serviceId": f"flood.svc.{i}",
            "status": "up", "url": f"http://10.0.{i // 256}.{i % 256}:{port}/api",
            "zoneId": "zone-1"}


def ws_url(node: RunningNode, path: str) -> str:
    return node.url.replace("http://", "ws://") + path


async def call(client: httpx.AsyncClient, path: str, body: Any = None) -> dict[str, Any]:
    """POST `body` (GET without one) and return the JSON answer."""
    if body is None:
        response = await client.get(path)
    else:
        response = await client.post(path, json=body)
    answer: dict[str, Any] = response.json()
    return answer


async def frames_until_closed(ws: ClientConnection, deadline: float) -> list[dict[str, Any]]:
    """Every frame the node sends until it closes the session; fail after `deadline` s."""
    frames: list[dict[str, Any]] = []
    end = time.monotonic() + deadline
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), end - time.monotonic())))
    except websockets.ConnectionClosed:
        return frames
    except TimeoutError:
        pytest.fail(f"the session was not closed within {deadline} s")


async def sessions_open(client: httpx.AsyncClient, count: int) -> None:
    """Wait until the node holds `count` push sessions."""
    end = time.monotonic() + ANSWER_DEADLINE
    while (await call(client, "/api/status/message/connections.json"))["discovery"] != str(count):
        if time.monotonic() > end:
            pytest.fail(f"{count} push sessions not open within {ANSWER_DEADLINE} s")
        await asyncio.sleep(0.02)


async def lag_ms(client: httpx.AsyncClient, since: float) -> float:
    """The event loop's largest lateness (ms) since the monotonic time `since`."""
    window = time.monotonic() - since + 1.0
    runtime = await call(client, f"/api/status/runtime.json?window={window:.1f}")
    return float(runtime["loopLag"]["maxMs"])


async def still_serving(client: httpx.AsyncClient, count: int,
                        port: int = 8080) -> tuple[int, str, str, str]:
    """(health status, lookup of flood.svc.7, heartbeat of all `count` instances as registered
    on `port`, how many are registered): what a node that stayed up answers."""
    health = await client.get("/health")
    lookup = await call(client, "/api/discovery/lookup.json",
                        {"discoveryConfigs": [{"serviceId": "flood.svc.7", "regionId": "SHA",
                                               "zoneId": "zone-1"}]})
    [service] = lookup["services"]
    beat = await call(client, "/api/registry/heartbeat.json",
                      {"instances": [instance(i, port) for i in range(count)]})
    runtime = await call(client, "/api/status/runtime.json")
    return (health.status_code, service["instances"][0]["instanceId"],
            beat["responseStatus"]["status"], f"{runtime['instances']} instances")


async def test_register_of_5000_services_with_a_subscriber_to_all_changes(
        start_node: StartNode) -> None:
    """One register of 5,000 instances in 5,000 services, with one all-changes subscriber:
    answered at once, the loop never late by seconds, every instance still registered, and the
    subscriber (whose queue cannot hold 5,000 reloads) closed as too slow."""
    node = start_node()
    async with httpx.AsyncClient(base_url=node.url, timeout=ANSWER_DEADLINE) as client:
        ws = await websockets.connect(ws_url(node, "/ws/discovery/all-instance-change"))
        await sessions_open(client, 1)
        started = time.monotonic()
        registered = await call(client, "/api/registry/register.json",
                                {"instances": [instance(i) for i in range(SERVICES)]})
        frames = await frames_until_closed(ws, ANSWER_DEADLINE)
        serving = await still_serving(client, SERVICES)
        lag = await lag_ms(client, started)
    expected = (SUCCESS, "too-slow", (200, "10.0.0.7", "success", f"{SERVICES} instances"),
                True)
    assert expected == (registered["responseStatus"], closed_as(ws, frames), serving,
                        lag < LAG_BOUND_MS), f"loop late by {lag} ms"


def closed_as(ws: ClientConnection, frames: list[dict[str, Any]]) -> str:
    """Why the node closed a push session: the error code of its last frame, or, when the
    session was closed while a frame was still being sent (the error frame is then left out),
    the close code's meaning."""
    last = frames[-1].get("responseStatus") if frames else None
    if last is not None:
        return str(last["errorCode"])
    return {4008: "too-slow"}.get(ws.close_code or 0, f"closed with {ws.close_code}")


async def test_resume_from_an_old_revision_against_a_large_change_log(
        start_node: StartNode) -> None:
    """A resume frame with revision 0 against 45,000 logged changes of 5,000 services: an
    all-changes session is closed as too slow and a discovery session gets exactly its
    service's nine changes, while the loop is never late by seconds and nothing is lost."""
    node = start_node("--change-log-size", "50000")
    rounds = 9  # 45,000 changes: every instance re-registered on nine ports
    async with httpx.AsyncClient(base_url=node.url, timeout=ANSWER_DEADLINE) as client:
        for port in range(8080, 8080 + rounds):
            await call(client, "/api/registry/register.json",
                       {"instances": [instance(i, port) for i in range(SERVICES)]})
        async with websockets.connect(ws_url(node, "/ws/discovery/instance-change")) as probe:
            await probe.send(json.dumps({"serviceId": "flood.svc.7", "revision": "x"}))
            run = json.loads(await asyncio.wait_for(probe.recv(), ANSWER_DEADLINE))[
                "revision"].rpartition(".")[0]  # a reload, with this run's token
        started = time.monotonic()
        everything = await websockets.connect(
            ws_url(node, "/ws/discovery/all-instance-change"), max_size=None)
        await everything.send(json.dumps({"revision": f"{run}.0"}))
        closed = await frames_until_closed(everything, ANSWER_DEADLINE)
        one = await websockets.connect(ws_url(node, "/ws/discovery/instance-change"))
        await one.send(json.dumps({"serviceId": "flood.svc.7", "revision": f"{run}.0"}))
        replayed = [json.loads(await asyncio.wait_for(one.recv(), ANSWER_DEADLINE))
                    for _ in range(rounds)]
        await one.close()
        serving = await still_serving(client, SERVICES, 8080 + rounds - 1)
        lag = await lag_ms(client, started)
    expected = ("too-slow", [7 + n * SERVICES + 1 for n in range(rounds)],
                list(range(8080, 8080 + rounds)),
                (200, "10.0.0.7", "success", f"{SERVICES} instances"), True)
    assert expected == (closed[-1]["responseStatus"]["errorCode"],
                        [int(f["revision"].rpartition(".")[2]) for f in replayed],
                        [f["instance"]["port"] for f in replayed], serving,
                        lag < LAG_BOUND_MS), f"loop late by {lag} ms"
