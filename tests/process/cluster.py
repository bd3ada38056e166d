"""Clusters of real `python -m artemis server` processes on 127.0.0.1, for the cluster tests.

The fixture `start_cluster` (import `start_cluster_fixture` into a test module to use it):
`start_cluster(*flags, names=("A", "B", "C"), proxies=(), absent=0, dns=False, wait=True)`
launches every node first and then polls every node's /health (a node with peers stays
`starting`, 503, until its peers answer, so nodes cannot be started one after the other). Each
node is given the others as peers by URL (`--url` is its own), or with `dns` (two nodes) as
`--peers-dns localhost:<the other's port>`:
  * a pair `(src, dst)` in `proxies` puts a `FaultProxy` between them: `src` reaches `dst`
    through it (`cluster.proxy("A", "B")`), `dst` still reaches `src` directly unless the pair
    `(dst, src)` is given too;
  * `absent` adds peers on ports nothing listens on (`cluster.absent`); `reset_absent()` later
    makes them accept and reset every connection.
A started cluster is settled: every node is up and has polled each of its running peers `up`.
Every node ever started (restarts included) is stopped by its pid at teardown, SIGTERM then
SIGKILL, and every proxy and resetter is stopped.

The HTTP helpers below read whole results (the sorted instance ids of a service, the registry
checksum, a peer as a node sees it) so tests can assert them whole; `wait_for` polls a reading
until it passes, and on timeout fails with the last reading.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.process.conftest import START_DEADLINE, RunningNode, free_port, poll
from tests.process.faultproxy import FaultProxy

__all__ = [
    "CLUSTER_SECRET",
    "FAST",
    "NAMES",
    "PEER_HEADERS",
    "REGION",
    "SERVICE",
    "ZONE",
    "Cluster",
    "Resetter",
    "StartCluster",
    "as_a_peer",
    "bootstrap",
    "checksum",
    "discover",
    "health",
    "heartbeat",
    "instance",
    "instance_ids",
    "peer_view",
    "post",
    "register",
    "replication",
    "start_cluster_fixture",
    "unregister",
    "up_registry_nodes",
    "wait_for",
]

REGION = "SHA"
ZONE = "zone-1"
SERVICE = "cluster.service.v1"
NAMES = ("A", "B", "C")
# The cluster secret every node of a test cluster shares (FAST gives it).
CLUSTER_SECRET = "cluster-secret-of-the-tests-0123"  # noqa: S105 - a test secret
# Small intervals, so a whole test takes seconds: a peer that stops answering is `unknown` within
# 0.2 + 0.5 s, repair runs every 0.5 s, a node whose peers are missing starts after 2 s.
FAST = ("--peer-status-interval", "0.2", "--peer-timeout", "0.5", "--anti-entropy-interval",
        "0.5", "--bootstrap-timeout", "2", "--log-level", "info",
        "--cluster-secret", CLUSTER_SECRET)
T = TypeVar("T")
PEER_HEADERS = {"x-artemis-cluster-secret": CLUSTER_SECRET}  # what a peer of the test nodes sends


def as_a_peer() -> tuple[str, ...]:
    """Flags giving a single node (tests/process/conftest.py `start_node`) one peer that never
    answers and the tests' cluster secret, so its replication endpoints answer callers that
    send `PEER_HEADERS`; it comes up at its first status poll."""
    return ("--peers", f"{ZONE}:http://127.0.0.1:{free_port()}", "--cluster-secret",
            CLUSTER_SECRET, "--bootstrap-timeout", "0")
# One TLS context for every request (they are all plain HTTP): httpx would build and load a new
# one per call, which costs more than the call.
_TLS = ssl.create_default_context()


class Resetter:
    """Listens on 127.0.0.1:`port` and resets every connection the moment it is accepted: a
    peer whose connections die as they open (a host going down, a proxy refusing). `resets`
    counts them. `stop()` closes the port and joins the thread."""

    _RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST

    def __init__(self, port: int) -> None:
        self.port = port
        self.resets = 0
        self._sock = socket.create_server(("127.0.0.1", port))
        self._sock.settimeout(0.05)  # so the thread sees `stop()` without a connection
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"resetter {port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, self._RESET)
            self.resets += 1

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5.0)
        self._sock.close()
        if self._thread.is_alive():
            raise TimeoutError(f"the resetter on port {self.port} did not stop")


class Cluster:
    """Nodes by name, each with its own port, and the proxies between some of them."""

    def __init__(self, tmp_path: Path, names: Iterable[str], flags: Iterable[str],
                 absent: int = 0, dns: bool = False) -> None:
        self.tmp_path = tmp_path
        self.names = tuple(names)
        self.flags = tuple(flags)
        self.dns = dns
        self.ports = {name: free_port() for name in self.names}
        # Peers that are configured but never run: ports nothing listens on.
        self.absent = [f"http://127.0.0.1:{free_port()}" for _ in range(absent)]
        self.proxies: dict[tuple[str, str], FaultProxy] = {}
        self.resetters: list[Resetter] = []
        self.nodes: dict[str, RunningNode] = {}
        self.started: list[RunningNode] = []  # every process ever started, restarts included
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("ARTEMIS_")}
        if dns and len(self.names) != 2:
            raise ValueError("DNS peers are set up for two nodes: each resolves the other")

    def __getitem__(self, name: str) -> RunningNode:
        return self.nodes[name]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def proxy(self, src: str, dst: str) -> FaultProxy:
        """The proxy through which `src` reaches `dst`."""
        return self.proxies[(src, dst)]

    def add_proxy(self, src: str, dst: str) -> FaultProxy:
        """Put a proxy between `src` and `dst` (before `src` starts)."""
        taken = set(self.ports.values())
        while True:
            proxy = FaultProxy(self.ports[dst]).start()
            if proxy.port not in taken:  # a port free_port handed out but not yet bound
                break
            proxy.stop()
        self.proxies[(src, dst)] = proxy
        return proxy

    def reset_absent(self) -> list[Resetter]:
        """From now on, the absent peers' ports accept connections and reset them at once."""
        started = [Resetter(int(url.rsplit(":", 1)[1])) for url in self.absent]
        self.resetters += started
        return started

    def peer_url(self, src: str, dst: str) -> str:
        """The URL `src` is given for `dst`: its own URL, or a proxy's."""
        proxy = self.proxies.get((src, dst))
        return proxy.url if proxy is not None else self.url(dst)

    def peer_flags(self, name: str) -> list[str]:
        if self.dns:
            (other,) = (n for n in self.names if n != name)
            return ["--peers-dns", f"localhost:{self.ports[other]}"]
        urls = [self.url(name) if n == name else self.peer_url(name, n) for n in self.names]
        return ["--peers", f"{ZONE}:" + ",".join([*urls, *self.absent])]

    def command(self, name: str) -> list[str]:
        port = self.ports[name]
        return [sys.executable, "-m", "artemis", "server", "--port", str(port), "--region",
                REGION, "--zone", ZONE, "--url", self.url(name), *self.peer_flags(name),
                *self.flags]

    def launch(self, name: str) -> RunningNode:
        """Start `name`'s process (again, after a kill); does not wait for it."""
        port = self.ports[name]
        log = self.tmp_path / f"node-{name}-{port}-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(self.command(name), stdout=out, stderr=subprocess.STDOUT,
                                       env=self._env)
        node = RunningNode(process, port, "", log)
        self.started.append(node)
        self.nodes[name] = node
        return node

    def wait_healthy(self, *names: str, deadline: float = START_DEADLINE) -> None:
        """Poll every named node (all if none) until its /health is 200."""
        for name in names or self.names:
            node = self.nodes[name]
            wait_for(partial(health, node), lambda code: code == 200, deadline,
                     f"node {name} ({node.url}) answering /health 200")

    def wait_settled(self, *names: str, deadline: float = START_DEADLINE) -> None:
        """Poll every named node (all if none) until it has polled each of its running peers
        `up`: a node may have last seen a peer while that peer was still starting."""
        for name in names or self.names:
            wait_for(partial(self._peer_statuses, self.nodes[name]),
                     lambda statuses: set(statuses) == {"up"}, deadline,
                     f"node {name} seeing every running peer up")

    def _peer_statuses(self, node: RunningNode) -> list[str]:
        return [p["status"] for p in replication(node)["peers"] if p["url"] not in self.absent]

    def start(self) -> Cluster:
        """Launch every node, then wait until each is up and has seen its peers up."""
        for name in self.names:
            self.launch(name)
        self.wait_healthy()
        self.wait_settled()
        return self

    def kill(self, name: str) -> None:
        """SIGKILL `name` and wait until it is gone."""
        node = self.nodes[name]
        assert node.signal(signal.SIGKILL) is not None, f"node {name} did not die"

    def restart(self, name: str) -> RunningNode:
        """Start `name` again on its port, with the same flags, and wait until it is up."""
        node = self.launch(name)
        self.wait_healthy(name)
        return node

    def stop(self) -> None:
        errors: list[BaseException] = []
        for node in self.started:
            try:
                node.stop()
            except Exception as exc:  # stop the others anyway
                errors.append(exc)
        helpers: list[FaultProxy | Resetter] = [*self.proxies.values(), *self.resetters]
        for proxy in helpers:
            try:
                proxy.stop()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


StartCluster = Callable[..., Cluster]


@pytest.fixture(name="start_cluster")
def start_cluster_fixture(tmp_path: Path) -> Iterator[StartCluster]:
    """`start_cluster(*flags, names=NAMES, proxies=(), absent=0, dns=False, wait=True)`: a
    cluster of nodes with `FAST` and `flags`, every node launched and then (with `wait`) polled
    until up. Everything started is stopped at teardown."""
    clusters: list[Cluster] = []

    def start(*flags: str, names: Iterable[str] = NAMES,
              proxies: Iterable[tuple[str, str]] = (), absent: int = 0, dns: bool = False,
              wait: bool = True) -> Cluster:
        cluster = Cluster(tmp_path, names, (*FAST, *flags), absent=absent, dns=dns)
        clusters.append(cluster)
        for src, dst in proxies:
            cluster.add_proxy(src, dst)
        if wait:
            cluster.start()
        else:
            for name in cluster.names:
                cluster.launch(name)
        return cluster

    yield start
    for cluster in clusters:
        cluster.stop()


# --- reading and writing nodes ------------------------------------------------------------

def instance(name: str, service: str = SERVICE) -> dict[str, Any]:
    """An instance of `service` whose instanceId is `name`."""
    return {"serviceId": service, "instanceId": name, "ip": "10.0.0.1", "port": 8080,
            "url": f"http://10.0.0.1:8080/{name}", "regionId": REGION, "zoneId": ZONE}


def post(node: RunningNode, path: str, body: Any, timeout: float = 5.0) -> dict[str, Any]:
    """POST `body` as JSON; a call to a peer-only endpoint carries the tests' cluster secret."""
    headers = PEER_HEADERS if "/replication/" in path else {}
    response = httpx.post(node.url + path, json=body, timeout=timeout, verify=_TLS,
                          headers=headers)
    answer: dict[str, Any] = response.json()
    return answer


def get(node: RunningNode, path: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(node.url + path, timeout=5.0, verify=_TLS).json()
    return answer


SUCCESS = {"failedInstances": None,
           "responseStatus": {"errorCode": "success", "message": "", "status": "success"}}


def _write(node: RunningNode, operation: str, names: Iterable[str], service: str,
           replication: bool) -> None:
    prefix = "/api/replication/registry" if replication else "/api/registry"
    answer = post(node, f"{prefix}/{operation}.json",
                  {"instances": [instance(n, service) for n in names]})
    assert SUCCESS == answer, f"{operation} of {list(names)} at {node.url}"


def register(node: RunningNode, *names: str, service: str = SERVICE,
             replication: bool = False) -> None:
    """Register instances `names` at `node` (with `replication`, as a peer would: this write is
    never replicated further)."""
    _write(node, "register", names, service, replication)


def heartbeat(node: RunningNode, *names: str, service: str = SERVICE) -> None:
    _write(node, "heartbeat", names, service, False)


def unregister(node: RunningNode, *names: str, service: str = SERVICE,
               replication: bool = False) -> None:
    _write(node, "unregister", names, service, replication)


def discover(node: RunningNode, service: str = SERVICE) -> dict[str, Any]:
    """The discovery answer of `service` at `node`."""
    return post(node, "/api/discovery/service.json", {"discoveryConfig": {
        "serviceId": service, "regionId": REGION, "zoneId": ZONE}})


def instance_ids(node: RunningNode, service: str = SERVICE) -> list[str]:
    """The sorted instance ids `node` serves for `service`."""
    answer = discover(node, service)
    code = answer["responseStatus"]["errorCode"]
    if code != "success":
        raise AssertionError(f"discovery at {node.url} answered {answer['responseStatus']}")
    return sorted(i["instanceId"] for i in answer["service"]["instances"])


def checksum(node: RunningNode) -> str:
    """The node's registry checksum (equal on two nodes == the same instances)."""
    answer = post(node, "/api/replication/registry/checksums.json",
                  {"regionId": REGION, "checksum": "-"})
    value: str = answer["checksum"]
    return value


def replication(node: RunningNode) -> dict[str, Any]:
    return get(node, "/api/status/replication.json")


def bootstrap(node: RunningNode) -> dict[str, Any]:
    value: dict[str, Any] = replication(node)["bootstrap"]
    return value


def peer_view(node: RunningNode, peer_url: str) -> dict[str, Any]:
    """The entry of replication.json in which `node` describes the peer at `peer_url`."""
    peers = replication(node)["peers"]
    found = [p for p in peers if p["url"] == peer_url]
    assert len(found) == 1, f"{node.url} has no single peer {peer_url}: {peers}"
    view: dict[str, Any] = found[0]
    return view


def health(node: RunningNode) -> int | None:
    """The status code of /health, or None if the node does not answer (yet)."""
    if node.process.poll() is not None:
        pytest.fail(f"artemis server exited with {node.process.returncode}:\n{node.output()}")
    try:
        return httpx.get(node.url + "/health", timeout=1.0, verify=_TLS).status_code
    except httpx.TransportError:
        return None


def up_registry_nodes(node: RunningNode) -> list[str]:
    answer = get(node, f"/api/cluster/up-registry-nodes.json?regionId={REGION}")
    return sorted(n["url"] for n in answer.get("nodes") or ())


def wait_for(read: Callable[[], T], ok: Callable[[T], bool], deadline: float,
             what: str) -> T:
    """Poll `read()` until `ok` of it; returns the reading. On timeout, fails with the last
    reading in the message."""
    last: list[T] = []

    def probe() -> T | None:
        value = read()
        last[:] = [value]
        return value if ok(value) else None

    try:
        return poll(probe, deadline, what)
    except pytest.fail.Exception:
        pytest.fail(f"{what}: not within {deadline} s; last seen {last[0] if last else None!r}")
