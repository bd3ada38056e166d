"""The clients against real `artemis server` processes on 127.0.0.1 (NetworkTransport: httpx and
websockets): failover when the node in use is killed, registering again after a node restarted
and lost everything, and a cache that outlives every node.

The clients run with short intervals (heartbeats every 0.2 s) and short waits between tries, so
that each fault is handled in well under a second; tests wait with a deadline, never a fixed
sleep."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest

from artemis.client import (
    ArtemisError,
    Caller,
    DiscoveryClient,
    NoServerAvailable,
    RegistryClient,
    ServerList,
)
from tests.client.conftest import REGION, SERVICE, eventually, filled, ids, instance, service
from tests.process.conftest import RunningNode, StartNode

T = TypeVar("T")
Keep = Callable[[T], T]
FAULT_DEADLINE = 15.0


def fast(client: RegistryClient | DiscoveryClient, *urls: str, retries: int = 3) -> None:
    """Short waits between tries: 10 ms growing to 50 ms (the defaults are 0.1 s to 2 s)."""
    client.caller = Caller(client.transport, ServerList(list(urls)), retries=retries,
                           backoff=0.01, max_backoff=0.05)


async def node_ids(node: RunningNode, service_id: str = SERVICE) -> list[str] | None:
    """The instance ids the node's lookup.json lists (None if the node does not answer)."""
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            answer = (await http.post(node.url + "/api/discovery/lookup.json", json={
                "discoveryConfigs": [{"serviceId": service_id}], "regionId": REGION})).json()
    except httpx.TransportError:
        return None
    return sorted(i["instanceId"] for i in answer["services"][0]["instances"])


async def lists(node: RunningNode, *expected: str) -> bool:
    return await node_ids(node) == sorted(expected)


async def test_failover_when_the_node_in_use_is_killed(start_node: StartNode,
                                                       clients: Keep[Any]) -> None:
    """SIGKILL of the node in use: heartbeats, instances and discovery move to the other node."""
    a, b = start_node(), start_node()
    by_url = {a.url: a, b.url: b}
    registry = clients(RegistryClient([a.url, b.url], region=REGION, heartbeat_interval=0.2))
    discovery = clients(DiscoveryClient([a.url, b.url], region=REGION, reconnect_interval=0.1,
                                        poll_interval=0.2))
    fast(registry, a.url, b.url)
    fast(discovery, a.url, b.url)
    await registry.register(instance("x"), instance("y"))
    await discovery.get_service(SERVICE)
    used = by_url[registry.caller.servers.current()]
    other = b if used is a else a
    await eventually(lambda: lists(used, "x", "y"), "registered on the node in use")
    await eventually(lambda: registry.stats["frames"] >= 1, "a first heartbeat round")
    assert -signal.SIGKILL == used.signal(signal.SIGKILL)
    await eventually(lambda: lists(other, "x", "y"), "registered again on the other node",
                     deadline=FAULT_DEADLINE)
    frames = registry.stats["frames"]
    await eventually(lambda: registry.stats["frames"] >= frames + 2, "heartbeats go on")
    await eventually(lambda: ids(discovery.cached(SERVICE)) == ["x", "y"],
                     "discovery follows", deadline=FAULT_DEADLINE)
    assert (other.url, other.url, service(filled(instance("x")), filled(instance("y")))) == (
        registry.caller.servers.current(), discovery.caller.servers.current(),
        await discovery.get_service(SERVICE))


async def test_instances_are_registered_again_after_the_node_restarts(
        start_node: StartNode, restart_node: Callable[[RunningNode], RunningNode],
        clients: Keep[Any]) -> None:
    """A node restarted on the same port, registry empty, gets the instances back by heartbeat."""
    node = start_node()
    registry = clients(RegistryClient(node.url, region=REGION, heartbeat_interval=0.2))
    fast(registry, node.url)
    await registry.register(instance("x"))
    await eventually(lambda: registry.stats["frames"] >= 1, "a first heartbeat round")
    assert -signal.SIGKILL == node.signal(signal.SIGKILL)
    errors = registry.stats["errors"]
    await eventually(lambda: registry.stats["errors"] > errors, "rounds fail while it is down")
    again = await asyncio.to_thread(restart_node, node)  # the loop runs on while it starts
    await eventually(lambda: lists(again, "x"), "registered again after the restart",
                     deadline=FAULT_DEADLINE)
    assert registry.stats["reregistered"] >= 1


async def test_cache_outlives_every_node(start_node: StartNode, clients: Keep[Any]) -> None:
    """With every node down the cache still answers; a never-fetched service raises."""
    node = start_node()
    registry = clients(RegistryClient(node.url, region=REGION, heartbeat_interval=60.0))
    discovery = clients(DiscoveryClient(node.url, region=REGION, reconnect_interval=0.05,
                                        poll_interval=0.05))
    fast(registry, node.url)
    fast(discovery, node.url, retries=2)
    await registry.register(instance("x"))
    known = await discovery.get_service(SERVICE)
    assert -signal.SIGKILL == node.signal(signal.SIGKILL)
    await eventually(lambda: not discovery.push_connected, "push lost")
    polls = discovery.stats["polls"]
    await eventually(lambda: discovery.stats["polls"] >= polls + 3, "polls fail")
    with pytest.raises(NoServerAvailable) as raised:
        await discovery.get_service("never.fetched")
    assert (service(filled(instance("x"))), known, known, True) == (
        known, await discovery.get_service(SERVICE), discovery.cached(SERVICE),
        isinstance(raised.value, ArtemisError))
