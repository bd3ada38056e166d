"""What the store takes and gives besides the wire types: the specs of rows to write, a write's
audit context, a group's tags and operations, and the whole of the management data at once.

The rows the API shows (groups, route rules, their groups, group instances, logical instances,
audit entries) are read as the wire types of `artemis.wire` themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Final

from artemis import wire

__all__ = [
    "DEFAULT_STRATEGY",
    "GROUP_KEYS",
    "RULE_KEYS",
    "SERVICE_INSTANCE_FIELDS",
    "SERVICE_INSTANCE_KEYS",
    "Context",
    "GroupOperation",
    "GroupSpec",
    "GroupTag",
    "ManagementData",
    "RouteRuleSpec",
    "ServiceInstanceSpec",
]

DEFAULT_STRATEGY: Final = "weighted-round-robin"
GROUP_KEYS: Final = ("service_id", "region_id", "zone_id", "name")  # a group is unique on them
RULE_KEYS: Final = ("service_id", "name")
SERVICE_INSTANCE_KEYS: Final = ("service_id", "instance_id")
SERVICE_INSTANCE_FIELDS: Final = (
    "url", "ip", "machine_name", "metadata", "port", "protocol", "region_id", "zone_id",
    "group_id", "health_check_url", "description")


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A group to write: its key (service, region, zone, name) and its fields."""

    service_id: str
    region_id: str
    zone_id: str
    name: str
    app_id: str | None = None
    description: str | None = None
    status: str = "active"


@dataclass(frozen=True, slots=True)
class RouteRuleSpec:
    """A route rule to write: its key (service, name) and its fields."""

    service_id: str
    name: str
    description: str | None = None
    status: str = "active"
    strategy: str = DEFAULT_STRATEGY


@dataclass(frozen=True, slots=True)
class ServiceInstanceSpec:
    """A logical instance to write: its key (service, instance) and its fields (all but the
    first three by keyword; `group_id` is the name of the instance's group)."""

    service_id: str
    instance_id: str
    url: str
    _: KW_ONLY
    ip: str | None = None
    machine_name: str | None = None
    metadata: Mapping[str, str] | None = None
    port: int = 0
    protocol: str | None = None
    region_id: str
    zone_id: str | None = None
    group_id: str | None = None
    health_check_url: str | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class GroupTag:
    """A group's tag and its value."""

    id: int
    group_id: int
    tag: str
    value: str


@dataclass(frozen=True, slots=True)
class GroupOperation:
    """An operation in force on a group."""

    id: int
    group_id: int
    operation: str


@dataclass(frozen=True, slots=True)
class Context:
    """Who asked for a write, why and when: the audit row's own columns."""

    actor: str
    operator_id: str
    reason: str | None
    extensions: str
    now_ms: int


@dataclass(frozen=True, slots=True)
class ManagementData:
    """Every operation in force, group and route rule, read in one snapshot with the version
    it belongs to. Groups and rules are those not deleted, ordered by id; links are those whose
    rule and group are both not deleted, ordered by id; tags, group instances and group
    operations those of groups not deleted, and every logical instance, ordered by id."""

    instance_ops: frozenset[tuple[str, str, str, str]]  # (region, service, instance, operation)
    server_ops: frozenset[tuple[str, str, str]]  # (region, server, operation)
    zone_ops: frozenset[tuple[str, str, str, str]]  # (region, service, zone, operation)
    version: int
    groups: tuple[wire.Group, ...] = ()
    route_rules: tuple[wire.ServiceRouteRule, ...] = ()
    route_rule_groups: tuple[wire.RouteRuleGroup, ...] = ()
    group_tags: tuple[GroupTag, ...] = ()
    group_instances: tuple[wire.GroupInstance, ...] = ()
    group_operations: tuple[GroupOperation, ...] = ()
    service_instances: tuple[wire.ServiceInstance, ...] = ()
