"""Registry endpoints: register, heartbeat and unregister of instance batches (§4.1).

Processing order, as the original: rate limit, then the request's shape, then the node's status,
then each instance on its own (failures are per instance, `partial_fail` overall). A register is
counted against its caller's address (the TCP peer, without port) for the per-client caps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from artemis import wire
from artemis.core.registry import BatchResult
from artemis.server.http import BadRequest, Request, Route, status_bytes
from artemis.server.node import Node
from artemis.wire import InstancesRequest

__all__ = ["InstancesOperation", "RegistryApi", "client_address", "routes"]

SUCCESS_BODY: Final = b'{"failedInstances":null,"responseStatus":' + status_bytes(
    "success", "", "success") + b"}"
_NULLS: Final = {"failedInstances": None}
_PARTIAL: Final = wire.ResponseStatus(error_code="partial_fail", message="",
                                      status="partial_fail")

Operation = Callable[..., BatchResult]  # (instances, now, wall_ms[, client=address])


def client_address(peer: str) -> str:
    """The address of a request's TCP peer without its port: `10.0.0.5:51234` -> `10.0.0.5`,
    `[::1]:51234` -> `::1`."""
    host, sep, port = peer.rpartition(":")
    if not sep or not port.isdigit():
        return peer
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def answer(result: BatchResult) -> bytes:
    """The InstancesResponse of a batch: the pre-encoded success, or partial_fail with details."""
    if not result.failed:
        return SUCCESS_BODY
    return wire.encode(wire.InstancesResponse(failed_instances=result.failed,
                                              response_status=_PARTIAL))


class InstancesOperation:
    """One of register / heartbeat / unregister, shared by HTTP, the heartbeat WebSocket and
    the replication endpoints (`limiter="replication"`, accepted while the node starts, and
    `replicates=False`: a replicated write is never replicated again)."""

    def __init__(self, node: Node, identity: str, operation: Operation, *,
                 limiter: str = "registry", needs_up: bool = True,
                 replicates: bool = True, limit_batch: bool = True,
                 per_client: bool = False) -> None:
        self.node = node
        self.identity = identity
        self.operation = operation
        self.limiter = limiter
        self.needs_up = needs_up
        self.replicates = replicates
        self.per_client = per_client  # the operation takes client=<address> (register)
        # Peers' batches follow their own replication_batch, not this node's max_batch (the
        # body size limit still applies to them).
        self.max_batch = node.settings.max_batch if limit_batch else None
        self.route = Route(frozenset({"POST"}), handler=self.handle, null_fields=_NULLS)

    def handle(self, request: Request) -> bytes:
        return self.run(request.json(InstancesRequest), client_address(request.client))

    def run(self, body: InstancesRequest, client: str = "") -> bytes:
        node = self.node
        if not node.allowed(self.limiter, self.identity):
            return self.route.fail("rate-limited", "Request is rate limited.")
        instances = body.instances
        if not instances:
            raise BadRequest("request.instances is null or empty.")
        limit = self.max_batch
        if limit is not None and len(instances) > limit:
            raise BadRequest(f"request.instances has {len(instances)} instances; "
                             f"at most {limit} are accepted in one request.")
        if self.needs_up and not node.state.serves_registry:
            return self.route.fail("service-unavailable",
                                   f"Serivce registry is not in up state. Current status: "
                                   f"{node.state.status}")
        clock = node.clock
        if self.per_client:
            result = self.operation(instances, clock.monotonic(), clock.wall_ms(), client=client)
        else:
            result = self.operation(instances, clock.monotonic(), clock.wall_ms())
        node.publish(result.changes)
        if self.replicates and result.succeeded and node.replicate is not None:
            node.replicate(self.identity, result.succeeded)
        if result.failed and self.route.stats is not None:
            self.route.stats.error("partial_fail")
        return answer(result)


class RegistryApi:
    """The three registry operations; heartbeat is shared with the heartbeat WebSocket."""

    def __init__(self, node: Node) -> None:
        registry = node.registry
        self.register = InstancesOperation(node, "register", registry.register, per_client=True)
        self.heartbeat = InstancesOperation(node, "heartbeat", registry.heartbeat)
        self.unregister = InstancesOperation(node, "unregister", registry.unregister)
        self.routes = {
            "/api/registry/register.json": self.register.route,
            "/api/registry/heartbeat.json": self.heartbeat.route,
            "/api/registry/unregister.json": self.unregister.route,
        }


def routes(node: Node) -> RegistryApi:
    return RegistryApi(node)
