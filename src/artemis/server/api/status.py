"""Node, cluster and status endpoints (§4.4, §4.5), `/health`, and the node's admin switch.

A node without peers is a cluster of one: it lists itself. With peers, the cluster answers list
every configured node with its status as last polled (`unknown` until it answers), and the
up-*-nodes answers every node that serves registry (discovery) now.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Generator
from typing import Any, Final

import msgspec

from artemis import wire
from artemis.core.lease import SafeChecker
from artemis.core.registry import Lease, describe
from artemis.server.api.endpoint import (
    GET,
    GET_POST,
    REGION_QUERY,
    ZONE_QUERY,
    Access,
    Endpoint,
    Query,
    Role,
    bind,
)
from artemis.server.api.registry import client_address
from artemis.server.cluster import NODE_ID_HEADER, Cluster, alone_status
from artemis.server.http import BadRequest, Pieces, Request, Response, Route
from artemis.server.management import Management, unconfigured_status
from artemis.server.node import Node
from artemis.server.observability.metrics import CONTENT_TYPE, render
from artemis.server.push import PushServer
from artemis.wire import ErrorCode, ServiceNode, ServiceNodeStatus, Zone

__all__ = ["ENDPOINTS", "METRICS", "metrics_route", "routes"]

_SUCCESS: Final = wire.ResponseStatus(error_code=ErrorCode.SUCCESS, message="",
                                      status="success")
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
    def __init__(self, node: Node, push: PushServer | None = None,
                 cluster: Cluster | None = None, management: Management | None = None) -> None:
        self.node = node
        self.push = push
        self.cluster = cluster  # None on a node without peers
        self.management = management  # None on a node without a database
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
        return Response(body, headers=[(NODE_ID_HEADER, self.node.node_id)])

    def peer_statuses(self) -> list[ServiceNodeStatus]:
        """The status of every peer as last polled (flags null while `unknown`)."""
        cluster = self.cluster
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
        if not self.node.allowed("status", "get-cluster", client_address(request.client)):
            return self.routes[CLUSTER.path].fail(ErrorCode.RATE_LIMITED,
                                                  "Request is rate limited.")
        statuses = self.all_statuses()
        return wire.encode(wire.GetClusterStatusResponse(
            node_count=len(statuses), nodes_status=statuses, response_status=_SUCCESS))

    def nodes_json(self, request: Request) -> bytes:
        return _sorted.encode({"nodes": self.all_statuses(), "responseStatus": _SUCCESS})

    def management_json(self, request: Request) -> bytes:
        management = self.management
        body: dict[str, Any] = (management.status() if management is not None
                                else unconfigured_status(self.node))
        body["responseStatus"] = _SUCCESS
        return _sorted.encode(body)

    def replication_json(self, request: Request) -> bytes:
        cluster = self.cluster
        body = cluster.status() if cluster is not None else alone_status(self.node)
        body["responseStatus"] = _SUCCESS
        return _sorted.encode(body)

    def _up_nodes(self, request: Request, identity: str, registry: bool) -> bytes:
        route = self.routes[f"/api/cluster/{identity}.json"]
        if not self.node.allowed("cluster", identity, client_address(request.client)):
            return route.fail(ErrorCode.RATE_LIMITED, "Request is rate limited.")
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
            return route.fail(ErrorCode.DATA_NOT_FOUND, "No available service nodes.")

        def same_zone(node_zone: str | None) -> bool:
            return zone is None or zone.lower() == (node_zone or "").lower()

        nodes = [self.service_node] if serves and (other_zone or same_zone(
            self.zone.zone_id)) else []
        cluster = self.cluster
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
            return route.fail(ErrorCode.DATA_NOT_FOUND, "No available service nodes.")
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
        if not self.node.allowed("status", identity, client_address(request.client)):
            return self.routes[path].fail(ErrorCode.RATE_LIMITED, "Request is rate limited.")
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

    def config_json(self, request: Request, actor: str) -> bytes:
        if not self.node.allowed("status", "get-config", client_address(request.client)):
            return self.routes[CONFIG.path].fail(ErrorCode.RATE_LIMITED,
                                                 "Request is rate limited.")
        properties = {k: _text(v) for k, v in self.node.settings.public().items()}
        return _sorted.encode({"properties": properties, "responseStatus": _SUCCESS,
                               "sources": {"defaults": 0, "config-file": 1, "environment": 2,
                                           "flags": 3}})

    def deployment_json(self, request: Request) -> bytes:
        if not self.node.allowed("status", "get-deployment",
                                 client_address(request.client)):
            return self.routes[DEPLOYMENT.path].fail(ErrorCode.RATE_LIMITED,
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
            "collector": node.collector.summary() if node.collector is not None else {},
            "connections": _connections(node),
            "evictedTotal": node.registry.evicted_total,
            "heldBatches": _held_batches(node),
            "instances": node.registry.instance_count,
            "loopLag": node.lag.summary(_seconds(request.query("window"))),
            "longestStepMs": node.steps.summary(),
            "pauses": _pauses(node),
            "push": self.push.stats() if self.push is not None else {},
            "rateLimited": {**{name: limiter.rejected for name, limiter in node.limiters.items()},
                            **{f"client.{name}": limiter.rejected
                               for name, limiter in node.client_limiters.items()}},
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

    # --- admin (the POST forms need the admin role) -------------------------------------

    def node_status_switch(self, request: Request, actor: str) -> bytes:
        if request.method == "POST":
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

    def self_preservation(self, request: Request, actor: str) -> bytes:
        registry = self.node.registry
        if request.method == "POST":
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

    def build(self, access: Access) -> dict[str, Route]:
        self._routes = {endpoint.path: bind(endpoint, self, access) for endpoint in ENDPOINTS}
        return self._routes


def _connections(node: Node) -> dict[str, int]:
    """Client connections at the last count, and those closed over the per-client limit."""
    stats = node.connections
    return {"open": stats.open, "clients": stats.clients, "busiestClient": stats.busiest_client,
            "closedOverLimit": stats.closed_over_limit}


def _held_batches(node: Node) -> dict[str, int]:
    """Clients' large heartbeats remembered to be renewed from their text (core/renewal.py)."""
    batches = node.registry.held_batches
    return {"batches": len(batches), "forgotten": batches.forgotten, "hits": batches.hits,
            "leases": batches.leases, "made": batches.made}


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


def routes(node: Node, push: PushServer | None = None, access: Access | None = None,
           cluster: Cluster | None = None, management: Management | None = None
           ) -> dict[str, Route]:
    return Status(node, push, cluster, management).build(access or Access(node.settings))


class Scrape:
    """The Prometheus text of a node's collectors (see observability.metrics)."""

    def __init__(self, collectors: Any) -> None:
        self.collectors = collectors

    def scrape(self, request: Request) -> Response:
        return Response(render(self.collectors), content_type=CONTENT_TYPE)


def metrics_route(collectors: Any) -> Route:
    """GET /metrics, serving `collectors` (when metrics are on)."""
    return bind(METRICS, Scrape(collectors))


_APP_IDS: Final = Query("appIds", {"type": "array", "items": {"type": "string"}},
                        "Service ids to narrow the answer to, comma-separated (the parameter may "
                        "also be repeated); none means every service.", explode=False)
_UP_NODES: Final = ("The nodes (this one) serving {what} for the region and zone asked; "
                    "`data-not-found` when none.")

NODE: Final = Endpoint("/api/status/node.json", GET_POST, "This node's status", None,
                       wire.GetClusterNodeStatusResponse, Status.node_json)
CLUSTER: Final = Endpoint("/api/status/cluster.json", GET_POST, "The cluster's status", None,
                          wire.GetClusterStatusResponse, Status.cluster_json)
LEASES: Final = Endpoint(
    "/api/status/leases.json", GET_POST, "Self-preservation state and leases",
    wire.LeasesStatusRequest, wire.LeasesStatusResponse, Status.leases, query=(_APP_IDS,),
    description="`serviceIds` (POST) or `appIds` (GET) narrows it to some services.")
LEGACY_LEASES: Final = Endpoint(
    "/api/status/legacy-leases.json", GET_POST, "Self-preservation state and legacy leases",
    wire.LeasesStatusRequest, wire.LeasesStatusResponse, Status.legacy_leases,
    query=(_APP_IDS,),
    description="The same as leases.json, for the `java_registry` (90 s) leases.")
CONFIG: Final = Endpoint("/api/status/config.json", GET_POST, "The node's settings", None,
                         wire.ConfigResponse, Status.config_json, role=Role.READ,
                         description="Every setting as text, secrets masked; needs a bearer "
                         "token with the read role (the original serves it to anyone).")
DEPLOYMENT: Final = Endpoint(
    "/api/status/deployment.json", GET_POST, "Where the node runs", None,
    wire.DeploymentResponse, Status.deployment_json,
    description="Region, zone, address, port and context path of the node.")
RUNTIME: Final = Endpoint(
    "/api/status/runtime.json", GET, "The node's runtime counters", None, wire.RuntimeResponse,
    Status.runtime_json, bare_errors=True,
    query=(Query("window", {"type": "number"},
                 "Seconds of event-loop lag samples to summarize; none (or not positive) means "
                 "every sample kept."),),
    description="Instances, services, revision, snapshot versions, evictions, rate-limit "
    "refusals, push sessions, event-loop lag.")
NODES: Final = Endpoint("/api/cluster/nodes.json", GET_POST, "The cluster's nodes", None,
                        wire.GetClusterNodesResponse, Status.nodes_json)
UP_REGISTRY_NODES: Final = Endpoint(
    "/api/cluster/up-registry-nodes.json", GET_POST, "Nodes serving registry",
    wire.GetServiceNodesRequest, wire.GetServiceNodesResponse, Status.up_registry_nodes,
    query=(REGION_QUERY, ZONE_QUERY), description=_UP_NODES.format(what="registry"))
UP_DISCOVERY_NODES: Final = Endpoint(
    "/api/cluster/up-discovery-nodes.json", GET_POST, "Nodes serving discovery",
    wire.GetServiceNodesRequest, wire.GetServiceNodesResponse, Status.up_discovery_nodes,
    query=(REGION_QUERY, ZONE_QUERY), description=_UP_NODES.format(what="discovery"))
CONNECTIONS: Final = Endpoint(
    "/api/status/message/connections.json", GET, "WebSocket session counts", None,
    wire.ConnectionsResponse, Status.connections, bare_errors=True,
    description="As the original gives them: counts as strings.")
REPLICATION: Final = Endpoint(
    "/api/status/replication.json", GET, "Bootstrap, replication and repair, per peer", None,
    wire.ReplicationStatusResponse, Status.replication_json, bare_errors=True,
    description="For each peer: its polled status, replication queue depth, writes sent, "
    "coalesced, retried, dropped (overflow, expired, failed), skipped while it did not answer, "
    "the replication lag over the last minute, and anti-entropy rounds and repairs; the "
    "bootstrap's outcome; CPU seconds spent on all of it.")
MANAGEMENT: Final = Endpoint(
    "/api/status/management.json", GET, "Management data on this node", None, dict[str, Any],
    Status.management_json,
    description="Whether a database is configured and answers, the version of the data "
    "applied, how many instances, servers and zones are pulled out and how many registered "
    "instances that hides.")
NODE_STATUS_SWITCH: Final = Endpoint(
    "/api/admin/node-status.json", GET_POST, "Node status switch", NodeStatusSwitch,
    wire.GetClusterNodeStatusResponse, Status.node_status_switch, role=Role.ADMIN,
    guarded=frozenset({"POST"}),
    description="GET gives this node's status; POST forces it: `up` serves at once, `down` "
    "serves nothing (registry and discovery answer `service-unavailable`), `auto` starts a node "
    "that is down again (in a cluster it bootstraps first). Admin bearer token, or a call from "
    "127.0.0.1 when none is set.")
SELF_PRESERVATION_SWITCH: Final = Endpoint(
    "/api/admin/self-preservation.json", GET_POST, "Self-preservation switch",
    SelfPreservationSwitch, wire.SelfPreservationResponse, Status.self_preservation,
    role=Role.ADMIN, guarded=frozenset({"POST"}),
    description="GET gives the state; POST switches it (the admin bearer token, or a call from "
    "127.0.0.1 when none is set; else `no-permission`). `legacy` follows `enabled` unless "
    "given.")
HEALTH: Final = Endpoint(
    "/health", frozenset({"GET", "HEAD"}), "Health", None, wire.HealthResponse, Status.health,
    reads_body=False, bare_errors=True,
    description="200 when the node serves registry and discovery, 503 otherwise.",
    statuses={503: "The node does not serve registry and discovery (starting, or down)"})
METRICS: Final = Endpoint(
    "/metrics", GET, "Prometheus metrics", None, str, Scrape.scrape, content_type=CONTENT_TYPE,
    reads_body=False,
    description="Requests and latency per endpoint and error code, and the node's state, in the "
    "Prometheus text format (when metrics are on).")
ENDPOINTS: Final = (NODE, CLUSTER, LEASES, LEGACY_LEASES, CONFIG, DEPLOYMENT, RUNTIME, NODES,
                    UP_REGISTRY_NODES, UP_DISCOVERY_NODES, CONNECTIONS, REPLICATION, MANAGEMENT,
                    NODE_STATUS_SWITCH, SELF_PRESERVATION_SWITCH, HEALTH)

