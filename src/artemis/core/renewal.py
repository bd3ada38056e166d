"""Renewals: the heartbeat of a batch, and the cheap ways the common case takes.

Rules (the heartbeat's own are in core/registry.py's module doc)
  * The common case is every instance sent with exactly the data of its live lease (every
    client sends what it registered). That data passed the checks of core/validation.py when it
    was registered, so only expiry, the zone rule (a lease a peer copied from another zone is
    not renewed by a client of a node that refuses other zones) and a token's scope (a scoped
    token's writes take the whole path) are looked at again.
  * `heartbeat` finds that case per instance after decoding: the lease's JSON equals the
    instance encoded again.
  * `held_exactly` finds it before decoding: the shell hands over each instance's ids and the
    text of the instances as sent (what is between the brackets of `"instances":[...]`), which
    must be the very bytes the live leases of those ids hold, joined by commas (so canonical:
    no space, no key named twice; one comparison of the whole text). Then the shell admits the
    batch (rate limits) and has them renewed (`renew`). Else nothing is renewed, and the shell
    decodes the batch and takes the whole path, which answers each failure as before.
  * `held_again` finds it without reading the ids at all, for a client's large batch (at least
    HELD_BATCH_MIN instances) that `held_exactly` found before: an agent that heartbeats for
    many instances sends the same text every time. The leases it found are remembered by a
    hash of the text's length and its first and last 4 KB (`batch_key`: hashing 2 MB would
    cost a third of the rest); found again, each must still be the live lease of its key, or
    a lease registered again since with the very same JSON (which takes its place), not
    expired and in the zone, and the text must be their JSON joined, compared in full, so a
    batch that changed, a lease removed or registered again with other data, or two texts of
    one key only send the batch to `held_exactly`. The leases are kept in a list that is
    mended in place: a container made anew for each batch every round would be walked by the
    garbage collector. A batch not used for the longest lease's time is
    forgotten, and at most HELD_BATCH_LEASES leases are remembered (the oldest go first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Protocol

from artemis import wire
from artemis.core.service_state import Lease, same_data
from artemis.core.validation import describe, unknown_first
from artemis.wire import ErrorCode, FailedInstance, Instance

if TYPE_CHECKING:
    from artemis.core.ownership import Writer
    from artemis.core.registry import BatchResult, Registry

__all__ = ["HELD_BATCH_LEASES", "HELD_BATCH_MIN", "NOT_EXISTING", "OTHER_DATA", "HeldBatches",
           "Ids", "batch_key", "heartbeat", "held_again", "held_exactly", "renew"]

NOT_EXISTING: Final = "Instance is not exising! Need re-register."  # sic, the original's text
OTHER_DATA: Final = "Instance data differs from the registered instance. Need re-register."
HELD_BATCH_MIN: Final = 64  # instances a batch has, at least, to be remembered by held_exactly
HELD_BATCH_LEASES: Final = 2_000_000  # leases remembered at most (a reference each: 16 MB)


def heartbeat(reg: Registry, instances: Sequence[Instance | None], now: float, wall_ms: int,
              check_zone: bool, register_unknown: bool, writer: Writer | None,
              copying: bool = False) -> BatchResult:
    """Renew a batch (rules above and in core/registry.py)."""
    from artemis.core.registry import BatchResult

    result = BatchResult()
    services, succeeded = reg.services, result.succeeded
    if now > reg.pauses.deadline:
        reg._resume(now)
    quick = writer is None or writer.scope is None
    home = _home(reg, check_zone)
    encode = wire.encode
    renewed = legacy_renewed = 0
    for instance in instances:
        if quick and instance is not None:
            sid, iid = instance.service_id, instance.instance_id
            state = services.get(sid.lower()) if sid else None
            lease = None if state is None or not iid else state.leases.get(iid.lower())
            if (lease is not None and now <= lease.renewed + lease.ttl
                    and (home is None or lease.zone == home)
                    and lease.encoded == encode(instance)):
                lease.renewed = now
                if lease.legacy:
                    legacy_renewed += 1
                else:
                    renewed += 1
                succeeded.append(instance)
                continue
        for valid in reg._valid((instance,), check_zone, result, writer):
            lease = reg._held(valid)
            if _renew_checked(reg, valid, lease, now, wall_ms, result, register_unknown,
                              copying):
                if lease.legacy:  # type: ignore[union-attr]
                    legacy_renewed += 1
                else:
                    renewed += 1
    _count(reg, now, renewed, legacy_renewed)
    if result.failed and not register_unknown:  # unknown first (validation.py's rules)
        result.failed = unknown_first(result.failed, reg._held, NOT_EXISTING)
    return result


class Ids(Protocol):
    """An instance's ids (wire.Instance has them, and so does what the shell reads of a body)."""

    @property
    def service_id(self) -> str | None: ...

    @property
    def instance_id(self) -> str | None: ...


_KEY_ENDS: Final = 4096


def batch_key(sent: bytes) -> int:
    """What `HeldBatches` files a batch's text under (rules above)."""
    return hash((len(sent), sent[:_KEY_ENDS], sent[-_KEY_ENDS:]))


class HeldBatches:
    """Large batches `held_exactly` found, by `batch_key` of their text: their leases and when
    they were last found, the least recently found first (rules above)."""

    __slots__ = ("_entries", "forgotten", "hits", "leases", "made", "max_leases")

    def __init__(self, max_leases: int = HELD_BATCH_LEASES) -> None:
        self._entries: dict[int, tuple[list[Lease], float]] = {}
        self.max_leases = max_leases
        self.leases = 0  # remembered, over every batch
        self.hits = 0
        self.made = 0  # batches remembered anew by held_exactly
        self.forgotten = 0  # batches dropped: stale when found, unused, or over max_leases

    def take(self, key: int) -> list[Lease] | None:
        """The leases remembered under `key`, forgotten until `keep` keeps them again."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self.leases -= len(entry[0])
        return entry[0]

    def keep(self, key: int, leases: list[Lease], now: float, unused_for: float) -> None:
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self.leases -= len(old[0])
        entries[key] = (leases, now)
        self.leases += len(leases)
        while entries:  # the least recently found first
            first = next(iter(entries))
            kept, used = entries[first]
            if self.leases <= self.max_leases and now - used <= unused_for:
                break
            del entries[first]
            self.leases -= len(kept)
            self.forgotten += 1

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"HeldBatches({len(self._entries)} batches, {self.leases} leases)"


def held_again(reg: Registry, sent: bytes, now: float, check_zone: bool) -> list[Lease] | None:
    """The leases of a batch `held_exactly` found before if `sent` is still exactly their JSON
    and each is still its key's live lease, or None (rules above). Renews nothing."""
    batches = reg.held_batches
    key = batch_key(sent)
    leases = batches.take(key)
    if leases is None:
        return None
    if now > reg.pauses.deadline:
        reg._resume(now)
    services = reg.services
    home = _home(reg, check_zone)
    for i, lease in enumerate(leases):
        state = services.get(lease.service)
        live = None if state is None else state.leases.get(lease.key)
        if live is not lease:
            if live is None or live.encoded != lease.encoded:
                batches.forgotten += 1
                return None
            leases[i] = lease = live  # registered again with the same data: its new lease
        if now > lease.renewed + lease.ttl or (home is not None and lease.zone != home):
            batches.forgotten += 1
            return None
    if b",".join([lease.encoded for lease in leases]) != sent:
        batches.forgotten += 1
        return None
    batches.hits += 1
    batches.keep(key, leases, now, reg.config.max_lease_ttl)
    return leases


def held_exactly(reg: Registry, ids: Sequence[Ids], sent: bytes, now: float,
                 check_zone: bool, remember: bool = False) -> list[Lease] | None:
    """The live lease of every instance of `ids` if `sent` is exactly their JSON, the very
    bytes those leases hold joined by commas, or None (rules above); with `remember`, a batch
    of HELD_BATCH_MIN instances or more is remembered for `held_again`. Renews nothing."""
    if now > reg.pauses.deadline:
        reg._resume(now)
    services = reg.services
    home = _home(reg, check_zone)
    leases: list[Lease] = []
    for one in ids:
        sid, iid = one.service_id, one.instance_id
        state = services.get(sid.lower()) if sid else None
        lease = None if state is None or not iid else state.leases.get(iid.lower())
        if (lease is None or now > lease.renewed + lease.ttl
                or (home is not None and lease.zone != home)):
            return None
        leases.append(lease)
    if b",".join([lease.encoded for lease in leases]) != sent:
        return None
    if remember and len(leases) >= HELD_BATCH_MIN:
        reg.held_batches.made += 1
        reg.held_batches.keep(batch_key(sent), leases, now, reg.config.max_lease_ttl)
    return leases


def renew(reg: Registry, leases: Sequence[Lease], now: float) -> None:
    """Renew these live leases (`held_exactly`'s) at `now`."""
    legacy_renewed = 0
    for lease in leases:
        lease.renewed = now
        legacy_renewed += lease.legacy
    _count(reg, now, len(leases) - legacy_renewed, legacy_renewed)


def _home(reg: Registry, check_zone: bool) -> str | None:
    """The zone a client's instances must be in (lower-case), or None when any may be."""
    cfg = reg.config
    return None if not check_zone or cfg.allow_registry_from_other_zone else cfg.zone.lower()


def _count(reg: Registry, now: float, renewed: int, legacy_renewed: int) -> None:
    if renewed:
        reg.safe.renewed(now, renewed)
    if legacy_renewed:
        reg.legacy_safe.renewed(now, legacy_renewed)


def _renew_checked(reg: Registry, instance: Instance, lease: Lease | None, now: float,
                   wall_ms: int, result: BatchResult, register_unknown: bool,
                   copying: bool = False) -> bool:
    """One checked instance of a heartbeat: whether `lease` was renewed (else it failed, or was
    registered on the replication path, or passed over while the node copies its registry)."""
    if lease is None or now > lease.renewed + lease.ttl:
        if copying:  # the copy brings it, with its lease's age: registering it is work twice
            result.succeeded.append(instance)
            return False
        if register_unknown:
            if not reg._refused(instance, None, result):
                reg._register(instance, now, wall_ms, result.changes)
                result.succeeded.append(instance)
        else:
            result.failed.append(FailedInstance(
                error_code=ErrorCode.DATA_NOT_FOUND,
                error_message=f"{describe(instance)}: {NOT_EXISTING}", instance=instance))
        return False
    if lease.encoded != wire.encode(instance) and not same_data(lease, instance):
        # The instance heartbeats with other data than held here: this copy went stale (a lost
        # write, a merge during a partition) and is never renewed. A peer's heartbeat carries
        # what its client sent: take it; a client registers again.
        reg.heartbeat_mismatches += 1
        if register_unknown:
            reg._register(instance, now, wall_ms, result.changes)
            result.succeeded.append(instance)
        else:
            result.failed.append(FailedInstance(
                error_code=ErrorCode.DATA_NOT_FOUND,
                error_message=f"{describe(instance)}: {OTHER_DATA}", instance=instance))
        return False
    lease.renewed = now
    result.succeeded.append(instance)
    return True
