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
  * Route rules (§7.3): a service's discovery answer lists its `active` route rules, each with
    its `active` groups: group key `service/region/zone/name` (lower-case), the released weight
    (unreleased weights are staged, not shown; none or negative is 5, above 10,000 is 10,000);
    a rule left with no active group is not listed. Rules are ordered by name, groups by key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from artemis import wire

__all__ = ["DEFAULT_WEIGHT", "EMPTY", "ManagementView", "fix_weight", "route_rules"]

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
                links: Iterable[tuple[int, int, int | None]]) -> dict[str, bytes]:
    """The encoded `routeRules` of every service that has any (rules in the module doc).

    groups: (id, service, region, zone, name, status); rules: (id, service, name, status,
    strategy); links: (rule id, group id, released weight).
    """
    active_groups = {g[0]: g for g in groups if g[5].lower() == "active"}
    by_rule: dict[int, list[wire.ServiceGroup]] = {}
    for rule_id, group_id, weight in links:
        group = active_groups.get(group_id)
        if group is not None:
            _, service, region, zone, name, _ = group
            by_rule.setdefault(rule_id, []).append(wire.ServiceGroup(
                group_key=f"{service}/{region}/{zone}/{name}".lower(), weight=fix_weight(weight)))
    per_service: dict[str, list[wire.RouteRule]] = {}
    for rule_id, service, name, status, strategy in sorted(rules, key=lambda r: (r[1], r[2])):
        members = by_rule.get(rule_id)
        if status.lower() != "active" or not members:
            continue
        per_service.setdefault(service.lower(), []).append(wire.RouteRule(
            groups=sorted(members, key=lambda g: g.group_key or ""), route_id=name,
            strategy=strategy))
    return {service: wire.encode(items) for service, items in per_service.items()}


@dataclass(frozen=True, slots=True)
class ManagementView:
    """The pull-outs in force, as the node applies them (built from the store's rows)."""

    region: str = ""
    instances: frozenset[tuple[str, str]] = frozenset()  # (service, instance)
    servers: frozenset[str] = frozenset()  # ip or host name
    zones: frozenset[tuple[str, str]] = frozenset()  # (service, zone)
    version: int = 0
    rules: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(cls, region: str, instance_ops: Iterable[tuple[str, str, str, str]],
              server_ops: Iterable[tuple[str, str, str]],
              zone_ops: Iterable[tuple[str, str, str, str]], version: int = 0,
              rules: Mapping[str, bytes] | None = None) -> ManagementView:
        """A view of the operations of `region` (rows: region, key parts..., operation) and
        of the services' encoded route rules."""
        mine = region.lower()
        return cls(
            rules=MappingProxyType(dict(rules or {})),
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
        return not (self.instances or self.servers or self.zones)

    def hides(self, service: str, instance: str, ip: str, zone: str) -> bool:
        """Whether the instance (lower-case keys) is pulled out."""
        return ((service, instance) in self.instances or ip in self.servers
                or (service, zone) in self.zones)

    def rules_of(self, service: str) -> bytes:
        """The encoded `routeRules` of a service (lower-case key): `[]` when it has none."""
        return self.rules.get(service, NO_RULES)

    def changed_rules(self, new: ManagementView) -> set[str]:
        """The services whose route rules differ between self and `new`."""
        old_rules, new_rules = self.rules, new.rules
        return {s for s in old_rules.keys() | new_rules.keys()
                if old_rules.get(s) != new_rules.get(s)}

    def changed_services(self, new: ManagementView) -> frozenset[str] | None:
        """The services whose instances' visibility may differ between self and `new`; None
        when a server operation changed (any service may run on that machine)."""
        if self.servers != new.servers:
            return None
        touched = {s for s, _ in self.instances ^ new.instances}
        touched.update(s for s, _ in self.zones ^ new.zones)
        return frozenset(touched)


EMPTY = ManagementView()
