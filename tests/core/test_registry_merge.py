"""The registry's anti-entropy parts: merge of a peer's lease copies, tombstones, checksums, copies,
and the replication path's register that renews identical data."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artemis import wire
from artemis.core.registry import BatchResult, MergeResult, Registry, RegistryConfig, instance_hash
from artemis.core.versions import Change
from artemis.wire import FailedInstance, Instance, LeaseCopy

T0 = 1000.0
WALL = 1_700_000_000_000
MASK = (1 << 64) - 1
Sweep = Callable[..., list[Change]]  # the guarded sweep of conftest.py
LEGACY = {"java_registry": "true"}
HOUR = 3_600_000  # ms


def inst(service: str = "svc", instance: str = "i1", **fields: Any) -> Instance:
    values: dict[str, Any] = {
        "region_id": "default", "zone_id": "default", "service_id": service,
        "instance_id": instance, "ip": "10.0.0.1", "port": 8080,
        "url": f"http://10.0.0.1:8080/{instance}",
    }
    values.update(fields)
    return Instance(**values)


def h(instance: Instance) -> int:
    return instance_hash(wire.encode(instance))


def new(rev: int, instance: Instance, *, wall: int = WALL, prev: int | None = None,
        service_checksum: int | None = None) -> Change:
    """The `new` change a register (or an import) of `instance` is expected to record."""
    assert instance.service_id is not None
    assert instance.instance_id is not None
    return Change(rev, "new", wall, instance.service_id.lower(), instance.instance_id.lower(),
                  prev, h(instance), wire.encode(instance),
                  h(instance) if service_checksum is None else service_checksum)


def delete(rev: int, instance: Instance, *, wall: int = WALL, service_checksum: int = 0) -> Change:
    """The `delete` change the removal of the stored `instance` is expected to record."""
    assert instance.service_id is not None
    assert instance.instance_id is not None
    return Change(rev, "delete", wall, instance.service_id.lower(), instance.instance_id.lower(),
                  h(instance), None, wire.encode(instance), service_checksum)


def copy(instance: Instance, age_ms: int = 0, created_ms: int = WALL) -> LeaseCopy:
    return LeaseCopy(age_ms=age_ms, created_ms=created_ms, instance=instance)


def copies(registry: Registry, now: float, keys: list[str] | None = None) -> list[LeaseCopy]:
    """A registry's copies as a peer receives them: the JSON decoded back."""
    return [wire.decode(raw, LeaseCopy) for raw in registry.copies(keys, now)]


def view(registry: Registry) -> dict[str, dict[str, tuple[Instance, float, float, bool, int]]]:
    """Every lease as service -> instance key -> (instance, renewed, ttl, legacy, created_ms)."""
    return {
        key: {ikey: (lease.instance, lease.renewed, lease.ttl, lease.legacy, lease.created_ms)
              for ikey, lease in state.leases.items()}
        for key, state in registry.services.items()
    }


def stored(registry: Registry) -> dict[str, Instance]:
    """Every stored instance by `service/instance` key."""
    return {f"{lease.service}/{lease.key}": lease.instance for lease in registry.leases()}


@pytest.fixture
def registry() -> Registry:
    return Registry(RegistryConfig())


# --- merge: unknown instances ------------------------------------------------------------------


def test_merge_imports_an_unknown_instance_with_its_remaining_lease(registry: Registry) -> None:
    """An unknown instance is registered with renewed = now - age and the copy's created_ms."""
    i = inst()
    result = registry.merge([copy(i, age_ms=5000, created_ms=WALL - 7000)], T0, WALL)
    assert MergeResult(changes=[new(1, i)], imported=1, renewed=0, stale_at_peer=[]) == result
    assert {"svc": {"i1": (i, T0 - 5.0, 20.0, False, WALL - 7000)}} == view(registry)
    assert (1, [new(1, i)], {"svc"}) == (registry.revision, list(registry.log.since(0) or ()),
                                         registry.dirty)


def test_copies_carry_the_owner_and_a_merge_keeps_it() -> None:
    """A lease's owner travels in its copy (none for an unowned lease): the merged copy is owned
    alike, a same-data copy names the owner a lease held without one, and a copy never takes
    an owner away."""
    peer, here = Registry(RegistryConfig()), Registry(RegistryConfig())
    a, b = inst(instance="a"), inst(instance="b")
    peer.register([a, b], T0, WALL, same_renews=True, owners=["team-a", None])
    sent = copies(peer, T0)
    assert [("a", "team-a"), ("b", None)] == [(c.instance.instance_id, c.owner) for c in sent]
    here.register([a], T0, WALL, same_renews=True)  # held without an owner
    here.register([b], T0, WALL, same_renews=True, owners=["team-b"])
    here.merge(sent, T0 + 1, WALL)
    assert ["team-a", "team-b"] == here.owners([a, b])
    assert [b'"owner":"team-a"' in raw for raw in peer.copies(None, T0)] == [True, False]


@pytest.mark.parametrize(("metadata", "age_ms", "remaining"), [
    (None, 0, 20.0),
    (None, 5000, 15.0),
    (None, 19_500, 0.5),
    (LEGACY, 30_000, 60.0),
])
def test_an_imported_lease_expires_when_the_original_does(
        registry: Registry, sweep: Sweep, metadata: dict[str, str] | None, age_ms: int,
        remaining: float) -> None:
    """A copy never extends a lease: the import is swept exactly ttl - age after the merge."""
    i = inst(metadata=metadata)
    registry.merge([copy(i, age_ms=age_ms)], T0, WALL)
    assert [] == sweep(registry, T0 + remaining, WALL + 1)
    assert [delete(2, i, wall=WALL + 2)] == sweep(registry, T0 + remaining + 0.001, WALL + 2)
    assert ({}, 1) == (view(registry), registry.evicted_total)


@pytest.mark.parametrize(("metadata", "age_ms", "imported"), [
    (None, 19_999, True),
    (None, 20_000, False),
    (None, 60_000, False),
    (LEGACY, 20_000, True),
    (LEGACY, 89_999, True),
    (LEGACY, 90_000, False),
])
def test_merge_skips_copies_whose_lease_has_run_out(
        registry: Registry, metadata: dict[str, str] | None, age_ms: int,
        imported: bool) -> None:
    """A copy aged ttl or more (20 s, legacy 90 s) is skipped: the peer's sweep removes it."""
    i = inst(metadata=metadata)
    result = registry.merge([copy(i, age_ms=age_ms)], T0, WALL)
    expected = MergeResult(changes=[new(1, i)], imported=1) if imported else MergeResult()
    assert expected == result
    ttl = 90.0 if metadata else 20.0
    assert ({"svc": {"i1": (i, T0 - age_ms / 1000, ttl, bool(metadata), WALL)}} if imported
            else {}) == view(registry)


def test_a_negative_age_counts_as_zero(registry: Registry) -> None:
    """A copy claiming a renewal in the future is renewed now, not later."""
    i = inst()
    registry.merge([copy(i, age_ms=-5000)], T0, WALL)
    assert {"svc": {"i1": (i, T0, 20.0, False, WALL)}} == view(registry)


# --- merge: known instances --------------------------------------------------------------------


def test_merge_of_same_data_keeps_the_later_renewal(registry: Registry, sweep: Sweep) -> None:
    """Same data: a later renewal is taken (counted, no change); an earlier one is ignored."""
    i = inst()
    registry.register([i], T0, WALL)
    later = registry.merge([copy(i, age_ms=2000, created_ms=WALL - 1)], T0 + 10, WALL + 1)
    assert MergeResult(changes=[], imported=0, renewed=1, stale_at_peer=[]) == later
    earlier = registry.merge([copy(i, age_ms=9000, created_ms=WALL + 5)], T0 + 10, WALL + 2)
    assert MergeResult() == earlier
    assert ({"svc": {"i1": (i, T0 + 8.0, 20.0, False, WALL)}}, 1) == (view(registry),
                                                                     registry.revision)
    assert [] == sweep(registry, T0 + 20.5, WALL)
    assert [] == sweep(registry, T0 + 28.0, WALL)
    assert [delete(2, i)] == sweep(registry, T0 + 28.001, WALL)


def test_merge_of_different_data_takes_a_copy_renewed_later(registry: Registry) -> None:
    """Different data renewed there after our last renewal replaces ours, with the copy's lease
    and created_ms, however early its registration time reads (a peer's clock behind ours)."""
    ours, theirs = inst(port=1), inst("SVC", "I1", port=2)
    registry.register([ours], T0, WALL)
    result = registry.merge([copy(theirs, age_ms=1000, created_ms=WALL - HOUR)], T0 + 5,
                            WALL + 5000)
    assert MergeResult(changes=[new(2, theirs, wall=WALL + 5000, prev=h(ours))],
                       imported=1) == result
    assert ({"svc": {"i1": (theirs, T0 + 4.0, 20.0, False, WALL - HOUR)}}, h(theirs)) == (
        view(registry), registry.checksum)


@pytest.mark.parametrize(("age_ms", "created_ms"), [
    (5001, WALL + HOUR),
    (6000, WALL + 5000),
    (19_999, WALL + 10 * HOUR),
])
def test_merge_of_different_data_keeps_ours_when_renewed_later(
        registry: Registry, age_ms: int, created_ms: int) -> None:
    """Different data last renewed there before our last renewal changes nothing (nor our
    renewal), however late its registration time reads (a peer's clock hours ahead)."""
    ours, theirs = inst(port=1), inst(port=2)
    registry.register([ours], T0, WALL)
    assert MergeResult() == registry.merge([copy(theirs, age_ms=age_ms, created_ms=created_ms)],
                                           T0 + 5, WALL + 5000)
    assert ({"svc": {"i1": (ours, T0, 20.0, False, WALL)}}, 1) == (view(registry),
                                                                  registry.revision)


@pytest.mark.parametrize(("ours", "theirs", "imported"), [
    (inst(port=1), inst(port=2), True),
    (inst(port=2), inst(port=1), False),
])
def test_equal_renewals_of_different_data_go_to_the_larger_data(
        registry: Registry, ours: Instance, theirs: Instance, imported: bool) -> None:
    """A tie of renewals is decided by the encoded data, the same way on both nodes."""
    registry.register([ours], T0, WALL)
    result = registry.merge([copy(theirs, age_ms=5000)], T0 + 5, WALL + 5000)
    assert ((MergeResult(changes=[new(2, theirs, wall=WALL + 5000, prev=h(ours))], imported=1),
             {"svc": {"i1": (theirs, T0, 20.0, False, WALL)}}) if imported
            else (MergeResult(), {"svc": {"i1": (ours, T0, 20.0, False, WALL)}})) == (
        result, view(registry))


def test_a_copy_is_as_old_as_when_it_was_asked_for(registry: Registry) -> None:
    """With `asked`, a copy's age counts from when the copies were asked for: the time the
    answer spent in flight makes it older, never younger, for its renewal and its expiry."""
    a, b = inst(instance="a"), inst(instance="b")
    result = registry.merge([copy(a, age_ms=500), copy(b, age_ms=18_500)], T0 + 3, WALL,
                            asked=T0 + 1)
    assert (MergeResult(changes=[new(1, a)], imported=1),
            {"svc": {"a": (a, T0 + 0.5, 20.0, False, WALL)}}) == (result, view(registry))
    later = registry.merge([copy(b)], T0 + 4, WALL, asked=T0 + 9)  # asked after now: now
    assert (MergeResult(changes=[new(2, b, service_checksum=(h(a) + h(b)) & MASK)], imported=1),
            {"a": (a, T0 + 0.5, 20.0, False, WALL), "b": (b, T0 + 4, 20.0, False, WALL)}) == (
        later, view(registry)["svc"])


def test_merge_replaces_a_lease_expired_here_but_not_swept(registry: Registry) -> None:
    """A lease past its ttl here is no lease: a live copy of the same data is imported."""
    i = inst()
    registry.register([i], T0, WALL)
    result = registry.merge([copy(i, age_ms=1000, created_ms=WALL)], T0 + 25, WALL + 25_000)
    assert MergeResult(changes=[new(2, i, wall=WALL + 25_000, prev=h(i))], imported=1) == result
    assert {"svc": {"i1": (i, T0 + 24.0, 20.0, False, WALL)}} == view(registry)


def test_merge_skips_invalid_copies_and_other_regions_but_not_other_zones() -> None:
    """Invalid instances and other regions are skipped; the zone check does not apply."""
    registry = Registry(RegistryConfig(zone="z1", allow_registry_from_other_zone=False))
    other_zone = inst(instance="z", zone_id="z2")
    result = registry.merge([
        copy(inst(url=None)),
        copy(inst(instance=" ")),
        copy(inst(instance="p", port=70_000)),
        copy(inst(instance="r", region_id="other")),
        copy(inst(instance="n", region_id=None)),
        copy(other_zone),
    ], T0, WALL)
    assert MergeResult(changes=[new(1, other_zone)], imported=1) == result
    assert {"svc": {"z": (other_zone, T0, 20.0, False, WALL)}} == view(registry)


# --- merge: tombstones -------------------------------------------------------------------------


@pytest.mark.parametrize(("age_ms", "created_ms", "stale"), [
    (2000, WALL + HOUR, True),
    (1000, WALL + HOUR, True),
    (999, WALL - HOUR, False),
])
def test_a_copy_not_renewed_since_our_unregister_is_stale_at_the_peer(
        registry: Registry, age_ms: int, created_ms: int, stale: bool) -> None:
    """A copy last renewed no later than our unregister is reported stale, not imported,
    whatever its registration time reads; a copy renewed after it is imported."""
    registry.register([inst()], T0, WALL)
    registry.unregister([inst()], T0 + 1, WALL + 1000)
    theirs = inst("SVC", "I1", port=7)
    result = registry.merge([copy(theirs, age_ms=age_ms, created_ms=created_ms)], T0 + 2,
                            WALL + 2000)
    if stale:
        assert (MergeResult(stale_at_peer=[theirs]), {}) == (result, view(registry))
    else:
        assert (MergeResult(changes=[new(3, theirs, wall=WALL + 2000)], imported=1),
                {"svc": {"i1": (theirs, T0 + 2 - 0.999, 20.0, False, created_ms)}}) == (
            result, view(registry))


def test_unregister_leaves_a_tombstone_even_for_an_unknown_instance(registry: Registry) -> None:
    """Every unregister is remembered (lower-case key, monotonic and wall time of it)."""
    registry.unregister([inst("Svc", "I1")], T0, WALL)
    assert OrderedDict([("svc\x1fi1", (T0, WALL))]) == registry.tombstones
    peer = inst("svc", "i1")
    assert MergeResult(stale_at_peer=[peer]) == registry.merge(
        [copy(peer, age_ms=1000, created_ms=WALL + HOUR)], T0 + 1, WALL + 1)


def test_a_peers_unregister_condemns_no_copy_renewed_after_what_it_removed(
        registry: Registry) -> None:
    """A peer's unregister (late, or a repair's) is dated by the removed lease's last renewal:
    an older copy is still stale, a copy renewed after it is imported (no cascade)."""
    old, fresh = inst(), inst(url="http://10.0.0.1:8080/new")
    registry.register([old], T0, WALL)
    registry.unregister([old], T0 + 10, WALL, check_zone=False, from_peer=True)
    tombstones = OrderedDict(registry.tombstones)
    stale = registry.merge([copy(old, age_ms=10_500)], T0 + 10, WALL)
    result = registry.merge([copy(fresh, age_ms=5000)], T0 + 10, WALL)
    assert (OrderedDict([("svc\x1fi1", (T0, WALL))]), MergeResult(stale_at_peer=[old]),
            MergeResult(changes=[new(3, fresh)], imported=1)) == (tombstones, stale, result)


def test_a_peers_unregister_of_an_unknown_instance_leaves_no_tombstone(
        registry: Registry) -> None:
    """What a peer unregisters that this node never held leaves nothing to compare with."""
    registry.unregister([inst()], T0, WALL, check_zone=False, from_peer=True)
    assert OrderedDict() == registry.tombstones


def test_a_legacy_copy_is_stale_against_a_tombstone_most_of_its_lease(
        registry: Registry) -> None:
    """A legacy lease (90 s) renewed before our unregister is stale even 80 s later."""
    i = inst(metadata=LEGACY)
    registry.unregister([i], T0 + 1, WALL)
    assert MergeResult(stale_at_peer=[i]) == registry.merge([copy(i, age_ms=79_500)], T0 + 80,
                                                           WALL)


@pytest.mark.parametrize(("config", "keep"), [
    (RegistryConfig(), 90.0),
    (RegistryConfig(lease_ttl=120.0), 120.0),
    (RegistryConfig(legacy_lease_ttl=30.0), 30.0),
])
def test_tombstones_are_forgotten_after_the_longest_lease(
        config: RegistryConfig, keep: float) -> None:
    """A tombstone lasts max(lease_ttl, legacy_lease_ttl) seconds: no live copy was renewed
    before it after that."""
    registry = Registry(config)
    registry.unregister([inst()], T0, WALL)
    registry.merge([], T0 + keep, WALL + 1)
    kept = OrderedDict(registry.tombstones)
    registry.merge([], T0 + keep + 0.001, WALL + 2)
    assert (OrderedDict([("svc\x1fi1", (T0, WALL))]), OrderedDict()) == (
        kept, registry.tombstones)


def test_a_new_unregister_moves_the_tombstone_and_the_oldest_go_first(registry: Registry) -> None:
    """Unregistering again refreshes the tombstone; forgetting goes oldest first."""
    a, b = inst(instance="a"), inst(instance="b")
    registry.unregister([a], T0, WALL)
    registry.unregister([b], T0 + 10, WALL + 10_000)
    registry.unregister([a], T0 + 50, WALL + 50_000)
    assert OrderedDict([("svc\x1fb", (T0 + 10, WALL + 10_000)),
                        ("svc\x1fa", (T0 + 50, WALL + 50_000))]) == registry.tombstones
    registry.merge([], T0 + 101, WALL + 101_000)
    assert OrderedDict([("svc\x1fa", (T0 + 50, WALL + 50_000))]) == registry.tombstones


def test_tombstones_are_bounded_oldest_dropped() -> None:
    """Past max_tombstones the oldest tombstone is dropped."""
    registry = Registry(RegistryConfig(max_tombstones=2))
    for n, name in enumerate("abc"):
        registry.unregister([inst(instance=name)], T0 + n, WALL + n)
    assert OrderedDict([("svc\x1fb", (T0 + 1, WALL + 1)),
                        ("svc\x1fc", (T0 + 2, WALL + 2))]) == registry.tombstones


def test_a_reregistered_instance_is_not_stale_at_a_peer_that_missed_both(
        registry: Registry) -> None:
    """Ours is the later registration: the peer takes it from us, we do not unregister it there."""
    # Today the peer is told to unregister it; its own tombstone (wall time of that unregister)
    # then makes it report our live copy stale in turn, and the instance is gone on both nodes.
    i = inst()
    registry.register([i], T0, WALL)
    registry.unregister([i], T0 + 1, WALL + 1000)
    registry.register([i], T0 + 2, WALL + 2000)
    result = registry.merge([copy(i, age_ms=3000, created_ms=WALL)], T0 + 3, WALL + 3000)
    assert (MergeResult(), {"svc": {"i1": (i, T0 + 2, 20.0, False, WALL + 2000)}}) == (
        result, view(registry))


# --- copies and checksums ----------------------------------------------------------------------


def test_copies_are_lease_copy_json_per_lease(registry: Registry) -> None:
    """Every lease is one LeaseCopy: age in whole ms since its renewal, created_ms, the instance."""
    a, b, c = inst("S1", "a"), inst("s2", "b"), inst("s1", "c", metadata=LEGACY)
    registry.register([a, b], T0, WALL)
    registry.register([c], T0 + 0.5, WALL + 500)
    assert [LeaseCopy(age_ms=1500, created_ms=WALL, instance=a),
            LeaseCopy(age_ms=1000, created_ms=WALL + 500, instance=c),
            LeaseCopy(age_ms=1500, created_ms=WALL, instance=b)] == copies(registry, T0 + 1.5)
    assert [wire.encode(copy(b, age_ms=1500))] == list(registry.copies(["s2"], T0 + 1.5))


def test_copies_of_some_services_only(registry: Registry) -> None:
    """Keys pick services whatever their case; unknown keys and an empty list give nothing."""
    a, b = inst("S1", "a"), inst("s2", "b")
    registry.register([a, b], T0, WALL)
    assert ([copy(b)], [copy(a), copy(b)], []) == (
        copies(registry, T0, ["S2", "missing"]), copies(registry, T0, ["s1", "s2"]),
        copies(registry, T0, []))


def test_copy_age_is_whole_ms_rounded_up_and_never_negative(registry: Registry) -> None:
    """The age rounds sub-millisecond parts up (a copy never outlives its original) and is 0
    when asked before the renewal."""
    i = inst()
    registry.register([i], T0, WALL)
    assert ([copy(i, age_ms=3)], [copy(i, age_ms=0)]) == (
        copies(registry, T0 + 0.0025), copies(registry, T0 - 5))


def test_checksums_are_per_lower_case_service(registry: Registry) -> None:
    """checksums() maps each lower-case service id to its checksum; empty services vanish."""
    a, b, c = inst("S1", "a"), inst("s1", "b"), inst("S2", "c")
    registry.register([a, b, c], T0, WALL)
    assert {"s1": (h(a) + h(b)) & MASK, "s2": h(c)} == registry.checksums()
    registry.unregister([a, b, c], T0, WALL)
    assert {} == registry.checksums()


def test_merging_own_copies_into_an_empty_registry_reproduces_it(registry: Registry) -> None:
    """A registry's copies rebuild it elsewhere: same checksums, leases, renewals and answers."""
    a, b = inst("s1", "a"), inst("s1", "b", metadata=LEGACY)
    c, d = inst("s2", "c"), inst("S2", "d", port=1)
    b2 = inst("s1", "b", metadata=LEGACY, port=2)
    registry.register([a, b, c], T0, WALL)
    registry.register([d], T0 + 2.5, WALL + 2500)
    registry.heartbeat([a], T0 + 4, WALL + 4000)
    registry.register([b2], T0 + 5, WALL + 5000)
    other = Registry(RegistryConfig())
    result = other.merge(copies(registry, T0 + 10), T0 + 10, WALL + 10_000)
    w = WALL + 10_000
    assert MergeResult(changes=[
        new(1, a, wall=w), new(2, b2, wall=w, service_checksum=(h(a) + h(b2)) & MASK),
        new(3, c, wall=w), new(4, d, wall=w, service_checksum=(h(c) + h(d)) & MASK),
    ], imported=4) == result
    assert (registry.checksum, registry.checksums(), view(registry)) == (
        other.checksum, other.checksums(), view(other))
    assert {k: s.body() for k, s in registry.services.items()} == {
        k: s.body() for k, s in other.services.items()}


# --- heartbeats carry the truth ---------------------------------------------------------------


def test_a_heartbeat_with_other_data_is_data_not_found_and_renews_nothing(
        registry: Registry, sweep: Sweep) -> None:
    """A client heartbeat whose data differs from the lease's answers data-not-found (the client
    registers again) and does not renew the stale lease, which expires on its own deadline."""
    held, sent = inst(), inst(url="http://10.0.0.1:8080/new")
    registry.register([held], T0, WALL)
    result = registry.heartbeat([sent], T0 + 15, WALL)
    assert BatchResult(failed=[FailedInstance(
        error_code="data-not-found", instance=sent, error_message="default/default/svc/i1: "
        "Instance data differs from the registered instance. Need re-register.")]) == result
    assert ({"svc": {"i1": (held, T0, 20.0, False, WALL)}}, 1, 1) == (
        view(registry), registry.revision, registry.heartbeat_mismatches)
    assert [delete(2, held)] == sweep(registry, T0 + 20.001, WALL)


def test_a_heartbeat_differing_in_metadata_order_or_id_case_only_renews(
        registry: Registry) -> None:
    """The order of metadata entries and the case of the ids do not make other data."""
    held = inst(metadata={"a": "1", "b": "2"})
    sent = inst("SVC", "I1", region_id="DEFAULT", url=held.url, metadata={"b": "2", "a": "1"})
    registry.register([held], T0, WALL)
    result = registry.heartbeat([sent], T0 + 5, WALL)
    assert (BatchResult(succeeded=[sent]), {"svc": {"i1": (held, T0 + 5, 20.0, False, WALL)}},
            0) == (result, view(registry), registry.heartbeat_mismatches)


def test_a_replicated_heartbeat_with_other_data_registers_it(registry: Registry) -> None:
    """A peer's heartbeat carries what its client sent: it replaces the stale lease (a `new`
    change, registered and renewed now)."""
    held, sent = inst(), inst(url="http://10.0.0.1:8080/new")
    registry.register([held], T0, WALL)
    result = registry.heartbeat([sent], T0 + 5, WALL + 5000, register_unknown=True)
    assert BatchResult(changes=[new(2, sent, wall=WALL + 5000, prev=h(held))],
                       succeeded=[sent]) == result
    assert ({"svc": {"i1": (sent, T0 + 5, 20.0, False, WALL + 5000)}}, 1) == (
        view(registry), registry.heartbeat_mismatches)


# --- register with same_renews -----------------------------------------------------------------


def test_same_renews_register_of_identical_data_only_renews(registry: Registry) -> None:
    """Identical data with same_renews renews the lease and records no change."""
    i = inst()
    registry.register([i], T0, WALL)
    result = registry.register([i], T0 + 5, WALL + 5000, same_renews=True)
    assert BatchResult(failed=[], changes=[], succeeded=[i]) == result
    assert ({"svc": {"i1": (i, T0 + 5, 20.0, False, WALL)}}, 1) == (view(registry),
                                                                   registry.revision)


def test_same_renews_register_of_different_data_records_new(registry: Registry) -> None:
    """Different data with same_renews is a register: a `new` change replacing the old data."""
    old, fresh = inst(), inst(port=9)
    registry.register([old], T0, WALL)
    result = registry.register([fresh], T0 + 5, WALL + 5000, same_renews=True)
    assert BatchResult(failed=[], changes=[new(2, fresh, wall=WALL + 5000, prev=h(old))],
                       succeeded=[fresh]) == result
    assert {"svc": {"i1": (fresh, T0 + 5, 20.0, False, WALL + 5000)}} == view(registry)


@pytest.mark.parametrize(("same_renews", "at"), [(True, T0 + 20.5), (False, T0 + 5)])
def test_register_of_identical_data_records_new_unless_renewable(
        registry: Registry, same_renews: bool, at: float) -> None:
    """Identical data is a fresh `new` without same_renews, or when the lease already expired."""
    i = inst()
    registry.register([i], T0, WALL)
    result = registry.register([i], at, WALL + 1, same_renews=same_renews)
    assert BatchResult(failed=[], changes=[new(2, i, wall=WALL + 1, prev=h(i))],
                       succeeded=[i]) == result
    assert {"svc": {"i1": (i, at, 20.0, False, WALL + 1)}} == view(registry)


# --- properties --------------------------------------------------------------------------------

SIDES = ("a", "b", "both")
REGISTERS = st.lists(st.tuples(
    st.sampled_from(SIDES), st.sampled_from(["s1", "S1", "s2"]), st.sampled_from(["x", "X", "y"]),
    st.integers(0, 2), st.sampled_from([None, {"k": "v"}, LEGACY]),
), max_size=25)
MERGE_AT = T0 + 5


def replay(ops: list[tuple[str, str, str, int, dict[str, str] | None]]
           ) -> tuple[Registry, Registry, dict[str, Instance]]:
    """Two registries that got these registers (each at its own wall ms), and the latest data
    registered for each instance across both."""
    ra, rb = Registry(RegistryConfig()), Registry(RegistryConfig())
    latest: dict[str, Instance] = {}
    for n, (side, service, ident, port, metadata) in enumerate(ops):
        instance = inst(service, ident, port=port, metadata=metadata)
        for name, target in (("a", ra), ("b", rb)):
            if side in (name, "both"):
                target.register([instance], T0 + n * 0.1, WALL + n)
        latest[f"{service.lower()}/{ident.lower()}"] = instance
    return ra, rb, latest


@settings(max_examples=200, deadline=None)
@given(REGISTERS)
def test_registries_converge_after_merging_each_others_copies(
        ops: list[tuple[str, str, str, int, dict[str, str] | None]]) -> None:
    """Registers only: after one exchange of copies both hold the latest registration of every
    instance, and their checksums agree."""
    ra, rb, latest = replay(ops)
    from_a, from_b = copies(ra, MERGE_AT), copies(rb, MERGE_AT)
    result_a = ra.merge(from_b, MERGE_AT, WALL + 1000)
    result_b = rb.merge(from_a, MERGE_AT, WALL + 1000)
    assert ([], []) == (result_a.stale_at_peer, result_b.stale_at_peer)
    assert (ra.checksum, ra.checksums()) == (rb.checksum, rb.checksums())
    assert (latest, latest) == (stored(ra), stored(rb))


@settings(max_examples=200, deadline=None)
@given(REGISTERS, st.sets(st.sampled_from(["s1/x", "s1/y", "s2/x", "s2/y"])))
def test_unregisters_on_one_side_come_back_as_stale_at_the_peer(
        ops: list[tuple[str, str, str, int, dict[str, str] | None]], gone: set[str]) -> None:
    """Instances unregistered on one side after every register are reported stale for the peer's
    copies, never imported; unregistering them there makes both sides equal."""
    ra, rb, latest = replay(ops)
    ra.unregister([inst(*key.split("/")) for key in sorted(gone)], T0 + 3, WALL + 500)
    from_a, from_b = copies(ra, MERGE_AT), copies(rb, MERGE_AT)
    result_a = ra.merge(from_b, MERGE_AT, WALL + 1000)
    result_b = rb.merge(from_a, MERGE_AT, WALL + 1000)
    expected_stale = [c.instance for c in from_b
                      if f"{c.instance.service_id}/{c.instance.instance_id}".lower() in gone]
    assert (expected_stale, []) == (result_a.stale_at_peer, result_b.stale_at_peer)
    survivors = {key: i for key, i in latest.items() if key not in gone}
    assert survivors == stored(ra)
    rb.unregister(result_a.stale_at_peer, MERGE_AT, WALL + 1001)
    assert (survivors, ra.checksum, ra.checksums()) == (stored(rb), rb.checksum, rb.checksums())


def test_equal_registration_times_with_different_data_still_converge() -> None:
    """Two registrations in the same wall ms with different data resolve the same way on both."""
    ra, rb = Registry(RegistryConfig()), Registry(RegistryConfig())
    ra.register([inst(port=1)], T0, WALL)
    rb.register([inst(port=2)], T0, WALL)
    from_a, from_b = copies(ra, T0 + 1), copies(rb, T0 + 1)
    ra.merge(from_b, T0 + 1, WALL + 1000)
    rb.merge(from_a, T0 + 1, WALL + 1000)
    assert ra.checksums() == rb.checksums()


# --- skewed clocks, partitions and re-registrations --------------------------------------------

NODES = 3
PAIRS = [(a, b) for a in range(NODES) for b in range(NODES) if a != b]
WAITS = [0.3, 2.0, 4.9, 12.0, 25.0]  # seconds; the last two outlast heartbeats, then leases
STEP = 0.01  # seconds between two things the client does


def version(n: int) -> Instance:
    """The instance as its client holds it after its n-th registration with new data."""
    return inst(url=f"http://10.0.0.{n % 250 + 1}:8080/v{n}",
                metadata={"release": str(n)} if n % 2 else None)


class SkewedCluster:
    """Registries of three nodes whose wall clocks are hours apart (their monotonic clocks
    arbitrary), the network between them, and the client that owns one instance.

    A write replicates at once to the nodes on its side of the partition and is lost to the
    others, as the shell drops a peer's queue when the peer stops answering; `repair(a, b)` is
    one anti-entropy round of `a` against `b`, with the stale copies it finds unregistered at
    `b` (the request and the answer take a few ms each). The client does what the SDK does: it
    registers again when a heartbeat answers data-not-found."""

    def __init__(self, skews: list[int], monotonic: list[int]) -> None:
        self.nodes = [Registry(RegistryConfig(pause_threshold=0)) for _ in range(NODES)]
        self.skews = skews
        self.monotonic = monotonic
        self.t = 0.0  # real time, seconds
        self.side = [0] * NODES
        self.at = 0  # the node the client talks to
        self.versions = 0
        self.data = version(0)
        self.present = True  # False after the client unregistered and left

    def now(self, n: int) -> float:
        return self.monotonic[n] + self.t

    def wall(self, n: int) -> int:
        return WALL + self.skews[n] + round(self.t * 1000)

    def wait(self, seconds: float) -> None:
        self.t += seconds
        for n, node in enumerate(self.nodes):
            node.sweep(self.now(n), self.wall(n))

    def replicate(self, origin: int, operation: str, reach: set[int]) -> None:
        for n, node in enumerate(self.nodes):
            if n == origin or n not in reach or self.side[n] != self.side[origin]:
                continue
            now, wall = self.now(n), self.wall(n)
            if operation == "register":
                node.register([self.data], now, wall, check_zone=False, same_renews=True)
            elif operation == "heartbeat":
                node.heartbeat([self.data], now, wall, check_zone=False, register_unknown=True)
            else:
                node.unregister([self.data], now, wall, check_zone=False, from_peer=True)

    def client(self, operation: str, reach: set[int] | None = None) -> bool:
        """The client's `operation` at its node; replicated if it succeeded."""
        n, reach = self.at, set(range(NODES)) if reach is None else reach
        self.wait(STEP)
        call = getattr(self.nodes[n], operation)
        result = call([self.data], self.now(n), self.wall(n))
        if not result.failed:
            self.replicate(n, operation, reach)
        return not result.failed

    def reregister(self, node: int, unregister_first: bool) -> None:
        """The client moves to `node` and registers there with new data (as the SDK does
        `register()`: unregister first, then register)."""
        self.at = node
        if unregister_first and self.present:
            self.client("unregister")
        self.versions += 1
        self.data = version(self.versions)
        self.present = True
        assert self.client("register")

    def leave(self) -> None:
        """The client unregisters at its node and stops (until it registers again)."""
        if self.present:
            self.client("unregister")
            self.present = False

    def heartbeat(self, reach: set[int] | None = None) -> None:
        if not self.present:
            return
        if not self.client("heartbeat", reach):
            assert self.client("register", reach)

    def repair(self, a: int, b: int) -> None:
        if self.side[a] != self.side[b]:
            return
        self.wait(0.001)
        ours, theirs = self.nodes[a], self.nodes[b]
        if ours.checksum == theirs.checksum:
            return  # equal checksums: nothing is sent
        asked = self.now(a)
        self.wait(0.001)  # the request travels
        answer = copies(theirs, self.now(b))
        self.wait(0.002)  # the answer travels
        result = ours.merge(answer, self.now(a), self.wall(a), asked=asked)
        if result.stale_at_peer:
            theirs.unregister(result.stale_at_peer, self.now(b), self.wall(b), check_zone=False,
                              from_peer=True)

    def held(self) -> list[Instance | None]:
        """What each node holds of the instance (live or not yet swept)."""
        out: list[Instance | None] = []
        for node in self.nodes:
            state = node.services.get("svc")
            lease = None if state is None else state.leases.get("i1")
            out.append(None if lease is None else lease.instance)
        return out


HISTORY = st.lists(st.one_of(
    st.tuples(st.just("reregister"), st.integers(0, NODES - 1), st.booleans()),
    st.tuples(st.just("heartbeat"), st.just(0), st.just(False)),
    st.tuples(st.just("move"), st.integers(0, NODES - 1), st.just(False)),
    st.tuples(st.just("leave"), st.just(0), st.just(False)),
    st.tuples(st.just("isolate"), st.integers(0, NODES), st.just(False)),  # NODES: all apart
    st.tuples(st.just("heal"), st.just(0), st.just(False)),
    st.tuples(st.just("repair"), st.integers(0, len(PAIRS) - 1), st.just(False)),
    st.tuples(st.just("wait"), st.integers(0, len(WAITS) - 1), st.just(False)),
), max_size=40)
CLOCKS = st.lists(st.integers(-3 * HOUR, 3 * HOUR), min_size=NODES, max_size=NODES)
MONOTONIC = st.lists(st.integers(0, 10**6), min_size=NODES, max_size=NODES)


@settings(max_examples=400, deadline=None)
@given(CLOCKS, MONOTONIC, HISTORY, st.sets(st.integers(0, NODES - 1)),
       st.lists(st.integers(0, len(PAIRS) - 1), max_size=12))
def test_after_a_partition_heals_every_node_ends_with_what_the_instance_heartbeats(
        skews: list[int], monotonic: list[int], history: list[tuple[str, int, bool]],
        reach: set[int], repairs: list[int]) -> None:
    """Clocks hours apart, partitions, new data on any side: after the heal and a heartbeat,
    repairs never take a node off what the instance heartbeats, and one round gives it to all."""
    cluster = SkewedCluster(skews, monotonic)
    assert cluster.client("register")
    for kind, arg, flag in history:
        if kind == "reregister":
            cluster.reregister(arg, flag)
        elif kind == "heartbeat":
            cluster.heartbeat()
        elif kind == "move":
            cluster.at = arg
        elif kind == "leave":
            cluster.leave()
        elif kind == "isolate":
            cluster.side = list(range(NODES)) if arg == NODES else [
                int(n == arg) for n in range(NODES)]
        elif kind == "heal":
            cluster.side = [0] * NODES
        elif kind == "repair":
            cluster.repair(*PAIRS[arg])
        else:
            cluster.wait(WAITS[arg])
    cluster.side = [0] * NODES
    if not cluster.present:  # it comes back, with new data
        cluster.versions += 1
        cluster.data = version(cluster.versions)
        cluster.present = True
        assert cluster.client("register", reach)
    cluster.heartbeat(reach)
    current = cluster.data
    before = cluster.held()
    for pair in [*(PAIRS[i] for i in repairs), *PAIRS]:
        cluster.repair(*pair)
        held = cluster.held()
        kept = [now for now, then in zip(held, before, strict=True) if then == current]
        assert [current] * len(kept) == kept, f"the repair {pair} took the data away"
        before = held
    assert [current] * NODES == cluster.held()
