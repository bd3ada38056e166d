"""The cluster's shapes: nodes and their status (§4.7), and what replication peers exchange
(checksums and lease copies for anti-entropy and bootstrap)."""

from __future__ import annotations

from artemis.wire.codec import _Wire
from artemis.wire.instances import Instance
from artemis.wire.response_status import ResponseStatus

__all__ = [
    "ChecksumsRequest",
    "ChecksumsResponse",
    "GetClusterNodeStatusResponse",
    "GetClusterNodesResponse",
    "GetClusterStatusResponse",
    "GetServiceNodesRequest",
    "GetServiceNodesResponse",
    "LeaseCopy",
    "LeasesRequest",
    "LeasesResponse",
    "ServiceNode",
    "ServiceNodeStatus",
    "Zone",
]


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


class GetClusterNodesResponse(_Wire, kw_only=True, frozen=True):
    """`/api/cluster/nodes.json`: the status of every node of the cluster."""

    nodes: list[ServiceNodeStatus] | None = None
    response_status: ResponseStatus


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


class LeaseCopy(_Wire, kw_only=True, frozen=True, gc=False, omit_defaults=True):
    """One lease as a peer copies it: the instance, when it was registered (epoch ms) and how
    long ago it was last renewed (ms), so the copy expires when the original does; and who owns
    it at the peer (core/ownership.py; absent for no one)."""

    age_ms: int
    created_ms: int
    instance: Instance
    owner: str | None = None


class LeasesResponse(_Wire, kw_only=True, frozen=True):
    leases: list[LeaseCopy] | None = None
    response_status: ResponseStatus
