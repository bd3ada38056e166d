"""The OpenAPI 3.1 document of a node's HTTP endpoints, served at `/openapi.json`.

The document is built from the route table the node serves, so it lists exactly those paths and
methods; what each one takes and answers comes from `ENDPOINTS` below, the schemas from the wire
Structs. A route missing from `ENDPOINTS` makes the builder raise: an endpoint cannot be added
without being described. WebSocket endpoints are not OpenAPI operations; the document's
description lists them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, NamedTuple

import msgspec

from artemis import __version__, wire
from artemis.server.api.status import NodeStatusSwitch, SelfPreservationSwitch
from artemis.server.http import JSON, Request, Route
from artemis.server.observability.metrics import CONTENT_TYPE

__all__ = ["ENDPOINTS", "PATH", "Endpoint", "Query", "UndocumentedRoute", "openapi_document",
           "openapi_route"]

PATH: Final = "/openapi.json"


class UndocumentedRoute(LookupError):
    """A route of the table has no entry in `ENDPOINTS`."""


class Query(NamedTuple):
    """A query parameter of an endpoint's GET form."""

    name: str
    schema: dict[str, Any]
    description: str
    required: bool = False
    explode: bool = True


class Endpoint(NamedTuple):
    """What one path does: a summary, the body its POST reads (None: no body is read), its 200
    answer (a Struct or any type msgspec can describe) and, for GET, its query parameters;
    `statuses` are other HTTP statuses it answers with the same shape, and `admin` says that
    its POST needs the admin token."""

    summary: str
    request: type[msgspec.Struct] | None
    answer: Any
    query: tuple[Query, ...] = ()
    description: str = ""
    content_type: str = JSON
    statuses: Mapping[int, str] = MappingProxyType({})
    admin: bool = False


_REGION: Final = Query("regionId", {"type": "string"},
                       "Region asked for; another than the node's is refused `no-permission`, "
                       "none means the node's.")
_ZONE: Final = Query("zoneId", {"type": "string"},
                     "Zone asked for; none means the node's.")
_APP_IDS: Final = Query("appIds", {"type": "array", "items": {"type": "string"}},
                        "Service ids to narrow the answer to, comma-separated (the parameter may "
                        "also be repeated); none means every service.", explode=False)
_REGISTRY: Final = ("A batch is checked as a whole first (rate limit, `instances` missing, empty "
                    "or over `max_batch`, node not serving), then each instance on its own: a "
                    "failing one is listed in `failedInstances` and the answer is "
                    "`partial_fail`.")
_UP_NODES: Final = ("The nodes (this one) serving {what} for the region and zone asked; "
                    "`data-not-found` when none.")

_MANAGEMENT: Final = ("Needs the management database (else `service-unavailable`) and a bearer "
                      "token with the {role} role (else `no-permission`).")
_REPLICATION: Final = ("Called by peer nodes. As the registry endpoint, but accepted while the "
                       "node is starting, checked for region only (not zone), and rate-limited "
                       "by the `replication` limiter.")

ENDPOINTS: Final[Mapping[str, Endpoint]] = {
    "/api/replication/registry/register.json": Endpoint(
        "Register instances (from a peer)", wire.InstancesRequest, wire.InstancesResponse,
        description=_REPLICATION),
    "/api/replication/registry/heartbeat.json": Endpoint(
        "Renew leases (from a peer)", wire.InstancesRequest, wire.InstancesResponse,
        description=_REPLICATION + " An instance the node does not know is registered, so a "
        "register a peer lost heals."),
    "/api/replication/registry/unregister.json": Endpoint(
        "Unregister instances (from a peer)", wire.InstancesRequest, wire.InstancesResponse,
        description=_REPLICATION),
    "/api/replication/registry/services.json": Endpoint(
        "Copy the whole registry (for a starting peer)", wire.GetServicesRequest,
        wire.LookupResponse,
        (Query("regionId", {"type": "string"}, "This node's region (required).", required=True),
         _ZONE),
        description="Every service with instances, unfiltered. Another region is refused "
        "`no-permission`."),
    "/api/replication/registry/checksums.json": Endpoint(
        "Compare registry checksums (anti-entropy)", wire.ChecksumsRequest,
        wire.ChecksumsResponse,
        description="Called by peer nodes. Answers this node's registry checksum (hex) and, "
        "when the caller's `checksum` differs, the checksum of every service by lower-case "
        "service id; `services` is null when the registries are equal."),
    "/api/replication/registry/leases.json": Endpoint(
        "Copy leases (bootstrap and repair)", wire.LeasesRequest, wire.LeasesResponse,
        description="Called by peer nodes. The leases of `serviceIds` (every service when "
        "null): each instance with when it was registered (`createdMs`, epoch ms) and how long "
        "ago it was renewed (`ageMs`), so a copy expires when the original does."),
    "/api/registry/register.json": Endpoint(
        "Register instances", wire.InstancesRequest, wire.InstancesResponse,
        description="Creates (or replaces) the lease of each instance. " + _REGISTRY),
    "/api/registry/heartbeat.json": Endpoint(
        "Renew the leases of instances", wire.InstancesRequest, wire.InstancesResponse,
        description="An unknown or expired instance fails `data-not-found` (register it "
        "again). " + _REGISTRY),
    "/api/registry/unregister.json": Endpoint(
        "Unregister instances", wire.InstancesRequest, wire.InstancesResponse,
        description="Removes each lease at once; an unknown instance is a success. " + _REGISTRY),
    "/api/discovery/lookup.json": Endpoint(
        "Look services up", wire.LookupRequest, wire.LookupResponse,
        description="Answers the live registry; a service with no instances answers "
        "`\"instances\": []`. A node that cannot serve discovery answers `service-unavailable`."),
    "/api/discovery/service.json": Endpoint(
        "Get one service", wire.GetServiceRequest, wire.GetServiceResponse,
        (Query("serviceId", {"type": "string"}, "The service's id.", required=True),
         _REGION, _ZONE),
        description="The service from the live registry, with its checksum."),
    "/api/discovery/services.json": Endpoint(
        "Get every service", wire.GetServicesRequest, wire.GetServicesResponse,
        description="The newest snapshot with its `version`; only services with instances "
        "appear."),
    "/api/discovery/services-delta.json": Endpoint(
        "Get the changes since a version", wire.GetServicesDeltaRequest,
        wire.GetServicesDeltaResponse,
        description="The changes (`new`, `delete`, `change`) from a kept `version` to the "
        "newest; a version that is not kept answers `data-not-found`."),
    "/api/status/node.json": Endpoint(
        "This node's status", None, wire.GetClusterNodeStatusResponse),
    "/api/status/cluster.json": Endpoint(
        "The cluster's status", None, wire.GetClusterStatusResponse),
    "/api/status/leases.json": Endpoint(
        "Self-preservation state and leases", wire.LeasesStatusRequest,
        wire.LeasesStatusResponse, (_APP_IDS,),
        description="`serviceIds` (POST) or `appIds` (GET) narrows it to some services."),
    "/api/status/legacy-leases.json": Endpoint(
        "Self-preservation state and legacy leases", wire.LeasesStatusRequest,
        wire.LeasesStatusResponse, (_APP_IDS,),
        description="The same as leases.json, for the `java_registry` (90 s) leases."),
    "/api/status/config.json": Endpoint(
        "The node's settings", None, wire.ConfigResponse,
        description="Every setting as text, secrets masked."),
    "/api/status/deployment.json": Endpoint(
        "Where the node runs", None, wire.DeploymentResponse,
        description="Region, zone, address, port and context path of the node."),
    "/api/status/runtime.json": Endpoint(
        "The node's runtime counters", None, wire.RuntimeResponse,
        (Query("window", {"type": "number"},
               "Seconds of event-loop lag samples to summarize; none (or not positive) means "
               "every sample kept."),),
        description="Instances, services, revision, snapshot versions, evictions, rate-limit "
        "refusals, push sessions, event-loop lag."),
    "/api/status/replication.json": Endpoint(
        "Bootstrap, replication and repair, per peer", None, wire.ReplicationStatusResponse,
        description="For each peer: its polled status, replication queue depth, writes sent, "
        "coalesced, retried, dropped (overflow, expired, failed), skipped while it did not "
        "answer, the replication lag over the last minute, and anti-entropy rounds and "
        "repairs; the bootstrap's outcome; CPU seconds spent on all of it."),
    "/api/status/message/connections.json": Endpoint(
        "WebSocket session counts", None, wire.ConnectionsResponse,
        description="As the original gives them: counts as strings."),
    "/api/cluster/nodes.json": Endpoint(
        "The cluster's nodes", None, wire.GetClusterNodesResponse),
    "/api/cluster/up-registry-nodes.json": Endpoint(
        "Nodes serving registry", wire.GetServiceNodesRequest, wire.GetServiceNodesResponse,
        (_REGION, _ZONE), description=_UP_NODES.format(what="registry")),
    "/api/cluster/up-discovery-nodes.json": Endpoint(
        "Nodes serving discovery", wire.GetServiceNodesRequest, wire.GetServiceNodesResponse,
        (_REGION, _ZONE), description=_UP_NODES.format(what="discovery")),
    "/api/management/operate-instance.json": Endpoint(
        "Pull an instance out or back in", wire.OperateInstanceRequest,
        wire.StatusOnlyResponse, description="`operationComplete` false adds `operation` to the "
        "instance (pulled out: hidden from discovery, still registered), true removes it (back "
        "in once no operation is left). Audited; applied on every node within "
        "`management_poll_interval`. " + _MANAGEMENT.format(role="write")),
    "/api/management/operate-server.json": Endpoint(
        "Pull a server (machine) out or back in", wire.OperateServerRequest,
        wire.StatusOnlyResponse, description="The same for every instance whose `ip` is the "
        "`serverId`. " + _MANAGEMENT.format(role="write")),
    "/api/management/instance-operations.json": Endpoint(
        "An instance's operations", wire.InstanceKeyRequest, wire.InstanceOperationsResponse,
        description="`operations` is null when none. " + _MANAGEMENT.format(role="read")),
    "/api/management/server-operations.json": Endpoint(
        "A server's operations", wire.ServerKeyRequest, wire.ServerOperationsResponse,
        description="`operations` is null when none. " + _MANAGEMENT.format(role="read")),
    "/api/management/all-instance-operations.json": Endpoint(
        "Every pulled-out instance", wire.RegionRequest, wire.AllInstanceOperationsResponse,
        (_REGION,), description=_MANAGEMENT.format(role="read")),
    "/api/management/all-server-operations.json": Endpoint(
        "Every pulled-out server", wire.RegionRequest, wire.AllServerOperationsResponse,
        (_REGION,), description=_MANAGEMENT.format(role="read")),
    "/api/management/instance-down.json": Endpoint(
        "Is this instance pulled out?", wire.InstanceDownRequest, wire.DownResponse,
        description="By its own key, its server (ip) or its zone. "
        + _MANAGEMENT.format(role="read")),
    "/api/management/services.json": Endpoint(
        "Every service as operators see it", wire.GetServicesRequest, wire.GetServicesResponse,
        (_REGION, _ZONE), description="Every registered instance, pulled out or not: `status` "
        "is `down` when management hides it, `up` otherwise, and its metadata gains "
        "`creationTime`, `renewalTime` and `ttl` (ms, as text); logical instances likewise, "
        "and the route rules discovery shows. " + _MANAGEMENT.format(
            role="read")),
    "/api/management/service.json": Endpoint(
        "One service as operators see it", wire.ManagedServiceRequest,
        wire.ManagedServiceResponse, description="As services.json, for one service, with "
        "every management group of the service (key, tags as metadata, explicit members). "
        + _MANAGEMENT.format(role="read")),
    "/api/management/server-down.json": Endpoint(
        "Is this server pulled out?", wire.ServerKeyRequest, wire.DownResponse,
        description=_MANAGEMENT.format(role="read")),
    "/api/management/zone/operate-zone-operations.json": Endpoint(
        "Pull services' zones out or back in", wire.OperateZoneOperationsRequest,
        wire.StatusOnlyResponse, description="Each entry's `operations` (or the request's "
        "`operation`) added or removed for its zone key. " + _MANAGEMENT.format(role="write")),
    "/api/management/zone/get-all-zone-operations.json": Endpoint(
        "Every pulled-out zone", wire.RegionRequest, wire.AllZoneOperationsResponse, (_REGION,),
        description=_MANAGEMENT.format(role="read")),
    "/api/management/zone/get-zone-operations.json": Endpoint(
        "A zone's operations", wire.ZoneKeyRequest, wire.ZoneOperationsResponse,
        description=_MANAGEMENT.format(role="read")),
    "/api/management/zone/get-zone-operations-list.json": Endpoint(
        "Zone operations by service and zone", wire.ZoneOperationsListRequest,
        wire.ZoneOperationsListResponse, description=_MANAGEMENT.format(role="read")),
    "/api/management/zone/is-zone-down.json": Endpoint(
        "Is this zone of a service pulled out?", wire.ZoneKeyRequest, wire.DownResponse,
        description=_MANAGEMENT.format(role="read")),
    "/api/management/log/instance-operation-logs.json": Endpoint(
        "Audit log of instance operations", wire.OperationLogRequest, wire.AuditLogResponse,
        description="Equality filters, `offset`/`limit` (100, at most 1,000) and "
        "`newestFirst` (true). " + _MANAGEMENT.format(role="read")),
    "/api/management/log/server-operation-logs.json": Endpoint(
        "Audit log of server operations", wire.OperationLogRequest, wire.AuditLogResponse,
        description=_MANAGEMENT.format(role="read")),
    "/api/management/log/zone-operation-logs.json": Endpoint(
        "Audit log of zone operations", wire.OperationLogRequest, wire.AuditLogResponse,
        description=_MANAGEMENT.format(role="read")),
    "/api/management/log/group-operation-logs.json": Endpoint(
        "Audit log of group operations", wire.OperationLogRequest, wire.AuditLogResponse,
        description=_MANAGEMENT.format(role="read")),
    "/api/management/log/group-logs.json": Endpoint(
        "Audit log of groups", wire.OperationLogRequest, wire.AuditLogResponse,
        description=_MANAGEMENT.format(role="read")),
    "/api/management/log/route-rule-logs.json": Endpoint(
        "Audit log of route rules", wire.OperationLogRequest, wire.AuditLogResponse,
        description=_MANAGEMENT.format(role="read")),
    "/api/management/log/route-rule-group-logs.json": Endpoint(
        "Audit log of route rules' groups", wire.OperationLogRequest, wire.AuditLogResponse,
        description=_MANAGEMENT.format(role="read")),
    "/api/management/log/group-instance-logs.json": Endpoint(
        "Audit log of groups' explicit members", wire.OperationLogRequest, wire.AuditLogResponse,
        description=_MANAGEMENT.format(role="read")),
    "/api/management/log/service-instance-logs.json": Endpoint(
        "Audit log of logical instances", wire.OperationLogRequest, wire.AuditLogResponse,
        description=_MANAGEMENT.format(role="read")),
    "/api/management/log/group-tag-logs.json": Endpoint(
        "Audit log of group tags", wire.OperationLogRequest, wire.AuditLogResponse,
        description=_MANAGEMENT.format(role="read")),
    "/api/management/log/audit.json": Endpoint(
        "The whole audit log", wire.OperationLogRequest, wire.AuditLogResponse,
        description="Every management write: who (`actor`: the token's name; `operatorId`), "
        "what, when, the target's operations before and after. "
        + _MANAGEMENT.format(role="read")),
    "/api/management/group/insert-groups.json": Endpoint(
        "Add groups", wire.GroupsWrite, wire.StatusOnlyResponse,
        description="Each group by (serviceId, regionId, zoneId, name): a new one is added, a "
        "deleted one revived unchanged. Audited. " + _MANAGEMENT.format(role="write")),
    "/api/management/group/update-groups.json": Endpoint(
        "Add or change groups", wire.GroupsWrite, wire.StatusOnlyResponse,
        description="As insert-groups, and an existing group takes the appId, description and "
        "status given. " + _MANAGEMENT.format(role="write")),
    "/api/management/group/delete-groups.json": Endpoint(
        "Delete groups", wire.IdsWrite, wire.StatusOnlyResponse,
        description="`groupIds`; deleted groups leave their route rules. "
        + _MANAGEMENT.format(role="write")),
    "/api/management/group/get-groups.json": Endpoint(
        "Find groups", wire.GroupsQuery, wire.GroupsResponse,
        description="Equality filters, from the database. " + _MANAGEMENT.format(role="read")),
    "/api/management/group/get-all-groups.json": Endpoint(
        "Every group", wire.RegionRequest, wire.GroupsResponse, (_REGION,),
        description="As the node applies them. " + _MANAGEMENT.format(role="read")),
    "/api/management/group/insert-route-rules.json": Endpoint(
        "Add route rules", wire.RouteRulesWrite, wire.StatusOnlyResponse,
        description="Each rule by (serviceId, name): a new one is added, a deleted one revived "
        "unchanged. " + _MANAGEMENT.format(role="write")),
    "/api/management/group/update-route-rules.json": Endpoint(
        "Add or change route rules", wire.RouteRulesWrite, wire.StatusOnlyResponse,
        description="As insert-route-rules, and an existing rule takes the description, status "
        "and strategy given. " + _MANAGEMENT.format(role="write")),
    "/api/management/group/delete-route-rules.json": Endpoint(
        "Delete route rules", wire.IdsWrite, wire.StatusOnlyResponse,
        description="`routeRuleIds`. " + _MANAGEMENT.format(role="write")),
    "/api/management/group/get-route-rules.json": Endpoint(
        "Find route rules", wire.RouteRulesQuery, wire.RouteRulesResponse,
        description="Equality filters, from the database. " + _MANAGEMENT.format(role="read")),
    "/api/management/group/get-all-route-rules.json": Endpoint(
        "Every route rule", wire.RegionRequest, wire.RouteRulesResponse, (_REGION,),
        description=_MANAGEMENT.format(role="read")),
    "/api/management/group/create-route-rule.json": Endpoint(
        "Create a route rule with its groups", wire.CreateRouteRuleRequest,
        wire.StatusOnlyResponse,
        description="One transaction: the rule, its groups (added or revived) and their "
        "weights, staged (unreleased) until release-route-rule-groups. "
        + _MANAGEMENT.format(role="write")),
    "/api/management/group/insert-route-rule-groups.json": Endpoint(
        "Stage groups' weights in route rules", wire.RouteRuleGroupsWrite,
        wire.StatusOnlyResponse,
        description="`unreleasedWeight` (0 to 10,000) of each (routeRuleId, groupId); discovery "
        "shows it once released. " + _MANAGEMENT.format(role="write")),
    "/api/management/group/update-route-rule-groups.json": Endpoint(
        "Stage groups' weights in route rules", wire.RouteRuleGroupsWrite,
        wire.StatusOnlyResponse, description="The same as insert-route-rule-groups. "
        + _MANAGEMENT.format(role="write")),
    "/api/management/group/release-route-rule-groups.json": Endpoint(
        "Release staged weights", wire.RouteRuleGroupsWrite, wire.StatusOnlyResponse,
        description="Each (routeRuleId, groupId)'s weight becomes its unreleased weight: what "
        "discovery shows. " + _MANAGEMENT.format(role="write")),
    "/api/management/group/delete-route-rule-groups.json": Endpoint(
        "Take groups out of route rules", wire.IdsWrite, wire.StatusOnlyResponse,
        description="`routeRuleGroupIds`. " + _MANAGEMENT.format(role="write")),
    "/api/management/group/get-route-rule-groups.json": Endpoint(
        "Find groups of route rules", wire.RouteRuleGroupsQuery, wire.RouteRuleGroupsResponse,
        description="Equality filters, from the database. " + _MANAGEMENT.format(role="read")),
    "/api/management/group/get-all-route-rule-groups.json": Endpoint(
        "Every group of every route rule", wire.RegionRequest, wire.RouteRuleGroupsResponse,
        (_REGION,), description=_MANAGEMENT.format(role="read")),
    "/api/management/group/insert-group-tags.json": Endpoint(
        "Set groups' tags", wire.GroupTagsWrite, wire.StatusOnlyResponse,
        description="Each group's `tags` (at most 64) added or changed; shown as the group's "
        "`metadata` in route rules. " + _MANAGEMENT.format(role="write")),
    "/api/management/group/update-group-tags.json": Endpoint(
        "Set groups' tags", wire.GroupTagsWrite, wire.StatusOnlyResponse,
        description="The same as insert-group-tags. " + _MANAGEMENT.format(role="write")),
    "/api/management/group/delete-group-tags.json": Endpoint(
        "Delete tags", wire.DeleteGroupTagsRequest, wire.StatusOnlyResponse,
        description="The tags matching `groupId`, `tag` and `value` (at least one). "
        + _MANAGEMENT.format(role="write")),
    "/api/management/group/get-group-tags.json": Endpoint(
        "A group's tags", wire.GroupIdQuery, wire.GroupTagsResponse,
        description="`groupTags` null when none. " + _MANAGEMENT.format(role="read")),
    "/api/management/group/get-all-group-tags.json": Endpoint(
        "Every group's tags", wire.RegionRequest, wire.AllGroupTagsResponse, (_REGION,),
        description=_MANAGEMENT.format(role="read")),
    "/api/management/group/insert-group-instances.json": Endpoint(
        "Add explicit members to groups", wire.GroupInstancesWrite, wire.StatusOnlyResponse,
        description="`groupInstances`: (groupId, instanceId); shown as the group's "
        "`instanceIds`. " + _MANAGEMENT.format(role="write")),
    "/api/management/group/delete-group-instances.json": Endpoint(
        "Remove explicit members", wire.GroupInstancesWrite, wire.StatusOnlyResponse,
        description="`groupInstanceIds`. " + _MANAGEMENT.format(role="write")),
    "/api/management/group/get-group-instances.json": Endpoint(
        "Find explicit members", wire.GroupIdQuery, wire.GroupInstancesResponse,
        description="Filters `groupId`, `instanceId`. " + _MANAGEMENT.format(role="read")),
    "/api/management/group/operate-group-operations.json": Endpoint(
        "Pull groups out or back in", wire.GroupOperationsWrite, wire.StatusOnlyResponse,
        description="Each entry's operations added (`operationComplete` false) or removed: "
        "a group with an operation has every member (same service and zone, `groupId` its "
        "name) out of discovery. " + _MANAGEMENT.format(role="write")),
    "/api/management/group/operate-group-operation.json": Endpoint(
        "Pull one group out or back in", wire.GroupOperationWrite, wire.StatusOnlyResponse,
        description="The group by its fields (added if missing) and one operation. "
        + _MANAGEMENT.format(role="write")),
    "/api/management/group/get-group-operations.json": Endpoint(
        "A group's operations", wire.GroupIdQuery, wire.GroupOperationsResponse,
        description=_MANAGEMENT.format(role="read")),
    "/api/management/group/get-all-group-operations.json": Endpoint(
        "Every group's operations", wire.RegionRequest, wire.AllGroupOperationsResponse,
        (_REGION,), description=_MANAGEMENT.format(role="read")),
    "/api/management/group/insert-service-instances.json": Endpoint(
        "Add or change logical instances", wire.ServiceInstancesWrite,
        wire.StatusOnlyResponse, description="Instances operators define for a service, by "
        "(serviceId, instanceId); shown in its `logicInstances` (status up) unless pulled "
        "out. " + _MANAGEMENT.format(role="write")),
    "/api/management/group/delete-service-instances.json": Endpoint(
        "Delete logical instances", wire.ServiceInstancesWrite, wire.StatusOnlyResponse,
        description="`serviceInstanceIds`. " + _MANAGEMENT.format(role="write")),
    "/api/management/group/get-service-instances.json": Endpoint(
        "Find logical instances", wire.ServiceInstancesQuery, wire.ServiceInstancesResponse,
        description="Filters `serviceId`, `instanceId`. " + _MANAGEMENT.format(role="read")),
    "/api/management/canary/update-canary-ips.json": Endpoint(
        "Set a service's canary instances", wire.CanaryRequest, wire.StatusOnlyResponse,
        description="`canaryIps` (instance ids, as the original) become the members of the "
        "service's canary group (zone `canary`, named after `appId`) in its "
        "`canary-route-rule`, made if missing with a staged weight of 5. "
        + _MANAGEMENT.format(role="write")),
    "/api/status/management.json": Endpoint(
        "Management data on this node", None, dict[str, Any],
        description="Whether a database is configured and answers, the version of the data "
        "applied, how many instances, servers and zones are pulled out and how many "
        "registered instances that hides."),
    "/api/admin/node-status.json": Endpoint(
        "Node status switch", NodeStatusSwitch, wire.GetClusterNodeStatusResponse,
        description="GET gives this node's status; POST forces it: `up` serves at once, "
        "`down` serves nothing (registry and discovery answer `service-unavailable`), `auto` "
        "starts a node that is down again (in a cluster it bootstraps first). Admin bearer "
        "token, or a call from 127.0.0.1 when none is set.", admin=True),
    "/api/admin/self-preservation.json": Endpoint(
        "Self-preservation switch", SelfPreservationSwitch, wire.SelfPreservationResponse,
        description="GET gives the state; POST switches it (the admin bearer token, or a call "
        "from 127.0.0.1 when none is set; else `no-permission`). `legacy` follows `enabled` "
        "unless given.", admin=True),
    "/health": Endpoint(
        "Health", None, wire.HealthResponse,
        description="200 when the node serves registry and discovery, 503 otherwise.",
        statuses={503: "The node does not serve registry and discovery (starting, or down)"}),
    "/metrics": Endpoint(
        "Prometheus metrics", None, str, content_type=CONTENT_TYPE,
        description="Requests and latency per endpoint and error code, and the node's state, "
        "in the Prometheus text format (when metrics are on)."),
    PATH: Endpoint(
        "This document", None, dict[str, Any],
        description="The OpenAPI 3.1 description of every HTTP endpoint of the node."),
}

_DESCRIPTION: Final = """\
A service registry and discovery server compatible with Ctrip's Artemis.

Bodies are JSON and may be gzip-compressed (`Content-Encoding: gzip`); an empty body reads as
`{{}}`. Keys are read case-insensitively and unknown keys are ignored. Answers to known endpoints
are HTTP 200 with a `responseStatus` (`errorCode` one of `success`, `partial_fail`, `bad-request`,
`rate-limited`, `no-permission`, `data-not-found`, `internal-service-error`,
`service-unavailable`); a failed answer keeps the endpoint's shape with its payload fields null.
Unknown paths answer 404 and wrong methods 405 (with `Allow`), each with a JSON `responseStatus`.
Large answers are gzip-compressed for a client that accepts gzip (`Accept-Encoding`).

WebSockets (not operations of this document; text frames of JSON, `ws://`):

| path | the client sends | the node sends |
|---|---|---|
| `{context}/ws/discovery/instance-change` | a DiscoveryConfig per service to follow, \
optionally with the `revision` of the last change seen | an InstanceChange frame (with its \
`revision`) for every change of those services |
| `{context}/ws/discovery/all-instance-change` | nothing (a frame `{{"revision": ...}}` \
resumes) | every InstanceChange of every service |
| `{context}/ws/registry/heartbeat` | `{{"instances": [Instance]}}` frames | one answer per \
frame, as `heartbeat.json` answers |

Errors on a WebSocket are frames `{{"responseStatus": ...}}`.
"""

_REF: Final = "#/components/schemas/{name}"


def _operation_id(method: str, path: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", path.removeprefix("/api/").removesuffix(".json"))
    return f"{method.lower()}_{slug.strip('_')}"


def _tag(path: str) -> str:
    return path.split("/")[2] if path.startswith("/api/") else "node"


def _content(media: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {media.split(";")[0]: {"schema": schema}}


def openapi_document(routes: Mapping[str, Route], context_path: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` (paths without the context path) served under
    `context_path`; raise UndocumentedRoute for a route with no entry in ENDPOINTS."""
    missing = sorted(set(routes) - set(ENDPOINTS))
    if missing:
        raise UndocumentedRoute(f"routes without an entry in openapi.ENDPOINTS: {missing}")
    kinds: list[Any] = [wire.ErrorResponse]
    for path in routes:
        entry = ENDPOINTS[path]
        kinds.append(entry.answer)
        if entry.request is not None:
            kinds.append(entry.request)
    refs, schemas = msgspec.json.schema_components(kinds, ref_template=_REF)
    schema_of = dict(zip(kinds, refs, strict=True))
    error = _content(JSON, schema_of[wire.ErrorResponse])
    paths: dict[str, Any] = {}
    for path, route in routes.items():
        entry = ENDPOINTS[path]
        answer = _content(entry.content_type, schema_of[entry.answer])
        operations: dict[str, Any] = {}
        for method in sorted(route.methods):
            described = {200: entry.summary, **entry.statuses}
            responses: dict[str, Any] = {
                str(status): {"description": text} if method == "HEAD"
                else {"description": text, "content": answer}
                for status, text in described.items()
            }
            responses |= {"404": {"$ref": "#/components/responses/NotFound"},
                          "405": {"$ref": "#/components/responses/MethodNotAllowed"}}
            operation: dict[str, Any] = {
                "operationId": _operation_id(method, path),
                "summary": entry.summary,
                "tags": [_tag(path)],
            }
            if entry.description:
                operation["description"] = entry.description
            if method in ("GET", "HEAD") and entry.query:
                operation["parameters"] = [_parameter(q) for q in entry.query]
            if method == "POST" and entry.request is not None and route.reads_body:
                operation["requestBody"] = {
                    "required": False,
                    "description": "JSON, optionally gzip-compressed; empty reads as `{}`.",
                    "content": _content(JSON, schema_of[entry.request]),
                }
            if entry.admin and method == "POST":  # {}: no token needed on 127.0.0.1 when none
                operation["security"] = [{}, {"adminToken": []}]
            operation["responses"] = responses
            operations[method.lower()] = operation
        paths[context_path + path] = operations
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Artemis for Python",
            "version": __version__,
            "description": _DESCRIPTION.format(context=context_path),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "NotFound": {"description": "No endpoint at this path (for instance, the "
                             "node serves another context path)", "content": error},
                "MethodNotAllowed": {
                    "description": "The path does not take this method; `Allow` lists those "
                    "it takes",
                    "headers": {"Allow": {"schema": {"type": "string"}}},
                    "content": error,
                },
            },
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer",
                               "description": "The node's `admin_token`, for admin switches"},
            },
        },
    }


def _parameter(query: Query) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": query.name, "in": "query", "required": query.required,
                                 "description": query.description, "schema": query.schema}
    if not query.explode:
        parameter |= {"style": "form", "explode": False}
    return parameter


def openapi_route(routes: Mapping[str, Route], context_path: str) -> Route:
    """GET /openapi.json: the document of `routes` and of itself, encoded once."""
    route = Route(frozenset({"GET"}), reads_body=False)
    body = msgspec.json.encode(openapi_document({**routes, PATH: route}, context_path))

    def serve(request: Request) -> bytes:
        return body

    route.handler = serve
    return route
