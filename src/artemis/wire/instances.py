"""An instance as clients register it (§3.1), and the requests and answers of the registry API
(register, heartbeat, unregister; the replication path sends the same)."""

from __future__ import annotations

from artemis.wire.codec import _Wire
from artemis.wire.response_status import ResponseStatus

__all__ = [
    "FailedInstance",
    "Instance",
    "InstancesRequest",
    "InstancesResponse",
    "ReplicatedInstancesRequest",
]


class Instance(_Wire, kw_only=True, frozen=True, gc=False):
    """A registered instance of a service, exactly as the client sent it (§3.1)."""

    group_id: str | None = None
    health_check_url: str | None = None
    instance_id: str | None = None
    ip: str | None = None
    machine_name: str | None = None
    metadata: dict[str, str] | None = None
    port: int = 0
    protocol: str | None = None
    region_id: str | None = None
    service_id: str | None = None
    status: str | None = None
    url: str | None = None
    zone_id: str | None = None


class FailedInstance(_Wire, kw_only=True, frozen=True, gc=False):
    error_code: str
    error_message: str
    instance: Instance | None


class InstancesRequest(_Wire, kw_only=True, frozen=True):
    """The body of register, heartbeat and unregister (client and replication paths)."""

    instances: list[Instance | None] | None = None


class ReplicatedInstancesRequest(InstancesRequest, kw_only=True, frozen=True):
    """A replicated register: the instances, and who owns each at the sending node (a token's
    name or a client's address; null or "" for no one), aligned with `instances`. Original
    nodes ignore `owners`, as they ignore every unknown key."""

    owners: list[str | None] | None = None


class InstancesResponse(_Wire, kw_only=True, frozen=True):
    failed_instances: list[FailedInstance] | None = None
    response_status: ResponseStatus
