"""The registry: register / heartbeat / unregister / sweep, validation, leases, checksums, log."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

from collections.abc import Callable
from hashlib import blake2b
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artemis import wire
from artemis.clock import FakeClock
from artemis.core.lease import Pause
from artemis.core.registry import (
    BAD_REQUEST,
    DATA_NOT_FOUND,
    NO_PERMISSION,
    RATE_LIMITED,
    BatchResult,
    Registry,
    RegistryConfig,
    describe,
    instance_hash,
)
from artemis.core.versions import Change
from artemis.wire import FailedInstance, Instance

T0 = 1000.0
WALL = 1_700_000_000_000
MASK = (1 << 64) - 1
NOT_EXISTING = "Instance is not exising! Need re-register."
Sweep = Callable[..., list[Change]]  # the guarded sweep of conftest.py


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
    """The `new` change a register of `instance` is expected to record."""
    assert instance.service_id is not None
    assert instance.instance_id is not None
    return Change(rev, "new", wall, instance.service_id.lower(),
                  instance.instance_id.lower(), prev, h(instance), wire.encode(instance),
                  h(instance) if service_checksum is None else service_checksum)


def delete(rev: int, instance: Instance, *, wall: int = WALL, service_checksum: int = 0) -> Change:
    """The `delete` change the removal of the stored `instance` is expected to record."""
    assert instance.service_id is not None
    assert instance.instance_id is not None
    return Change(rev, "delete", wall, instance.service_id.lower(),
                  instance.instance_id.lower(), h(instance), None, wire.encode(instance),
                  service_checksum)


def lease_view(registry: Registry) -> dict[str, dict[str, tuple[Instance, float, float, bool]]]:
    """Every stored lease as service -> instance key -> (instance, renewed, ttl, legacy)."""
    return {
        key: {ikey: (lease.instance, lease.renewed, lease.ttl, lease.legacy)
              for ikey, lease in state.leases.items()}
        for key, state in registry.services.items()
    }


@pytest.fixture
def registry() -> Registry:
    return Registry(RegistryConfig())


# --- register ----------------------------------------------------------------------------------


def test_register_creates_lease_and_records_new_change(registry: Registry) -> None:
    """A register stores the instance as sent under a 20 s lease and records one `new` change."""
    i = inst()
    result = registry.register([i], T0, WALL)
    assert BatchResult(failed=[], changes=[new(1, i)], succeeded=[i]) == result
    assert {"svc": {"i1": (i, T0, 20.0, False)}} == lease_view(registry)
    assert (1, 0, 1, h(i)) == (registry.lease_count, registry.legacy_lease_count,
                               registry.revision, registry.checksum)


def test_register_skips_null_entries(registry: Registry) -> None:
    """Null entries of a batch are skipped, neither failed nor registered."""
    i = inst()
    result = registry.register([None, i, None], T0, WALL)
    assert BatchResult(failed=[], changes=[new(1, i)], succeeded=[i]) == result


def test_reregister_replaces_live_lease_and_records_new_with_previous_hash(
        registry: Registry) -> None:
    """Registering a live instance again replaces its data and lease and records `new` again."""
    first, second = inst(), inst(port=9090, metadata={"k": "v"})
    registry.register([first], T0, WALL)
    result = registry.register([second], T0 + 5, WALL + 5000)
    assert [new(2, second, wall=WALL + 5000, prev=h(first))] == result.changes
    assert {"svc": {"i1": (second, T0 + 5, 20.0, False)}} == lease_view(registry)
    assert (1, h(second)) == (registry.lease_count, registry.checksum)


def test_identity_is_region_service_instance_compared_lower_case(registry: Registry) -> None:
    """Service and instance ids match whatever their case, for every operation and lookup."""
    first = inst("Demo.Svc", "Inst-1")
    second = inst("DEMO.SVC", "INST-1", region_id="DEFAULT", port=1)
    registry.register([first], T0, WALL)
    registry.register([second], T0 + 1, WALL)
    assert {"demo.svc": {"inst-1": (second, T0 + 1, 20.0, False)}} == lease_view(registry)
    assert registry.service("demo.SVC") is registry.services["demo.svc"]
    same = inst("demo.svc", "inst-1", region_id="default", port=1,
                url="http://10.0.0.1:8080/INST-1")  # the same data, ids in other case
    beat = registry.heartbeat([same], T0 + 2, WALL)
    assert ([], [same]) == (beat.failed, beat.succeeded)
    gone = registry.unregister([inst("dEmO.sVc", "iNsT-1")], T0 + 3, WALL)
    assert [delete(3, second)] == gone.changes
    assert {} == lease_view(registry)


def test_service_answer_keeps_the_first_spelling_of_its_id(registry: Registry) -> None:
    """A service answers as Service JSON under the serviceId it was first registered with."""
    a, b = inst("Svc", "a"), inst("SVC", "b")
    registry.register([a, b], T0, WALL)
    state = registry.service("svc")
    assert state is not None
    expected = wire.Service(instances=[a, b], logic_instances=[], metadata=None, route_rules=[],
                            service_id="Svc")
    assert expected == wire.decode(state.body(), wire.Service)


def test_service_body_is_exact_service_json(registry: Registry) -> None:
    """The encoded answer of a service has sorted keys, empty lists and a null metadata."""
    i = inst()
    registry.register([i], T0, WALL)
    state = registry.service("svc")
    assert state is not None
    expected = (b'{"instances":[' + wire.encode(i) + b'],"logicInstances":[],"metadata":null,'
                b'"routeRules":[],"serviceId":"svc"}')
    assert expected == state.body()


def test_legacy_metadata_gives_the_legacy_lease(registry: Registry) -> None:
    """A non-blank `java_registry` metadata value gives the 90 s legacy lease; blank does not."""
    legacy = inst(instance="old", metadata={"java_registry": "true"})
    blank = inst(instance="blank", metadata={"java_registry": "  "})
    plain = inst(instance="plain", metadata={"other": "x"})
    registry.register([legacy, blank, plain], T0, WALL)
    assert {"svc": {"old": (legacy, T0, 90.0, True), "blank": (blank, T0, 20.0, False),
                    "plain": (plain, T0, 20.0, False)}} == lease_view(registry)
    assert (2, 1, 3) == (registry.lease_count, registry.legacy_lease_count,
                         registry.instance_count)


def test_reregister_moving_between_lease_kinds_keeps_counts(registry: Registry) -> None:
    """Re-registering with or without `java_registry` moves the instance between lease kinds."""
    registry.register([inst()], T0, WALL)
    registry.register([inst(metadata={"java_registry": "1"})], T0, WALL)
    assert (0, 1) == (registry.lease_count, registry.legacy_lease_count)
    registry.register([inst()], T0, WALL)
    assert (1, 0) == (registry.lease_count, registry.legacy_lease_count)


# --- validation --------------------------------------------------------------------------------

P = "default/default/svc/i1"  # describe() of the default test instance
LONG_KEY = "k" * 1025
VALIDATION = [
    ({"service_id": None}, BAD_REQUEST, "default/default/null/i1: serviceId is null or blank."),
    ({"service_id": ""}, BAD_REQUEST, "default/default//i1: serviceId is null or blank."),
    ({"service_id": " \t"}, BAD_REQUEST, "default/default/ \t/i1: serviceId is null or blank."),
    ({"instance_id": None}, BAD_REQUEST, "default/default/svc/null: instanceId is null or blank."),
    ({"instance_id": "  "}, BAD_REQUEST, "default/default/svc/  : instanceId is null or blank."),
    ({"url": None}, BAD_REQUEST, f"{P}: url is null or blank."),
    ({"url": ""}, BAD_REQUEST, f"{P}: url is null or blank."),
    ({"url": "   "}, BAD_REQUEST, f"{P}: url is null or blank."),
    ({"port": -1}, BAD_REQUEST, f"{P}: port -1 is out of range 0-65535."),
    ({"port": 65536}, BAD_REQUEST, f"{P}: port 65536 is out of range 0-65535."),
    ({"service_id": "s" * 257}, BAD_REQUEST,
     f"default/default/{'s' * 257}/i1: serviceId is longer than 256 characters."),
    ({"instance_id": "i" * 257}, BAD_REQUEST,
     f"default/default/svc/{'i' * 257}: instanceId is longer than 256 characters."),
    ({"url": "http://h/" + "p" * 2040}, BAD_REQUEST, f"{P}: url is longer than 2048 characters."),
    ({"service_id": "a\tb"}, BAD_REQUEST,
     "default/default/a\tb/i1: serviceId contains control characters."),
    ({"instance_id": "a\x00b"}, BAD_REQUEST,
     "default/default/svc/a\x00b: instanceId contains control characters."),
    ({"url": "http://h/\nx"}, BAD_REQUEST, f"{P}: url contains control characters."),
    ({"metadata": {f"k{n}": "v" for n in range(65)}}, BAD_REQUEST,
     f"{P}: metadata has more than 64 entries."),
    ({"metadata": {LONG_KEY: "v"}}, BAD_REQUEST,
     f"{P}: metadata entry {'k' * 64!r} is longer than 1024."),
    ({"metadata": {"k": "v" * 1025}}, BAD_REQUEST, f"{P}: metadata entry 'k' is longer than 1024."),
    ({"ip": "1" * 1025}, BAD_REQUEST, f"{P}: ip is longer than 1024 characters."),
    ({"machine_name": "m" * 1025}, BAD_REQUEST,
     f"{P}: machineName is longer than 1024 characters."),
    ({"group_id": "g" * 1025}, BAD_REQUEST,
     f"default/default/svc/{'g' * 1025}/i1: groupId is longer than 1024 characters."),
    ({"zone_id": "z" * 1025}, BAD_REQUEST,
     f"default/{'z' * 1025}/svc/i1: zoneId is longer than 1024 characters."),
    ({"protocol": "p" * 1025}, BAD_REQUEST, f"{P}: protocol is longer than 1024 characters."),
    ({"status": "s" * 1025}, BAD_REQUEST, f"{P}: status is longer than 1024 characters."),
    ({"health_check_url": "h" * 1025}, BAD_REQUEST,
     f"{P}: healthCheckUrl is longer than 1024 characters."),
    ({"region_id": "other"}, NO_PERMISSION,
     "other/default/svc/i1: regionId is not the same as the registry node. regionId: other, "
     "registry node.regionId: default"),
    ({"ip": "10.0.0.1\x00"}, BAD_REQUEST, f"{P}: ip contains control characters."),
    ({"machine_name": "web\n1"}, BAD_REQUEST, f"{P}: machineName contains control characters."),
    ({"group_id": "g\x1b"}, BAD_REQUEST,
     "default/default/svc/g\x1b/i1: groupId contains control characters."),
    ({"zone_id": "z\r"}, BAD_REQUEST, "default/z\r/svc/i1: zoneId contains control characters."),
    ({"region_id": "default\x00"}, BAD_REQUEST,
     "default\x00/default/svc/i1: regionId contains control characters."),
    ({"protocol": "http\x7f"}, BAD_REQUEST, f"{P}: protocol contains control characters."),
    ({"status": "up\x85"}, BAD_REQUEST, f"{P}: status contains control characters."),
    ({"health_check_url": "http://h/\t"}, BAD_REQUEST,
     f"{P}: healthCheckUrl contains control characters."),
    ({"metadata": {"k\x00": "v"}}, BAD_REQUEST,
     f"{P}: metadata key 'k\\x00' contains control characters."),
    ({"metadata": {"k": "v\x00"}}, BAD_REQUEST,
     f"{P}: metadata value of 'k' contains control characters."),
]


@pytest.mark.parametrize("operation", ["register", "heartbeat", "unregister"])
@pytest.mark.parametrize(("fields", "code", "message"), VALIDATION)
def test_invalid_instance_fails_alone_and_changes_nothing(
        registry: Registry, operation: str, fields: dict[str, Any], code: str,
        message: str) -> None:
    """An invalid instance fails with its code and message; the rest of the batch goes through.
    A heartbeat of one the node does not hold is data-not-found first (so the SDK registers)."""
    registry.register([inst("keep", "k0")], T0, WALL)
    bad, good = inst(**fields), inst("keep", "k0")
    result = getattr(registry, operation)([bad, good], T0 + 1, WALL)
    if operation == "heartbeat" and code == BAD_REQUEST:
        code = DATA_NOT_FOUND
        message = message.partition(": ")[0] + ": " + NOT_EXISTING
    failed = [FailedInstance(error_code=code, error_message=message, instance=bad)]
    assert (failed, [good]) == (result.failed, result.succeeded)
    expected = {"register": ({"keep"}, 2), "heartbeat": ({"keep"}, 1),
                "unregister": (set(), 2)}[operation]
    assert expected == (set(registry.services), registry.revision)


def test_heartbeat_of_a_held_instance_that_fails_the_checks_is_bad_request(
        registry: Registry) -> None:
    """Only an instance the node does not hold turns data-not-found; a held one keeps the
    reason."""
    registry.register([inst()], T0, WALL)
    bad = inst(ip="10.0.0.1\x00")
    result = registry.heartbeat([bad], T0 + 1, WALL)
    assert [FailedInstance(error_code=BAD_REQUEST, instance=bad,
                           error_message=f"{P}: ip contains control characters.")] == result.failed


def test_peer_heartbeat_of_an_invalid_instance_stays_bad_request(registry: Registry) -> None:
    """A peer's heartbeat (register_unknown) of an invalid instance is refused, not taken."""
    bad = inst(ip="10.0.0.1\x00")
    result = registry.heartbeat([bad], T0, WALL, register_unknown=True)
    assert ([BAD_REQUEST], 0) == ([f.error_code for f in result.failed], registry.lease_count)


@pytest.mark.parametrize("fields", [
    {"port": 0},
    {"port": 65535},
    {"service_id": "s" * 256, "instance_id": "i" * 256},
    {"url": "http://h/" + "p" * 2039},
    {"url": "grpc://10.0.0.1:9000"},
    {"url": "10.0.0.1:8080/api"},  # any non-blank url, as the original
    {"url": "/api"},
    {"url": "http://"},
    {"metadata": {"note": "caf\u00e9 \u00a0[red]x", "URL": "u"}},
    {"metadata": {f"k{n}": "v" * 1024 for n in range(64)}},
    {"ip": "1" * 1024, "group_id": "g" * 1024, "zone_id": "z" * 1024},
    {"region_id": "DEFAULT"},
    {"service_id": "dienst-ü", "instance_id": "实例"},
])
def test_values_at_the_limits_are_accepted(registry: Registry, fields: dict[str, Any]) -> None:
    """Values exactly at the limits (ports 0 and 65535, 256-char ids, ...) are accepted."""
    i = inst(**fields)
    assert BatchResult(failed=[], changes=[new(1, i)], succeeded=[i]) == registry.register(
        [i], T0, WALL)


def test_missing_region_or_zone_is_named_null_in_the_message() -> None:
    """A null regionId or zoneId reads `null` in the no-permission message, as in the original."""
    registry = Registry(RegistryConfig(zone="z1", allow_registry_from_other_zone=False))
    no_region, no_zone = inst(region_id=None, zone_id="z1"), inst(zone_id=None)
    result = registry.register([no_region, no_zone], T0, WALL)
    assert [
        FailedInstance(error_code=NO_PERMISSION, instance=no_region, error_message=(
            "null/z1/svc/i1: regionId is not the same as the registry node. regionId: null, "
            "registry node.regionId: default")),
        FailedInstance(error_code=NO_PERMISSION, instance=no_zone, error_message=(
            "default/null/svc/i1: zoneId is not the same as the registry node. zoneId: null, "
            "registry node.zoneId: z1")),
    ] == result.failed


def test_other_zone_is_refused_only_when_not_allowed() -> None:
    """With allow_registry_from_other_zone=False another zone is no-permission; case is ignored."""
    closed = Registry(RegistryConfig(zone="z1", allow_registry_from_other_zone=False))
    other, same = inst(zone_id="z2"), inst("svc", "i2", zone_id="Z1")
    result = closed.register([other, same], T0, WALL)
    assert BatchResult(
        failed=[FailedInstance(
            error_code=NO_PERMISSION, instance=other, error_message=(
                "default/z2/svc/i1: zoneId is not the same as the registry node. zoneId: z2, "
                "registry node.zoneId: z1"))],
        changes=[new(1, same)], succeeded=[same],
    ) == result
    opened = Registry(RegistryConfig(zone="z1"))
    assert BatchResult(failed=[], changes=[new(1, other)], succeeded=[other]) == opened.register(
        [other], T0, WALL)


def test_zone_check_is_skipped_when_asked() -> None:
    """check_zone=False (replication) accepts another zone even when the node refuses it."""
    closed = Registry(RegistryConfig(zone="z1", allow_registry_from_other_zone=False))
    other = inst(zone_id="z2")
    assert [other] == closed.register([other], T0, WALL, check_zone=False).succeeded
    assert [other] == closed.heartbeat([other], T0 + 1, WALL, check_zone=False).succeeded
    assert [other] == closed.unregister([other], T0 + 2, WALL, check_zone=False).succeeded
    assert {} == lease_view(closed)


def test_a_heartbeat_with_the_held_data_still_meets_the_zone_rule() -> None:
    """A heartbeat sent with exactly the data of a live lease skips the checks that data passed
    when it was registered, but not the zone rule: a lease a peer copied from another zone
    (check_zone=False) is not renewed by a client's heartbeat when the node refuses other
    zones, and is renewed on the replication path."""
    closed = Registry(RegistryConfig(zone="z1", allow_registry_from_other_zone=False))
    other = inst(zone_id="z2")
    closed.register([other], T0, WALL, check_zone=False)
    assert [FailedInstance(
        error_code=NO_PERMISSION, instance=other, error_message=(
            "default/z2/svc/i1: zoneId is not the same as the registry node. zoneId: z2, "
            "registry node.zoneId: z1"))] == closed.heartbeat([other], T0 + 1, WALL).failed
    assert T0 == closed.service("svc").leases["i1"].renewed  # type: ignore[union-attr]
    assert [other] == closed.heartbeat([other], T0 + 2, WALL, check_zone=False).succeeded
    assert T0 + 2 == closed.service("svc").leases["i1"].renewed  # type: ignore[union-attr]


def test_region_check_applies_even_without_zone_check() -> None:
    """check_zone=False does not lift the region check."""
    registry = Registry(RegistryConfig(region="sha"))
    i = inst(region_id="fra")
    assert [FailedInstance(
        error_code=NO_PERMISSION, instance=i, error_message=(
            "fra/default/svc/i1: regionId is not the same as the registry node. regionId: fra, "
            "registry node.regionId: sha"))] == registry.register(
        [i], T0, WALL, check_zone=False).failed


# --- heartbeat ---------------------------------------------------------------------------------


def test_heartbeat_renews_the_lease_without_changing_data(registry: Registry) -> None:
    """A heartbeat moves `renewed` to now, records no change and keeps the registered data."""
    i = inst()
    registry.register([i], T0, WALL)
    same = inst("SVC", "I1", url="http://10.0.0.1:8080/i1")  # the same data, ids in other case
    result = registry.heartbeat([same], T0 + 15, WALL)
    assert BatchResult(failed=[], changes=[], succeeded=[same]) == result
    assert {"svc": {"i1": (i, T0 + 15, 20.0, False)}} == lease_view(registry)
    assert (1, h(i)) == (registry.revision, registry.checksum)


def test_heartbeat_of_unknown_instance_is_data_not_found() -> None:
    """An unknown instance answers data-not-found with the original's message (§4.1 example)."""
    registry = Registry(RegistryConfig(region="sha", zone="sha-z1"))
    i = Instance(group_id=None, health_check_url="http://10.0.0.5:8080/health",
                 instance_id="10.0.0.5:8080", ip="10.0.0.5", machine_name="web-5",
                 metadata={"k": "v"}, port=8080, protocol="http", region_id="SHA",
                 service_id="demo.service.v1", status="up", url="http://10.0.0.5:8080/api",
                 zone_id="sha-z1")
    grouped = inst("Demo.Service.V1", "10.0.0.6:8080", region_id="SHA", zone_id="SHA-Z1",
                   group_id="Canary")
    blank_group = inst("demo.service.v1", "10.0.0.7:8080", region_id="sha", zone_id="sha-z1",
                       group_id=" ")
    result = registry.heartbeat([i, grouped, blank_group], T0, WALL)
    assert BatchResult(failed=[
        FailedInstance(error_code=DATA_NOT_FOUND, instance=i, error_message=(
            "sha/sha-z1/demo.service.v1/10.0.0.5:8080: Instance is not exising! "
            "Need re-register.")),
        FailedInstance(error_code=DATA_NOT_FOUND, instance=grouped, error_message=(
            "sha/sha-z1/demo.service.v1/canary/10.0.0.6:8080: Instance is not exising! "
            "Need re-register.")),
        FailedInstance(error_code=DATA_NOT_FOUND, instance=blank_group, error_message=(
            "sha/sha-z1/demo.service.v1/10.0.0.7:8080: Instance is not exising! "
            "Need re-register.")),
    ], changes=[], succeeded=[]) == result


def test_heartbeat_of_known_service_but_unknown_instance_is_data_not_found(
        registry: Registry) -> None:
    """A heartbeat for another instance id of a registered service is data-not-found."""
    registry.register([inst()], T0, WALL)
    other = inst(instance="i2")
    assert [FailedInstance(error_code=DATA_NOT_FOUND, instance=other,
                           error_message=f"default/default/svc/i2: {NOT_EXISTING}")] == (
        registry.heartbeat([other], T0 + 1, WALL).failed)


def test_heartbeat_of_expired_lease_is_data_not_found(registry: Registry) -> None:
    """A lease renews up to renewed + ttl inclusive; after that it cannot be renewed."""
    i = inst()
    registry.register([i], T0, WALL)
    assert [i] == registry.heartbeat([i], T0 + 20.0, WALL).succeeded
    late = registry.heartbeat([i], T0 + 40.001, WALL)
    assert BatchResult(failed=[FailedInstance(
        error_code=DATA_NOT_FOUND, instance=i,
        error_message=f"default/default/svc/i1: {NOT_EXISTING}")], changes=[], succeeded=[]) == late
    assert {"svc": {"i1": (i, T0 + 20.0, 20.0, False)}} == lease_view(registry)


def test_heartbeat_after_unregister_is_data_not_found(registry: Registry) -> None:
    """Once unregistered, an instance's heartbeat asks it to register again."""
    i = inst()
    registry.register([i], T0, WALL)
    registry.unregister([i], T0 + 1, WALL)
    assert [DATA_NOT_FOUND] == [f.error_code for f in registry.heartbeat([i], T0 + 2, WALL).failed]


def test_replication_heartbeat_registers_unknown_instance(registry: Registry) -> None:
    """With register_unknown=True an unknown instance is registered (`new`), so lost writes heal."""
    i = inst()
    result = registry.heartbeat([i], T0, WALL, register_unknown=True)
    assert BatchResult(failed=[], changes=[new(1, i)], succeeded=[i]) == result
    assert {"svc": {"i1": (i, T0, 20.0, False)}} == lease_view(registry)


def test_replication_heartbeat_replaces_expired_lease(registry: Registry) -> None:
    """With register_unknown=True an expired lease is registered again with the data sent."""
    old, fresh = inst(), inst(port=9999)
    registry.register([old], T0, WALL)
    result = registry.heartbeat([fresh], T0 + 30, WALL + 1, register_unknown=True)
    assert [new(2, fresh, wall=WALL + 1, prev=h(old))] == result.changes
    assert {"svc": {"i1": (fresh, T0 + 30, 20.0, False)}} == lease_view(registry)


def test_replication_heartbeat_while_copying_passes_over_unknown_and_expired(
        registry: Registry) -> None:
    """While the node copies a peer's registry (`copying`), an unknown instance and one whose
    lease expired succeed without being registered or renewed (the copy brings them); a live
    lease is renewed and one held with other data is replaced, as at any other time."""
    held, other, gone = inst(instance="held"), inst(instance="other"), inst(instance="gone")
    unknown = inst(instance="unknown")
    registry.register([held, other, gone], T0, WALL)
    registry.heartbeat([held, other], T0 + 15, WALL)  # `gone` is left to expire
    changed = inst(instance="other", port=9999)

    result = registry.heartbeat([held, unknown, gone, changed], T0 + 25, WALL + 1,
                                register_unknown=True, copying=True)

    assert ([], [held, unknown, gone, changed]) == (result.failed, result.succeeded)
    assert [new(4, changed, wall=WALL + 1, prev=h(other),
                service_checksum=(h(held) + h(changed) + h(gone)) & (2**64 - 1))
            ] == result.changes
    assert {"svc": {"held": (held, T0 + 25, 20.0, False), "other": (changed, T0 + 25, 20.0, False),
                    "gone": (gone, T0, 20.0, False)}} == lease_view(registry)


def test_replication_heartbeat_of_live_lease_only_renews(registry: Registry) -> None:
    """With register_unknown=True a live lease is renewed and its data kept."""
    i = inst()
    registry.register([i], T0, WALL)
    result = registry.heartbeat([inst()], T0 + 5, WALL, register_unknown=True)
    assert ([], [inst()]) == (result.changes, result.succeeded)
    assert {"svc": {"i1": (i, T0 + 5, 20.0, False)}} == lease_view(registry)


def test_heartbeats_count_renewals_per_lease_kind(registry: Registry) -> None:
    """Renewals feed the self-preservation window of their lease kind, failures feed none."""
    plain, legacy = inst(), inst(instance="old", metadata={"java_registry": "yes"})
    registry.register([plain, legacy], T0, WALL)
    registry.heartbeat([plain, legacy, plain, inst(instance="ghost")], T0 + 1, WALL)
    assert (2, 1) == (registry.safe.status(T0 + 1).count_last_window,
                      registry.legacy_safe.status(T0 + 1).count_last_window)


# --- unregister --------------------------------------------------------------------------------


def test_unregister_removes_at_once_and_records_delete(registry: Registry) -> None:
    """Unregister removes the lease now and records `delete` with the stored data."""
    stored = inst(metadata={"k": "v"})
    registry.register([stored], T0, WALL)
    sent = inst(port=1)
    result = registry.unregister([sent], T0 + 1, WALL + 1000)
    assert BatchResult(failed=[], changes=[delete(2, stored, wall=WALL + 1000)],
                       succeeded=[sent]) == result
    assert ({}, 0, 0, 2) == (lease_view(registry), registry.lease_count, registry.checksum,
                             registry.revision)


def test_unregister_of_unknown_instance_succeeds_without_change(registry: Registry) -> None:
    """Unregistering an unknown instance is a success that records nothing."""
    registry.register([inst()], T0, WALL)
    ghost = inst(instance="ghost")
    assert BatchResult(failed=[], changes=[], succeeded=[ghost]) == registry.unregister(
        [ghost, None], T0, WALL)
    assert 1 == registry.revision


def test_unregister_keeps_the_service_while_it_has_instances(registry: Registry) -> None:
    """The delete change carries the service's checksum after the removal."""
    a, b = inst(instance="a"), inst(instance="b")
    registry.register([a, b], T0, WALL)
    result = registry.unregister([a], T0, WALL)
    assert [delete(3, a, service_checksum=h(b))] == result.changes
    assert {"svc": {"b": (b, T0, 20.0, False)}} == lease_view(registry)


# --- sweep -------------------------------------------------------------------------------------


def test_sweep_removes_a_lease_only_after_its_ttl(registry: Registry, sweep: Sweep) -> None:
    """A 20 s lease survives a sweep before its deadline and is removed by one after it."""
    i = inst()
    registry.register([i], T0, WALL)
    assert [] == sweep(registry, T0 + 19.999, WALL)
    assert [delete(2, i, wall=WALL + 5)] == sweep(registry, T0 + 20.001, WALL + 5)
    assert ({}, 1, 0) == (lease_view(registry), registry.evicted_total, registry.instance_count)


def test_sweep_at_exact_deadline_returns_and_keeps_the_lease(
        registry: Registry, sweep: Sweep) -> None:
    """At now == renewed + ttl a lease is not expired yet: the sweep keeps it and returns."""
    i = inst()
    registry.register([i], T0, WALL)
    assert [] == sweep(registry, T0 + 20.0, WALL)
    assert {"svc": {"i1": (i, T0, 20.0, False)}} == lease_view(registry)
    assert [delete(2, i)] == sweep(registry, T0 + 20.5, WALL)


def test_sweep_follows_heartbeats(registry: Registry, sweep: Sweep) -> None:
    """A renewed lease expires 20 s after its last heartbeat, not after its register."""
    i = inst()
    registry.register([i], T0, WALL)
    registry.heartbeat([i], T0 + 15, WALL)
    assert [] == sweep(registry, T0 + 20.5, WALL)
    assert [] == sweep(registry, T0 + 34.5, WALL)
    assert [delete(2, i)] == sweep(registry, T0 + 35.5, WALL)


def test_legacy_lease_lives_90_seconds(registry: Registry, sweep: Sweep) -> None:
    """A `java_registry` instance survives 20 s without heartbeat and is removed after 90 s."""
    legacy, plain = inst(instance="old", metadata={"java_registry": "x"}), inst()
    registry.register([legacy, plain], T0, WALL)
    assert [delete(3, plain, service_checksum=h(legacy))] == sweep(registry, T0 + 20.5, WALL)
    assert [] == sweep(registry, T0 + 89.5, WALL)
    assert [delete(4, legacy)] == sweep(registry, T0 + 90.5, WALL)
    assert (0, 0, 2) == (registry.lease_count, registry.legacy_lease_count,
                         registry.evicted_total)


def test_sweep_ignores_replaced_and_removed_leases(registry: Registry, sweep: Sweep) -> None:
    """A lease replaced by a register, or unregistered, is not removed by its old deadline."""
    a, b = inst(instance="a"), inst(instance="b")
    registry.register([a, b], T0, WALL)
    registry.register([a], T0 + 10, WALL)
    registry.unregister([b], T0 + 10, WALL)
    assert [] == sweep(registry, T0 + 20.5, WALL)
    assert {"svc": {"a": (a, T0 + 10, 20.0, False)}} == lease_view(registry)
    assert [delete(5, a)] == sweep(registry, T0 + 30.5, WALL)
    assert 1 == registry.evicted_total


def test_sweep_removes_every_expired_lease_at_once(registry: Registry, sweep: Sweep) -> None:
    """One sweep removes all leases due, in deadline order, and drops emptied services."""
    a, b, c = inst("s1", "a"), inst("s2", "b"), inst("s1", "c")
    registry.register([a], T0, WALL)
    registry.register([b], T0 + 1, WALL)
    registry.register([c], T0 + 2, WALL)
    changes = sweep(registry, T0 + 30, WALL)
    assert [delete(4, a, service_checksum=h(c)), delete(5, b), delete(6, c)] == changes
    assert ({}, 0) == (registry.services, registry.checksum)


# --- checksums ---------------------------------------------------------------------------------


def test_instance_hash_is_blake2b_64_of_canonical_json() -> None:
    """An instance's checksum share is blake2b with an 8-byte digest, read little-endian."""
    encoded = wire.encode(inst())
    expected = int.from_bytes(blake2b(encoded, digest_size=8).digest(), "little")
    assert expected == instance_hash(encoded)


def test_checksums_are_sums_of_instance_hashes(registry: Registry) -> None:
    """Each service's and the registry's checksum is the sum mod 2^64 of its instances' hashes."""
    a, b, c = inst("s1", "a"), inst("s1", "b"), inst("s2", "c")
    registry.register([a, b, c], T0, WALL)
    registry.register([inst("s1", "a", port=1)], T0, WALL)
    a2 = inst("s1", "a", port=1)
    s1, s2 = registry.service("s1"), registry.service("s2")
    assert s1 is not None
    assert s2 is not None
    assert ((h(a2) + h(b)) & MASK, h(c), (h(a2) + h(b) + h(c)) & MASK) == (
        s1.checksum, s2.checksum, registry.checksum)
    registry.unregister([a2, b, c], T0, WALL)
    assert 0 == registry.checksum


@settings(max_examples=100, deadline=None)
@given(st.permutations([inst(f"s{n % 2}", f"i{n}", port=n) for n in range(6)]))
def test_checksum_does_not_depend_on_order(order: list[Instance]) -> None:
    """Registering the same instances in any order gives the same checksums."""
    registry = Registry(RegistryConfig())
    registry.register(order, T0, WALL)
    expected = {f"s{k}": sum(h(inst(f"s{k}", f"i{n}", port=n)) for n in range(k, 6, 2)) & MASK
                for k in (0, 1)}
    assert expected == {key: state.checksum for key, state in registry.services.items()}
    assert sum(expected.values()) & MASK == registry.checksum


# --- change log and revisions ------------------------------------------------------------------


def test_every_change_takes_the_next_revision_and_enters_the_log(registry: Registry) -> None:
    """Changes are numbered 1, 2, 3, ...; failures and heartbeats take no revision."""
    a, b = inst(instance="a"), inst(instance="b")
    changes = registry.register([a, inst(port=-5), b], T0, WALL).changes
    registry.heartbeat([a, b], T0 + 1, WALL)
    changes += registry.unregister([a], T0 + 2, WALL + 2).changes
    expected = [new(1, a), new(2, b, service_checksum=(h(a) + h(b)) & MASK),
                delete(3, a, wall=WALL + 2, service_checksum=h(b))]
    assert expected == changes
    since = registry.log.since(0)
    assert since is not None
    assert expected == list(since)
    assert (3, {"svc"}) == (registry.revision, registry.dirty)


def test_reload_records_a_reload_change(registry: Registry) -> None:
    """A reload carries the original's fake instance and the service's current checksum."""
    i = inst("Svc")
    registry.register([i], T0, WALL)
    change = registry.reload("Svc", WALL + 1)
    fake = Instance(service_id="Svc", instance_id="reload", ip="0.0.0.0",
                    url="http://serviceId/reload")
    assert Change(2, "reload", WALL + 1, "svc", "reload", None, None, wire.encode(fake),
                  h(i)) == change
    assert (b'{"changeTime":1700000000001,"changeType":"reload","instance":{"groupId":null,'
            b'"healthCheckUrl":null,"instanceId":"reload","ip":"0.0.0.0","machineName":null,'
            b'"metadata":null,"port":0,"protocol":null,"regionId":null,"serviceId":"Svc",'
            b'"status":null,"url":"http://serviceId/reload","zoneId":null}}') == change.encode()
    assert (2, [change]) == (registry.revision, list(registry.log.since(1) or ()))


def test_reload_of_unknown_service_has_zero_checksum(registry: Registry) -> None:
    """A reload of a service without instances is recorded with checksum 0."""
    change = registry.reload("nobody", WALL)
    assert (1, "reload", 0, {"nobody"}) == (change.revision, change.kind,
                                            change.service_checksum, registry.dirty)


def test_change_log_keeps_only_its_capacity() -> None:
    """The registry's log keeps the newest change_log_size changes."""
    registry = Registry(RegistryConfig(change_log_size=2))
    for n in range(4):
        registry.register([inst(instance=f"i{n}")], T0, WALL)
    assert (2, 3, None) == (len(registry.log), registry.log.first_revision,
                            registry.log.since(1))
    assert [3, 4] == [c.revision for c in registry.log.since(2) or ()]


# --- describe and repr -------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "text"), [
    ({}, "default/default/svc/i1"),
    ({"region_id": "SHA", "zone_id": "SHA-Z1", "service_id": "Demo.V1", "instance_id": "X:1"},
     "sha/sha-z1/demo.v1/x:1"),
    ({"group_id": "G1"}, "default/default/svc/g1/i1"),
    ({"group_id": ""}, "default/default/svc/i1"),
    ({"group_id": "  "}, "default/default/svc/i1"),
    ({"region_id": None, "zone_id": None}, "null/null/svc/i1"),
])
def test_describe_is_the_originals_to_string(fields: dict[str, Any], text: str) -> None:
    """describe() is lower-case region/zone/service[/group]/instance, null for missing parts."""
    assert text == describe(inst(**fields))


def test_repr_shows_the_state(registry: Registry) -> None:
    """The registry's repr shows its size, revision and safety."""
    registry.register([inst(instance="a"), inst("other", "b")], T0, WALL)
    assert ("Registry(region='default', services=2, instances=2, revision=2, safe=True)"
            == repr(registry))


# --- caps ---------------------------------------------------------------------------------------


def refused(instance: Instance, message: str) -> FailedInstance:
    return FailedInstance(error_code=RATE_LIMITED, error_message=f"{describe(instance)}: "
                          f"{message}", instance=instance)


def test_max_instances_refuses_new_instances_beyond_it() -> None:
    """Past max_instances a new instance fails with rate-limited (counted by cap); instances
    already held are registered again, and renewed, whatever the count."""
    registry = Registry(RegistryConfig(max_instances=2))
    first = registry.register([inst(instance="a"), inst(instance="b"), inst(instance="c")],
                              T0, WALL, client="10.0.0.9")
    again = registry.register([inst(instance="a", port=9090)], T0, WALL, client="10.0.0.7")
    beat = registry.heartbeat([inst(instance="a", port=9090), inst(instance="b")], T0 + 1, WALL)
    full = ("this node holds its maximum of 2 instances (max_instances); try again later.")
    assert ([refused(inst(instance="c"), full)], [], [], 2, {"max_instances": 1}) == (
        first.failed, again.failed, beat.failed, registry.instance_count, registry.refused)


def test_max_services_refuses_instances_of_new_services_only() -> None:
    """Past max_services an instance of a new service is refused; a new instance of a service
    already held is not."""
    registry = Registry(RegistryConfig(max_services=1))
    result = registry.register([inst("s1", "a"), inst("s2", "a"), inst("s1", "b")], T0, WALL)
    full = "this node holds its maximum of 1 services (max_services); try again later."
    assert ([refused(inst("s2", "a"), full)], ["s1"], {"max_services": 1}) == (
        result.failed, list(registry.services), registry.refused)


def test_per_client_caps_count_each_address_alone() -> None:
    """max_instances_per_client and max_services_per_client bound what one client address
    registers; another address, and a peer's write (no client), are not held back by it."""
    registry = Registry(RegistryConfig(max_instances_per_client=2, max_services_per_client=1))
    one = registry.register([inst("s1", "a"), inst("s2", "a"), inst("s1", "b"),
                             inst("s1", "c")], T0, WALL, client="10.0.0.1")
    other = registry.register([inst("s2", "x"), inst("s2", "y")], T0, WALL, client="10.0.0.2")
    peer = registry.register([inst("s3", "p"), inst("s4", "p"), inst("s4", "q")], T0, WALL)
    services = ("client 10.0.0.1 holds instances of its maximum of 1 services on this node "
                "(max_services_per_client).")
    instances = ("client 10.0.0.1 holds its maximum of 2 instances on this node "
                 "(max_instances_per_client).")
    assert ([refused(inst("s2", "a"), services), refused(inst("s1", "c"), instances)], [], [],
            (2, 2, 0), {"max_services_per_client": 1, "max_instances_per_client": 1}) == (
        one.failed, other.failed, peer.failed,
        tuple(registry.client_instances(c) for c in ("10.0.0.1", "10.0.0.2", "")),
        registry.refused)


def test_a_client_gets_room_back_when_its_instances_leave() -> None:
    """Unregistered and expired instances no longer count for their client; an instance taken
    over by another client counts for the new one."""
    registry = Registry(RegistryConfig(max_instances_per_client=2, lease_ttl=5.0))
    registry.register([inst(instance="a"), inst(instance="b")], T0, WALL, client="c1")
    registry.unregister([inst(instance="a")], T0, WALL)
    registry.register([inst(instance="c")], T0, WALL, client="c1")  # room again
    registry.register([inst(instance="b")], T0, WALL, client="c2")  # taken over
    after_takeover = (registry.client_instances("c1"), registry.client_instances("c2"))
    registry.sweep(T0 + 6, WALL)
    assert ((1, 1), (0, 0), {}) == (
        after_takeover, (registry.client_instances("c1"), registry.client_instances("c2")),
        registry.refused)


def test_a_peers_heartbeat_of_an_unknown_instance_meets_the_node_caps() -> None:
    """A replicated heartbeat that would register an unknown instance is refused past
    max_instances; one of a known instance renews it."""
    registry = Registry(RegistryConfig(max_instances=1))
    registry.register([inst(instance="a")], T0, WALL)
    result = registry.heartbeat([inst(instance="a"), inst(instance="b")], T0 + 1, WALL,
                                register_unknown=True)
    full = "this node holds its maximum of 1 instances (max_instances); try again later."
    assert ([refused(inst(instance="b"), full)], [inst(instance="a")], 1) == (
        result.failed, result.succeeded, registry.instance_count)


def test_lease_batches_cover_every_lease_once_in_steps() -> None:
    """lease_batches gives every lease once, at most `size` per batch, large services split
    across batches; services asked for are found whatever their case and given once."""
    registry = Registry(RegistryConfig())
    registry.register([inst("big", f"i{n}") for n in range(5)] + [inst("small", "x")], T0, WALL)
    batches = [[(state.key, [lease.key for lease in leases]) for state, leases in batch]
               for batch in registry.lease_batches(None, 2)]
    asked = [[(state.key, len(leases)) for state, leases in batch]
             for batch in registry.lease_batches(["SMALL", "small", "none"], 10)]
    assert ([[("big", ["i0", "i1"])], [("big", ["i2", "i3"])], [("big", ["i4"]),
             ("small", ["x"])]], [[("small", 1)]]) == (batches, asked)


def test_lease_batches_leave_out_what_left_between_batches() -> None:
    """A lease or service removed while the batches are read is not given; none comes twice."""
    registry = Registry(RegistryConfig())
    registry.register([inst("a", f"i{n}") for n in range(4)] + [inst("b", "x")], T0, WALL)
    seen: list[str] = []
    for batch in registry.lease_batches(None, 2):
        seen += [lease.key for _, leases in batch for lease in leases]
        if seen == ["i0", "i1"]:
            registry.unregister([inst("a", "i2"), inst("b", "x")], T0, WALL)
            registry.register([inst("a", "i1", port=1)], T0, WALL)  # replaced, not repeated
    assert ["i0", "i1", "i3"] == seen


# --- the node's own pauses ---------------------------------------------------------------------


def running(clock: FakeClock, registry: Registry, seconds: float, step: float = 0.25,
            renew: list[Instance] | None = None) -> list[Change]:
    """The node's sweeper loop for `seconds` of the fake clock: tick and sweep every `step`,
    renewing `renew` on each; every change the sweeps recorded."""
    changes: list[Change] = []
    end = clock.monotonic() + seconds
    while clock.monotonic() < end:
        clock.advance(step)
        registry.tick(clock.monotonic())
        if renew:
            registry.heartbeat(renew, clock.monotonic(), clock.wall_ms())
        changes += registry.sweep(clock.monotonic(), clock.wall_ms())
    return changes


def test_a_pause_of_the_node_evicts_nothing_and_silent_leases_expire_one_gap_later() -> None:
    """After a 30 s pause of the node (found by its sweeper's tick), no 20 s lease is evicted:
    each has the time it had left when the node stopped; the silent one expires 30 s late."""
    clock = FakeClock(T0)
    registry = Registry(RegistryConfig())
    live, silent = inst(instance="live"), inst(instance="silent")
    registry.register([live, silent], clock.monotonic(), clock.wall_ms())
    assert [] == running(clock, registry, 5.0, renew=[live])
    clock.advance(30.0)  # SIGSTOP, a VM stall: neither the loop nor any request runs
    pause = registry.tick(clock.monotonic())
    after = registry.sweep(clock.monotonic(), clock.wall_ms())
    answer = registry.heartbeat([live], clock.monotonic(), clock.wall_ms())
    expired = running(clock, registry, 20.0, renew=[live])
    # registered at T0, 20 s lease, 30 s given back: expired at T0 + 50, found by the next sweep
    assert (Pause(T0 + 5.0, 30.0, 2), [], [live], [("silent", WALL + 50_250)], 1) == (
        pause, after, answer.succeeded,
        [(c.instance.instance_id, c.change_time) for c in expired], registry.instance_count)


def test_a_heartbeat_after_a_pause_renews_before_the_sweeper_runs() -> None:
    """A heartbeat answered before the sweeper's first tick after a pause finds the pause
    itself: its lease is renewed, not answered data-not-found."""
    clock = FakeClock(T0)
    registry = Registry(RegistryConfig())
    i = inst()
    registry.register([i], clock.monotonic(), clock.wall_ms())
    running(clock, registry, 1.0)
    clock.advance(25.0)
    answer = registry.heartbeat([i], clock.monotonic(), clock.wall_ms())
    assert ([i], [], 1, [], 1) == (answer.succeeded, answer.failed, registry.pauses.count,
                                   running(clock, registry, 19.0), registry.instance_count)


def test_a_sweep_after_a_pause_finds_it_before_evicting() -> None:
    """A sweep that runs before the tick after a pause gives the gap back first."""
    clock = FakeClock(T0)
    registry = Registry(RegistryConfig())
    registry.register([inst()], clock.monotonic(), clock.wall_ms())
    running(clock, registry, 1.0)
    clock.advance(25.0)
    assert ([], 1, 1) == (registry.sweep(clock.monotonic(), clock.wall_ms()),
                          registry.pauses.count, registry.instance_count)


def test_without_ticks_time_alone_expires_leases() -> None:
    """A registry whose loop never ticked (no running node) sees no pause: 25 s without a
    heartbeat expire a 20 s lease, as before."""
    clock = FakeClock(T0)
    registry = Registry(RegistryConfig())
    i = inst()
    registry.register([i], clock.monotonic(), clock.wall_ms())
    clock.advance(25.0)
    assert ([delete(2, i)], 0) == (registry.sweep(clock.monotonic(), WALL),
                                   registry.pauses.count)


def test_gaps_under_the_threshold_are_not_given_back() -> None:
    """A sweeper that runs every 1.5 s (under the 2 s threshold) is no pause: leases expire on
    time (the sweep 1.5 s after the 20 s deadline at the latest)."""
    clock = FakeClock(T0)
    registry = Registry(RegistryConfig())
    registry.register([inst()], clock.monotonic(), clock.wall_ms())
    running(clock, registry, 1.0)
    changes = running(clock, registry, 21.0, step=1.5)
    assert (["i1"], 0) == ([c.instance.instance_id for c in changes], registry.pauses.count)


def test_a_node_that_keeps_stalling_still_expires_silent_instances() -> None:
    """A loop stalled 3 s at every turn is a pause each time, yet a silent 20 s lease gets one
    gap back only and expires; a lease renewed between stalls is kept."""
    clock = FakeClock(T0)
    registry = Registry(RegistryConfig())
    live, silent = inst(instance="live"), inst(instance="silent")
    registry.register([live, silent], clock.monotonic(), clock.wall_ms())
    running(clock, registry, 0.5)
    changes = running(clock, registry, 60.0, step=3.0, renew=[live])
    assert (["silent"], ["live"], 20) == (
        [c.instance.instance_id for c in changes],
        [lease.key for lease in registry.leases()], registry.pauses.count)


def test_a_zero_threshold_never_finds_a_pause() -> None:
    """pause_threshold 0 turns the watch off: a 30 s stall expires every 20 s lease."""
    clock = FakeClock(T0)
    registry = Registry(RegistryConfig(pause_threshold=0.0))
    registry.register([inst()], clock.monotonic(), clock.wall_ms())
    running(clock, registry, 1.0)
    clock.advance(30.0)
    assert (None, ["i1"], 0) == (
        registry.tick(clock.monotonic()),
        [c.instance.instance_id for c in registry.sweep(clock.monotonic(), WALL)],
        registry.pauses.count)
