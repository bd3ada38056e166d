"""The blocking faces (SyncRegistryClient, SyncDiscoveryClient) against a real node process on
127.0.0.1: each runs its async client on a loop thread of its own."""

from __future__ import annotations

import gc
import threading
from typing import Any

import httpx
import pytest

from artemis.client import (
    BadRequest,
    ClientClosed,
    Instance,
    NoServerAvailable,
    Service,
    SyncDiscoveryClient,
    SyncRegistryClient,
)
from tests.client.conftest import REGION, SERVICE, filled, ids, instance
from tests.process.conftest import RunningNode, StartNode, free_port, poll


def node_ids(node: RunningNode, service_id: str = SERVICE) -> list[str]:
    """The instance ids the node's lookup.json lists for the service."""
    answer = httpx.post(node.url + "/api/discovery/lookup.json", timeout=5.0, json={
        "discoveryConfigs": [{"serviceId": service_id}], "regionId": REGION}).json()
    return sorted(i["instanceId"] for i in answer["services"][0]["instances"])


def loop_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("artemis-"))


def test_sync_registry_registers_and_unregisters_on_close(start_node: StartNode) -> None:
    """register() blocks until registered; leaving the block unregisters and ends the thread."""
    node = start_node()
    with SyncRegistryClient(node.url, region=REGION, heartbeat_interval=0.1) as registry:
        registry.register(instance("a"), instance("b"))
        during = (node_ids(node), registry.instances)
        poll(lambda: registry.stats["heartbeats"] >= 2 or None, 5.0, "heartbeats")
    expected = ((["a", "b"], [filled(instance("a")), filled(instance("b"))]), [], [])
    assert expected == (during, node_ids(node), loop_threads())


def test_sync_registry_raises_the_nodes_refusal(start_node: StartNode) -> None:
    """A refused instance raises BadRequest in the calling thread and is not kept."""
    node = start_node()
    registry = SyncRegistryClient(node.url, region=REGION)
    try:
        with pytest.raises(BadRequest):
            registry.register(Instance(service_id=SERVICE, instance_id="no-url"))
        kept = registry.instances
    finally:
        registry.close()
    assert ([], []) == (kept, node_ids(node))


def test_sync_discovery_follows_changes_and_calls_listeners(start_node: StartNode) -> None:
    """Blocking discovery answers from its cache; listeners hear pushes on its thread."""
    node = start_node()
    heard: list[tuple[str, list[str], str]] = []
    changed = threading.Event()

    def listener(kind: str, svc: Service) -> None:
        heard.append((kind, ids(svc), threading.current_thread().name))
        changed.set()

    with SyncRegistryClient(node.url, region=REGION) as registry, \
            SyncDiscoveryClient(node.url, region=REGION) as discovery:
        registry.register(instance("a"))
        before = (discovery.cached(SERVICE), ids(discovery.get_service(SERVICE)))
        discovery.add_listener(SERVICE, listener)
        poll(lambda: discovery._client.push_connected or None, 5.0, "push connected")
        registry.register(instance("b"))
        assert changed.wait(5.0), "no change heard"
        after = (sorted(i.instance_id for i in discovery.instances(SERVICE)),
                 ids(discovery.cached(SERVICE)))
    expected = ((None, ["a"]), [("new", ["a", "b"], "artemis-discovery")],
                (["a", "b"], ["a", "b"]))
    assert expected == (before, heard, after)


def test_sync_discovery_without_any_node_raises_no_server_available() -> None:
    """With nothing listening, get_service raises NoServerAvailable in the calling thread."""
    url = f"http://127.0.0.1:{free_port()}"
    discovery = SyncDiscoveryClient(url, region=REGION, retries=1)
    try:
        with pytest.raises(NoServerAvailable):
            discovery.get_service(SERVICE)
    finally:
        discovery.close()
    assert [] == loop_threads()


def test_sync_clients_take_the_async_clients_options(start_node: StartNode) -> None:
    """Options are passed on to the async client unchanged."""
    node = start_node()
    options: dict[str, Any] = {"region": REGION, "zone": "zone-1", "heartbeat_interval": 7.0,
                               "frame_size": 3, "use_websocket": False, "retries": 2}
    registry = SyncRegistryClient(node.url, **options)
    try:
        inner = registry._client
        seen = (inner.region, inner.zone, inner.heartbeat_interval, inner.frame_size,
                inner.use_websocket, inner.caller.retries)
    finally:
        registry.close()
    assert ("SHA", "zone-1", 7.0, 3, False, 2) == seen


def test_sync_close_twice_is_harmless() -> None:
    """close() a second time (say, after a `with` block) does nothing, as the async close."""
    url = f"http://127.0.0.1:{free_port()}"
    with SyncRegistryClient(url, region=REGION, retries=1) as registry:
        pass
    discovery = SyncDiscoveryClient(url, region=REGION, retries=1)
    discovery.close()
    problems = []
    for client in (registry, discovery):
        try:
            client.close()
        except Exception as exc:
            problems.append(f"{type(client).__name__}: {type(exc).__name__}: {exc}")
    gc.collect()  # a coroutine left unawaited is reported here, in this test
    assert [] == problems


def test_sync_calls_after_close_raise_client_closed() -> None:
    """A closed blocking client raises ClientClosed (an ArtemisError), as the async one does."""
    url = f"http://127.0.0.1:{free_port()}"
    registry = SyncRegistryClient(url, region=REGION, retries=1)
    discovery = SyncDiscoveryClient(url, region=REGION, retries=1)
    registry.close()
    discovery.close()
    raised = []
    for call in (lambda: registry.register(instance("a")),
                 lambda: registry.unregister(instance("a")),
                 lambda: discovery.get_service(SERVICE)):
        try:
            call()
        except Exception as exc:
            raised.append(type(exc).__name__)
    gc.collect()  # a coroutine left unawaited is reported here, in this test
    assert [ClientClosed.__name__] * 3 == raised
