"""A node's own pause (SIGSTOP, a VM stall, a frozen loop) is not its clients' silence.

A real `artemis server` with a 3 s lease is stopped for 6 s while its clients keep trying: when
it resumes, every lease that was live when it stopped gets the pause back, so nothing is evicted
and no `delete` is pushed; instances whose clients really went silent still expire afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from artemis import wire
from artemis.server.node import Node
from artemis.server.settings import Settings
from tests.process.conftest import RunningNode, StartNode
from tests.process.conftest import start_node as start_node  # the fixture, here too

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets")

SERVICE = "pause.service.v1"
SUCCESS = {"failedInstances": None,
           "responseStatus": {"errorCode": "success", "message": "", "status": "success"}}
LIVE = [1, 2, 3, 4]  # their clients heartbeat all along
SILENT = [11, 12]  # their clients stop heartbeating before the pause
STOPPED = 6.0  # seconds the node is stopped: twice its lease TTL


def instance(i: int) -> dict[str, Any]:
    return {"groupId": None, "healthCheckUrl": None, "instanceId": f"10.0.0.{i}:8080",
            "ip": f"10.0.0.{i}", "machineName": None, "metadata": None, "port": 8080,
            "protocol": "http", "regionId": "SHA", "serviceId": SERVICE, "status": "up",
            "url": f"http://10.0.0.{i}:8080/api", "zoneId": "zone-1"}


async def frames(ws: ClientConnection, into: list[tuple[str, str]]) -> None:
    """Collect (changeType, instanceId) of every frame pushed on `ws`."""
    while True:
        frame = json.loads(await ws.recv())
        into.append((frame["changeType"], frame["instance"]["instanceId"]))


async def until(probe: Any, deadline: float, what: str) -> None:
    end = time.monotonic() + deadline
    while not await probe():
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {deadline} s")
        await asyncio.sleep(0.05)


async def test_a_paused_node_keeps_live_leases_and_still_expires_silent_ones(
        start_node: StartNode) -> None:
    """A node stopped for twice its lease TTL evicts nothing whose client keeps heartbeating and
    pushes no delete for it; the silent instances expire after the pause, as deletes."""
    node: RunningNode = start_node("--lease-ttl", "3", "--no-self-preservation")
    pushed: list[tuple[str, str]] = []
    live = {"instances": [instance(i) for i in LIVE]}
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as client, \
            websockets.connect(node.url.replace("http://", "ws://")
                               + "/ws/discovery/instance-change") as ws:
        await ws.send(json.dumps({"discoveryData": None, "regionId": None,
                                  "serviceId": SERVICE, "zoneId": None}))
        reader = asyncio.create_task(frames(ws, pushed))
        everyone = {"instances": [instance(i) for i in LIVE + SILENT]}
        registered = (await client.post("/api/registry/register.json", json=everyone)).json()

        async def all_new() -> bool:
            return len(pushed) == len(LIVE) + len(SILENT)

        await until(all_new, 10, "a new frame for every instance")
        before = (await client.post("/api/registry/heartbeat.json", json=live)).json()

        os.kill(node.process.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(STOPPED)  # the pause is the attack: no request can be answered
        finally:
            os.kill(node.process.pid, signal.SIGCONT)

        answers = []

        async def silent_gone() -> bool:
            answers.append((await client.post("/api/registry/heartbeat.json",
                                              json=live)).json())
            return len(pushed) >= len(LIVE) + len(SILENT) * 2

        await until(silent_gone, 15, "the deletes of the silent instances")
        health = (await client.get("/health")).json()
        runtime = (await client.get("/api/status/runtime.json")).json()
        reader.cancel()
    assert (SUCCESS, SUCCESS, [SUCCESS] * len(answers), {"instances": len(LIVE), "status": "up"},
            sorted(("delete", f"10.0.0.{i}:8080") for i in SILENT), len(SILENT), 1) == (
        registered, before, answers, health, sorted(pushed[len(LIVE) + len(SILENT):]),
        runtime["evictedTotal"], runtime.get("pauses", {}).get("count"))


async def test_a_stalled_event_loop_is_a_pause_too() -> None:
    """A node whose event loop is blocked for 1.5 s (its process still running) keeps the 1 s
    leases whose clients heartbeat after the stall, and still expires the silent one."""
    node = Node(Settings(region="SHA", zone="zone-1", lease_ttl=1.0, sweep_interval=0.01,
                         pause_threshold=0.3, self_preservation=False))
    live, silent = (wire.decode(json.dumps(instance(i)).encode(), wire.Instance)
                    for i in (LIVE[0], SILENT[0]))
    clock, registry = node.clock, node.registry
    async with node.running():
        registry.register([live, silent], clock.monotonic(), clock.wall_ms())

        async def looping() -> bool:
            await asyncio.sleep(0.01)
            return len(node.lag.samples) >= 5  # the loops run (the sweeper started first)

        await until(looping, 5, "the node's loops to run")
        time.sleep(1.5)  # noqa: ASYNC251 - the stall is the attack: the loop runs nothing
        answers = []

        async def silent_gone() -> bool:
            answers.append(registry.heartbeat([live], clock.monotonic(), clock.wall_ms()).failed)
            await asyncio.sleep(0.05)
            return registry.instance_count < 2

        await until(silent_gone, 10, "the silent instance to expire")
    assert ([[]] * len(answers), ["10.0.0.1:8080"], 1, True) == (
        answers, [lease.key for lease in registry.leases()], registry.evicted_total,
        registry.pauses.count >= 1)
