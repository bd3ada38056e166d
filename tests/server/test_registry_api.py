"""Register, heartbeat and unregister over HTTP: the answers of §4.1 and what they do."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from artemis.clock import FakeClock
from artemis.core.registry import OTHER_DATA
from artemis.server.api import registry as registry_api
from artemis.server.api.registry import GATED_BODY, SLICE
from tests.server.conftest import MakeApi, make_parts
from tests.server.harness import (
    HEARTBEAT,
    NOT_EXISTING,
    OK_BODY,
    RATE_LIMITED,
    REGISTER,
    SERVICE,
    UNREGISTER,
    Api,
    canonical,
    failed,
    instance,
    lookup_answer,
    partial,
    registry_fail,
    service,
)


async def test_register_answers_success_and_lookup_finds_it(api: Api) -> None:
    """A register answers exactly the canonical success and the instance is looked up as sent."""
    response = await api.post(REGISTER, {"instances": [instance()]})

    assert (200, b'{"failedInstances":null,"responseStatus":{"errorCode":"success",'
                 b'"message":"","status":"success"}}') == (response.status_code, response.content)
    assert lookup_answer(service(SERVICE, instance())) == await api.lookup()


async def test_register_batch_registers_every_instance(api: Api) -> None:
    """A batch of two instances answers success and both are registered, in order."""
    first, second = instance("10.0.0.5:8080"), instance("10.0.0.6:8080")

    assert OK_BODY == await api.register(first, second)
    assert lookup_answer(service(SERVICE, first, second)) == await api.lookup()


async def test_register_again_replaces_the_stored_instance(seeded: Api) -> None:
    """Registering a live instance again replaces its data (the lease is new)."""
    moved = instance(port=9090, status="starting")

    assert OK_BODY == await seeded.register(moved)
    assert lookup_answer(service(SERVICE, moved)) == await seeded.lookup()


async def test_register_skips_null_entries(api: Api) -> None:
    """Null entries of a batch are skipped, not failed."""
    assert OK_BODY == await api.call(REGISTER, {"instances": [None, instance(), None]})
    assert lookup_answer(service(SERVICE, instance())) == await api.lookup()


async def test_register_other_region_is_partial_fail_no_permission(api: Api) -> None:
    """An instance of another region fails `no-permission` inside partial_fail; the rest is kept."""
    stranger = instance("10.0.0.9:8080", regionId="FRA")

    answer = await api.register(instance(), stranger)

    assert partial(failed(stranger, "no-permission",
                          "regionId is not the same as the registry node. regionId: FRA, "
                          "registry node.regionId: SHA")) == answer
    assert lookup_answer(service(SERVICE, instance())) == await api.lookup()


async def test_register_region_is_compared_ignoring_case(api: Api) -> None:
    """regionId `sha` is the node's region `SHA`."""
    lower = instance(regionId="sha")

    assert OK_BODY == await api.register(lower)
    assert lookup_answer(service(SERVICE, lower)) == await api.lookup()


async def test_partial_fail_even_when_every_instance_fails(api: Api) -> None:
    """Two failing instances still answer partial_fail with an empty message (quirk 2)."""
    a = instance("10.0.0.1:80", regionId="FRA")
    b = instance("10.0.0.2:80", regionId="NYC")

    assert partial(
        failed(a, "no-permission", "regionId is not the same as the registry node. "
               "regionId: FRA, registry node.regionId: SHA"),
        failed(b, "no-permission", "regionId is not the same as the registry node. "
               "regionId: NYC, registry node.regionId: SHA"),
    ) == await api.register(a, b)
    assert lookup_answer(service(SERVICE)) == await api.lookup()


async def test_missing_region_reads_null_in_the_message(make_api: MakeApi) -> None:
    """A missing regionId or zoneId reads `null` in the failure message, as Java writes a null
    string (never Python's `None`)."""
    api = await make_api(allow_registry_from_other_zone=False)
    no_region = instance("10.0.0.1:80", regionId=None)
    no_zone = instance("10.0.0.2:80", zoneId=None)

    assert partial(
        failed(no_region, "no-permission", "regionId is not the same as the registry node. "
               "regionId: null, registry node.regionId: SHA"),
        failed(no_zone, "no-permission", "zoneId is not the same as the registry node. "
               "zoneId: null, registry node.zoneId: zone-1"),
    ) == await api.register(no_region, no_zone)


async def test_other_zone_refused_when_not_allowed(make_api: MakeApi) -> None:
    """With allow_registry_from_other_zone off, another zone fails `no-permission`."""
    api = await make_api(allow_registry_from_other_zone=False)
    elsewhere = instance(zoneId="zone-2")

    assert partial(failed(elsewhere, "no-permission",
                          "zoneId is not the same as the registry node. zoneId: zone-2, "
                          "registry node.zoneId: zone-1")) == await api.register(elsewhere)
    assert lookup_answer(service(SERVICE)) == await api.lookup()


async def test_other_zone_accepted_by_default(api: Api) -> None:
    """By default (the shipped configuration) an instance of another zone is accepted."""
    elsewhere = instance(zoneId="zone-2")

    assert OK_BODY == await api.register(elsewhere)
    assert lookup_answer(service(SERVICE, elsewhere)) == await api.lookup()


async def test_heartbeat_of_known_instance_succeeds(seeded: Api) -> None:
    """A heartbeat of a registered instance answers the canonical success."""
    assert OK_BODY == await seeded.heartbeat(instance())


async def test_heartbeat_of_unknown_instance_is_data_not_found(api: Api) -> None:
    """An unknown instance's heartbeat fails `data-not-found` inside partial_fail (quirk 1)."""
    assert partial(failed(instance(), "data-not-found", NOT_EXISTING)) == await api.heartbeat(
        instance())
    assert lookup_answer(service(SERVICE)) == await api.lookup()


async def test_heartbeat_message_names_the_instance(api: Api) -> None:
    """The failure message is `<region/zone/service/group/instance lower-cased>: <reason>`."""
    grouped = instance("10.0.0.5:8080", groupId="G1", serviceId="Demo.Service")

    answer = await api.heartbeat(grouped)

    assert ("sha/zone-1/demo.service/g1/10.0.0.5:8080: " + NOT_EXISTING
            == answer["failedInstances"][0]["errorMessage"])
    assert partial(failed(grouped, "data-not-found", NOT_EXISTING)) == answer


async def test_heartbeat_never_changes_stored_data(seeded: Api) -> None:
    """A heartbeat carrying other data keeps the registered data and answers data-not-found
    for it, so the client registers what it has again (a stale copy is never renewed)."""
    other = instance(port=1, status="down")
    assert partial(failed(other, "data-not-found", OTHER_DATA)) == await seeded.heartbeat(other)
    assert lookup_answer(service(SERVICE, instance())) == await seeded.lookup()


async def test_heartbeat_after_expiry_needs_register(seeded: Api) -> None:
    """Once the 20 s lease expired (even before a sweep) a heartbeat answers data-not-found."""
    seeded.clock.advance(20.5)

    assert partial(failed(instance(), "data-not-found", NOT_EXISTING)) == await seeded.heartbeat(
        instance())


async def test_heartbeat_keeps_the_lease_alive(seeded: Api) -> None:
    """Heartbeats every 15 s keep an instance past its 20 s TTL; silence then expires it."""
    for _ in range(3):
        seeded.sweep(15)
        assert OK_BODY == await seeded.heartbeat(instance())
    seeded.sweep(15)
    assert lookup_answer(service(SERVICE, instance())) == await seeded.lookup()

    seeded.sweep(6)
    assert lookup_answer(service(SERVICE)) == await seeded.lookup()


async def test_lease_expires_after_ttl(seeded: Api) -> None:
    """Without heartbeats the instance stays for its 20 s TTL and is swept right after."""
    seeded.sweep(19.9)
    assert lookup_answer(service(SERVICE, instance())) == await seeded.lookup()

    seeded.sweep(0.2)
    assert lookup_answer(service(SERVICE)) == await seeded.lookup()


async def test_legacy_instance_gets_the_legacy_lease(api: Api) -> None:
    """An instance with metadata `java_registry` lives 90 s without heartbeats (§3.1)."""
    legacy = instance(metadata={"java_registry": "yes"})
    assert OK_BODY == await api.register(legacy)

    api.sweep(60)
    assert lookup_answer(service(SERVICE, legacy)) == await api.lookup()
    api.sweep(31)
    assert lookup_answer(service(SERVICE)) == await api.lookup()


async def test_unregister_removes_the_instance(seeded: Api) -> None:
    """Unregister answers success and the instance is gone from lookups at once."""
    assert OK_BODY == await seeded.unregister(instance())
    assert lookup_answer(service(SERVICE)) == await seeded.lookup()


async def test_unregister_of_unknown_instance_is_success(api: Api) -> None:
    """Unregistering an instance that is not registered is still success (§4.1)."""
    assert OK_BODY == await api.unregister(instance())


async def test_instance_identity_ignores_case(seeded: Api) -> None:
    """Service and instance ids are compared lower-cased: `DEMO.SERVICE.V1`/`10.0.0.5:8080`."""
    shouted = instance(serviceId=SERVICE.upper(), regionId="sha")

    assert OK_BODY == await seeded.heartbeat(shouted)
    assert OK_BODY == await seeded.unregister(shouted)
    assert lookup_answer(service(SERVICE)) == await seeded.lookup()


@pytest.mark.parametrize("path", [REGISTER, HEARTBEAT, UNREGISTER])
async def test_node_not_up_is_service_unavailable(make_api: MakeApi, path: str) -> None:
    """A node that is still `starting` refuses registry calls `service-unavailable`."""
    api = await make_api(up=False)

    assert registry_fail("service-unavailable",
                         "Serivce registry is not in up state. Current status: starting"
                         ) == await api.call(path, {"instances": [instance()]})
    assert 0 == api.node.registry.instance_count


async def test_register_rate_limited_on_third_call(make_api: MakeApi) -> None:
    """With `registry.register` at 2 per 10 s the third register is `rate-limited` and does
    nothing; the limit holds only for that operation and frees up as the window slides."""
    api = await make_api(rate_limits={"registry.register": 2})
    one, two, three = (instance(f"10.0.0.{n}:80") for n in (1, 2, 3))
    assert OK_BODY == await api.register(one)
    assert OK_BODY == await api.register(two)

    assert registry_fail("rate-limited", "Request is rate limited.") == await api.register(three)
    assert lookup_answer(service(SERVICE, one, two)) == await api.lookup()
    assert OK_BODY == await api.heartbeat(one)

    api.clock.advance(10)
    assert OK_BODY == await api.register(three)
    assert lookup_answer(service(SERVICE, one, two, three)) == await api.lookup()


async def test_unregister_rate_limited_changes_nothing(make_api: MakeApi) -> None:
    """A rate-limited unregister answers `rate-limited` and leaves the instance registered."""
    api = await make_api(rate_limits={"registry.unregister": 0})
    assert OK_BODY == await api.register(instance())

    assert {"failedInstances": None, "responseStatus": RATE_LIMITED} == await api.unregister(
        instance())
    assert lookup_answer(service(SERVICE, instance())) == await api.lookup()


async def test_heartbeat_rate_limited_does_not_renew(make_api: MakeApi) -> None:
    """A rate-limited heartbeat does not renew the lease: the instance expires on time."""
    api = await make_api(rate_limits={"registry.heartbeat": 0})
    assert OK_BODY == await api.register(instance())
    api.clock.advance(15)

    assert {"failedInstances": None, "responseStatus": RATE_LIMITED} == await api.heartbeat(
        instance())
    api.sweep(5.5)
    assert lookup_answer(service(SERVICE)) == await api.lookup()


async def test_rate_limit_checked_before_the_request_shape(make_api: MakeApi) -> None:
    """The limiter comes first (§4.1 step 1): an empty batch over the limit is `rate-limited`."""
    api = await make_api(rate_limits={"registry": 0})

    assert registry_fail("rate-limited", "Request is rate limited.") == await api.call(
        REGISTER, {"instances": []})


# --- caps ---------------------------------------------------------------------------------------


def capped(inst: dict[str, Any], reason: str) -> dict[str, Any]:
    return failed(inst, "rate-limited", reason)


async def test_register_over_the_per_client_cap_fails_for_those_instances(
        clock: FakeClock) -> None:
    """A client address past max_instances_per_client gets rate-limited for its new instances,
    counted in /metrics; another address still registers, and the held instances renew."""
    app = make_parts(clock, max_instances_per_client=2).app
    a, b, c = (instance(f"10.0.0.{n}:8080") for n in (1, 2, 3))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(
            "10.1.1.1", 40000)), base_url="http://node") as one, httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("10.1.1.2", 40000)),
            base_url="http://node") as two:
        answers = [(await one.post(path, json={"instances": body})).json() for path, body in (
            (REGISTER, [a, b, c]), (HEARTBEAT, [a, b]), (REGISTER, [a]))]
        answers.append((await two.post(REGISTER, json={"instances": [c]})).json())
        metrics = (await one.get("/metrics")).text
    reason = ("client 10.1.1.1 holds its maximum of 2 instances on this node "
              "(max_instances_per_client).")
    assert ([partial(capped(c, reason)), OK_BODY, OK_BODY, OK_BODY], True) == (
        answers, 'artemis_registrations_refused_total{cap="max_instances_per_client"} 1.0'
        in metrics)


async def test_register_over_the_node_caps_fails_whoever_asks(make_api: MakeApi) -> None:
    """max_instances and max_services refuse new instances and services with rate-limited;
    registering a held instance again is never refused."""
    api: Api = await make_api(max_instances=2, max_services=1)
    a, b = instance("10.0.0.1:8080"), instance("10.0.0.2:8080")
    elsewhere = instance("10.0.0.3:8080", serviceId="other.service")
    first = await api.register(a, elsewhere)
    second = await api.register(b, instance("10.0.0.4:8080"), {**a, "port": 9090})
    services = "this node holds its maximum of 1 services (max_services); try again later."
    instances = "this node holds its maximum of 2 instances (max_instances); try again later."
    assert (partial(capped(elsewhere, services)),
            partial(capped(instance("10.0.0.4:8080"), instances)),
            {"max_instances": 1, "max_services": 1}) == (first, second, api.node.registry.refused)


# --- large batches run in slices ---------------------------------------------------------------

def many(count: int) -> list[dict[str, Any]]:
    return [instance(f"10.1.{n // 250}.{n % 250}:8080") for n in range(count)]


async def test_a_large_batch_answers_as_one_batch_in_its_order(api: Api) -> None:
    """A batch larger than a slice (server/api/registry.py SLICE) answers one answer: every
    failure of every slice, in the batch's order; and all of it is done."""
    fleet = many(2 * SLICE + 1)
    unknown = await api.heartbeat(*fleet)
    registered = await api.register(*fleet)
    renewed = await api.heartbeat(*fleet)
    assert (partial(*(failed(i, "data-not-found", NOT_EXISTING) for i in fleet)), OK_BODY,
            OK_BODY, 2 * SLICE + 1) == (unknown, registered, renewed,
                                        api.node.registry.instance_count)


async def test_a_large_body_is_decoded_behind_the_gate_and_answers_the_same(api: Api) -> None:
    """A body over GATED_BODY (decoded behind the batch gate) is answered as any other."""
    fleet = many(1_000)
    assert len(json.dumps({"instances": fleet})) > GATED_BODY
    unknown = await api.heartbeat(*fleet)
    registered = await api.register(*fleet)
    assert (partial(*(failed(i, "data-not-found", NOT_EXISTING) for i in fleet)), OK_BODY,
            1_000) == (unknown, registered, api.node.registry.instance_count)


async def test_a_large_canonical_body_is_decoded_in_steps_and_answers_the_same(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large body in the form clients write is decoded DECODE_SLICE instances a step (1,200
    instances: 500, 500, 200); one with a bad instance is decoded whole and answered exactly as
    the same body written with spaces."""
    decoded: list[int] = []
    decode = registry_api.wire.decode

    def counting(data: bytes, kind: Any, **kwargs: Any) -> Any:
        result = decode(data, kind, **kwargs)
        if kind is registry_api.InstancesRequest:
            decoded.append(len(result.instances or ()))
        return result

    monkeypatch.setattr(registry_api.wire, "decode", counting)
    fleet = many(1_200)
    body = b'{"instances":[' + b",".join(canonical(i) for i in fleet) + b"]}"
    assert len(body) > GATED_BODY
    answer = (await api.post("/api/registry/register.json", content=body)).json()
    assert (OK_BODY, [500, 500, 200], 1_200) == (answer, decoded,
                                                 api.node.registry.instance_count)

    bad = [*fleet[:700], {**fleet[700], "port": "x"}, *fleet[701:]]
    spaced = json.dumps({"instances": bad}).encode()
    answers = [(await api.post("/api/registry/register.json", content=content)).json()
               for content in (b'{"instances":[' + b",".join(canonical(i) for i in bad) + b"]}",
                               spaced)]
    assert ("bad-request", True) == (answers[0]["responseStatus"]["errorCode"],
                                     "$.instances[700].port" in answers[0]["responseStatus"][
                                         "message"])
    assert answers[1] == answers[0]


async def test_a_large_batch_gives_the_event_loop_back_between_slices(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a large register runs, other tasks run between its slices: a task polling the
    registry sees it part-way (more than none, fewer than all). (No time budget: the loop is
    given back after every slice.)"""
    monkeypatch.setattr(registry_api, "STEP_BUDGET", 0.0)
    fleet = many(3 * SLICE)
    seen: list[int] = []
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            seen.append(api.node.registry.instance_count)
            await asyncio.sleep(0)

    async def write() -> Any:
        try:
            return await api.register(*fleet)
        finally:
            done.set()

    answer, _ = await asyncio.gather(write(), watch())
    assert OK_BODY == answer
    assert [n for n in seen if 0 < n < 3 * SLICE] != []
    assert 3 * SLICE == api.node.registry.instance_count


async def test_large_batches_run_one_at_a_time(api: Api,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Two large batches sent at once do not run slice by slice together (their slices would
    add up in one turn of the loop): a task polling the registry between slices never sees
    both part-way."""
    monkeypatch.setattr(registry_api, "STEP_BUDGET", 0.0)
    first = many(3 * SLICE)
    second = [instance(f"10.2.{n // 250}.{n % 250}:8080") for n in range(3 * SLICE)]
    seen: list[tuple[int, int]] = []
    done = asyncio.Event()

    def held(fleet: list[dict[str, Any]]) -> int:
        service = api.node.registry.service(fleet[0]["serviceId"])
        prefix = fleet[0]["instanceId"].split(".")[1]
        return 0 if service is None else sum(
            1 for key in service.leases if key.split(".")[1] == prefix)

    async def watch() -> None:
        while not done.is_set():
            seen.append((held(first), held(second)))
            await asyncio.sleep(0)

    async def write() -> list[Any]:
        try:
            return list(await asyncio.gather(api.register(*first), api.register(*second)))
        finally:
            done.set()

    answers, _ = await asyncio.gather(write(), watch())
    assert [OK_BODY, OK_BODY] == answers
    assert [(a, b) for a, b in seen if 0 < a < 3 * SLICE and 0 < b < 3 * SLICE] == []
    assert [(a, b) for a, b in seen if 0 < a < 3 * SLICE or 0 < b < 3 * SLICE] != []
    assert 6 * SLICE == api.node.registry.instance_count
