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

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec

from artemis import wire
from artemis.core.node_status import UP
from artemis.core.registry import ServiceState
from artemis.server.http import BadRequest, Request, Route, status_bytes
from artemis.server.management import Management
from artemis.server.node import Node
from artemis.server.store import StoreError, StoreUnavailable, StoreValueError

__all__ = ["ManagementApi", "routes"]

BASE: Final = "/api/management"
_SUCCESS: Final = wire.ResponseStatus(error_code="success", message="", status="success")
_OK_BODY: Final = b'{"responseStatus":' + status_bytes("success", "", "success") + b"}"
_MAX_ID: Final = 256
_MAX_NAME: Final = 128
_MAX_REASON: Final = 1024
_MAX_EXTENSIONS: Final = 2048
_MAX_ZONE_BATCH: Final = 1000
_MAX_OFFSET: Final = 2**63 - 1
_WRITES: Final = ("operate", "insert-", "update-", "delete-", "create-", "release-")

Handler = Callable[[Request, str], Awaitable[bytes]]
Endpoint = Callable[[Request], Awaitable[bytes]]


class NodeNotUp(Exception):
    """A write reached a node that is not up."""


class ManagementApi:
    def __init__(self, node: Node, management: Management) -> None:
        self.node = node
        self.management = management
        self.tokens = {name: (roles, secret.encode())
                       for name, (roles, secret) in node.settings.api_tokens().items()}
        self.routes: dict[str, Route] = {}
        post, both = frozenset({"POST"}), frozenset({"GET", "POST"})
        for path, methods, handler, nulls in (
            ("operate-instance.json", post, self.operate_instance, {}),
            ("operate-server.json", post, self.operate_server, {}),
            ("instance-operations.json", post, self.instance_operations, {"operations": None}),
            ("server-operations.json", post, self.server_operations, {"operations": None}),
            ("all-instance-operations.json", both, self.all_instance_operations,
             {"allInstanceOperations": None}),
            ("all-server-operations.json", both, self.all_server_operations,
             {"allServerOperations": None}),
            ("instance-down.json", post, self.instance_down, {"down": False}),
            ("services.json", both, self.services, {"services": None, "version": 0}),
            ("service.json", post, self.service, {"groups": None, "service": None}),
            ("server-down.json", post, self.server_down, {"down": False}),
            ("zone/operate-zone-operations.json", post, self.operate_zones, {}),
            ("zone/get-all-zone-operations.json", both, self.all_zone_operations,
             {"allZoneOperations": None}),
            ("zone/get-zone-operations.json", post, self.zone_operations, {"operations": None}),
            ("zone/get-zone-operations-list.json", post, self.zone_operations_list,
             {"zoneOperationsList": None}),
            ("zone/is-zone-down.json", post, self.zone_down, {"down": False}),
            ("log/instance-operation-logs.json", post, self._log("instance-operation"),
             {"logs": None, "total": 0}),
            ("log/server-operation-logs.json", post, self._log("server-operation"),
             {"logs": None, "total": 0}),
            ("log/zone-operation-logs.json", post, self._log("zone-operation"),
             {"logs": None, "total": 0}),
            ("log/group-operation-logs.json", post, self._log("group-operation"),
             {"logs": None, "total": 0}),
            ("log/group-logs.json", post, self._log("group"), {"logs": None, "total": 0}),
            ("log/route-rule-logs.json", post, self._log("route-rule"),
             {"logs": None, "total": 0}),
            ("log/route-rule-group-logs.json", post, self._log("route-rule-group"),
             {"logs": None, "total": 0}),
            ("log/group-instance-logs.json", post, self._log("group-instance"),
             {"logs": None, "total": 0}),
            ("log/service-instance-logs.json", post, self._log("service-instance"),
             {"logs": None, "total": 0}),
            ("log/group-tag-logs.json", post, self._log("group-tag"),
             {"logs": None, "total": 0}),
            ("log/audit.json", post, self._log(None), {"logs": None, "total": 0}),
        ):
            self.routes[f"{BASE}/{path}"] = Route(methods, async_handler=self.guard(
                f"{BASE}/{path}", handler), null_fields=nulls)

    # --- checks --------------------------------------------------------------------------

    def guard(self, path: str, handler: Handler) -> Endpoint:
        write = any(verb in path.rsplit("/", 1)[-1] for verb in _WRITES)

        async def guarded(request: Request) -> bytes:
            route = self.routes[path]
            if not self.management.enabled:
                return route.fail("service-unavailable", "management is not configured on this "
                                  "node (no database)")
            actor = self._actor(request, "write" if write else "read")
            if actor is None:
                return route.fail("no-permission", f"this call needs a bearer token with the "
                                  f"{'write' if write else 'read'} role")
            if not self.management.available:
                return route.fail("service-unavailable", "the management database does not "
                                  "answer; discovery goes on with the last data loaded")
            try:
                return await handler(request, actor)
            except StoreValueError as exc:  # a value the database cannot hold (NUL, ...)
                raise BadRequest(str(exc)) from None
            except NodeNotUp as exc:
                return route.fail("service-unavailable", str(exc))
            except StoreUnavailable as exc:
                return route.fail("service-unavailable", f"the management database does not "
                                  f"answer: {exc}")
            except StoreError as exc:
                return route.fail("internal-service-error", f"the management database failed: "
                                  f"{exc}")
        return guarded

    def _actor(self, request: Request, role: str) -> str | None:
        """The name of the caller's token if it has `role` (reads may be open)."""
        if role == "read" and self.node.settings.management_open_reads:
            return "anonymous"
        given = request.header("authorization") or ""
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        secret = value.strip().encode()
        found = None
        for name, (roles, expected) in self.tokens.items():  # every token compared, in
            if hmac.compare_digest(secret, expected) and role in roles:  # constant time each
                found = name
        return found

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
        assert store is not None
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
        assert store is not None
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
            group_key=f"{g.service_id}/{g.region_id}/{g.zone_id}/{g.name}",
            instance_ids=list(members[g.id]) if g.id in members else None,
            metadata=dict(tags[g.id]) if g.id in tags else None) for g in sorted(
                management.groups, key=lambda g: (g.zone_id, g.name)) if g.service_id == service]

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
        assert store is not None
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

    def _log(self, kind: str | None) -> Handler:
        async def logs(request: Request, actor: str) -> bytes:
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
            if not 0 <= offset <= _MAX_OFFSET or not 1 <= limit <= 1000:
                raise BadRequest(f"offset must be from 0 to {_MAX_OFFSET} and limit from 1 to "
                                 f"1000.")
            store = self.management.store
            assert store is not None
            entries, total = await self.management.traced("audit", store.audit(
                {k: v for k, v in filters.items() if v is not None}, offset=offset,
                limit=limit, newest_first=asked.newest_first is not False))
            rows = [wire.AuditEntry(
                actor=e.actor, after=list(e.after), before=list(e.before), complete=e.complete,
                create_time=e.created_ms, extensions=e.extensions, id=e.id,
                instance_id=e.instance_id, kind=e.kind, operation=e.operation,
                operator_id=e.operator_id, reason=e.reason, region_id=e.region_id,
                server_id=e.server_id, service_id=e.service_id, zone_id=e.zone_id)
                for e in entries]
            return wire.encode(wire.AuditLogResponse(logs=rows, response_status=_SUCCESS,
                                                     total=total))
        return logs


def routes(node: Node, management: Management) -> dict[str, Route]:
    return ManagementApi(node, management).routes
