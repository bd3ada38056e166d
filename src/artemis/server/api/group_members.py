"""Group tags, explicit members and group operations (§4.7), logical instances, and canary
(§4.9): what hangs on a group or a service besides its route rules.

  * Group tags are a group's `metadata`; explicit members (`service_group_instance`) its
    `instanceIds`; a group operation pulls every member out of discovery; logical instances are
    a service's `logicInstances`.
  * Canary: `update-canary-ips.json` makes the given instance ids the members of the service's
    canary group (zone `canary`, named after the appId) in its `canary-route-rule`, with a
    staged weight of 5 (shown as 5 until released, as the original).

Writes need the write role and the node up, and are audited; the checks are api/groups.py's.
"""

from __future__ import annotations

from typing import Any, Final

from artemis import wire
from artemis.server.api.endpoint import GET_POST, POST, Endpoint, Role
from artemis.server.api.groups import MAX_ITEMS, SUCCESS, GroupApi, _endpoint
from artemis.server.http import BadRequest, Request
from artemis.server.store import (
    GroupSpec,
    RouteRuleSpec,
    ServiceInstanceSpec,
    StoreError,
    limits,
)

__all__ = ["CANARY", "ENDPOINTS", "MemberApi"]

CANARY_RULE: Final = "canary-route-rule"
CANARY_ZONE: Final = "canary"
CANARY_WEIGHT: Final = 5


class MemberApi(GroupApi):
    """What hangs on a group or a service; it shares the checks of GroupApi."""

    # --- group tags ----------------------------------------------------------------------

    async def upsert_tags(self, request: Request, actor: str) -> bytes:
        body = request.json(wire.GroupTagsWrite)
        items = []
        for entry in self._items(body.group_tags_list, "groupTagsList"):
            group = self._id(entry.group_id, "groupId")
            if not entry.tags:
                raise BadRequest("tags is null or empty.")
            if len(entry.tags) > limits.MAX_METADATA_ENTRIES:
                raise BadRequest(f"tags has more than {limits.MAX_METADATA_ENTRIES} entries.")
            items += [(group, self.api.text(tag, "tag"),
                       self.api.optional(value, "value", limits.MAX_TAG_VALUE) or "")
                      for tag, value in sorted(entry.tags.items())]
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
        value = self.api.optional(body.value, "value", limits.MAX_TAG_VALUE) if body.value else None
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
            group_instances=found,
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
            [(written_id(groups[0].group_id), operation)], body.operation_complete, actor=actor,
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
        url = api.text(item.url, "url", limits.MAX_URL)
        scheme, sep, rest = url.partition("://")
        if not sep or not scheme or not rest:
            raise BadRequest(f"url is not an absolute URL: {url[:64]!r}.")
        if not 0 <= item.port <= limits.MAX_PORT:
            raise BadRequest(f"port {item.port} is out of range 0-{limits.MAX_PORT}.")
        metadata = item.metadata or {}
        most, longest = limits.MAX_METADATA_ENTRIES, limits.MAX_METADATA_TEXT
        if len(metadata) > most or any(len(k) > longest or len(v) > longest
                                       for k, v in metadata.items()):
            raise BadRequest(f"metadata has more than {most} entries or an entry over "
                             f"{longest} characters.")
        return ServiceInstanceSpec(
            service_id=api.text(item.service_id, "serviceId").lower(),
            instance_id=api.text(item.instance_id, "instanceId").lower(), url=url,
            ip=api.optional(item.ip, "ip", limits.MAX_ID), machine_name=api.optional(
                item.machine_name, "machineName", limits.MAX_ID), metadata=metadata or None,
            port=item.port, protocol=api.optional(item.protocol, "protocol", limits.MAX_PROTOCOL),
            region_id=api.region(item.region_id),
            zone_id=api.optional(item.zone_id, "zoneId", limits.MAX_ID),
            group_id=api.optional(item.group_id, "groupId", limits.MAX_ID),
            health_check_url=api.optional(item.health_check_url, "healthCheckUrl",
                                           limits.MAX_URL),
            description=api.optional(item.description, "description",
                                     limits.MAX_DESCRIPTION))

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
            response_status=SUCCESS, service_instances=found))

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
        if len(body.canary_ips) > MAX_ITEMS:
            raise BadRequest(f"canaryIps has more than {MAX_ITEMS} entries.")
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
        rule_id, group_id = written_id(rules[0].route_rule_id), written_id(groups[0].group_id)
        links = await store.route_rule_groups({"route_rule_id": rule_id, "group_id": group_id})
        if not links:
            await self.management.traced("upsert-route-rule-groups",
                                         store.upsert_route_rule_groups(
                                             [(rule_id, group_id, CANARY_WEIGHT)],
                                             actor=actor, now_ms=now, **context))
        return await self._done("set-group-instances", store.set_group_instances(
            group_id, members, actor=actor, now_ms=now, **context))


R, W, M = Role.READ, Role.WRITE, MemberApi
CANARY: Final = Endpoint(
    "/api/management/canary/update-canary-ips.json", POST, "Set a service's canary instances",
    wire.CanaryRequest, wire.StatusOnlyResponse, MemberApi.canary, role=W,
    description="`canaryIps` (instance ids, as the original) become the members of the "
    "service's canary group (zone `canary`, named after `appId`) in its `canary-route-rule`, "
    "made if missing with a staged weight of 5.")
ENDPOINTS: Final = (
    _endpoint("insert-group-tags.json", POST, "Set groups' tags", wire.GroupTagsWrite,
              wire.StatusOnlyResponse, M.upsert_tags, W,
              "Each group's `tags` (at most 64) added or changed; shown as the group's "
              "`metadata` in route rules."),
    _endpoint("update-group-tags.json", POST, "Set groups' tags", wire.GroupTagsWrite,
              wire.StatusOnlyResponse, M.upsert_tags, W,
              "The same as insert-group-tags."),
    _endpoint("delete-group-tags.json", POST, "Delete tags", wire.DeleteGroupTagsRequest,
              wire.StatusOnlyResponse, M.delete_tags, W,
              "The tags matching `groupId`, `tag` and `value` (at least one)."),
    _endpoint("get-group-tags.json", POST, "A group's tags", wire.GroupIdQuery,
              wire.GroupTagsResponse, M.get_tags, R,
              "`groupTags` null when none."),
    _endpoint("get-all-group-tags.json", GET_POST, "Every group's tags", wire.RegionRequest,
              wire.AllGroupTagsResponse, M.all_tags, R,
              region_query=True),
    _endpoint("insert-group-instances.json", POST, "Add explicit members to groups",
              wire.GroupInstancesWrite, wire.StatusOnlyResponse, M.insert_members, W,
              "`groupInstances`: (groupId, instanceId); shown as the group's `instanceIds`."),
    _endpoint("delete-group-instances.json", POST, "Remove explicit members",
              wire.GroupInstancesWrite, wire.StatusOnlyResponse, M.delete_members, W,
              "`groupInstanceIds`."),
    _endpoint("get-group-instances.json", POST, "Find explicit members", wire.GroupIdQuery,
              wire.GroupInstancesResponse, M.get_members, R,
              "Filters `groupId`, `instanceId`."),
    _endpoint("operate-group-operations.json", POST, "Pull groups out or back in",
              wire.GroupOperationsWrite, wire.StatusOnlyResponse, M.operate_groups, W,
              "Each entry's operations added (`operationComplete` false) or removed: a group "
              "with an operation has every member (same service and zone, `groupId` its name)"
              " out of discovery."),
    _endpoint("operate-group-operation.json", POST, "Pull one group out or back in",
              wire.GroupOperationWrite, wire.StatusOnlyResponse, M.operate_group, W,
              "The group by its fields (added if missing) and one operation."),
    _endpoint("get-group-operations.json", POST, "A group's operations", wire.GroupIdQuery,
              wire.GroupOperationsResponse, M.get_group_operations, R),
    _endpoint("get-all-group-operations.json", GET_POST, "Every group's operations",
              wire.RegionRequest, wire.AllGroupOperationsResponse, M.all_group_operations, R,
              region_query=True),
    _endpoint("insert-service-instances.json", POST, "Add or change logical instances",
              wire.ServiceInstancesWrite, wire.StatusOnlyResponse, M.upsert_logical, W,
              "Instances operators define for a service, by (serviceId, instanceId); shown in"
              " its `logicInstances` (status up) unless pulled out."),
    _endpoint("delete-service-instances.json", POST, "Delete logical instances",
              wire.ServiceInstancesWrite, wire.StatusOnlyResponse, M.delete_logical, W,
              "`serviceInstanceIds`."),
    _endpoint("get-service-instances.json", POST, "Find logical instances",
              wire.ServiceInstancesQuery, wire.ServiceInstancesResponse, M.get_logical, R,
              "Filters `serviceId`, `instanceId`."),
    CANARY,
)


def written_id(value: int | None) -> int:
    """The id of a row the store has just written: it always has one (the wire type's field is
    optional only because answers may leave it out)."""
    if value is None:
        raise StoreError("the management database returned a written row without its id")
    return value
