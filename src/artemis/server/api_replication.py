"""The receiving side of replication: what a peer node calls (§4.3).

  /api/replication/registry/register.json     as register.json, but
  /api/replication/registry/heartbeat.json    - no node-status check (accepted while starting),
  /api/replication/registry/unregister.json   - no zone check (region only),
                                              - a heartbeat for an unknown instance registers it,
                                                so a register a peer lost heals;
  /api/replication/registry/services.json     the raw registry (every service with instances,
                                              no filters), as the original's bootstrap copies it;
  /api/replication/registry/checksums.json    this node's registry checksum and, when it differs
                                              from the caller's, every service's (anti-entropy);
  /api/replication/registry/leases.json       the leases of some services or all, with when each
                                              was registered and how long ago it was renewed
                                              (bootstrap and repair between our nodes).

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
_STATUS: Final = wire.ResponseStatus(error_code="success", message="", status="success")
_MAX_SERVICES: Final = 100_000


class Replication:
    def __init__(self, node: Node) -> None:
        self.node = node
        registry = node.registry
        operations = {
            "register": partial(registry.register, check_zone=False, same_renews=True),
            "heartbeat": partial(registry.heartbeat, check_zone=False, register_unknown=True),
            "unregister": partial(registry.unregister, check_zone=False),
        }
        self.routes = {
            f"/api/replication/registry/{name}.json": InstancesOperation(
                node, name, operation, limiter="replication", needs_up=False,
                replicates=False, limit_batch=False).route
            for name, operation in operations.items()
        }
        self.routes["/api/replication/registry/services.json"] = Route(
            frozenset({"GET", "POST"}), handler=self.services, null_fields={"services": None})
        self.routes["/api/replication/registry/checksums.json"] = Route(
            frozenset({"POST"}), handler=self.checksums,
            null_fields={"checksum": None, "services": None})
        self.routes["/api/replication/registry/leases.json"] = Route(
            frozenset({"POST"}), handler=self.leases, null_fields={"leases": None})

    def _region_problem(self, region: str | None) -> str | None:
        mine = self.node.settings.region
        if region is None or region.lower() != mine.lower():
            return (f"regionId is not the same as the registry node. regionId: "
                    f"{'null' if region is None else region}, "
                    f"registry node.regionId: {mine}")
        return None

    def checksums(self, request: Request) -> bytes:
        route = self.routes["/api/replication/registry/checksums.json"]
        if not self.node.allowed("replication", "checksums"):
            return route.fail("rate-limited", "Request is rate limited.")
        asked = request.json(wire.ChecksumsRequest)
        problem = self._region_problem(asked.region_id)
        if problem is not None:
            return route.fail("no-permission", problem)
        registry = self.node.registry
        total = f"{registry.checksum:016x}"
        services = None
        if asked.checksum is None or asked.checksum.lower() != total:
            services = {key: f"{value:016x}" for key, value in registry.checksums().items()}
        return wire.encode(wire.ChecksumsResponse(checksum=total, response_status=_STATUS,
                                                  services=services))

    def leases(self, request: Request) -> bytes:
        route = self.routes["/api/replication/registry/leases.json"]
        node = self.node
        if not node.allowed("replication", "leases"):
            return route.fail("rate-limited", "Request is rate limited.")
        asked = request.json(wire.LeasesRequest)
        problem = self._region_problem(asked.region_id)
        if problem is not None:
            return route.fail("no-permission", problem)
        if asked.service_ids is not None and len(asked.service_ids) > _MAX_SERVICES:
            raise BadRequest(f"serviceIds has {len(asked.service_ids)} entries; at most "
                             f"{_MAX_SERVICES} are accepted in one request.")
        copies = list(node.registry.copies(asked.service_ids, node.clock.monotonic()))
        return b"".join((b'{"leases":[', b",".join(copies), b'],"responseStatus":', _SUCCESS,
                         b"}"))

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
                              f"regionId: {'null' if region is None else region}, "
                              f"registry node.regionId: "
                              f"{node.settings.region}")
        parts = [encode_service(state.service_id, (lease.encoded
                                                   for lease in state.leases.values()))
                 for state in node.registry.services.values()]
        return b"".join((b'{"responseStatus":', _SUCCESS, b',"services":[', b",".join(parts),
                         b"]}"))


def routes(node: Node) -> dict[str, Route]:
    return Replication(node).routes
