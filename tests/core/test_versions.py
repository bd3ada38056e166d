"""The change log, versioned snapshots, deltas and checksums (§5.4.2, versions.py rules)."""

# STYLE.md has tests read `assert expected == actual`; SIM300 would turn that round.

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from artemis import wire
from artemis.clock import FakeClock
from artemis.core.registry import Registry, RegistryConfig, instance_hash
from artemis.core.versions import (
    DELTA_PART,
    ENTRY_BYTES,
    SHARDS,
    Change,
    ChangeLog,
    Versions,
    checksum_hex,
    drive,
    entry_bytes,
)
from artemis.wire import GetServicesDeltaResponse, Instance, InstanceChange, ResponseStatus

T = TypeVar("T")
T0 = 1000.0
W0 = 1_700_000_000_000
MASK = (1 << 64) - 1
SUCCESS = ResponseStatus(error_code="success", message="", status="success")
SUCCESS_JSON = b'{"errorCode":"success","message":"","status":"success"}'

Content = dict[str, dict[str, Instance]]  # lower-case service id -> lower-case instance id -> data


def inst(service: str = "svc", instance: str = "i1", **fields: Any) -> Instance:
    values: dict[str, Any] = {
        "region_id": "default", "zone_id": "default", "service_id": service,
        "instance_id": instance, "url": f"http://10.0.0.1:8080/{instance}",
    }
    values.update(fields)
    return Instance(**values)


def h(instance: Instance) -> int:
    return instance_hash(wire.encode(instance))


class ServicesAnswer(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """The services.json answer (D3), as a snapshot body holds it."""

    checksum: str
    response_status: ResponseStatus
    services: list[wire.Service]
    version: int


def content(body: bytes) -> tuple[int, str, Content]:
    """(version, checksum, instances) of a snapshot body; checks every service's fixed fields."""
    answer = msgspec.json.decode(body, type=ServicesAnswer)
    assert SUCCESS == answer.response_status
    out: Content = {}
    for service in answer.services:
        assert service.service_id is not None
        assert service.instances  # a service without instances is absent
        assert ([], None, []) == (service.logic_instances, service.metadata, service.route_rules)
        key = service.service_id.lower()
        assert key not in out
        out[key] = {}
        for i in service.instances:
            assert i.instance_id is not None
            assert i.service_id is not None
            assert key == i.service_id.lower()
            out[key][i.instance_id.lower()] = i
    return answer.version, answer.checksum, out


def checksum_of(instances: Content) -> str:
    """The checksum recomputed from the instances themselves."""
    total = sum(instance_hash(wire.encode(i)) for svc in instances.values() for i in svc.values())
    return f"{total & MASK:016x}"


def apply(old: Content, body: bytes) -> tuple[int, str, Content]:
    """Apply a delta body to `old`, strictly: `new` only for absent, the others only for present."""
    answer = wire.decode(body, GetServicesDeltaResponse)
    assert SUCCESS == answer.response_status
    assert answer.delta is not None
    out = {svc: dict(instances) for svc, instances in old.items()}
    for service_id, changes in answer.delta.items():
        assert changes
        key = service_id.lower()
        for change in changes:
            i = change.instance
            assert i.instance_id is not None
            ikey = i.instance_id.lower()
            present = ikey in out.get(key, {})
            if change.change_type == "new":
                assert not present, f"new for present {key}/{ikey}"
                out.setdefault(key, {})[ikey] = i
            elif change.change_type == "change":
                assert present, f"change for absent {key}/{ikey}"
                assert i != out[key][ikey], f"change without a difference {key}/{ikey}"
                out[key][ikey] = i
            else:
                assert change.change_type == "delete"
                assert present, f"delete for absent {key}/{ikey}"
                del out[key][ikey]
                if not out[key]:
                    del out[key]
    return answer.version, answer.checksum or "", out


def by_id(changes: list[InstanceChange]) -> list[InstanceChange]:
    return sorted(changes, key=lambda c: c.instance.instance_id or "")


def normalized(body: bytes) -> GetServicesDeltaResponse:
    """A delta answer with each service's changes sorted by instance id (order is not promised)."""
    answer = wire.decode(body, GetServicesDeltaResponse)
    assert answer.delta is not None
    return msgspec.structs.replace(
        answer, delta={svc: by_id(changes) for svc, changes in answer.delta.items()})


def stepped(gen: Generator[None, None, T], between: Callable[[int], object] | None = None
            ) -> tuple[T, int]:
    """Run a chunked computation to its end: its value and how many times it yielded;
    `between(n)` runs after its n-th yield."""
    steps = 0
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value, steps  # type: ignore[no-any-return]
        steps += 1
        if between is not None:
            between(steps)


def take(versions: Versions, wall_ms: int) -> int:
    snapshot = drive(versions.build(wall_ms))
    assert snapshot is not None
    return snapshot.version


# --- change log --------------------------------------------------------------------------------


def change(revision: int) -> Change:
    i = inst(instance=f"i{revision}")
    return Change(revision, "new", W0, "svc", f"i{revision}", None, h(i), wire.encode(i), h(i))


def test_change_log_gives_changes_after_a_revision() -> None:
    """since(r) yields the kept changes after r, oldest first."""
    log = ChangeLog(10)
    for r in range(1, 6):
        log.append(change(r))
    assert [[c.revision for c in log.since(r) or [-1]] for r in (0, 2, 5, 9)] == [
        [1, 2, 3, 4, 5], [3, 4, 5], [], []]


def test_change_log_answers_none_once_needed_changes_left() -> None:
    """A bounded log keeps its newest changes; since(r) is None if r + 1 has been dropped."""
    log = ChangeLog(3)
    for r in range(1, 6):
        log.append(change(r))
    assert (3, 3, None, None) == (len(log), log.first_revision, log.since(0), log.since(1))
    assert [3, 4, 5] == [c.revision for c in log.since(2) or ()]
    size = sum(entry_bytes(change(r)) for r in (3, 4, 5))
    assert (size, f"ChangeLog(size=3, first=3, bytes={size})") == (log.bytes, repr(log))


def test_change_log_is_bounded_in_bytes() -> None:
    """Past max_bytes the oldest changes leave (counted in `trimmed`) and since() of a revision
    they held answers None, as for a change that left by count; the newest always stays."""
    one = entry_bytes(change(1))
    log = ChangeLog(100, max_bytes=3 * one)
    for r in range(1, 7):
        log.append(change(r))
    kept = (len(log), log.first_revision, log.bytes, log.trimmed, log.since(2))
    assert (3, 4, 3 * one, 3, None) == kept
    assert [4, 5, 6] == [c.revision for c in log.since(3) or ()]
    tiny = ChangeLog(100, max_bytes=1)
    tiny.append(change(1))
    tiny.append(change(2))
    assert ([2], 1) == ([c.revision for c in tiny.since(1) or ()], tiny.trimmed)


def test_change_log_counts_large_instances_by_their_size() -> None:
    """A change is counted as its instance's JSON plus ENTRY_BYTES: large instances leave the
    log sooner, and the bytes counted follow what count-bounded drops take away too."""
    big = inst(metadata={f"k{n}": "v" * 1000 for n in range(16)})
    large = Change(1, "new", W0, "svc", "i1", None, h(big), wire.encode(big), h(big))
    log = ChangeLog(2, max_bytes=10 * ENTRY_BYTES + 2 * len(large.encoded))
    log.append(large)
    log.append(msgspec.structs.replace(large, revision=2, kind="delete"))
    before = (len(log), log.bytes)
    log.append(change(3))  # the capacity of 2 drops the first large change
    assert ((2, 2 * (ENTRY_BYTES + len(large.encoded))),
            (2, entry_bytes(change(3)) + ENTRY_BYTES + len(large.encoded)), 0) == (
        before, (len(log), log.bytes), log.trimmed)


def test_empty_change_log() -> None:
    """An empty log has nothing to give and no first revision; its capacity is at least one."""
    log = ChangeLog(0)
    assert ([], None, 0) == (list(log.since(7) or [None]), log.first_revision, len(log))
    log.append(change(1))
    log.append(change(2))
    assert [2] == [c.revision for c in log.since(1) or ()]


@pytest.mark.parametrize(("kind", "override", "type_"), [
    ("new", None, b"new"), ("delete", None, b"delete"), ("new", "change", b"change")])
def test_change_encodes_as_instance_change(kind: str, override: str | None, type_: bytes) -> None:
    """A change encodes as InstanceChange JSON: changeTime, changeType and the instance."""
    c = msgspec.structs.replace(change(1), kind=kind)
    assert (b'{"changeTime":1700000000000,"changeType":"' + type_ + b'","instance":'
            + wire.encode(c.instance) + b"}") == c.encode(override)


def test_checksum_hex_is_sixteen_hex_digits() -> None:
    """Checksums are written as 16 lower-case hex digits."""
    assert ["0000000000000000", "00000000000000ff", "ffffffffffffffff"] == [
        checksum_hex(0), checksum_hex(255), checksum_hex(MASK)]


def test_drive_runs_a_chunked_computation_to_its_value() -> None:
    """drive() steps through every yield and returns the generator's value."""
    steps: list[int] = []

    def chunked() -> Generator[None, None, str]:
        for n in range(3):
            steps.append(n)
            yield
        return "done"

    assert ("done", [0, 1, 2]) == (drive(chunked()), steps)


# --- snapshots ---------------------------------------------------------------------------------


def test_first_snapshot_of_an_empty_registry() -> None:
    """The first snapshot is taken at construction, labelled with the wall time."""
    versions = Versions(Registry(RegistryConfig()), 3, W0)
    assert (b'{"checksum":"0000000000000000","responseStatus":' + SUCCESS_JSON
            + b',"services":[],"version":1700000000000}') == versions.current.body()
    assert ([W0], 0, 0) == (versions.versions, versions.current.revision,
                            versions.current.instance_count)


def test_snapshot_body_is_exact_services_json() -> None:
    """A snapshot body lists every service's answer, with the registry's checksum and version."""
    registry = Registry(RegistryConfig())
    i = inst()
    registry.register([i], T0, W0)
    versions = Versions(registry, 3, W0 + 5)
    assert (b'{"checksum":"' + checksum_hex(h(i)).encode() + b'","responseStatus":'
            + SUCCESS_JSON + b',"services":[{"instances":[' + wire.encode(i)
            + b'],"logicInstances":[],"metadata":null,"routeRules":[],"serviceId":"svc"}],'
            b'"version":1700000000005}') == versions.current.body()


def test_services_json_is_made_as_it_is_sent_and_outlives_its_snapshot() -> None:
    """services.json of 5 services (0 to 4 instances each) is the snapshot's body, part after
    part, of the size counted in steps, and is still whole once a newer snapshot supersedes
    its own; it keeps no list of its parts."""
    registry = Registry(RegistryConfig())
    registry.register([inst(f"svc{n}", f"i{k}") for n in range(5) for k in range(n)], T0, W0)
    versions = Versions(registry, 3, W0)
    snapshot = versions.current
    body = snapshot.body()
    answer, size = drive(snapshot.answer(chunk=2))
    registry.register([inst("late")], T0, W0)
    take(versions, W0 + 1000)

    assert (len(body), body, None, ["end", "head", "services"]) == (
        size, b"".join(answer), snapshot.services, sorted(type(answer).__slots__))


def test_snapshot_is_taken_only_after_a_change() -> None:
    """build() gives None while the registry's revision has not moved."""
    registry = Registry(RegistryConfig())
    versions = Versions(registry, 3, W0)
    assert drive(versions.build(W0 + 1000)) is None
    registry.register([inst()], T0, W0)
    registry.heartbeat([inst()], T0 + 1, W0)
    assert (W0 + 2000, None) == (take(versions, W0 + 2000), drive(versions.build(W0 + 3000)))


def test_versions_strictly_increase_even_if_the_wall_clock_does_not() -> None:
    """A version is the wall time, or one more than the last version if that is not later."""
    registry = Registry(RegistryConfig())
    versions = Versions(registry, 5, W0)
    made = []
    for wall in (W0, W0 - 50, W0 + 10):
        registry.reload("svc", wall)
        made.append(take(versions, wall))
    assert [W0 + 1, W0 + 2, W0 + 10] == made
    assert [W0, W0 + 1, W0 + 2, W0 + 10] == versions.versions


def test_only_the_newest_snapshots_are_kept() -> None:
    """With keep=2 only the two newest versions can be found."""
    registry = Registry(RegistryConfig())
    versions = Versions(registry, 2, W0)
    for n in range(1, 4):
        registry.register([inst(instance=f"i{n}")], T0, W0)
        take(versions, W0 + n)
    assert ([W0 + 2, W0 + 3], None) == (versions.versions, versions.find(W0 + 1))
    found = versions.find(W0 + 2)
    assert found is not None
    assert (W0 + 2, 2, 2) == (found.version, found.revision, found.instance_count)


def test_snapshot_holds_the_registry_as_of_its_revision() -> None:
    """A snapshot has every service with instances, and none that lost its last instance."""
    registry = Registry(RegistryConfig())
    a, b, c = inst("Alpha", "a"), inst("beta", "b"), inst("ALPHA", "c", port=3)
    registry.register([a, b, c], T0, W0)
    versions = Versions(registry, 3, W0)
    registry.unregister([b], T0, W0)
    registry.register([inst("alpha", "a", port=9)], T0, W0)
    version = take(versions, W0 + 1)
    a9 = inst("alpha", "a", port=9)
    expected = {"alpha": {"a": a9, "c": c}}
    assert (version, checksum_of(expected), expected) == content(versions.current.body())
    assert (2, ((h(a9) + h(c)) & MASK)) == (versions.current.instance_count,
                                            versions.current.checksum)


def test_chunked_build_is_exact_as_of_one_revision() -> None:
    """Changes made while a chunked build is suspended are in the snapshot it returns."""
    registry = Registry(RegistryConfig())
    first = [inst(f"s{n}", "a") for n in range(3)]
    registry.register(first, T0, W0)
    versions = Versions(registry, 3, W0, chunk=1)
    registry.register([inst(f"s{n}", "b") for n in range(3)], T0, W0)
    build = versions.build(W0 + 1)
    next(build)
    registry.unregister(first, T0, W0)
    registry.register([inst("s3", "z")], T0, W0)
    snapshot = drive(build)
    assert snapshot is not None
    expected = {f"s{n}": {"b": inst(f"s{n}", "b")} for n in range(3)}
    expected["s3"] = {"z": inst("s3", "z")}
    assert (registry.revision, expected) == (snapshot.revision, content(snapshot.body())[2])


def test_build_steps_are_bounded_by_leases_too() -> None:
    """A step of a snapshot takes `chunk` services or fewer large ones: three services of 100
    instances with chunk 2 (40 leases a service, 80 a step) are taken one per step, after the
    steps that copy the snapshot before, eight of its SHARDS maps a step."""
    registry = Registry(RegistryConfig())
    versions = Versions(registry, 3, W0, chunk=2)
    registry.register([inst(f"s{n}", f"i{i}") for n in range(3) for i in range(100)], T0, W0)
    snapshot, steps = stepped(versions.build(W0 + 1))
    assert snapshot is not None
    assert (SHARDS // 8 + 3, 300) == (steps, snapshot.instance_count)


def test_a_build_gains_on_writes_and_ends_with_a_step_of_at_most_chunk_services() -> None:
    """Writes that change three new services at every step of a build (chunk 2) for its first
    60 steps: the build keeps taking rounds, its steps growing up to four times the chunk,
    until at most `chunk` services are left, taken with what is left of its round (fewer than
    four chunks) in the last step, which ends exactly at the registry's revision with every
    service in it."""
    registry = Registry(RegistryConfig())
    versions = Versions(registry, 3, W0, chunk=2)
    registry.register([inst(f"s{n}", "a") for n in range(10)], T0, W0)
    taken: list[str] = []
    take_one = versions._take
    versions._take = lambda services, key: (taken.append(key), take_one(services, key))[1]  # type: ignore[method-assign]
    at_last_yield = [0]

    def write(step: int) -> None:
        at_last_yield[0] = len(taken)
        if step <= 60:
            registry.register([inst(f"w{3 * (step - 1) + k}", "a") for k in range(3)], T0, W0)

    snapshot, steps = stepped(versions.build(W0 + 1), write)
    written = 3 * min(steps, 60)
    assert snapshot is not None
    assert (registry.revision, 10 + written) == (snapshot.revision, snapshot.instance_count)
    assert set(content(snapshot.body())[2]) == {f"s{n}" for n in range(10)} | {
        f"w{n}" for n in range(written)}
    assert len(taken) - at_last_yield[0] <= 4 * 2 + 2


# --- deltas ------------------------------------------------------------------------------------


def test_delta_body_is_exact_services_delta_json() -> None:
    """A one-change delta answer, byte for byte: checksum, delta, status, version."""
    registry = Registry(RegistryConfig())
    versions = Versions(registry, 3, W0)
    i = inst()
    registry.register([i], T0, W0 + 7)
    v2 = take(versions, W0 + 1000)
    body = (b'{"checksum":"' + checksum_hex(h(i)).encode() + b'","delta":{"svc":[{"changeTime":'
            b'1700000000007,"changeType":"new","instance":' + wire.encode(i) + b'}]},'
            b'"responseStatus":' + SUCCESS_JSON + b',"version":1700000001000}')
    delta = drive(versions.delta(W0))
    assert delta is not None
    assert (W0, v2, body, 1, len(body)) == (delta.from_version, delta.version, delta.body,
                                            delta.changes, delta.size)


def test_delta_folds_changes_into_new_delete_and_change() -> None:
    """Absent->present is new, present->absent delete, other data change; the rest cancels."""
    registry = Registry(RegistryConfig())
    a, b, c = inst("s1", "a", port=1), inst("s1", "b"), inst("s2", "c")
    registry.register([a, b, c], T0, W0)
    versions = Versions(registry, 3, W0)
    a2, d, e = inst("s1", "a", port=2), inst("s3", "d"), inst("s1", "e")
    registry.register([a2], T0, W0 + 1)                 # change
    registry.unregister([b], T0, W0 + 2)                # delete
    registry.register([d], T0, W0 + 3)                  # new
    registry.register([e], T0, W0 + 4)                  # came and went: nothing
    registry.unregister([e], T0, W0 + 5)
    registry.register([inst("s2", "c", port=7)], T0, W0 + 6)  # changed and back: nothing
    registry.register([c], T0, W0 + 7)
    registry.register([inst("s2", "f")], T0, W0 + 8)    # came, changed, went: nothing
    registry.register([inst("s2", "f", port=5)], T0, W0 + 9)
    registry.unregister([inst("s2", "f")], T0, W0 + 10)
    version = take(versions, W0 + 100)
    expected = GetServicesDeltaResponse(
        checksum=checksum_hex((h(a2) + h(c) + h(d)) & MASK),
        delta={
            "s1": [InstanceChange(change_time=W0 + 1, change_type="change", instance=a2),
                   InstanceChange(change_time=W0 + 2, change_type="delete", instance=b)],
            "s3": [InstanceChange(change_time=W0 + 3, change_type="new", instance=d)],
        },
        response_status=SUCCESS, version=version)
    delta = drive(versions.delta(W0))
    assert delta is not None
    assert (expected, 3) == (normalized(delta.body), delta.changes)


def test_delta_names_services_by_their_current_or_last_id() -> None:
    """A live service is keyed by its answer's serviceId, a vanished one by its instance's."""
    registry = Registry(RegistryConfig())
    gone, live = inst("Gone.Svc", "g"), inst("Live.Svc", "l")
    registry.register([gone, live], T0, W0)
    versions = Versions(registry, 3, W0)
    registry.unregister([inst("GONE.SVC", "g")], T0, W0)
    newer = inst("LIVE.SVC", "m")
    registry.register([newer], T0, W0)
    take(versions, W0 + 1)
    delta = drive(versions.delta(W0))
    assert delta is not None
    assert {"Gone.Svc": [InstanceChange(change_time=W0, change_type="delete", instance=gone)],
            "Live.Svc": [InstanceChange(change_time=W0, change_type="new", instance=newer)]} == (
        normalized(delta.body).delta)


def test_delta_from_the_newest_version_is_empty_success() -> None:
    """Asking from the newest version gives an empty delta, successful, at the same version."""
    registry = Registry(RegistryConfig())
    i = inst()
    registry.register([i], T0, W0)
    versions = Versions(registry, 3, W0)
    body = (b'{"checksum":"' + checksum_hex(h(i)).encode() + b'","delta":{},"responseStatus":'
            + SUCCESS_JSON + b',"version":1700000000000}')
    delta = drive(versions.delta(W0))
    assert delta is not None
    assert (W0, W0, body, 0, len(body)) == (delta.from_version, delta.version, delta.body,
                                            delta.changes, delta.size)


def test_delta_over_a_reload_only_is_empty() -> None:
    """A reload moves the revision, so a new version is taken, but it adds nothing to a delta."""
    registry = Registry(RegistryConfig())
    registry.register([inst()], T0, W0)
    versions = Versions(registry, 3, W0)
    registry.reload("svc", W0)
    version = take(versions, W0 + 1)
    delta = drive(versions.delta(W0))
    assert delta is not None
    assert ((version, {}, 0) == (normalized(delta.body).version, normalized(delta.body).delta,
                                 delta.changes))


def test_delta_from_an_unknown_version_is_none() -> None:
    """A version that never existed has no delta (data-not-found)."""
    versions = Versions(Registry(RegistryConfig()), 3, W0)
    assert drive(versions.delta(W0 - 1)) is None


def test_delta_from_a_version_pushed_out_of_the_ring_is_none() -> None:
    """A version no longer among the kept snapshots has no delta; the kept ones still do."""
    registry = Registry(RegistryConfig())
    versions = Versions(registry, 2, W0)
    for n in range(1, 3):
        registry.register([inst(instance=f"i{n}")], T0, W0)
        take(versions, W0 + n)
    assert (None, [W0 + 1, W0 + 2]) == (drive(versions.delta(W0)), versions.versions)
    delta = drive(versions.delta(W0 + 1))
    assert delta is not None
    assert 1 == delta.changes


def test_delta_from_a_revision_that_left_the_change_log_is_none() -> None:
    """With a log of 3 changes, a version 4 changes back has no delta; 3 back still has one."""
    registry = Registry(RegistryConfig(change_log_size=3))
    versions = Versions(registry, 5, W0)
    for n in range(3):
        registry.register([inst(instance=f"i{n}")], T0, W0)
    v1 = take(versions, W0 + 1)
    delta = drive(versions.delta(W0))
    assert delta is not None
    assert 3 == delta.changes
    registry.register([inst(instance="i3")], T0, W0)
    take(versions, W0 + 2)
    assert drive(versions.delta(W0)) is None
    delta = drive(versions.delta(v1))
    assert delta is not None
    assert 1 == delta.changes


def test_delta_is_cached_until_the_next_snapshot() -> None:
    """The same delta object answers until a new snapshot replaces the newest version."""
    registry = Registry(RegistryConfig())
    versions = Versions(registry, 3, W0)
    registry.register([inst()], T0, W0)
    take(versions, W0 + 1)
    first = drive(versions.delta(W0))
    assert first is drive(versions.delta(W0))
    registry.register([inst(instance="i2")], T0, W0)
    v3 = take(versions, W0 + 2)
    again = drive(versions.delta(W0))
    assert again is not None
    assert (v3, 2) == (again.version, again.changes)


def test_chunked_delta_starts_over_when_a_newer_snapshot_appears() -> None:
    """A delta suspended while a newer snapshot is taken ends at the newer version."""
    registry = Registry(RegistryConfig())
    versions = Versions(registry, 5, W0, chunk=1)
    registry.register([inst(instance=f"i{n}") for n in range(25)], T0, W0)
    take(versions, W0 + 1)
    delta_gen = versions.delta(W0)
    next(delta_gen)
    registry.register([inst(instance="late")], T0, W0)
    v3 = take(versions, W0 + 2)
    delta = drive(delta_gen)
    assert delta is not None
    assert (v3, 26) == (delta.version, delta.changes)


def test_a_large_delta_is_held_in_parts_of_about_delta_part_bytes() -> None:
    """A delta of 600 services (about 150 KB) is the exact answer, held in a few parts of
    about DELTA_PART bytes rather than a part or more per service, and with chunk 1 its maps
    are let go of in steps."""
    registry = Registry(RegistryConfig())
    versions = Versions(registry, 3, W0, chunk=1)
    added = [inst(f"svc{n:03d}", f"i{n}", port=n + 1) for n in range(600)]
    registry.register(added, T0, W0 + 5)
    version = take(versions, W0 + 1)
    delta, steps = stepped(versions.delta(W0))
    expected = GetServicesDeltaResponse(
        checksum=checksum_hex(sum(map(h, added)) & MASK),
        delta={i.service_id: [InstanceChange(change_time=W0 + 5, change_type="new", instance=i)]
               for i in added},
        response_status=SUCCESS, version=version)
    assert delta is not None
    parts = delta.parts
    assert (expected, 600, len(delta.body)) == (normalized(delta.body), delta.changes, delta.size)
    assert 2 <= len(parts) <= delta.size // DELTA_PART + 2
    assert all(len(part) < DELTA_PART + 1024 for part in parts)
    assert steps >= 3 * 600 // 2  # folded, written and let go of in steps of 2 entries


def test_repr_shows_versions_and_revision() -> None:
    """The repr of Versions shows the kept versions and the newest revision."""
    registry = Registry(RegistryConfig())
    versions = Versions(registry, 3, W0)
    registry.register([inst()], T0, W0)
    take(versions, W0 + 1)
    assert f"Versions(versions={[W0, W0 + 1]}, revision=1)" == repr(versions)


# --- properties --------------------------------------------------------------------------------

SERVICES = ["alpha", "Alpha", "beta", "GAMMA", "gamma"]
IDS = ["a", "A", "b", "c"]
TICKS = [0.7, 6.3, 13.1]  # no sum of these is 20 s: no sweep falls on a deadline exactly
pick = st.tuples(st.sampled_from(SERVICES), st.sampled_from(IDS))
OPS = st.lists(st.one_of(
    st.tuples(st.just("register"), pick, st.integers(0, 2)),
    st.tuples(st.just("heartbeat"), pick, st.just(0)),
    st.tuples(st.just("unregister"), pick, st.just(0)),
    st.tuples(st.just("tick"), st.just(("", "")), st.integers(0, len(TICKS) - 1)),
    st.tuples(st.just("snapshot"), st.just(("", "")), st.just(0)),
), max_size=40)


def variant(service: str, instance: str, v: int) -> Instance:
    return inst(service, instance, port=8000 + v, metadata={"v": str(v)} if v else None)


class Run:
    """One random history: the registry, its versions, and a model of what it should hold."""

    def __init__(self, keep: int, log_size: int) -> None:
        self.clock = FakeClock(T0, W0)
        self.registry = Registry(RegistryConfig(change_log_size=log_size))
        self.log_size = log_size
        self.versions = Versions(self.registry, keep, self.clock.wall_ms(), chunk=1)
        self.model: dict[tuple[str, str], tuple[Instance, float]] = {}
        self.seen: dict[int, tuple[int, Content]] = {}  # version -> (revision, content)
        self.record()

    def expected(self) -> Content:
        out: Content = {}
        for (svc, key), (i, _) in self.model.items():
            out.setdefault(svc, {})[key] = i
        return out

    def record(self) -> None:
        snapshot = self.versions.current
        version, checksum, got = content(snapshot.body())
        assert (snapshot.version, checksum_of(got), self.expected()) == (version, checksum, got)
        self.seen[version] = (self.registry.revision, got)

    def step(self, kind: str, service: str, instance: str, arg: int) -> None:
        reg, clock = self.registry, self.clock
        now, wall = clock.monotonic(), clock.wall_ms()
        key = (service.lower(), instance.lower())
        if kind == "register":
            i = variant(service, instance, arg)
            reg.register([i], now, wall)
            self.model[key] = (i, now + 20.0)
        elif kind == "heartbeat":
            held = self.model.get(key)  # a client heartbeats with what it registered
            sent = inst(service, instance) if held is None else msgspec.structs.replace(
                held[0], service_id=service, instance_id=instance)
            ok = reg.heartbeat([sent], now, wall).succeeded
            assert (key in self.model) == bool(ok)
            if ok:
                self.model[key] = (self.model[key][0], now + 20.0)
        elif kind == "unregister":
            changes = reg.unregister([inst(service, instance)], now, wall).changes
            assert (key in self.model) == bool(changes)
            self.model.pop(key, None)
        elif kind == "tick":
            clock.advance(TICKS[arg])
            now = clock.monotonic()
            gone = {k for k, (_, deadline) in self.model.items() if now > deadline}
            changes = reg.sweep(now, clock.wall_ms())
            assert gone == {(c.service, c.key) for c in changes}
            for k in gone:
                del self.model[k]
        else:
            assert kind == "snapshot"
            if drive(self.versions.build(wall)) is not None:
                self.record()

    def finish(self) -> None:
        if drive(self.versions.build(self.clock.wall_ms())) is not None:
            self.record()


@settings(max_examples=150, deadline=None)
@given(ops=OPS, keep=st.integers(1, 4))
def test_delta_from_any_kept_version_gives_the_newest_snapshot(
        ops: list[tuple[str, tuple[str, str], int]], keep: int) -> None:
    """Old snapshot + delta == newest snapshot, and every checksum matches its instances."""
    run = Run(keep, 200_000)
    for kind, (service, instance), arg in ops:
        run.step(kind, service, instance, arg)
    run.finish()
    newest = run.versions.current.version
    target = run.seen[newest][1]
    for version in run.versions.versions:
        delta = drive(run.versions.delta(version))
        assert delta is not None
        assert (newest, checksum_of(target), target) == apply(run.seen[version][1], delta.body)


@settings(max_examples=100, deadline=None)
@given(ops=OPS, log_size=st.integers(1, 8))
def test_delta_exists_exactly_while_the_log_holds_its_changes(
        ops: list[tuple[str, tuple[str, str], int]], log_size: int) -> None:
    """With a small log, a kept version has a (correct) delta iff its later changes are all kept."""
    run = Run(4, log_size)
    for kind, (service, instance), arg in ops:
        run.step(kind, service, instance, arg)
    run.finish()
    newest = run.versions.current.version
    oldest_kept_revision = max(1, run.registry.revision - log_size + 1)
    for version in run.versions.versions:
        revision, old = run.seen[version]
        delta = drive(run.versions.delta(version))
        if revision + 1 < oldest_kept_revision:
            assert delta is None
        else:
            assert delta is not None
            target = run.seen[newest][1]
            assert (newest, checksum_of(target), target) == apply(old, delta.body)
