"""Registry endpoints: register, heartbeat and unregister of instance batches (§4.1).

Processing order, as the original: rate limit, then the request's shape, then the node's status,
then each instance on its own (failures are per instance, `partial_fail` overall). A register is
counted against its caller's address (the TCP peer, without port) for the per-client caps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from artemis import wire
from artemis.core.registry import BatchResult
from artemis.server.api.endpoint import POST, Endpoint, bind
from artemis.server.http import BadRequest, Request, status_bytes
from artemis.server.node import Node
from artemis.wire import ErrorCode, InstancesRequest

__all__ = ["ENDPOINTS", "InstancesOperation", "RegistryApi", "client_address", "routes"]

SUCCESS_BODY: Final = b'{"failedInstances":null,"responseStatus":' + status_bytes(
    ErrorCode.SUCCESS, "", "success") + b"}"
_PARTIAL: Final = wire.ResponseStatus(error_code=ErrorCode.PARTIAL_FAIL, message="",
                                      status="partial_fail")

Operation = Callable[..., BatchResult]  # (instances, now, wall_ms[, client=address])
# Hands a client write that succeeded here to the cluster: (operation, instances).
Replicate = Callable[[str, Sequence[wire.Instance]], None]


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
    the replication endpoints (`limiter="replication"`, accepted while the node starts, and no
    `replicate`: a replicated write is never replicated again). `replicate` is the cluster's,
    for client writes on a node with peers."""

    def __init__(self, node: Node, endpoint: Endpoint, identity: str, operation: Operation, *,
                 limiter: str = "registry", needs_up: bool = True,
                 replicate: Replicate | None = None, limit_batch: bool = True,
                 per_client: bool = False) -> None:
        self.node = node
        self.identity = identity
        self.operation = operation
        self.limiter = limiter
        self.needs_up = needs_up
        self.replicate = replicate
        self.per_client = per_client  # the operation takes client=<address> (register)
        # Peers' batches follow their own replication_batch, not this node's max_batch (the
        # body size limit still applies to them).
        self.max_batch = node.settings.max_batch if limit_batch else None
        self.route = bind(endpoint, self)

    def handle(self, request: Request) -> bytes:
        return self.run(request.json(InstancesRequest), client_address(request.client))

    def run(self, body: InstancesRequest, client: str = "") -> bytes:
        node = self.node
        if not node.allowed(self.limiter, self.identity):
            return self.route.fail(ErrorCode.RATE_LIMITED, "Request is rate limited.")
        instances = body.instances
        if not instances:
            raise BadRequest("request.instances is null or empty.")
        limit = self.max_batch
        if limit is not None and len(instances) > limit:
            raise BadRequest(f"request.instances has {len(instances)} instances; "
                             f"at most {limit} are accepted in one request.")
        if self.needs_up and not node.state.serves_registry:
            return self.route.fail(ErrorCode.SERVICE_UNAVAILABLE,
                                   f"Serivce registry is not in up state. Current status: "
                                   f"{node.state.status}")
        clock = node.clock
        if self.per_client:
            result = self.operation(instances, clock.monotonic(), clock.wall_ms(), client=client)
        else:
            result = self.operation(instances, clock.monotonic(), clock.wall_ms())
        node.publish(result.changes)
        if self.replicate is not None and result.succeeded:
            self.replicate(self.identity, result.succeeded)
        if result.failed and self.route.stats is not None:
            self.route.stats.error(ErrorCode.PARTIAL_FAIL)
        return answer(result)


class RegistryApi:
    """The three registry operations; heartbeat is shared with the heartbeat WebSocket."""

    def __init__(self, node: Node, replicate: Replicate | None = None) -> None:
        registry = node.registry
        self.register = InstancesOperation(node, REGISTER, "register", registry.register,
                                           replicate=replicate, per_client=True)
        self.heartbeat = InstancesOperation(node, HEARTBEAT, "heartbeat", registry.heartbeat,
                                            replicate=replicate)
        self.unregister = InstancesOperation(node, UNREGISTER, "unregister",
                                             registry.unregister, replicate=replicate)
        self.routes = {
            REGISTER.path: self.register.route,
            HEARTBEAT.path: self.heartbeat.route,
            UNREGISTER.path: self.unregister.route,
        }


def routes(node: Node, replicate: Replicate | None = None) -> RegistryApi:
    return RegistryApi(node, replicate)


BATCH: Final = ("A batch is checked as a whole first (rate limit, `instances` missing, empty or "
                "over `max_batch`, node not serving), then each instance on its own: a failing "
                "one is listed in `failedInstances` and the answer is `partial_fail`.")

REGISTER: Final = Endpoint(
    "/api/registry/register.json", POST, "Register instances", wire.InstancesRequest,
    wire.InstancesResponse, InstancesOperation.handle,
    description="Creates (or replaces) the lease of each instance. " + BATCH)
HEARTBEAT: Final = Endpoint(
    "/api/registry/heartbeat.json", POST, "Renew the leases of instances", wire.InstancesRequest,
    wire.InstancesResponse, InstancesOperation.handle,
    description="An unknown or expired instance fails `data-not-found` (register it again). "
    + BATCH)
UNREGISTER: Final = Endpoint(
    "/api/registry/unregister.json", POST, "Unregister instances", wire.InstancesRequest,
    wire.InstancesResponse, InstancesOperation.handle,
    description="Removes each lease at once; an unknown instance is a success. " + BATCH)
ENDPOINTS: Final = (REGISTER, HEARTBEAT, UNREGISTER)
