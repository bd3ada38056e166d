"""The registry: leases of instances, grouped by service, and the changes they go through.

Every operation takes `now` (monotonic seconds) and `wall_ms` (epoch ms, for `changeTime` only) and
returns facts: which instances failed and why, and which changes happened. The shell fans the
changes out (push, replication, metrics); nothing here does I/O.

Rules
  * Identity is (regionId, serviceId, instanceId) compared lower-case (§3.1); services are grouped
    by lower-case serviceId too, so a lookup finds a service whatever the case it is asked in
    (the original's case-sensitive maps are quirk 4, not copied).
  * register creates a new lease (replacing any live one) and records `new`; the lease lasts
    the duration the instance states, else the node's (`lease_ttl`, rules in core/lease.py).
  * heartbeat renews a live lease and never changes stored data (`renew` does the same by key
    alone); an unknown or expired lease answers `data-not-found` so the client registers again.
    On the replication path an unknown instance is registered instead, so lost writes heal
    (except while the node copies a peer's registry, `copying`: the copy brings it). What
    an instance heartbeats with is the truth: a lease holding other data than a field the
    heartbeat carries (a heartbeat may carry only the key; metadata order and the case of ids
    do not count) went stale (a lost write, a merge during a partition) and is never renewed;
    the client path answers `data-not-found` (the client registers its data again), the
    replication path registers the data the peer's client sent. So `renewed` is always the last
    time the instance confirmed the lease's data, which is what merge compares.
  * unregister removes the lease at once and records `delete`; an unknown instance is a success.
  * sweep removes expired leases (unless self-preservation holds them) and records `delete`.
  * A pause of the node itself (found by `tick`, `sweep` or `heartbeat`) is given back to the
    leases that were live when it began, instead of expiring them (rules in core/lease.py).
  * An unregister leaves a tombstone, and merge (anti-entropy and bootstrap) takes a peer's
    copies of leases, deciding by lease ages, never wall clocks (rules in core/merge.py).
  * An instance that fails the checks of core/validation.py fails alone (the rest of its batch
    goes on); so does one refused by a cap on what registrations may add (core/caps.py).
  * Who may write which instance (registration modes, token scopes, ownership of a live
    instance) is core/ownership.py's: a client's write passes a `Writer`, a peer's none.
  * Every change gets the next revision of one node-local counter and goes to the change log.
  * Discovery sees only what management does not hide (pulled-out instances, machines, zones):
    a hidden instance keeps its lease but records no `new`; hiding a visible one records a
    `delete`, showing it again a `new`. The log, snapshots, deltas and push therefore carry the
    visible registry; `checksum` counts every lease (peers compare it), `visible_checksum` what
    discovery answers.
"""

from __future__ import annotations

import sys
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from artemis import wire
from artemis.core import merge as _merge
from artemis.core import renewal as _renewal
from artemis.core.caps import Caps
from artemis.core.expiry import Expiry, sweeping
from artemis.core.lease import Pause, PauseWatch, SafeChecker, SafeCheckerConfig
from artemis.core.merge import MergeResult, Tombstones, lease_copy
from artemis.core.ownership import Mode, Ownership, Writer
from artemis.core.renewal import NOT_EXISTING, OTHER_DATA
from artemis.core.service_state import (
    MASK64,
    Lease,
    ServiceState,
    encode_service,
    instance_hash,
    is_legacy,
    lease_ttl,
)
from artemis.core.validation import InstanceChecks, describe
from artemis.core.versions import Change, ChangeLog, drive
from artemis.core.visibility import EMPTY, ManagementView
from artemis.wire import ErrorCode, FailedInstance, Instance, LeaseCopy

__all__ = [
    "BAD_REQUEST",
    "DATA_NOT_FOUND",
    "NOT_EXISTING",
    "NO_PERMISSION",
    "OTHER_DATA",
    "RATE_LIMITED",
    "BatchResult",
    "Lease",
    "MergeResult",
    "Registry",
    "RegistryConfig",
    "ServiceState",
    "describe",
    "encode_service",
    "instance_hash",
    "lease_copy",
]

BAD_REQUEST: Final = ErrorCode.BAD_REQUEST
RATE_LIMITED: Final = ErrorCode.RATE_LIMITED  # a cap on what registrations may add (core/caps.py)
NO_PERMISSION: Final = ErrorCode.NO_PERMISSION
DATA_NOT_FOUND: Final = ErrorCode.DATA_NOT_FOUND
_MAX_TOMBSTONES: Final = 200_000


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    region: str = "default"
    zone: str = "default"
    lease_ttl: float = 20.0
    legacy_lease_ttl: float = 90.0
    max_lease_ttl: float = 300.0  # the longest lease an instance may state (core/lease.py)
    allow_registry_from_other_zone: bool = True
    safe_checker: SafeCheckerConfig = field(default_factory=SafeCheckerConfig)
    legacy_safe_checker: SafeCheckerConfig = field(
        default_factory=lambda: SafeCheckerConfig(window=60.0)
    )
    change_log_size: int = 200_000
    change_log_bytes: int | None = None  # None: bounded in entries only
    # Caps on what registrations may add (0: no cap); rules in core/caps.py.
    max_instances: int = 0
    max_services: int = 0
    max_instances_per_client: int = 0
    max_services_per_client: int = 0
    max_id_length: int = 256
    max_url_length: int = 2048
    max_metadata_entries: int = 64
    max_field_length: int = 1024
    max_tombstones: int = _MAX_TOMBSTONES
    pause_threshold: float = 2.0  # a longer gap between ticks is the node's own pause (0: off)
    registration_mode: Mode = Mode.OPEN  # who may write what (core/ownership.py)


@dataclass(slots=True)
class BatchResult:
    """What one register / heartbeat / unregister batch did."""

    failed: list[FailedInstance] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    succeeded: list[Instance] = field(default_factory=list)


class Registry:
    """All leases of one node, the change log, and self-preservation (rules in the module doc)."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self.checks = InstanceChecks(config)
        self.services: dict[str, ServiceState] = {}
        self.lease_count = 0
        self.legacy_lease_count = 0
        self.checksum = 0
        self.visible_checksum = 0
        self.visible_count = 0
        self.view: ManagementView = EMPTY
        self.revision = 0
        self.log = ChangeLog(config.change_log_size, config.change_log_bytes)
        self.dirty: set[str] = set()  # services changed since the last snapshot took them
        self.safe = SafeChecker(config.safe_checker)
        self.legacy_safe = SafeChecker(config.legacy_safe_checker)
        self.evicted_total = 0
        self.pauses = PauseWatch(config.pause_threshold)
        self.held_batches = _renewal.HeldBatches()  # large heartbeats sent as held, by hash
        self.heartbeat_mismatches = 0  # heartbeats whose data differed from the lease's
        # (deadline, sequence, service key, instance key): atomic values only, so the tuples are
        # untracked by the garbage collector; `Lease.due` tells the live entry from stale ones.
        self._expiry = Expiry()
        self.tombstones = Tombstones(
            config.max_tombstones, max(config.lease_ttl, config.legacy_lease_ttl))
        self.caps = Caps(config)
        self.refused = self.caps.refused  # registrations refused, by the cap they met
        self.ownership = Ownership(config.registration_mode)

    # --- operations ----------------------------------------------------------------------

    def register(self, instances: Sequence[Instance | None], now: float, wall_ms: int, *,
                 check_zone: bool = True, same_renews: bool = False,
                 client: str | None = None, writer: Writer | None = None,
                 owners: Sequence[str | None] | None = None) -> BatchResult:
        """Register a batch; with `same_renews` (the replication path) an instance registered
        with exactly the same data is renewed instead, so a repeated copy pushes nothing.
        `client` is the caller's address (None from a peer): the caps of core/caps.py apply;
        `writer` who writes (None from a peer): the rules of core/ownership.py apply.
        `owners` (a peer's write): who owns each instance at the peer, aligned with
        `instances`; a lease takes its owner from there (else keeps the one it replaces)."""
        result = BatchResult()
        ownership = self.ownership
        owned = ({id(i): o for i, o in zip(instances, owners, strict=False) if o}
                 if owners and writer is None else None)
        for instance in self._valid(instances, check_zone, result, writer):
            if same_renews and self._renew_same(instance, now):
                if owned:
                    self._adopt(instance, owned.get(id(instance)))
                result.succeeded.append(instance)
                continue
            lease = self._held(instance)
            if self._denied(ownership.register_refusal(lease, instance, writer, now), instance,
                            result) or self._refused(instance, client, result):
                continue
            self._register(instance, now, wall_ms, result.changes, owner=client,
                           writer=(owned.get(id(instance)) if owned else None)
                           or ownership.owner(lease, writer, now))
            result.succeeded.append(instance)
        return result

    def owners(self, instances: Sequence[Instance]) -> list[str]:
        """Who owns each of these instances here ("" for one not held or owned by no one): what
        a replicated register carries to the peers."""
        out = []
        for instance in instances:
            lease = self._held(instance)
            out.append("" if lease is None else lease.writer)
        return out

    def _adopt(self, instance: Instance, owner: str | None) -> None:
        """A peer's same-data register names the owner of a lease held without one (copied by
        bootstrap or repair from a node that did not know it): the lease takes it."""
        lease = self._held(instance)
        if owner and lease is not None and not lease.writer:
            lease.writer = sys.intern(owner)

    def heartbeat(self, instances: Sequence[Instance | None], now: float, wall_ms: int, *,
                  check_zone: bool = True, register_unknown: bool = False,
                  writer: Writer | None = None, copying: bool = False) -> BatchResult:
        """Renew a batch (rules in the module doc and core/renewal.py); `writer` is held to its
        token's scope; `copying`: the node is copying a peer's registry, so an instance it does
        not hold (or holds expired) succeeds without being registered or renewed."""
        return _renewal.heartbeat(self, instances, now, wall_ms, check_zone, register_unknown,
                                  writer, copying)

    def held_exactly(self, ids: Sequence[_renewal.Ids], sent: bytes, now: float,
                     *, check_zone: bool = True, remember: bool = False) -> list[Lease] | None:
        """The live leases of a heartbeat's instances (`ids`) if `sent` is exactly the JSON
        those leases hold, joined by commas, else None; `renew_leases` renews them; with
        `remember` (a client's batch) a large batch is remembered for `held_again`
        (core/renewal.py)."""
        return _renewal.held_exactly(self, ids, sent, now, check_zone, remember)

    def held_again(self, sent: bytes, now: float, *, check_zone: bool = True
                   ) -> list[Lease] | None:
        """The leases of a large batch `held_exactly` remembered, if `sent` is still exactly
        their JSON and they are still live, else None (core/renewal.py)."""
        return _renewal.held_again(self, sent, now, check_zone)

    def renew_leases(self, leases: Sequence[Lease], now: float) -> None:
        _renewal.renew(self, leases, now)

    def renew(self, service_id: str, instance_id: str, now: float,
              writer: Writer | None = None) -> tuple[Lease | None, str | None]:
        """A heartbeat by key alone (Eureka's renewals carry no data): (the lease renewed, None);
        (None, None) when none is live; (None, why) when `writer`'s token may not write it."""
        if now > self.pauses.deadline:
            self._resume(now)
        state = self.services.get(service_id.lower())
        lease = None if state is None else state.leases.get(instance_id.lower())
        if state is None or lease is None or now > lease.renewed + lease.ttl:
            return None, None
        if writer is not None and writer.scope is not None and (refusal := self.ownership.
                scope_refusal(Instance(service_id=state.service_id), writer)) is not None:
            return None, refusal
        lease.renewed = now
        (self.legacy_safe if lease.legacy else self.safe).renewed(now, 1)
        return lease, None

    def unregister(self, instances: Sequence[Instance | None], now: float, wall_ms: int, *,
                   check_zone: bool = True, from_peer: bool = False,
                   writer: Writer | None = None) -> BatchResult:
        """Unregister a batch. The tombstone of a client's unregister is `now`; a peer's
        (`from_peer`) is the removed lease's last renewal, the latest time this node knows the
        instance was there (a peer's unregister may come late, or from a repair: copies renewed
        after it are newer than what it removed), and none when nothing was held. `writer`:
        who unregisters (None from a peer), held to core/ownership.py."""
        result = BatchResult()
        for instance in self._valid(instances, check_zone, result, writer):
            state = self.services.get(instance.service_id.lower())  # type: ignore[union-attr]
            lease = None if state is None else state.leases.get(
                instance.instance_id.lower())  # type: ignore[union-attr]
            if self._denied(self.ownership.unregister_refusal(lease, writer, now), instance,
                            result):
                continue
            if lease is not None:
                self._remove(state, lease, now, wall_ms, result.changes)  # type: ignore[arg-type]
            if not from_peer or lease is not None:
                self.tombstones.bury(f"{instance.service_id.lower()}\x1f"  # type: ignore[union-attr]
                                     f"{instance.instance_id.lower()}",  # type: ignore[union-attr]
                                     now if lease is None or not from_peer else lease.renewed,
                                     wall_ms)
            result.succeeded.append(instance)
        return result

    def merge(self, copies: Iterable[LeaseCopy], now: float, wall_ms: int, *,
              asked: float | None = None) -> MergeResult:
        """Merge a peer's copies of leases (rules in core/merge.py); invalid copies and copies
        of other regions are skipped.

        Conflicts are decided by renewal, never by wall clocks: a copy was renewed `age_ms`
        before the peer answered, which happened after `asked` (monotonic, when the copies were
        asked for; default `now`), so `asked - age` is a renewal time of this node's own clock
        that is never later than the real one. Wall clocks of two nodes may be hours apart; the
        age of a lease is a duration and means the same on both."""
        return _merge.merge(self, copies, now, wall_ms, asked)

    def checksums(self) -> dict[str, int]:
        """The checksum of every service, by lower-case service id."""
        return {key: state.checksum for key, state in self.services.items()}

    def copies(self, keys: Iterable[str] | None, now: float) -> Iterator[bytes]:
        """The leases of these services (all if None) as LeaseCopy JSON, one per lease."""
        services = self.services
        states = (services.values() if keys is None
                  else (s for s in (services.get(k.lower()) for k in keys) if s is not None))
        for state in states:
            for lease in state.leases.values():
                yield lease_copy(lease, now)

    def lease_batches(self, keys: Iterable[str] | None, size: int
                      ) -> Iterator[list[tuple[ServiceState, list[Lease]]]]:
        """The leases of these services (all if None), about `size` at a time, grouped by
        service in registry order (a large service continues in the next batch). The caller may
        let the registry change between two batches (the event loop runs): a service or lease
        removed meanwhile is left out, one registered meanwhile may be missed, none comes
        twice."""
        return _merge.lease_batches(self.services, keys, size)

    def sweep(self, now: float, wall_ms: int) -> list[Change]:
        """Remove the leases that expired by `now`; only leases due are looked at."""
        return drive(self.sweeping(now, wall_ms))

    def sweeping(self, now: float, wall_ms: int, step: int = 5_000
                 ) -> Generator[None, None, list[Change]]:
        """`sweep`, yielding after every `step` leases looked at (core/expiry.py)."""
        if now > self.pauses.deadline:
            self._resume(now)
        return sweeping(self, self._expiry, now, wall_ms, step)

    def tick(self, now: float) -> Pause | None:
        """The node's own loop runs at `now`; the pause this ends, if any, was given back to the
        live leases (rules in core/lease.py)."""
        gap = self.pauses.tick(now)
        return self._credit(now, gap) if gap else None

    def _resume(self, now: float) -> None:
        """An operation found the node paused since its last tick: give the gap back first."""
        gap = self.pauses.missed(now)
        if gap:
            self._credit(now, gap)

    def _credit(self, now: float, gap: float) -> Pause:
        credit = self.pauses.credit
        leases = 0
        for state in self.services.values():
            for lease in state.leases.values():
                renewed = credit(lease.renewed, lease.ttl, now, gap)
                if renewed is not None:
                    lease.renewed = renewed  # filed again when its old deadline comes (expiry.py)
                    leases += 1
        return self.pauses.credited(now, gap, leases)

    def check_safety(self, now: float) -> None:
        """The once-a-second self-preservation decision of both lease managers."""
        self.safe.check(now)
        self.legacy_safe.check(now)

    def reload(self, service_id: str, wall_ms: int) -> Change:
        """Record a `reload` of a service: subscribers should fetch it again (§3.5)."""
        instance = Instance(service_id=service_id, instance_id="reload", ip="0.0.0.0",
                            url="http://serviceId/reload")
        key = service_id.lower()
        state = self.services.get(key)
        checksum = 0 if state is None else state.visible_checksum
        return self._record("reload", key, "reload", wall_ms, None, None, wire.encode(instance),
                            checksum)

    # --- reads ---------------------------------------------------------------------------

    def service(self, service_id: str) -> ServiceState | None:
        return self.services.get(service_id.lower())

    def leases(self) -> Iterator[Lease]:
        for state in self.services.values():
            yield from state.leases.values()

    @property
    def instance_count(self) -> int:
        return self.lease_count + self.legacy_lease_count

    def client_instances(self, client: str) -> int:
        """How many instances the client at this address registered (and still holds)."""
        return self.caps.client_instances(client)

    # --- caps ----------------------------------------------------------------------------

    def _refused(self, instance: Instance, client: str | None, result: BatchResult) -> bool:
        caps = self.caps
        if not caps.active:
            return False
        reason = caps.refusal(instance, client, self.services,
                              self.lease_count + self.legacy_lease_count)
        if reason is None:
            return False
        result.failed.append(FailedInstance(
            error_code=RATE_LIMITED, error_message=f"{describe(instance)}: {reason}",
            instance=instance))
        return True

    @staticmethod
    def _denied(reason: str | None, instance: Instance, result: BatchResult) -> bool:
        """A refusal of core/ownership.py, if any, as the instance's `no-permission`."""
        if reason is None:
            return False
        result.failed.append(FailedInstance(
            error_code=NO_PERMISSION, error_message=f"{describe(instance)}: {reason}",
            instance=instance))
        return True

    # --- internals -----------------------------------------------------------------------

    def _valid(self, instances: Sequence[Instance | None], check_zone: bool,
               result: BatchResult, writer: Writer | None = None) -> Iterator[Instance]:
        """The instances of a batch that pass the checks of core/validation.py and are in the
        `writer`'s scope; the others go to `result.failed` (nulls are skipped, as the original
        skips them)."""
        problem = self.checks.problem
        scoped = writer is not None and writer.scope is not None
        for instance in instances:
            if instance is None:
                continue
            found = problem(instance, check_zone)
            if found is None:
                if not scoped or not self._denied(
                        self.ownership.scope_refusal(instance, writer), instance, result):
                    yield instance
            else:
                code, reason = found
                result.failed.append(FailedInstance(
                    error_code=code, error_message=f"{describe(instance)}: {reason}",
                    instance=instance))

    def _held(self, instance: Instance) -> Lease | None:
        state = self.services.get(instance.service_id.lower())  # type: ignore[union-attr]
        return None if state is None else state.leases.get(
            instance.instance_id.lower())  # type: ignore[union-attr]

    def _renew_same(self, instance: Instance, now: float) -> bool:
        lease = self._held(instance)
        if lease is None or now > lease.renewed + lease.ttl or lease.encoded != wire.encode(
                instance):
            return False
        lease.renewed = now
        return True

    def _register(self, instance: Instance, now: float, wall_ms: int,
                  changes: list[Change], renewed: float | None = None,
                  created_ms: int | None = None, owner: str | None = None,
                  writer: str | None = None) -> None:
        """Register `instance` (a new lease); `owner` is the registering client's address and
        `writer` who owns it (core/ownership.py), each None to keep that of the lease it
        replaces (a peer's write)."""
        key = instance.service_id.lower()  # type: ignore[union-attr]
        state = self.services.get(key)
        if state is None:
            state = self.services[key] = ServiceState(
                key, instance.service_id, rules=self.view.rules_of(key),  # type: ignore[arg-type]
                logic=self.view.logic_of(key), known_since=self.revision)
        legacy = is_legacy(instance)
        cfg = self.config  # tombstones (core/merge.py) outlive the longest lease granted
        ttl = lease_ttl(instance, cfg.lease_ttl, cfg.legacy_lease_ttl, cfg.max_lease_ttl)
        self.tombstones.keep = max(self.tombstones.keep, ttl)
        ikey = instance.instance_id.lower()  # type: ignore[union-attr]
        ip = (instance.ip or "").lower()
        # A registry holds few zones and groups: one string each, shared by their leases.
        zone = sys.intern((instance.zone_id or "").lower())
        group = sys.intern((instance.group_id or "").strip().lower())  # blank: the default group
        view = self.view
        hidden = not view.empty and view.hides(key, ikey, ip, zone, group)
        if self.tombstones:
            self.tombstones.pop(f"{key}\x1f{ikey}", None)  # registered again: not gone
        encoded = wire.encode(instance)
        renewed = now if renewed is None else renewed
        lease = Lease(encoded, instance_hash(encoded), state.key, ikey,
                      wall_ms if created_ms is None else created_ms, renewed, ttl, legacy,
                      ip=ip, zone=zone, group=group, hidden=hidden)
        old = state.leases.get(ikey)
        if owner is not None:
            lease.owner = sys.intern(owner)
        elif old is not None:
            lease.owner = old.owner
        if writer is not None:
            lease.writer = sys.intern(writer)
        elif old is not None:
            lease.writer = old.writer
        self.caps.own(lease)
        shown_before = old is not None and not old.hidden
        if old is not None:
            self.caps.disown(old)
            state.checksum = (state.checksum - old.hash) & MASK64
            self.checksum = (self.checksum - old.hash) & MASK64
            self._count(old.legacy, -1)
            if shown_before:
                self._show(state, old, -1)
        state.leases[ikey] = lease
        state.checksum = (state.checksum + lease.hash) & MASK64
        self.checksum = (self.checksum + lease.hash) & MASK64
        self._count(legacy, 1)
        self._expiry.file(renewed + ttl, lease)
        if not hidden:
            self._show(state, lease, 1)
            changes.append(self._record("new", state.key, ikey, wall_ms,
                                        old.hash if shown_before else None,  # type: ignore[union-attr]
                                        lease.hash, encoded, state.visible_checksum))
        elif shown_before:  # registered again while pulled out: discovery loses it
            changes.append(self._record("delete", state.key, ikey, wall_ms,
                                        old.hash, None, old.encoded,  # type: ignore[union-attr]
                                        state.visible_checksum))

    def _remove(self, state: ServiceState, lease: Lease, now: float, wall_ms: int,
                changes: list[Change]) -> None:
        before = self.legacy_lease_count if lease.legacy else self.lease_count
        (self.legacy_safe if lease.legacy else self.safe).departed(now, before)
        del state.leases[lease.key]
        self.caps.disown(lease)
        state.checksum = (state.checksum - lease.hash) & MASK64
        self.checksum = (self.checksum - lease.hash) & MASK64
        self._count(lease.legacy, -1)
        if not state.leases:
            del self.services[state.key]
        if not lease.hidden:
            self._show(state, lease, -1)
            changes.append(self._record("delete", state.key, lease.key, wall_ms, lease.hash,
                                        None, lease.encoded, state.visible_checksum))

    def _show(self, state: ServiceState, lease: Lease, sign: int) -> None:
        """Count a lease in (sign 1) or out of (-1) what discovery shows."""
        state.visible += sign
        self.visible_count += sign
        state.visible_checksum = (state.visible_checksum + sign * lease.hash) & MASK64
        self.visible_checksum = (self.visible_checksum + sign * lease.hash) & MASK64

    def apply_view(self, view: ManagementView, wall_ms: int) -> list[Change]:
        """Take new management data: instances it hides get a `delete`, instances it shows
        again a `new` (only the services the change can touch are looked at)."""
        old, self.view = self.view, view
        ruled = old.changed_rules(view)
        touched = old.changed_services(view)
        keys = list(self.services) if touched is None else [
            k for k in touched if k in self.services]
        changes: list[Change] = []
        for key in keys:
            state = self.services[key]
            for lease in state.leases.values():
                hidden = view.hides(key, lease.key, lease.ip, lease.zone, lease.group)
                if hidden == lease.hidden:
                    continue
                lease.hidden = hidden
                if hidden:
                    self._show(state, lease, -1)
                    changes.append(self._record("delete", key, lease.key, wall_ms, lease.hash,
                                                None, lease.encoded, state.visible_checksum))
                else:
                    self._show(state, lease, 1)
                    changes.append(self._record("new", key, lease.key, wall_ms, None,
                                                lease.hash, lease.encoded,
                                                state.visible_checksum))
        for key in sorted(ruled):  # new route rules: subscribers fetch the service again
            ruled_state = self.services.get(key)
            if ruled_state is not None:
                ruled_state.rules = view.rules_of(key)
                ruled_state.logic = view.logic_of(key)
                changes.append(self.reload(ruled_state.service_id, wall_ms))
        return changes

    def _record(self, kind: str, service: str, key: str, wall_ms: int, prev_hash: int | None,
                new_hash: int | None, encoded: bytes, service_checksum: int) -> Change:
        self.revision += 1
        change = Change(self.revision, kind, wall_ms, service, key, prev_hash, new_hash, encoded,
                        service_checksum)
        self.log.append(change)
        state = self.services.get(service)
        if state is not None:
            state.touched(self.revision)
        self.dirty.add(service)
        return change

    def _count(self, legacy: bool, delta: int) -> None:
        if legacy:
            self.legacy_lease_count += delta
        else:
            self.lease_count += delta

    def __repr__(self) -> str:
        return (f"Registry(region={self.config.region!r}, services={len(self.services)}, "
                f"instances={self.instance_count}, revision={self.revision}, "
                f"safe={self.safe.is_safe})")
