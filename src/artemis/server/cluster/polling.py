"""Peer status polling: every `peer_status_interval` each peer's `/api/status/node.json`.

A peer that does not answer is `unknown`, and its replication queue is emptied (repair brings it
up to date when it answers again, so a dead peer costs nothing but its polls); the time of the
first poll it failed since it last answered is kept (`unansweredForMs` in replication.json). A
peer that answers with this node's own id is this node and is dropped from the list. `polled` is
set after the first poll that knew the peers (bootstrap waits for it).
"""

from __future__ import annotations

import asyncio
import logging

from artemis import wire
from artemis.core.membership import PeerState
from artemis.server.cluster.links import NODE_ID_HEADER, PeerLink, Peers, failure_text, guarded
from artemis.server.cluster.peers import PeerError

__all__ = ["StatusPoller"]

log = logging.getLogger("artemis.cluster")


class StatusPoller:
    """Polls the status of every peer (see the module doc)."""

    def __init__(self, peers: Peers) -> None:
        self.peers = peers
        self.polled = asyncio.Event()  # set after the first poll that knew the peers

    async def run(self) -> None:
        while True:
            await guarded(self.poll_once(), "peer status poll")
            await asyncio.sleep(self.peers.settings.peer_status_interval)

    async def poll_once(self) -> None:
        links = list(self.peers.links.values())
        await asyncio.gather(*(self._poll(link) for link in links))
        if self.peers.listed:
            self.polled.set()

    async def _poll(self, link: PeerLink) -> None:
        peers = self.peers
        try:
            response = await peers.post(link.url + "/api/status/node.json", b"{}", {},
                                        peers.settings.peer_timeout)
            if response.headers.get(NODE_ID_HEADER) == peers.node.node_id:
                peers.found_self(link)
                return
            answer = wire.decode(response.body, wire.GetClusterNodeStatusResponse)
            status = answer.node_status
            if response.status != 200 or status is None:
                raise ValueError(f"HTTP {response.status}")
            state = PeerState(status.status, status.can_service_registry,
                              status.can_service_discovery,
                              status.allow_registry_from_other_zone,
                              status.allow_discovery_from_other_zone)
            link.polled_ms = peers.node.clock.wall_ms()
            link.last_error = ""
            link.unanswered_since = None
        except (PeerError, wire.DecodeError, ValueError) as exc:
            state = PeerState()
            link.last_error = failure_text(exc)
            if link.unanswered_since is None:
                link.unanswered_since = peers.node.clock.monotonic()
        if state != link.state:
            log.info("peer %s is now %s (was %s)", link.url, state.status, link.state.status)
            link.state = state
        if not link.target and len(link.queue):
            dropped = link.queue.clear()
            log.info("peer %s does not answer: %d queued writes dropped (repair will bring it "
                     "up to date)", link.url, dropped)

    def __repr__(self) -> str:
        return f"StatusPoller({len(self.peers.links)} peers, polled={self.polled.is_set()})"
