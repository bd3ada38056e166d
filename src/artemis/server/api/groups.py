"""Groups and route rules (§4.7) and canary (§4.9): split a service's traffic between groups.

  * A group is the instances of one service in one zone whose `groupId` is the group's name;
    its key is `service/region/zone/name`.
  * A route rule of a service lists groups with weights. Writes stage a weight
    (`unreleasedWeight`); `release-route-rule-groups` makes it the weight discovery shows. A
    service's discovery answer lists its `active` rules with their `active` groups
    (`routeRules`), and every subscriber of the service gets a `reload` when they change.
  * Writes (insert, update, delete, create, release) need the write role and the node up, and
    are audited; `insert-*` revives a deleted row without changing it, `update-*` also takes the
    new fields. Reads `get-*` query the database with equality filters; `get-all-*` answer from
    the data the node applies.
  * Group tags are a group's `metadata`; explicit members (`service_group_instance`) its
    `instanceIds`; a group operation pulls every member out of discovery; logical instances are
    a service's `logicInstances`.
  * Canary: `update-canary-ips.json` makes the given instance ids the members of the service's
    canary group (zone `canary`, named after the appId) in its `canary-route-rule`, with a
    staged weight of 5 (shown as 5 until released, as the original).

The checks and their order are api_management's.
"""

from __future__ import annotations

from typing import Any, Final

from artemis import wire
from artemis.server.api.management import ManagementApi
from artemis.server.http import BadRequest, Request, Route, status_bytes
from artemis.server.store import (
    Group,
    GroupSpec,
    RouteRule,
    RouteRuleGroup,
    RouteRuleSpec,
    ServiceInstance,
    ServiceInstanceSpec,
)

__all__ = ["GroupApi", "add_routes"]

BASE: Final = "/api/management/group"
SUCCESS: Final = wire.ResponseStatus(error_code="success", message="", status="success")
_OK: Final = b'{"responseStatus":' + status_bytes("success", "", "success") + b"}"
_STATUSES: Final = ("active", "inactive")
_MAX_ITEMS: Final = 1000
_MAX_WEIGHT: Final = 10_000
CANARY_RULE: Final = "canary-route-rule"
CANARY_ZONE: Final = "canary"
CANARY_WEIGHT: Final = 5


def group_out(group: Group) -> wire.Group:
    return wire.Group(app_id=group.app_id, description=group.description, group_id=group.id,
                      group_key=f"{group.service_id}/{group.region_id}/{group.zone_id}/"
                                f"{group.name}",
                      name=group.name, region_id=group.region_id, service_id=group.service_id,
                      status=group.status, zone_id=group.zone_id)


def rule_out(rule: RouteRule) -> wire.ServiceRouteRule:
    return wire.ServiceRouteRule(description=rule.description, name=rule.name,
                                 route_rule_id=rule.id, service_id=rule.service_id,
                                 status=rule.status, strategy=rule.strategy)


def logical_out(item: ServiceInstance) -> wire.ServiceInstance:
    return wire.ServiceInstance(
        description=item.description, group_id=item.group_id,
        health_check_url=item.health_check_url, id=item.id, instance_id=item.instance_id,
        ip=item.ip, machine_name=item.machine_name,
        metadata=dict(item.metadata) if item.metadata else None, port=item.port,
        protocol=item.protocol, region_id=item.region_id, service_id=item.service_id,
        url=item.url, zone_id=item.zone_id)


def link_out(link: RouteRuleGroup) -> wire.RouteRuleGroup:
    return wire.RouteRuleGroup(group_id=link.group_id, route_rule_group_id=link.id,
                               route_rule_id=link.route_rule_id,
                               unreleased_weight=link.unreleased_weight, weight=link.weight)


class GroupApi:
    def __init__(self, api: ManagementApi) -> None:
        self.api = api
        self.management = api.management
        post, both = frozenset({"POST"}), frozenset({"GET", "POST"})
        for path, methods, handler, nulls in (
            ("insert-groups.json", post, self.insert_groups, {}),
            ("update-groups.json", post, self.update_groups, {}),
            ("delete-groups.json", post, self.delete_groups, {}),
            ("get-groups.json", post, self.get_groups, {"groups": None}),
            ("get-all-groups.json", both, self.all_groups, {"groups": None}),
            ("insert-route-rules.json", post, self.insert_rules, {}),
            ("update-route-rules.json", post, self.update_rules, {}),
            ("delete-route-rules.json", post, self.delete_rules, {}),
            ("get-route-rules.json", post, self.get_rules, {"routeRules": None}),
            ("get-all-route-rules.json", both, self.all_rules, {"routeRules": None}),
            ("create-route-rule.json", post, self.create_rule, {}),
            ("insert-route-rule-groups.json", post, self.upsert_links, {}),
            ("update-route-rule-groups.json", post, self.upsert_links, {}),
            ("release-route-rule-groups.json", post, self.release_links, {}),
            ("delete-route-rule-groups.json", post, self.delete_links, {}),
            ("get-route-rule-groups.json", post, self.get_links, {"routeRuleGroups": None}),
            ("get-all-route-rule-groups.json", both, self.all_links,
             {"routeRuleGroups": None}),
            ("insert-group-tags.json", post, self.upsert_tags, {}),
            ("update-group-tags.json", post, self.upsert_tags, {}),
            ("delete-group-tags.json", post, self.delete_tags, {}),
            ("get-group-tags.json", post, self.get_tags, {"groupTags": None}),
            ("get-all-group-tags.json", both, self.all_tags, {"allGroupTags": None}),
            ("insert-group-instances.json", post, self.insert_members, {}),
            ("delete-group-instances.json", post, self.delete_members, {}),
            ("get-group-instances.json", post, self.get_members, {"groupInstances": None}),
            ("operate-group-operations.json", post, self.operate_groups, {}),
            ("operate-group-operation.json", post, self.operate_group, {}),
            ("get-group-operations.json", post, self.get_group_operations,
             {"groupOperations": None}),
            ("get-all-group-operations.json", both, self.all_group_operations,
             {"allGroupOperations": None}),
            ("insert-service-instances.json", post, self.upsert_logical, {}),
            ("delete-service-instances.json", post, self.delete_logical, {}),
            ("get-service-instances.json", post, self.get_logical, {"serviceInstances": None}),
        ):
            full = f"{BASE}/{path}"
            api.routes[full] = Route(methods, async_handler=api.guard(full, handler),
                                     null_fields=nulls)
        canary = "/api/management/canary/update-canary-ips.json"
        api.routes[canary] = Route(post, async_handler=api.guard(canary, self.canary))

    # --- validation ----------------------------------------------------------------------

    @property
    def store(self) -> Any:
        store = self.management.store
        assert store is not None
        return store

    def _write(self, body: Any) -> dict[str, Any]:
        """The write's audit context (operatorId, reason, extensions)."""
        return self.api.context(body)

    def _status(self, status: str | None) -> str:
        text = self.api.text(status, "status", 32).lower()
        if text not in _STATUSES:
            raise BadRequest(f"status must be active or inactive, got {text[:32]!r}.")
        return text

    def _group(self, group: wire.Group | wire.GroupWeight | None) -> GroupSpec:
        if group is None:
            raise BadRequest("a group is null.")
        api = self.api
        return GroupSpec(
            service_id=api.text(group.service_id, "serviceId").lower(),
            region_id=api.region(group.region_id),
            zone_id=api.text(group.zone_id, "zoneId").lower(),
            name=api.text(group.name, "name").lower(),
            app_id=api.optional(group.app_id, "appId", 256),
            description=api.optional(group.description, "description", 1024),
            status=self._status(group.status))

    def _rule(self, rule: wire.ServiceRouteRule | None) -> RouteRuleSpec:
        if rule is None:
            raise BadRequest("a route rule is null.")
        api = self.api
        strategy = api.text(rule.strategy or "weighted-round-robin", "strategy", 64)
        return RouteRuleSpec(service_id=api.text(rule.service_id, "serviceId").lower(),
                             name=api.text(rule.name, "name").lower(),
                             description=api.optional(rule.description, "description", 1024),
                             status=self._status(rule.status), strategy=strategy)

    @staticmethod
    def _items(items: list[Any] | None, name: str) -> list[Any]:
        if not items:
            raise BadRequest(f"{name} is null or empty.")
        if len(items) > _MAX_ITEMS:
            raise BadRequest(f"{name} has more than {_MAX_ITEMS} entries.")
        return items

    @staticmethod
    def _weight(weight: int | None) -> int:
        if weight is None or not 0 <= weight <= _MAX_WEIGHT:
            raise BadRequest(f"weight must be from 0 to {_MAX_WEIGHT}, got {weight}.")
        return weight

    @staticmethod
    def _id(value: int | None, name: str) -> int:
        if value is None or value <= 0:
            raise BadRequest(f"{name} must be a positive id, got {value}.")
        return value

    async def _done(self, name: str, call: Any) -> bytes:
        await self.management.traced(name, call)
        await self.management.reload()  # rare writes: read everything back and apply it
        return _OK

    # --- groups --------------------------------------------------------------------------

    async def _upsert_groups(self, request: Request, actor: str, update: bool) -> bytes:
        body = request.json(wire.GroupsWrite)
        specs = [self._group(g) for g in self._items(body.groups, "groups")]
        context = self._write(body)
        self.api.require_up()
        return await self._done("upsert-groups", self.store.upsert_groups(
            specs, update=update, actor=actor, now_ms=self._now(), **context))

    async def insert_groups(self, request: Request, actor: str) -> bytes:
        return await self._upsert_groups(request, actor, update=False)

    async def update_groups(self, request: Request, actor: str) -> bytes:
        return await self._upsert_groups(request, actor, update=True)

    async def delete_groups(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.IdsWrite)
        ids = [self._id(i, "groupId") for i in self._items(body.group_ids, "groupIds")]
        context = self._write(body)
        self.api.require_up()
        return await self._done("delete-groups", self.store.delete_groups(
            ids, actor=actor, now_ms=self._now(), **context))

    async def get_groups(self, request: Request, actor: str) -> bytes:
        asked = request.json(wire.GroupsQuery)
        filters = self._filters(asked, ("service_id", "zone_id", "name"))
        if asked.app_id and asked.app_id.strip():
            filters["app_id"] = self.api.text(asked.app_id, "appId")  # stored as sent
        if asked.region_id:
            filters["region_id"] = self.api.region(asked.region_id)
        if asked.status:
            filters["status"] = self._status(asked.status)
        if asked.group_id is not None:
            filters["group_id"] = asked.group_id
        found = await self.management.traced("groups", self.store.groups(filters))
        return wire.encode(wire.GroupsResponse(groups=[group_out(g) for g in found],
                                               response_status=SUCCESS))

    async def all_groups(self, request: Request, actor: str) -> bytes:
        other = self.api.other_region(request)
        items = [] if other else [group_out(g) for g in self.management.groups]
        return wire.encode(wire.GroupsResponse(groups=items, response_status=SUCCESS))

    # --- route rules ---------------------------------------------------------------------

    async def _upsert_rules(self, request: Request, actor: str, update: bool) -> bytes:
        body = request.json(wire.RouteRulesWrite)
        specs = [self._rule(r) for r in self._items(body.route_rules, "routeRules")]
        context = self._write(body)
        self.api.require_up()
        return await self._done("upsert-route-rules", self.store.upsert_route_rules(
            specs, update=update, actor=actor, now_ms=self._now(), **context))

    async def insert_rules(self, request: Request, actor: str) -> bytes:
        return await self._upsert_rules(request, actor, update=False)

    async def update_rules(self, request: Request, actor: str) -> bytes:
        return await self._upsert_rules(request, actor, update=True)

    async def delete_rules(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.IdsWrite)
        ids = [self._id(i, "routeRuleId")
               for i in self._items(body.route_rule_ids, "routeRuleIds")]
        context = self._write(body)
        self.api.require_up()
        return await self._done("delete-route-rules", self.store.delete_route_rules(
            ids, actor=actor, now_ms=self._now(), **context))

    async def get_rules(self, request: Request, actor: str) -> bytes:
        asked = request.json(wire.RouteRulesQuery)
        filters = self._filters(asked, ("service_id", "name"))
        if asked.status:
            filters["status"] = self._status(asked.status)
        if asked.route_rule_id is not None:
            filters["route_rule_id"] = asked.route_rule_id
        found = await self.management.traced("route-rules", self.store.route_rules(filters))
        return wire.encode(wire.RouteRulesResponse(response_status=SUCCESS,
                                                   route_rules=[rule_out(r) for r in found]))

    async def all_rules(self, request: Request, actor: str) -> bytes:
        other = self.api.other_region(request)
        items = [] if other else [rule_out(r) for r in self.management.route_rules]
        return wire.encode(wire.RouteRulesResponse(response_status=SUCCESS, route_rules=items))

    async def create_rule(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.CreateRouteRuleRequest)
        rule = self._rule(body.route_rule)
        groups = []
        for group in self._items(body.groups, "groups"):
            spec = self._group(group)
            if spec.service_id != rule.service_id:
                raise BadRequest(f"group {spec.name!r} is of service {spec.service_id!r}, not "
                                 f"of the route rule's {rule.service_id!r}.")
            groups.append((spec, self._weight(group.weight)))
        context = self._write(body)
        self.api.require_up()
        return await self._done("create-route-rule", self.store.create_route_rule(
            rule, groups, actor=actor, now_ms=self._now(), **context))

    # --- route rule groups ---------------------------------------------------------------

    async def upsert_links(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.RouteRuleGroupsWrite)
        items = [(self._id(link.route_rule_id, "routeRuleId"), self._id(link.group_id, "groupId"),
                  self._weight(link.unreleased_weight if link.unreleased_weight is not None
                               else link.weight))
                 for link in self._items(body.route_rule_groups, "routeRuleGroups")]
        context = self._write(body)
        self.api.require_up()
        return await self._done("upsert-route-rule-groups", self.store.upsert_route_rule_groups(
            items, actor=actor, now_ms=self._now(), **context))

    async def release_links(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.RouteRuleGroupsWrite)
        items = [(self._id(link.route_rule_id, "routeRuleId"), self._id(link.group_id, "groupId"))
                 for link in self._items(body.route_rule_groups, "routeRuleGroups")]
        context = self._write(body)
        self.api.require_up()
        return await self._done("release-route-rule-groups",
                                self.store.release_route_rule_groups(
                                    items, actor=actor, now_ms=self._now(), **context))

    async def delete_links(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.IdsWrite)
        ids = [self._id(i, "routeRuleGroupId")
               for i in self._items(body.route_rule_group_ids, "routeRuleGroupIds")]
        context = self._write(body)
        self.api.require_up()
        return await self._done("delete-route-rule-groups", self.store.delete_route_rule_groups(
            ids, actor=actor, now_ms=self._now(), **context))

    async def get_links(self, request: Request, actor: str) -> bytes:
        asked = request.json(wire.RouteRuleGroupsQuery)
        filters = {name: value for name, value in (
            ("route_rule_group_id", asked.route_rule_group_id),
            ("route_rule_id", asked.route_rule_id), ("group_id", asked.group_id))
            if value is not None}
        found = await self.management.traced("route-rule-groups",
                                             self.store.route_rule_groups(filters))
        return wire.encode(wire.RouteRuleGroupsResponse(
            response_status=SUCCESS, route_rule_groups=[link_out(link) for link in found]))

    async def all_links(self, request: Request, actor: str) -> bytes:
        other = self.api.other_region(request)
        items = [] if other else [link_out(link) for link in self.management.route_rule_groups]
        return wire.encode(wire.RouteRuleGroupsResponse(response_status=SUCCESS,
                                                        route_rule_groups=items))

    # --- group tags ----------------------------------------------------------------------

    async def upsert_tags(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.GroupTagsWrite)
        items = []
        for entry in self._items(body.group_tags_list, "groupTagsList"):
            group = self._id(entry.group_id, "groupId")
            if not entry.tags:
                raise BadRequest("tags is null or empty.")
            if len(entry.tags) > 64:
                raise BadRequest("tags has more than 64 entries.")
            items += [(group, self.api.text(tag, "tag"), self.api.optional(value, "value", 1024)
                       or "") for tag, value in sorted(entry.tags.items())]
        context = self._write(body)
        self.api.require_up()
        return await self._done("upsert-group-tags", self.store.upsert_group_tags(
            items, actor=actor, now_ms=self._now(), **context))

    async def delete_tags(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.DeleteGroupTagsRequest)
        if body.group_id is None and not body.tag and not body.value:
            raise BadRequest("groupId, tag or value is needed: deleting every tag is refused.")
        group = None if body.group_id is None else self._id(body.group_id, "groupId")
        tag = self.api.text(body.tag, "tag") if body.tag else None
        value = self.api.optional(body.value, "value", 1024) if body.value else None
        context = self._write(body)
        self.api.require_up()
        return await self._done("delete-group-tags", self.store.delete_group_tags(
            group, tag, value, actor=actor, now_ms=self._now(), **context))

    def _tags_of(self, group_id: int) -> wire.GroupTags | None:
        tags = self.management.tags_by_group.get(group_id)
        return wire.GroupTags(group_id=group_id, tags=dict(tags)) if tags else None

    async def get_tags(self, request: Request, actor: str) -> bytes:
        asked = request.json(wire.GroupIdQuery)
        found = self._tags_of(self._id(asked.group_id, "groupId"))
        return wire.encode(wire.GroupTagsResponse(group_tags=found, response_status=SUCCESS))

    async def all_tags(self, request: Request, actor: str) -> bytes:
        ids = [] if self.api.other_region(request) else sorted(self.management.tags_by_group)
        items = [t for t in (self._tags_of(i) for i in ids) if t is not None]
        return wire.encode(wire.AllGroupTagsResponse(all_group_tags=items,
                                                     response_status=SUCCESS))

    # --- explicit members ----------------------------------------------------------------

    async def insert_members(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.GroupInstancesWrite)
        items = [(self._id(m.group_id, "groupId"), self.api.text(m.instance_id, "instanceId"))
                 for m in self._items(body.group_instances, "groupInstances")]
        context = self._write(body)
        self.api.require_up()
        return await self._done("insert-group-instances", self.store.insert_group_instances(
            items, actor=actor, now_ms=self._now(), **context))

    async def delete_members(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.GroupInstancesWrite)
        ids = [self._id(i, "groupInstanceId")
               for i in self._items(body.group_instance_ids, "groupInstanceIds")]
        context = self._write(body)
        self.api.require_up()
        return await self._done("delete-group-instances", self.store.delete_group_instances(
            ids, actor=actor, now_ms=self._now(), **context))

    async def get_members(self, request: Request, actor: str) -> bytes:
        asked = request.json(wire.GroupIdQuery)
        filters: dict[str, Any] = {}
        if asked.group_id is not None:
            filters["group_id"] = asked.group_id
        if asked.instance_id:
            filters["instance_id"] = self.api.text(asked.instance_id, "instanceId")
        found = await self.management.traced("group-instances",
                                             self.store.group_instances(filters))
        return wire.encode(wire.GroupInstancesResponse(
            group_instances=[wire.GroupInstance(group_id=m.group_id, id=m.id,
                                                instance_id=m.instance_id) for m in found],
            response_status=SUCCESS))

    # --- group operations (pull a whole group out) ---------------------------------------

    async def operate_groups(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.GroupOperationsWrite)
        items = []
        for entry in self._items(body.group_operations_list, "groupOperationsList"):
            group = self._id(entry.group_id, "groupId")
            operations = entry.operations or ([body.operation] if body.operation else [])
            if not operations:
                raise BadRequest("operations is null or empty.")
            items += [(group, self.api.text(op, "operation", 128)) for op in operations]
        context = self._write(body)
        self.api.require_up()
        return await self._done("operate-group-operations", self.store.operate_group_operations(
            items, body.operation_complete, actor=actor, now_ms=self._now(), **context))

    async def operate_group(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.GroupOperationWrite)
        spec = self._group(wire.Group(app_id=body.app_id, description=body.description,
                                      name=body.name, region_id=body.region_id,
                                      service_id=body.service_id,
                                      status=body.status or "active", zone_id=body.zone_id))
        operation = self.api.text(body.operation, "operation", 128)
        context = self._write(body)
        self.api.require_up()
        store = self.store
        groups = await self.management.traced("upsert-groups", store.upsert_groups(
            [spec], update=False, actor=actor, now_ms=self._now(), **context))
        return await self._done("operate-group-operations", store.operate_group_operations(
            [(groups[0].id, operation)], body.operation_complete, actor=actor,
            now_ms=self._now(), **context))

    def _operations_of(self, group_id: int) -> wire.GroupOperations | None:
        ops = self.management.operations_by_group.get(group_id)
        return wire.GroupOperations(group_id=group_id, operations=list(ops)) if ops else None

    async def get_group_operations(self, request: Request, actor: str) -> bytes:
        asked = request.json(wire.GroupIdQuery)
        found = self._operations_of(self._id(asked.group_id, "groupId"))
        return wire.encode(wire.GroupOperationsResponse(group_operations=found,
                                                        response_status=SUCCESS))

    async def all_group_operations(self, request: Request, actor: str) -> bytes:
        ids = [] if self.api.other_region(request) else sorted(
            self.management.operations_by_group)
        items = [o for o in (self._operations_of(i) for i in ids) if o is not None]
        return wire.encode(wire.AllGroupOperationsResponse(all_group_operations=items,
                                                           response_status=SUCCESS))

    # --- logical instances ---------------------------------------------------------------

    def _logical(self, item: wire.ServiceInstance) -> ServiceInstanceSpec:
        api = self.api
        url = api.text(item.url, "url", 512)
        scheme, sep, rest = url.partition("://")
        if not sep or not scheme or not rest:
            raise BadRequest(f"url is not an absolute URL: {url[:64]!r}.")
        if not 0 <= item.port <= 65535:
            raise BadRequest(f"port {item.port} is out of range 0-65535.")
        metadata = item.metadata or {}
        if len(metadata) > 64 or any(len(k) > 1024 or len(v) > 1024
                                     for k, v in metadata.items()):
            raise BadRequest("metadata has more than 64 entries or an entry over 1024 "
                             "characters.")
        return ServiceInstanceSpec(
            service_id=api.text(item.service_id, "serviceId").lower(),
            instance_id=api.text(item.instance_id, "instanceId").lower(), url=url,
            ip=api.optional(item.ip, "ip", 256), machine_name=api.optional(
                item.machine_name, "machineName", 256), metadata=metadata or None,
            port=item.port, protocol=api.optional(item.protocol, "protocol", 16),
            region_id=api.region(item.region_id),
            zone_id=api.optional(item.zone_id, "zoneId", 256),
            group_id=api.optional(item.group_id, "groupId", 256),
            health_check_url=api.optional(item.health_check_url, "healthCheckUrl", 512),
            description=api.optional(item.description, "description", 1024))

    async def upsert_logical(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.ServiceInstancesWrite)
        specs = [self._logical(i) for i in self._items(body.service_instances,
                                                       "serviceInstances")]
        context = self._write(body)
        self.api.require_up()
        return await self._done("upsert-service-instances", self.store.upsert_service_instances(
            specs, actor=actor, now_ms=self._now(), **context))

    async def delete_logical(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.ServiceInstancesWrite)
        ids = [self._id(i, "serviceInstanceId")
               for i in self._items(body.service_instance_ids, "serviceInstanceIds")]
        context = self._write(body)
        self.api.require_up()
        return await self._done("delete-service-instances", self.store.delete_service_instances(
            ids, actor=actor, now_ms=self._now(), **context))

    async def get_logical(self, request: Request, actor: str) -> bytes:
        asked = request.json(wire.ServiceInstancesQuery)
        filters = self._filters(asked, ("service_id", "instance_id"))
        found = await self.management.traced("service-instances",
                                             self.store.service_instances(filters))
        return wire.encode(wire.ServiceInstancesResponse(
            response_status=SUCCESS, service_instances=[logical_out(i) for i in found]))

    # --- canary (§4.9) -------------------------------------------------------------------

    async def canary(self, request: Request, actor: str) -> bytes:
        """Make `canaryIps` (instance ids, as the original) the members of the service's canary
        group (zone `canary`, named after appId) in its `canary-route-rule`, staged weight 5."""
        body = request.json(wire.CanaryRequest)
        api = self.api
        service = api.text(body.service_id, "serviceId").lower()
        app = api.text(body.app_id, "appId").lower()
        if body.canary_ips is None:
            raise BadRequest("canaryIps is null.")
        if len(body.canary_ips) > _MAX_ITEMS:
            raise BadRequest(f"canaryIps has more than {_MAX_ITEMS} entries.")
        members = sorted({api.text(i, "canaryIps[]") for i in body.canary_ips})
        context = self._write(body)
        api.require_up()
        store, now = self.store, self._now()
        region = api.node.settings.region.lower()
        rules = await self.management.traced("upsert-route-rules", store.upsert_route_rules(
            [RouteRuleSpec(service_id=service, name=CANARY_RULE, status="active")],
            update=False, actor=actor, now_ms=now, **context))
        groups = await self.management.traced("upsert-groups", store.upsert_groups(
            [GroupSpec(service_id=service, region_id=region, zone_id=CANARY_ZONE, name=app,
                       app_id=app, status="active")], update=False, actor=actor, now_ms=now,
            **context))
        links = await store.route_rule_groups({"route_rule_id": rules[0].id,
                                               "group_id": groups[0].id})
        if not links:
            await self.management.traced("upsert-route-rule-groups",
                                         store.upsert_route_rule_groups(
                                             [(rules[0].id, groups[0].id, CANARY_WEIGHT)],
                                             actor=actor, now_ms=now, **context))
        return await self._done("set-group-instances", store.set_group_instances(
            groups[0].id, members, actor=actor, now_ms=now, **context))

    # --- helpers -------------------------------------------------------------------------

    def _now(self) -> int:
        return self.api.node.clock.wall_ms()

    def _filters(self, asked: Any, names: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in names:
            value = getattr(asked, name)
            if value is not None and value.strip():
                camel = "".join(w.capitalize() if i else w for i, w in enumerate(name.split("_")))
                out[name] = self.api.text(value, camel).lower()
        return out


def add_routes(api: ManagementApi) -> None:
    GroupApi(api)
