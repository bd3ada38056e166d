"""Groups and route rules (§4.7): split a service's traffic between groups of its instances.

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

The checks and their order are api_management's.
"""

from __future__ import annotations

from typing import Any, Final

from artemis import wire
from artemis.server.api_management import ManagementApi
from artemis.server.http import BadRequest, Request, Route, status_bytes
from artemis.server.store import Group, GroupSpec, RouteRule, RouteRuleGroup, RouteRuleSpec

__all__ = ["GroupApi", "add_routes"]

BASE: Final = "/api/management/group"
SUCCESS: Final = wire.ResponseStatus(error_code="success", message="", status="success")
_OK: Final = b'{"responseStatus":' + status_bytes("success", "", "success") + b"}"
_STATUSES: Final = ("active", "inactive")
_MAX_ITEMS: Final = 1000
_MAX_WEIGHT: Final = 10_000


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
        ):
            full = f"{BASE}/{path}"
            api.routes[full] = Route(methods, async_handler=api.guard(full, handler),
                                     null_fields=nulls)

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
        filters = self._filters(asked, ("service_id", "zone_id", "name", "app_id"))
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
