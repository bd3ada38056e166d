"""The JSON shapes of the Artemis API, in one place.

Every shape is a msgspec Struct whose fields are declared in the alphabetical order of their
camelCase names, so that encoding gives exactly what the original's Jackson mapper gives: keys
sorted, nulls written, primitives defaulting to 0.

Reading follows Jackson's lenient habits: keys are matched case-insensitively, unknown keys are
ignored and a null for a primitive means its default. The fast path decodes canonical JSON
straight into the Structs (they forbid unknown fields, so any key that is not spelled canonically
makes the fast path fail); only then is the body decoded generically, its keys folded onto the
canonical names, and the result converted. Canonical input, which is what every real client
sends, pays nothing extra.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any, Final, TypeVar, Union, get_args, get_origin

import msgspec

__all__ = [
    "RERUNNABLE",
    "SERVICE_DOWN",
    "AllGroupOperationsResponse",
    "AllGroupTagsResponse",
    "AllInstanceOperationsResponse",
    "AllServerOperationsResponse",
    "AllZoneOperationsResponse",
    "AuditEntry",
    "AuditLogResponse",
    "CanaryRequest",
    "ChecksumsRequest",
    "ChecksumsResponse",
    "ConfigResponse",
    "ConnectionsResponse",
    "CreateRouteRuleRequest",
    "DecodeError",
    "DeleteGroupTagsRequest",
    "DeploymentResponse",
    "DiscoveryConfig",
    "DownResponse",
    "ErrorCode",
    "ErrorResponse",
    "FailedInstance",
    "GetClusterNodeStatusResponse",
    "GetClusterNodesResponse",
    "GetClusterStatusResponse",
    "GetServiceNodesRequest",
    "GetServiceNodesResponse",
    "GetServiceRequest",
    "GetServiceResponse",
    "GetServicesDeltaRequest",
    "GetServicesDeltaResponse",
    "GetServicesRequest",
    "GetServicesResponse",
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
    "HealthResponse",
    "IdsWrite",
    "Instance",
    "InstanceChange",
    "InstanceDownRequest",
    "InstanceKey",
    "InstanceKeyRequest",
    "InstanceOperations",
    "InstanceOperationsResponse",
    "InstancesRequest",
    "InstancesResponse",
    "LeaseCopy",
    "LeaseStatus",
    "LeasesRequest",
    "LeasesResponse",
    "LeasesStatusRequest",
    "LeasesStatusResponse",
    "LookupRequest",
    "LookupResponse",
    "ManagedServiceRequest",
    "ManagedServiceResponse",
    "OperateInstanceRequest",
    "OperateServerRequest",
    "OperateZoneOperationsRequest",
    "OperationLogRequest",
    "PeerReplicationStatus",
    "PushedChange",
    "RegionRequest",
    "RepairStatus",
    "ReplicationLag",
    "ReplicationStatusResponse",
    "ResponseStatus",
    "RouteRule",
    "RouteRuleGroup",
    "RouteRuleGroupsQuery",
    "RouteRuleGroupsResponse",
    "RouteRuleGroupsWrite",
    "RouteRulesQuery",
    "RouteRulesResponse",
    "RouteRulesWrite",
    "RuntimeResponse",
    "SelfPreservationResponse",
    "ServerKey",
    "ServerKeyRequest",
    "ServerOperations",
    "ServerOperationsResponse",
    "Service",
    "ServiceGroup",
    "ServiceInstance",
    "ServiceInstancesQuery",
    "ServiceInstancesResponse",
    "ServiceInstancesWrite",
    "ServiceNode",
    "ServiceNodeStatus",
    "ServiceRouteRule",
    "StatusOnlyResponse",
    "Subscription",
    "Zone",
    "ZoneKey",
    "ZoneKeyRequest",
    "ZoneOperations",
    "ZoneOperationsListRequest",
    "ZoneOperationsListResponse",
    "ZoneOperationsResponse",
    "decode",
    "encode",
]


class _Wire(
    msgspec.Struct,
    rename="camel",
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=False,
    frozen=True,
):
    """Base of every wire shape: camelCase, keyword-only, nulls written."""


class Instance(_Wire, kw_only=True, frozen=True, gc=False):
    """A registered instance of a service, exactly as the client sent it (§3.1)."""

    group_id: str | None = None
    health_check_url: str | None = None
    instance_id: str | None = None
    ip: str | None = None
    machine_name: str | None = None
    metadata: dict[str, str] | None = None
    port: int = 0
    protocol: str | None = None
    region_id: str | None = None
    service_id: str | None = None
    status: str | None = None
    url: str | None = None
    zone_id: str | None = None


class ErrorCode(enum.StrEnum):
    """Every `errorCode` of the protocol (§2), the one place server, client and CLI name them.
    A member is its text (`ErrorCode.BAD_REQUEST == "bad-request"`) and encodes as it."""

    SUCCESS = "success"
    PARTIAL_FAIL = "partial_fail"
    BAD_REQUEST = "bad-request"
    RATE_LIMITED = "rate-limited"
    NO_PERMISSION = "no-permission"
    DATA_NOT_FOUND = "data-not-found"
    INTERNAL_SERVICE_ERROR = "internal-service-error"
    SERVICE_UNAVAILABLE = "service-unavailable"
    UNKNOWN = "unknown"


# The original's classes of codes (common/ErrorCodes.java): worth another try, and a sign the node
# cannot serve (only with status "fail").
RERUNNABLE: Final = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNKNOWN})
SERVICE_DOWN: Final = frozenset({ErrorCode.INTERNAL_SERVICE_ERROR, ErrorCode.SERVICE_UNAVAILABLE})


class ResponseStatus(_Wire, kw_only=True, frozen=True, gc=False):
    error_code: str
    message: str
    status: str


class FailedInstance(_Wire, kw_only=True, frozen=True, gc=False):
    error_code: str
    error_message: str
    instance: Instance | None


class InstancesRequest(_Wire, kw_only=True, frozen=True):
    """The body of register, heartbeat and unregister (client and replication paths)."""

    instances: list[Instance | None] | None = None


class InstancesResponse(_Wire, kw_only=True, frozen=True):
    failed_instances: list[FailedInstance] | None = None
    response_status: ResponseStatus


class DiscoveryConfig(_Wire, kw_only=True, frozen=True):
    discovery_data: dict[str, str] | None = None
    region_id: str | None = None
    service_id: str | None = None
    zone_id: str | None = None


class Subscription(_Wire, kw_only=True, frozen=True):
    """A push subscription: a DiscoveryConfig, plus the `revision` token of the last change the
    client saw, to be sent what it missed."""

    discovery_data: dict[str, str] | None = None
    region_id: str | None = None
    revision: str | None = None
    service_id: str | None = None
    zone_id: str | None = None


class LookupRequest(_Wire, kw_only=True, frozen=True):
    discovery_configs: list[DiscoveryConfig | None] | None = None
    region_id: str | None = None
    zone_id: str | None = None


class GetServiceRequest(_Wire, kw_only=True, frozen=True):
    discovery_config: DiscoveryConfig | None = None
    region_id: str | None = None
    zone_id: str | None = None


class GetServicesRequest(_Wire, kw_only=True, frozen=True):
    region_id: str | None = None
    zone_id: str | None = None


class GetServicesDeltaRequest(_Wire, kw_only=True, frozen=True):
    region_id: str | None = None
    version: int = 0
    zone_id: str | None = None


class ServiceGroup(_Wire, kw_only=True, frozen=True):
    group_key: str | None = None
    instance_ids: list[str] | None = None
    instances: list[Instance] | None = None
    metadata: dict[str, str] | None = None
    weight: int | None = None


class RouteRule(_Wire, kw_only=True, frozen=True):
    groups: list[ServiceGroup] | None = None
    route_id: str | None = None
    strategy: str | None = None


class Service(_Wire, kw_only=True, frozen=True):
    instances: list[Instance] | None = None
    logic_instances: list[Instance] | None = None
    metadata: dict[str, str] | None = None
    route_rules: list[RouteRule] | None = None
    service_id: str | None = None


class GetServiceResponse(_Wire, kw_only=True, frozen=True):
    checksum: str | None = None
    response_status: ResponseStatus
    service: Service | None = None


class LookupResponse(_Wire, kw_only=True, frozen=True):
    response_status: ResponseStatus
    services: list[Service] | None = None


class GetServicesResponse(_Wire, kw_only=True, frozen=True):
    checksum: str | None = None
    response_status: ResponseStatus
    services: list[Service] | None = None
    version: int = 0


class PushedChange(_Wire, kw_only=True, frozen=True):
    """A pushed InstanceChange with its revision token."""

    change_time: int = 0
    change_type: str | None = None
    instance: Instance | None = None
    revision: str | None = None


class InstanceChange(_Wire, kw_only=True, frozen=True, gc=False):
    change_time: int
    change_type: str
    instance: Instance


class GetServicesDeltaResponse(_Wire, kw_only=True, frozen=True):
    checksum: str | None = None
    delta: dict[str, list[InstanceChange]] | None = None
    response_status: ResponseStatus
    version: int = 0


class Zone(_Wire, kw_only=True, frozen=True):
    metadata: dict[str, str] | None = None
    region_id: str | None = None
    zone_id: str | None = None


class ServiceNode(_Wire, kw_only=True, frozen=True):
    url: str
    zone: Zone


class ServiceNodeStatus(_Wire, kw_only=True, frozen=True):
    allow_discovery_from_other_zone: bool | None = None
    allow_registry_from_other_zone: bool | None = None
    can_service_discovery: bool | None = None
    can_service_registry: bool | None = None
    node: ServiceNode
    status: str


class GetClusterNodeStatusResponse(_Wire, kw_only=True, frozen=True):
    node_status: ServiceNodeStatus | None = None
    response_status: ResponseStatus


class GetClusterStatusResponse(_Wire, kw_only=True, frozen=True):
    node_count: int = 0
    nodes_status: list[ServiceNodeStatus] | None = None
    response_status: ResponseStatus


class GetServiceNodesRequest(_Wire, kw_only=True, frozen=True):
    region_id: str | None = None
    zone_id: str | None = None


class GetServiceNodesResponse(_Wire, kw_only=True, frozen=True):
    nodes: list[ServiceNode] | None = None
    response_status: ResponseStatus


class LeasesStatusRequest(_Wire, kw_only=True, frozen=True):
    service_ids: list[str] | None = None


class LeaseStatus(_Wire, kw_only=True, frozen=True):
    creation_time: str
    evition_time: str  # sic: the original's spelling
    instance: str
    renewal_time: str
    ttl: int


class ChecksumsRequest(_Wire, kw_only=True, frozen=True):
    """`/api/replication/registry/checksums.json`: the caller's region and its registry
    checksum (hex); the answer lists per-service checksums only when they differ."""

    checksum: str | None = None
    region_id: str | None = None


class ChecksumsResponse(_Wire, kw_only=True, frozen=True):
    checksum: str | None = None
    response_status: ResponseStatus
    services: dict[str, str] | None = None


class LeasesRequest(_Wire, kw_only=True, frozen=True):
    """`/api/replication/registry/leases.json`: the leases of these services (all if null)."""

    region_id: str | None = None
    service_ids: list[str] | None = None


class LeaseCopy(_Wire, kw_only=True, frozen=True, gc=False):
    """One lease as a peer copies it: the instance, when it was registered (epoch ms) and how
    long ago it was last renewed (ms), so the copy expires when the original does."""

    age_ms: int
    created_ms: int
    instance: Instance


class LeasesResponse(_Wire, kw_only=True, frozen=True):
    leases: list[LeaseCopy] | None = None
    response_status: ResponseStatus


# --- management (§4.6, §4.8, §4.10) ---------------------------------------------------------


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


class StatusOnlyResponse(_Wire, kw_only=True, frozen=True):
    response_status: ResponseStatus


# --- answers the server writes by hand (described here for the OpenAPI document) ----------


class ErrorResponse(_Wire, kw_only=True, frozen=True):
    """A failed answer without an endpoint's payload: 404 and 405, or an endpoint with none."""

    response_status: ResponseStatus


class GetClusterNodesResponse(_Wire, kw_only=True, frozen=True):
    """`/api/cluster/nodes.json`: the status of every node of the cluster."""

    nodes: list[ServiceNodeStatus] | None = None
    response_status: ResponseStatus


class LeasesStatusResponse(_Wire, kw_only=True, frozen=True):
    """`/api/status/leases.json` and `legacy-leases.json`: self-preservation state and leases
    by service id."""

    is_safe: bool = False
    is_safe_check_enabled: bool = False
    lease_count: int = 0
    lease_update_count_last_time_window: int = 0
    lease_update_max_count: int = 0
    lease_update_max_count_last_update_time: int = 0
    leases: dict[str, list[LeaseStatus]] | None = None
    response_status: ResponseStatus


class ConfigResponse(_Wire, kw_only=True, frozen=True):
    """`/api/status/config.json`: every public setting as text (secrets masked), and the
    precedence of the places settings come from."""

    properties: dict[str, str] | None = None
    response_status: ResponseStatus
    sources: dict[str, int] | None = None


class DeploymentResponse(_Wire, kw_only=True, frozen=True):
    """`/api/status/deployment.json`: where this node runs."""

    app_id: str | None = None
    ip: str | None = None
    machine_name: str | None = None
    path: str | None = None
    port: int = 0
    properties: dict[str, str] | None = None
    protocol: str | None = None
    region_id: str | None = None
    response_status: ResponseStatus
    sources: dict[str, int] | None = None
    zone_id: str | None = None


class RuntimeResponse(_Wire, kw_only=True, frozen=True):
    """`/api/status/runtime.json`: the node's counters; a failed answer has only
    `responseStatus`."""

    change_log_size: int = 0
    connections: dict[str, int] | None = None
    evicted_total: int = 0
    instances: int = 0
    longest_step_ms: dict[str, dict[str, float]] | None = None
    loop_lag: dict[str, float] | None = None
    pauses: dict[str, Any] | None = None
    push: dict[str, int] | None = None
    rate_limited: dict[str, dict[str, int]] | None = None  # limiter -> operation -> refusals
    response_status: ResponseStatus
    revision: int = 0
    services: int = 0
    snapshot_versions: list[int] | None = None
    snapshots_taken: int = 0
    uptime_seconds: float = 0.0


class ConnectionsResponse(_Wire, kw_only=True, frozen=True):
    """`/api/status/message/connections.json`: WebSocket session counts, as strings like the
    original's; a failed answer has only `responseStatus`."""

    discovery: str | None = None
    registry: str | None = None
    response_status: ResponseStatus | None = None


class SelfPreservationResponse(_Wire, kw_only=True, frozen=True):
    """`/api/admin/self-preservation.json`: whether self-preservation is on and holding, for
    the leases and the legacy leases."""

    enabled: bool | None = None
    is_safe: bool | None = None
    legacy_enabled: bool | None = None
    legacy_is_safe: bool | None = None
    response_status: ResponseStatus


class ReplicationLag(_Wire, kw_only=True, frozen=True):
    """Time from a client write here to its acknowledgement by the peer, last minute."""

    max_ms: float
    p50_ms: float
    p99_ms: float
    samples: int


class RepairStatus(_Wire, kw_only=True, frozen=True):
    """Anti-entropy with one peer: checksum rounds, rounds found in sync, services fetched,
    instances changed here, instances unregistered there."""

    in_sync: int
    instances: int
    rounds: int
    services: int
    stale_unregistered: int


class PeerReplicationStatus(_Wire, kw_only=True, frozen=True):
    """One peer: its polled status, its replication queue and its counters."""

    backoff_failures: int
    can_service_discovery: bool | None
    can_service_registry: bool | None
    coalesced: int
    dropped_expired: int
    dropped_failed: int
    dropped_overflow: int
    lag: ReplicationLag
    last_answer_time: int
    last_error: str
    queued: int
    repair: RepairStatus
    requests: int
    retried: int
    send_failures: int
    sent: int
    skipped: int
    status: str
    submitted: int
    url: str
    zone: str


class ReplicationStatusResponse(_Wire, kw_only=True, frozen=True):
    """`/api/status/replication.json`: bootstrap, replication and repair, per peer."""

    bootstrap: dict[str, Any]
    cpu_seconds: float
    node_id: str | None
    peers: list[PeerReplicationStatus]
    response_status: ResponseStatus
    self: str | None


class HealthResponse(_Wire, kw_only=True, frozen=True):
    """`/health`: the node's status and instance count; a failed answer has only
    `responseStatus`."""

    instances: int = 0
    response_status: ResponseStatus | None = None
    status: str | None = None


# --- decoding -------------------------------------------------------------------------------

T = TypeVar("T")


class DecodeError(ValueError):
    """The body is not JSON of the expected shape; the message names the problem."""


_ENCODER: Final = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def encode(value: Any) -> bytes:
    """Encode a wire value to JSON bytes (keys in declaration, hence alphabetical, order)."""
    return _ENCODER.encode(value)


def decode(data: bytes, kind: type[T]) -> T:
    """Decode `data` into `kind`, Jackson-style lenient; raise DecodeError naming the problem."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        return typing.cast(T, decoder.decode(data))
    except msgspec.ValidationError:
        pass  # maybe only spelled differently: try the lenient path below
    except msgspec.DecodeError as exc:
        raise DecodeError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise DecodeError(_TOO_DEEP) from None
    try:
        raw = msgspec.json.decode(data)
        return msgspec.convert(_fold(raw, kind), kind)
    except msgspec.ValidationError as exc:  # (a subclass of msgspec.DecodeError)
        raise DecodeError(str(exc)) from None
    except msgspec.DecodeError as exc:  # pragma: no cover - the typed decoder saw it first
        raise DecodeError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise DecodeError(_TOO_DEEP) from None


_TOO_DEEP: Final = "JSON is nested too deeply"


class _Shape:
    """How to fold one Struct's keys: canonical name by lower-case name, and field types."""

    __slots__ = ("by_lower", "non_null", "types")

    def __init__(self, cls: type[msgspec.Struct]) -> None:
        hints = typing.get_type_hints(cls)
        self.by_lower: dict[str, str] = {}
        self.types: dict[str, Any] = {}
        self.non_null: set[str] = set()
        for field in msgspec.structs.fields(cls):
            self.by_lower[field.encode_name.lower()] = field.encode_name
            tp = hints[field.name]
            self.types[field.encode_name] = tp
            if not _admits_none(tp) and field.default is not msgspec.NODEFAULT:
                self.non_null.add(field.encode_name)


_shapes: dict[type[Any], _Shape] = {}


def _admits_none(tp: Any) -> bool:
    return tp is Any or (_is_union(tp) and type(None) in get_args(tp))


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _fold(raw: Any, tp: Any) -> Any:
    """Rename keys of `raw` to the canonical names of `tp`, drop unknown keys and nulls for
    primitives; leave anything else for msgspec.convert to judge."""
    if _is_union(tp):
        members = [a for a in get_args(tp) if a is not type(None)]
        return _fold(raw, members[0]) if len(members) == 1 else raw
    origin = get_origin(tp)
    if origin is list and isinstance(raw, list):
        (item,) = get_args(tp)
        return [_fold(x, item) for x in raw]
    if origin is dict and isinstance(raw, dict):
        _, value_type = get_args(tp)
        return {k: _fold(v, value_type) for k, v in raw.items()}
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct) and isinstance(raw, dict):
        shape = _shapes.get(tp)
        if shape is None:
            shape = _shapes[tp] = _Shape(tp)
        out: dict[str, Any] = {}
        for key, value in raw.items():
            name = shape.by_lower.get(key.lower()) if isinstance(key, str) else None
            if name is None or (value is None and name in shape.non_null):
                continue
            out[name] = _fold(value, shape.types[name])
        return out
    return raw
