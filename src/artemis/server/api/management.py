"""Management endpoints: pull-out and pull-in of instances, servers and zones, and the audit log
(§4.6, §4.8, §4.10).

Order of checks, for every endpoint: the management database is configured (else
`service-unavailable`), the caller's bearer token has the role (`write` for writes, `read` for
reads unless reads are open; else `no-permission`), the database answered the node's last look
(else `service-unavailable`: nothing is read or written on data that may be stale), the body's
shape and values (`bad-request`), the node is up (writes; else `service-unavailable`), then the
database call itself. Reads of operations answer from the data the node applied, like the
original's caches; audit-log reads go to the database.

Keys are matched lower-case; a write is applied on this node before it answers and on every other
node within `management_poll_interval`; there is no sleep after a write.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any, Final

import msgspec

from artemis import wire
from artemis.core.node_status import UP
from artemis.core.registry import ServiceState
from artemis.server.api.endpoint import (
    GET_POST,
    POST,
    REGION_QUERY,
    ZONE_QUERY,
    Access,
    Call,
    Endpoint,
    Role,
    bind,
)
from artemis.server.http import BadRequest, Request, Route, status_bytes
from artemis.server.management import Management
from artemis.server.node import Node
from artemis.server.store import StoreError, StoreUnavailable, StoreValueError, limits
from artemis.wire import ErrorCode

__all__ = ["ENDPOINTS", "ManagementApi", "routes"]

BASE: Final = "/api/management"
_SUCCESS: Final = wire.ResponseStatus(error_code=ErrorCode.SUCCESS, message="",
                                      status="success")
_OK_BODY: Final = b'{"responseStatus":' + status_bytes(ErrorCode.SUCCESS, "", "success") + b"}"
_MAX_ID: Final = limits.MAX_ID
_MAX_NAME: Final = limits.MAX_NAME
_MAX_REASON: Final = limits.MAX_REASON
_MAX_EXTENSIONS: Final = limits.MAX_EXTENSIONS
_MAX_ZONE_BATCH: Final = 1000
_MAX_OFFSET: Final = limits.MAX_OFFSET


class NodeNotUp(Exception):
    """A write reached a node that is not up."""


class ManagementApi:
    """The management endpoints, and the gate of every management endpoint (groups' too): the
    database configured before the role is checked, answering after it."""

    def __init__(self, node: Node, management: Management | None, access: Access) -> None:
        self.node = node
        self._management = management  # None on a node without a database: all refused
        self.access = access
        self.routes: dict[str, Route] = {}
        self.add(ENDPOINTS, self)

    def add(self, endpoints: tuple[Endpoint, ...], api: object) -> None:
        """Serve `endpoints` with `api`'s handlers, behind this gate."""
        for endpoint in endpoints:
            self.routes[endpoint.path] = bind(endpoint, api, self.access, self)

    # --- checks --------------------------------------------------------------------------

    @property
    def management(self) -> Management:
        """The node's management; handlers reach it only once `closed()` let a call in."""
        if self._management is None:
            raise RuntimeError("management is not configured on this node (no database)")
        return self._management

    def closed(self) -> tuple[str, str] | None:
        if self._management is None:
            return (ErrorCode.SERVICE_UNAVAILABLE,
                    "management is not configured on this node (no database)")
        return None

    async def run(self, route: Route, call: Call, request: Request, actor: str) -> bytes:
        if not self.management.available:
            return route.fail(ErrorCode.SERVICE_UNAVAILABLE, "the management database does not "
                              "answer; discovery goes on with the last data loaded")
        try:
            answer: bytes = await call(request, actor)
        except StoreValueError as exc:  # a value the database cannot hold (NUL, ...)
            raise BadRequest(str(exc)) from None
        except NodeNotUp as exc:
            return route.fail(ErrorCode.SERVICE_UNAVAILABLE, str(exc))
        except StoreUnavailable as exc:
            return route.fail(ErrorCode.SERVICE_UNAVAILABLE, f"the management database does "
                              f"not answer: {exc}")
        except StoreError as exc:
            return route.fail(ErrorCode.INTERNAL_SERVICE_ERROR, f"the management database "
                              f"failed: {exc}")
        return answer

    def require_up(self) -> None:
        """Writes need the node up (checked once the body is known to be valid)."""
        if self.node.state.status != UP:
            raise NodeNotUp(f"Serivce is not in up state. Current status: "
                            f"{self.node.state.status}")

    def region(self, region: str | None) -> str:
        if region is None or not region.strip():
            raise BadRequest("regionId is null or empty.")
        if region.strip().lower() != self.node.settings.region.lower():
            raise BadRequest(f"regionId {region.strip()[:64]!r} is not this node's region "
                             f"{self.node.settings.region!r}.")
        return region.strip().lower()

    @staticmethod
    def text(value: str | None, name: str, limit: int = _MAX_ID) -> str:
        if value is None or not value.strip():
            raise BadRequest(f"{name} is null or empty.")
        text = value.strip()
        if len(text) > limit:
            raise BadRequest(f"{name} is longer than {limit} characters.")
        if not text.isprintable():
            raise BadRequest(f"{name} contains control characters.")
        return text

    @staticmethod
    def optional(value: str | None, name: str, limit: int) -> str | None:
        if value is None:
            return None
        if len(value) > limit:
            raise BadRequest(f"{name} is longer than {limit} characters.")
        return value

    def context(self, body: Any) -> dict[str, Any]:
        """operatorId, reason and extensions of a write (the original's OperationContext)."""
        extensions = self.optional(body.extensions, "extensions", _MAX_EXTENSIONS)
        if extensions is not None:
            try:
                json.loads(extensions)
            except ValueError:
                raise BadRequest("extensions is not JSON text.") from None
        return {"operator_id": self.text(body.operator_id, "operatorId", _MAX_NAME),
                "reason": self.optional(body.reason, "reason", _MAX_REASON),
                "extensions": extensions or "{}"}

    # --- instances and servers -----------------------------------------------------------

    async def operate_instance(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.OperateInstanceRequest)
        key = body.instance_key
        if key is None:
            raise BadRequest("instanceKey is null.")
        region = self.region(key.region_id)
        service = self.text(key.service_id, "serviceId").lower()
        instance = self.text(key.instance_id, "instanceId").lower()
        operation = self.text(body.operation, "operation", _MAX_NAME)
        context = self.context(body)
        self.require_up()
        store = self.management.store
        await self.management.traced("operate-instance", store.operate_instance(
            region, service, instance, operation, body.operation_complete, actor=actor,
            now_ms=self.node.clock.wall_ms(), **context))
        self.management.wrote("instance", (service, instance), operation,
                              body.operation_complete, await store.version())
        return _OK_BODY

    async def operate_server(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.OperateServerRequest)
        key = body.server_key
        if key is None:
            raise BadRequest("serverKey is null.")
        region = self.region(key.region_id)
        server = self.text(key.server_id, "serverId").lower()
        operation = self.text(body.operation, "operation", _MAX_NAME)
        context = self.context(body)
        self.require_up()
        store = self.management.store
        await self.management.traced("operate-server", store.operate_server(
            region, server, operation, body.operation_complete, actor=actor,
            now_ms=self.node.clock.wall_ms(), **context))
        self.management.wrote("server", server, operation, body.operation_complete,
                              await store.version())
        return _OK_BODY

    async def instance_operations(self, request: Request, actor: str) -> bytes:
        key = request.json(wire.InstanceKeyRequest).instance_key
        if key is None:
            raise BadRequest("instanceKey is null.")
        region = self.region(key.region_id)
        service = self.text(key.service_id, "serviceId").lower()
        instance = self.text(key.instance_id, "instanceId").lower()
        operations = self.management.operations.instances.get((service, instance))
        found = None if not operations else wire.InstanceOperations(
            instance_key=wire.InstanceKey(instance_id=instance, region_id=region,
                                          service_id=service), operations=operations)
        return wire.encode(wire.InstanceOperationsResponse(operations=found,
                                                           response_status=_SUCCESS))

    async def server_operations(self, request: Request, actor: str) -> bytes:
        key = request.json(wire.ServerKeyRequest).server_key
        if key is None:
            raise BadRequest("serverKey is null.")
        region = self.region(key.region_id)
        server = self.text(key.server_id, "serverId").lower()
        operations = self.management.operations.servers.get(server)
        found = None if not operations else wire.ServerOperations(
            operations=operations, server_key=wire.ServerKey(region_id=region, server_id=server))
        return wire.encode(wire.ServerOperationsResponse(operations=found,
                                                         response_status=_SUCCESS))

    def other_region(self, request: Request) -> bool:
        """Whether the optional regionId filter of the all-* reads names another region (which
        lists nothing)."""
        region = (request.query("regionId") if request.method == "GET"
                  else request.json(wire.RegionRequest).region_id)
        return bool(region and region.strip().lower() != self.node.settings.region.lower())

    async def all_instance_operations(self, request: Request, actor: str) -> bytes:
        other = self.other_region(request)
        region = self.node.settings.region.lower()
        items = [] if other else [
            wire.InstanceOperations(instance_key=wire.InstanceKey(
                instance_id=i, region_id=region, service_id=s), operations=ops)
            for (s, i), ops in sorted(self.management.operations.instances.items())]
        return wire.encode(wire.AllInstanceOperationsResponse(all_instance_operations=items,
                                                             response_status=_SUCCESS))

    async def all_server_operations(self, request: Request, actor: str) -> bytes:
        other = self.other_region(request)
        region = self.node.settings.region.lower()
        items = [] if other else [
            wire.ServerOperations(operations=ops, server_key=wire.ServerKey(
                region_id=region, server_id=server))
            for server, ops in sorted(self.management.operations.servers.items())]
        return wire.encode(wire.AllServerOperationsResponse(all_server_operations=items,
                                                           response_status=_SUCCESS))

    async def instance_down(self, request: Request, actor: str) -> bytes:
        instance = request.json(wire.InstanceDownRequest).instance
        if instance is None:
            raise BadRequest("instance is null.")
        self.region(instance.region_id)
        down = self.management.view.hides(
            self.text(instance.service_id, "serviceId").lower(),
            self.text(instance.instance_id, "instanceId").lower(),
            (instance.ip or "").lower(), (instance.zone_id or "").lower(),
            (instance.group_id or "").strip().lower())
        return wire.encode(wire.DownResponse(down=down, response_status=_SUCCESS))

    async def server_down(self, request: Request, actor: str) -> bytes:
        key = request.json(wire.ServerKeyRequest).server_key
        if key is None:
            raise BadRequest("serverKey is null.")
        self.region(key.region_id)
        down = self.text(key.server_id, "serverId").lower() in self.management.view.servers
        return wire.encode(wire.DownResponse(down=down, response_status=_SUCCESS))

    # --- the management views of the registry ------------------------------------------

    def _managed(self, state: ServiceState) -> wire.Service:
        """A service as operators see it: every instance, `status` down when pulled out (up
        otherwise), with its lease's creationTime, renewalTime and ttl (ms, as text) added to
        its metadata."""
        clock = self.node.clock
        now, wall = clock.monotonic(), clock.wall_ms()
        instances = []
        for lease in state.leases.values():
            instance = lease.instance
            metadata = {**(instance.metadata or {}), "creationTime": str(lease.created_ms),
                        "renewalTime": str(int(wall - (now - lease.renewed) * 1000)),
                        "ttl": str(int(lease.ttl * 1000))}
            instances.append(msgspec.structs.replace(
                instance, status="down" if lease.hidden else "up", metadata=metadata))
        view = self.management.view
        key = state.key
        logic = [msgspec.structs.replace(i, status="down" if view.hides(
            key, (i.instance_id or "").lower(), (i.ip or "").lower(), (i.zone_id or "").lower(),
            (i.group_id or "").strip().lower()) else "up") for i in view.logic.get(key, ())]
        rules = msgspec.json.decode(view.rules_of(key), type=list[wire.RouteRule])
        return wire.Service(instances=instances, logic_instances=logic, metadata=None,
                            route_rules=rules, service_id=state.service_id)

    def _groups_of(self, service: str) -> list[wire.ServiceGroup]:
        """Every management group of a service, as the original's management service.json
        lists them: key, tags as metadata, explicit members; no weight."""
        management = self.management
        members, tags = management.members_by_group, management.tags_by_group
        return [wire.ServiceGroup(
            group_key=g.group_key,
            instance_ids=list(members[g.group_id]) if g.group_id in members else None,
            metadata=dict(tags[g.group_id]) if g.group_id in tags else None) for g in sorted(
                management.groups, key=lambda g: (g.zone_id or "", g.name or ""))
            if g.service_id == service and g.group_id is not None]

    async def services(self, request: Request, actor: str) -> bytes:
        if request.method == "POST":
            request.json(wire.GetServicesRequest)  # checked, not used (as the original)
        registry = self.node.registry
        items = [self._managed(state) for state in registry.services.values()]
        return wire.encode(wire.GetServicesResponse(response_status=_SUCCESS, services=items,
                                                    version=self.node.clock.wall_ms()))

    async def service(self, request: Request, actor: str) -> bytes:
        asked = request.json(wire.ManagedServiceRequest)
        self.region(asked.region_id)
        service_id = self.text(asked.service_id, "serviceId")
        state = self.node.registry.service(service_id)
        found = (wire.Service(instances=[], logic_instances=[], metadata=None, route_rules=[],
                              service_id=service_id) if state is None else self._managed(state))
        return wire.encode(wire.ManagedServiceResponse(
            groups=self._groups_of(service_id.lower()), response_status=_SUCCESS, service=found))

    # --- zones ---------------------------------------------------------------------------

    async def operate_zones(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.OperateZoneOperationsRequest)
        items = body.zone_operations_list
        if not items:
            raise BadRequest("zoneOperationsList is null or empty.")
        if len(items) > _MAX_ZONE_BATCH:
            raise BadRequest(f"zoneOperationsList has more than {_MAX_ZONE_BATCH} entries.")
        context = self.context(body)
        writes = []
        for item in items:
            key = item.zone_key
            region = self.region(key.region_id)
            service = self.text(key.service_id, "serviceId").lower()
            zone = self.text(key.zone_id, "zoneId").lower()
            operations = item.operations or ([body.operation] if body.operation else [])
            if not operations:
                raise BadRequest("operations is null or empty.")
            for operation in operations:
                writes.append((region, service, zone, self.text(operation, "operation",
                                                                 _MAX_NAME)))
        self.require_up()
        store = self.management.store
        for region, service, zone, operation in writes:
            await self.management.traced("operate-zone", store.operate_zone(
                region, service, zone, operation, body.operation_complete, actor=actor,
                now_ms=self.node.clock.wall_ms(), **context))
            self.management.wrote("zone", (service, zone), operation, body.operation_complete,
                                  await store.version())
        return _OK_BODY

    def _zone_items(self, service: str | None = None,
                    zone: str | None = None) -> list[wire.ZoneOperations]:
        region = self.node.settings.region.lower()
        return [wire.ZoneOperations(operations=ops, zone_key=wire.ZoneKey(
                    region_id=region, service_id=s, zone_id=z))
                for (s, z), ops in sorted(self.management.operations.zones.items())
                if (service is None or s == service) and (zone is None or z == zone)]

    async def all_zone_operations(self, request: Request, actor: str) -> bytes:
        items = [] if self.other_region(request) else self._zone_items()
        return wire.encode(wire.AllZoneOperationsResponse(all_zone_operations=items,
                                                         response_status=_SUCCESS))

    async def zone_operations(self, request: Request, actor: str) -> bytes:
        key = request.json(wire.ZoneKeyRequest).zone_key
        if key is None:
            raise BadRequest("zoneKey is null.")
        self.region(key.region_id)
        items = self._zone_items(self.text(key.service_id, "serviceId").lower(),
                                 self.text(key.zone_id, "zoneId").lower())
        return wire.encode(wire.ZoneOperationsResponse(operations=items[0] if items else None,
                                                       response_status=_SUCCESS))

    async def zone_operations_list(self, request: Request, actor: str) -> bytes:
        asked = request.json(wire.ZoneOperationsListRequest)
        if asked.region_id:
            self.region(asked.region_id)
        items = self._zone_items(asked.service_id.strip().lower() if asked.service_id else None,
                                 asked.zone_id.strip().lower() if asked.zone_id else None)
        return wire.encode(wire.ZoneOperationsListResponse(response_status=_SUCCESS,
                                                           zone_operations_list=items))

    async def zone_down(self, request: Request, actor: str) -> bytes:
        key = request.json(wire.ZoneKeyRequest).zone_key
        if key is None:
            raise BadRequest("zoneKey is null.")
        self.region(key.region_id)
        down = (self.text(key.service_id, "serviceId").lower(),
                self.text(key.zone_id, "zoneId").lower()) in self.management.view.zones
        return wire.encode(wire.DownResponse(down=down, response_status=_SUCCESS))

    # --- audit log -----------------------------------------------------------------------

    async def logs(self, request: Request, actor: str, kind: str | None) -> bytes:
        """The audit log of `kind` (every kind if None), filtered as asked."""
        asked = request.json(wire.OperationLogRequest)
        filters: dict[str, str | bool | None] = {"kind": kind}
        for name, field in (("region_id", "regionId"), ("service_id", "serviceId"),
                            ("instance_id", "instanceId"), ("server_id", "serverId"),
                            ("zone_id", "zoneId")):
            value = getattr(asked, name)
            if value is not None and value.strip():
                filters[name] = self.text(value, field).lower()
        for name, field in (("operation", "operation"), ("operator_id", "operatorId")):
            value = getattr(asked, name)
            if value is not None and value.strip():
                filters[name] = self.text(value, field, _MAX_NAME)
        if asked.complete is not None:
            filters["complete"] = asked.complete
        if asked.name is not None and asked.name.strip():
            filters["name"] = self.text(asked.name, "name")  # as stored
        for name, value in (("group_id", asked.group_id),
                            ("route_rule_id", asked.route_rule_id)):
            if value is not None:
                filters[name] = value
        offset = asked.offset or 0
        limit = 100 if asked.limit is None else asked.limit
        if not 0 <= offset <= _MAX_OFFSET or not 1 <= limit <= limits.MAX_AUDIT_PAGE:
            raise BadRequest(f"offset must be from 0 to {_MAX_OFFSET} and limit from 1 to "
                             f"{limits.MAX_AUDIT_PAGE}.")
        store = self.management.store
        entries, total = await self.management.traced("audit", store.audit(
            {k: v for k, v in filters.items() if v is not None}, offset=offset,
            limit=limit, newest_first=asked.newest_first is not False))
        return wire.encode(wire.AuditLogResponse(logs=entries, response_status=_SUCCESS,
                                                 total=total))


def routes(node: Node, management: Management | None, access: Access) -> dict[str, Route]:
    return ManagementApi(node, management, access).routes


def _endpoint(path: str, methods: frozenset[str], summary: str, request: type[Any],
              answer: type[Any], handler: Any, role: Role, description: str = "",
              region_query: bool = False) -> Endpoint:
    """A management endpoint: its GET form (if any) takes the region asked."""
    return Endpoint(f"{BASE}/{path}", methods, summary, request, answer, handler, role=role,
                    query=(REGION_QUERY,) if region_query else (), description=description)


def _log(path: str, summary: str, kind: str | None, description: str = "") -> Endpoint:
    return _endpoint(f"log/{path}", POST, summary, wire.OperationLogRequest,
                     wire.AuditLogResponse, partial(ManagementApi.logs, kind=kind), Role.READ,
                     description)


R, W, M = Role.READ, Role.WRITE, ManagementApi
ENDPOINTS: Final = (
    _endpoint("operate-instance.json", POST, "Pull an instance out or back in",
              wire.OperateInstanceRequest, wire.StatusOnlyResponse, M.operate_instance, W,
              "`operationComplete` false adds `operation` to the instance (pulled out: hidden "
              "from discovery, still registered), true removes it (back in once no operation "
              "is left). Audited; applied on every node within `management_poll_interval`."),
    _endpoint("operate-server.json", POST, "Pull a server (machine) out or back in",
              wire.OperateServerRequest, wire.StatusOnlyResponse, M.operate_server, W,
              "The same for every instance whose `ip` is the `serverId`."),
    _endpoint("instance-operations.json", POST, "An instance's operations",
              wire.InstanceKeyRequest, wire.InstanceOperationsResponse, M.instance_operations,
              R, "`operations` is null when none."),
    _endpoint("server-operations.json", POST, "A server's operations", wire.ServerKeyRequest,
              wire.ServerOperationsResponse, M.server_operations, R,
              "`operations` is null when none."),
    _endpoint("all-instance-operations.json", GET_POST, "Every pulled-out instance",
              wire.RegionRequest, wire.AllInstanceOperationsResponse,
              M.all_instance_operations, R, region_query=True),
    _endpoint("all-server-operations.json", GET_POST, "Every pulled-out server",
              wire.RegionRequest, wire.AllServerOperationsResponse, M.all_server_operations, R,
              region_query=True),
    _endpoint("instance-down.json", POST, "Is this instance pulled out?",
              wire.InstanceDownRequest, wire.DownResponse, M.instance_down, R,
              "By its own key, its server (ip) or its zone."),
    Endpoint(f"{BASE}/services.json", GET_POST, "Every service as operators see it",
             wire.GetServicesRequest, wire.GetServicesResponse, M.services, role=R,
             query=(REGION_QUERY, ZONE_QUERY),
             description="Every registered instance, pulled out or not: `status` is `down` "
             "when management hides it, `up` otherwise, and its metadata gains `creationTime`, "
             "`renewalTime` and `ttl` (ms, as text); logical instances likewise, and the route "
             "rules discovery shows."),
    _endpoint("service.json", POST, "One service as operators see it",
              wire.ManagedServiceRequest, wire.ManagedServiceResponse, M.service, R,
              "As services.json, for one service, with every management group of the service "
              "(key, tags as metadata, explicit members)."),
    _endpoint("server-down.json", POST, "Is this server pulled out?", wire.ServerKeyRequest,
              wire.DownResponse, M.server_down, R),
    _endpoint("zone/operate-zone-operations.json", POST, "Pull services' zones out or back in",
              wire.OperateZoneOperationsRequest, wire.StatusOnlyResponse, M.operate_zones, W,
              "Each entry's `operations` (or the request's `operation`) added or removed for "
              "its zone key."),
    _endpoint("zone/get-all-zone-operations.json", GET_POST, "Every pulled-out zone",
              wire.RegionRequest, wire.AllZoneOperationsResponse, M.all_zone_operations, R,
              region_query=True),
    _endpoint("zone/get-zone-operations.json", POST, "A zone's operations", wire.ZoneKeyRequest,
              wire.ZoneOperationsResponse, M.zone_operations, R),
    _endpoint("zone/get-zone-operations-list.json", POST, "Zone operations by service and zone",
              wire.ZoneOperationsListRequest, wire.ZoneOperationsListResponse,
              M.zone_operations_list, R),
    _endpoint("zone/is-zone-down.json", POST, "Is this zone of a service pulled out?",
              wire.ZoneKeyRequest, wire.DownResponse, M.zone_down, R),
    _log("instance-operation-logs.json", "Audit log of instance operations",
         "instance-operation", "Equality filters, `offset`/`limit` (100, at most 1,000) and "
         "`newestFirst` (true)."),
    _log("server-operation-logs.json", "Audit log of server operations", "server-operation"),
    _log("zone-operation-logs.json", "Audit log of zone operations", "zone-operation"),
    _log("group-operation-logs.json", "Audit log of group operations", "group-operation"),
    _log("group-logs.json", "Audit log of groups", "group"),
    _log("route-rule-logs.json", "Audit log of route rules", "route-rule"),
    _log("route-rule-group-logs.json", "Audit log of route rules' groups", "route-rule-group"),
    _log("group-instance-logs.json", "Audit log of groups' explicit members", "group-instance"),
    _log("service-instance-logs.json", "Audit log of logical instances", "service-instance"),
    _log("group-tag-logs.json", "Audit log of group tags", "group-tag"),
    _log("audit.json", "The whole audit log", None, "Every management write: who (`actor`: the "
         "token's name; `operatorId`), what, when, the target's operations before and after."),
)
