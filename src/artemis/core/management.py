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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["EMPTY", "ManagementView"]


@dataclass(frozen=True, slots=True)
class ManagementView:
    """The pull-outs in force, as the node applies them (built from the store's rows)."""

    region: str = ""
    instances: frozenset[tuple[str, str]] = frozenset()  # (service, instance)
    servers: frozenset[str] = frozenset()  # ip or host name
    zones: frozenset[tuple[str, str]] = frozenset()  # (service, zone)
    version: int = 0

    @classmethod
    def build(cls, region: str, instance_ops: Iterable[tuple[str, str, str, str]],
              server_ops: Iterable[tuple[str, str, str]],
              zone_ops: Iterable[tuple[str, str, str, str]], version: int = 0) -> ManagementView:
        """A view of the operations of `region` (rows: region, key parts..., operation)."""
        mine = region.lower()
        return cls(
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

    def changed_services(self, new: ManagementView) -> frozenset[str] | None:
        """The services whose instances' visibility may differ between self and `new`; None
        when a server operation changed (any service may run on that machine)."""
        if self.servers != new.servers:
            return None
        touched = {s for s, _ in self.instances ^ new.instances}
        touched.update(s for s, _ in self.zones ^ new.zones)
        return frozenset(touched)


EMPTY = ManagementView()
