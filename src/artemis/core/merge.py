"""Anti-entropy and bootstrap in the registry: a peer's lease copies merged here, the tombstones
that tell a missed unregister from a missed register, and this node's leases copied out.

Rules
  * An unregister leaves a tombstone (monotonic and wall time) for as long as the longest lease,
    so anti-entropy can tell "a peer missed my unregister" from "I missed its register". A
    client's unregister is dated now; a peer's (late, or sent by a repair) is dated by the last
    renewal of the lease it removed, so it never condemns a copy renewed after that. At most
    `max_tombstones` are kept (the oldest go first); registering the instance again removes its.
  * merge (anti-entropy and bootstrap) takes a peer's copies of leases: an unknown instance is
    registered with the copy's remaining lease (a copy never extends a lease); a known one with
    the same data keeps the later renewal; different data goes to the copy renewed later (the
    one the instance still heartbeats with); a copy not renewed since the instance was
    unregistered here is reported back as stale there. Only lease ages (durations) are
    compared, never wall clocks, which may be hours apart between nodes. Invalid copies and
    copies of other regions are skipped.
  * A lease copied out carries its instance, when it was registered (epoch ms) and how long ago
    it was renewed (ms, rounded up: a copy never looks younger than its lease).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from artemis import wire
from artemis.core.service_state import Lease, ServiceState, lease_ttl
from artemis.core.versions import Change
from artemis.wire import Instance, LeaseCopy

if TYPE_CHECKING:
    from artemis.core.registry import Registry

__all__ = ["MergeResult", "Tombstones", "lease_batches", "lease_copy", "merge"]


class Tombstones(OrderedDict[str, tuple[float, int]]):
    """"service\\x1finstance" (lower-case) -> (monotonic, wall ms) of its last unregister, oldest
    first, at most `limit`, each kept `keep` seconds (the longest lease)."""

    def __init__(self, limit: int, keep: float) -> None:
        super().__init__()
        self.limit = limit
        self.keep = keep

    def bury(self, key: str, now: float, wall_ms: int) -> None:
        self.pop(key, None)
        self[key] = (now, wall_ms)
        if len(self) > self.limit:
            self.popitem(last=False)

    def forget(self, now: float) -> None:
        """Drop the tombstones older than `keep`."""
        keep = self.keep
        while self:
            key, (when, _) = next(iter(self.items()))
            if now - when <= keep:
                break
            del self[key]


@dataclass(slots=True)
class MergeResult:
    """What merging a peer's copies did: changes here, and instances the peer still holds that
    were unregistered here after it registered them (to unregister there)."""

    changes: list[Change] = field(default_factory=list)
    imported: int = 0
    renewed: int = 0
    stale_at_peer: list[Instance] = field(default_factory=list)


def merge(registry: Registry, copies: Iterable[LeaseCopy], now: float, wall_ms: int,
          asked: float | None) -> MergeResult:
    """`Registry.merge`: the registry's own operation, written here beside its tombstones."""
    result = MergeResult()
    tombstones = registry.tombstones
    tombstones.forget(now)
    problem = registry.checks.problem
    config = registry.config
    services = registry.services
    base = now if asked is None else min(asked, now)
    for copy in copies:
        instance = copy.instance
        if problem(instance, False) is not None:
            continue
        key = instance.service_id.lower()  # type: ignore[union-attr]
        ikey = instance.instance_id.lower()  # type: ignore[union-attr]
        ttl = lease_ttl(instance, config.lease_ttl, config.legacy_lease_ttl, config.max_lease_ttl)
        age = max(0.0, copy.age_ms / 1000) + (now - base)
        if age >= ttl:
            continue  # expired there too; the peer's own sweep removes it
        renewed = now - age
        buried = tombstones.get(f"{key}\x1f{ikey}")
        if buried is not None and buried[0] >= renewed:
            result.stale_at_peer.append(instance)  # not renewed since it left here
            continue
        state = services.get(key)
        lease = None if state is None else state.leases.get(ikey)
        if lease is not None and now <= lease.renewed + lease.ttl:
            encoded = wire.encode(instance)
            if encoded == lease.encoded:
                if renewed > lease.renewed:
                    lease.renewed = renewed
                    result.renewed += 1
                if copy.owner and not lease.writer:  # the owner this node did not know
                    registry._adopt(instance, copy.owner)
                continue
            if (renewed, encoded) <= (lease.renewed, lease.encoded):
                continue  # ours was renewed later (ties: the larger data): the instance
                # heartbeats with ours, the peer takes it from us; both sides decide alike
        owner = copy.owner
        registry._register(instance, now, wall_ms, result.changes, renewed=renewed,
                           created_ms=copy.created_ms,
                           writer=owner if owner and len(owner) <= 256 and owner.isprintable()
                           else None)
        result.imported += 1
    return result


def lease_copy(lease: Lease, now: float) -> bytes:
    """One lease as LeaseCopy JSON: its instance, when it was registered and how long ago it
    was renewed as of `now` (rounded up: a copy never looks younger than its lease)."""
    age = max(0, math.ceil((now - lease.renewed) * 1000))
    return b"".join((b'{"ageMs":', str(age).encode(), b',"createdMs":',
                     str(lease.created_ms).encode(), b',"instance":', lease.encoded,
                     b',"owner":' + wire.encode(lease.writer) if lease.writer else b"", b"}"))


def lease_batches(services: dict[str, ServiceState], keys: Iterable[str] | None, size: int
                  ) -> Iterator[list[tuple[ServiceState, list[Lease]]]]:
    """The leases of these services (all if None), about `size` at a time, grouped by service
    in registry order (a large service continues in the next batch). The caller may let the
    registry change between two batches (the event loop runs): a service or lease removed
    meanwhile is left out, one registered meanwhile may be missed, none comes twice."""
    wanted = list(services) if keys is None else list(dict.fromkeys(k.lower() for k in keys))
    batch: list[tuple[ServiceState, list[Lease]]] = []
    room = size = max(1, size)
    for key in wanted:
        state = services.get(key)
        if state is None:
            continue
        leases = list(state.leases.values())  # as of now; checked again after each yield
        start = 0
        while start < len(leases):
            state = services.get(key)
            if state is None:
                break
            live = state.leases
            taken = leases[start:start + room]
            start += len(taken)
            room -= len(taken)
            part = [lease for lease in taken if live.get(lease.key) is lease]
            if part:
                batch.append((state, part))
            if not room:
                yield batch
                batch, room = [], size
    if batch:
        yield batch
