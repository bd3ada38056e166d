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

The checks and their order are api_management's. Tags, explicit members, group operations,
logical instances and canary are in api/group_members.py.
"""

from __future__ import annotations

from typing import Any, Final

from artemis import wire
from artemis.server.api.endpoint import GET_POST, POST, REGION_QUERY, Endpoint, Role
from artemis.server.api.management import ManagementApi
from artemis.server.http import BadRequest, Request, status_bytes
from artemis.server.management import Management
from artemis.server.store import GroupSpec, ManagementStore, RouteRuleSpec, limits
from artemis.wire import ErrorCode

__all__ = ["ENDPOINTS", "GroupApi"]

BASE: Final = "/api/management/group"
SUCCESS: Final = wire.ResponseStatus(error_code=ErrorCode.SUCCESS, message="",
                                     status="success")
OK: Final = b'{"responseStatus":' + status_bytes(ErrorCode.SUCCESS, "", "success") + b"}"
_STATUSES: Final = ("active", "inactive")
MAX_ITEMS: Final = 1000
_MAX_WEIGHT: Final = limits.MAX_WEIGHT

class GroupApi:
    """Groups, route rules and their groups; the checks the members' endpoints share."""

    def __init__(self, api: ManagementApi) -> None:
        self.api = api

    @property
    def management(self) -> Management:
        """The node's management (the gate let the call in: a database is configured)."""
        return self.api.management

    # --- validation ----------------------------------------------------------------------

    @property
    def store(self) -> ManagementStore:
        return self.management.store

    def _write(self, body: Any) -> dict[str, Any]:
        """The write's audit context (operatorId, reason, extensions)."""
        return self.api.context(body)

    def _status(self, status: str | None) -> str:
        text = self.api.text(status, "status", limits.MAX_STATUS).lower()
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
            app_id=api.optional(group.app_id, "appId", limits.MAX_ID),
            description=api.optional(group.description, "description", limits.MAX_DESCRIPTION),
            status=self._status(group.status))

    def _rule(self, rule: wire.ServiceRouteRule | None) -> RouteRuleSpec:
        if rule is None:
            raise BadRequest("a route rule is null.")
        api = self.api
        strategy = api.text(rule.strategy or "weighted-round-robin", "strategy",
                            limits.MAX_STRATEGY)
        return RouteRuleSpec(service_id=api.text(rule.service_id, "serviceId").lower(),
                             name=api.text(rule.name, "name").lower(),
                             description=api.optional(rule.description, "description",
                                                      limits.MAX_DESCRIPTION),
                             status=self._status(rule.status), strategy=strategy)

    @staticmethod
    def _items(items: list[Any] | None, name: str) -> list[Any]:
        if not items:
            raise BadRequest(f"{name} is null or empty.")
        if len(items) > MAX_ITEMS:
            raise BadRequest(f"{name} has more than {MAX_ITEMS} entries.")
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
        return OK

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
        return wire.encode(wire.GroupsResponse(groups=found,
                                               response_status=SUCCESS))

    async def all_groups(self, request: Request, actor: str) -> bytes:
        other = self.api.other_region(request)
        items = [] if other else list(self.management.groups)
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
                                                   route_rules=found))

    async def all_rules(self, request: Request, actor: str) -> bytes:
        other = self.api.other_region(request)
        items = [] if other else list(self.management.route_rules)
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
            response_status=SUCCESS, route_rule_groups=found))

    async def all_links(self, request: Request, actor: str) -> bytes:
        other = self.api.other_region(request)
        items = [] if other else list(self.management.route_rule_groups)
        return wire.encode(wire.RouteRuleGroupsResponse(response_status=SUCCESS,
                                                        route_rule_groups=items))

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



def _endpoint(path: str, methods: frozenset[str], summary: str, request: type[Any],
              answer: type[Any], handler: Any, role: Role, description: str = "",
              region_query: bool = False) -> Endpoint:
    """An endpoint under /api/management/group (its GET form takes the region asked)."""
    return Endpoint(f"{BASE}/{path}", methods, summary, request, answer, handler, role=role,
                    query=(REGION_QUERY,) if region_query else (), description=description)


R, W, G = Role.READ, Role.WRITE, GroupApi
ENDPOINTS: Final = (
    _endpoint("insert-groups.json", POST, "Add groups", wire.GroupsWrite,
              wire.StatusOnlyResponse, G.insert_groups, W,
              "Each group by (serviceId, regionId, zoneId, name): a new one is added, a "
              "deleted one revived unchanged. Audited."),
    _endpoint("update-groups.json", POST, "Add or change groups", wire.GroupsWrite,
              wire.StatusOnlyResponse, G.update_groups, W,
              "As insert-groups, and an existing group takes the appId, description and "
              "status given."),
    _endpoint("delete-groups.json", POST, "Delete groups", wire.IdsWrite,
              wire.StatusOnlyResponse, G.delete_groups, W,
              "`groupIds`; deleted groups leave their route rules."),
    _endpoint("get-groups.json", POST, "Find groups", wire.GroupsQuery, wire.GroupsResponse,
              G.get_groups, R,
              "Equality filters, from the database."),
    _endpoint("get-all-groups.json", GET_POST, "Every group", wire.RegionRequest,
              wire.GroupsResponse, G.all_groups, R,
              "As the node applies them.",
              region_query=True),
    _endpoint("insert-route-rules.json", POST, "Add route rules", wire.RouteRulesWrite,
              wire.StatusOnlyResponse, G.insert_rules, W,
              "Each rule by (serviceId, name): a new one is added, a deleted one revived "
              "unchanged."),
    _endpoint("update-route-rules.json", POST, "Add or change route rules",
              wire.RouteRulesWrite, wire.StatusOnlyResponse, G.update_rules, W,
              "As insert-route-rules, and an existing rule takes the description, status and "
              "strategy given."),
    _endpoint("delete-route-rules.json", POST, "Delete route rules", wire.IdsWrite,
              wire.StatusOnlyResponse, G.delete_rules, W,
              "`routeRuleIds`."),
    _endpoint("get-route-rules.json", POST, "Find route rules", wire.RouteRulesQuery,
              wire.RouteRulesResponse, G.get_rules, R,
              "Equality filters, from the database."),
    _endpoint("get-all-route-rules.json", GET_POST, "Every route rule", wire.RegionRequest,
              wire.RouteRulesResponse, G.all_rules, R,
              region_query=True),
    _endpoint("create-route-rule.json", POST, "Create a route rule with its groups",
              wire.CreateRouteRuleRequest, wire.StatusOnlyResponse, G.create_rule, W,
              "One transaction: the rule, its groups (added or revived) and their weights, "
              "staged (unreleased) until release-route-rule-groups."),
    _endpoint("insert-route-rule-groups.json", POST, "Stage groups' weights in route rules",
              wire.RouteRuleGroupsWrite, wire.StatusOnlyResponse, G.upsert_links, W,
              "`unreleasedWeight` (0 to 10,000) of each (routeRuleId, groupId); discovery "
              "shows it once released."),
    _endpoint("update-route-rule-groups.json", POST, "Stage groups' weights in route rules",
              wire.RouteRuleGroupsWrite, wire.StatusOnlyResponse, G.upsert_links, W,
              "The same as insert-route-rule-groups."),
    _endpoint("release-route-rule-groups.json", POST, "Release staged weights",
              wire.RouteRuleGroupsWrite, wire.StatusOnlyResponse, G.release_links, W,
              "Each (routeRuleId, groupId)'s weight becomes its unreleased weight: what "
              "discovery shows."),
    _endpoint("delete-route-rule-groups.json", POST, "Take groups out of route rules",
              wire.IdsWrite, wire.StatusOnlyResponse, G.delete_links, W,
              "`routeRuleGroupIds`."),
    _endpoint("get-route-rule-groups.json", POST, "Find groups of route rules",
              wire.RouteRuleGroupsQuery, wire.RouteRuleGroupsResponse, G.get_links, R,
              "Equality filters, from the database."),
    _endpoint("get-all-route-rule-groups.json", GET_POST, "Every group of every route rule",
              wire.RegionRequest, wire.RouteRuleGroupsResponse, G.all_links, R,
              region_query=True),
)
