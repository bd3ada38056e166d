"""The cluster command: `artemis cluster` lists the cluster's nodes and their status, as the node
asked sees them (/api/cluster/nodes.json), with how long a peer has not answered
(/api/status/replication.json).

A peer that stopped answering the node's status polls is `down`, with the time since the first
poll it failed (`downFor`) and the last error; the node's own answer calls it `unknown`
(`reportedStatus`), as the original does. A peer not polled yet stays `unknown`.
"""

from __future__ import annotations

from typing import Any

import click
import msgspec

from artemis import wire
from artemis.cli.output import show
from artemis.cli.target import Node, Target, client_command, run

__all__ = ["NODE_COLUMNS", "NodesResponse", "cluster", "node_row", "seconds_text"]


class NodesResponse(msgspec.Struct, rename="camel", kw_only=True, frozen=True):
    """The answer of /api/cluster/nodes.json (no wire type: it is this API's own shape)."""

    nodes: list[wire.ServiceNodeStatus] | None = None
    response_status: wire.ResponseStatus


NODE_COLUMNS = ("url", "zone", "status", "downFor", "canServiceRegistry",
                "canServiceDiscovery", "lastError")


def seconds_text(seconds: float) -> str:
    """A duration as people read it: 42s, 3m12s, 2h05m, 3d04h."""
    total = int(seconds)
    if total < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def node_row(status: wire.ServiceNodeStatus,
             peer: wire.PeerReplicationStatus | None) -> dict[str, Any]:
    """A node as `cluster` shows it (module rules)."""
    shown = status.status
    down_for = None
    error = peer.last_error or None if peer is not None else None
    if peer is not None and shown == "unknown" and peer.unanswered_for_ms is not None:
        shown = "down"
        down_for = peer.unanswered_for_ms / 1000
    return {"url": status.node.url, "zone": status.node.zone.zone_id, "status": shown,
            "reportedStatus": status.status, "downFor": down_for,
            "canServiceRegistry": status.can_service_registry,
            "canServiceDiscovery": status.can_service_discovery, "lastError": error}


@click.command()
@client_command
def cluster(target: Target) -> None:
    """List the cluster's nodes: status (a peer that stopped answering is down, with for how
    long), and whether each serves registration and discovery now."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        async with Node(target) as node:
            answer = await node.call("/api/cluster/nodes.json", wire.GetServiceNodesRequest(
                region_id=target.region, zone_id=target.zone), NodesResponse)
            replication = await node.get("/api/status/replication.json",
                                         wire.ReplicationStatusResponse)
        peers = {p.url: p for p in replication.peers}
        rows.extend(node_row(n, peers.get(n.node.url))
                    for n in sorted(answer.nodes or (), key=lambda n: n.node.url))

    run(target, main())
    if target.as_json:
        show(True, NODE_COLUMNS, rows)
    else:
        show(False, NODE_COLUMNS, [
            {**r, "downFor": None if r["downFor"] is None else seconds_text(r["downFor"])}
            for r in rows])
