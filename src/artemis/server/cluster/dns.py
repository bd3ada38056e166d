"""DNS peers: with `--peers-dns name:port` the peers are the addresses `name` resolves to.

The name is resolved again every `peers_dns_interval` (IPv4 addresses if it has any, else IPv6),
and the peers are polled at once after each resolution. A resolution that fails keeps the peers
known so far. This node's own address is among them: the status poll finds it (it answers with
this node's id) and drops it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence

from artemis.core.membership import PeerSpec, peers_from_addresses
from artemis.server.cluster.links import Peers, guarded

__all__ = ["DnsPeers", "Resolve", "resolve"]

log = logging.getLogger("artemis.cluster")

Resolve = Callable[[str, int], Awaitable[Sequence[str]]]  # (name, port) -> addresses


async def resolve(name: str, port: int) -> list[str]:
    """The addresses of `name`: IPv4 ones if it has any, else IPv6."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
    v4 = {str(info[4][0]) for info in infos if info[0] == socket.AF_INET}
    v6 = {str(info[4][0]) for info in infos if info[0] == socket.AF_INET6}
    return sorted(v4 or v6)


class DnsPeers:
    """Keeps the peer list in step with DNS (see the module doc)."""

    def __init__(self, peers: Peers, set_peers: Callable[[Sequence[PeerSpec]], None],
                 poll_once: Callable[[], Awaitable[None]], resolver: Resolve = resolve) -> None:
        self.peers = peers
        self.set_peers = set_peers
        self.poll_once = poll_once
        self.resolve = resolver

    async def run(self) -> None:
        s = self.peers.settings
        name, _, port = s.peers_dns.rpartition(":")
        while True:
            try:
                addresses = await self.resolve(name, int(port))
                scheme = "https" if s.tls_cert else "http"
                self.set_peers(peers_from_addresses(addresses, int(port), s.zone, scheme,
                                                    s.context_path))
            except OSError as exc:
                log.warning("cannot resolve peers %s: %s; keeping %d known peers",
                            s.peers_dns, exc, len(self.peers.links))
            self.peers.mark_listed()
            await guarded(self.poll_once(), "peer status poll")
            await asyncio.sleep(s.peers_dns_interval)

    def __repr__(self) -> str:
        return f"DnsPeers({self.peers.settings.peers_dns!r})"
