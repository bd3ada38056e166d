"""Caps on what registrations may add to a node: instances and services, per node and per client.

Rules
  * A cap of 0 is no cap. The per-node caps (`max_instances`, `max_services`) apply to everyone;
    the per-client ones (`max_instances_per_client`, `max_services_per_client`) only to a
    client's own requests, counted by the address that registered each lease (a peer's writes
    have no client and keep the owner of the lease they replace).
  * An instance already held (live or expired but not yet swept) is never refused, whoever
    registers it: the caps bound what registrations add, never what the node keeps.
  * A refused instance fails with `rate-limited` (worth another try) and is counted by the cap
    it met, for the metrics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from artemis.wire import Instance

if TYPE_CHECKING:
    from artemis.core.registry import Lease, RegistryConfig, ServiceState

__all__ = ["Caps"]


class Caps:
    """The caps of one registry, what each client holds, and the refusals by cap."""

    __slots__ = ("_client_count", "_client_services", "_config", "active", "refused")

    def __init__(self, config: RegistryConfig) -> None:
        self._config = config
        self.active = bool(config.max_instances or config.max_services
                           or config.max_instances_per_client or config.max_services_per_client)
        # Per client address: instances held, and instances per service.
        self._client_count: dict[str, int] = {}
        self._client_services: dict[str, dict[str, int]] = {}
        self.refused: dict[str, int] = {}  # registrations refused, by the cap they met

    def refusal(self, instance: Instance, client: str | None, services: dict[str, ServiceState],
                instance_count: int) -> str | None:
        """Why registering this instance would exceed a cap (counted in `refused`), or None.
        `services` and `instance_count` are what the registry holds; `client` is None for a
        peer's writes."""
        key = instance.service_id.lower()  # type: ignore[union-attr]
        state = services.get(key)
        if state is not None and instance.instance_id.lower() in state.leases:  # type: ignore[union-attr]
            return None
        cfg = self._config
        if cfg.max_instances and instance_count >= cfg.max_instances:
            return self._refuse("max_instances", f"this node holds its maximum of "
                                f"{cfg.max_instances} instances (max_instances); try again later.")
        if state is None and cfg.max_services and len(services) >= cfg.max_services:
            return self._refuse("max_services", f"this node holds its maximum of "
                                f"{cfg.max_services} services (max_services); try again later.")
        if client:
            if (cfg.max_instances_per_client
                    and self._client_count.get(client, 0) >= cfg.max_instances_per_client):
                return self._refuse("max_instances_per_client", (
                    f"client {client} holds its maximum of {cfg.max_instances_per_client} "
                    "instances on this node (max_instances_per_client)."))
            owned = self._client_services.get(client)
            if (cfg.max_services_per_client and owned is not None and key not in owned
                    and len(owned) >= cfg.max_services_per_client):
                return self._refuse("max_services_per_client", (
                    f"client {client} holds instances of its maximum of "
                    f"{cfg.max_services_per_client} services on this node "
                    "(max_services_per_client)."))
        return None

    def _refuse(self, cap: str, reason: str) -> str:
        self.refused[cap] = self.refused.get(cap, 0) + 1
        return reason

    def own(self, lease: Lease) -> None:
        """Count a new lease to the client that registered it."""
        owner = lease.owner
        if owner:
            self._client_count[owner] = self._client_count.get(owner, 0) + 1
            owned = self._client_services.setdefault(owner, {})
            owned[lease.service] = owned.get(lease.service, 0) + 1

    def disown(self, lease: Lease) -> None:
        """Count a removed or replaced lease out of its client's."""
        owner = lease.owner
        if owner:
            left = self._client_count[owner] - 1
            owned = self._client_services[owner]
            in_service = owned[lease.service] - 1
            if in_service:
                owned[lease.service] = in_service
            else:
                del owned[lease.service]
            if left:
                self._client_count[owner] = left
            else:  # nothing kept for a client that holds nothing
                del self._client_count[owner]
                del self._client_services[owner]

    def client_instances(self, client: str) -> int:
        """How many instances the client at this address registered (and still holds)."""
        return self._client_count.get(client, 0)

    def __repr__(self) -> str:
        return (f"Caps(active={self.active}, clients={len(self._client_count)}, "
                f"refused={self.refused!r})")
