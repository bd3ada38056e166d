"""The answers of the status endpoints (`/api/status/*`, `/health`, self-preservation): leases,
settings, deployment, runtime counters, connections and replication per peer."""

from __future__ import annotations

from typing import Any

from artemis.wire.codec import _Wire
from artemis.wire.response_status import ResponseStatus

__all__ = [
    "ConfigResponse",
    "ConnectionsResponse",
    "DeploymentResponse",
    "HealthResponse",
    "LagBuckets",
    "LeaseStatus",
    "LeasesStatusRequest",
    "LeasesStatusResponse",
    "PeerReplicationStatus",
    "RepairStatus",
    "ReplicationLag",
    "ReplicationStatusResponse",
    "RuntimeResponse",
    "SelfPreservationResponse",
]


class LeasesStatusRequest(_Wire, kw_only=True, frozen=True):
    service_ids: list[str] | None = None


class LeaseStatus(_Wire, kw_only=True, frozen=True):
    creation_time: str
    evition_time: str  # sic: the original's spelling
    instance: str
    renewal_time: str
    ttl: int


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
    collector: dict[str, float] | None = None  # the collector policy's figures; {} when off
    connections: dict[str, int] | None = None
    evicted_total: int = 0
    held_batches: dict[str, int] | None = None  # clients' large heartbeats remembered
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


class LagBuckets(_Wire, kw_only=True, frozen=True):
    """Every write acknowledged by the peer since this node started, by its lag: how many took
    at most each bound of `leMs` (cumulative), how many in all, and the sum of their lags.
    Two readings give the distribution between them."""

    count: int
    cumulative: list[int]
    le_ms: list[float]
    sum_ms: float


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
    lag_buckets: LagBuckets
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
    unanswered_for_ms: int | None = None  # since the first failed poll; null while it answers
    url: str
    zone: str


class ReplicationStatusResponse(_Wire, kw_only=True, frozen=True):
    """`/api/status/replication.json`: bootstrap, replication and repair, per peer."""

    bootstrap: dict[str, Any]
    cpu_seconds: float
    node_id: str | None
    peer_auth: str | None = None  # secret, insecure or none (no peers): what peers must send
    peers: list[PeerReplicationStatus]
    response_status: ResponseStatus
    self: str | None


class HealthResponse(_Wire, kw_only=True, frozen=True):
    """`/health`: the node's status and instance count; a failed answer has only
    `responseStatus`."""

    instances: int = 0
    response_status: ResponseStatus | None = None
    status: str | None = None
