"""Node, cluster and status endpoints (§4.4, §4.5), `/health`, and the node's admin switch.

A node without peers is a cluster of one: it lists itself. With peers, the cluster answers list
every configured node with its status as last polled (`unknown` until it answers), and the
up-*-nodes answers every node that serves registry (discovery) now.
"""

from __future__ import annotations

import datetime as dt
import hmac
import socket
from collections.abc import Generator
from typing import Any, Final

import msgspec

from artemis import wire
from artemis.core.lease import SafeChecker
from artemis.core.registry import Lease, describe
from artemis.server.cluster import NODE_ID_HEADER
from artemis.server.http import BadRequest, Pieces, Request, Response, Route
from artemis.server.node import Node
from artemis.server.push import PushServer
from artemis.wire import ServiceNode, ServiceNodeStatus, Zone

__all__ = ["routes"]

_SUCCESS: Final = wire.ResponseStatus(error_code="success", message="", status="success")
_sorted: Final = msgspec.json.Encoder(order="sorted")
_LEASE_STEP: Final = 2_000  # leases per step of a leases answer


class NodeStatusSwitch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    status: str


class SelfPreservationSwitch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool
    legacy: bool | None = None  # the legacy leases follow `enabled` unless given


def _stamp(ms: float) -> str:
    """The original's lease time format, in the server's local time zone."""
    moment = dt.datetime.fromtimestamp(ms / 1000).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


class Status:
    def __init__(self, node: Node, push: PushServer | None = None) -> None:
        self.node = node
        self.push = push
        s = node.settings
        self.zone = Zone(region_id=s.region, zone_id=s.zone)
        self.service_node = ServiceNode(url=s.node_url, zone=self.zone)

    # --- node and cluster ----------------------------------------------------------------

    def node_status(self) -> ServiceNodeStatus:
        node = self.node
        state = node.state
        return ServiceNodeStatus(
            allow_discovery_from_other_zone=node.settings.allow_discovery_from_other_zone,
            allow_registry_from_other_zone=node.settings.allow_registry_from_other_zone,
            can_service_discovery=state.serves_discovery if state.status != "starting"
            else state.can_service_discovery,
            can_service_registry=state.serves_registry if state.status != "starting"
            else state.can_service_registry,
            node=self.service_node,
            status=state.status,
        )

    def node_json(self, request: Request) -> Response:
        body = wire.encode(wire.GetClusterNodeStatusResponse(node_status=self.node_status(),
                                                             response_status=_SUCCESS))
        cluster = self.node.cluster
        headers = [] if cluster is None else [(NODE_ID_HEADER, cluster.node_id)]
        return Response(body, headers=headers)

    def peer_statuses(self) -> list[ServiceNodeStatus]:
        """The status of every peer as last polled (flags null while `unknown`)."""
        cluster = self.node.cluster
        if cluster is None:
            return []
        out = []
        for link in cluster.links.values():
            state = link.state
            zone = Zone(region_id=self.zone.region_id, zone_id=link.spec.zone)
            out.append(ServiceNodeStatus(
                allow_discovery_from_other_zone=state.allow_discovery_from_other_zone,
                allow_registry_from_other_zone=state.allow_registry_from_other_zone,
                can_service_discovery=state.can_service_discovery,
                can_service_registry=state.can_service_registry,
                node=ServiceNode(url=link.url, zone=zone),
                status=state.status,
            ))
        return out

    def all_statuses(self) -> list[ServiceNodeStatus]:
        return [self.node_status(), *self.peer_statuses()]

    def cluster_json(self, request: Request) -> bytes:
        if not self.node.allowed("status", "get-cluster"):
            return self.routes["/api/status/cluster.json"].fail("rate-limited",
                                                                 "Request is rate limited.")
        statuses = self.all_statuses()
        return wire.encode(wire.GetClusterStatusResponse(
            node_count=len(statuses), nodes_status=statuses, response_status=_SUCCESS))

    def nodes_json(self, request: Request) -> bytes:
        return _sorted.encode({"nodes": self.all_statuses(), "responseStatus": _SUCCESS})

    def management_json(self, request: Request) -> bytes:
        management = self.node.management
        body: dict[str, Any] = (management.status() if management is not None
                                else {"enabled": False})
        body["responseStatus"] = _SUCCESS
        return _sorted.encode(body)

    def replication_json(self, request: Request) -> bytes:
        cluster = self.node.cluster
        body: dict[str, Any] = {"nodeId": None, "self": self.service_node.url,
                                "bootstrap": {"state": "done", "reason": "no peers"},
                                "cpuSeconds": 0.0, "peers": []}
        if cluster is not None:
            body = cluster.status()
        body["responseStatus"] = _SUCCESS
        return _sorted.encode(body)

    def _up_nodes(self, request: Request, identity: str, registry: bool) -> bytes:
        route = self.routes[f"/api/cluster/{identity}.json"]
        if not self.node.allowed("cluster", identity):
            return route.fail("rate-limited", "Request is rate limited.")
        if request.method == "GET":
            region, zone = request.query("regionId"), request.query("zoneId")
        else:
            asked = request.json(wire.GetServiceNodesRequest)
            region, zone = asked.region_id, asked.zone_id
        status = self.node_status()
        serves = self.node.state.serves_registry if registry else self.node.state.serves_discovery
        other_zone = (status.allow_registry_from_other_zone if registry
                      else status.allow_discovery_from_other_zone)
        if region is not None and region.lower() != (self.zone.region_id or "").lower():
            return route.fail("data-not-found", "No available service nodes.")

        def same_zone(node_zone: str | None) -> bool:
            return zone is None or zone.lower() == (node_zone or "").lower()

        nodes = [self.service_node] if serves and (other_zone or same_zone(
            self.zone.zone_id)) else []
        cluster = self.node.cluster
        if cluster is not None:
            for link in cluster.links.values():
                peer = link.state
                ok = peer.serves_registry if registry else peer.serves_discovery
                allows = (peer.allow_registry_from_other_zone if registry
                          else peer.allow_discovery_from_other_zone)
                if ok and (allows or same_zone(link.spec.zone)):
                    nodes.append(ServiceNode(url=link.url, zone=Zone(
                        region_id=self.zone.region_id, zone_id=link.spec.zone)))
        if not nodes:
            return route.fail("data-not-found", "No available service nodes.")
        return wire.encode(wire.GetServiceNodesResponse(nodes=nodes, response_status=_SUCCESS))

    def up_registry_nodes(self, request: Request) -> bytes:
        return self._up_nodes(request, "up-registry-nodes", registry=True)

    def up_discovery_nodes(self, request: Request) -> bytes:
        return self._up_nodes(request, "up-discovery-nodes", registry=False)

    def health(self, request: Request) -> Response:
        state = self.node.state
        ok = state.serves_registry and state.serves_discovery
        body = _sorted.encode({"status": state.status, "instances":
                               self.node.registry.instance_count})
        return Response(body, status=200 if ok else 503)

    # --- leases --------------------------------------------------------------------------

    async def _leases(self, request: Request, legacy: bool) -> bytes | Pieces:
        identity = "get-legacy-leases" if legacy else "get-leases"
        path = "/api/status/legacy-leases.json" if legacy else "/api/status/leases.json"
        if not self.node.allowed("status", identity):
            return self.routes[path].fail("rate-limited", "Request is rate limited.")
        if request.method == "GET":
            wanted = [s for v in request.query_all("appIds") for s in v.split(",") if s]
        else:
            wanted = request.json(wire.LeasesStatusRequest).service_ids or []
        key = (identity, frozenset(s.lower() for s in wanted) if wanted else None)
        return await self.node.build_shared(
            key, lambda: self._lease_statuses(wanted or None, legacy), identity)

    def _lease_statuses(self, wanted: list[str] | None, legacy: bool
                        ) -> Generator[None, None, Pieces]:
        """The leases answer, built in steps of a few thousand leases (the event loop runs
        between them): the counters as of the first step, each lease as of its step; services
        in registry order."""
        node = self.node
        registry = node.registry
        checker: SafeChecker = registry.legacy_safe if legacy else registry.safe
        now = node.clock.monotonic()
        wall = node.clock.wall_ms()
        status = checker.status(now)
        head = _sorted.encode({
            "isSafe": status.is_safe,
            "isSafeCheckEnabled": status.enabled,
            "leaseCount": registry.legacy_lease_count if legacy else registry.lease_count,
            "leaseUpdateCountLastTimeWindow": status.count_last_window,
            "leaseUpdateMaxCount": status.max_count,
            "leaseUpdateMaxCountLastUpdateTime": int(
                wall - (now - status.max_count_updated_at) * 1000) if status.max_count else 0,
        })
        parts = [head[:-1], b',"leases":{']
        open_key: str | None = None
        for batch in registry.lease_batches(wanted, _LEASE_STEP):
            now = node.clock.monotonic()
            wall = node.clock.wall_ms()

            def wall_of(mono: float, now: float = now, wall: int = wall) -> float:
                return wall - (now - mono) * 1000

            for state, leases in batch:
                entries = [self._lease_status(lease, wall_of) for lease in leases
                           if lease.legacy == legacy]
                if not entries:
                    continue
                if state.key != open_key:
                    parts.append(b"]," if open_key is not None else b"")
                    parts += [wire.encode(state.service_id), b":["]
                    open_key = state.key
                else:
                    parts.append(b",")
                parts.append(_sorted.encode(entries)[1:-1])
            yield
        parts += [b"]" if open_key is not None else b"", b'},"responseStatus":',
                  _sorted.encode(_SUCCESS), b"}"]
        return Pieces(parts)

    @staticmethod
    def _lease_status(lease: Lease, wall_of: Any) -> wire.LeaseStatus:
        return wire.LeaseStatus(
            creation_time=_stamp(lease.created_ms),
            evition_time=_stamp(0),
            instance=describe(lease.instance),
            renewal_time=_stamp(wall_of(lease.renewed)),
            ttl=int(lease.ttl * 1000),
        )

    async def leases(self, request: Request) -> bytes | Pieces:
        return await self._leases(request, legacy=False)

    async def legacy_leases(self, request: Request) -> bytes | Pieces:
        return await self._leases(request, legacy=True)

    # --- configuration and deployment ----------------------------------------------------

    def config_json(self, request: Request) -> bytes:
        if not self.node.allowed("status", "get-config"):
            return self.routes["/api/status/config.json"].fail("rate-limited",
                                                                "Request is rate limited.")
        properties = {k: _text(v) for k, v in self.node.settings.public().items()}
        return _sorted.encode({"properties": properties, "responseStatus": _SUCCESS,
                               "sources": {"defaults": 0, "config-file": 1, "environment": 2,
                                           "flags": 3}})

    def deployment_json(self, request: Request) -> bytes:
        if not self.node.allowed("status", "get-deployment"):
            return self.routes["/api/status/deployment.json"].fail("rate-limited",
                                                                    "Request is rate limited.")
        s = self.node.settings
        return _sorted.encode({
            "appId": "artemis", "ip": s.host, "machineName": _hostname(), "path": s.context_path,
            "port": s.port, "properties": {}, "protocol": "http", "regionId": s.region,
            "responseStatus": _SUCCESS, "sources": {}, "zoneId": s.zone,
        })

    def runtime_json(self, request: Request) -> bytes:
        node = self.node
        versions = node.versions
        return _sorted.encode({
            "changeLogSize": len(node.registry.log),
            "connections": _connections(node),
            "evictedTotal": node.registry.evicted_total,
            "instances": node.registry.instance_count,
            "loopLag": node.lag.summary(_seconds(request.query("window"))),
            "longestStepMs": node.steps.summary(),
            "pauses": _pauses(node),
            "push": self.push.stats() if self.push is not None else {},
            "rateLimited": {name: limiter.rejected for name, limiter in node.limiters.items()},
            "responseStatus": _SUCCESS,
            "revision": node.registry.revision,
            "services": len(node.registry.services),
            "snapshotVersions": versions.versions,
            "snapshotsTaken": node.snapshots_taken,
            "uptimeSeconds": round(node.clock.monotonic() - node.started_mono, 3),
        })

    def connections(self, request: Request) -> bytes:
        """The original's WebSocket session counts, as strings (§4.5)."""
        counts = self.push.counts() if self.push is not None else {"registry": 0,
                                                                   "discovery": 0}
        return _sorted.encode({k: str(v) for k, v in counts.items()})

    # --- admin ---------------------------------------------------------------------------

    def _authorized(self, request: Request) -> bool:
        token = self.node.settings.admin_token
        if not token:
            host = request.client.rsplit(":", 1)[0].strip("[]")
            return host in ("127.0.0.1", "::1", "localhost", "")
        given = request.header("authorization") or ""
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                                  token.encode())

    def node_status_switch(self, request: Request) -> bytes:
        route = self.routes["/api/admin/node-status.json"]
        if request.method == "POST":
            if not self._authorized(request):
                return route.fail("no-permission", "this switch needs the admin bearer token "
                                  "(or, with no token configured, a call from 127.0.0.1)")
            try:
                switch = msgspec.json.decode(request.body or b"{}", type=NodeStatusSwitch)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise BadRequest(f"request body: {exc}") from None
            except RecursionError:
                raise BadRequest("request body: JSON is nested too deeply") from None
            if switch.status not in ("up", "down", "auto"):
                raise BadRequest(f"status must be up, down or auto, got {switch.status[:64]!r}")
            self.node.force(switch.status)
        return wire.encode(wire.GetClusterNodeStatusResponse(node_status=self.node_status(),
                                                             response_status=_SUCCESS))

    def self_preservation(self, request: Request) -> bytes:
        route = self.routes["/api/admin/self-preservation.json"]
        registry = self.node.registry
        if request.method == "POST":
            if not self._authorized(request):
                return route.fail("no-permission", "this switch needs the admin bearer token "
                                  "(or, with no token configured, a call from 127.0.0.1)")
            try:
                switch = msgspec.json.decode(request.body or b"{}", type=SelfPreservationSwitch)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise BadRequest(f"request body: {exc}") from None
            except RecursionError:
                raise BadRequest("request body: JSON is nested too deeply") from None
            registry.safe.set_enabled(switch.enabled)
            registry.legacy_safe.set_enabled(
                switch.enabled if switch.legacy is None else switch.legacy)
        return _sorted.encode({"enabled": registry.safe.enabled,
                               "isSafe": registry.safe.is_safe,
                               "legacyEnabled": registry.legacy_safe.enabled,
                               "legacyIsSafe": registry.legacy_safe.is_safe,
                               "responseStatus": _SUCCESS})

    # --- table ---------------------------------------------------------------------------

    @property
    def routes(self) -> dict[str, Route]:
        return self._routes

    def build(self) -> dict[str, Route]:
        both = frozenset({"GET", "POST"})
        self._routes = {
            "/api/status/node.json": Route(both, handler=self.node_json,
                                           null_fields={"nodeStatus": None}),
            "/api/status/cluster.json": Route(both, handler=self.cluster_json,
                                              null_fields={"nodeCount": 0, "nodesStatus": None}),
            "/api/status/leases.json": Route(both, async_handler=self.leases,
                                             null_fields=_LEASE_NULLS),
            "/api/status/legacy-leases.json": Route(both, async_handler=self.legacy_leases,
                                                    null_fields=_LEASE_NULLS),
            "/api/status/config.json": Route(both, handler=self.config_json,
                                             null_fields={"properties": None, "sources": None}),
            "/api/status/deployment.json": Route(both, handler=self.deployment_json,
                                                 null_fields=_DEPLOYMENT_NULLS),
            "/api/status/runtime.json": Route(frozenset({"GET"}), handler=self.runtime_json),
            "/api/cluster/nodes.json": Route(both, handler=self.nodes_json,
                                             null_fields={"nodes": None}),
            "/api/cluster/up-registry-nodes.json": Route(both, handler=self.up_registry_nodes,
                                                         null_fields={"nodes": None}),
            "/api/cluster/up-discovery-nodes.json": Route(both, handler=self.up_discovery_nodes,
                                                          null_fields={"nodes": None}),
            "/api/status/message/connections.json": Route(frozenset({"GET"}),
                                                          handler=self.connections),
            "/api/status/replication.json": Route(frozenset({"GET"}),
                                                  handler=self.replication_json),
            "/api/status/management.json": Route(frozenset({"GET"}),
                                                 handler=self.management_json),
            "/api/admin/node-status.json": Route(both, handler=self.node_status_switch,
                                                 null_fields={"nodeStatus": None}),
            "/api/admin/self-preservation.json": Route(
                both, handler=self.self_preservation,
                null_fields={"enabled": None, "isSafe": None, "legacyEnabled": None,
                             "legacyIsSafe": None}),
            "/health": Route(frozenset({"GET", "HEAD"}), handler=self.health, reads_body=False),
        }
        return self._routes


_LEASE_NULLS: Final = {
    "isSafe": False, "isSafeCheckEnabled": False, "leaseCount": 0,
    "leaseUpdateCountLastTimeWindow": 0, "leaseUpdateMaxCount": 0,
    "leaseUpdateMaxCountLastUpdateTime": 0, "leases": None,
}


_DEPLOYMENT_NULLS: Final = {
    "appId": None, "ip": None, "machineName": None, "path": None, "port": 0, "properties": None,
    "protocol": None, "regionId": None, "sources": None, "zoneId": None,
}


def _connections(node: Node) -> dict[str, int]:
    """Client connections at the last count, and those closed over the per-client limit."""
    stats = node.connections
    return {"open": stats.open, "clients": stats.clients, "busiestClient": stats.busiest_client,
            "closedOverLimit": stats.closed_over_limit}


def _pauses(node: Node) -> dict[str, Any]:
    """The node's own pauses: how many, how long in all, and the last one (`at`: epoch ms when
    it was found)."""
    pauses = node.registry.pauses
    last = pauses.last
    found = None
    if last is not None:
        ago = node.clock.monotonic() - (last.started + last.seconds)
        found = {"at": int(node.clock.wall_ms() - ago * 1000), "leases": last.leases,
                 "seconds": round(last.seconds, 3)}
    return {"count": pauses.count, "last": found, "seconds": round(pauses.seconds_total, 3),
            "thresholdSeconds": pauses.threshold}


def _seconds(text: str | None) -> float | None:
    """A `window` query parameter in seconds; absent or not a positive number means all."""
    try:
        value = float(text) if text else None
    except ValueError:
        raise BadRequest(f"window must be a number of seconds, got {text!r}") from None
    return value if value is not None and value > 0 else None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _hostname() -> str:
    return socket.gethostname()


def routes(node: Node, push: PushServer | None = None) -> dict[str, Route]:
    return Status(node, push).build()

