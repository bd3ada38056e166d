"""What operators pulled out of discovery: instances, servers (machines) and zones (§7.1).

Rules
  * An instance is pulled out (hidden from discovery, not unregistered) while at least one
    operation exists for its instance key (region, service, instance), for its server key
    (region, ip), or for its zone key (region, service, zone). Operation names are free text;
    any one of them counts, and the instance is back only when every one is completed.
  * Keys compare lower-case. Operations of other regions than the node's do not apply.
  * A pulled-out instance keeps its lease and its heartbeats; only what discovery shows changes.
  * `ManagementView.changed_services(old, new)` names the services whose instances may have
    changed visibility; None means "any service" (a server operation changed: machines are
    shared by services).
  * A group operation pulls out the group's members: the instances of its service and zone
    whose `groupId` (or `default` without one) is the group's name (§7.1 rule 4).
  * Route rules (§7.3): a service's discovery answer lists its `active` route rules, each with
    its `active` groups: group key `service/region/zone/name` (lower-case), the released weight
    (unreleased weights are staged, not shown; none or negative is 5, above 10,000 is 10,000),
    the group's tags as `metadata` and its explicit members as `instanceIds` (null when none);
    a rule left with no active group is not listed. Rules are ordered by name, groups by key.
  * Logical instances (§7.5): instances operators define for a service, shown in its
    `logicInstances` with status `up`, unless pulled out like any instance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

import msgspec

from artemis import wire

__all__ = ["DEFAULT_WEIGHT", "EMPTY", "ManagementView", "fix_weight", "logic_instances",
           "route_rules"]

DEFAULT_WEIGHT: Final = 5
MAX_WEIGHT: Final = 10_000
NO_RULES: Final = b"[]"


def fix_weight(weight: int | None) -> int:
    """The original's fixWeight: none or negative is 5, above 10,000 is 10,000."""
    if weight is None or weight < 0:
        return DEFAULT_WEIGHT
    return min(weight, MAX_WEIGHT)


def route_rules(groups: Iterable[tuple[int, str, str, str, str, str]],
                rules: Iterable[tuple[int, str, str, str, str]],
                links: Iterable[tuple[int, int, int | None]],
                tags: Mapping[int, Mapping[str, str]] | None = None,
                members: Mapping[int, Iterable[str]] | None = None) -> dict[str, bytes]:
    """The encoded `routeRules` of every service that has any (rules in the module doc).

    groups: (id, service, region, zone, name, status); rules: (id, service, name, status,
    strategy); links: (rule id, group id, released weight); tags and members by group id.
    """
    tags = tags or {}
    members = members or {}
    active_groups = {g[0]: g for g in groups if g[5].lower() == "active"}
    by_rule: dict[int, list[wire.ServiceGroup]] = {}
    for rule_id, group_id, weight in links:
        group = active_groups.get(group_id)
        if group is not None:
            _, service, region, zone, name, _ = group
            listed = sorted(members.get(group_id, ()))
            by_rule.setdefault(rule_id, []).append(wire.ServiceGroup(
                group_key=f"{service}/{region}/{zone}/{name}".lower(),
                instance_ids=listed or None, metadata=dict(tags[group_id]) if tags.get(
                    group_id) else None, weight=fix_weight(weight)))
    per_service: dict[str, list[wire.RouteRule]] = {}
    for rule_id, service, name, status, strategy in sorted(rules, key=lambda r: (r[1], r[2])):
        shown = by_rule.get(rule_id)
        if status.lower() != "active" or not shown:
            continue
        per_service.setdefault(service.lower(), []).append(wire.RouteRule(
            groups=sorted(shown, key=lambda g: g.group_key or ""), route_id=name,
            strategy=strategy))
    return {service: wire.encode(items) for service, items in per_service.items()}


def logic_instances(instances: Iterable[wire.Instance]) -> dict[str, list[wire.Instance]]:
    """Logical instances by lower-case service id, ordered by instance id, status `up`."""
    out: dict[str, list[wire.Instance]] = {}
    for instance in sorted(instances, key=lambda i: ((i.service_id or "").lower(),
                                                     (i.instance_id or "").lower())):
        out.setdefault((instance.service_id or "").lower(), []).append(
            msgspec.structs.replace(instance, status="up"))
    return out


@dataclass(frozen=True, slots=True)
class ManagementView:
    """The pull-outs in force, as the node applies them (built from the store's rows)."""

    region: str = ""
    instances: frozenset[tuple[str, str]] = frozenset()  # (service, instance)
    servers: frozenset[str] = frozenset()  # ip or host name
    zones: frozenset[tuple[str, str]] = frozenset()  # (service, zone)
    version: int = 0
    rules: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))
    groups: frozenset[tuple[str, str, str]] = frozenset()  # (service, zone, name) pulled out
    logic: Mapping[str, tuple[wire.Instance, ...]] = field(
        default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(cls, region: str, instance_ops: Iterable[tuple[str, str, str, str]],
              server_ops: Iterable[tuple[str, str, str]],
              zone_ops: Iterable[tuple[str, str, str, str]], version: int = 0,
              rules: Mapping[str, bytes] | None = None,
              groups_down: Iterable[tuple[str, str, str]] = (),
              logic: Mapping[str, Iterable[wire.Instance]] | None = None) -> ManagementView:
        """A view of the operations of `region` (rows: region, key parts..., operation), of
        the services' encoded route rules, the groups with operations (service, zone, name)
        and the logical instances by service."""
        mine = region.lower()
        return cls(
            rules=MappingProxyType(dict(rules or {})),
            groups=frozenset((s.lower(), z.lower(), n.lower()) for s, z, n in groups_down),
            logic=MappingProxyType({k: tuple(v) for k, v in (logic or {}).items()}),
            region=mine,
            instances=frozenset((s.lower(), i.lower()) for r, s, i, _ in instance_ops
                                if r.lower() == mine),
            servers=frozenset(ip.lower() for r, ip, _ in server_ops if r.lower() == mine),
            zones=frozenset((s.lower(), z.lower()) for r, s, z, _ in zone_ops
                            if r.lower() == mine),
            version=version,
        )

    @property
    def empty(self) -> bool:
        return not (self.instances or self.servers or self.zones or self.groups)

    def hides(self, service: str, instance: str, ip: str, zone: str, group: str = "") -> bool:
        """Whether the instance (lower-case keys; `group` its groupId) is pulled out."""
        return ((service, instance) in self.instances or ip in self.servers
                or (service, zone) in self.zones
                or (service, zone, group or "default") in self.groups)

    def logic_of(self, service: str) -> bytes:
        """The encoded `logicInstances` of a service: those not pulled out."""
        shown = [i for i in self.logic.get(service, ())
                 if not self.hides(service, (i.instance_id or "").lower(), (i.ip or "").lower(),
                                   (i.zone_id or "").lower(),
                                   (i.group_id or "").strip().lower())]
        return wire.encode(shown) if shown else NO_RULES

    def rules_of(self, service: str) -> bytes:
        """The encoded `routeRules` of a service (lower-case key): `[]` when it has none."""
        return self.rules.get(service, NO_RULES)

    def changed_rules(self, new: ManagementView) -> set[str]:
        """The services whose route rules or logical instances (as shown) differ between self
        and `new`."""
        old_rules, new_rules = self.rules, new.rules
        changed = {s for s in old_rules.keys() | new_rules.keys()
                   if old_rules.get(s) != new_rules.get(s)}
        changed.update(s for s in self.logic.keys() | new.logic.keys()
                       if self.logic_of(s) != new.logic_of(s))
        return changed

    def changed_services(self, new: ManagementView) -> frozenset[str] | None:
        """The services whose instances' visibility may differ between self and `new`; None
        when a server operation changed (any service may run on that machine)."""
        if self.servers != new.servers:
            return None
        touched = {s for s, _ in self.instances ^ new.instances}
        touched.update(s for s, _ in self.zones ^ new.zones)
        touched.update(s for s, _, _ in self.groups ^ new.groups)
        return frozenset(touched)


EMPTY = ManagementView()
