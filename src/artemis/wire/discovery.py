"""The discovery API's shapes (§4.2-§4.5): what a client asks for, services with their instances
and route rules, deltas and the changes push sends."""

from __future__ import annotations

from artemis.wire.codec import _Wire
from artemis.wire.instances import Instance
from artemis.wire.response_status import ResponseStatus

__all__ = [
    "DiscoveryConfig",
    "GetServiceRequest",
    "GetServiceResponse",
    "GetServicesDeltaRequest",
    "GetServicesDeltaResponse",
    "GetServicesRequest",
    "GetServicesResponse",
    "InstanceChange",
    "LookupRequest",
    "LookupResponse",
    "PushedChange",
    "RouteRule",
    "Service",
    "ServiceGroup",
    "Subscription",
]


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
