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

Only peers are answered (role `peer`: the cluster secret, see server/cluster/credential.py); a
node without peers answers every one of them `no-permission`. Rate-limited by the `replication`
limiter. Changes they make are pushed like any other.

Limits: a replicated batch holds at most max(max_batch, replication_batch) instances (else
`bad-request`), and each instance passes the same checks as a client's (region, ids, url,
lengths); a replicated register (or a heartbeat that registers an unknown instance) meets the
node's caps (max_instances, max_services) like a client's, never the per-client ones: peers are
not clients. The three large answers (services, checksums, leases) are built in steps of a few
thousand leases that give the event loop back, one at a time on the node (`Node.build_shared`),
and a request asking what is being built gets the same answer; they are sent in pieces, never
joined. Each lease copy's age is as of the step that wrote it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Iterable, Sequence
from functools import partial
from typing import Final

from artemis import wire
from artemis.core.node_status import STARTING
from artemis.core.registry import BatchResult, encode_service, lease_copy
from artemis.server.api.endpoint import (
    GET_POST,
    POST,
    ZONE_QUERY,
    Access,
    Endpoint,
    Query,
    Role,
    bind,
)
from artemis.server.api.registry import Answer, InstancesOperation, client_address
from artemis.server.http import BadRequest, Pieces, Request, Route, status_bytes
from artemis.server.node import Node
from artemis.wire import ErrorCode

__all__ = ["ENDPOINTS", "routes"]

_SUCCESS: Final = status_bytes(ErrorCode.SUCCESS, "", "success")
_STATUS: Final = wire.ResponseStatus(error_code=ErrorCode.SUCCESS, message="", status="success")
_MAX_SERVICES: Final = 100_000
_STEP_LEASES: Final = 2_000  # leases per step of a large answer (a few ms of work)
_STEP_SERVICES: Final = 1_000  # services per step of the checksums answer (a few ms)
_INSTANCES_OPEN: Final = b'{"instances":['


def _service_tail(service_id: str) -> bytes:
    """What follows a raw service's instances, exactly as encode_service writes it."""
    return encode_service(service_id, ())[len(_INSTANCES_OPEN):]


_MAX_OWNER: Final = 256  # characters of an owner's name (a token name or an address)


class PeerWrite:
    """A replicated register, heartbeat or unregister: the registry's operation, answered once
    the caller has the `peer` role (its route is the operation's own, so its failures are
    counted on the endpoint). A register may carry who owns each instance at the peer
    (`ReplicatedInstancesRequest.owners`), checked here as a client's values are."""

    def __init__(self, operation: InstancesOperation, owned: bool = False) -> None:
        self.operation = operation
        self.owned = owned

    def handle(self, request: Request, actor: str) -> Answer:
        if not self.owned:
            return self.operation.handle(request)
        body = request.json(wire.ReplicatedInstancesRequest)
        owners = body.owners
        if owners is not None:
            if len(owners) != len(body.instances or ()):
                raise BadRequest(f"request.owners has {len(owners)} entries for "
                                 f"{len(body.instances or ())} instances; one each is needed.")
            for owner in owners:
                if owner is not None and (len(owner) > _MAX_OWNER or not owner.isprintable()):
                    raise BadRequest(f"request.owners holds a name longer than {_MAX_OWNER} "
                                     f"characters or with control characters.")
        return self.operation.run(body, client_address(request.client), owners=owners)


class Replication:
    def __init__(self, node: Node, access: Access) -> None:
        self.node = node
        registry = node.registry
        operations = (
            (REGISTER, "register", partial(registry.register, check_zone=False,
                                           same_renews=True)),
            (HEARTBEAT, "heartbeat", self._heartbeat),
            (UNREGISTER, "unregister", partial(registry.unregister, check_zone=False,
                                               from_peer=True)),
        )
        self.routes: dict[str, Route] = {}
        batch = max(node.settings.max_batch, node.settings.replication_batch)
        for endpoint, name, operation in operations:
            # A peer's heartbeat carries each instance's JSON as the peer holds it: when this
            # node holds the same, it is renewed without being decoded (core/renewal.py).
            write = InstancesOperation(node, dataclasses.replace(endpoint, role=Role.NONE), name,
                                       operation, limiter="replication", needs_up=False,
                                       exact=endpoint is HEARTBEAT, check_zone=False)
            write.max_batch = batch  # a peer's batches follow its replication_batch
            write.route = bind(endpoint, PeerWrite(write, owned=endpoint is REGISTER), access)
            self.routes[endpoint.path] = write.route
        for endpoint in (SERVICES, CHECKSUMS, LEASES):
            self.routes[endpoint.path] = bind(endpoint, self, access)

    def _heartbeat(self, instances: Sequence[wire.Instance | None], now: float,
                   wall_ms: int) -> BatchResult:
        """A peer's heartbeat: an instance not held here is registered (a lost register heals),
        except while the node is starting: it is copying a peer's registry, which brings the
        instance with its lease's age, and registering each one its peers renew meanwhile (at
        a million instances all of them, in half a minute) would do the copy's work twice."""
        return self.node.registry.heartbeat(instances, now, wall_ms, check_zone=False,
                                            register_unknown=True,
                                            copying=self.node.state.status == STARTING)

    def _region_problem(self, region: str | None) -> str | None:
        mine = self.node.settings.region
        if region is None or region.lower() != mine.lower():
            return (f"regionId is not the same as the registry node. regionId: "
                    f"{'null' if region is None else region}, "
                    f"registry node.regionId: {mine}")
        return None

    async def checksums(self, request: Request, actor: str) -> bytes | Pieces:
        route = self.routes[CHECKSUMS.path]
        if not self.node.allowed("replication", "checksums"):
            return route.fail(ErrorCode.RATE_LIMITED, "Request is rate limited.")
        asked = request.json(wire.ChecksumsRequest)
        problem = self._region_problem(asked.region_id)
        if problem is not None:
            return route.fail(ErrorCode.NO_PERMISSION, problem)
        total = f"{self.node.registry.checksum:016x}"
        if asked.checksum is not None and asked.checksum.lower() == total:
            return wire.encode(wire.ChecksumsResponse(checksum=total, response_status=_STATUS))
        return await self.node.build_shared(("checksums",), self._checksums, "checksums")

    def _checksums(self) -> Generator[None, None, Pieces]:
        """The ChecksumsResponse with every service's checksum, in steps: the total is as of
        the first step, each service's as of the step that wrote it."""
        registry = self.node.registry
        services = registry.services
        parts = [b'{"checksum":"', f"{registry.checksum:016x}".encode(),
                 b'","responseStatus":', _SUCCESS, b',"services":{']
        keys = list(services)
        comma = b""
        for start in range(0, len(keys), _STEP_SERVICES):
            out = []
            for key in keys[start:start + _STEP_SERVICES]:
                state = services.get(key)
                if state is not None:
                    out += [comma, wire.encode(key), b':"', f"{state.checksum:016x}".encode(),
                            b'"']
                    comma = b","
            parts.append(b"".join(out))
            yield
        parts.append(b"}}")
        return Pieces(parts)

    async def leases(self, request: Request, actor: str) -> bytes | Pieces:
        route = self.routes[LEASES.path]
        node = self.node
        if not node.allowed("replication", "leases"):
            return route.fail(ErrorCode.RATE_LIMITED, "Request is rate limited.")
        asked = request.json(wire.LeasesRequest)
        problem = self._region_problem(asked.region_id)
        if problem is not None:
            return route.fail(ErrorCode.NO_PERMISSION, problem)
        if asked.service_ids is not None and len(asked.service_ids) > _MAX_SERVICES:
            raise BadRequest(f"serviceIds has {len(asked.service_ids)} entries; at most "
                             f"{_MAX_SERVICES} are accepted in one request.")
        ids = asked.service_ids
        key = ("leases", None if ids is None else frozenset(i.lower() for i in ids))
        return await node.build_shared(key, lambda: self._leases(ids), "leases")

    def _leases(self, ids: Iterable[str] | None) -> Generator[None, None, Pieces]:
        """The LeasesResponse of these services (all if None), in steps of _STEP_LEASES."""
        node = self.node
        parts = [b'{"leases":[']
        comma = b""
        for batch in node.registry.lease_batches(ids, _STEP_LEASES):
            now = node.clock.monotonic()
            copies = [lease_copy(lease, now) for _, leases in batch for lease in leases]
            if copies:
                parts += [comma, b",".join(copies)]
                comma = b","
            yield
        parts += [b'],"responseStatus":', _SUCCESS, b"}"]
        return Pieces(parts)

    async def services(self, request: Request, actor: str) -> bytes | Pieces:
        route = self.routes[SERVICES.path]
        node = self.node
        if not node.allowed("replication", "get-services"):
            return route.fail(ErrorCode.RATE_LIMITED, "Request is rate limited.")
        if request.method == "GET":
            region = request.query("regionId")
            if region is None:
                raise BadRequest("regionId is required.")
        else:
            region = request.json(wire.GetServicesRequest).region_id
        if region is None or region.lower() != node.settings.region.lower():
            return route.fail(ErrorCode.NO_PERMISSION, f"regionId is not the same as the "
                              f"registry node. regionId: {'null' if region is None else region}, "
                              f"registry node.regionId: "
                              f"{node.settings.region}")
        return await node.build_shared(("services",), self._services, "services")

    def _services(self) -> Generator[None, None, Pieces]:
        """Every service with its instances (the raw registry), in steps of _STEP_LEASES leases;
        a large service continues across steps."""
        parts = [b'{"responseStatus":', _SUCCESS, b',"services":[']
        open_key: str | None = None
        tail = b""
        for batch in self.node.registry.lease_batches(None, _STEP_LEASES):
            for state, leases in batch:
                instances = b",".join(lease.encoded for lease in leases)
                if state.key == open_key:
                    parts += [b",", instances]
                    continue
                if open_key is not None:
                    parts += [tail, b","]
                parts += [_INSTANCES_OPEN, instances]
                open_key, tail = state.key, _service_tail(state.service_id)
            yield
        if open_key is not None:
            parts.append(tail)
        parts.append(b"]}")
        return Pieces(parts)


def routes(node: Node, access: Access) -> dict[str, Route]:
    return Replication(node, access).routes


_PEER_ONLY: Final = ("Only peers are answered: the cluster secret in `x-artemis-cluster-secret` "
                     "(anyone with `cluster_insecure`; no one on a node without peers), else "
                     "`no-permission`.")
_FROM_PEER: Final = ("Called by peer nodes. As the registry endpoint (each instance checked alike, "
                     "at most max(max_batch, replication_batch) in one request), but accepted "
                     "while the node is starting, checked for region only (not zone), and "
                     "rate-limited by the `replication` limiter. " + _PEER_ONLY)

REGISTER: Final = Endpoint(
    "/api/replication/registry/register.json", POST, "Register instances (from a peer)",
    wire.ReplicatedInstancesRequest, wire.InstancesResponse, PeerWrite.handle, role=Role.PEER,
    description=_FROM_PEER)
HEARTBEAT: Final = Endpoint(
    "/api/replication/registry/heartbeat.json", POST, "Renew leases (from a peer)",
    wire.InstancesRequest, wire.InstancesResponse, PeerWrite.handle, role=Role.PEER,
    description=_FROM_PEER + " An instance the node does not know is registered, so a register "
    "a peer lost heals.")
UNREGISTER: Final = Endpoint(
    "/api/replication/registry/unregister.json", POST, "Unregister instances (from a peer)",
    wire.InstancesRequest, wire.InstancesResponse, PeerWrite.handle, role=Role.PEER,
    description=_FROM_PEER)
SERVICES: Final = Endpoint(
    "/api/replication/registry/services.json", GET_POST,
    "Copy the whole registry (for a starting peer)", wire.GetServicesRequest,
    wire.LookupResponse, Replication.services, role=Role.PEER,
    query=(Query("regionId", {"type": "string"}, "This node's region (required).",
                 required=True), ZONE_QUERY),
    description="Every service with instances, unfiltered. Another region is refused "
    "`no-permission`. " + _PEER_ONLY)
CHECKSUMS: Final = Endpoint(
    "/api/replication/registry/checksums.json", POST, "Compare registry checksums "
    "(anti-entropy)", wire.ChecksumsRequest, wire.ChecksumsResponse, Replication.checksums,
    role=Role.PEER, description="Called by peer nodes. Answers this node's registry checksum "
    "(hex) and, when the caller's `checksum` differs, the checksum of every service by "
    "lower-case service id; `services` is null when the registries are equal. " + _PEER_ONLY)
LEASES: Final = Endpoint(
    "/api/replication/registry/leases.json", POST, "Copy leases (bootstrap and repair)",
    wire.LeasesRequest, wire.LeasesResponse, Replication.leases, role=Role.PEER,
    description="Called by peer nodes. The leases of `serviceIds` (every service when null): "
    "each instance with when it was registered (`createdMs`, epoch ms) and how long ago it was "
    "renewed (`ageMs`), so a copy expires when the original does. " + _PEER_ONLY)
ENDPOINTS: Final = (REGISTER, HEARTBEAT, UNREGISTER, SERVICES, CHECKSUMS, LEASES)
