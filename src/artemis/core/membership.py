"""The cluster as one node sees it: its peers, their polled status, and when it may come up.

Rules
  * Peers are configured as the original writes them, `zoneA:url1,url2;zoneB:url3` (`;` between
    zones, the first `:` splits the zone from its comma-separated URLs), or resolved from a DNS
    name whose addresses are the peers (all in the node's own zone). URLs are compared without a
    trailing `/` and with the scheme and host lower-cased.
  * The node finds itself in the list by its own URL; every other URL is a peer. A list in which
    the node does not appear is all peers (a node behind a load balancer, or a DNS name that does
    not resolve to this machine).
  * A peer's status is what it answered last to `node.json`; a peer that did not answer is
    `unknown` and is neither replicated to nor copied from.
  * Bootstrap (§6.4, with quirk 9 fixed): a starting node copies the registry of an `up` peer,
    same zone first. When no peer is up it comes up anyway once every peer has answered and none
    is up (a brand-new cluster: all nodes start together and see one another `starting`), or once
    `bootstrap_timeout` has passed without any peer up (the others are gone; the node starts
    empty and clients re-register on their next heartbeat).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from artemis.core.node_status import DOWN, STARTING, UNKNOWN, UP

__all__ = [
    "PEERS_FORMAT",
    "BootstrapPlan",
    "PeerSpec",
    "PeerState",
    "PeersError",
    "bootstrap_plan",
    "normalize_url",
    "parse_peers",
    "peers_from_addresses",
    "split_self",
]

PEERS_FORMAT: Final = "zone:url,url;zone2:url"


class PeersError(ValueError):
    """The peers setting cannot be read; the message says where."""


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """One configured node of the cluster."""

    zone: str
    url: str  # normalized: no trailing slash, lower-case scheme and host


@dataclass(frozen=True, slots=True)
class PeerState:
    """What a peer answered last to `/api/status/node.json` (status `unknown` if nothing)."""

    status: str = UNKNOWN
    can_service_registry: bool | None = None
    can_service_discovery: bool | None = None
    allow_registry_from_other_zone: bool | None = None
    allow_discovery_from_other_zone: bool | None = None

    @property
    def serves_registry(self) -> bool:
        """The original's predicate (§5.7): up, or not down and flagged."""
        return self.status == UP or (self.status not in (DOWN, UNKNOWN)
                                     and self.can_service_registry is True)

    @property
    def serves_discovery(self) -> bool:
        return self.status == UP or (self.status not in (DOWN, UNKNOWN)
                                     and self.can_service_discovery is True)

    @property
    def answered(self) -> bool:
        return self.status != UNKNOWN


def normalize_url(url: str) -> str:
    """A node URL as nodes compare them: trimmed, no trailing `/`, scheme and host lower-case."""
    text = url.strip().rstrip("/")
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise PeersError(f"{url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PeersError(f"{url!r} is not an http(s) URL with a host")
    try:
        port = parts.port
    except ValueError:
        raise PeersError(f"{url!r} has a port that is not a number from 0 to 65535") from None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if parts.username or parts.password:
        raise PeersError(f"{url!r} carries credentials; peers are plain URLs")
    if parts.query or parts.fragment:
        raise PeersError(f"{url!r} has a query or fragment; peers are plain URLs")
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"


def parse_peers(text: str, default_zone: str) -> list[PeerSpec]:
    """The nodes of `zoneA:url1,url2;zoneB:url3`; a part without a zone (`url1,url2`) is in
    `default_zone`. Duplicates are kept once, in the order given."""
    peers: list[PeerSpec] = []
    seen: set[str] = set()
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        zone, urls = default_zone, part
        head, sep, rest = part.partition(":")
        if sep and not rest.startswith("//"):  # `zone:url`, not a bare `http://…`
            zone, urls = head.strip(), rest
            if not zone:
                raise PeersError(f"{part!r}: the zone before ':' is blank (format: "
                                 f"{PEERS_FORMAT})")
            if rest.split(",", 1)[0].strip().isdigit():
                raise PeersError(f"{part!r} looks like host:port without a scheme; write "
                                 f"http://{part.strip()} (format: {PEERS_FORMAT})")
        for raw in urls.split(","):
            if not raw.strip():
                continue
            url = normalize_url(raw)
            if url not in seen:
                seen.add(url)
                peers.append(PeerSpec(zone, url))
    return peers


def peers_from_addresses(addresses: Iterable[str], port: int, zone: str, scheme: str = "http",
                         context_path: str = "") -> list[PeerSpec]:
    """The nodes behind a DNS name: one URL per address, in address order, IPv4 before IPv6."""

    def order(address: str) -> tuple[int, int | str]:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return (2, address)
        return (ip.version, int(ip))

    urls = {normalize_url(f"{scheme}://{f'[{a}]' if ':' in a else a}:{port}{context_path}"): a
            for a in sorted(set(addresses), key=order)}
    return [PeerSpec(zone, url) for url in urls]


def split_self(peers: Sequence[PeerSpec], own_url: str) -> tuple[PeerSpec | None, list[PeerSpec]]:
    """(this node's entry or None, the other nodes)."""
    own = normalize_url(own_url)
    me = next((p for p in peers if p.url == own), None)
    return me, [p for p in peers if p.url != own]


@dataclass(frozen=True, slots=True)
class BootstrapPlan:
    """What a starting node does next: copy from `sources` in order, or come up empty."""

    sources: tuple[PeerSpec, ...] = ()
    come_up: bool = False
    reason: str = ""


def bootstrap_plan(peers: Sequence[PeerSpec], states: Mapping[str, PeerState], zone: str,
                   waited: float, timeout: float) -> BootstrapPlan:
    """Where a starting node copies its registry from (rules in the module doc).

    `waited` is how long the node has been starting; `timeout` is `bootstrap_timeout`.
    """
    if not peers:
        return BootstrapPlan(come_up=True, reason="no peers: a cluster of one")
    up = [p for p in peers if states.get(p.url, PeerState()).status == UP]
    if up:
        same = [p for p in up if p.zone.lower() == zone.lower()]
        other = [p for p in up if p.zone.lower() != zone.lower()]
        return BootstrapPlan(sources=tuple(same + other), reason="copy from an up peer")
    answered = [states.get(p.url, PeerState()).answered for p in peers]
    if all(answered):
        starting = sum(states[p.url].status == STARTING for p in peers)
        return BootstrapPlan(come_up=True, reason=f"no peer is up and all {len(peers)} answered "
                             f"({starting} starting): a new cluster")
    if waited >= timeout:
        missing = sum(not a for a in answered)
        return BootstrapPlan(come_up=True, reason=f"no peer up after {timeout:g} s "
                             f"({missing} of {len(peers)} unreachable): starting empty")
    return BootstrapPlan(reason="waiting for peers to answer")
