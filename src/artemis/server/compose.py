"""The composition root: every part of one node, built from settings and a clock, in one place.

`build(settings, clock, tracing)` returns the parts as one `NodeParts`; whoever needs a part is
handed it (the runner, the app's status and metrics, the tests' harnesses). No part sets an
attribute on another, and no part registers itself with the node: `build` does every wiring
below, so this is the one place to read how a node is put together.

Which part depends on which, in the order they are built:

  node        settings, clock: the registry, versions, rate limiters, status, its own loops
              (lease sweeper, self-preservation, snapshotter, loop lag)
  credential  settings: the cluster secret this node sends to peers and asks of them (the
              `peer` role of the replication endpoints), its refusals counted
  cluster     node, the peer transport, credential, tracing; only with peers (`peers` or
              `peers_dns`): status polls, bootstrap, replication senders, anti-entropy, DNS
  management  node, its store, tracing; only with a database: the pull-outs applied to the
              registry; it holds the node `starting` until its first load (or the timeout)
  registry    node, cluster.replicate (client writes that succeeded go to every peer)
  push        node, the registry API's heartbeat (the heartbeat WebSocket answers like
              heartbeat.json); it gets every change the node publishes
  app         node and every part above (status and metrics read cluster, management and
              the credential), tracing; its ASGI lifespan is `node.running()`

What runs while the node runs (`Node.running`): the node's loops, the push sweeper (every
second), the cluster's task, the management task.

Stop order (the runner's SIGTERM; the lifespan's end), written once here where it is wired:
  1. push: every WebSocket session closed with 1001 and new ones refused (the runner does this
     first, while the HTTP server still runs, so the close frames go out);
  2. the HTTP server stops accepting and lets requests in flight finish (the runner);
  3. the node's closers, in the order registered below: push again (nothing left to close),
     then the cluster hands peers what is still queued (at most a second) and closes its
     connections, then management closes its store;
  4. every loop and task of the node is cancelled, newest first;
  5. tracing flushes its spans (the runner).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from artemis.clock import Clock
from artemis.server.api import registry as api_registry
from artemis.server.app import build_app
from artemis.server.cluster import Cluster
from artemis.server.cluster.credential import ClusterCredential
from artemis.server.cluster.peers import AiohttpPeers, PeerClient, peer_tls
from artemis.server.http import App
from artemis.server.management import Management
from artemis.server.node import Node
from artemis.server.observability.tracing import Tracing
from artemis.server.push import PushServer
from artemis.server.settings import Settings

__all__ = ["NodeParts", "build"]

PUSH_SWEEP_INTERVAL: Final = 1.0  # seconds between two sweeps of the WebSocket sessions


@dataclass(frozen=True, slots=True)
class NodeParts:
    """The parts of one node (see the module doc for which depends on which)."""

    node: Node
    cluster: Cluster | None  # None without peers: a cluster of one
    management: Management | None  # None without a database
    push: PushServer
    tracing: Tracing | None  # None unless OTEL_* variables ask for traces
    app: App

    def __repr__(self) -> str:
        return (f"NodeParts({self.node!r}, cluster={self.cluster!r}, "
                f"management={self.management!r}, push={self.push!r}, "
                f"tracing={'on' if self.tracing is not None else 'off'})")


def build(settings: Settings, clock: Clock | None = None, tracing: Tracing | None = None, *,
          peer_client: PeerClient | None = None) -> NodeParts:
    """Build a node's parts and wire them (see the module doc). `clock` defaults to the system
    clock (offset by `wall_clock_offset`); `peer_client` is how the cluster reaches its peers
    (aiohttp by default; tests route it to in-process nodes)."""
    node = Node(settings, clock)
    credential = ClusterCredential(settings)
    cluster = None
    if settings.peers or settings.peers_dns:  # a cluster (the node then bootstraps)
        client = peer_client or AiohttpPeers(
            {"content-type": "application/json"},
            tls=peer_tls(settings.tls_cert, settings.tls_key, settings.tls_ca))
        cluster = Cluster(node, client, tracing, credential=credential)
    management = Management.of(node, tracing)
    registry = api_registry.routes(node, cluster.replicate if cluster is not None else None)
    push = PushServer(node, registry.heartbeat)
    app = build_app(node, registry=registry, push=push, cluster=cluster,
                    management=management, tracing=tracing, peers=credential)

    # What runs while the node runs (started by Node.running, in this order).
    node.subscribe(push.on_changes)
    node.add_loop("push sweeper", PUSH_SWEEP_INTERVAL, push.sweep)
    if cluster is not None:
        node.add_task("cluster", cluster.run)
    if management is not None:
        node.hold("management")  # starting until the first load (management.run releases it)
        node.add_task("management", management.run)

    # Stop order, steps 1 and 3 of the module doc: the closers run in this order.
    node.on_close(push.close_all)  # WebSocket sessions first: they never end by themselves
    if cluster is not None:
        node.on_close(cluster.close)  # replication still queued goes out, then connections
    if management is not None:
        node.on_close(management.close)  # the store last: nothing reads it any more

    return NodeParts(node, cluster, management, push, tracing, app)
