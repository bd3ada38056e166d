"""Bootstrap: a starting node copies the leases of an up peer (same zone first), then is up.

`core.membership.bootstrap_plan` decides which peers to copy from and when the node may come up
without a copy (no peer up after `bootstrap_timeout`, or no peer at all); this module waits for
the first status poll, follows the plan and says how it went in `state` (replication.json's
`bootstrap`). A node forced down and then `auto` is starting again and bootstraps again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from artemis.core.membership import bootstrap_plan
from artemis.core.node_status import STARTING
from artemis.server.cluster.links import PeerLink, Peers, guarded

__all__ = ["Bootstrap"]

log = logging.getLogger("artemis.cluster")

Copy = Callable[[PeerLink], Awaitable["int | None"]]  # copy a peer's leases: how many, or None


class Bootstrap:
    """Brings a starting node up (see the module doc)."""

    def __init__(self, peers: Peers, polled: asyncio.Event, copy: Copy) -> None:
        self.peers = peers
        self.polled = polled
        self.copy = copy
        self.state: dict[str, object] = {"state": "not started"}

    async def run(self) -> None:
        node = self.peers.node
        while True:
            if node.state.status == STARTING and not node.up_pending:
                await guarded(self._bootstrap(), "bootstrap")
            await asyncio.sleep(0.2)

    async def _bootstrap(self) -> None:
        node = self.peers.node
        started = node.clock.monotonic()
        self.state = {"state": "waiting for peers"}
        await self.polled.wait()
        while node.state.status == STARTING and not node.up_pending:
            if await self.step(node.clock.monotonic() - started):
                return
            await asyncio.sleep(self.peers.settings.peer_status_interval)

    async def step(self, waited: float) -> bool:
        """One bootstrap attempt of a starting node `waited` seconds after it started: copy
        from an up peer or come up as the plan says; True once the node is up."""
        peers = self.peers
        node = peers.node
        links = peers.links
        specs = [link.spec for link in links.values()]
        states = {link.url: link.state for link in links.values()}
        plan = bootstrap_plan(specs, states, peers.settings.zone, waited,
                              peers.settings.bootstrap_timeout)
        for source in plan.sources:
            link = links.get(source.url)
            if link is None:
                continue
            started = node.clock.monotonic()
            copied = await self.copy(link)
            if copied is not None:
                self._come_up(f"copied {copied} instances from {source.url}", source=source.url,
                              instances=copied,
                              seconds=round(node.clock.monotonic() - started, 3))
                return True
        if plan.come_up:
            self._come_up(plan.reason, waited=round(waited, 3))
            return True
        self.state = {"state": plan.reason if not plan.sources
                      else "every up peer failed; trying again"}
        return False

    def _come_up(self, reason: str, **facts: object) -> None:
        node = self.peers.node
        if node.state.status == STARTING:
            node.mark_up()  # up now, or once management data is loaded
        self.state = {"state": "done", "reason": reason, **facts}
        log.info("node is up: %s", reason)

    def __repr__(self) -> str:
        return f"Bootstrap({self.state})"
