"""The management API's shapes (§4.6, §4.8, §4.10): instance, server and zone operations, groups,
route rules, tags, logical instances, canaries and the audit log. Every write carries its
context (operation, operatorId, reason, extensions, the original's `token` audit field)."""

from __future__ import annotations

from artemis.wire.codec import _Wire
from artemis.wire.discovery import Service, ServiceGroup
from artemis.wire.instances import Instance
from artemis.wire.response_status import ResponseStatus

__all__ = [
    "AllGroupOperationsResponse",
    "AllGroupTagsResponse",
    "AllInstanceOperationsResponse",
    "AllServerOperationsResponse",
    "AllZoneOperationsResponse",
    "AuditEntry",
    "AuditLogResponse",
    "CanaryRequest",
    "CreateRouteRuleRequest",
    "DeleteGroupTagsRequest",
    "DownResponse",
    "Group",
    "GroupIdQuery",
    "GroupInstance",
    "GroupInstancesResponse",
    "GroupInstancesWrite",
    "GroupOperationWrite",
    "GroupOperations",
    "GroupOperationsResponse",
    "GroupOperationsWrite",
    "GroupTags",
    "GroupTagsResponse",
    "GroupTagsWrite",
    "GroupWeight",
    "GroupsQuery",
    "GroupsResponse",
    "GroupsWrite",
    "IdsWrite",
    "InstanceDownRequest",
    "InstanceKey",
    "InstanceKeyRequest",
    "InstanceOperations",
    "InstanceOperationsResponse",
    "ManagedServiceRequest",
    "ManagedServiceResponse",
    "OperateInstanceRequest",
    "OperateServerRequest",
    "OperateZoneOperationsRequest",
    "OperationLogRequest",
    "RegionRequest",
    "RouteRuleGroup",
    "RouteRuleGroupsQuery",
    "RouteRuleGroupsResponse",
    "RouteRuleGroupsWrite",
    "RouteRulesQuery",
    "RouteRulesResponse",
    "RouteRulesWrite",
    "ServerKey",
    "ServerKeyRequest",
    "ServerOperations",
    "ServerOperationsResponse",
    "ServiceInstance",
    "ServiceInstancesQuery",
    "ServiceInstancesResponse",
    "ServiceInstancesWrite",
    "ServiceRouteRule",
    "ZoneKey",
    "ZoneKeyRequest",
    "ZoneOperations",
    "ZoneOperationsListRequest",
    "ZoneOperationsListResponse",
    "ZoneOperationsResponse",
]


class InstanceKey(_Wire, kw_only=True, frozen=True):
    instance_id: str | None = None
    region_id: str | None = None
    service_id: str | None = None


class ServerKey(_Wire, kw_only=True, frozen=True):
    region_id: str | None = None
    server_id: str | None = None


class ZoneKey(_Wire, kw_only=True, frozen=True):
    region_id: str | None = None
    service_id: str | None = None
    zone_id: str | None = None


class OperateInstanceRequest(_Wire, kw_only=True, frozen=True):
    """Pull an instance out (`operationComplete` false) or back in (true). `token` is the
    original's audit field, not a credential: credentials go in `Authorization`."""

    extensions: str | None = None
    instance_key: InstanceKey | None = None
    operation: str | None = None
    operation_complete: bool = False
    operator_id: str | None = None
    reason: str | None = None
    token: str | None = None


class OperateServerRequest(_Wire, kw_only=True, frozen=True):
    extensions: str | None = None
    operation: str | None = None
    operation_complete: bool = False
    operator_id: str | None = None
    reason: str | None = None
    server_key: ServerKey | None = None
    token: str | None = None


class InstanceOperations(_Wire, kw_only=True, frozen=True):
    instance_key: InstanceKey
    operations: list[str]


class ServerOperations(_Wire, kw_only=True, frozen=True):
    operations: list[str]
    server_key: ServerKey


class ZoneOperations(_Wire, kw_only=True, frozen=True):
    operations: list[str]
    zone_key: ZoneKey


class InstanceKeyRequest(_Wire, kw_only=True, frozen=True):
    instance_key: InstanceKey | None = None


class ServerKeyRequest(_Wire, kw_only=True, frozen=True):
    server_key: ServerKey | None = None


class ZoneKeyRequest(_Wire, kw_only=True, frozen=True):
    zone_key: ZoneKey | None = None


class RegionRequest(_Wire, kw_only=True, frozen=True):
    region_id: str | None = None


class InstanceDownRequest(_Wire, kw_only=True, frozen=True):
    instance: Instance | None = None


class OperateZoneOperationsRequest(_Wire, kw_only=True, frozen=True):
    extensions: str | None = None
    operation: str | None = None
    operation_complete: bool = False
    operator_id: str | None = None
    reason: str | None = None
    token: str | None = None
    zone_operations_list: list[ZoneOperations] | None = None


class ZoneOperationsListRequest(_Wire, kw_only=True, frozen=True):
    region_id: str | None = None
    service_id: str | None = None
    zone_id: str | None = None


class OperationLogRequest(_Wire, kw_only=True, frozen=True):
    """Filters of the operation logs (equality; blank or null ignored), with paging and order
    (this implementation's addition: the original has neither)."""

    complete: bool | None = None
    group_id: int | None = None
    instance_id: str | None = None
    limit: int | None = None
    name: str | None = None
    newest_first: bool | None = None
    offset: int | None = None
    operation: str | None = None
    operator_id: str | None = None
    region_id: str | None = None
    route_rule_id: int | None = None
    server_id: str | None = None
    service_id: str | None = None
    zone_id: str | None = None


class AuditEntry(_Wire, kw_only=True, frozen=True):
    """One management write: who (token name, operatorId), what, when, before and after."""

    actor: str
    after: list[str]
    before: list[str]
    complete: bool
    create_time: int
    extensions: str | None
    id: int
    instance_id: str | None
    kind: str
    operation: str
    operator_id: str | None
    reason: str | None
    region_id: str
    server_id: str | None
    service_id: str | None
    zone_id: str | None


class ManagedServiceRequest(_Wire, kw_only=True, frozen=True):
    region_id: str | None = None
    service_id: str | None = None
    zone_id: str | None = None


class ManagedServiceResponse(_Wire, kw_only=True, frozen=True):
    """A service as operators see it, with its management groups (none until groups exist)."""

    groups: list[ServiceGroup] | None = None
    response_status: ResponseStatus
    service: Service | None = None


class Group(_Wire, kw_only=True, frozen=True):
    """A management group of a service's instances in one zone (§3.10): instances whose
    `groupId` is its `name` belong to it. `groupKey` is written, never read."""

    app_id: str | None = None
    description: str | None = None
    group_id: int | None = None
    group_key: str | None = None
    metadata: dict[str, str] | None = None
    name: str | None = None
    region_id: str | None = None
    service_id: str | None = None
    status: str | None = None
    zone_id: str | None = None


class GroupWeight(_Wire, kw_only=True, frozen=True):
    app_id: str | None = None
    description: str | None = None
    group_id: int | None = None
    group_key: str | None = None
    metadata: dict[str, str] | None = None
    name: str | None = None
    region_id: str | None = None
    service_id: str | None = None
    status: str | None = None
    weight: int | None = None
    zone_id: str | None = None


class ServiceRouteRule(_Wire, kw_only=True, frozen=True):
    description: str | None = None
    name: str | None = None
    route_rule_id: int | None = None
    service_id: str | None = None
    status: str | None = None
    strategy: str | None = None


class RouteRuleGroup(_Wire, kw_only=True, frozen=True):
    """A group's place in a route rule: `unreleasedWeight` is staged, `weight` is what
    discovery shows (set by a release)."""

    group_id: int | None = None
    route_rule_group_id: int | None = None
    route_rule_id: int | None = None
    unreleased_weight: int | None = None
    weight: int | None = None


class GroupTags(_Wire, kw_only=True, frozen=True):
    group_id: int | None = None
    tags: dict[str, str] | None = None


class GroupInstance(_Wire, kw_only=True, frozen=True):
    """An explicit member of a group, by instance id."""

    group_id: int | None = None
    id: int | None = None
    instance_id: str | None = None


class GroupOperations(_Wire, kw_only=True, frozen=True):
    group_id: int | None = None
    operations: list[str] | None = None


class ServiceInstance(_Wire, kw_only=True, frozen=True):
    """A logical instance: defined by operators, not registered, shown in `logicInstances`."""

    description: str | None = None
    group_id: str | None = None
    health_check_url: str | None = None
    id: int | None = None
    instance_id: str | None = None
    ip: str | None = None
    machine_name: str | None = None
    metadata: dict[str, str] | None = None
    port: int = 0
    protocol: str | None = None
    region_id: str | None = None
    service_id: str | None = None
    url: str | None = None
    zone_id: str | None = None


class GroupTagsWrite(_Wire, kw_only=True, frozen=True):
    extensions: str | None = None
    group_tags_list: list[GroupTags] | None = None
    operation: str | None = None
    operator_id: str | None = None
    reason: str | None = None
    token: str | None = None


class DeleteGroupTagsRequest(_Wire, kw_only=True, frozen=True):
    extensions: str | None = None
    group_id: int | None = None
    operation: str | None = None
    operator_id: str | None = None
    reason: str | None = None
    tag: str | None = None
    token: str | None = None
    value: str | None = None


class GroupInstancesWrite(_Wire, kw_only=True, frozen=True):
    extensions: str | None = None
    group_instance_ids: list[int] | None = None
    group_instances: list[GroupInstance] | None = None
    operation: str | None = None
    operator_id: str | None = None
    reason: str | None = None
    token: str | None = None


class GroupOperationsWrite(_Wire, kw_only=True, frozen=True):
    extensions: str | None = None
    group_operations_list: list[GroupOperations] | None = None
    operation: str | None = None
    operation_complete: bool = False
    operator_id: str | None = None
    reason: str | None = None
    token: str | None = None


class GroupOperationWrite(_Wire, kw_only=True, frozen=True):
    """operate-group-operation: a group by its fields (made if missing) and one operation."""

    app_id: str | None = None
    description: str | None = None
    extensions: str | None = None
    name: str | None = None
    operation: str | None = None
    operation_complete: bool = False
    operator_id: str | None = None
    reason: str | None = None
    region_id: str | None = None
    service_id: str | None = None
    status: str | None = None
    token: str | None = None
    zone_id: str | None = None


class ServiceInstancesWrite(_Wire, kw_only=True, frozen=True):
    extensions: str | None = None
    operation: str | None = None
    operator_id: str | None = None
    reason: str | None = None
    service_instance_ids: list[int] | None = None
    service_instances: list[ServiceInstance] | None = None
    token: str | None = None


class CanaryRequest(_Wire, kw_only=True, frozen=True):
    """update-canary-ips: the canary members of a service (instance ids, as the original)."""

    app_id: str | None = None
    canary_ips: list[str] | None = None
    extensions: str | None = None
    operation: str | None = None
    operator_id: str | None = None
    reason: str | None = None
    service_id: str | None = None
    token: str | None = None


class GroupIdQuery(_Wire, kw_only=True, frozen=True):
    group_id: int | None = None
    instance_id: str | None = None
    tag_id: int | None = None
    tag_key: str | None = None


class ServiceInstancesQuery(_Wire, kw_only=True, frozen=True):
    instance_id: str | None = None
    service_id: str | None = None


class GroupTagsResponse(_Wire, kw_only=True, frozen=True):
    group_tags: GroupTags | None = None
    response_status: ResponseStatus


class AllGroupTagsResponse(_Wire, kw_only=True, frozen=True):
    all_group_tags: list[GroupTags] | None = None
    response_status: ResponseStatus


class GroupInstancesResponse(_Wire, kw_only=True, frozen=True):
    group_instances: list[GroupInstance] | None = None
    response_status: ResponseStatus


class GroupOperationsResponse(_Wire, kw_only=True, frozen=True):
    group_operations: GroupOperations | None = None
    response_status: ResponseStatus


class AllGroupOperationsResponse(_Wire, kw_only=True, frozen=True):
    all_group_operations: list[GroupOperations] | None = None
    response_status: ResponseStatus


class ServiceInstancesResponse(_Wire, kw_only=True, frozen=True):
    response_status: ResponseStatus
    service_instances: list[ServiceInstance] | None = None


class GroupsWrite(_Wire, kw_only=True, frozen=True):
    """insert-groups / update-groups, with the write's context."""

    extensions: str | None = None
    groups: list[Group] | None = None
    operation: str | None = None
    operator_id: str | None = None
    reason: str | None = None
    token: str | None = None


class IdsWrite(_Wire, kw_only=True, frozen=True):
    """delete-groups / delete-route-rules / delete-route-rule-groups."""

    extensions: str | None = None
    group_ids: list[int] | None = None
    operation: str | None = None
    operator_id: str | None = None
    reason: str | None = None
    route_rule_group_ids: list[int] | None = None
    route_rule_ids: list[int] | None = None
    token: str | None = None


class RouteRulesWrite(_Wire, kw_only=True, frozen=True):
    extensions: str | None = None
    operation: str | None = None
    operator_id: str | None = None
    reason: str | None = None
    route_rules: list[ServiceRouteRule] | None = None
    token: str | None = None


class RouteRuleGroupsWrite(_Wire, kw_only=True, frozen=True):
    extensions: str | None = None
    operation: str | None = None
    operator_id: str | None = None
    reason: str | None = None
    route_rule_groups: list[RouteRuleGroup] | None = None
    token: str | None = None


class CreateRouteRuleRequest(_Wire, kw_only=True, frozen=True):
    extensions: str | None = None
    groups: list[GroupWeight] | None = None
    operation: str | None = None
    operator_id: str | None = None
    reason: str | None = None
    route_rule: ServiceRouteRule | None = None
    token: str | None = None


class GroupsQuery(_Wire, kw_only=True, frozen=True):
    app_id: str | None = None
    group_id: int | None = None
    name: str | None = None
    region_id: str | None = None
    service_id: str | None = None
    status: str | None = None
    zone_id: str | None = None


class RouteRulesQuery(_Wire, kw_only=True, frozen=True):
    name: str | None = None
    route_rule_id: int | None = None
    service_id: str | None = None
    status: str | None = None


class RouteRuleGroupsQuery(_Wire, kw_only=True, frozen=True):
    group_id: int | None = None
    route_rule_group_id: int | None = None
    route_rule_id: int | None = None


class GroupsResponse(_Wire, kw_only=True, frozen=True):
    groups: list[Group] | None = None
    response_status: ResponseStatus


class RouteRulesResponse(_Wire, kw_only=True, frozen=True):
    response_status: ResponseStatus
    route_rules: list[ServiceRouteRule] | None = None


class RouteRuleGroupsResponse(_Wire, kw_only=True, frozen=True):
    response_status: ResponseStatus
    route_rule_groups: list[RouteRuleGroup] | None = None


class InstanceOperationsResponse(_Wire, kw_only=True, frozen=True):
    operations: InstanceOperations | None = None
    response_status: ResponseStatus


class ServerOperationsResponse(_Wire, kw_only=True, frozen=True):
    operations: ServerOperations | None = None
    response_status: ResponseStatus


class ZoneOperationsResponse(_Wire, kw_only=True, frozen=True):
    operations: ZoneOperations | None = None
    response_status: ResponseStatus


class AllInstanceOperationsResponse(_Wire, kw_only=True, frozen=True):
    all_instance_operations: list[InstanceOperations] | None = None
    response_status: ResponseStatus


class AllServerOperationsResponse(_Wire, kw_only=True, frozen=True):
    all_server_operations: list[ServerOperations] | None = None
    response_status: ResponseStatus


class AllZoneOperationsResponse(_Wire, kw_only=True, frozen=True):
    all_zone_operations: list[ZoneOperations] | None = None
    response_status: ResponseStatus


class ZoneOperationsListResponse(_Wire, kw_only=True, frozen=True):
    response_status: ResponseStatus
    zone_operations_list: list[ZoneOperations] | None = None


class DownResponse(_Wire, kw_only=True, frozen=True):
    down: bool = False
    response_status: ResponseStatus


class AuditLogResponse(_Wire, kw_only=True, frozen=True):
    """A page of the audit log, and how many entries match in all."""

    logs: list[AuditEntry] | None = None
    response_status: ResponseStatus
    total: int = 0
