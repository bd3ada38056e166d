"""What the management commands look at before and after they write: every registered instance as
operators see it (`Registered`, from the management API's services.json / service.json: pulled
out or not, `status` down when hidden), and what holds each instance out of discovery
(`Holds`, from the all-* operation reads and the groups).

An instance is out of discovery while any operation is in force on it (by service and instance
id), on its server (its `ip`), on its service's zone, or on its group (same service and zone,
`groupId` the group's name, `default` for none); keys compare lower-case.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from artemis import wire
from artemis.cli.errors import Refused
from artemis.cli.target import Node

__all__ = ["MANAGEMENT", "Holds", "Registered", "closest", "group_by_id", "group_key",
           "held_text", "instance_key", "load_holds", "load_registered"]

MANAGEMENT: Final = "/api/management"


def closest(word: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The known words nearest to `word` (case-insensitive), best first."""
    by_lower = {k.lower(): k for k in known}
    return [by_lower[m] for m in difflib.get_close_matches(word.lower(), list(by_lower), n=n,
                                                           cutoff=0.5)]


def instance_key(instance: wire.Instance) -> tuple[str, str]:
    return ((instance.service_id or "").lower(), (instance.instance_id or "").lower())


@dataclass
class Registered:
    """Every instance the node has registered, and the logical instances operators defined, by
    service (lower-case id); `status` is down when management hides one."""

    services: dict[str, list[wire.Instance]] = field(default_factory=dict)
    logical: dict[str, list[wire.Instance]] = field(default_factory=dict)
    complete: bool = True  # False when read for one service only

    def of(self, service: str) -> list[wire.Instance]:
        key = service.lower()
        return [*self.services.get(key, ()), *self.logical.get(key, ())]

    def instance(self, service: str, instance_id: str) -> wire.Instance | None:
        wanted = instance_id.lower()
        return next((i for i in self.of(service) if (i.instance_id or "").lower() == wanted),
                    None)

    def every(self) -> list[wire.Instance]:
        return [i for key in sorted(self.services.keys() | self.logical.keys())
                for i in self.of(key)]

    def on_server(self, ip: str) -> list[wire.Instance]:
        return [i for i in self.every() if (i.ip or "").lower() == ip.lower()]

    def in_zone(self, service: str, zone: str) -> list[wire.Instance]:
        return [i for i in self.of(service) if (i.zone_id or "").lower() == zone.lower()]

    def in_group(self, service: str, zone: str, name: str) -> list[wire.Instance]:
        return [i for i in self.in_zone(service, zone)
                if ((i.group_id or "").strip() or "default").lower() == name.lower()]

    def is_logical(self, instance: wire.Instance) -> bool:
        return any(i is instance for i in self.logical.get(instance_key(instance)[0], ()))


def _split(services: Iterable[wire.Service]) -> Registered:
    registered = Registered()
    for service in services:
        key = (service.service_id or "").lower()
        if service.instances:
            registered.services[key] = sorted(service.instances,
                                              key=lambda i: (i.instance_id or "").lower())
        if service.logic_instances:
            registered.logical[key] = sorted(service.logic_instances,
                                             key=lambda i: (i.instance_id or "").lower())
    return registered


async def load_registered(node: Node, service: str | None = None) -> Registered:
    """Every registered instance (or one service's), as the management API shows them."""
    region = node.target.region
    if service is None:
        every = await node.call(f"{MANAGEMENT}/services.json",
                                wire.GetServicesRequest(region_id=region), wire.GetServicesResponse)
        return _split(every.services or ())
    one = await node.call(f"{MANAGEMENT}/service.json",
                          wire.ManagedServiceRequest(region_id=region, service_id=service),
                          wire.ManagedServiceResponse)
    registered = _split([one.service] if one.service is not None else [])
    registered.complete = False
    return registered


@dataclass
class Holds:
    """The operations in force, by what they are on (lower-case keys), and the groups by id."""

    instances: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    servers: dict[str, list[str]] = field(default_factory=dict)
    zones: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    groups: dict[int, list[str]] = field(default_factory=dict)
    group_rows: dict[int, wire.Group] = field(default_factory=dict)

    def of(self, instance: wire.Instance) -> list[dict[str, Any]]:
        """What holds `instance` out of discovery: one entry per operation, each with the kind
        of what it is on, that thing's key, and the operation."""
        service, instance_id = instance_key(instance)
        ip, zone = (instance.ip or "").lower(), (instance.zone_id or "").lower()
        group = ((instance.group_id or "").strip() or "default").lower()
        out = [{"kind": "instance", "key": {"serviceId": service, "instanceId": instance_id},
                "operation": op} for op in self.instances.get((service, instance_id), ())]
        if ip:
            out += [{"kind": "server", "key": {"serverId": ip}, "operation": op}
                    for op in self.servers.get(ip, ())]
        out += [{"kind": "zone", "key": {"serviceId": service, "zoneId": zone}, "operation": op}
                for op in self.zones.get((service, zone), ())]
        for group_id, ops in sorted(self.groups.items()):
            row = self.group_rows.get(group_id)
            if row is not None and ((row.service_id or "").lower(), (row.zone_id or "").lower(),
                                    (row.name or "").lower()) == (service, zone, group):
                out += [{"kind": "group", "key": group_key(row), "operation": op} for op in ops]
        return out


def group_key(row: wire.Group) -> dict[str, Any]:
    return {"groupId": row.group_id, "serviceId": row.service_id, "zoneId": row.zone_id,
            "name": row.name}


def held_text(holds: list[dict[str, Any]]) -> str | None:
    """Holds as a table cell: `server kernel-upgrade, zone deploy`; None when nothing holds."""
    return ", ".join(f"{h['kind']} {h['operation']}" for h in holds) or None


async def load_holds(node: Node) -> Holds:
    """Every operation in force, as the node applies them."""
    asked = wire.RegionRequest(region_id=node.target.region)
    instances = await node.call(f"{MANAGEMENT}/all-instance-operations.json", asked,
                                wire.AllInstanceOperationsResponse)
    servers = await node.call(f"{MANAGEMENT}/all-server-operations.json", asked,
                              wire.AllServerOperationsResponse)
    zones = await node.call(f"{MANAGEMENT}/zone/get-all-zone-operations.json", asked,
                            wire.AllZoneOperationsResponse)
    groups = await node.call(f"{MANAGEMENT}/group/get-all-group-operations.json", asked,
                             wire.AllGroupOperationsResponse)
    rows = await node.call(f"{MANAGEMENT}/group/get-all-groups.json", asked, wire.GroupsResponse)
    holds = Holds()
    for i in instances.all_instance_operations or ():
        key = ((i.instance_key.service_id or "").lower(),
               (i.instance_key.instance_id or "").lower())
        holds.instances[key] = sorted(i.operations)
    for s in servers.all_server_operations or ():
        holds.servers[(s.server_key.server_id or "").lower()] = sorted(s.operations)
    for z in zones.all_zone_operations or ():
        holds.zones[((z.zone_key.service_id or "").lower(),
                     (z.zone_key.zone_id or "").lower())] = sorted(z.operations)
    for g in groups.all_group_operations or ():
        if g.group_id is not None and g.operations:
            holds.groups[g.group_id] = sorted(g.operations)
    holds.group_rows = {g.group_id: g for g in rows.groups or () if g.group_id is not None}
    return holds



async def group_by_id(node: Node, group_id: int) -> wire.Group:
    """The group with this id; Refused (with some of the groups there are) when there is none."""
    found = await node.call(f"{MANAGEMENT}/group/get-groups.json",
                            wire.GroupsQuery(group_id=group_id), wire.GroupsResponse)
    if found.groups:
        return found.groups[0]
    every = await node.call(f"{MANAGEMENT}/group/get-all-groups.json",
                            wire.RegionRequest(region_id=node.target.region), wire.GroupsResponse)
    known = [f"{g.group_id} ({g.group_key})" for g in every.groups or ()]
    listed = ", ".join(known[:5]) + (", ..." if len(known) > 5 else "")
    raise Refused(f"there is no group {group_id}" + (
        f" (groups: {listed}; `artemis group list` shows them)" if known
        else " (there are no groups)") + "; nothing was changed")
