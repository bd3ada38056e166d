"""The cluster shell: polls peers, bootstraps, replicates client writes and repairs differences.

The decisions live in the core (`core.membership` for peers and bootstrap, `core.replication`
for the per-peer queues, `Registry.merge` for repairs); this package does the I/O around them,
one module per concept:

  credential.py   the cluster secret: sent on every call to a peer, asked of peers' calls
  peers.py        the transport seam: one POST to a peer, every failure a `PeerError`
  links.py        `PeerLink` (one peer as this node sees it) and `Peers`, which the parts share
  polling.py      every `peer_status_interval` each peer's status (node.json)
  bootstrap.py    a starting node copies an up peer's leases, then is up
  replication.py  every client write that succeeded, queued and sent to every peer
  repair.py       anti-entropy: checksums compared, what differs fetched and merged
  dns.py          peers from `--peers-dns`, resolved again every `peers_dns_interval`

`Cluster` holds one of each for a node with peers (the composition root builds it only then) and
runs their loops in its one task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from artemis.core.membership import PeerSpec, PeerState, parse_peers
from artemis.core.node_status import STARTING
from artemis.core.replication import QueueConfig
from artemis.server.cluster.bootstrap import Bootstrap
from artemis.server.cluster.credential import SECRET_HEADER, ClusterCredential
from artemis.server.cluster.dns import DnsPeers, Resolve, resolve
from artemis.server.cluster.links import NODE_ID_HEADER, REPLICATION, PeerLink, Peers
from artemis.server.cluster.peers import PeerClient, PeerError
from artemis.server.cluster.polling import StatusPoller
from artemis.server.cluster.repair import AntiEntropy
from artemis.server.cluster.replication import ReplicationSender
from artemis.server.node import Node
from artemis.server.observability.tracing import Tracing
from artemis.wire import Instance

__all__ = ["NODE_ID_HEADER", "REPLICATION", "SECRET_HEADER", "Cluster", "ClusterCredential",
           "PeerLink", "alone_status"]

log = logging.getLogger("artemis.cluster")

_CLOSE_FLUSH: Final = 1.0  # seconds a stopping node spends sending what is still queued


class Cluster:
    """The node's view of its cluster and the work it does with it (see the package doc)."""

    def __init__(self, node: Node, client: PeerClient, tracing: Tracing | None = None,
                 resolver: Resolve = resolve, *,
                 credential: ClusterCredential | None = None) -> None:
        self.node = node
        s = node.settings
        self.settings = s
        self.credential = credential or ClusterCredential(s)
        self.peers = Peers(node, client, QueueConfig(
            limit=s.replication_queue, ttl=s.replication_task_ttl,
            max_attempts=s.replication_retries, backoff=s.replication_backoff),
            self.credential.headers())
        self.sender = ReplicationSender(self.peers, tracing)
        self.poller = StatusPoller(self.peers)
        self.anti_entropy = AntiEntropy(self.peers)
        self.bootstrapper = Bootstrap(self.peers, self.poller.polled, self.anti_entropy.copy)
        self.dns = (DnsPeers(self.peers, self.set_peers, self.poller.poll_once, resolver)
                    if s.peers_dns else None)
        self._running = False
        if s.peers:
            self.set_peers(parse_peers(s.peers, s.zone))

    # --- what the rest of the node uses --------------------------------------------------

    @property
    def node_id(self) -> str:
        return self.node.node_id

    @property
    def links(self) -> dict[str, PeerLink]:
        return self.peers.links

    @property
    def not_me(self) -> set[str]:
        return self.peers.not_me

    @property
    def polled(self) -> asyncio.Event:
        return self.poller.polled

    @property
    def bootstrap(self) -> dict[str, object]:
        return self.bootstrapper.state

    @property
    def cpu_seconds(self) -> float:
        """CPU time of replication, repair and bootstrap on the event loop."""
        return self.peers.cpu_seconds

    def replicate(self, operation: str, instances: Sequence[Instance | msgspec.Raw],
                  owners: Sequence[str] | None = None, keys: Sequence[str] | None = None) -> None:
        """Queue a client write that succeeded here for every peer that takes writes; `owners`
        (a register's) who owns each instance here; `keys` their instance keys when they are
        JSON already encoded (a renewal's, as its lease holds it)."""
        self.sender.replicate(operation, instances, owners, keys)

    def set_peers(self, peers: Sequence[PeerSpec]) -> None:
        """Take a new list of the cluster's nodes (this node among them or not)."""
        self.peers.set(peers)
        if self._running:
            self.sender.start()

    async def poll_once(self) -> None:
        await self.poller.poll_once()

    async def bootstrap_step(self, waited: float) -> bool:
        return await self.bootstrapper.step(waited)

    async def flush(self) -> None:
        await self.sender.flush()

    async def repair(self, link: PeerLink) -> int:
        return await self.anti_entropy.repair(link)

    # --- run -----------------------------------------------------------------------------

    async def run(self) -> None:
        """The cluster's loops: senders, status polls, bootstrap, DNS and anti-entropy."""
        self._running = True
        if self.credential.insecure:
            log.warning("cluster_insecure: peer calls (replication, bootstrap, repair) are "
                        "accepted without the cluster secret; anyone who reaches this node can "
                        "write to its registry as a peer")
        self.sender.start()
        loops = [self.poller.run(), self.bootstrapper.run()]
        if self.dns is not None:
            loops.append(self.dns.run())
        if self.settings.anti_entropy_interval > 0:
            loops.append(self.anti_entropy.run())
        await asyncio.gather(*loops)

    async def close(self) -> None:
        """The node is stopping: hand peers what is still queued (for at most a second), then
        stop the senders and close the connections."""
        self._running = False
        self.sender.stop()
        if self.sender.queued():
            try:
                await asyncio.wait_for(self.sender.flush(), _CLOSE_FLUSH)
            except (TimeoutError, PeerError):
                log.warning("stopping with %d replication tasks not sent; peers repair them",
                            self.sender.queued())
        await self.peers.client.close()

    # --- views ---------------------------------------------------------------------------

    def peer_statuses(self) -> list[tuple[PeerLink, PeerState]]:
        return [(link, link.state) for link in self.links.values()]

    def status(self) -> dict[str, Any]:
        """replication.json's fields."""
        now = self.node.clock.monotonic()
        peers = []
        for link in self.links.values():
            stats = link.queue.stats
            peers.append({
                "url": link.url, "zone": link.spec.zone, "status": link.state.status,
                "canServiceRegistry": link.state.can_service_registry,
                "canServiceDiscovery": link.state.can_service_discovery,
                "lastAnswerTime": link.polled_ms, "lastError": link.last_error,
                "unansweredForMs": None if link.unanswered_since is None
                else int((now - link.unanswered_since) * 1000),
                "queued": len(link.queue), "submitted": stats.submitted,
                "coalesced": stats.coalesced, "sent": stats.sent, "retried": stats.retried,
                "droppedOverflow": stats.dropped_overflow,
                "droppedExpired": stats.dropped_expired,
                "droppedFailed": stats.dropped_failed, "sendFailures": stats.send_failures,
                "skipped": link.skipped, "requests": link.requests,
                "backoffFailures": link.queue.failures,
                "lag": link.lag_summary(now), "lagBuckets": link.lag_buckets(),
                "repair": {"rounds": link.repair_rounds, "inSync": link.in_sync_rounds,
                           "services": link.repaired_services,
                           "instances": link.repaired_instances,
                           "staleUnregistered": link.stale_unregistered},
            })
        bootstrap = self.bootstrap
        if bootstrap.get("state") != "done" and self.node.state.status != STARTING:
            bootstrap = {"state": "done", "reason": f"forced {self.node.state.status}"}
        me = self.peers.me
        return {"nodeId": self.node_id, "peerAuth": self.credential.mode,
                "self": me.url if me else self.settings.node_url,
                "bootstrap": bootstrap, "cpuSeconds": round(self.peers.cpu_seconds, 6),
                "peers": peers}

    def __repr__(self) -> str:
        return (f"Cluster({self.settings.node_url!r}, {len(self.links)} peers, "
                f"bootstrap={self.bootstrap.get('state')!r})")


def alone_status(node: Node) -> dict[str, Any]:
    """replication.json's fields on a node without peers: a cluster of one."""
    return {"nodeId": node.node_id, "peerAuth": "none", "self": node.settings.node_url,
            "bootstrap": {"state": "done", "reason": "no peers: a cluster of one"},
            "cpuSeconds": 0.0, "peers": []}
