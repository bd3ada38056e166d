"""The cluster command: `artemis cluster` lists the cluster's nodes and their status
(/api/cluster/nodes.json)."""

from __future__ import annotations

from typing import Any

import click
import msgspec

from artemis import wire
from artemis.cli.output import show
from artemis.cli.target import Target, call, client_command, run

__all__ = ["NODE_COLUMNS", "NodesResponse", "cluster"]


class NodesResponse(msgspec.Struct, rename="camel", kw_only=True, frozen=True):
    """The answer of /api/cluster/nodes.json (no wire type: it is this API's own shape)."""

    nodes: list[wire.ServiceNodeStatus] | None = None
    response_status: wire.ResponseStatus


NODE_COLUMNS = ("url", "zone", "status", "canServiceRegistry", "canServiceDiscovery")


@click.command()
@client_command
def cluster(target: Target) -> None:
    """List the cluster's nodes and their status."""
    rows: list[dict[str, Any]] = []

    async def main() -> None:
        answer = await call(target, "/api/cluster/nodes.json",
                            wire.GetServiceNodesRequest(region_id=target.region,
                                                        zone_id=target.zone),
                            NodesResponse)
        rows.extend({"url": n.node.url, "zone": n.node.zone.zone_id, "status": n.status,
                     "canServiceRegistry": n.can_service_registry,
                     "canServiceDiscovery": n.can_service_discovery}
                    for n in sorted(answer.nodes or (), key=lambda n: n.node.url))

    run(target, main())
    show(target.as_json, NODE_COLUMNS, rows)
