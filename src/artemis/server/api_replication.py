"""The receiving side of replication: what a peer node calls (§4.3).

  /api/replication/registry/register.json     as register.json, but
  /api/replication/registry/heartbeat.json    - no node-status check (accepted while starting),
  /api/replication/registry/unregister.json   - no zone check (region only),
                                              - a heartbeat for an unknown instance registers it,
                                                so a register a peer lost heals;
  /api/replication/registry/services.json     the raw registry (every service with instances,
                                              no filters) for a starting peer to copy.

Rate-limited by the `replication` limiter. Changes they make are pushed like any other.
"""

from __future__ import annotations

from functools import partial
from typing import Final

from artemis import wire
from artemis.core.registry import encode_service
from artemis.server.api_registry import InstancesOperation
from artemis.server.http import BadRequest, Request, Route, status_bytes
from artemis.server.node import Node

__all__ = ["routes"]

_SUCCESS: Final = status_bytes("success", "", "success")


class Replication:
    def __init__(self, node: Node) -> None:
        self.node = node
        registry = node.registry
        operations = {
            "register": partial(registry.register, check_zone=False),
            "heartbeat": partial(registry.heartbeat, check_zone=False, register_unknown=True),
            "unregister": partial(registry.unregister, check_zone=False),
        }
        self.routes = {
            f"/api/replication/registry/{name}.json": InstancesOperation(
                node, name, operation, limiter="replication", needs_up=False).route
            for name, operation in operations.items()
        }
        self.routes["/api/replication/registry/services.json"] = Route(
            frozenset({"GET", "POST"}), handler=self.services, null_fields={"services": None})

    def services(self, request: Request) -> bytes:
        route = self.routes["/api/replication/registry/services.json"]
        node = self.node
        if not node.allowed("replication", "get-services"):
            return route.fail("rate-limited", "Request is rate limited.")
        if request.method == "GET":
            region = request.query("regionId")
            if region is None:
                raise BadRequest("regionId is required.")
        else:
            region = request.json(wire.GetServicesRequest).region_id
        if region is None or region.lower() != node.settings.region.lower():
            return route.fail("no-permission", f"regionId is not the same as the registry node. "
                              f"regionId: {region}, registry node.regionId: "
                              f"{node.settings.region}")
        parts = [encode_service(state.service_id, (lease.encoded
                                                   for lease in state.leases.values()))
                 for state in node.registry.services.values()]
        return b"".join((b'{"responseStatus":', _SUCCESS, b',"services":[', b",".join(parts),
                         b"]}"))


def routes(node: Node) -> dict[str, Route]:
    return Replication(node).routes
