"""Shared pieces of the client tests: a scripted fake transport, wire answers, in-process nodes,
a transport that routes to several in-process nodes by URL, waiting helpers, and the real-process
fixtures (`start_node` from tests/process, `restart_node` here).

Nothing here sleeps for a fixed time: `eventually` polls a condition with a deadline, and every
client made by a fixture is closed at teardown (warnings are errors), with a bound on how long its
close may take so that a hang fails the test instead of stalling the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import subprocess
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import pytest

from artemis import wire
from artemis.client import (
    DiscoveryClient,
    InProcessTransport,
    Instance,
    RegistryClient,
    ServerList,
    TransportError,
)
from artemis.clock import FakeClock
from artemis.server.compose import build
from artemis.server.http import App
from artemis.server.push import PushServer
from artemis.server.settings import Settings
from tests.process.conftest import RunningNode, poll, start_node  # noqa: F401

REGION = "SHA"
ZONE = "zone-1"
SERVICE = "demo.service.v1"
SUCCESS = wire.ResponseStatus(error_code="success", message="", status="success")
CLOSE_DEADLINE = 5.0
T = TypeVar("T")


def instance(instance_id: str = "a", service_id: str = SERVICE, **fields: Any) -> Instance:
    """A minimal valid instance of `service_id` (the region is left for the client to fill)."""
    return Instance(service_id=service_id, instance_id=instance_id,
                    url=f"http://{instance_id}.example:8080/api", **fields)


def filled(item: Instance, region: str = REGION) -> Instance:
    """`item` as a client with `region` sends it: the region filled in."""
    return msgspec.structs.replace(item, region_id=item.region_id or region)


# --- wire answers -----------------------------------------------------------------------------

def status(code: str, message: str = "", state: str = "fail") -> wire.ResponseStatus:
    return wire.ResponseStatus(error_code=code, message=message, status=state)


def instances_answer(code: str = "success", message: str = "", state: str | None = None,
                     failed: list[wire.FailedInstance] | None = None) -> bytes:
    """An InstancesResponse (register / heartbeat / unregister)."""
    if state is None:
        state = "success" if code == "success" else "fail"
    return wire.encode(wire.InstancesResponse(failed_instances=failed,
                                              response_status=status(code, message, state)))


def lookup_answer(*services: wire.Service) -> bytes:
    return wire.encode(wire.LookupResponse(response_status=SUCCESS, services=list(services)))


def service(*instances: Instance, service_id: str = SERVICE) -> wire.Service:
    """A Service as a node answers it (and as DiscoveryClient builds it from its cache)."""
    return wire.Service(instances=list(instances), logic_instances=[], route_rules=[],
                        service_id=service_id)


def nodes_answer(*urls: str) -> bytes:
    nodes = [wire.ServiceNode(url=u, zone=wire.Zone(region_id=REGION, zone_id=ZONE))
             for u in urls]
    return wire.encode(wire.GetServiceNodesResponse(nodes=nodes, response_status=SUCCESS))


def pushed(kind: str, item: Instance, revision: str | None = None) -> str:
    """A push frame as a node sends it: an InstanceChange with its revision token."""
    return wire.encode(wire.PushedChange(change_time=1, change_type=kind, instance=item,
                                         revision=revision)).decode()


def ids(svc: wire.Service | None) -> list[str]:
    """The instance ids of a service, sorted (None when there is no service)."""
    if svc is None:
        return []
    return sorted(i.instance_id or "" for i in svc.instances or [])


# --- the fake transport -------------------------------------------------------------------------

Answer = bytes | Exception | Callable[[str, str, bytes], Awaitable[bytes]]


class FakeSocket:
    """A client WebSocket fed by the test: `feed(text)` delivers a frame, `drop()` ends it."""

    def __init__(self, url: str, path: str) -> None:
        self.url = url
        self.path = path
        self.sent: list[str] = []
        self.incoming: asyncio.Queue[str | None] = asyncio.Queue()
        self.closed = False

    def feed(self, text: str) -> None:
        self.incoming.put_nowait(text)

    def drop(self) -> None:
        self.incoming.put_nowait(None)

    async def send(self, text: str) -> None:
        if self.closed:
            raise TransportError("fake WebSocket is closed")
        self.sent.append(text)

    async def recv(self) -> str:
        if self.closed:
            raise TransportError("fake WebSocket is closed")
        text = await self.incoming.get()
        if text is None:
            self.closed = True
            raise TransportError("fake WebSocket dropped")
        return text

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.incoming.put_nowait(None)  # a recv() waiting now raises, as on a real socket


class FakeTransport:
    """A Transport that records every call and answers from a script.

    `post` takes the next scripted answer for the path (`on(path, ...)`), else the next of the
    answers given to the constructor, else the `default` for the path; an Exception is raised,
    a callable is awaited with (url, path, body). `connect` raises TransportError unless
    `websockets` is on; the sockets it made are in `sockets`.
    """

    def __init__(self, *answers: Answer, websockets: bool = False) -> None:
        self.calls: list[tuple[str, str, bytes]] = []
        self.general: deque[Answer] = deque(answers)
        self.by_path: dict[str, deque[Answer]] = {}
        self.defaults: dict[str, Answer] = {}
        self.websockets = websockets
        self.sockets: list[FakeSocket] = []
        self.closed = False

    def on(self, path: str, *answers: Answer) -> None:
        self.by_path.setdefault(path, deque()).extend(answers)

    def default(self, path: str, answer: Answer) -> None:
        self.defaults[path] = answer

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.calls]

    def urls(self) -> list[str]:
        return [url for url, _, _ in self.calls]

    async def post(self, base_url: str, path: str, body: bytes) -> bytes:
        self.calls.append((base_url, path, body))
        queue = self.by_path.get(path)
        if queue:
            answer = queue.popleft()
        elif self.general:
            answer = self.general.popleft()
        elif path in self.defaults:
            answer = self.defaults[path]
        else:
            raise AssertionError(f"no scripted answer for {base_url}{path}")
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return await answer(base_url, path, body)
        return answer

    async def connect(self, base_url: str, path: str) -> FakeSocket:
        if not self.websockets:
            raise TransportError(f"{base_url}: WebSocket refused (fake)")
        socket = FakeSocket(base_url, path)
        self.sockets.append(socket)
        return socket

    async def aclose(self) -> None:
        self.closed = True


class FirstChoice:
    """A random generator for ServerList that always takes the first URL offered."""

    def choice(self, seq: Sequence[str]) -> str:
        return seq[0]

    def random(self) -> float:
        return 0.5


def prefer(client: RegistryClient | DiscoveryClient, *seeds: str, penalty: float = 10.0) -> None:
    """Make `client` use `seeds` in order: the first that is not avoided is current."""
    client.caller.servers = ServerList(list(seeds), rng=FirstChoice(),  # type: ignore[arg-type]
                                       penalty=penalty)


# --- in-process nodes ---------------------------------------------------------------------------

class InProcessNode:
    """A node on a fake clock, marked up, its app, and the PushServer the composition root made.
    No background loop runs: tests move the clock and sweep themselves."""

    def __init__(self, url: str = "http://in-process", clock: FakeClock | None = None,
                 up: bool = True, **settings: Any) -> None:
        self.clock = clock or FakeClock()
        self.parts = build(Settings(region=REGION, zone=ZONE, url=url, **settings), self.clock)
        self.node = self.parts.node
        self.url = url
        self.app: App = self.parts.app
        if up:
            self.node.mark_up()

    @property
    def registry(self) -> Any:
        return self.node.registry

    def registered(self) -> list[Instance]:
        """Every instance with a lease on the node, sorted by (service, instance)."""
        found = [lease.instance for lease in self.node.registry.leases()]
        return sorted(found, key=lambda i: ((i.service_id or "").lower(),
                                            (i.instance_id or "").lower()))

    def lose(self, *items: Instance) -> None:
        """Forget instances on the node side, as a restart or an expiry would."""
        clock = self.clock
        result = self.node.registry.unregister([filled(i) for i in items], clock.monotonic(),
                                               clock.wall_ms())
        self.node.publish(result.changes)

    def add(self, *items: Instance) -> None:
        """Register instances on the node side (and push the changes)."""
        clock = self.clock
        result = self.node.registry.register([filled(i) for i in items], clock.monotonic(),
                                             clock.wall_ms())
        assert [] == result.failed
        self.node.publish(result.changes)

    def push_sessions(self) -> dict[str, int]:
        """How many WebSocket sessions the node holds, by kind."""
        return self.push_server().counts()

    def push_server(self) -> PushServer:
        """The PushServer the composition root made."""
        return self.parts.push


class Routed:
    """A Transport over several in-process nodes, chosen by the base URL of each call; a URL
    of no node (or of a node taken `offline`) fails as an unreachable node does."""

    def __init__(self, *nodes: InProcessNode) -> None:
        self.transports = {n.url: InProcessTransport(n.app) for n in nodes}
        self.offline: set[str] = set()
        self.calls: list[tuple[str, str]] = []

    def _pick(self, base_url: str) -> InProcessTransport:
        transport = self.transports.get(base_url)
        if transport is None or base_url in self.offline:
            raise TransportError(f"{base_url}: connection refused (routed)")
        return transport

    async def post(self, base_url: str, path: str, body: bytes) -> bytes:
        self.calls.append((base_url, path))
        return await self._pick(base_url).post(base_url, path, body)

    async def connect(self, base_url: str, path: str) -> Any:
        self.calls.append((base_url, path))
        return await self._pick(base_url).connect(base_url, path)

    async def aclose(self) -> None:
        for transport in self.transports.values():
            await transport.aclose()


# --- waiting and closing ------------------------------------------------------------------------

async def eventually(probe: Callable[[], T | Awaitable[T | None] | None], what: str,
                     deadline: float = 5.0, interval: float = 0.005) -> T:
    """Await until `probe()` returns (or, for a coroutine, resolves to) something true, and
    return it; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        result = probe()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {deadline} s")
        await asyncio.sleep(interval)


async def close_within(client: RegistryClient | DiscoveryClient,
                       deadline: float = CLOSE_DEADLINE) -> bool:
    """Close `client`; True if close() returned within `deadline`. A close that hangs is
    cancelled, and the client's task cancelled until it ends, so nothing is left running."""
    closing = asyncio.ensure_future(client.close())
    done, _ = await asyncio.wait({closing}, timeout=deadline)
    if done:
        closing.result()
        return True
    # A hung close is the client's bug; what follows only cleans up after it, through the
    # client's private parts, so that the next test starts with nothing running.
    task = client._task
    for _ in range(100):
        if task is None or task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=0.05)
    closing.cancel()
    await asyncio.gather(closing, return_exceptions=True)
    await client._drop_ws()
    if client._own_transport:
        await client.transport.aclose()
    return False


@pytest.fixture
def in_process() -> InProcessNode:
    """One up node (region SHA, zone zone-1) on a fake clock, not running its loops."""
    return InProcessNode()


@pytest.fixture
async def clients() -> AsyncIterator[Callable[[T], T]]:
    """`clients(x)` returns `x` and closes it at teardown, the last kept first: clients with a
    bounded close (see `close_within`; a close that hung fails the test there), transports with
    aclose(). Keep a transport before the clients that use it."""
    made: list[Any] = []

    def keep(thing: T) -> T:
        made.append(thing)
        return thing

    yield keep  # type: ignore[misc]
    hung = []
    for thing in reversed(made):
        if isinstance(thing, RegistryClient | DiscoveryClient):
            if not await close_within(thing):
                hung.append(thing)
        else:
            await thing.aclose()
    assert [] == hung, "close() did not return"


@pytest.fixture
def transport(in_process: InProcessNode, clients: Callable[[T], T]) -> InProcessTransport:
    """An InProcessTransport to `in_process`, closed at teardown after the clients."""
    return clients(InProcessTransport(in_process.app))


# --- real processes -----------------------------------------------------------------------------

@pytest.fixture
def restart_node(tmp_path: Path) -> Iterator[Callable[[RunningNode], RunningNode]]:
    """`restart_node(node)` starts the same command again, on the same port, once `node` has
    exited; the new node answers /health when this returns. Stopped at teardown."""
    started: list[RunningNode] = []

    def restart(old: RunningNode) -> RunningNode:
        assert old.process.poll() is not None, "the old node is still running"
        log = tmp_path / f"artemis-{old.port}-{len(started) + 1}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(old.process.args, stdout=out,
                                       stderr=subprocess.STDOUT, env=_clean_env())
        node = RunningNode(process, old.port, old.context_path, log)
        started.append(node)

        def healthy() -> bool | None:
            if process.poll() is not None:
                pytest.fail(f"restarted node exited with {process.returncode}:\n"
                            f"{node.output()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(node.url + "/health", timeout=1.0).status_code == 200:
                    return True
            return None

        poll(healthy, 15.0, "restarted node answering /health")
        return node

    yield restart
    for node in started:
        node.stop()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ARTEMIS_")}
