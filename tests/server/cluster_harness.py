"""In-process clusters: several nodes on one fake clock whose peers reach each other's ASGI apps.

Each node's `Cluster` gets (from the composition root's `peer_client`) an httpx client whose
transport is a `Router`: it hands a request to
the app of the node named by the URL's host (`a.test`, `b.test`, ...). A host in `Router.down`
refuses connections, and `Router.faults` can answer in an app's place (a 500, say), so tests see
dead and failing peers without sockets, processes or sleeps. No background loop runs: tests call
`poll_once`, `bootstrap_step`, `flush` and `repair` themselves. Every node has the cluster secret
`CLUSTER_SECRET` unless its settings say otherwise, and each node's test client sends it (as a
peer would: it may call the peer-only endpoints). `with_a_peer` gives a single node of other tests
a peer (that never answers) and the secret, so its peer-only endpoints answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from artemis.clock import FakeClock
from artemis.server.cluster import SECRET_HEADER, Cluster, PeerLink
from artemis.server.cluster.peers import HttpxPeers
from artemis.server.compose import build
from artemis.server.settings import Settings
from tests.server.harness import REGION, ZONE, Api

Fault = Callable[[httpx.Request], "httpx.Response | None"]
CLUSTER_SECRET = "cluster-secret-of-the-tests-0123"  # noqa: S105 - a test secret
PEER_HEADERS = {SECRET_HEADER: CLUSTER_SECRET}  # what a peer of the test nodes sends


def url(host: str) -> str:
    """The URL of the test node named `host` (`a` -> `http://a.test`)."""
    return f"http://{host}.test"


def peers_setting(zones: Mapping[str, str]) -> str:
    """The `peers` setting of nodes `{host: zone}`: `zone:url,url;zone2:url`, in the given order."""
    by_zone: dict[str, list[str]] = {}
    for host, zone in zones.items():
        by_zone.setdefault(zone, []).append(url(host))
    return ";".join(f"{zone}:{','.join(urls)}" for zone, urls in by_zone.items())


def with_a_peer(**settings: Any) -> dict[str, Any]:
    """Settings of node `a` with one peer `b` and the cluster secret, then `settings`."""
    return {"url": url("a"), "peers": peers_setting({"a": ZONE, "b": ZONE}),
            "cluster_secret": CLUSTER_SECRET, **settings}


class Router(httpx.AsyncBaseTransport):
    """Hands each request to the app of its host; `down` hosts refuse connections; a host's
    `faults` entry may answer a request in the app's place (None lets it through)."""

    def __init__(self) -> None:
        self.apps: dict[str, httpx.ASGITransport] = {}
        self.down: set[str] = set()
        self.faults: dict[str, Fault] = {}
        self.calls: list[tuple[str, str]] = []  # (host, path) of every request, in order

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.calls.append((host, request.url.path))
        if host in self.down or host not in self.apps:
            raise httpx.ConnectError(f"{host} refused the connection", request=request)
        fault = self.faults.get(host)
        if fault is not None:
            answer = fault(request)
            if answer is not None:
                return answer
        return await self.apps[host].handle_async_request(request)


class Nodes:
    """The nodes of one test cluster, by host name (`a`, `b`, ...), each as an `Api`."""

    def __init__(self, clock: FakeClock, stack: contextlib.AsyncExitStack) -> None:
        self.clock = clock
        self.stack = stack
        self.router = Router()
        self.apis: dict[str, Api] = {}

    async def build(self, zones: Mapping[str, str] | None = None, *, starting: tuple[str, ...] = (),
                    settings: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Api]:
        """Nodes `{host: zone}` (default a, b, c in zone-1), all listing every node as peers;
        the `starting` hosts are left starting, the others are up. `settings` adds per-host
        settings."""
        zones = dict(zones or {"a": ZONE, "b": ZONE, "c": ZONE})
        peers = peers_setting(zones)
        for host, zone in zones.items():
            extra = dict((settings or {}).get(host, {}))
            peer_client = HttpxPeers(await self.stack.enter_async_context(httpx.AsyncClient(
                transport=self.router, headers={"content-type": "application/json"})))
            parts = build(Settings(**{"region": REGION, "zone": zone, "url": url(host),
                                      "peers": peers, "cluster_secret": CLUSTER_SECRET,
                                      **extra}), self.clock,
                          peer_client=peer_client)
            if host not in starting:
                parts.node.mark_up()
            self.router.apps[f"{host}.test"] = httpx.ASGITransport(app=parts.app)
            client = await self.stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=parts.app, client=("127.0.0.1", 40000)),
                base_url=url(host), headers=PEER_HEADERS))
            self.apis[host] = Api(parts, self.clock, client)
        return self.apis

    def cluster(self, host: str) -> Cluster:
        cluster = self.apis[host].parts.cluster
        assert cluster is not None
        return cluster

    def link(self, host: str, peer: str) -> PeerLink:
        """`host`'s link to `peer`."""
        return self.cluster(host).links[url(peer)]

    async def poll(self, *hosts: str) -> None:
        """One status poll of every peer by each of `hosts` (all nodes if none named)."""
        for host in hosts or tuple(self.apis):
            await self.cluster(host).poll_once()
