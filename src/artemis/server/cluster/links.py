"""What the cluster's parts share: one `PeerLink` per peer, and `Peers`, which hold them.

`Peers` is the node's list of its peers (from `--peers` or DNS; a URL that answered with this
node's own id is dropped), the transport to them (`PeerClient`, see `peers.py`), and the CPU
time the cluster's work takes on the event loop. The status poller, the replication sender,
anti-entropy, bootstrap and the DNS loop each hold the one `Peers` of their node.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Final

from artemis.core.membership import PeerSpec, PeerState, split_self
from artemis.core.node_status import DOWN
from artemis.core.replication import PeerQueue, QueueConfig
from artemis.server.cluster.peers import PeerAnswer, PeerClient, PeerError
from artemis.server.node import Node
from artemis.server.observability.loop import percentiles_ms
from artemis.server.observability.metrics import LAG_BUCKETS

__all__ = ["NODE_ID_HEADER", "REPLICATION", "PeerLink", "Peers", "failure_text", "guarded"]

log = logging.getLogger("artemis.cluster")

NODE_ID_HEADER: Final = "x-artemis-node-id"
REPLICATION: Final = "/api/replication/registry"
_LAG_KEEP: Final = 20_000


def failure_text(exc: Exception) -> str:
    """A failure as `lastError` shows it (PeerError messages already name their cause)."""
    text = str(exc) if isinstance(exc, PeerError) else f"{type(exc).__name__}: {exc}"
    return text[:300]


async def guarded(step: Awaitable[object], what: str) -> None:
    """Run one step of a background loop; an unexpected failure is logged, and the loop goes
    on (a loop that died would leave the node deaf to its peers without a word)."""
    try:
        await step
    except Exception:
        log.exception("%s failed; it runs again", what)


@dataclass(slots=True)
class PeerLink:
    """One peer: its status as last polled, its replication queue, and what went on."""

    spec: PeerSpec
    queue: PeerQueue
    state: PeerState = field(default_factory=PeerState)
    polled_ms: int = 0  # wall clock of the last answer
    last_error: str = ""
    unanswered_since: float | None = None  # monotonic: first failed poll since the last answer
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sender: asyncio.Task[None] | None = None
    lag: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=_LAG_KEEP))
    # every acknowledged write's lag, counted by LAG_BUCKETS (the last: above them all) since
    # the node started, and their sum: the distribution over any span of time
    lag_counts: list[int] = field(default_factory=lambda: [0] * (len(LAG_BUCKETS) + 1))
    lag_seconds: float = 0.0
    skipped: int = 0  # instances not queued because the peer did not answer or was down
    requests: int = 0
    repair_rounds: int = 0
    repaired_services: int = 0
    repaired_instances: int = 0
    stale_unregistered: int = 0
    in_sync_rounds: int = 0

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def target(self) -> bool:
        """Whether writes are queued for this peer: it answered and is not down (a starting
        peer takes replication while it copies, so it misses nothing)."""
        return self.state.answered and self.state.status != DOWN

    def lag_summary(self, now: float, window: float = 60.0) -> dict[str, float]:
        return percentiles_ms(lag for when, lag in self.lag if now - when <= window)

    def acknowledged(self, now: float, submitted: Sequence[float]) -> None:
        """Writes submitted at these times were acknowledged by the peer at `now`. They are
        counted by bucket with one search per bound, not one per write: a write's lag is at most
        a bound when it was submitted at or after `now - bound`."""
        self.lag.extend((now, now - when) for when in submitted)
        times = sorted(submitted)  # in submission order already, but for retried writes
        counts, total, below = self.lag_counts, len(times), 0
        for i, bound in enumerate(LAG_BUCKETS):
            within = total - bisect_left(times, now - bound)
            counts[i] += within - below
            below = within
        counts[-1] += total - below
        self.lag_seconds += total * now - sum(times)

    def lag_buckets(self) -> dict[str, object]:
        """The acknowledged writes' lags since the node started, as replication.json shows
        them: cumulative counts at each bound of LAG_BUCKETS (in ms), their count and sum."""
        cumulative = list(accumulate(self.lag_counts))
        return {"leMs": [round(bound * 1000, 1) for bound in LAG_BUCKETS],
                "cumulative": cumulative[:-1], "count": cumulative[-1],
                "sumMs": round(self.lag_seconds * 1000, 3)}

    def stop_sender(self) -> None:
        if self.sender is not None:
            self.sender.cancel()


class Peers:
    """This node's peers by URL, the transport to them, and the CPU time spent on them."""

    def __init__(self, node: Node, client: PeerClient, queue_config: QueueConfig,
                 credential: Mapping[str, str] | None = None) -> None:
        self.node = node
        self.settings = node.settings
        self.client = client
        self.queue_config = queue_config
        self.links: dict[str, PeerLink] = {}
        self.me: PeerSpec | None = None
        self.not_me: set[str] = set()  # URLs that answered with this node's id
        self.cpu_seconds = 0.0  # CPU time of replication, repair and bootstrap on the loop
        # The list is known: at once for listed peers, after the first resolution (even one
        # that failed) for DNS peers.
        self.listed = not node.settings.peers_dns
        # sent on every call: this node's id and the cluster credential (credential.py)
        self._id_header = {NODE_ID_HEADER: node.node_id, **(credential or {})}

    def set(self, peers: Sequence[PeerSpec]) -> None:
        """Take a new list of the cluster's nodes (this node among them or not); a peer that
        left has its sender stopped."""
        me, others = split_self(peers, self.settings.node_url)
        self.me = me
        wanted = {p.url: p for p in others if p.url not in self.not_me}
        for url in list(self.links):
            if url not in wanted:
                self.links.pop(url).stop_sender()
                log.info("peer %s left the configuration", url)
        for url, spec in wanted.items():
            if url not in self.links:
                self.links[url] = PeerLink(spec, PeerQueue(self.queue_config))
                log.info("peer %s (zone %s) joined the configuration", url, spec.zone)
            elif self.links[url].spec != spec:
                self.links[url].spec = spec

    def mark_listed(self) -> None:
        """The list of peers is known (DNS peers: the name was resolved once, or failed to)."""
        self.listed = True

    def found_self(self, link: PeerLink) -> None:
        """`link` answered with this node's id: it is this node, not a peer."""
        log.info("%s is this node: not a peer", link.url)
        self.not_me.add(link.url)
        self.links.pop(link.url, None)
        link.stop_sender()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str],
                   seconds: float) -> PeerAnswer:
        """POST to a peer, with this node's id in `x-artemis-node-id` and the cluster secret
        in `x-artemis-cluster-secret`."""
        return await self.client.post(url, body, {**self._id_header, **headers}, seconds)

    def __repr__(self) -> str:
        return f"Peers({sorted(self.links)}, me={self.me.url if self.me else None})"
